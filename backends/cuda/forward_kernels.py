"""Semiring-independent CUDA kernels of the forward pass: contractions, reductions, normalisations, movement.

One thread per output element (or per row for row-wise ops). Reductions that pick a maximum scan their
row in order and keep the first maximum, as ``np.argmax`` does, so the selected element (and with it
every path through it) is the same as on the other backends.
"""

import math

import numpy as np
from numba import cuda

from .launch import TILE


@cuda.jit
def fill(out, value):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = value


@cuda.jit
def gather(out, x, m):
    """out[o] = x[m[o]] (transpose, reshape, index, take)."""
    o = cuda.grid(1)
    if o < out.size:
        out[o] = x[m[o]]


@cuda.jit
def gather_part(out, x, m):
    """One operand of a concat: out[o] = x[m[o]] where m[o] >= 0."""
    o = cuda.grid(1)
    if o < out.size and m[o] >= 0:
        out[o] = x[m[o]]


@cuda.jit
def reduce_rows(out, x, rows, scale):
    """out[o] = scale · Σ_c x[rows[o, c]] (sum, mean)."""
    o = cuda.grid(1)
    if o < out.size:
        s = 0.0
        for c in range(rows.shape[1]):
            s += x[rows[o, c]]
        out[o] = s * scale


@cuda.jit
def max_rows(out, sel, x, rows):
    """out[o] = max_c x[rows[o, c]]; sel[o] = the first maximum's flat index (ties to the lowest position)."""
    o = cuda.grid(1)
    if o < out.size:
        best = rows[o, 0]
        for c in range(1, rows.shape[1]):
            idx = rows[o, c]
            if x[idx] > x[best]:
                best = idx
        sel[o] = best
        out[o] = x[best]


@cuda.jit
def softmax_rows(out, x, outer, n, inner, log):
    t = cuda.grid(1)
    if t < outer * inner:
        start = (t // inner) * n * inner + t % inner
        m = x[start]
        for c in range(1, n):
            m = max(m, x[start + c * inner])
        s = 0.0
        for c in range(n):
            s += math.exp(x[start + c * inner] - m)
        ls = math.log(s)
        for c in range(n):
            i = start + c * inner
            out[i] = (x[i] - m - ls) if log else math.exp(x[i] - m) / s


@cuda.jit
def layernorm_rows(out, xhat, inv, x, gamma, beta, rows, n, eps):
    r = cuda.grid(1)
    if r < rows:
        start = r * n
        mu = 0.0
        for c in range(n):
            mu += x[start + c]
        mu /= n
        var = 0.0
        for c in range(n):
            d = x[start + c] - mu
            var += d * d
        iv = 1.0 / math.sqrt(var / n + eps)
        inv[r] = iv
        for c in range(n):
            xh = (x[start + c] - mu) * iv
            xhat[start + c] = xh
            out[start + c] = xh * gamma[c] + beta[c]


@cuda.jit
def matmul(out, A, B, a_off, b_off, y_off, M, K, N):
    """Batched Y[b] = A[b] @ B[b] in shared-memory tiles; grid (N tiles, M tiles, batches)."""
    sa = cuda.shared.array((TILE, TILE), dtype=np.float64)
    sb = cuda.shared.array((TILE, TILE), dtype=np.float64)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    n = cuda.blockIdx.x * TILE + tx
    m = cuda.blockIdx.y * TILE + ty
    b = cuda.blockIdx.z
    s = 0.0
    for k0 in range(0, K, TILE):
        sa[ty, tx] = A[a_off[b] + m * K + k0 + tx] if m < M and k0 + tx < K else 0.0
        sb[ty, tx] = B[b_off[b] + (k0 + ty) * N + n] if k0 + ty < K and n < N else 0.0
        cuda.syncthreads()
        for t in range(TILE):
            s += sa[ty, t] * sb[t, tx]
        cuda.syncthreads()
    if m < M and n < N:
        out[y_off[b] + m * N + n] = s
