"""The Numba kernels of the built-in semirings, by semiring name: the code the generated modules are made of.
(max_product's and entropy's are ordinary modules, ``backends/numba/semirings/``; the others are still
source here.)

A :class:`~semir.semirings.Semiring` is backend-neutral data (fields, ⊕, ⊗, lift, extend, finalize, kind);
what a Numba or CUDA kernel does with it lives here, one :class:`Kernels` entry per semiring:

``acc``
    Numba source of ``acc(U_<fields>..., j, V_<fields>..., i, w, e)``: D_u[j] ⊕= lift(w) ⊗ D_v[i], with
    pointer e, on flat field arrays (topk: [n, K]). Generated kernels (Numba and CUDA) call it for every
    edge; without it the semiring runs on the reference backend only.
``matmul``
    source replacing the generic ``matmul_bwd_a`` of ``backends/numba/templates.py`` (same signature), and
    ``matmul_bwd_b`` too where it defines one: selective semirings reduce each output row against per-element
    slots in registers and merge once.
``reduce``
    register-local reduction (init, step, merge) snippets: dense row kernels reduce the candidates of one
    operand element in locals and merge once. Placeholders: {w} weight, {i} consumer element, {e} pointer,
    {j} operand element. Without them, kernels call ``acc`` for every edge.
``layernorm``, ``softmax``
    source replacing the generic ``bwd_layernorm`` / ``bwd_softmax`` (same signatures): the shifted linear
    form of a log-domain semiring, or the O(n) Jacobian-vector product of the linear one.
``gemm``
    (slot A, slot B) contraction backward as BLAS calls, for semirings whose ⊕/⊗ embed into ordinary
    arithmetic; signature (U, V, other, a_off, b_off, y_off, M, K, N), U/V tuples of fields.
``module``
    instead of source strings, an ordinary module under ``backends/numba/semirings/`` defining ``acc`` and the
    structured kernels it specialises (``templates.MODULE_KERNELS``), which the generated module imports:
    max_product with pointers, its values-only variant, and entropy (whose contractions stay ``gemm``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from semir.semirings import BUILTIN, Semiring
from semir.semirings.base import State, reduce_state


@dataclass(frozen=True)
class Kernels:
    acc: str = ""
    matmul: str | None = None
    reduce: tuple[str, str, str] | None = None
    layernorm: str | None = None
    softmax: str | None = None
    gemm: tuple[Callable, Callable] | None = None
    prelude: str = ""  # module-level source placed before ``acc`` (user-defined semirings import their functions)
    # an ordinary module (``backends/numba/semirings/``) defining ``acc`` and the structured kernels it
    # specialises; the generated module imports them instead of taking source from the fields above
    module: str | None = None


def _linear_gemm(U, V, other, ao, bo, yo, M, K, N, slot):
    """D_A[b] += D_Y[b] @ B[b]^T (slot a) or D_B[b] += A[b]^T @ D_Y[b] (slot b), by BLAS."""
    for b in range(len(ao)):
        y = V[yo[b]:yo[b] + M * N].reshape(M, N)
        if slot == "a":
            U[ao[b]:ao[b] + M * K].reshape(M, K)[...] += y @ other[bo[b]:bo[b] + K * N].reshape(K, N).T
        else:
            U[bo[b]:bo[b] + K * N].reshape(K, N)[...] += other[ao[b]:ao[b] + M * K].reshape(M, K).T @ y


def _ring_gemm(name: str, contract, U, V, other, ao, bo, yo, M, K, N, slot: str) -> None:
    sr = BUILTIN[name]
    names = [f.name for f in sr.fields]
    nb = len(ao)
    if (slot == "a" and nb > 1 and np.all(bo == bo[0]) and np.array_equal(ao - ao[0], np.arange(nb) * M * K)
            and np.array_equal(yo - yo[0], np.arange(nb) * M * N)):
        # one weight for every batch (a batch of sentences through a linear layer): the batches' rows are
        # one [nb·M, N] block, so one GEMM, and |W|, |W|·log|W| once, instead of nb of each
        M, nb, ao, bo, yo = nb * M, 1, ao[:1], bo[:1], yo[:1]
    regular = nb > 1 and np.array_equal(ao, np.arange(nb) * M * K) and np.array_equal(bo, np.arange(nb) * K * N)
    if regular:  # every batch its own blocks, laid out in order: one batched GEMM
        Y = {f: V[i][:nb * M * N].reshape(nb, M, N) for i, f in enumerate(names)}
        W = (other[:nb * K * N].reshape(nb, K, N) if slot == "a" else other[:nb * M * K].reshape(nb, M, K))
        shape = (nb, M, K) if slot == "a" else (nb, K, N)
        cand, redo = contract(Y, W, slot)  # W in the program's dtype: each contraction widens what it needs
        if not redo.any():
            size = int(np.prod(shape))
            cur = {f: U[i][:size].reshape(shape) for i, f in enumerate(names)}
            new = _plus(sr, cur, {f: cand[f].astype(cur[f].dtype) for f in names})
            for i, f in enumerate(names):
                U[i][:size] = new[f].reshape(-1)
            return
    for b in range(nb):
        Y = {f: V[i][yo[b]:yo[b] + M * N].reshape(M, N) for i, f in enumerate(names)}
        if slot == "a":
            W, start, shape = other[bo[b]:bo[b] + K * N].reshape(K, N), ao[b], (M, K)
        else:
            W, start, shape = other[ao[b]:ao[b] + M * K].reshape(M, K), bo[b], (K, N)
        size = shape[0] * shape[1]
        cand, redo = contract(Y, W, slot)  # W in the program's dtype: each contraction widens what it needs
        for p, q in zip(*np.nonzero(redo)):  # exact ⊕ of the individual edges
            if slot == "a":
                st, w = {f: Y[f][p, :] for f in names}, W[q, :]
            else:
                st, w = {f: Y[f][:, q] for f in names}, W[:, p]
            exact = reduce_state(sr, sr.extend(st, w, np.zeros(len(w), np.int64)), (0,), 1)
            for f in names:
                cand[f][p, q] = exact[f]
        cur = {f: U[i][start:start + size].reshape(shape) for i, f in enumerate(names)}
        new = _plus(sr, cur, {f: cand[f].astype(cur[f].dtype) for f in names})
        for i, f in enumerate(names):
            U[i][start:start + size] = new[f].reshape(-1)


def _plus(sr: Semiring, cur: State, cand: State) -> State:
    """cur ⊕ cand, where cur is often still 0̄ (the first contraction into a node): then cand itself, as ⊕
    with 0̄ gives it, without the semiring's elementwise ⊕ (entropy's: 2 ms on a 32×1536 state, 8 passes)."""
    if all(np.all(cur[f.name] == f.zero) for f in sr.fields):
        return cand
    return sr.plus(cur, cand)


def _shifted(lz: np.ndarray, slot: str):
    c = np.max(lz, axis=-1 if slot == "a" else -2, keepdims=True, initial=-np.inf)  # empty batches: no rows
    c = np.where(np.isfinite(c), c, 0.0)
    with np.errstate(invalid="ignore"):
        zs = np.exp(lz - c)
    return c, zs


def _mm(Yp: np.ndarray, Wf: np.ndarray, slot: str) -> np.ndarray:
    Wt = np.swapaxes(Wf, -1, -2)
    return Yp @ Wt if slot == "a" else Wt @ Yp


def _underflow(A: np.ndarray, lz: np.ndarray, W: np.ndarray, slot: str, tiny: float = 1e-280) -> np.ndarray:
    """Where the shifted sum A underflowed although a path exists: those elements are redone edge by edge.
    The existence GEMM runs only when some A is that small (it almost never is): one GEMM in four saved.
    ``tiny``: float32 sums (1e-30) lose their relative precision far above float64's (1e-280)."""
    small = ~(A > tiny)
    if not small.any():
        return small
    exists = _mm(np.isfinite(lz).astype(np.float64), (W != 0).astype(np.float64), slot) > 0
    return exists & small


