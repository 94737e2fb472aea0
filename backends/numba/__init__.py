"""The Numba CPU backend: generated, semiring-specialised kernels with a content-addressed disk cache."""

from .kernel import NumbaKernel, compile_numba

__all__ = ["NumbaKernel", "compile_numba"]
