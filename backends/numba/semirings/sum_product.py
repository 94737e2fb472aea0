"""sum_product, the gradient: ⊕ is +, ⊗ is × w.

Its dense rows need no per-edge loop: layernorm's and softmax's backward are the O(n) Jacobian-vector
products (the row sums m₁ = Σ γ_i v_i / n, m₂ = Σ γ_i v_i x̂_i / n; softmax's Σ s_i v_i). Contractions run
as BLAS GEMMs (``backends/semiring_kernels.py``).
"""

import sys

from numba import njit, prange

from ..checked_cache import protect


# self-contained (no helpers): the CUDA backend compiles this function's source for the device
@njit(cache=True, _nrt=False, error_model="numpy")
def acc(U_v, j, V_v, i, w, e):
    U_v[j] += w * V_v[i]


@njit(cache=True, parallel=True)
def bwd_layernorm(U_v, V_v, xhat, inv, gamma, rows, n, base):
    for r in prange(rows):
        start = r * n
        m1 = 0.0
        m2 = 0.0
        for i in range(n):
            gi = gamma[i] * V_v[start + i]
            m1 += gi
            m2 += gi * xhat[start + i]
        m1 /= n
        m2 /= n
        for j in range(n):
            U_v[start + j] += inv[r] * (gamma[j] * V_v[start + j] - m1 - xhat[start + j] * m2)


@njit(cache=True, parallel=True)
def bwd_softmax(U_v, V_v, s, outer, n, inner, log, base):
    for t in prange(outer * inner):
        a = t // inner
        b = t % inner
        start = a * n * inner + b
        tot = 0.0
        for ii in range(n):
            i = start + ii * inner
            tot += V_v[i] if log else s[i] * V_v[i]
        for jj in range(n):
            j = start + jj * inner
            if log:
                U_v[j] += V_v[j] - s[j] * tot  # s: e^s for log-softmax
            else:
                U_v[j] += s[j] * (V_v[j] - tot)


protect(sys.modules[__name__])  # checksummed disk cache (see checked_cache.py)