# A float32 program's entropy contractions run as float32 GEMMs (twice the rate of float64, half the bytes).
# Every summand of A = Σ|w| z and C = Σ|w| t is >= 0 (z = Z/Z_max in (0, 1], t = z (H - log z) >= 0), so their
# float32 sums are accurate to a few ulp relative; B = Σ|w| log|w| z is not sign-definite, and the
# absolute error of H = (C - B)/A + log A is bounded by ε_32·N·(E_p[H_i - log z_i] + E_p|log|w||), a few
# ulp of the terms H is made of. On MiniLM (6 layers, 32 tokens, float32) H at the input differs from the
# float64 program's by at most 2.3e-7 relative with float64 GEMMs and 6.3e-7 with float32 ones. A float32 sum
# below 1e-30 has lost bits (subnormal products): those elements are redone exactly.
def _entropy_contract(Y, W, slot):
    lz = Y["logz"].astype(np.float64)
    c, zs = _shifted(lz, slot)
    logzs = np.where(zs > 0, lz - c, 0.0)
    t = zs * (Y["h"].astype(np.float64) - logzs)
    from .numba.contractions import abs_xlogx

    aw, awl = abs_xlogx(W)  # one compiled pass instead of eight NumPy ones, in W's dtype
    single = aw.dtype == np.float32
    if single:  # A and C in one GEMM: z and t stacked along the rows the contraction keeps
        axis = -2 if slot == "a" else -1
        AC = _mm(np.concatenate([zs, t], axis=axis).astype(np.float32), aw, slot).astype(np.float64)
        A, C = np.split(AC, 2, axis=axis)
        B = _mm(zs.astype(np.float32), awl, slot).astype(np.float64)
    else:
        A, B, C = _mm(zs, aw, slot), _mm(zs, awl, slot), _mm(t, aw, slot)
    with np.errstate(divide="ignore", invalid="ignore"):
        logA = np.log(A)
        h = np.where(A > 0, np.maximum((C - B) / A + logA, 0.0), 0.0)  # ≥ 0; cancellation can leave -1e-14
    logz = np.where(A > 0, c + logA, -np.inf)
    return {"logz": logz, "h": h}, _underflow(A, lz, W, slot, 1e-30 if single else 1e-280)


