"""counting: the number of paths whose edges are all non-zero, and its log where the count overflows.

Contractions run as GEMMs of the non-zero pattern (``backends/semiring_kernels.py``).
"""

import math
import sys

import numpy as np
from numba import njit

from ..checked_cache import protect


# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_count, U_log_count, j, V_count, V_log_count, i, w, e):
    if w == 0 or V_log_count[i] == -np.inf:
        return
    U_count[j] += V_count[i]
    lc = V_log_count[i]
    la = U_log_count[j]
    if la == -np.inf:
        U_log_count[j] = lc
    else:
        U_log_count[j] = max(la, lc) + math.log1p(math.exp(-abs(la - lc)))


protect(sys.modules[__name__])  # checksummed disk cache (see checked_cache.py)
