"""The builtin functions of the model language, shared with the Python API (``semir.ops``).

Each builtin desugars its arguments into one primitive with canonical
attributes (non-negative axes, explicit axis lists), so that ``softmax(x,
axis=-1)`` and ``softmax(x, axis=1)`` give the same IR. A call whose
operands are all numbers is evaluated at once and stays a number, exactly as
Python would when tracing.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import TypeCheckError, suggest
from ..ir.ops import Op
from ..ir.shapes import normalize_axis, numel
from ..ir.types import Dim, DType, SymDim
from .value import ValueBase as Value  # any traced tensor (the builder's Value adds operators)

REQUIRED = object()


@dataclass(frozen=True)
class Builtin:
    name: str
    params: tuple[tuple[str, Any], ...]  # (name, default or REQUIRED)
    fn: Callable[..., Any]

    def signature(self) -> str:
        parts = [p if d is REQUIRED else f"{p}={d!r}" for p, d in self.params]
        return f"{self.name}({', '.join(parts)})"

    def bind(self, args: list, kwargs: dict[str, Any]) -> list:
        names = [p for p, _ in self.params]
        if len(args) > len(names):
            raise TypeCheckError(f"{self.signature()} takes at most {len(names)} arguments, got {len(args)}")
        vals = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeCheckError(f"{self.name}() has no argument {k!r}{suggest(k, names)}; "
                                     f"valid: {', '.join(names)}")
            if k in vals:
                raise TypeCheckError(f"{self.name}() got argument {k!r} twice")
            vals[k] = v
        out = []
        for p, d in self.params:
            if p not in vals and d is REQUIRED:
                raise TypeCheckError(f"{self.signature()} is missing argument {p!r}")
            out.append(vals.get(p, d))
        return out

    def __call__(self, *args, **kwargs):
        return self.fn(*self.bind(list(args), kwargs))


BUILTINS: dict[str, Builtin] = {}


def builtin(name: str, *params: str | tuple[str, Any]):
    def deco(fn):
        ps = tuple(p if isinstance(p, tuple) else (p, REQUIRED) for p in params)
        BUILTINS[name] = Builtin(name, ps, fn)
        return fn
    return deco


def _is_num(x: Any) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, Value)


def _value(*xs: Any) -> Value | None:
    for x in xs:
        if isinstance(x, Value):
            return x
        if isinstance(x, list | tuple):
            v = _value(*x)
            if v is not None:
                return v
    return None


def _literal_eval(op: Op, args: list, **attrs: Any) -> Any:
    from ..ir.eval_rules import EVAL_RULES

    with np.errstate(all="ignore"):
        out = EVAL_RULES[op]([np.asarray(a) for a in args], attrs)
    return np.asarray(out).item()


def _unary(op: Op):
    def fn(x, **attrs):
        if _is_num(x):
            return _literal_eval(op, [x], **attrs)
        if not isinstance(x, Value):
            raise TypeCheckError(f"{op.value} expects a tensor or a number, got {type(x).__name__}")
        return x.builder.op(op, [x], **attrs)
    return fn


for _op in (Op.exp, Op.log, Op.tanh, Op.sigmoid, Op.relu, Op.erf, Op.sqrt, Op.rsqrt, Op.abs, Op.square,
            Op.sin, Op.cos, Op.detach):
    builtin(_op.value, "x")(_unary(_op))
BUILTINS["stop_gradient"] = Builtin("stop_gradient", (("x", REQUIRED),), _unary(Op.detach))


@builtin("gelu", "x", ("approximate", "none"))
def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise TypeCheckError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _unary(Op.gelu)(x, approximate="tanh" if approximate == "tanh" else None)


@builtin("cast", "x", "dtype")
def cast(x, dtype):
    try:
        dt = DType(dtype)
    except ValueError:
        raise TypeCheckError(f"cast: unknown dtype {dtype!r}; valid: f32, f64, i32, i64, bool") from None
    if _is_num(x):
        return _literal_eval(Op.cast, [np.asarray(x, dt.numpy)])
    return x.builder.op(Op.cast, [x], dtype=dt.value)


_BINARY_OPS = {o.value: o for o in (Op.add, Op.sub, Op.mul, Op.div, Op.maximum, Op.minimum, Op.lt, Op.le,
                                     Op.gt, Op.ge, Op.eq, Op.ne, Op.matmul)}
_PY_BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
              "div": lambda a, b: a / b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
              "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b,
              "ne": lambda a, b: a != b, "maximum": max, "minimum": min}


def binary(name: str, a: Any, b: Any) -> Any:
    op = _BINARY_OPS[name]
    v = _value(a, b)
    if v is None:
        if op is Op.matmul:
            raise TypeCheckError("'@' needs tensor operands")
        try:
            return _PY_BINARY[name](a, b)
        except ZeroDivisionError:
            raise TypeCheckError("division by zero in a constant expression") from None
        except TypeError as e:  # e.g. a dimension times a dimension
            raise TypeCheckError(str(e)) from None
    b_ = v.builder
    a_v = b_.lift(a, _value(b))
    b_v = b_.lift(b, a_v)
    return b_.op(op, [a_v, b_v])


builtin("maximum", "a", "b")(lambda a, b: binary("maximum", a, b))
builtin("minimum", "a", "b")(lambda a, b: binary("minimum", a, b))
builtin("matmul", "a", "b")(lambda a, b: binary("matmul", a, b))


@builtin("where", "cond", "a", "b")
def where(cond, a, b):
    if not isinstance(cond, Value):
        return a if cond else b
    bld = cond.builder
    av = bld.lift(a, _value(b))
    bv = bld.lift(b, av)
    return bld.op(Op.where, [cond, av, bv])


def power(x: Value, p: Any) -> Value:
    if not _is_num(p) or isinstance(p, bool):
        raise TypeCheckError("'**' needs a constant number as exponent")
    return x.builder.op(Op.pow, [x], exponent=p)


def _axes(axis: Any, rank: int, what: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(rank))
    items = list(axis) if isinstance(axis, list | tuple) else [axis]
    for a in items:
        if not isinstance(a, int) or isinstance(a, bool):
            raise TypeCheckError(f"{what}: axis must be an integer or a list of integers, got {a!r}")
    axes = sorted({normalize_axis(a, rank, f"{what}: axis") for a in items})
    return tuple(axes)


def _reduction(op: Op):
    def fn(x, axis=None, keepdims=False):
        if _is_num(x):
            return x
        return x.builder.op(op, [x], axes=_axes(axis, x.ndim, op.value), keepdims=True if keepdims else None)
    return fn


for _op in (Op.sum, Op.mean, Op.max):
    builtin(_op.value, "x", ("axis", None), ("keepdims", False))(_reduction(_op))


def _rowwise(op: Op):
    def fn(x, axis=-1):
        if not isinstance(x, Value):
            raise TypeCheckError(f"{op.value} expects a tensor")
        if not isinstance(axis, int):
            raise TypeCheckError(f"{op.value}: axis must be an integer, got {axis!r}")
        return x.builder.op(op, [x], axis=normalize_axis(axis, x.ndim, f"{op.value}: axis"))
    return fn


builtin("softmax", "x", ("axis", -1))(_rowwise(Op.softmax))
builtin("log_softmax", "x", ("axis", -1))(_rowwise(Op.log_softmax))


@builtin("layernorm", "x", "gamma", "beta", ("eps", 1e-12))
def layernorm(x, gamma, beta, eps=1e-12):
    if not all(isinstance(t, Value) for t in (x, gamma, beta)):
        raise TypeCheckError("layernorm expects tensors x, gamma, beta")
    if not _is_num(eps):
        raise TypeCheckError(f"layernorm: eps must be a number, got {eps!r}")
    return x.builder.op(Op.layernorm, [x, gamma, beta], eps=float(eps))


@builtin("transpose", "x", ("axes", None))
def transpose(x, axes=None):
    if not isinstance(x, Value):
        raise TypeCheckError("transpose expects a tensor")
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(
        normalize_axis(a, x.ndim, "transpose: axis") for a in axes)
    return x.builder.op(Op.transpose, [x], axes=axes)


def _infer_reshape(x: Value, shape: list) -> tuple[Dim, ...]:
    for d in shape:
        if not isinstance(d, int | SymDim) or isinstance(d, bool):
            raise TypeCheckError(f"reshape: dimensions must be integers or symbols, got {d!r}")
    holes = [i for i, d in enumerate(shape) if isinstance(d, int) and d == -1]
    if len(holes) > 1:
        raise TypeCheckError("reshape: at most one dimension may be -1")
    if not holes:
        return tuple(shape)
    rest = [d for d in shape if not (isinstance(d, int) and d == -1)]
    total, part = numel(x.shape), numel(tuple(rest))
    if total is None or part is None or part[0] == 0 or total[0] % part[0]:
        raise TypeCheckError(f"reshape: cannot infer -1 when reshaping {x.type} into {shape}")
    syms = list(total[1])
    for s in part[1]:
        if s not in syms:
            raise TypeCheckError(f"reshape: cannot infer -1 when reshaping {x.type} into {shape}")
        syms.remove(s)
    k = total[0] // part[0]
    if len(syms) > 1:
        raise TypeCheckError(f"reshape: -1 would be a product of symbols {syms}; write it out")
    dim: Dim = SymDim.make({syms[0]: k}, 0) if syms else k
    return tuple(dim if i == holes[0] else d for i, d in enumerate(shape))


@builtin("reshape", "x", "shape")
def reshape(x, shape):
    if not isinstance(x, Value):
        raise TypeCheckError("reshape expects a tensor")
    if not isinstance(shape, list | tuple):
        raise TypeCheckError(f"reshape: shape must be a list, got {shape!r}")
    return x.builder.op(Op.reshape, [x], shape=_infer_reshape(x, list(shape)))


@builtin("concat", "xs", ("axis", 0))
def concat(xs, axis=0):
    v = _value(xs)
    if v is None or not isinstance(xs, list | tuple):
        raise TypeCheckError("concat expects a list of tensors")
    vals = [v.builder.lift(x, v) for x in xs]
    return v.builder.op(Op.concat, vals, axis=normalize_axis(axis, v.ndim, "concat: axis"))


@builtin("take", "table", "ids")
def take(table, ids):
    if not isinstance(table, Value) or not isinstance(ids, Value):
        raise TypeCheckError("take expects a table tensor and an integer ids tensor")
    return table.builder.op(Op.take, [table, ids])


def getitem(x: Value, key: Any) -> Value:
    items = key if isinstance(key, tuple) else (key,)
    spec: list = []
    for it in items:
        if isinstance(it, Value):
            raise TypeCheckError("indexing with a tensor is not supported; use take(table, ids)")
        if isinstance(it, slice):
            for part in (it.start, it.stop, it.step):
                if part is not None and not isinstance(part, int | SymDim):
                    raise TypeCheckError(f"slice bounds must be integers, got {part!r}")
            if it.step == 0:
                raise TypeCheckError("slice step cannot be zero")
            spec.append((it.start, it.stop, it.step))
        elif isinstance(it, int) and not isinstance(it, bool):
            spec.append(it)
        else:
            raise TypeCheckError(f"index must be an integer or a slice, got {it!r}")
    while spec and spec[-1] == (None, None, None):
        spec.pop()
    if not spec:
        return x
    return x.builder.op(Op.index, [x], spec=tuple(spec))


def lookup(name: str) -> Builtin:
    if name not in BUILTINS:
        raise TypeCheckError(f"unknown function {name!r}{suggest(name, BUILTINS)}")
    return BUILTINS[name]