def _log_contract(Y, W, slot):
    lz = Y["logz"].astype(np.float64)
    c, zs = _shifted(lz, slot)
    aw = np.abs(W, dtype=np.float64)
    A = _mm(zs, aw, slot)
    with np.errstate(divide="ignore"):
        logz = np.where(A > 0, c + np.log(A), -np.inf)
    return {"logz": logz}, _underflow(A, lz, W, slot)


def _counting_contract(Y, W, slot):
    nz = (W != 0).astype(np.float64)
    lc = Y["log_count"].astype(np.float64)
    c, zs = _shifted(lc, slot)
    A = _mm(zs, nz, slot)
    with np.errstate(divide="ignore", over="ignore"):
        log_count = np.where(A > 0, c + np.log(A), -np.inf)
        count = _mm(Y["count"].astype(np.float64), nz, slot)
    return {"count": count, "log_count": log_count}, _underflow(A, lc, nz, slot)


def _boolean_contract(Y, W, slot):
    b = _mm(Y["b"].astype(np.float64), (W != 0).astype(np.float64), slot) > 0
    return {"b": b}, np.zeros(b.shape, bool)


def _gemms(name: str, contract):
    return (lambda U, V, B, ao, bo, yo, M, K, N: _ring_gemm(name, contract, U, V, B, ao, bo, yo, M, K, N, "a"),
            lambda U, V, A, ao, bo, yo, M, K, N: _ring_gemm(name, contract, U, V, A, ao, bo, yo, M, K, N, "b"))








# Merge the K candidates of D_v[i]·w into the sorted list D_u[j]: candidate r (rank r at the consumer)
# goes in at its place by (larger |v|, then lower edge, then lower rank); the list stays of length K.
_TOPK_NUMBA = """
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
"""


