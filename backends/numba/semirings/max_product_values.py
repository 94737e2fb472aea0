"""max_product without pointers (``compile(..., pointers="lazy")``): the hi/lo values only.

The sweep keeps no pointers, so it moves 8 bytes a float32 element instead of 24 and every inner loop is a
compare-and-select on values. The contraction into A (every weight's input) runs on explicit vector code
(``backends/numba/vector.py``). ⊕ keeps the larger hi and the smaller lo; which edge won is recovered later,
for the elements a path visits, by rescanning their edges (``semir.backends.reference.rescan``). Every
kernel updates the operand's state in place: one thread owns each operand element (as in the kernels with
pointers), and a value-only ⊕ needs no per-slot bests to order ties. Weights are rounded to the node's
dtype exactly as the kernels with pointers and the reference round them, so the values are theirs.

A consumer element with no path (0̄ = (−∞, +∞), the one state with hi < lo) is skipped: its product with w
would be ±∞ or NaN, not 0̄. Candidates follow ``max_times.py`` (0·∞ = 0). The vector code takes the finite
products only: a call whose consumers hold an overflowed product (±∞) runs the scalar loops instead.
"""

import sys

import numpy as np
from numba import njit, prange

from .. import prelude, vector
from ..checked_cache import protect
from ..prelude import ln_weight, sm_row, sm_weight
from ..vector import RK, RM, max_times_block
from . import max_times
from .max_times import candidates, finite_candidates, nan_where_no_path


# Numba only (a lazy sweep runs on no other backend), so unlike the eager acc it may call helpers: its
# candidates are the eager acc's values (max_times.py: the same products, 0·∞ = 0)
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_hi, U_lo, j, V_hi, V_lo, i, w, e):
    vh = V_hi[i]
    vl = V_lo[i]
    if vh < vl:
        return
    ch, cl = candidates(w, vh, vl, V_hi.dtype.type(0))
    if ch > U_hi[j]:
        U_hi[j] = ch
    if cl < U_lo[j]:
        U_lo[j] = cl


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _pick(uh, ul, k, w, vh, vl, zero):
    # one candidate into slot k (see max_times.py); as compares and selects the caller's loop over k
    # vectorises (Numba's max() blocks that)
    ch, cl = candidates(w, vh, vl, zero)
    uh[k] = ch if ch > uh[k] else uh[k]
    ul[k] = cl if cl < ul[k] else ul[k]


@njit(cache=True, _nrt=False, error_model="numpy")
def _one(U_hi, U_lo, Yh, Yl, B, j, yb, bb, n0, N):
    # the candidates of D_Y row yb and B row bb over n0 <= n < N into element j: the n beyond the last whole
    # vector of a block, and the k beyond the last whole block (n0 = 0)
    bh = U_hi[j]
    bl = U_lo[j]
    for n in range(n0, N):
        ch, cl = finite_candidates(B[bb + n], Yh[yb + n], Yl[yb + n])
        bh = ch if ch > bh else bh
        bl = cl if cl < bl else bl
    U_hi[j] = bh
    U_lo[j] = bl


@njit(cache=True, _nrt=False, error_model="numpy")
def _one_exact(U_hi, U_lo, V_hi, V_lo, B, j, yb, bb, N):
    # _one over all n for a call with an overflowed consumer: any candidate, 0̄ skipped
    zero = B.dtype.type(0)
    for n in range(N):
        vh = V_hi[yb + n]
        vl = V_lo[yb + n]
        if vh >= vl:
            _pick(U_hi, U_lo, j, B[bb + n], vh, vl, zero)


@njit(cache=True, _nrt=False, error_model="numpy")
def _rows_a(U_hi, U_lo, Yh, Yl, B, a0, y0, b0, m, mr, K, N, L):
    # rows m .. m+mr-1 of D_A[b] (mr = RM, or fewer at the end): RM×RK blocks as vector code, the rest scalar
    nv = N - N % L
    kb = K - K % RK if mr == RM else 0
    for k in range(0, kb, RK):
        ua = a0 + m * K + k
        yb = y0 + m * N
        bb = b0 + k * N
        max_times_block(U_hi, U_lo, Yh, Yl, B, ua, yb, bb, K, N, nv)
        if nv < N:
            for r in range(RM):
                for c in range(RK):
                    _one(U_hi, U_lo, Yh, Yl, B, ua + r * K + c, yb + r * N, bb + c * N, nv, N)
    for r in range(mr):
        for k in range(kb, K):
            _one(U_hi, U_lo, Yh, Yl, B, a0 + (m + r) * K + k, y0 + (m + r) * N, b0 + k * N, 0, N)


@njit(cache=True, _nrt=False, error_model="numpy")
def _rows_a_exact(U_hi, U_lo, V_hi, V_lo, B, a0, y0, b0, m, mr, K, N):
    for r in range(mr):
        for k in range(K):
            _one_exact(U_hi, U_lo, V_hi, V_lo, B, a0 + (m + r) * K + k, y0 + (m + r) * N, b0 + k * N, N)


