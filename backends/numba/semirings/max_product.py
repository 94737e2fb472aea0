"""max_product with pointers (``pointers="eager"``): hi and lo with the edge that achieved each.

The kernels a lazy result reruns to recover a node's pointers, and the whole sweep under ``pointers="eager"``.
Ties break toward the lowest edge, as ⊕ does: candidates are visited in ascending edge order with strict
comparisons, and merged into the state by (value, edge).
"""

import sys

import numpy as np
from numba import njit, prange

from .. import prelude, vector
from ..checked_cache import protect
from ..prelude import ln_weight, sm_row, sm_weight
from ..vector import CHUNKED_FROM, PK, PM, max_times_block_chunks, max_times_block_pointers
from . import max_times
from .max_times import candidates, finite_candidates, nan_where_no_path

GROUP = 8  # PM-row blocks of D_A per thread that share each tile of B


# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_hi, U_lo, U_hi_edge, U_lo_edge, j, V_hi, V_lo, V_hi_edge, V_lo_edge, i, w, e):
    vh = V_hi[i]
    vl = V_lo[i]
    if vh < vl:  # no path: 0̄ = (−∞, +∞) is the one state with hi < lo
        return
    if w >= 0:
        a = vh
        b = vl
    else:
        a = vl
        b = vh
    ch = w * a
    cl = w * b
    # 0·∞ = 0: a zero factor makes the product 0 whatever the other, an overflowed partial product or an
    # infinite derivative included (w·w and a·a are that 0 in the dtype)
    if w == 0:
        ch = w * w
        cl = ch
    else:
        if a == 0:
            ch = a * a
        if b == 0:
            cl = b * b
    if ch > U_hi[j] or (ch == U_hi[j] and e < U_hi_edge[j]):
        U_hi[j] = ch
        U_hi_edge[j] = e
    if cl < U_lo[j] or (cl == U_lo[j] and e < U_lo_edge[j]):
        U_lo[j] = cl
        U_lo_edge[j] = e


# Layernorm rows for max-times with pointers, consumer-outer: the inner loop runs over the row's operand
# elements, each with its own best-so-far slot, so it vectorises (an argmax reduction over consumers does
# not). Visiting consumers in ascending order with strict comparisons keeps the lowest edge among ties.
@njit(cache=True, _nrt=False, error_model="numpy")
def _mp_reset(bh, bl, eh, el, count):
    # empty per-slot bests (no edge yet); also used by the max-times matmul
    for k in range(count):
        bh[k] = -np.inf
        bl[k] = np.inf
        eh[k] = -1
        el[k] = -1


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _mp_pick(bh, bl, eh, el, jj, w, vh, vl, ni, zero):
    # one candidate edge (weight w from consumer ni, whose state is (vh, vl)) against slot jj's bests (see
    # max_times.py); strict comparisons keep the first consumer. As selects and int32 slots the caller's
    # loop over jj vectorises.
    ch, cl = candidates(w, vh, vl, zero)
    better = (ch > bh[jj]) | (eh[jj] < 0)  # an empty slot takes any candidate, an overflowed -inf too
    bh[jj] = ch if better else bh[jj]
    eh[jj] = ni if better else eh[jj]
    worse = (cl < bl[jj]) | (el[jj] < 0)
    bl[jj] = cl if worse else bl[jj]
    el[jj] = ni if worse else el[jj]


@njit(cache=True, _nrt=False, error_model="numpy")
def _mp_merge(U_hi, U_lo, U_hi_edge, U_lo_edge, bh, bl, eh, el, count, j0, e0):
    # ⊕ of per-slot bests (value, index of the winning edge within the row) into operand elements
    # j0 + k, pointers e0 + index; also used by the max-times matmul
    for k in range(count):
        if eh[k] < 0:
            continue
        j = j0 + k
        e = e0 + eh[k]
        if bh[k] > U_hi[j] or (bh[k] == U_hi[j] and e < U_hi_edge[j]):
            U_hi[j] = bh[k]
            U_hi_edge[j] = e
        e = e0 + el[k]
        if bl[k] < U_lo[j] or (bl[k] == U_lo[j] and e < U_lo_edge[j]):
            U_lo[j] = bl[k]
            U_lo_edge[j] = e


