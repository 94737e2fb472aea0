"""What the Numba and CUDA backends run for each semiring, by semiring name.

A :class:`~semir.semirings.Semiring` is backend-neutral data (fields, ⊕, ⊗, lift, extend, finalize, kind);
its kernels live in ordinary modules, one per semiring, under ``backends/numba/semirings/``. One
:class:`Kernels` entry per semiring names them:

``module``
    the module defining ``acc(U_<fields>..., j, V_<fields>..., i, w, e)`` (D_u[j] ⊕= lift(w) ⊗ D_v[i], with
    pointer e, on flat field arrays; topk: [n, K]), which the generic kernels of
    ``backends/numba/templates.py`` call for every edge and the CUDA backend compiles from its source, and
    the structured kernels it specialises (``templates.MODULE_KERNELS``: the contractions, the dense rows of
    layernorm and softmax). The generated module imports them.
``gemm``
    (slot A, slot B) contraction backward as BLAS calls, for semirings whose ⊕/⊗ embed into ordinary
    arithmetic; signature (U, V, other, a_off, b_off, y_off, M, K, N), U/V tuples of fields.
``acc``, ``prelude``
    a user-defined semiring's ``acc`` as source, and the module-level source before it (the imports of its
    own compiled functions, ``user_semiring.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from semir.semirings import BUILTIN, Semiring
from semir.semirings.base import State, reduce_state


@dataclass(frozen=True)
class Kernels:
    module: str | None = None
    gemm: tuple[Callable, Callable] | None = None
    acc: str = ""  # a user-defined semiring's (no module)
    prelude: str = ""
    # ``acc`` does not vectorise (branches, libm calls): a fused backward loop computes the weights that call
    # a function in a vectorised loop of their own first (``skeleton.group_backward``)
    scalar_acc: bool = False


def _linear_gemm(U, V, other, ao, bo, yo, M, K, N, slot):
    """D_A[b] += D_Y[b] @ B[b]^T (slot a) or D_B[b] += A[b]^T @ D_Y[b] (slot b), by BLAS."""
    for b in range(len(ao)):
        y = V[yo[b]:yo[b] + M * N].reshape(M, N)
        if slot == "a":
            U[ao[b]:ao[b] + M * K].reshape(M, K)[...] += _times_t(y, other[bo[b]:bo[b] + K * N].reshape(K, N))
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


def _times_t(Y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Y @ W^T over the last two axes. With few rows of Y (the tokens of a sentence against a weight), as
    (W @ Y^T)^T: OpenBLAS runs a transposed B a third slower than a plain one when B is the large operand
    (MiniLM's slot-A GEMMs, one core: 19.8 ms → 13.5 ms; at 512 rows and more the plain form is faster)."""
    if Y.shape[-2] >= 256:
        return Y @ np.swapaxes(W, -1, -2)
    return np.swapaxes(W @ np.swapaxes(Y, -1, -2), -1, -2)


def _mm(Yp: np.ndarray, Wf: np.ndarray, slot: str) -> np.ndarray:
    return _times_t(Yp, Wf) if slot == "a" else np.swapaxes(Wf, -1, -2) @ Yp


def _underflow(A: np.ndarray, lz: np.ndarray, W: np.ndarray, slot: str, tiny: float = 1e-280) -> np.ndarray:
    """Where the shifted sum A underflowed although a path exists: those elements are redone edge by edge.
    The existence GEMM runs only when some A is that small (it almost never is): one GEMM in four saved.
    ``tiny``: float32 sums (1e-30) lose their relative precision far above float64's (1e-280)."""
    small = ~(A > tiny)
    if not small.any():
        return small
    return _exists(lz, W, slot) & small


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


def _entropy_gemm(U, V, other, ao, bo, yo, M, K, N, slot: str) -> None:
    """Entropy's contraction: a float32 program's by two compiled passes around its float32 GEMMs
    (``gemm_operand32``, ``gemm_merge32``: the operand, then the ⊕ of the sums into the state), any other
    by :func:`_entropy_contract` through the generic ring form. Batches laid out in order (attention's
    heads) go through each pass and one batched GEMM together: one call per head cost about 60 µs."""
    if not (V[0].dtype == np.float32 and other.dtype == np.float32):
        _ring_gemm("entropy", _entropy_contract, U, V, other, ao, bo, yo, M, K, N, slot)
        return
    nb = len(ao)
    if (slot == "a" and nb > 1 and np.all(bo == bo[0]) and np.array_equal(ao - ao[0], np.arange(nb) * M * K)
            and np.array_equal(yo - yo[0], np.arange(nb) * M * N)):
        M, nb, ao, bo, yo = nb * M, 1, ao[:1], bo[:1], yo[:1]  # one weight for every batch (see _ring_gemm)
    if nb > 1 and all(np.array_equal(o, np.arange(nb) * size) for o, size in ((ao, M * K), (bo, K * N), (yo, M * N))):
        _entropy_block(U, V, other, 0, 0, 0, M, K, N, nb, slot)
        return
    for b in range(nb):
        _entropy_block(U, V, other, ao[b], bo[b], yo[b], M, K, N, 1, slot)