@njit(cache=True, parallel=True)
def matmul_bwd_a(U_hi, U_lo, V_hi, V_lo, B, a_off, b_off, y_off, M, K, N, base, shared):
    """D_A[b, m, k] ⊕= B[b, k, n]·D_Y[b, m, n] over n: a thread per RM rows of D_A, n contiguous in B and D_Y.
    The vector code where every consumer's products are finite, else scalar loops with every candidate exact."""
    nb = a_off.shape[0]
    L = 64 // V_hi.itemsize  # the lanes of max_times_block (vector.lanes)
    Yh, Yl, over, _ = nan_where_no_path(V_hi, V_lo)
    blocks = (M + RM - 1) // RM
    if shared:  # A's block is shared by the batches: one thread per RM rows, the batches in turn
        for t in prange(blocks):
            for b in range(nb):
                if over:
                    _rows_a_exact(U_hi, U_lo, V_hi, V_lo, B, a_off[b], y_off[b], b_off[b], RM * t,
                                  min(RM, M - RM * t), K, N)
                else:
                    _rows_a(U_hi, U_lo, Yh, Yl, B, a_off[b], y_off[b], b_off[b], RM * t, min(RM, M - RM * t), K,
                            N, L)
    else:
        for t in prange(nb * blocks):
            b = t // blocks
            m = RM * (t % blocks)
            if over:
                _rows_a_exact(U_hi, U_lo, V_hi, V_lo, B, a_off[b], y_off[b], b_off[b], m, min(RM, M - m), K, N)
            else:
                _rows_a(U_hi, U_lo, Yh, Yl, B, a_off[b], y_off[b], b_off[b], m, min(RM, M - m), K, N, L)


@njit(cache=True, _nrt=False, error_model="numpy")
def _row_b(U_hi, U_lo, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, b, k):
    # row k of B's state: D_B[k, n] ⊕= A[m, k]·D_Y[m, n] over m; a lane with no path is left as it is
    uh = U_hi[b_off[b] + k * N:b_off[b] + k * N + N]
    ul = U_lo[b_off[b] + k * N:b_off[b] + k * N + N]
    yo = y_off[b]
    zero = A.dtype.type(0)
    for m in range(M):
        w = A[a_off[b] + m * K + k]
        vh_row = V_hi[yo + m * N:yo + m * N + N]
        vl_row = V_lo[yo + m * N:yo + m * N + N]
        for n in range(N):
            vh = vh_row[n]
            vl = vl_row[n]
            ch, cl = candidates(w, vh, vl, zero)
            live = vh >= vl
            uh[n] = ch if live & (ch > uh[n]) else uh[n]
            ul[n] = cl if live & (cl < ul[n]) else ul[n]


@njit(cache=True, parallel=True)
def matmul_bwd_b(U_hi, U_lo, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, base, shared):
    nb = b_off.shape[0]
    if shared:  # one thread per row k of the shared block, the batches in turn
        for k in prange(K):
            for b in range(nb):
                _row_b(U_hi, U_lo, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, b, k)
    else:
        for t in prange(nb * K):
            _row_b(U_hi, U_lo, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, t // K, t % K)


@njit(cache=True, _nrt=False, error_model="numpy")
def _ln_row(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, n, r, xn):
    # consumer-outer: for each consumer ii, the loop over operand elements jj vectorises; x̂_j/n once per row
    start = r * n
    dt = xhat.dtype.type
    uh = U_hi[start:start + n]
    ul = U_lo[start:start + n]
    xrow = xhat[start:start + n]
    for jj in range(n):
        xn[jj] = xrow[jj] / dt(n)
    c = dt(1.0 / n)
    for ii in range(n):
        vh = V_hi[start + ii]
        vl = V_lo[start + ii]
        if vh < vl:
            continue
        gi = gamma[ii] * inv[r]
        xi = xrow[ii]
        for jj in range(n):
            _pick(uh, ul, jj, ln_weight(gi, dt(1.0) if ii == jj else dt(0.0), c, xi, xn[jj]), vh, vl, dt(0))


@njit(cache=True, parallel=True)
def bwd_layernorm(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, rows, n, base):
    xn = np.empty((rows, n), xhat.dtype)
    for r in prange(rows):
        _ln_row(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, n, r, xn[r])


@njit(cache=True, _nrt=False, error_model="numpy")
def _sm_row(U_hi, U_lo, V_hi, V_lo, s, n, log, start, sj):
    # one row of a softmax over the last axis (contiguous): consumer-outer, the loop over jj on views vectorises
    dt = s.dtype.type
    srow = s[start:start + n]
    uh = U_hi[start:start + n]
    ul = U_lo[start:start + n]
    sm_row(s, start, n, 1, log, sj)
    for ii in range(n):
        vh = V_hi[start + ii]
        vl = V_lo[start + ii]
        if vh < vl:
            continue
        si = srow[ii]
        for jj in range(n):
            _pick(uh, ul, jj, sm_weight(dt(1.0) if ii == jj else dt(0.0), si, sj[jj], log), vh, vl, dt(0))


@njit(cache=True, _nrt=False, error_model="numpy")
def _sm_row_strided(U_hi, U_lo, V_hi, V_lo, s, n, inner, log, start, sj):
    # a softmax over an inner axis: the row's elements are ``inner`` apart
    dt = s.dtype.type
    sm_row(s, start, n, inner, log, sj)
    for ii in range(n):
        i = start + ii * inner
        vh = V_hi[i]
        vl = V_lo[i]
        if vh < vl:
            continue
        for jj in range(n):
            w = sm_weight(dt(1.0) if ii == jj else dt(0.0), s[i], sj[jj], log)
            _pick(U_hi, U_lo, start + jj * inner, w, vh, vl, dt(0))


@njit(cache=True, parallel=True)
def bwd_softmax(U_hi, U_lo, V_hi, V_lo, s, outer, n, inner, log, base):
    sj = np.empty((outer * inner, n), s.dtype)
    for t in prange(outer * inner):
        start = (t // inner) * n * inner + t % inner
        if inner == 1:
            _sm_row(U_hi, U_lo, V_hi, V_lo, s, n, log, start, sj[t])
        else:
            _sm_row_strided(U_hi, U_lo, V_hi, V_lo, s, n, inner, log, start, sj[t])


protect(sys.modules[__name__], depends=(vector, prelude, max_times))  # checksummed disk cache (see checked_cache.py)
