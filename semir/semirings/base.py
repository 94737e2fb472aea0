"""Semirings as data.

A carrier element is a *state*: a dict of NumPy arrays (fields), all of one
element shape (``topk:K`` adds a trailing axis of size K). Every operation
is vectorised over elements, which is how both the reference backend and the
generated kernels use them.

Path semirings also carry integer pointer fields: the id of the edge that
achieved the value (``EDGE_NONE`` for 0̄, ``EDGE_END`` at the seeded output).
Ties between equal values break toward the lower edge id, so every
backend picks the same path no matter in which order it combines candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

State = dict[str, np.ndarray]

EDGE_NONE = np.iinfo(np.int64).max  # 0̄: no path; sorts after every real edge
EDGE_END = -1  # the output element itself (the seed 1̄)


@dataclass(frozen=True)
class Field:
    """One carrier array. ``dtype`` None means the program's float dtype."""

    name: str
    zero: float | int | bool
    one: float | int | bool
    dtype: str | None = None
    pointer: bool = False


@dataclass(frozen=True)
class ScalarFunctions:
    """A one-field semiring over real numbers as scalar functions: ⊕ ``plus(a, b)``, ⊗ ``times(a, b)``,
    ``lift(w)`` (the element of an edge of weight ``w``), ``finalize(x)`` (the reported value)."""

    zero: float
    one: float
    plus: Callable[[float, float], float]
    times: Callable[[float, float], float]
    lift: Callable[[float], float]
    finalize: Callable[[float], float]


@dataclass(frozen=True)
class Semiring:
    """A semiring given by vectorised functions over states.

    ``plus(a, b)``: ⊕. ``times(a, b)``: ⊗ of two carrier elements.
    ``lift(w)``: the element of an edge of weight ``w``. ``extend(s, w, edge)``:
    ``lift(w) ⊗ s``, setting pointer fields to ``edge`` (defaults to
    ``times(lift(w), s)``). ``finalize(s)``: the reported value.
    ``kind`` tells a backend which kernel strategy fits: "selective"
    (argmax-style, with pointers) or "ring" (embeddable into ordinary
    arithmetic, e.g. BLAS), or "generic".
    """

    name: str
    fields: tuple[Field, ...]
    plus: Callable[[State, State], State]
    times: Callable[[State, State], State]
    lift: Callable[[np.ndarray], State]
    finalize: Callable[[State], np.ndarray]
    extend_fn: Callable[[State, np.ndarray, np.ndarray], State] | None = None
    kind: str = "generic"
    k: int = 0  # trailing carrier axis (topk)
    description: str = ""
    paths: str | None = None  # how pointers are followed: "signed" (hi/lo), "single", "ranked"
    components: tuple[str, ...] = field(default=())  # value fields a path can start from
    # semantics="brunoflow" (the paper's engine): the (value field, pointer field) pairs that brunoflow
    # computes by the op's vector-Jacobian product, one per field, summed inside the op and then ordered
    # (the largest into the first pair: hi, lo); pointers keep the ⊕-best edge. Only max_product has them:
    # ring semirings' ⊕ already is that sum, and brunoflow has no other selective statistic.
    lumped: tuple[tuple[str, str], ...] = ()
    # What a non-finite forward value on a gradient path does to the reported values: "ieee" (the arithmetic
    # itself is defined: sum_product), "structural" (only whether a weight is non-zero matters: counting,
    # boolean), or "nan" (max, sort and log of NaN or inf depend on evaluation order, so every reported
    # value is NaN and paths are refused: the one policy on every backend).
    nonfinite: str = "nan"
    # A semiring made by ``from_scalar``: its scalar definitions, which a code-generating backend compiles
    # (the vectorised functions above are built from them for the reference backend).
    scalar: ScalarFunctions | None = None
    # The semiring with pointers whose values-only variant this is (``compile(..., pointers="lazy")``): it has
    # no pointer fields, so the sweep moves a third of max_product's bytes; a path's pointers are recovered
    # when asked (``Result.path``), with ``eager``'s ⊕ and tie rule, so they are the ones ``eager`` keeps.
    eager: Semiring | None = None

    @property
    def lazy(self) -> bool:
        return self.eager is not None

    @property
    def selective(self) -> bool:
        return self.kind == "selective"

    @property
    def has_paths(self) -> bool:
        return self.paths is not None

    def field_dtype(self, f: Field, float_dtype: np.dtype) -> np.dtype:
        return np.dtype(f.dtype) if f.dtype else np.dtype(float_dtype)

    def _full(self, shape, which: str, float_dtype) -> State:
        tail = (self.k,) if self.k else ()
        out = {}
        for f in self.fields:
            v = getattr(f, which)
            dt = self.field_dtype(f, float_dtype)
            out[f.name] = np.full(tuple(shape) + tail, v, dtype=dt)
        if self.k and which == "one":  # topk 1̄ = [1]: one entry, the rest missing
            for f in self.fields:
                out[f.name][..., 1:] = f.zero
        return out

    def zeros(self, shape, float_dtype=np.float64) -> State:
        return self._full(shape, "zero", float_dtype)

    def ones(self, shape, float_dtype=np.float64) -> State:
        return self._full(shape, "one", float_dtype)

    def extend(self, s: State, w: np.ndarray, edge: np.ndarray) -> State:
        if self.extend_fn is not None:
            return self.extend_fn(s, w, edge)
        return self.times(self.lift(w), s)


def take(s: State, idx) -> State:
    return {k: v[idx] for k, v in s.items()}


def where(mask: np.ndarray, a: State, b: State) -> State:
    """Elementwise choice: ``b`` where mask, else ``a`` (mask broadcasts over a trailing K axis)."""
    out = {}
    for k in a:
        m = mask
        while m.ndim < a[k].ndim:
            m = m[..., None]
        out[k] = np.where(m, b[k], a[k])
    return out


def reshape(s: State, shape, k: int = 0) -> State:
    tail = (k,) if k else ()
    return {n: v.reshape(tuple(shape) + tail) for n, v in s.items()}


def reduce_state(sr: Semiring, s: State, axes: tuple[int, ...], rank: int) -> State:
    """⊕ over the given element axes by pairwise halving (order-free for selective semirings)."""
    if not axes:
        return s
    keep = [i for i in range(rank) if i not in axes]
    tail = [rank] if sr.k else []
    moved = {k: np.transpose(v, keep + list(axes) + tail) for k, v in s.items()}
    first = next(iter(moved.values()))
    lead = first.shape[:len(keep)]
    n = int(np.prod(first.shape[len(keep):len(keep) + len(axes)], dtype=np.int64))
    flat = {k: v.reshape(lead + (n,) + v.shape[len(keep) + len(axes):]) for k, v in moved.items()}
    ax = len(keep)
    if n == 0:
        return sr.zeros(lead, _float_of(s))
    while n > 1:
        if n % 2:
            pad = sr.zeros(lead + (1,), _float_of(s))
            flat = {k: np.concatenate([v, pad[k]], axis=ax) for k, v in flat.items()}
            n += 1
        a = {k: np.take(v, np.arange(0, n, 2), axis=ax) for k, v in flat.items()}
        b = {k: np.take(v, np.arange(1, n, 2), axis=ax) for k, v in flat.items()}
        flat = sr.plus(a, b)
        n //= 2
    return {k: np.take(v, 0, axis=ax) for k, v in flat.items()}


def _float_of(s: State):
    for v in s.values():
        if v.dtype.kind == "f":
            return v.dtype
    return np.float64