@njit(cache=True, _nrt=False, error_model="numpy")
def _mp_ln_row(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, xhat, inv, gamma, n, base, r, bh, bl, eh, el, xn):
    start = r * n
    dt = xhat.dtype.type
    _mp_reset(bh, bl, eh, el, n)
    xrow = xhat[start:start + n]  # a view: an offset index keeps the loop scalar (see the matmul)
    for jj in range(n):
        xn[jj] = xrow[jj] / dt(n)  # x̂_j/n once per element, in the dtype, as the reference takes it
    c = dt(1.0 / n)
    for ii in range(n):
        i = start + ii
        vh = V_hi[i]
        vl = V_lo[i]
        if vh < vl:  # no path (0̄ is the one state with hi < lo)
            continue
        gi = gamma[ii] * inv[r]
        xi = xhat[i]
        ni = np.int32(ii)
        for jj in range(n):
            w = ln_weight(gi, dt(1.0) if ii == jj else dt(0.0), c, xi, xn[jj])
            _mp_pick(bh, bl, eh, el, jj, w, vh, vl, ni, dt(0))
    _mp_merge(U_hi, U_lo, U_hi_edge, U_lo_edge, bh, bl, eh, el, n, start, base + start)


@njit(cache=True, parallel=True)
def bwd_layernorm(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, V_hi_edge, V_lo_edge, xhat, inv, gamma, rows, n,
                  base):
    best = np.empty((rows, 2, n), V_hi.dtype)
    which = np.empty((rows, 2, n), np.int32)
    xn = np.empty((rows, n), xhat.dtype)
    for r in prange(rows):
        _mp_ln_row(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, xhat, inv, gamma, n, base, r, best[r, 0],
                   best[r, 1], which[r, 0], which[r, 1], xn[r])


# The contraction into A where a consumer holds an overflowed product (the vector code takes finite ones):
# max-times with pointers, one output row at a time in registers. Whatever the sign of w, the best
# candidate is max(w·hi, w·lo) and the worst min(w·hi, w·lo), so the inner loop has no sign branch;
# strict comparisons keep the first n, i.e. the lowest edge, as ⊕ does. The k loop vectorises only as
# written: the max as a compare and select (Numba's max() lowers to a form LLVM leaves scalar) and the
# slots' pointers int32, as wide as the float32 values (int64 slots halve the lanes).
@njit(cache=True, error_model="numpy")  # Python's error model keeps LLVM from vectorising the k loop (2x)
def _mp_row(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, Bt, bt0, a_off, y_off, M, K, N, base, b, m,
            bh, bl, eh, el):
    # bh/bl/eh/el: this thread's best hi/lo and their n, one slot per k; the k loop vectorises
    yo = y_off[b] + m * N
    zero = Bt.dtype.type(0)
    _mp_reset(bh, bl, eh, el, K)
    for n in range(N):
        vh = V_hi[yo + n]
        vl = V_lo[yo + n]
        if vh < vl:
            continue
        # a view of the row, not Bt[bt0 + n*K + k]: with a runtime offset in the index LLVM left the loop
        # scalar (2.4 against 10.4 G edges/s)
        brow = Bt[bt0 + n * K:bt0 + n * K + K]
        nn = np.int32(n)
        for k in range(K):
            _mp_pick(bh, bl, eh, el, k, brow[k], vh, vl, nn, zero)
    _mp_merge(U_hi, U_lo, U_hi_edge, U_lo_edge, bh, bl, eh, el, K, a_off[b] + m * K, base + yo)


@njit(cache=True)
def _mp_slots(n, like):
    # one thread's per-element bests: hi, lo (the values' dtype) and their int32 indices
    return np.empty(n, like.dtype), np.empty(n, like.dtype), np.empty(n, np.int32), np.empty(n, np.int32)


