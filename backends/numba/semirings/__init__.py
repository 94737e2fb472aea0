"""Semiring kernels as ordinary modules: a generated kernel module imports them by name (``Kernels.module``).

Each module defines ``acc`` (one edge: ``D_u[j] ⊕= lift(w) ⊗ D_v[i]``, which the generic kernels of
``backends/numba/templates.py`` call) and the structured kernels it specialises, with the generic
kernels' signatures.
"""
