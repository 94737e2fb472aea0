"""Device versions of the scalar helpers that generated elementwise kernels call (same Python source as the
CPU backend's ``prelude``, compiled for the GPU), but for gelu's: the CPU's erf is LLVM IR written for its
vectoriser, and the GPU's own erf and exp are fast."""

import math

from numba import cuda
from semir.backends.numba import prelude as _cpu

sigmoid = cuda.jit(device=True)(_cpu.sigmoid.py_func)


@cuda.jit(device=True)
def gelu(x):
    return 0.5 * x * (1.0 + math.erf(x * _cpu.INV_SQRT_2))


@cuda.jit(device=True)
def gelu_d(x):
    return 0.5 * (1.0 + math.erf(x * _cpu.INV_SQRT_2)) + x * math.exp(-0.5 * x * x) * _cpu.INV_SQRT_2PI


gelu_tanh = cuda.jit(device=True)(_cpu.gelu_tanh.py_func)
gelu_tanh_d = cuda.jit(device=True)(_cpu.gelu_tanh_d.py_func)
sign = cuda.jit(device=True)(_cpu.sign.py_func)
