"""The candidate products of max-times: one edge of weight w against a consumer state (hi, lo) with a path.

The best candidate is max(w·hi, w·lo) and the worst min(w·hi, w·lo) whatever the sign of w (so no sign
branch, and as compares and selects a loop over them vectorises), and 0·∞ = 0: a zero factor makes a
path's product 0 whatever the other, an overflowed (infinite) partial product or an infinite derivative
included, as the product of the reals it stands for does. The reference's ⊗ is the same rule.
"""

import sys

import numpy as np
from numba import njit

from ..checked_cache import protect


@njit(cache=True, inline="always")
def candidates(w, vh, vl, zero):
    """(best, worst) of w·vh and w·vl with 0·∞ = 0; ``zero`` is 0 in the states' dtype."""
    p = w * vh if (w != 0) & (vh != 0) else zero
    q = w * vl if (w != 0) & (vl != 0) else zero
    return (p if p > q else q), (q if p > q else p)


@njit(cache=True, inline="always")
def finite_candidates(w, vh, vl):
    """:func:`candidates` for a consumer whose hi and lo are finite and a finite w: no product is 0·∞."""
    p = w * vh
    q = w * vl
    return (p if p > q else q), (q if p > q else p)


@njit(cache=True, inline="always")
def overflowed(vh, vl):
    """Whether a consumer state with a path holds a product that overflowed (hi = +∞ or lo = −∞)."""
    return (vh == np.inf) | (vl == -np.inf)


@njit(cache=True)
def nan_where_no_path(V_hi, V_lo):
    """(Yh, Yl, overflow, dense): a consumer element with no path as NaN in both fields, so its candidates never
    win and the vector code needs no mask; whether any consumer holds an overflowed product; and whether every
    consumer has a path (no NaN at all); one pass."""
    Yh = np.empty_like(V_hi)
    Yl = np.empty_like(V_lo)
    over = False
    dense = True
    for i in range(V_hi.shape[0]):
        vh = V_hi[i]
        vl = V_lo[i]
        none = vh < vl
        over |= ~none & overflowed(vh, vl)
        dense &= ~none
        Yh[i] = np.nan if none else vh
        Yl[i] = np.nan if none else vl
    return Yh, Yl, over, dense


protect(sys.modules[__name__])  # checksummed disk cache (see checked_cache.py)
