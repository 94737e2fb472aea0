"""The CUDA backend: ``numba.cuda`` kernels generated per program and semiring (numba-cuda).

Without a GPU, start Python with ``NUMBA_ENABLE_CUDASIM=1`` to run the same kernels in numba's simulator.
"""

from .kernel import CudaKernel, compile_cuda

__all__ = ["CudaKernel", "compile_cuda"]
