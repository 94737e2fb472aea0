"""topk:K: the K path products of largest magnitude, signed, each with its edge and its rank at the consumer.

The state of an element is K slots sorted by (larger |v|, then lower edge, then lower rank); an empty slot
has edge EDGE_NONE. One K for every topk:K: the arrays carry it (``U_v.shape[1]``).
"""

import sys

from numba import njit

from semir.semirings.base import EDGE_NONE

from ..checked_cache import protect


# Merge the K candidates of D_v[i]·w into the sorted list D_u[j]: candidate r (rank r at the consumer) goes
# in at its place; the list stays of length K.
# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_v, U_edge, U_rank, j, V_v, V_edge, V_rank, i, w, e):
    K = U_v.shape[1]
    for r in range(K):
        if V_edge[i, r] == EDGE_NONE:
            return
        c = V_v[i, r] * w
        m = abs(c)
        pos = K
        for q in range(K):
            u = abs(U_v[j, q])
            if U_edge[j, q] == EDGE_NONE or m > u or (m == u and (e < U_edge[j, q] or (
                    e == U_edge[j, q] and r < U_rank[j, q]))):
                pos = q
                break
        if pos == K:
            return
        for q in range(K - 1, pos, -1):
            U_v[j, q] = U_v[j, q - 1]
            U_edge[j, q] = U_edge[j, q - 1]
            U_rank[j, q] = U_rank[j, q - 1]
        U_v[j, pos] = c
        U_edge[j, pos] = e
        U_rank[j, pos] = r


protect(sys.modules[__name__])  # checksummed disk cache (see checked_cache.py)
