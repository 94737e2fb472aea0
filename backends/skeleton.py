"""The code-generator skeleton the Numba and CUDA backends share; they differ by tables and targets.

* the analysis of a program for one ``wrt`` set: which nodes get adjoints, the fused elementwise groups (the
  ``fuse`` pass's, ``Program.fused``);
* the elementwise emit tables (forward expression and local edges per op, variants by attribute) and the
  fused-group kernels built from them: the backward runs the semiring DP over the group's sub-DAG element
  by element, every operand slot keeping its own edge, so ``x * x`` stays two parallel edges and fusion
  never changes a result;
* the walk over a program: forward in program order, backward in reverse, a fused group at its root
  (:func:`forward_lines`, :func:`backward_lines`), and one module's kernels deduplicated by text
  (:class:`KernelSet`).

A backend supplies its :class:`Target` (loop and decorator), how a kernel argument is spelled in its
orchestration code, and its tables for the structured ops (``semir.ir.ops.STRUCTURED``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from semir.ir.node import Node, Program
from semir.ir.ops import ELEMENTWISE, Op
from semir.passes.fuse import fusion_groups

# -- emit tables: elementwise forward expressions and local edges -----------

FWD: dict[Op, str] = {
    Op.neg: "-{0}",
    Op.exp: "math.exp({0})",
    Op.log: "math.log({0})",
    Op.tanh: "math.tanh({0})",
    Op.sigmoid: "P.sigmoid({0})",
    Op.relu: "({0} if {0} > 0 else 0.0)",
    Op.gelu: "P.gelu({0})",
    Op.erf: "math.erf({0})",
    Op.sqrt: "math.sqrt({0})",
    Op.rsqrt: "(1.0 / math.sqrt({0}))",
    Op.abs: "abs({0})",
    Op.square: "({0} * {0})",
    Op.sin: "math.sin({0})",
    Op.cos: "math.cos({0})",
    Op.pow: "({0} ** {exponent})",
    Op.cast: "{0}",
    Op.detach: "{0}",
    Op.add: "({0} + {1})",
    Op.sub: "({0} - {1})",
    Op.mul: "({0} * {1})",
    Op.div: "({0} / {1})",
    Op.maximum: "({0} if {0} >= {1} else {1})",
    Op.minimum: "({0} if {0} <= {1} else {1})",
    Op.lt: "({0} < {1})",
    Op.le: "({0} <= {1})",
    Op.gt: "({0} > {1})",
    Op.ge: "({0} >= {1})",
    Op.eq: "({0} == {1})",
    Op.ne: "({0} != {1})",
    Op.where: "({1} if {0} else {2})",
}

# Per operand slot: None (no edge) or (condition or None, weight); {out} is the node's own value.
_NONE2 = [None, None]
EDGES: dict[Op, list] = {
    Op.neg: [(None, "-1.0")],
    Op.exp: [(None, "{out}")],
    Op.log: [(None, "(1.0 / {0})")],
    Op.tanh: [(None, "(1.0 - {out} * {out})")],
    Op.sigmoid: [(None, "({out} * (1.0 - {out}))")],
    Op.relu: [(None, "(1.0 if {0} > 0 else 0.0)")],
    Op.gelu: [(None, "P.gelu_d({0})")],
    Op.erf: [(None, "(1.1283791670955126 * math.exp(-{0} * {0}))")],
    Op.sqrt: [(None, "(0.5 / {out})")],
    Op.rsqrt: [(None, "(-0.5 * {out} / {0})")],
    Op.abs: [(None, "P.sign({0})")],
    Op.square: [(None, "(2.0 * {0})")],
    Op.sin: [(None, "math.cos({0})")],
    Op.cos: [(None, "(-math.sin({0}))")],
    Op.pow: [(None, "({exponent} * {0} ** ({exponent} - 1))")],
    Op.cast: [(None, "1.0")],
    Op.detach: [None],
    Op.add: [(None, "1.0"), (None, "1.0")],
    Op.sub: [(None, "1.0"), (None, "-1.0")],
    Op.mul: [(None, "{1}"), (None, "{0}")],
    Op.div: [(None, "(1.0 / {1})"), (None, "(-{0} / ({1} * {1}))")],
    Op.maximum: [("{0} >= {1}", "1.0"), ("not ({0} >= {1})", "1.0")],
    Op.minimum: [("{0} <= {1}", "1.0"), ("not ({0} <= {1})", "1.0")],
    Op.lt: _NONE2, Op.le: _NONE2, Op.gt: _NONE2, Op.ge: _NONE2, Op.eq: _NONE2, Op.ne: _NONE2,
    Op.where: [None, ("{0}", "1.0"), ("not {0}", "1.0")],
}


# Emit variants keyed by (op, attribute, value): they replace the op's FWD and/or EDGES entry for such a node.
VARIANTS: dict[tuple[Op, str, object], dict[str, object]] = {
    (Op.gelu, "approximate", "tanh"): {"fwd": "P.gelu_tanh({0})", "edges": [(None, "P.gelu_tanh_d({0})")]},
    (Op.pow, "exponent", 0): {"edges": [(None, "0.0")]},  # x ** 0 is 1: d/dx is 0, also at x = 0 (not 0 * 0 ** -1)
}


def _rules(node: Node, which: str):
    """The node's FWD template ("fwd") or EDGES list ("edges"), with its emit variant if one applies."""
    attrs = node.attr_dict
    for (op, attr, value), variant in VARIANTS.items():
        if node.op is op and attrs.get(attr) == value and which in variant:
            return variant[which]
    return (FWD if which == "fwd" else EDGES)[node.op]


