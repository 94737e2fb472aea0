"""max_abs, gradient tracing: the signed product of the path of largest magnitude, with its edge.

⊕ keeps the operand of larger |·| (ties: the lower edge). The contraction and the dense rows reduce each
operand element's candidates in registers (best magnitude, its value, its edge) and merge once, visiting
candidates in ascending edge order with a strict comparison, so the lowest edge wins ties as in ⊕.
"""

import sys

from numba import njit, prange

from semir.semirings.base import EDGE_NONE

from .. import prelude
from ..checked_cache import protect
from ..prelude import ln_weight


# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_v, U_edge, j, V_v, V_edge, i, w, e):
    if V_edge[i] == EDGE_NONE:
        return
    c = w * V_v[i]
    a = abs(c)
    b = abs(U_v[j])
    if a > b or (a == b and e < U_edge[j]):
        U_v[j] = c
        U_edge[j] = e


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _pick(V_v, i, w, e, best, bv, be):
    # consumer i's candidate against the row's best so far (|value|, value, edge); strict: the first wins
    c = V_v.dtype.type(w) * V_v[i]
    if abs(c) > best:
        return abs(c), c, e
    return best, bv, be


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _merge(U_v, U_edge, j, best, bv, be):
    # the best candidate of an operand element (be < 0: none) into its state, by (|value|, edge)
    if be >= 0:
        u = abs(U_v[j])
        if best > u or (best == u and be < U_edge[j]):
            U_v[j] = bv
            U_edge[j] = be


@njit(cache=True)
def _ma_row(U_v, U_edge, V_v, V_edge, B, a_off, b_off, y_off, M, K, N, base, b, m):
    yo = y_off[b] + m * N
    for k in range(K):
        bo = b_off[b] + k * N
        best = -1.0
        bv = 0.0
        en = -1
        for n in range(N):
            if V_edge[yo + n] == EDGE_NONE:
                continue
            c = B[bo + n] * V_v[yo + n]
            a = abs(c)
            if a > best:
                best = a
                bv = c
                en = n
        if en >= 0:
            _merge(U_v, U_edge, a_off[b] + m * K + k, best, bv, base + yo + en)


@njit(cache=True, parallel=True)
def matmul_bwd_a(U_v, U_edge, V_v, V_edge, B, a_off, b_off, y_off, M, K, N, base, shared):
    nb = a_off.shape[0]
    if shared:
        for m in prange(M):
            for b in range(nb):
                _ma_row(U_v, U_edge, V_v, V_edge, B, a_off, b_off, y_off, M, K, N, base, b, m)
    else:
        for t in prange(nb * M):
            _ma_row(U_v, U_edge, V_v, V_edge, B, a_off, b_off, y_off, M, K, N, base, t // M, t % M)


@njit(cache=True, parallel=True, _nrt=False, error_model="numpy")
def bwd_softmax(U_v, U_edge, V_v, V_edge, s, outer, n, inner, log, base):
    """Dense per-row Jacobian of (log_)softmax; each operand element reduced in registers."""
    dt = s.dtype.type
    for t in prange(outer * inner):
        start = (t // inner) * n * inner + t % inner
        for jj in range(n):
            j = start + jj * inner
            sj = s[j]  # log-softmax: e^{s_j} (the caller passes e^s)
            best = -1.0
            bv = 0.0
            be = -1
            for ii in range(n):
                i = start + ii * inner
                if V_edge[i] != EDGE_NONE:
                    d = dt(1.0) if ii == jj else dt(0.0)
                    w = (d - sj) if log else s[i] * (d - sj)  # in the node's dtype, as the reference computes it
                    best, bv, be = _pick(V_v, i, w, base + i, best, bv, be)
            _merge(U_v, U_edge, j, best, bv, be)


@njit(cache=True, parallel=True, _nrt=False, error_model="numpy")
def bwd_layernorm(U_v, U_edge, V_v, V_edge, xhat, inv, gamma, rows, n, base):
    """Dense per-row Jacobian of layernorm; each operand element reduced in registers."""
    dt = xhat.dtype.type
    for r in prange(rows):
        start = r * n
        for jj in range(n):
            j = start + jj
            xnj = xhat[j] / dt(n)
            best = -1.0
            bv = 0.0
            be = -1
            for ii in range(n):
                i = start + ii
                if V_edge[i] != EDGE_NONE:
                    d = dt(1.0) if ii == jj else dt(0.0)
                    w = ln_weight(gamma[ii] * inv[r], d, dt(1.0 / n), xhat[i], xnj)
                    best, bv, be = _pick(V_v, i, w, base + i, best, bv, be)
            _merge(U_v, U_edge, j, best, bv, be)


protect(sys.modules[__name__], depends=(prelude,))  # checksummed disk cache (see checked_cache.py)
