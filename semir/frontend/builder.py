"""Graph construction shared by the model language and the Python tracer.

Both frontends call the same :class:`Builder` methods in the same order for
the same program, which is what makes a traced function and the equivalent
model file give identical IR.

Naming is deferred: nodes get ids while building; *binding events*
(``q = ...``) and *scopes* (inlined calls) are recorded in order and turned
into dotted names by :meth:`Builder.finish`. The tracer learns a call's
scope label only after the call returns, so names cannot be fixed earlier.
Rules, for both frontends:

* ``name = expr`` names the node of ``expr`` ``<scope>.name``; if that node
  already has a name, ``<scope>.name`` becomes an alias of it.
* a call bound directly (``h1 = block(x)``) opens the scope ``h1``; a call
  inside a larger expression or a ``return`` opens ``<bound name>.<callee>``
  or ``<callee>``.
* a taken name gets a numeric suffix: ``h``, ``h.2``, ``h.3``.
* unnamed nodes are temporaries ``%0, %1, ...`` in definition order; importers of real models instead name
  them after the named node they feed (``layer0.attention.output.add``), so every step of a path has a name
  that says where it belongs.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

from ..errors import TypeCheckError
from ..ir.node import Loc, Node, Program, make_attrs
from ..ir.ops import Op
from ..ir.shapes import infer
from ..ir.types import DType, TensorType
from . import builtins, numpy_interop
from .value import ValueBase


@dataclass
class Scope:
    parent: Scope | None
    label: str | None = None  # resolved when the call's result is bound
    callee: str = ""

    def path(self, resolved: dict[int, str]) -> str:
        return resolved.get(id(self), "")


@dataclass
class _Draft:
    op: Op
    type: TensorType
    inputs: tuple[int, ...]
    attrs: tuple
    loc: Loc | None
    scope: Scope


@dataclass
class Builder:
    drafts: list[_Draft] = field(default_factory=list)
    events: list[tuple] = field(default_factory=list)  # ("bind", id, scope, rel) | ("scope", scope)
    scopes: list[Scope] = field(default_factory=list)
    input_names: dict[int, str] = field(default_factory=dict)
    loc: Loc | None = None

    def __post_init__(self):
        self.root = Scope(None, "")
        self.scope = self.root

    # -- construction -------------------------------------------------------

    def param(self, name: str, type: TensorType) -> Value:
        nid = self._add(Op.input, type, (), ())
        self.input_names[nid] = name
        return Value(self, nid)

    def const(self, value: Any, dtype: DType) -> Value:
        if dtype.is_float:
            value = float(value)
        elif dtype.is_int:
            value = int(value)
        else:
            value = bool(value)
        return self.op(Op.const, [], dtype=dtype.value, value=value)

    def op(self, op: Op, inputs: list[Value], **attrs: Any) -> Value:
        attrs_t = make_attrs(**attrs)
        for v in inputs:
            if not isinstance(v, Value) or v.builder is not self:
                raise TypeCheckError(f"{op.value}: operand {v!r} is not a value of this program")
        type_ = infer(op, [v.type for v in inputs], dict(attrs_t))
        return Value(self, self._add(op, type_, tuple(v.id for v in inputs), attrs_t))

    def _add(self, op, type_, inputs, attrs) -> int:
        self.drafts.append(_Draft(op, type_, inputs, attrs, self.loc, self.scope))
        return len(self.drafts) - 1

    def lift(self, x: Any, like: Value | None) -> Value:
        """A Value for ``x``; Python numbers become constants typed after ``like`` (weak literals)."""
        if isinstance(x, Value):
            return x
        if isinstance(x, bool | numbers.Number):
            return self.const(x, literal_dtype(x, like.dtype if like is not None else None))
        raise TypeCheckError(f"expected a tensor or a number, got {type(x).__name__}")

    # -- naming -------------------------------------------------------------

    def bind(self, value: Value, name: str) -> None:
        self.events.append(("bind", value.id, self.scope, name))

    def open_scope(self, callee: str, label: str | None) -> Scope:
        scope = Scope(self.scope, label, callee)
        self.events.append(("scope", scope))
        self.scope = scope
        return scope

    def close_scope(self, scope: Scope) -> None:
        self.scope = scope.parent

    def finish(self, output: Value, name: str, name_temporaries: bool = False) -> Program:
        used: set[str] = set()
        suffix: dict[str, int] = {}

        def fresh(base: str, taken: set[str]) -> str:
            cand, k = base, suffix.get(base, 2)
            while cand in taken:
                cand, k = f"{base}.{k}", k + 1
            suffix[base] = k
            taken.add(cand)
            return cand

        names: dict[int, str] = {}
        for nid, pname in self.input_names.items():
            names[nid] = pname
            used.add(pname)
        prefixes: dict[int, str] = {id(self.root): ""}
        prefix_used: set[str] = set()
        aliases: list[tuple[str, int]] = []
        for ev in self.events:
            if ev[0] == "scope":
                scope = ev[1]
                base = _join(prefixes[id(scope.parent)], scope.label or scope.callee)
                prefixes[id(scope)] = fresh("\0" + base, prefix_used)[1:]
            else:
                _, nid, scope, rel = ev
                full = fresh(_join(prefixes[id(scope)], rel), used)
                if nid in names:
                    aliases.append((full, nid))
                else:
                    names[nid] = full
        if output.id not in names:  # paths and tables end at a node a reader can recognise
            names[output.id] = fresh("output", used)
        if name_temporaries:
            self._name_after_consumers(names, used, fresh)
        temp = 0
        nodes = []
        for nid, d in enumerate(self.drafts):
            if nid not in names:
                names[nid] = f"%{temp}"
                temp += 1
            nodes.append(Node(names[nid], d.op, d.type, tuple(names[i] for i in d.inputs), d.attrs, d.loc))
        return Program(name, tuple(nodes), names[output.id], tuple((a, names[n]) for a, n in aliases))

    def _name_after_consumers(self, names: dict[int, str], used: set[str], fresh) -> None:
        """``<owner>.<op>`` for each unnamed node, the owner being the named node its first consumer feeds."""
        first_user: dict[int, int] = {}
        for nid, d in enumerate(self.drafts):
            for i in d.inputs:
                first_user.setdefault(i, nid)
        owner = dict(names)
        for nid in range(len(self.drafts) - 1, -1, -1):  # consumers come later: their owners are known
            if nid in names or nid not in first_user or first_user[nid] not in owner:
                continue
            owner[nid] = owner[first_user[nid]]
            names[nid] = fresh(f"{owner[nid]}.{self.drafts[nid].op.value}", used)


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}.{rel}" if prefix else rel


def literal_dtype(x: Any, other: DType | None) -> DType:
    if isinstance(x, bool):
        return DType.bool
    if other is None:
        return DType.i64 if isinstance(x, numbers.Integral) else DType.f64
    if other.is_float:
        return other
    if isinstance(x, numbers.Integral) and other.is_int:
        return other
    return DType.f64


class Value(ValueBase):
    """A tensor being built. Python operators build IR nodes, as in the model language."""

    __slots__ = ()

    def _bin(self, op: str, other: Any, swap: bool = False) -> Value:
        return builtins.binary(op, other, self) if swap else builtins.binary(op, self, other)

    def __add__(self, o): return self._bin("add", o)
    def __radd__(self, o): return self._bin("add", o, True)
    def __sub__(self, o): return self._bin("sub", o)
    def __rsub__(self, o): return self._bin("sub", o, True)
    def __mul__(self, o): return self._bin("mul", o)
    def __rmul__(self, o): return self._bin("mul", o, True)
    def __truediv__(self, o): return self._bin("div", o)
    def __rtruediv__(self, o): return self._bin("div", o, True)
    def __matmul__(self, o): return self._bin("matmul", o)
    def __rmatmul__(self, o): return self._bin("matmul", o, True)
    def __lt__(self, o): return self._bin("lt", o)
    def __le__(self, o): return self._bin("le", o)
    def __gt__(self, o): return self._bin("gt", o)
    def __ge__(self, o): return self._bin("ge", o)
    def __eq__(self, o): return self._bin("eq", o)  # type: ignore[override]
    def __ne__(self, o): return self._bin("ne", o)  # type: ignore[override]

    def __neg__(self):
        return self.builder.op(Op.neg, [self])

    def __pos__(self):
        return self

    def __pow__(self, p):
        return builtins.power(self, p)

    def __rpow__(self, base):
        raise TypeCheckError("'**' needs a constant exponent; a tensor exponent is not supported")

    def __getitem__(self, key):
        return builtins.getitem(self, key)

    def __abs__(self):
        return self.builder.op(Op.abs, [self])

    # NumPy-style methods and attributes, so traced code reads like array code.
    @property
    def T(self) -> Value:
        return builtins.transpose(self)

    def transpose(self, *axes):
        return builtins.transpose(self, list(axes[0] if len(axes) == 1 and isinstance(axes[0], list | tuple)
                                             else axes) or None)

    def reshape(self, *shape):
        return builtins.reshape(self, list(shape[0] if len(shape) == 1 and isinstance(shape[0], list | tuple)
                                           else shape))

    def sum(self, axis=None, keepdims=False):
        return builtins.BUILTINS["sum"](self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return builtins.BUILTINS["mean"](self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return builtins.BUILTINS["max"](self, axis, keepdims)

    def __array_ufunc__(self, ufunc, method, *args, **kwargs):
        return numpy_interop.ufunc(ufunc, method, args, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return numpy_interop.function(func, args, kwargs)
