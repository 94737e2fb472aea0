"""``brunoflow_lower``: softmax, log_softmax and layernorm written as the paper's engine writes them.

brunoflow (Du et al.'s engine) has no softmax or layernorm primitive; its models compose them from
elementary functions, and those compositions are its gradient graph:

* ``log_softmax(x) = x - logsumexp(x)`` with ``logsumexp(x) = log(sum(exp(x - max x))) + max x``, the max
  *not* detached (paths run through it), and ``softmax(x) = exp(log_softmax(x))``;
* ``layernorm(x) = γ · (x - E[x]) / sqrt(E[x²] - E[x]² + eps) + β`` (its ``net/layernorm.py``).

gelu stays one primitive with its exact derivative, as in brunoflow. Forward values and the gradient are
unchanged (up to rounding); the paths, and so every other semiring, are brunoflow's.
"""

from __future__ import annotations

from ..ir.node import Node, Program
from ..ir.ops import Op
from .base import PassContext, register
from .decompose import _Emitter, lower


def _log_softmax(e: _Emitter, n: Node, name: str | None) -> str:
    x, axis = n.inputs[0], (n.attr("axis"),)
    m = e(Op.max, [x], axes=axis, keepdims=True)
    s = e(Op.sum, [e(Op.exp, [e(Op.sub, [x, m])])], axes=axis, keepdims=True)
    lse = e(Op.add, [e(Op.log, [s]), m])
    return e(Op.sub, [x, lse], name=name)


def _softmax(e: _Emitter, n: Node) -> None:
    e(Op.exp, [_log_softmax(e, n, None)], name=n.name)


def _layernorm(e: _Emitter, n: Node) -> None:
    x, g, b = n.inputs
    last = (e.by_name[x].type.rank - 1,)
    mean = e(Op.mean, [x], axes=last, keepdims=True)
    mean_x2 = e(Op.mean, [e(Op.pow, [x], exponent=2.0)], axes=last, keepdims=True)
    var = e(Op.sub, [mean_x2, e(Op.pow, [mean], exponent=2.0)])
    xn = e(Op.div, [e(Op.sub, [x, mean]), e(Op.sqrt, [e(Op.add, [var, e.const(n.attr("eps"), x)])])])
    e(Op.add, [e(Op.mul, [g, xn]), b], name=n.name)


RULES = {
    Op.softmax: _softmax,
    Op.log_softmax: lambda e, n: _log_softmax(e, n, n.name),
    Op.layernorm: _layernorm,
}


@register("brunoflow_lower")
def brunoflow_lower(prog: Program, ctx: PassContext) -> Program:
    """Lower softmax, log_softmax and layernorm the way brunoflow composes them."""
    return lower(prog, RULES)
