"""The entropy semiring's kernels: (log Z, H) per element, combined by the mixture rule.

``acc`` ⊕-s one edge's candidate (log Z + log|w|, H) into an element: H = p₁H₁ + p₂H₂ + H(p₁, p₂) with
p₁ = σ(log Z₁ − log Z₂), so nothing under- or overflows. The dense rows (layernorm, softmax) and the
contractions (``backends/semiring_kernels.py``, as GEMMs) use the shifted linear form instead: per row, shift
by the largest log Z; per operand element j, three weighted sums over the row's consumers i,
  A_j = Σ_i |w_ij| z_i,   B_j = Σ_i |w_ij| log|w_ij| z_i,   C_j = Σ_i |w_ij| t_i   (z_i = Z_i/Z_max,
t_i = z_i (H_i - log z_i)), and one ⊕ of (log Z_max + log A_j, (C_j - B_j)/A_j + log A_j) into the state.
A sum that underflows while paths exist (A_j ≤ 1e-280) falls back to the exact per-edge ⊕.
"""

import math
import sys

import numpy as np
from numba import njit, prange

from .. import prelude
from ..checked_cache import protect
from ..prelude import fma32, ln_weight, log32, log32_wide, log_positive


# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_logz, U_h, j, V_logz, V_h, i, w, e):
    lv = V_logz[i]
    if lv == -np.inf or w == 0:
        return
    lc = lv + math.log(abs(w))
    hc = V_h[i]
    la = U_logz[j]
    if la == -np.inf:
        U_logz[j] = lc
        U_h[j] = hc
        return
    d = la - lc
    x = math.exp(-abs(d))
    l1p = math.log1p(x)
    big = 1.0 / (1.0 + x)
    small = x / (1.0 + x)
    if d >= 0:
        pa = big
        pc = small
    else:
        pa = small
        pc = big
    # -p log p of both parts from log(big) = -log(1 + x) and log(small) = -|d| - log(1 + x): two libm logs
    # fewer than from p itself, and small's log exact where small is subnormal
    U_h[j] = pa * U_h[j] + pc * hc + big * l1p + small * (abs(d) + l1p)
    U_logz[j] = max(la, lc) + l1p

@njit(cache=True, _nrt=False, error_model="numpy")
def _ent_shift(V_logz, V_h, idx, zs, t):
    # z_i and t_i of the row's consumers idx[:], shifted by the row's largest log Z; returns that shift. The
    # exps run vectorised over the row (exp_nonpositive; libm's, a call each, cost more than the row's sums
    # in a softmax row of 32); a consumer without a path has z = t = 0
    n = idx.shape[0]
    c = -np.inf
    for ii in range(n):
        c = max(c, V_logz[idx[ii]])
    if c == -np.inf:
        for ii in range(n):
            zs[ii] = 0.0
            t[ii] = 0.0
        return c
    for ii in range(n):
        t[ii] = np.float64(V_logz[idx[ii]]) - c  # <= 0; -inf without a path
    prelude.exp_nonpositive(t, zs, n)
    for ii in range(n):
        t[ii] = zs[ii] * (V_h[idx[ii]] - t[ii]) if zs[ii] > 0.0 else 0.0
    return c


@njit(cache=True, _nrt=False, error_model="numpy")
def _ent_merge(U_logz, U_h, j, c, A, B, C, tmp):
    # ⊕ of the row's candidate (log Z, H) for operand element j; tmp: two scratch doubles
    la = math.log(A)
    tmp[0] = c + la
    tmp[1] = (C - B) / A + la
    acc(U_logz, U_h, j, tmp[0:1], tmp[1:2], 0, 1.0, 0)