def _fmt(template: str, node: Node, args: list[str], out: str = "") -> str:
    return template.format(*args, out=out, exponent=repr(node.attr_dict.get("exponent")))


# -- analysis -----------------------------------------------------------------

@dataclass
class Analysis:
    prog: Program
    index: dict[str, int]
    needed: set[str]  # nodes that get an adjoint
    groups: list[list[int]]  # fused elementwise groups (node indices, program order)
    group_of: dict[int, int] = field(default_factory=dict)


def analyse(prog: Program, wrt: tuple[str, ...]) -> Analysis:
    index = {n.name: k for k, n in enumerate(prog.nodes)}
    # Adjoint pruning: only nodes on a path from a wrt node to the output.
    reach_out = {prog.output}
    for n in reversed(prog.nodes):
        if n.name in reach_out:
            reach_out.update(n.inputs)
    from_wrt = {prog.resolve(w) for w in wrt}
    for n in prog.nodes:
        if any(i in from_wrt for i in n.inputs) and n.op is not Op.detach:
            from_wrt.add(n.name)
    needed = {n.name for n in prog.nodes if n.name in reach_out and n.name in from_wrt and n.type.dtype.is_float}
    # The fuse pass's groups (semir ir --after fuse); a program that skipped the pipeline gets them here
    multi = {g[-1]: [index[name] for name in g] for g in prog.fused or fusion_groups(prog)}
    members = {m for g in multi.values() for m in g}
    groups = [multi.get(n.name, [k]) for k, n in enumerate(prog.nodes)
              if n.op in ELEMENTWISE and k not in members or n.name in multi]  # the rest: one node each
    group_of = {m: g for g, ms in enumerate(groups) for m in ms}
    return Analysis(prog, index, needed, groups, group_of)


# -- fused elementwise kernels ---------------------------------------------

class KernelArgs:
    """Builds one kernel's text with positional argument names, so equal structures dedupe."""

    def __init__(self):
        self.args: list[tuple[str, object]] = []  # (kind, key)
        self.names: dict[tuple[str, object], str] = {}

    def arg(self, kind: str, key) -> str:
        if (kind, key) not in self.names:
            self.names[(kind, key)] = f"p{len(self.args)}"
            self.args.append((kind, key))
        return self.names[(kind, key)]


def operand_mode(src: Node, size_node: Node) -> str:
    """How a fused kernel reads an external operand, from the declared shapes: "same", "scalar" or "map"."""
    if src.type.shape == size_node.type.shape:
        return "same"
    if all(d == 1 for d in src.type.shape):
        return "scalar"
    return "map"


