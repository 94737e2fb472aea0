"""boolean: whether a path with every edge non-zero exists (⊕ is or, ⊗ is and [w ≠ 0])."""

import sys

from numba import njit

from ..checked_cache import protect


# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_b, j, V_b, i, w, e):
    if w != 0 and V_b[i]:
        U_b[j] = True


protect(sys.modules[__name__])  # checksummed disk cache (see checked_cache.py)
