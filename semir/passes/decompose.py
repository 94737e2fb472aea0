"""``decompose``: lower softmax, log_softmax, layernorm and gelu into elementary ops.

This is the granularity option of CONTRACT §2, not a semantics-preserving
rewrite: forward values and the gradient (sum_product) are unchanged, but
the gradient graph becomes finer, so other semirings see more paths. The
stabilising max-subtraction goes through ``detach`` and creates no edges,
exactly as in the primitive softmax. Each lowered op keeps its name on its
final node.
"""

from __future__ import annotations

import math

from ..ir.node import Node, Program, make_attrs
from ..ir.ops import Op
from ..ir.shapes import infer
from .base import PassContext, register

LOWERED = (Op.softmax, Op.log_softmax, Op.layernorm, Op.gelu)


class _Emitter:
    def __init__(self, prog: Program):
        self.by_name = dict(prog.by_name)
        self.out: list[Node] = []
        temps = [int(n.name[1:]) for n in prog.nodes if n.name[1:].isdigit() and n.name.startswith("%")]
        self.next = max(temps, default=-1) + 1

    def __call__(self, op: Op, inputs: list[str], name: str | None = None, **attrs) -> str:
        attrs_t = make_attrs(**attrs)
        t = infer(op, [self.by_name[i].type for i in inputs], dict(attrs_t))
        if name is None:
            name, self.next = f"%{self.next}", self.next + 1
        node = Node(name, op, t, tuple(inputs), attrs_t, self.loc)
        self.by_name[name] = node
        self.out.append(node)
        return name

    def const(self, value: float, like: str) -> str:
        return self(Op.const, [], dtype=self.by_name[like].type.dtype.value, value=float(value))


def _softmax(e: _Emitter, n: Node, log: bool) -> None:
    x, axis = n.inputs[0], (n.attr("axis"),)
    m = e(Op.detach, [e(Op.max, [x], axes=axis, keepdims=True)])
    z = e(Op.sub, [x, m])
    ez = e(Op.exp, [z])
    s = e(Op.sum, [ez], axes=axis, keepdims=True)
    if log:
        e(Op.sub, [z, e(Op.log, [s])], name=n.name)
    else:
        e(Op.div, [ez, s], name=n.name)


def _layernorm(e: _Emitter, n: Node) -> None:
    x, g, b = n.inputs
    last = (e.by_name[x].type.rank - 1,)
    xc = e(Op.sub, [x, e(Op.mean, [x], axes=last, keepdims=True)])
    var = e(Op.mean, [e(Op.square, [xc])], axes=last, keepdims=True)
    inv = e(Op.rsqrt, [e(Op.add, [var, e.const(n.attr("eps"), x)])])
    e(Op.add, [e(Op.mul, [e(Op.mul, [xc, inv]), g]), b], name=n.name)


def _gelu(e: _Emitter, n: Node) -> None:
    x = n.inputs[0]
    if n.attr("approximate") == "tanh":
        inner = e(Op.add, [x, e(Op.mul, [e(Op.pow, [x], exponent=3), e.const(0.044715, x)])])
        t = e(Op.tanh, [e(Op.mul, [inner, e.const(math.sqrt(2.0 / math.pi), x)])])
    else:
        t = e(Op.erf, [e(Op.mul, [x, e.const(1.0 / math.sqrt(2.0), x)])])
    e(Op.mul, [e(Op.mul, [x, e(Op.add, [t, e.const(1.0, x)])]), e.const(0.5, x)], name=n.name)


_RULES = {
    Op.softmax: lambda e, n: _softmax(e, n, False),
    Op.log_softmax: lambda e, n: _softmax(e, n, True),
    Op.layernorm: _layernorm,
    Op.gelu: _gelu,
}


def lower(prog: Program, rules: dict) -> Program:
    """Each node whose op has a rule replaced by what the rule emits (its last node keeps the name)."""
    e = _Emitter(prog)
    for n in prog.nodes:
        e.loc = n.loc
        if n.op in rules:
            rules[n.op](e, n)
        else:
            e.out.append(n)
    return prog.replace(nodes=tuple(e.out))


@register("decompose")
def decompose(prog: Program, ctx: PassContext) -> Program:
    """Lower softmax, log_softmax, layernorm, gelu to elementary ops (finer gradient graph, same values)."""
    return lower(prog, _RULES)
