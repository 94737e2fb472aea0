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
from .max_times import candidates, finite_candidates, nan_where_no_path, overflowed


# Numba only (a lazy sweep runs on no other backend), so unlike the eager acc it may call helpers: its
# candidates are the eager acc's values (max_times.py: the same products, 0·∞ = 0)
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_hi, U_lo, j, V_hi, V_lo, i, w, e):
    # selects, not an early return for a consumer with no path (hi < lo): its candidates are ±∞ or NaN, which
    # the mask leaves out
    vh = V_hi[i]
    vl = V_lo[i]
    ch, cl = candidates(w, vh, vl, V_hi.dtype.type(0))
    live = vh >= vl
    U_hi[j] = ch if live & (ch > U_hi[j]) else U_hi[j]
    U_lo[j] = cl if live & (cl < U_lo[j]) else U_lo[j]


@njit(cache=True, _nrt=False, error_model="numpy")
def bwd_map1(U_hi, U_lo, V_hi, V_lo, inmap, base):
    """The generic bwd_map1 (movement ops, every weight 1) with the weight in the states' dtype: the generic
    one's float64 1.0 widens every product and compare (6.0 → 1.4 ns an element on MiniLM's head
    permutations, one core)."""
    one = V_hi.dtype.type(1)
    for o in range(inmap.shape[0]):
        j = inmap[o]
        if j >= 0:
            acc(U_hi, U_lo, j, V_hi, V_lo, o, one, base + o)


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


@njit(cache=True, _nrt=False, error_model="numpy")
def _b_transposed(U_hi, U_lo, Yh, Yl, A, a0, b0, y0, M, K, N, L, T):
    # D_B[k, n] ⊕= A[m, k]·D_Y[m, n] over m as matmul_bwd_a's form: D_Bᵀ[n, k] ⊕= Aᵀ[k, m]·D_Yᵀ[n, m] over m,
    # m contiguous in both, on transposed copies in T (rows: D_Yᵀ's hi and lo, Aᵀ, D_Bᵀ's hi and lo)
    yh, yl, at, uh, ul = T[0], T[1], T[2], T[3], T[4]
    for m in range(M):
        for n in range(N):
            yh[n * M + m] = Yh[y0 + m * N + n]
            yl[n * M + m] = Yl[y0 + m * N + n]
        for k in range(K):
            at[k * M + m] = A[a0 + m * K + k]
    for k in range(K):
        for n in range(N):
            uh[n * K + k] = U_hi[b0 + k * N + n]
            ul[n * K + k] = U_lo[b0 + k * N + n]
    for r in range(0, N, RM):
        _rows_a(uh, ul, yh, yl, at, 0, 0, 0, r, min(RM, N - r), K, M, L)
    for k in range(K):
        for n in range(N):
            U_hi[b0 + k * N + n] = uh[n * K + k]
            U_lo[b0 + k * N + n] = ul[n * K + k]


