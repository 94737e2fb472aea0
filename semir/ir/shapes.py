"""Shape and dtype inference: one rule per op.

A rule takes the operand types and the node's attributes and returns the
result type, or raises :class:`TypeCheckError` with a message that the
caller places at the operator's source position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import TypeCheckError
from .ops import BINARY, COMPARE, Op
from .types import Dim, DType, SymDim, TensorType, dim_add, promote

ShapeRule = Callable[[list[TensorType], dict[str, Any]], TensorType]


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for ax in range(rank):
        dims = [s[ax - rank + len(s)] for s in shapes if ax - rank + len(s) >= 0]
        picked: Dim = 1
        for d in dims:
            if d == 1 or d == picked:
                continue
            if picked == 1:
                picked = d
            else:
                pretty = " and ".join("[" + ", ".join(map(str, s)) + "]" for s in shapes)
                raise TypeCheckError(f"shapes {pretty} do not broadcast (dimension {picked} vs {d})")
        out.append(picked)
    return tuple(out)


def _float(t: TensorType, what: str) -> None:
    if not t.dtype.is_float:
        raise TypeCheckError(f"{what} expects a floating-point operand, got {t}")


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1) or (rank == 0 and axis not in (0, -1)):
        raise TypeCheckError(f"{what} {axis} is out of range for a tensor of rank {rank}")
    return axis % rank if rank else 0


def _unary(ins, a):
    return ins[0]


def _unary_float(op: Op) -> ShapeRule:
    def rule(ins, a):
        _float(ins[0], op.value)
        return ins[0]
    return rule


def _numeric(op: Op) -> ShapeRule:
    def rule(ins, a):
        if ins[0].dtype == DType.bool:
            raise TypeCheckError(f"{op.value} expects a numeric operand, got {ins[0]}")
        return ins[0]
    return rule


def _binary(ins, a):
    x, y = ins
    if DType.bool in (x.dtype, y.dtype):
        raise TypeCheckError(f"arithmetic on a boolean operand ({x} and {y})")
    return TensorType(promote(x.dtype, y.dtype), broadcast_shapes(x.shape, y.shape))


def _compare(ins, a):
    return TensorType(DType.bool, broadcast_shapes(ins[0].shape, ins[1].shape))


def _where(ins, a):
    c, x, y = ins
    return TensorType(promote(x.dtype, y.dtype), broadcast_shapes(c.shape, x.shape, y.shape))


def _cast(ins, a):
    return TensorType(DType(a["dtype"]), ins[0].shape)


def _const(ins, a):
    return TensorType(DType(a["dtype"]), ())


def _input(ins, a):
    raise TypeCheckError("input nodes carry their declared type")


def _reduce(op: Op) -> ShapeRule:
    def rule(ins, a):
        x = ins[0]
        if op is Op.mean:
            _float(x, "mean")
        axes = a.get("axes")
        axes = tuple(range(x.rank)) if axes is None else axes
        for ax in axes:
            if not 0 <= ax < x.rank:
                raise TypeCheckError(f"{op.value}: axis {ax} is out of range for {x}")
        if a.get("keepdims"):
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return TensorType(x.dtype, shape)
    return rule


def _rowwise(op: Op) -> ShapeRule:
    def rule(ins, a):
        x = ins[0]
        _float(x, op.value)
        if x.rank == 0:
            raise TypeCheckError(f"{op.value} needs a tensor of rank >= 1, got {x}")
        if not 0 <= a["axis"] < x.rank:
            raise TypeCheckError(f"{op.value}: axis {a['axis']} is out of range for {x}")
        return x
    return rule


def _layernorm(ins, a):
    x, g, b = ins
    _float(x, "layernorm")
    if x.rank == 0:
        raise TypeCheckError(f"layernorm needs a tensor of rank >= 1, got {x}")
    for what, t in (("gamma", g), ("beta", b)):
        if t.rank != 1 or t.shape[0] != x.shape[-1]:
            raise TypeCheckError(f"layernorm: {what} must have shape [{x.shape[-1]}] (the last axis of {x}), got {t}")
    return TensorType(promote(promote(x.dtype, g.dtype), b.dtype), x.shape)


def _matmul(ins, a):
    x, y = ins
    _float(x, "matmul")
    _float(y, "matmul")
    if x.rank == 0 or y.rank == 0:
        raise TypeCheckError(f"matmul needs operands of rank >= 1, got {x} and {y}")
    xs = (1,) + x.shape if x.rank == 1 else x.shape
    ys = y.shape + (1,) if y.rank == 1 else y.shape
    if xs[-1] != ys[-2]:
        raise TypeCheckError(f"matmul: contracted dimensions differ ({x} @ {y}: {xs[-1]} vs {ys[-2]})")
    batch = broadcast_shapes(xs[:-2], ys[:-2])
    shape = batch + (xs[-2],) * (x.rank > 1) + (ys[-1],) * (y.rank > 1)
    return TensorType(promote(x.dtype, y.dtype), shape)


def _transpose(ins, a):
    x = ins[0]
    axes = a["axes"]
    if sorted(axes) != list(range(x.rank)):
        raise TypeCheckError(f"transpose: axes {list(axes)} are not a permutation of the {x.rank} axes of {x}")
    return TensorType(x.dtype, tuple(x.shape[i] for i in axes))


def numel(shape: tuple[Dim, ...]) -> tuple[int, tuple[str, ...]] | None:
    """The element count as (int factor, sorted symbols), or None if not a monomial."""
    k, syms = 1, []
    for d in shape:
        if isinstance(d, int):
            k *= d
        elif len(d.terms) == 1 and d.terms[0][1] == 1 and d.const == 0:
            syms.append(d.terms[0][0])
        else:
            return None
    return k, tuple(sorted(syms))


def _reshape(ins, a):
    x = ins[0]
    shape = tuple(a["shape"])
    before, after = numel(x.shape), numel(shape)
    if before is not None and after is not None and before != after:
        raise TypeCheckError(f"reshape: cannot reshape {x} into [{', '.join(map(str, shape))}]")
    return TensorType(x.dtype, shape)


def slice_length(d: Dim, start, stop, step) -> Dim:
    if all(isinstance(x, int) for x in (d, start or 0, stop or 0)):
        return len(range(d)[slice(start, stop, step)])
    if step not in (None, 1):
        raise TypeCheckError(f"a slice with step {step} needs static bounds and dimension, got {d}")

    def at(i, default):
        if i is None:
            return default
        return dim_add(d, i) if isinstance(i, int) and i < 0 else i

    n = dim_add(at(stop, d), at(start, 0), sign=-1)
    if isinstance(n, int) and n < 0:
        raise TypeCheckError(f"slice {start}:{stop} of a dimension {d} is empty")
    return n


def index_shape(x: TensorType, spec: tuple) -> tuple[Dim, ...]:
    if len(spec) > x.rank:
        raise TypeCheckError(f"too many indices ({len(spec)}) for {x}")
    out: list[Dim] = []
    for item, d in zip(spec, x.shape):
        if isinstance(item, int):
            if isinstance(d, int) and not -d <= item < d:
                raise TypeCheckError(f"index {item} is out of range for a dimension of size {d} in {x}")
            continue
        out.append(slice_length(d, *item))
    return tuple(out) + x.shape[len(spec):]


def _index(ins, a):
    return TensorType(ins[0].dtype, index_shape(ins[0], a["spec"]))


def _concat(ins, a):
    axis = a["axis"]
    first = ins[0]
    if not 0 <= axis < first.rank:
        raise TypeCheckError(f"concat: axis {axis} is out of range for {first}")
    total: Dim = 0
    dtype = first.dtype
    for t in ins:
        if t.rank != first.rank or any(
                i != axis and d != e for i, (d, e) in enumerate(zip(t.shape, first.shape))):
            raise TypeCheckError(f"concat: {t} does not match {first} outside axis {axis}")
        total = dim_add(total, t.shape[axis])
        dtype = promote(dtype, t.dtype)
    shape = first.shape[:axis] + (total,) + first.shape[axis + 1:]
    return TensorType(dtype, shape)


def _take(ins, a):
    table, ids = ins
    if table.rank == 0:
        raise TypeCheckError(f"take: the table must have rank >= 1, got {table}")
    if not ids.dtype.is_int:
        raise TypeCheckError(f"take: ids must be integers, got {ids}")
    return TensorType(table.dtype, ids.shape + table.shape[1:])


SHAPE_RULES: dict[Op, ShapeRule] = {
    Op.input: _input,
    Op.const: _const,
    Op.neg: _numeric(Op.neg),
    Op.abs: _numeric(Op.abs),
    Op.square: _numeric(Op.square),
    Op.exp: _unary_float(Op.exp),
    Op.log: _unary_float(Op.log),
    Op.tanh: _unary_float(Op.tanh),
    Op.sigmoid: _unary_float(Op.sigmoid),
    Op.relu: _numeric(Op.relu),
    Op.gelu: _unary_float(Op.gelu),
    Op.erf: _unary_float(Op.erf),
    Op.sqrt: _unary_float(Op.sqrt),
    Op.rsqrt: _unary_float(Op.rsqrt),
    Op.sin: _unary_float(Op.sin),
    Op.cos: _unary_float(Op.cos),
    Op.pow: _unary_float(Op.pow),
    Op.cast: _cast,
    Op.detach: _unary,
    **{op: _binary for op in BINARY},
    **{op: _compare for op in COMPARE},
    Op.where: _where,
    Op.sum: _reduce(Op.sum),
    Op.mean: _reduce(Op.mean),
    Op.max: _reduce(Op.max),
    Op.softmax: _rowwise(Op.softmax),
    Op.log_softmax: _rowwise(Op.log_softmax),
    Op.layernorm: _layernorm,
    Op.matmul: _matmul,
    Op.transpose: _transpose,
    Op.reshape: _reshape,
    Op.index: _index,
    Op.concat: _concat,
    Op.take: _take,
}


def infer(op: Op, ins: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    return SHAPE_RULES[op](ins, attrs)


__all__ = ["SHAPE_RULES", "infer", "broadcast_shapes", "normalize_axis", "index_shape", "SymDim"]