def _entropy_block(U, V, other, ao, bo, yo, M, K, N, nb, slot: str) -> None:
    """``nb`` consecutive batches of one float32 contraction, from offsets ao, bo, yo (see _entropy_gemm)."""
    from .numba.contractions import abs_xlogx
    from .numba.semirings import entropy as kernels

    lz, h = (f[yo:yo + nb * M * N].reshape(nb, M, N) for f in V)
    by_row = slot == "a"
    if by_row:
        W, start, shape = other[bo:bo + nb * K * N].reshape(nb, K, N), ao, (nb, M, K)
        Y, c = np.empty((nb, 2 * M, N), np.float32), np.empty((nb, M))
    else:
        W, start, shape = other[ao:ao + nb * M * K].reshape(nb, M, K), bo, (nb, K, N)
        Y, c = np.empty((nb, M, 2 * N), np.float32), np.empty((nb, N))
    kernels.gemm_operand32(lz, h, by_row, Y, c, np.empty((2, nb * M * N)))
    aw, awl = abs_xlogx(W)
    z = Y[:, :M] if by_row else Y[:, :, :N]
    AC, B = _mm(Y, aw, slot), _mm(z, awl, slot)
    A, C = (AC[:, :M], AC[:, M:]) if by_row else (AC[:, :, :N], AC[:, :, N:])
    redo = np.empty(shape, bool)
    kernels.gemm_merge32(A, C, B, c, by_row, U[0], U[1], start, np.float32(1e-30), redo,
                          np.empty((3, redo.size)))
    for b in np.nonzero(redo.any(axis=(1, 2)))[0]:  # exact ⊕ of the edges of each element whose sum
        # underflowed although a path exists: without a zero weight, wherever its consumers' row (column) has one
        if aw[b].min() > 0:
            live = np.isfinite(lz[b]).any(axis=-1 if by_row else 0)
            exists = np.broadcast_to(live[:, None] if by_row else live[None, :], shape[1:])
        else:
            exists = _exists(lz[b], W[b], slot)
        _entropy_exact(U, {"logz": lz[b], "h": h[b]}, W[b], redo[b] & exists, start + b * shape[1] * shape[2],
                       shape[1:], slot)


def _exists(lz: np.ndarray, W: np.ndarray, slot: str) -> np.ndarray:
    """Whether each element of the contraction has a path: a consumer with one through a nonzero weight (a count
    of such pairs: exact in float32 below 2^24 of them)."""
    dt = np.float32 if lz.shape[-1 if slot == "a" else -2] < 2**24 else np.float64
    return _mm(np.isfinite(lz).astype(dt), (W != 0).astype(dt), slot) > 0


def _entropy_exact(U, Y: State, W, where, start: int, shape, slot: str) -> None:
    """⊕ into U of the exact sum over the edges of each element ``where``."""
    sr = BUILTIN["entropy"]
    for p, q in zip(*np.nonzero(where)):
        st, w = ({f: Y[f][p, :] for f in Y}, W[q, :]) if slot == "a" else ({f: Y[f][:, q] for f in Y}, W[:, p])
        exact = reduce_state(sr, sr.extend(st, w, np.zeros(len(w), np.int64)), (0,), 1)
        j = start + p * shape[1] + q
        cur = {f: U[i][j:j + 1] for i, f in enumerate(Y)}
        new = sr.plus(cur, {f: np.asarray(exact[f]).reshape(1).astype(cur[f].dtype) for f in Y})
        for i, f in enumerate(Y):
            U[i][j] = new[f][0]


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


KERNELS: dict[str, Kernels] = {
    "sum_product": Kernels(module="semir.backends.numba.semirings.sum_product", gemm=(
        lambda U, V, B, ao, bo, yo, M, K, N: _linear_gemm(U[0], V[0], B, ao, bo, yo, M, K, N, "a"),
        lambda U, V, A, ao, bo, yo, M, K, N: _linear_gemm(U[0], V[0], A, ao, bo, yo, M, K, N, "b"))),
    "max_product": Kernels(module="semir.backends.numba.semirings.max_product"),
    "max_abs": Kernels(module="semir.backends.numba.semirings.max_abs"),
    "entropy": Kernels(module="semir.backends.numba.semirings.entropy", scalar_acc=True, gemm=(
        lambda U, V, B, ao, bo, yo, M, K, N: _entropy_gemm(U, V, B, ao, bo, yo, M, K, N, "a"),
        lambda U, V, A, ao, bo, yo, M, K, N: _entropy_gemm(U, V, A, ao, bo, yo, M, K, N, "b"))),
    "log": Kernels(module="semir.backends.numba.semirings.log", scalar_acc=True, gemm=_gemms("log", _log_contract)),
    "counting": Kernels(module="semir.backends.numba.semirings.counting", scalar_acc=True,
                       gemm=_gemms("counting", _counting_contract)),
    "boolean": Kernels(module="semir.backends.numba.semirings.boolean", gemm=_gemms("boolean", _boolean_contract)),
    "topk": Kernels(module="semir.backends.numba.semirings.topk"),
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
