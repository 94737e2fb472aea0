"""Device versions of the scalar helpers that generated elementwise kernels call (same Python source as the
CPU backend's ``prelude``, compiled for the GPU)."""

from numba import cuda
from semir.backends.numba import prelude as _cpu

sigmoid = cuda.jit(device=True)(_cpu.sigmoid.py_func)
gelu = cuda.jit(device=True)(_cpu.gelu.py_func)
gelu_d = cuda.jit(device=True)(_cpu.gelu_d.py_func)
gelu_tanh = cuda.jit(device=True)(_cpu.gelu_tanh.py_func)
gelu_tanh_d = cuda.jit(device=True)(_cpu.gelu_tanh_d.py_func)
sign = cuda.jit(device=True)(_cpu.sign.py_func)