def _read(a: Analysis, fn: KernelArgs, name: str, members: set[int], root: Node, gid: int,
          spread: bool = False) -> str:
    src = a.prog.by_name[name]
    k = a.index[name]
    if src.op is Op.const:
        return repr(src.attr("value"))
    mode = "same" if k in members else operand_mode(a.prog.by_name[name], root)
    if mode == "map" and spread:
        return f"{fn.arg('spread', (gid, k))}[i]"
    arr = fn.arg("val", k)
    if mode == "same":
        return f"{arr}[i]"
    if mode == "scalar":
        return f"{arr}[0]"
    return f"{arr}[{fn.arg('map', (gid, k))}[i]]"


def _index_of(a: Analysis, fn: KernelArgs, name: str, members: set[int], root: Node, gid: int) -> str:
    k = a.index[name]
    if k in members:
        return "i"
    mode = operand_mode(a.prog.by_name[name], root)
    return {"same": "i", "scalar": "0"}.get(mode) or f"{fn.arg('map', (gid, k))}[i]"


@dataclass(frozen=True)
class Target:
    """How a generated elementwise kernel visits its elements and how it is declared: the CPU loops, a CUDA
    kernel runs one thread per element. The bodies (FWD/EDGES expressions) are the same scalar Python."""

    loop: str  # with {n}: the element count's argument
    decorator: str
    # the forward reads a broadcast operand from a copy spread to the group's size ("spread", made by the
    # caller: Plan.spread), not through its index map: a gather beside a store keeps a CPU loop scalar (LLVM cannot rule
    # out that the store feeds a later gather), so a bias add fused with gelu ran at 7.6 ns an element, 3.8
    # with the copy. A GPU thread gathers at no such cost.
    spread: bool = False


def _start(a: Analysis, gid: int):
    """A group kernel's members (as a list and a set), root node, arguments, and its element count's argument."""
    members = a.groups[gid]
    fn = KernelArgs()
    return members, set(members), a.prog.nodes[members[-1]], fn, fn.arg("size", gid)


def group_forward(a: Analysis, gid: int, target: Target) -> tuple[str, list]:
    members, mset, root, fn, n_arg = _start(a, gid)
    body = []
    local = {}
    for pos, k in enumerate(members):
        node = a.prog.nodes[k]
        args = [local.get(a.index[i]) or _read(a, fn, i, mset, root, gid, target.spread) for i in node.inputs]
        body.append(f"        t{pos} = {_rounded(_fmt(_rules(node, 'fwd'), node, args), node)}")
        body.append(f"        {fn.arg('out', k)}[i] = t{pos}")
        local[k] = f"t{pos}"
    return _finish(fn, [target.loop.format(n=n_arg)] + body, target)


def edge_expr(a: Analysis, fn: KernelArgs, k: int, slot: int) -> tuple[str | None, str]:
    """(condition or None, weight) of the edges of operand ``slot`` of group member ``k``, at element ``i``."""
    gid = a.group_of[k]
    mset = set(a.groups[gid])
    root = a.prog.nodes[a.groups[gid][-1]]
    node = a.prog.nodes[k]
    args = [_read(a, fn, i, mset, root, gid) for i in node.inputs]
    out = f"{fn.arg('val', k)}[i]"
    cond, weight = _rules(node, "edges")[slot]
    return (_fmt(cond, node, args, out) if cond else None), _rounded(_fmt(weight, node, args, out), node)


def _rounded(expr: str, node: Node) -> str:
    """``expr`` rounded to ``node``'s float dtype, as the reference rounds every value and edge weight:
    Numba evaluates float literals and libm calls in float64, so an unrounded float32 weight could be a
    tiny non-zero where the reference's is exactly 0 (and so count a path that does not exist)."""
    dt = node.type.dtype
    return f"np.{dt.numpy.name}({expr})" if dt.is_float else expr


