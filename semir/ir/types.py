"""Dtypes, dimensions and tensor types of the IR.

A dimension is an ``int`` or a :class:`SymDim`, an affine expression over
symbols (``S``, ``2*S``, ``S-1``) so that slicing and concatenating tensors
with symbolic dims keeps a checkable type. Symbols are bound to integers when
a program is called.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class DType(enum.Enum):
    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i32, DType.i64)

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(_NUMPY[self])

    @property
    def bits(self) -> int:
        return _BITS[self]

    def __repr__(self) -> str:
        return self.value


_NUMPY = {DType.f32: "float32", DType.f64: "float64", DType.i32: "int32", DType.i64: "int64", DType.bool: "bool"}
_BITS = {DType.f32: 32, DType.f64: 64, DType.i32: 32, DType.i64: 64, DType.bool: 1}


def dtype_from_numpy(dt: np.dtype) -> DType | None:
    for d, name in _NUMPY.items():
        if np.dtype(name) == dt:
            return d
    return None


@dataclass(frozen=True, order=True)
class SymDim:
    """``const + sum(coef * sym)``; terms sorted by symbol, zero coefficients dropped."""

    terms: tuple[tuple[str, int], ...]
    const: int = 0

    @staticmethod
    def make(terms: dict[str, int], const: int) -> Dim:
        kept = tuple(sorted((s, c) for s, c in terms.items() if c != 0))
        return SymDim(kept, const) if kept else const

    def __str__(self) -> str:
        parts = []
        for s, c in self.terms:
            term = s if c == 1 else f"-{s}" if c == -1 else f"{c}*{s}"
            parts.append(term if not parts or term.startswith("-") else "+" + term)
        if self.const:
            parts.append(f"{self.const:+d}")
        return "".join(parts)

    # Affine arithmetic, so that shapes like ``2*H`` or ``x.shape[0] - 1`` can be computed.
    def __add__(self, o):
        return dim_add(self, _as_dim(o))

    __radd__ = __add__

    def __sub__(self, o):
        return dim_add(self, _as_dim(o), sign=-1)

    def __rsub__(self, o):
        return dim_add(_as_dim(o), self, sign=-1)

    def __mul__(self, o):
        if not isinstance(o, int) or isinstance(o, bool):
            raise TypeError(f"a dimension can only be scaled by an integer, not {o!r}")
        return dim_scale(self, o)

    __rmul__ = __mul__

    def __neg__(self):
        return dim_scale(self, -1)

    def bind(self, env: dict[str, int]) -> int | SymDim:
        const, rest = self.const, {}
        for s, c in self.terms:
            if s in env:
                const += c * env[s]
            else:
                rest[s] = c
        return SymDim.make(rest, const)


Dim = int | SymDim


def _as_dim(o) -> Dim:
    if isinstance(o, bool) or not isinstance(o, int | SymDim):
        raise TypeError(f"cannot combine a dimension with {o!r}")
    return o


def _affine(d: Dim) -> tuple[dict[str, int], int]:
    if isinstance(d, int):
        return {}, d
    return dict(d.terms), d.const


def dim_add(a: Dim, b: Dim, sign: int = 1) -> Dim:
    ta, ca = _affine(a)
    tb, cb = _affine(b)
    for s, c in tb.items():
        ta[s] = ta.get(s, 0) + sign * c
    return SymDim.make(ta, ca + sign * cb)


def dim_scale(a: Dim, k: int) -> Dim:
    t, c = _affine(a)
    return SymDim.make({s: v * k for s, v in t.items()}, c * k)


def substitute(d: Dim, env: dict[str, Dim]) -> Dim:
    """Replace symbols of ``d`` by the dims ``env`` gives them (affine composition)."""
    if isinstance(d, int):
        return d
    out: Dim = d.const
    for s, c in d.terms:
        out = dim_add(out, dim_scale(env[s], c) if s in env else SymDim.make({s: c}, 0))
    return out


def unify_dim(want: Dim, got: Dim, env: dict[str, Dim]) -> bool:
    """Make ``want`` (symbols bound by ``env`` or free) equal ``got``, binding at most one free symbol."""
    w = substitute(want, env)
    free = [(s, c) for s, c in (want.terms if isinstance(want, SymDim) else ()) if s not in env]
    if not free:
        return w == got
    if len(free) != 1:
        return False
    sym, coef = free[0]
    rest = dim_add(w, SymDim.make({sym: coef}, 0), sign=-1)
    target = dim_add(got, rest, sign=-1)  # coef * sym == target
    terms, const = _affine(target)
    if const % coef or any(v % coef for v in terms.values()):
        return False
    val = SymDim.make({s: v // coef for s, v in terms.items()}, const // coef)
    if isinstance(val, int) and val < 0:
        return False
    env[sym] = val
    return True


def dim_symbols(d: Dim) -> tuple[str, ...]:
    return () if isinstance(d, int) else tuple(s for s, _ in d.terms)


def bind_dim(d: Dim, env: dict[str, int]) -> Dim:
    return d if isinstance(d, int) else d.bind(env)


def dim_str(d: Dim) -> str:
    return str(d)


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[Dim, ...] = ()

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def bind(self, env: dict[str, int]) -> TensorType:
        return TensorType(self.dtype, tuple(bind_dim(d, env) for d in self.shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def __str__(self) -> str:
        if not self.shape:
            return self.dtype.value
        return f"{self.dtype.value}[{', '.join(map(str, self.shape))}]"

    __repr__ = __str__


def promote(a: DType, b: DType) -> DType:
    """Result dtype of a binary op: floats win over ints, wider wins within a kind."""
    if a == b:
        return a
    if a.is_float != b.is_float:
        return a if a.is_float else b
    if DType.bool in (a, b):
        return b if a == DType.bool else a
    return a if a.bits >= b.bits else b
