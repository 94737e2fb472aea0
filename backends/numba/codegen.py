"""Lower an optimised program to Python source for the Numba backend.

It writes two modules with three kinds of code:

* ``@njit`` kernels for fused elementwise groups, one forward and one
  backward per distinct group structure. The backward runs the semiring
  DP over the group's sub-DAG element by element: every operand slot keeps
  its own edge, so ``x * x`` stays two parallel edges and fusion never
  changes a result.
* ``forward(V, plan)`` (its own module, shared by every semiring): the
  group kernels, plus ``plan.evaluate`` for contractions, reductions,
  normalisations and movement (NumPy/BLAS).
* ``backward(V, D, plan)``: one call per (consumer, operand slot) whose
  operand needs an adjoint, in reverse topological order, into the semiring's
  kernel module ``SR`` (``templates.py``), or BLAS where the semiring says so.

Only nodes on a path from a ``wrt`` node to the output get adjoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from semir.ir.node import Node, Program
from semir.ir.ops import ELEMENTWISE, Op
from semir.passes.fuse import fusion_groups

from ..semiring_kernels import kernels_for
from .templates import JIT

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


def _read(a: Analysis, fn: KernelArgs, name: str, members: set[int], root: Node, gid: int) -> str:
    src = a.prog.by_name[name]
    k = a.index[name]
    if src.op is Op.const:
        return repr(src.attr("value"))
    arr = fn.arg("val", k)
    if k in members:
        return f"{arr}[i]"
    mode = operand_mode(a.prog.by_name[name], root)
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


# How a generated elementwise kernel visits its elements and how it is declared, per target: the CPU loops,
# a CUDA kernel runs one thread per element. The bodies (FWD/EDGES expressions) are the same scalar Python.
LOOP = {"cpu": "    for i in range({n}):", "cuda": "    i = cuda.grid(1)\n    if i < {n}:"}
DECORATOR = {"cpu": JIT, "cuda": "@cuda.jit"}


def group_forward(a: Analysis, gid: int, target: str = "cpu") -> tuple[str, list]:
    members = a.groups[gid]
    mset = set(members)
    root = a.prog.nodes[members[-1]]
    fn = KernelArgs()
    n_arg = fn.arg("size", gid)
    body = []
    local = {}
    for pos, k in enumerate(members):
        node = a.prog.nodes[k]
        args = [local.get(a.index[i]) or _read(a, fn, i, mset, root, gid) for i in node.inputs]
        body.append(f"        t{pos} = {_rounded(_fmt(_rules(node, 'fwd'), node, args), node)}")
        body.append(f"        {fn.arg('out', k)}[i] = t{pos}")
        local[k] = f"t{pos}"
    return _finish(fn, [LOOP[target].format(n=n_arg)] + body, target)


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


def group_backward(a: Analysis, gid: int, fields: list[str], target: str = "cpu",
                   deferred: list | None = None) -> tuple[str, list] | None:
    """The fused backward of one group; with ``deferred``, edges into broadcast operands (several elements
    ``i`` feeding one ``j``) are left out and listed there as (member, slot) for a gather-style kernel."""
    members = a.groups[gid]
    mset = set(members)
    root = a.prog.nodes[members[-1]]
    fn = KernelArgs()
    n_arg = fn.arg("size", gid)
    body = []
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
    return _finish(fn, [LOOP[target].format(n=n_arg)] + body, target)


def _finish(fn: KernelArgs, lines: list[str], target: str) -> tuple[str, list]:
    params = ", ".join(f"p{i}" for i in range(len(fn.args)))
    text = f"{DECORATOR[target]}\ndef {{name}}({params}):\n" + "\n".join(lines) + "\n"
    return text, fn.args


# -- the module ---------------------------------------------------------------

# How a kernel argument of each kind is spelled in the generated orchestration code (``key`` from KernelArgs.arg).
ARG_EXPR = {"size": "plan.group_size[{key}]", "val": "V[{key}]", "out": "V[{key}]", "map": "plan.bmap[{key}]",
            "D": "D[{key[0]}][{key[1]!r}]", "base": "plan.base[{key[0]}][{key[1]}]"}


def arg_expr(kind: str, key, table: dict[str, str] = ARG_EXPR) -> str:
    return table[kind].format(key=key)


def generate(prog: Program, wrt: tuple[str, ...], semiring, sr_module: str) -> tuple[str, str, Analysis]:
    """Sources of the forward module (semiring-independent) and of the backward module."""
    a = analyse(prog, wrt)
    fields = [f.name for f in semiring.fields]
    kernels: dict[str, str] = {}  # text -> function name

    def kernel(text: str, prefix: str) -> str:
        if text not in kernels:
            kernels[text] = f"{prefix}{len(kernels)}"
        return kernels[text]

    fwd_lines, bwd_lines = [], []
    for k, n in enumerate(prog.nodes):
        if n.op is Op.input:
            continue
        if n.op is Op.const:
            fwd_lines.append(f"    V[{k}] = plan.evaluate({k}, V)  # {n.name} = {n.attr('value')!r}")
            continue
        if k in a.group_of:
            gid = a.group_of[k]
            members = a.groups[gid]
            if k != members[-1]:  # a group runs at its root: every external operand exists by then
                continue
            text, args = group_forward(a, gid)
            name = kernel(text, "fused_fwd")
            for m in members:
                fwd_lines.append(f"    V[{m}] = np.empty(plan.size[{m}], plan.dtype[{m}])  # {prog.nodes[m].name}")
            fwd_lines.append(f"    {name}({', '.join(arg_expr(*x) for x in args)})")
            continue
        fwd_lines.append(f"    V[{k}] = plan.evaluate({k}, V)  # {n.name} = {n.op.value}")

    for gid_or_k in _backward_order(a):
        kind, k = gid_or_k
        if kind == "group":
            res = group_backward(a, k, fields)
            if res is None:
                continue
            text, args = res
            name = kernel(text, "fused_bwd")
            names = ", ".join(prog.nodes[m].name for m in a.groups[k])
            bwd_lines.append(f"    {name}({', '.join(arg_expr(*x) for x in args)})  # {names}")
            continue
        n = prog.nodes[k]
        if n.name not in a.needed:
            continue
        for slot, name in enumerate(n.inputs):
            if name not in a.needed:
                continue
            line = BACKWARD[n.op](k, slot, a.index[name], n, semiring)
            if line:
                bwd_lines.append(f"    {line}  # {n.name} -> {name}")

    head = ["import math", "", "import numpy as np", "from numba import njit", "",
            "from semir.backends.numba import prelude as P"]
    fwd = [f"# Generated by semir: forward of program {prog.name!r}. Do not edit.", *head, ""]
    bwd = [f"# Generated by semir: backward of program {prog.name!r} in semiring {semiring.name!r}. Do not edit.",
           *head, f"import {sr_module} as SR", f"from {sr_module} import acc", ""]
    for text, name in kernels.items():
        (fwd if name.startswith("fused_fwd") else bwd).extend(["", text.replace("{name}", name)])
    fwd += ["", "def forward(V, plan):", *(fwd_lines or ["    pass"])]
    bwd += ["", "def backward(V, D, plan):", *(bwd_lines or ["    pass"])]
    return "\n".join(fwd) + "\n", "\n".join(bwd) + "\n", a


def _backward_order(a: Analysis):
    """Reverse topological order; a fused group runs at its root (all its members' users are inside)."""
    seen = set()
    for k in range(len(a.prog.nodes) - 1, -1, -1):
        if k in a.group_of:
            gid = a.group_of[k]
            if gid not in seen:
                seen.add(gid)
                yield ("group", gid)
        else:
            yield ("node", k)


# -- backward rule table for non-elementwise ops ------------------------------

def _U(u: int) -> str:
    return f"*D[{u}].values()"


def _call(kernel: str, u: int, k: int, *args: str) -> str:
    return f"SR.{kernel}({_U(u)}, {_U(k)}, {', '.join(args)})"


def _matmul(k, slot, u, n, sr):
    other = f"V[plan.index[{n.inputs[1 - slot]!r}]]"
    mm = f"*plan.mm[{k}]"
    if kernels_for(sr).gemm is not None:
        return f"plan.gemm[{slot}](tuple(D[{u}].values()), tuple(D[{k}].values()), {other}, {mm})"
    kern = "matmul_bwd_a" if slot == 0 else "matmul_bwd_b"
    return _call(kern, u, k, other, mm, f"plan.base[{k}][{slot}]", f"plan.shared[{k}][{slot}]")


def _layernorm(k, slot, u, n, sr):
    base = f"plan.base[{k}][{slot}]"
    if slot == 0:
        return _call("bwd_layernorm", u, k, f"*plan.aux[{k}]", f"V[plan.index[{n.inputs[1]!r}]]",
                     f"plan.rows[{k}]", f"plan.n[{k}]", base)
    if slot == 1:
        return _call("bwd_map", u, k, f"plan.aux[{k}][0]", f"plan.colmap[{k}]", base)
    return _call("bwd_map1", u, k, f"plan.colmap[{k}]", base)


# Keyed by the structured ops (semir.ir.ops.STRUCTURED): fused groups handle every elementwise op, and sources
# have no operands.
BACKWARD = {
    Op.sum: lambda k, s, u, n, sr: _call("bwd_reduce", u, k, f"plan.outmap[{k}]", "1.0", f"plan.base[{k}][{s}]"),
    Op.mean: lambda k, s, u, n, sr: _call("bwd_reduce", u, k, f"plan.outmap[{k}]", f"plan.scale[{k}]",
                                          f"plan.base[{k}][{s}]"),
    Op.max: lambda k, s, u, n, sr: _call("bwd_map1", u, k, f"plan.aux[{k}]", f"plan.base[{k}][{s}]"),
    Op.softmax: lambda k, s, u, n, sr: _call("bwd_softmax", u, k, f"V[{k}]", f"*plan.rowsplit[{k}]", "False",
                                             f"plan.base[{k}][{s}]"),
    Op.log_softmax: lambda k, s, u, n, sr: _call("bwd_softmax", u, k, f"V[{k}]", f"*plan.rowsplit[{k}]", "True",
                                                 f"plan.base[{k}][{s}]"),
    Op.layernorm: _layernorm,
    Op.matmul: _matmul,
    Op.transpose: lambda k, s, u, n, sr: _call("bwd_map1", u, k, f"plan.map[{k}][{s}]", f"plan.base[{k}][{s}]"),
    Op.reshape: lambda k, s, u, n, sr: _call("bwd_map1", u, k, f"plan.map[{k}][{s}]", f"plan.base[{k}][{s}]"),
    Op.index: lambda k, s, u, n, sr: _call("bwd_map1", u, k, f"plan.map[{k}][{s}]", f"plan.base[{k}][{s}]"),
    Op.concat: lambda k, s, u, n, sr: _call("bwd_map1", u, k, f"plan.map[{k}][{s}]", f"plan.base[{k}][{s}]"),
    Op.take: lambda k, s, u, n, sr: (_call("bwd_map1", u, k, f"plan.aux[{k}]", f"plan.base[{k}][{s}]")
                                     if s == 0 else ""),  # the ids (slot 1) are integers: no edge
}
