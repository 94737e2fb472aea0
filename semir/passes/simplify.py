"""Order-and-clean passes: toposort, constant folding, dead-code and common-subexpression elimination.

None of them can change a semiring result at a node that survives:
constants are never on a path from an input, dead nodes have no path to the
output, and CSE merges only temporaries (parallel edges into their consumers
stay separate, so the path multiset is unchanged).
"""

from __future__ import annotations

import heapq

from ..ir.node import Node, Program
from ..ir.ops import Op
from .base import PassContext, register


def _kept(prog: Program, ctx: PassContext) -> set[str]:
    return {prog.resolve(k) for k in ctx.keep}


@register("toposort")
def toposort(prog: Program, ctx: PassContext) -> Program:
    """Order nodes topologically, inputs first, otherwise keeping the given order (deterministic)."""
    index = {n.name: i for i, n in enumerate(prog.nodes)}
    pending = {n.name: len(set(n.inputs)) for n in prog.nodes}
    users: dict[str, list[str]] = {n.name: [] for n in prog.nodes}
    for n in prog.nodes:
        for i in dict.fromkeys(n.inputs):
            users[i].append(n.name)
    ready = [(0 if n.op is Op.input else 1, index[n.name]) for n in prog.nodes if pending[n.name] == 0]
    heapq.heapify(ready)
    out: list[Node] = []
    while ready:
        _, i = heapq.heappop(ready)
        n = prog.nodes[i]
        out.append(n)
        for u in users[n.name]:
            pending[u] -= 1
            if pending[u] == 0:
                heapq.heappush(ready, (1, index[u]))
    return prog.replace(nodes=tuple(out))


@register("fold")
def fold(prog: Program, ctx: PassContext) -> Program:
    """Evaluate scalar nodes whose operands are all constants into constants."""
    from ..ir.eval_rules import evaluate

    keep = _kept(prog, ctx)
    values: dict[str, object] = {}
    out = []
    for n in prog.nodes:
        if n.op is Op.const:
            values[n.name] = n.attr("value")
        elif (n.op is not Op.input and n.inputs and n.name not in keep and not n.type.shape
              and all(i in values for i in n.inputs)):
            import numpy as np

            v = evaluate(n.op, [np.asarray(values[i], prog.by_name[i].type.dtype.numpy) for i in n.inputs],
                         n.attr_dict, n.type.dtype.numpy).item()
            values[n.name] = v
            n = n.replace(op=Op.const, inputs=(), attrs=(("dtype", n.type.dtype.value), ("value", v)))
        out.append(n)
    return prog.replace(nodes=tuple(out))


@register("dce")
def dce(prog: Program, ctx: PassContext) -> Program:
    """Remove nodes that neither reach the output nor are kept; inputs always stay."""
    keep = _kept(prog, ctx)
    live = {prog.output} | keep
    for n in reversed(prog.nodes):
        if n.name in live:
            live.update(n.inputs)
    nodes = tuple(n for n in prog.nodes if n.name in live or n.op is Op.input)
    names = {n.name for n in nodes}
    aliases = tuple((a, t) for a, t in prog.aliases if prog.resolve(t) in names)
    return prog.replace(nodes=nodes, aliases=aliases)


@register("cse")
def cse(prog: Program, ctx: PassContext) -> Program:
    """Merge a temporary into an earlier identical temporary (named and kept nodes stay observable)."""
    keep = _kept(prog, ctx)
    rename: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    out = []
    for n in prog.nodes:
        if any(i in rename for i in n.inputs):
            n = n.replace(inputs=tuple(rename.get(i, i) for i in n.inputs))
        mergeable = n.name.startswith("%") and n.name not in keep and n.op is not Op.input
        if mergeable and n.key in seen:
            rename[n.name] = seen[n.key]
            continue
        if mergeable:
            seen[n.key] = n.name
        out.append(n)
    output = rename.get(prog.output, prog.output)
    aliases = tuple((a, rename.get(t, t)) for a, t in prog.aliases)
    return prog.replace(nodes=tuple(out), output=output, aliases=aliases)