KERNELS: dict[str, Kernels] = {
    "sum_product": Kernels(
        acc="""
def acc(U_v, j, V_v, i, w, e):
    U_v[j] += w * V_v[i]
""",
        reduce=("acc0 = 0.0", "acc0 += ({w}) * V_v[{i}]", "U_v[{j}] += acc0"),
        layernorm="""
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
""",
        softmax="""
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
                U_v[j] += V_v[j] - math.exp(s[j]) * tot
            else:
                U_v[j] += s[j] * (V_v[j] - tot)
""",
        gemm=(lambda U, V, B, ao, bo, yo, M, K, N: _linear_gemm(U[0], V[0], B, ao, bo, yo, M, K, N, "a"),
          lambda U, V, A, ao, bo, yo, M, K, N: _linear_gemm(U[0], V[0], A, ao, bo, yo, M, K, N, "b")),
    ),
    "max_product": Kernels(module="semir.backends.numba.semirings.max_product"),
    "max_abs": Kernels(
        acc="""
def acc(U_v, U_edge, j, V_v, V_edge, i, w, e):
    if V_edge[i] == EDGE_NONE:
        return
    c = w * V_v[i]
    a = abs(c)
    b = abs(U_v[j])
    if a > b or (a == b and e < U_edge[j]):
        U_v[j] = c
        U_edge[j] = e
""",
        matmul="""
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
        if en < 0:
            continue
        j = a_off[b] + m * K + k
        e = base + yo + en
        u = abs(U_v[j])
        if best > u or (best == u and e < U_edge[j]):
            U_v[j] = bv
            U_edge[j] = e


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
""",
        reduce=("best = -1.0\nbv = 0.0\nbe = -1", """
if V_edge[{i}] != EDGE_NONE:
    c = V_v.dtype.type({w}) * V_v[{i}]
    a = abs(c)
    if a > best:
        best = a
        bv = c
        be = {e}""", """
if be >= 0:
    u = abs(U_v[{j}])
    if best > u or (best == u and be < U_edge[{j}]):
        U_v[{j}] = bv
        U_edge[{j}] = be"""),
    ),
    "entropy": Kernels(module="semir.backends.numba.semirings.entropy", gemm=_gemms("entropy", _entropy_contract)),
    "log": Kernels(
        acc="""
def acc(U_logz, j, V_logz, i, w, e):
    lv = V_logz[i]
    if lv == -np.inf or w == 0:
        return
    lc = lv + math.log(abs(w))
    la = U_logz[j]
    if la == -np.inf:
        U_logz[j] = lc
    else:
        U_logz[j] = max(la, lc) + math.log1p(math.exp(-abs(la - lc)))
""",
        gemm=_gemms("log", _log_contract),
    ),
    "counting": Kernels(
        acc="""
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
""",
        gemm=_gemms("counting", _counting_contract),
    ),
    "boolean": Kernels(
        acc="""
def acc(U_b, j, V_b, i, w, e):
    if w != 0 and V_b[i]:
        U_b[j] = True
""",
        gemm=_gemms("boolean", _boolean_contract),
    ),
    "topk": Kernels(
        acc=_TOPK_NUMBA,
    ),
    "max_product/values": Kernels(module="semir.backends.numba.semirings.max_product_values"),
}


def acc_source(k: Kernels) -> str:
    """``acc`` as source: the field, or the module's function without its decorator (the CUDA backend compiles
    it for the device). The module is imported here, not with this one: it imports the Numba backend."""
    if not k.module:
        return k.acc
    import importlib
    import inspect
    import textwrap

    body = textwrap.dedent(inspect.getsource(importlib.import_module(k.module).acc.py_func)).splitlines()
    return "\n".join(line for line in body if not line.startswith("@")) + "\n"


def field_args(sr: Semiring, *prefixes: str) -> list[str]:
    """The comma-separated field arguments of a kernel signature, one string per prefix: ``U_hi, U_lo, ...``."""
    return [", ".join(f"{p}_{f.name}" for f in sr.fields) for p in prefixes]


def kernels_for(sr: Semiring) -> Kernels | None:
    """The semiring's kernels (``topk:K`` share one entry), or None: then it runs on the reference backend.
    A user-defined semiring's ``acc`` calls its own functions, compiled by Numba (``user_semiring.py``)."""
    if sr.scalar is not None:
        from .user_semiring import acc_source as user_acc
        from .user_semiring import token

        prelude, acc = user_acc(token(sr.scalar))
        return Kernels(acc=acc, prelude=prelude)
    return KERNELS.get(sr.name.split(":")[0] + ("/values" if sr.lazy else ""))