def group_backward(a: Analysis, gid: int, fields: list[str], target: Target,
                   deferred: list | None = None, weights_first: bool = False) -> tuple[str, list] | None:
    """The fused backward of one group; with ``deferred``, edges into broadcast operands (several elements
    ``i`` feeding one ``j``) are left out and listed there as (member, slot) for a gather-style kernel.

    ``weights_first``: for a semiring whose ``acc`` does not vectorise, the weights that call a function
    (gelu′, exp, ...) are computed first, in a loop of their own into scratch arrays (kind "scratch", key
    (group, dtype, number)), which vectorises; the acc loop reads them. In one loop, the function's
    polynomial ran scalar, a chain of dependent FMAs per element between the acc's libm calls: entropy's
    gelu′ edge cost 24 ns an element."""
    members, mset, root, fn, n_arg = _start(a, gid)
    body, first = [], []
    for k in reversed(members):
        node = a.prog.nodes[k]
        if node.name not in a.needed:
            continue
        for slot, (name, edge) in enumerate(zip(node.inputs, _rules(node, "edges"))):
            if edge is None or name not in a.needed:
                continue
            u = a.index[name]
            if deferred is not None and u not in mset and operand_mode(a.prog.by_name[name], root) != "same":
                deferred.append((k, slot))
                continue
            cond, weight = edge_expr(a, fn, k, slot)
            if weights_first and _CALL.search(weight):
                buf = fn.arg("scratch", (gid, node.type.dtype.numpy.name, len(first)))
                first.append(f"        {buf}[i] = {weight}")
                weight = f"{buf}[i]"
            U = ", ".join(fn.arg("D", (u, f)) for f in fields)
            V = ", ".join(fn.arg("D", (k, f)) for f in fields)
            j = _index_of(a, fn, name, mset, root, gid)
            base = fn.arg("base", (k, slot))
            call = f"acc({U}, {j}, {V}, i, {weight}, {base} + i)"
            if cond:
                body.append(f"        if {cond}:")
                body.append(f"            {call}")
            else:
                body.append(f"        {call}")
    if not body:
        return None
    loop = target.loop.format(n=n_arg)
    return _finish(fn, ([loop] + first if first else []) + [loop] + body, target)


_CALL = re.compile(r"\b(?:P|math)\.\w+\(")  # a weight that calls a function


def _finish(fn: KernelArgs, lines: list[str], target: Target) -> tuple[str, list]:
    params = ", ".join(f"p{i}" for i in range(len(fn.args)))
    text = f"{target.decorator}\ndef {{name}}({params}):\n" + "\n".join(lines) + "\n"
    return text, fn.args


def arg_expr(kind: str, key, table: dict[str, str]) -> str:
    """How a kernel argument (``kind``, ``key`` from :meth:`KernelArgs.arg`) is spelled in orchestration code."""
    return table[kind].format(key=key)


class KernelSet:
    """The kernels of one generated module, deduplicated by text: equal group structures share one function."""

    def __init__(self):
        self.names: dict[str, str] = {}  # text -> function name

    def name(self, text: str, prefix: str) -> str:
        if text not in self.names:
            self.names[text] = f"{prefix}{len(self.names)}"
        return self.names[text]

    def sources(self, prefixes: tuple[str, ...] = ("",)) -> list[str]:
        """The kernels whose names start with one of ``prefixes``, in order of first use, named."""
        out = []
        for text, name in self.names.items():
            if name.startswith(prefixes):
                out.extend(["", text.replace("{name}", name)])
        return out


def forward_lines(a: Analysis, on_group: Callable[[int], list[str]],
                  on_node: Callable[[int, Node], list[str]]) -> list[str]:
    """The forward body: program order, a fused group at its root (every external operand exists by then);
    ``on_node`` gets every other node but the inputs."""
    lines: list[str] = []
    for k, n in enumerate(a.prog.nodes):
        if k in a.group_of:
            gid = a.group_of[k]
            if k == a.groups[gid][-1]:
                lines += on_group(gid)
        elif n.op is not Op.input:
            lines += on_node(k, n)
    return lines


def backward_lines(a: Analysis, on_group: Callable[[int], list[str]],
                   on_edge: Callable[[int, int, int, Node], str]) -> list[str]:
    """The backward body: reverse program order, a fused group at its root (all its members' users are
    inside it or later); ``on_edge(k, slot, u, node)`` for each operand slot of a structured node whose
    node and operand both get adjoints (an empty line: no edge)."""
    lines: list[str] = []
    seen: set[int] = set()
    for k in range(len(a.prog.nodes) - 1, -1, -1):
        n = a.prog.nodes[k]
        if k in a.group_of:
            gid = a.group_of[k]
            if gid not in seen:
                seen.add(gid)
                lines += on_group(gid)
            continue
        if n.name not in a.needed:
            continue
        for slot, name in enumerate(n.inputs):
            if name in a.needed:
                line = on_edge(k, slot, a.index[name], n)
                if line:
                    lines.append(f"    {line}  # {n.name} -> {name}")
    return lines