# Layernorm: w_ij = g_i m_ij with g_i = γ_i/σ and m_ij = δ_ij - 1/n - x̂_i x̂_j/n, so |w| log|w| =
# |g_i| |m_ij| (log|g_i| + log|m_ij|): one log per (i, j) left, computed a consumer row at a time by the
# vectorised log_positive instead of libm (the rows are dense: n² logs for n per row); a float32 program's
# weights, logs and sums are float32 (_ent_ln_sums32: 16 lanes of j by 4 consumers a loop, a log per pair).
@njit(cache=True, _nrt=False, error_model="numpy")
def _ent_ln_row(U_logz, U_h, V_logz, V_h, xhat, inv, gamma, n, base, r, S, S32, idx):
    start = r * n
    zs, t, a, b, q, lq, A, B, C, tmp = S[0], S[1], S[2], S[3], S[4], S[5], S[6], S[7], S[8], S[9]
    single = xhat.itemsize == 4  # a float32 program: float32 weights, logs and sums (see _ent_ln_sums32)
    for ii in range(n):
        idx[ii] = start + ii
    c = _ent_shift(V_logz, V_h, idx, zs, t)
    if c == -np.inf:
        return
    for ii in range(n):
        g = abs(gamma[ii] * inv[r])
        a[ii] = g * zs[ii]
        q[ii] = g if a[ii] > 0.0 and g < np.inf else 1.0  # log_positive: finite positive arguments
        t[ii] = g * t[ii]
        A[ii] = 0.0
        B[ii] = 0.0
        C[ii] = 0.0
    log_positive(q, lq, n)
    for ii in range(n):
        g = abs(gamma[ii] * inv[r])
        b[ii] = (a[ii] * (lq[ii] if g < np.inf else math.log(g))) if a[ii] > 0.0 else 0.0
    if single:
        _ent_ln_sums32(xhat, start, n, a, b, t, A, B, C, S32)
    else:
        for ii in range(n):
            if a[ii] == 0.0:
                continue
            xi = xhat[start + ii] / n
            xrow = xhat[start:start + n]  # a view: an offset index keeps the loop scalar
            for jj in range(n):
                q[jj] = abs(1.0 / n + xi * xrow[jj])
            q[ii] = abs(1.0 - 1.0 / n - xi * xhat[start + ii])
            log_positive(q, lq, n)
            ai = a[ii]
            bi = b[ii]
            ti = t[ii]
            for jj in range(n):
                A[jj] += ai * q[jj]
                B[jj] += q[jj] * (bi + ai * lq[jj])
                C[jj] += ti * q[jj]
    for jj in range(n):
        j = start + jj
        if A[jj] > (1e-30 if single else 1e-280):
            _ent_merge(U_logz, U_h, j, c, A[jj], B[jj], C[jj], tmp)
        else:  # the shifted sum underflowed: every edge exactly, with the weights of the other kernels
            dt = xhat.dtype.type
            xnj = xhat[j] / dt(n)
            for ii in range(n):
                i = start + ii
                w = ln_weight(gamma[ii] * inv[r], dt(1.0) if ii == jj else dt(0.0), dt(1.0 / n), xhat[i], xnj)
                acc(U_logz, U_h, j, V_logz, V_h, i, w, base + i)


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _ln_qs32(jj, ii, inv_n, xi, xj):
    # |m_ij| = |δ_ij - 1/n - x̂_i x̂_j/n| in float32, from the product x̂_i x̂_j, which rounds the same either
    # way round: |m_ij| = |m_ji|
    return abs(((np.float32(1.0) if jj == ii else np.float32(0.0)) - inv_n) - (xi * xj) * inv_n)


