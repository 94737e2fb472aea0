"""The Numba CPU backend: generated, semiring-specialised kernels with a content-addressed disk cache.

Importing it configures nothing: the thread settings are made when the first kernel is compiled
(:func:`threads.configure`).
"""

from .kernel import NumbaKernel, compile_numba

__all__ = ["NumbaKernel", "compile_numba"]
