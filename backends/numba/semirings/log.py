"""log: log Z = log Σ_paths |product|, in log space (⊕ is logaddexp, ⊗ adds log|w|).

A zero weight brings no path. Contractions run as shifted GEMMs (``backends/semiring_kernels.py``).
"""

import math
import sys

import numpy as np
from numba import njit

from ..checked_cache import protect


# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_logz, j, V_logz, i, w, e):
    lv = V_logz[i]
    if lv == -np.inf or w == 0:
        return
    lc = lv + math.log(abs(w))
    la = U_logz[j]
    if la == -np.inf:
        U_logz[j] = lc
    else:
        U_logz[j] = max(la, lc) + math.log1p(math.exp(-abs(la - lc)))


protect(sys.modules[__name__])  # checksummed disk cache (see checked_cache.py)