@njit(cache=True, parallel=True)
def _bwd_a_exact(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, V_hi_edge, V_lo_edge, B, a_off, b_off, y_off,
                 M, K, N, base, shared):
    nb = a_off.shape[0]
    # B[b] is [K, N]; its transpose makes the inner loop run over contiguous k
    Bt = np.empty(nb * K * N, B.dtype)
    for t in prange(nb * ((K + 31) // 32)):  # blocked, so both sides of the copy stay in cache
        b = t // ((K + 31) // 32)
        k0 = (t % ((K + 31) // 32)) * 32
        for n0 in range(0, N, 32):
            for k in range(k0, min(k0 + 32, K)):
                for n in range(n0, min(n0 + 32, N)):
                    Bt[b * K * N + n * K + k] = B[b_off[b] + k * N + n]
    if shared:
        for m in prange(M):
            bh, bl, eh, el = _mp_slots(K, V_hi)
            for b in range(nb):
                _mp_row(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, Bt, b * K * N, a_off, y_off, M, K, N,
                        base, b, m, bh, bl, eh, el)
    else:
        for t in prange(nb * M):
            bh, bl, eh, el = _mp_slots(K, V_hi)
            b = t // M
            _mp_row(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, Bt, b * K * N, a_off, y_off, M, K, N, base,
                    b, t % M, bh, bl, eh, el)


@njit(cache=True, _nrt=False, error_model="numpy")
def _one(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, j, yb, bb, n0, N, e0):
    # the candidates of D_Y row yb and B row bb over n0 <= n < N into element j, as the vector block takes
    # them (n downwards, >= and <=: the lowest n among equal values), merged by (value, edge e0 + n)
    bh = -np.inf
    bl = np.inf
    eh = -1
    el = -1
    for n in range(N - 1, n0 - 1, -1):
        ch, cl = finite_candidates(B[bb + n], Yh[yb + n], Yl[yb + n])
        if ch >= bh:
            bh = ch
            eh = n
        if cl <= bl:
            bl = cl
            el = n
    if eh >= 0:
        e = e0 + eh
        if bh > U_hi[j] or (bh == U_hi[j] and e < U_hi_edge[j]):
            U_hi[j] = bh
            U_hi_edge[j] = e
    if el >= 0:
        e = e0 + el
        if bl < U_lo[j] or (bl == U_lo[j] and e < U_lo_edge[j]):
            U_lo[j] = bl
            U_lo_edge[j] = e


@njit(cache=True, _nrt=False, error_model="numpy")
def _rows_a(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, a0, y0, b0, m, mr, k0, k1, K, N, L, e0, dense):
    # rows m .. m+mr-1, columns k0 .. k1-1 of D_A[b]: PM×PK blocks as vector code with pointers (chunked for
    # long rows), the rest scalar; the edge of consumer element (m, n) is e0 + m·N + n
    nv = N - N % L
    kb = k1 - (k1 - k0) % PK if mr == PM else k0
    for k in range(k0, kb, PK):
        ua = a0 + m * K + k
        yb = y0 + m * N
        bb = b0 + k * N
        if nv >= CHUNKED_FROM * L:
            max_times_block_chunks(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, ua, yb, bb, K, N, nv, e0 + m * N, dense)
        else:
            max_times_block_pointers(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, ua, yb, bb, K, N, nv, e0 + m * N)
        if nv < N:
            for r in range(PM):
                for c in range(PK):
                    _one(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, ua + r * K + c, yb + r * N, bb + c * N, nv, N,
                         e0 + (m + r) * N)
    for r in range(mr):
        for k in range(kb, k1):
            _one(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, a0 + (m + r) * K + k, y0 + (m + r) * N, b0 + k * N, 0,
                 N, e0 + (m + r) * N)


@njit(cache=True, _nrt=False, error_model="numpy")
def _tile_a(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, a0, y0, b0, m0, g, M, K, N, L, e0, dense):
    # rows m0 .. m0 + g·PM - 1 of D_A[b], a tile of B's rows at a time: the tile (about 256 KB) stays in the
    # core's L2 while the rows' blocks sweep it, where the whole of B (2.4 MB at MiniLM's FFN) streamed from
    # L3 for every PM rows
    kt = max(PK, (1 << 18) // (N * B.itemsize) // PK * PK)
    m1 = min(m0 + g * PM, M)
    for k0 in range(0, K, kt):
        for m in range(m0, m1, PM):
            _rows_a(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, a0, y0, b0, m, min(PM, M - m), k0, min(k0 + kt, K),
                    K, N, L, e0, dense)


@njit(cache=True, parallel=True)
def matmul_bwd_a(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, V_hi_edge, V_lo_edge, B, a_off, b_off, y_off,
                 M, K, N, base, shared):
    """D_A[b, m, k] ⊕= B[b, k, n]·D_Y[b, m, n] over n with pointers: the vector code of ``vector.py`` where
    every consumer's products are finite (a thread per group of up to GROUP·PM rows of D_A), else the scalar
    rows above."""
    Yh, Yl, over, dense = nan_where_no_path(V_hi, V_lo)
    if over:
        _bwd_a_exact(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, V_hi_edge, V_lo_edge, B, a_off, b_off, y_off,
                     M, K, N, base, shared)
        return
    nb = a_off.shape[0]
    L = 64 // V_hi.itemsize  # the lanes of the vector code (vector.lanes)
    blocks = (M + PM - 1) // PM
    # up to GROUP blocks share a tile, fewer where there would be under 4 groups to share among the threads
    # (get_num_threads() would make the function uncacheable)
    g = max(1, min(GROUP, blocks * (1 if shared else nb) // 4))
    groups = (blocks + g - 1) // g
    if shared:
        for t in prange(groups):
            for b in range(nb):
                _tile_a(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, a_off[b], y_off[b], b_off[b], g * PM * t, g, M,
                        K, N, L, base + y_off[b], dense)
    else:
        for t in prange(nb * groups):
            b = t // groups
            _tile_a(U_hi, U_lo, U_hi_edge, U_lo_edge, Yh, Yl, B, a_off[b], y_off[b], b_off[b], g * PM * (t % groups),
                    g, M, K, N, L, base + y_off[b], dense)


# Slot B (D_B[k, n] = ⊕_m A[m, k]·D_Y[m, n]): one row k of B's state per thread, the consumers' rows m visited in
# ascending order against per-n slots, so the inner loop over n vectorises (the generic per-edge kernel ran
# at 0.7 G edges/s on attention's q kᵀ). A consumer element with no path (hi < lo) is masked per lane.
# Each batch is merged on its own, by (value, edge), so batches sharing a block of B may come in any order.
@njit(cache=True, _nrt=False, error_model="numpy")
def _mp_update_b(vh_row, vl_row, w, bh, bl, eh, el, mm, N):
    zero = vh_row.dtype.type(0)
    for n in range(N):
        vh = vh_row[n]
        vl = vl_row[n]
        ch, cl = candidates(w, vh, vl, zero)
        live = vh >= vl
        better = live & ((ch > bh[n]) | (eh[n] < 0))
        bh[n] = ch if better else bh[n]
        eh[n] = mm if better else eh[n]
        worse = live & ((cl < bl[n]) | (el[n] < 0))
        bl[n] = cl if worse else bl[n]
        el[n] = mm if worse else el[n]


@njit(cache=True, error_model="numpy")
def _mp_col(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, base, b, k,
            bh, bl, eh, el):
    _mp_reset(bh, bl, eh, el, N)
    yo = y_off[b]
    for m in range(M):
        w = A[a_off[b] + m * K + k]
        _mp_update_b(V_hi[yo + m * N:yo + m * N + N], V_lo[yo + m * N:yo + m * N + N], w, bh, bl, eh, el,
                     np.int32(m), N)
    j0 = b_off[b] + k * N
    e0 = base + yo
    for n in range(N):  # the edge of consumer element (m, n) is e0 + m * N + n
        j = j0 + n
        if eh[n] >= 0:
            e = e0 + eh[n] * N + n
            if bh[n] > U_hi[j] or (bh[n] == U_hi[j] and e < U_hi_edge[j]):
                U_hi[j] = bh[n]
                U_hi_edge[j] = e
        if el[n] >= 0:
            e = e0 + el[n] * N + n
            if bl[n] < U_lo[j] or (bl[n] == U_lo[j] and e < U_lo_edge[j]):
                U_lo[j] = bl[n]
                U_lo_edge[j] = e


@njit(cache=True, parallel=True)
def matmul_bwd_b(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, V_hi_edge, V_lo_edge, A, a_off, b_off, y_off,
                 M, K, N, base, shared):
    nb = b_off.shape[0]
    if shared:  # one thread per row k of every block: the batches sharing a block are merged in turn
        for k in prange(K):
            bh, bl, eh, el = _mp_slots(N, V_hi)
            for b in range(nb):
                _mp_col(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, base, b,
                        k, bh, bl, eh, el)
    else:
        for t in prange(nb * K):
            bh, bl, eh, el = _mp_slots(N, V_hi)
            _mp_col(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, A, a_off, b_off, y_off, M, K, N, base,
                    t // K, t % K, bh, bl, eh, el)


# (Log-)softmax rows for max-times with pointers, consumer-outer as the layernorm rows above: per row, each
# operand element jj has its own best-so-far slot, the consumers ii are visited in ascending order (the
# lowest edge first, kept by strict comparisons), and the inner loop over jj vectorises. Weights are those
# of the generic row kernel: w = s_i (δ_ij − s_j) (log-softmax: δ_ij − e^{s_j}), rounded to the node's dtype.
# The per-operand argmax reduction of the generic kernel stays scalar: 7 ns an edge on MiniLM's attention.
@njit(cache=True, _nrt=False, error_model="numpy")
def _mp_sm_row(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, s, n, inner, log, base, start, bh, bl, eh, el, sj):
    _mp_reset(bh, bl, eh, el, n)
    dt = s.dtype.type
    sm_row(s, start, n, inner, log, sj)
    for ii in range(n):
        i = start + ii * inner
        vh = V_hi[i]
        vl = V_lo[i]
        if vh < vl:
            continue
        si = s[i]
        ni = np.int32(ii)
        for jj in range(n):
            w = sm_weight(dt(1.0) if ii == jj else dt(0.0), si, sj[jj], log)
            _mp_pick(bh, bl, eh, el, jj, w, vh, vl, ni, dt(0))
    for jj in range(n):
        if eh[jj] < 0:
            continue
        j = start + jj * inner
        e = base + start + eh[jj] * inner
        if bh[jj] > U_hi[j] or (bh[jj] == U_hi[j] and e < U_hi_edge[j]):
            U_hi[j] = bh[jj]
            U_hi_edge[j] = e
        e = base + start + el[jj] * inner
        if bl[jj] < U_lo[j] or (bl[jj] == U_lo[j] and e < U_lo_edge[j]):
            U_lo[j] = bl[jj]
            U_lo_edge[j] = e


@njit(cache=True, parallel=True)
def bwd_softmax(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, V_hi_edge, V_lo_edge, s, outer, n, inner, log, base):
    best = np.empty((outer * inner, 2, n), V_hi.dtype)
    which = np.empty((outer * inner, 2, n), np.int32)
    sj = np.empty((outer * inner, n), s.dtype)
    for t in prange(outer * inner):
        start = (t // inner) * n * inner + t % inner
        _mp_sm_row(U_hi, U_lo, U_hi_edge, U_lo_edge, V_hi, V_lo, s, n, inner, log, base, start, best[t, 0],
                   best[t, 1], which[t, 0], which[t, 1], sj[t])


protect(sys.modules[__name__], depends=(prelude, vector, max_times))  # checksummed disk cache (see checked_cache.py)