@njit(cache=True, _nrt=False, error_model="numpy", fastmath={"reassoc"})
def _ent_ln_sums32(xhat, start, n, a, b, t, A, B, C, S32):
    # A, B, C of one row in float32: |m_ij| in the dtype, its float32 log (log32) and float32 sums by FMAs
    # (A's and C's summands are >= 0, B's of either sign: the bound of the float32 GEMMs applies,
    # backends/semiring_kernels.py). |m_ij| = |m_ji|, so each log serves two edges: four consumers i at a
    # time against 16 lanes of j > i add into j's sums, and j's own factors into four sums of i, reduced
    # across the lanes at the end (``reassoc`` lets those reductions vectorise; the sums into j are fma32s,
    # which it never reorders; it may reorder |m|'s own rounding, still one value per pair). 0.58 → 0.37 ns
    # an edge on MiniLM's rows (one core). A consumer without a path (a_i = 0) adds exact zeros: its factors
    # are 0. The per-consumer factors are rounded to float32 once.
    A32, B32, C32, F = S32[0], S32[1], S32[2], S32[3:6]
    f = np.float32
    inv_n = f(1.0 / n)
    xrow = xhat[start:start + n]
    for jj in range(n):
        A32[jj] = 0
        B32[jj] = 0
        C32[jj] = 0
    for ii in range(n):
        live = a[ii] != 0.0
        F[0, ii] = f(a[ii]) if live else f(0.0)
        F[1, ii] = f(b[ii]) if live else f(0.0)
        F[2, ii] = f(t[ii]) if live else f(0.0)
    fa, fb, ft = F[0], F[1], F[2]
    blocked = n - n % 4
    for i0 in range(0, blocked, 4):
        i1, i2, i3 = i0 + 1, i0 + 2, i0 + 3
        x0, x1, x2, x3 = xrow[i0], xrow[i1], xrow[i2], xrow[i3]
        a0, a1, a2, a3, b0, b1, b2, b3 = fa[i0], fa[i1], fa[i2], fa[i3], fb[i0], fb[i1], fb[i2], fb[i3]
        t0, t1, t2, t3 = ft[i0], ft[i1], ft[i2], ft[i3]
        # j from j0 <= i0 on, over a whole number of 16-lane vectors where n allows (no scalar remainder):
        # below i0 nothing (q = 0), from i0 to i0 + 3 (the diagonal block) consumers i0..i3 into j, above
        # both ways, each |m| and its log serving (i, j) and (j, i). Views from j0 with an index from 0: an
        # index from j0 could be negative to Numba, whose wraparound stops the vectoriser.
        span = min(n, (n - i0 + 15) // 16 * 16)
        j0 = n - span
        lo, hi = i0 - j0, i0 + 4 - j0
        xs, As, Bs, Cs = xrow[j0:], A32[j0:], B32[j0:], C32[j0:]
        fas, fbs, fts = fa[j0:], fb[j0:], ft[j0:]
        sa0 = sa1 = sa2 = sa3 = f(0.0)
        sb0 = sb1 = sb2 = sb3 = f(0.0)
        sc0 = sc1 = sc2 = sc3 = f(0.0)
        for k in range(span):
            xj = xs[k]
            q0 = _ln_qs32(k, lo, inv_n, x0, xj) if k >= lo else f(0.0)
            q1 = _ln_qs32(k, lo + 1, inv_n, x1, xj) if k >= lo else f(0.0)
            q2 = _ln_qs32(k, lo + 2, inv_n, x2, xj) if k >= lo else f(0.0)
            q3 = _ln_qs32(k, lo + 3, inv_n, x3, xj) if k >= lo else f(0.0)
            l0, l1, l2, l3 = log32(q0), log32(q1), log32(q2), log32(q3)  # finite at 0, weighted by 0
            As[k] = fma32(a3, q3, fma32(a2, q2, fma32(a1, q1, fma32(a0, q0, As[k]))))
            bsum = fma32(q0, fma32(a0, l0, b0), Bs[k])
            bsum = fma32(q1, fma32(a1, l1, b1), bsum)
            bsum = fma32(q2, fma32(a2, l2, b2), bsum)
            Bs[k] = fma32(q3, fma32(a3, l3, b3), bsum)
            Cs[k] = fma32(t3, q3, fma32(t2, q2, fma32(t1, q1, fma32(t0, q0, Cs[k]))))
            up = k >= hi
            p0, p1, p2, p3 = (q0, q1, q2, q3) if up else (f(0.0), f(0.0), f(0.0), f(0.0))
            faj, fbj, ftj = fas[k], fbs[k], fts[k]
            sa0 += faj * p0
            sa1 += faj * p1
            sa2 += faj * p2
            sa3 += faj * p3
            sb0 += p0 * fma32(faj, l0, fbj)
            sb1 += p1 * fma32(faj, l1, fbj)
            sb2 += p2 * fma32(faj, l2, fbj)
            sb3 += p3 * fma32(faj, l3, fbj)
            sc0 += ftj * p0
            sc1 += ftj * p1
            sc2 += ftj * p2
            sc3 += ftj * p3
        A32[i0] += sa0
        A32[i1] += sa1
        A32[i2] += sa2
        A32[i3] += sa3
        B32[i0] += sb0
        B32[i1] += sb1
        B32[i2] += sb2
        B32[i3] += sb3
        C32[i0] += sc0
        C32[i1] += sc1
        C32[i2] += sc2
        C32[i3] += sc3
    for ii in range(blocked, n):
        xi = xrow[ii]
        for jj in range(blocked, n):
            q = _ln_qs32(jj, ii, inv_n, xi, xrow[jj])
            A32[jj] = fma32(fa[ii], q, A32[jj])
            B32[jj] = fma32(q, fma32(fa[ii], log32(q), fb[ii]), B32[jj])
            C32[jj] = fma32(ft[ii], q, C32[jj])
    for jj in range(n):
        A[jj] = A32[jj]
        B[jj] = B32[jj]
        C[jj] = C32[jj]


@njit(cache=True, parallel=True)
def bwd_layernorm(U_logz, U_h, V_logz, V_h, xhat, inv, gamma, rows, n, base):
    S = np.empty((rows, 10, max(n, 2)))
    S32 = np.empty((rows, 6, n), np.float32)
    idx = np.empty((rows, n), np.int64)
    for r in prange(rows):
        _ent_ln_row(U_logz, U_h, V_logz, V_h, xhat, inv, gamma, n, base, r, S[r], S32[r], idx[r])

# (Log-)softmax: off the diagonal |w_ij| = σ_i ρ_j (softmax: σ = ρ = s; log-softmax: σ = 1, ρ = p = e^s), so
# the sums over i ≠ j factor through three row sums taken as prefix + suffix (no cancelling subtraction of
# the diagonal term): O(n) per row instead of n² per-edge ⊕s.
@njit(cache=True, _nrt=False, error_model="numpy")
def _ent_sm_row(U_logz, U_h, V_logz, V_h, s, n, inner, log, base, row, S, idx):
    start = (row // inner) * n * inner + row % inner
    zs, t, sig, rho, p1, p2, p3, tmp = S[0], S[1], S[2], S[3], S[4], S[5], S[6], S[7]
    d, ls, lr, ld = S[8], S[9], S[10], S[11]
    for ii in range(n):
        idx[ii] = start + ii * inner
    c = _ent_shift(V_logz, V_h, idx, zs, t)
    if c == -np.inf:
        return
    for ii in range(n):
        sig[ii] = 1.0 if log else s[idx[ii]]
        rho[ii] = s[idx[ii]]  # log-softmax: p = e^s (the caller passes e^s)
        d[ii] = abs(1.0 - rho[ii]) if log else abs(s[idx[ii]] * (1.0 - rho[ii]))  # the diagonal weight
    # the logs of σ, ρ and d, vectorised over the row (1 where a value is not positive: its log is never
    # used), where libm's took a call each
    for ii in range(n):
        p1[ii] = sig[ii] if sig[ii] > 0.0 else 1.0
        p2[ii] = rho[ii] if rho[ii] > 0.0 else 1.0
        p3[ii] = d[ii] if d[ii] > 0.0 else 1.0
    log_positive(p1, ls, n)
    log_positive(p2, lr, n)
    log_positive(p3, ld, n)
    z1 = 0.0
    z2 = 0.0
    z3 = 0.0
    for ii in range(n):  # exclusive prefix sums of z σ, z σ log σ and t σ
        p1[ii] = z1
        p2[ii] = z2
        p3[ii] = z3
        if sig[ii] > 0.0:
            z1 += zs[ii] * sig[ii]
            z2 += zs[ii] * sig[ii] * ls[ii]
            z3 += t[ii] * sig[ii]
    z1 = 0.0
    z2 = 0.0
    z3 = 0.0
    for jj in range(n - 1, -1, -1):  # suffix sums, and each operand element's candidate
        j = idx[jj]
        A = zs[jj] * d[jj]
        B = zs[jj] * d[jj] * ld[jj] if d[jj] > 0.0 else 0.0
        C = t[jj] * d[jj]
        if rho[jj] > 0.0:
            A += rho[jj] * (p1[jj] + z1)
            B += rho[jj] * ((p2[jj] + z2) + lr[jj] * (p1[jj] + z1))
            C += rho[jj] * (p3[jj] + z3)
        if sig[jj] > 0.0:
            z1 += zs[jj] * sig[jj]
            z2 += zs[jj] * sig[jj] * ls[jj]
            z3 += t[jj] * sig[jj]
        if A > 1e-280:
            _ent_merge(U_logz, U_h, j, c, A, B, C, tmp)
        else:
            sj = s[j]
            for ii in range(n):
                i = idx[ii]
                dd = 1.0 if ii == jj else 0.0
                acc(U_logz, U_h, j, V_logz, V_h, i, (dd - sj) if log else s[i] * (dd - sj), base + i)


@njit(cache=True, parallel=True)
def bwd_softmax(U_logz, U_h, V_logz, V_h, s, outer, n, inner, log, base):
    S = np.empty((outer * inner, 12, max(n, 2)))
    idx = np.empty((outer * inner, n), np.int64)
    for row in prange(outer * inner):
        _ent_sm_row(U_logz, U_h, V_logz, V_h, s, n, inner, log, base, row, S[row], idx[row])

# A float32 program's contractions (backends/semiring_kernels.py: the GEMMs): the operand of z and t in one
# compiled pass, and the sums' ⊕ into the state in another, where NumPy took about 25 passes over each state.
# Slot a shifts each row of D_Y by its largest log Z and stacks [z; t] by rows; slot b shifts each column and
# stacks [z | t] by columns. z and t in float64, rounded to float32 once. exp and log run vectorised over
# scratch rows (prelude.exp_nonpositive, log_positive): libm's, a call per element, took 10-26 ns an element.
@njit(cache=True, _nrt=False, error_model="numpy")
def gemm_operand32(lz, h, by_row, out, c, S):
    # lz, h: [batches, R, Q]; out: [batches, 2R, Q] (by rows) or [batches, R, 2Q]; c: each row's (column's) shift
    nb, R, Q = lz.shape
    d, e = S[0], S[1]
    for b in range(nb):
        for i in range(R if by_row else Q):
            c[b, i] = -np.inf
        for r in range(R):
            for q in range(Q):
                i = r if by_row else q
                c[b, i] = max(c[b, i], lz[b, r, q])
        for i in range(R if by_row else Q):
            if not np.isfinite(c[b, i]):
                c[b, i] = 0.0  # a row without a path: every z is 0
        for r in range(R):
            for q in range(Q):
                d[(b * R + r) * Q + q] = np.float64(lz[b, r, q]) - c[b, r if by_row else q]  # <= 0
    prelude.exp_nonpositive(d, e, nb * R * Q)
    for b in range(nb):
        for r in range(R):
            for q in range(Q):
                i = (b * R + r) * Q + q
                z = e[i]
                t = z * (np.float64(h[b, r, q]) - d[i]) if z > 0 else 0.0
                out[b, r, q] = np.float32(z)
                if by_row:
                    out[b, R + r, q] = np.float32(t)
                else:
                    out[b, r, Q + q] = np.float32(t)


@njit(cache=True, _nrt=False, error_model="numpy")
def gemm_merge32(A, C, B, c, by_row, U_logz, U_h, start, tiny, redo, S):
    # the candidate (c + log A, max((C - B)/A + log A, 0)) of element start + (b·R + r)·Q + q (cancellation
    # can leave H at -1e-14) ⊕ into the float32 state: set where it is still 0̄, else the mixture rule of acc
    # with p = σ(±d), d = log Z_U - log Z_cand, whose logs are -log(1 + e^-|d|) and -|d| - log(1 + e^-|d|).
    # A sum A <= tiny has lost its precision, or there is no path: left to the caller (redo). Arithmetic in
    # float64, the logs by log32_wide (float32 inputs; an absolute error of 3e-8, where log_positive in float64
    # took a pass of its own), each loop branch-free so that it vectorises (MiniLM's 60 merges: 5.5 → 4.8-5.1
    # ms a call, e^-|d| still in float64). S: [3, n] float64.
    nb, R, Q = A.shape
    n = nb * R * Q
    a, lc, hc = S[0], S[1], S[2]
    for b in range(nb):  # A, B, C are strided views (slices of the GEMMs' outputs): gathered, then the logs
        for r in range(R):  # run on contiguous rows (in the gathering loop they ran scalar: 8.6-9.1 ms)
            for q in range(Q):
                i = (b * R + r) * Q + q
                v = A[b, r, q]
                bad = not v > tiny
                redo[b, r, q] = bad
                a[i] = 1.0 if bad else v
                lc[i] = c[b, r if by_row else q]
                hc[i] = np.float64(C[b, r, q]) - np.float64(B[b, r, q])
    for i in range(n):
        la = log32_wide(np.float32(a[i]))  # a is a float32 value
        lc[i] += la
        hc[i] = max(hc[i] / a[i] + la, 0.0)
    U_lz, U_hh, bad = U_logz[start:start + n], U_h[start:start + n], redo.reshape(n)
    empty = True
    for i in range(n):
        empty &= U_lz[i] == -np.inf
    if empty:
        for i in range(n):
            U_lz[i] = U_lz[i] if bad[i] else lc[i]
            U_hh[i] = U_hh[i] if bad[i] else hc[i]
        return
    for i in range(n):
        u, uh, l, h_c = np.float64(U_lz[i]), np.float64(U_hh[i]), lc[i], hc[i]
        fresh = u == -np.inf
        e = prelude.exp_neg(-abs(u - l)) if not fresh else 0.0  # e^-|d|
        # log(1 + e^-|d|): 1 + e in float32 drops an e below 6e-8, an absolute error that small in log Z
        a = log32_wide(np.float32(1.0 + e))
        big = 1.0 / (1.0 + e)
        small = e * big
        h_small = small * (abs(u - l) + a) if small > 0 else 0.0
        h = (big * uh + small * h_c if u >= l else small * uh + big * h_c) + big * a + h_small
        lz = max(u, l) + a
        U_lz[i] = U_lz[i] if bad[i] else (l if fresh else lz)
        U_hh[i] = U_hh[i] if bad[i] else (h_c if fresh else h)


protect(sys.modules[__name__], depends=(prelude,))  # checksummed disk cache (see checked_cache.py)
