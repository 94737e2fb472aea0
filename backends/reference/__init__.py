"""The NumPy reference backend: op-by-op forward, then Algorithm 2 over explicit scalar edges."""

from .backend import ReferenceKernel, compile_reference

__all__ = ["ReferenceKernel", "compile_reference"]