@njit(cache=True, parallel=True)
def matmul_bwd_b(U_hi, U_lo, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, base, shared):
    """D_B[b, k, n] ⊕= A[b, m, k]·D_Y[b, m, n] over m. Per batch, where no consumer overflowed and the batches'
    B blocks are their own (attention's value and key), as matmul_bwd_a's vector code on transposed copies
    (BERT-base's attention at 128 tokens: 78 → 54 ms a call, one core); else a row of
    D_B at a time, scalar."""
    nb = b_off.shape[0]
    L = 64 // V_hi.itemsize
    Yh, Yl, over, _ = nan_where_no_path(V_hi, V_lo)
    if not shared and not over and M >= L:
        T = np.empty((nb, 5, max(M, K) * max(N, K)), V_hi.dtype)
        for b in prange(nb):
            _b_transposed(U_hi, U_lo, Yh, Yl, A, a_off[b], b_off[b], y_off[b], M, K, N, L, T[b])
        return
    if shared:  # one thread per row k of the shared block, the batches in turn
        for k in prange(K):
            for b in range(nb):
                _row_b(U_hi, U_lo, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, b, k)
    else:
        for t in prange(nb * K):
            _row_b(U_hi, U_lo, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, t // K, t % K)


@njit(cache=True, _nrt=False, error_model="numpy")
def _ln_exact(uh, ul, vh, vl, gi, xi, i, xn, c, n):
    # consumer i into the whole row, every candidate exact (0·∞ = 0) and the diagonal's δ_ij = 1
    dt = xn.dtype.type
    for jj in range(n):
        _pick(uh, ul, jj, ln_weight(gi, dt(1.0) if i == jj else dt(0.0), c, xi, xn[jj]), vh, vl, dt(0))


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _meet(bh, bl, w, h, lo):
    # one finite candidate pair into the running best and worst
    ch, cl = finite_candidates(w, h, lo)
    return (ch if ch > bh else bh), (cl if cl < bl else bl)


@njit(cache=True, _nrt=False, error_model="numpy")
def _ln_four(uh, ul, xn, t, g0, g1, g2, g3, x0, x1, x2, x3, h0, h1, h2, h3, l0, l1, l2, l3):
    # four consumers (γ_i/σ = g, x̂_i = x, state h, l) into every element of the views, none on their diagonal:
    # each weight is g·(t − x·x̂_j/n) with t = δ_ij − 1/n = −1/n. Each j's hi and lo are loaded and stored once
    # for the four, whose candidates meet in consumer order. finite_candidates: the caller checked that no
    # product here can be 0·∞ (finite states, finite weights); as in the vector contraction (vector.py), a
    # product of 0 may keep its sign (−0 where ⊗ gives +0), which compares equal.
    for k in range(xn.shape[0]):
        xj = xn[k]
        bh, bl = _meet(uh[k], ul[k], g0 * (t - x0 * xj), h0, l0)
        bh, bl = _meet(bh, bl, g1 * (t - x1 * xj), h1, l1)
        bh, bl = _meet(bh, bl, g2 * (t - x2 * xj), h2, l2)
        uh[k], ul[k] = _meet(bh, bl, g3 * (t - x3 * xj), h3, l3)


@njit(cache=True, _nrt=False, error_model="numpy")
def _ln_row(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, n, r, xn, live, P):
    """One layernorm row, values first: consumers four at a time, each j's state loaded and stored once per four
    (MiniLM's 13 nodes of rows: 12.8 → 7.4 ms, one core). Consumers without a path are skipped; one whose state
    overflowed, or every consumer of a row where a weight could overflow (then w = ±∞ against a state of 0 would
    be NaN, where ⊗ has 0·∞ = 0), goes through the exact loop. The vector loop takes δ_ij = 0 for every j; the
    four consumers' own elements are then met again, with δ_ij = 1 (a diagonal span of its own, 16 or 32
    elements, ran LLVM's scalar remainder: 3 ms slower)."""
    start = r * n
    dt = xhat.dtype.type
    uh = U_hi[start:start + n]
    ul = U_lo[start:start + n]
    xrow = xhat[start:start + n]
    big = dt(0.0)
    finite = True
    for jj in range(n):
        xn[jj] = xrow[jj] / dt(n)
        a = abs(xrow[jj])
        big = max(big, a)
        finite &= a < np.inf
    c = dt(1.0 / n)
    # |w| <= |γ_i/σ|·(1 + 1/n + max|x̂|·max|x̂/n|) before rounding, whose three roundings add under 1e-6 of it
    bound = dt(np.finfo(xhat.dtype).max) / dt(4.0)
    wide = big * (big / dt(n)) + dt(2.0)
    count = 0
    for ii in range(n):
        vh = V_hi[start + ii]
        vl = V_lo[start + ii]
        if vh < vl:
            continue
        gi = gamma[ii] * inv[r]
        if overflowed(vh, vl) or not (finite and abs(gi) < bound / wide):
            _ln_exact(uh, ul, vh, vl, gi, xrow[ii], ii, xn, c, n)
        else:
            live[count] = ii
            count += 1
    g, x, h, lo, sh, sl = P[0], P[1], P[2], P[3], P[4], P[5]
    blocked = count - count % 4
    for b in range(0, blocked, 4):
        i = live[b:b + 4]
        for q in range(4):
            g[q] = gamma[i[q]] * inv[r]
            x[q] = xrow[i[q]]
            h[q] = V_hi[start + i[q]]
            lo[q] = V_lo[start + i[q]]
        # every j with δ_ij = 0 in one vector loop, then the four consumers' own elements again from their
        # states before the block (the loop met them with δ_ij = 0 there), in the same consumer order
        for q in range(4):
            sh[q] = uh[i[q]]
            sl[q] = ul[i[q]]
        _ln_four(uh, ul, xn, dt(0.0) - c, g[0], g[1], g[2], g[3], x[0], x[1], x[2], x[3], h[0], h[1], h[2], h[3],
                 lo[0], lo[1], lo[2], lo[3])
        for q in range(4):
            bh, bl = sh[q], sl[q]
            xj = xn[i[q]]
            for p in range(4):
                bh, bl = _meet(bh, bl, ln_weight(g[p], dt(1.0) if p == q else dt(0.0), c, x[p], xj), h[p], lo[p])
            uh[i[q]] = bh
            ul[i[q]] = bl
    for b in range(blocked, count):
        ii = live[b]
        _ln_exact(uh, ul, V_hi[start + ii], V_lo[start + ii], gamma[ii] * inv[r], xrow[ii], ii, xn, c, n)


@njit(cache=True, parallel=True)
def bwd_layernorm(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, rows, n, base):
    xn = np.empty((rows, n), xhat.dtype)
    live = np.empty((rows, n), np.int64)
    P = np.empty((rows, 6, 4), xhat.dtype)
    for r in prange(rows):
        _ln_row(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, n, r, xn[r], live[r], P[r])


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
