"""Lower an optimised program to a Python module of ``numba.cuda`` kernels and their launches.

The module holds

* one kernel per distinct fused elementwise group, forward and backward, one thread per element: the same
  FWD/EDGES expressions and semiring-DP-over-the-sub-DAG rule as the CPU backend (``backends/numba``), so
  fusion never changes a result;
* for every edge from a group member into a *broadcast* operand (many elements ``i`` feed one ``j``), a
  gather kernel with one thread per operand element looping over its ``i`` (a CSR built once per plan),
  since a per-``i`` thread would race on ``D[j]``;
* ``forward(G, plan)`` and ``backward(G, plan)``: launches in program / reverse program order, built from
  the two launch tables below, keyed by op.

``G`` is the :class:`~semir.backends.cuda.kernel.DevicePlan` (device arrays), ``plan`` the host plan of the
Numba backend (sizes, index maps, pointer bases), shared so pointers mean the same on both backends.
"""

from __future__ import annotations

from semir.backends.numba.codegen import ARG_EXPR as CPU_ARGS
from semir.backends.skeleton import (
    Analysis,
    KernelArgs,
    KernelSet,
    Target,
    analyse,
    arg_expr,
    backward_lines,
    edge_expr,
    forward_lines,
    group_backward,
    group_forward,
)

from semir.ir.node import Program
from semir.ir.ops import STRUCTURED, Op

GPU = Target(loop="    i = cuda.grid(1)\n    if i < {n}:", decorator="@cuda.jit")

# The CPU spelling of kernel arguments, with values, states and broadcast maps held by the device plan G.
ARGS = {**CPU_ARGS, "val": "G.V[{key}]", "out": "G.V[{key}]", "map": "G.bmap[{key}]",
        "D": "G.D[{key[0]}][{key[1]!r}]", "usize": "plan.size[{key}]", "csr_ptr": "G.bcsr[{key}][0]",
        "csr_idx": "G.bcsr[{key}][1]"}


def broadcast_backward(a: Analysis, k: int, slot: int, fields: list[str]) -> tuple[str, list]:
    """Edges from member ``k`` into its broadcast operand ``slot``: one thread per operand element."""
    gid = a.group_of[k]
    u = a.index[a.prog.nodes[k].inputs[slot]]
    fn = KernelArgs()
    n = fn.arg("usize", u)
    ptr, idx = fn.arg("csr_ptr", (gid, u)), fn.arg("csr_idx", (gid, u))
    cond, weight = edge_expr(a, fn, k, slot)
    U = ", ".join(fn.arg("D", (u, f)) for f in fields)
    V = ", ".join(fn.arg("D", (k, f)) for f in fields)
    base = fn.arg("base", (k, slot))
    lines = ["    j = cuda.grid(1)", f"    if j < {n}:", f"        for q in range({ptr}[j], {ptr}[j + 1]):",
             f"            i = {idx}[q]"]
    call = f"acc({U}, j, {V}, i, {weight}, {base} + i)"
    lines += [f"            if {cond}:", f"                {call}"] if cond else [f"            {call}"]
    params = ", ".join(f"p{i}" for i in range(len(fn.args)))
    return f"@cuda.jit\ndef {{name}}({params}):\n" + "\n".join(lines) + "\n", fn.args


# -- launch tables: non-elementwise ops ---------------------------------------

def _in(n, s: int) -> str:
    return f"G.V[plan.index[{n.inputs[s]!r}]]"


# Both launch tables are keyed by the structured ops (semir.ir.ops.STRUCTURED): fused groups launch every
# elementwise op; inputs are copied in and constants filled once when the device plan is built.
FORWARD = {
    Op.sum: lambda k, n: f"FK.reduce_rows[B(plan.size[{k}]), TPB](G.V[{k}], {_in(n, 0)}, G.rows[{k}], 1.0)",
    Op.mean: lambda k, n: f"FK.reduce_rows[B(plan.size[{k}]), TPB](G.V[{k}], {_in(n, 0)}, G.rows[{k}], "
                          f"plan.scale[{k}])",
    Op.max: lambda k, n: f"FK.max_rows[B(plan.size[{k}]), TPB](G.V[{k}], G.aux[{k}], {_in(n, 0)}, G.rows[{k}])",
    Op.softmax: lambda k, n: f"FK.softmax_rows[B(G.nrows[{k}]), TPB](G.V[{k}], {_in(n, 0)}, "
                             f"*plan.rowsplit[{k}], False)",
    Op.log_softmax: lambda k, n: f"FK.softmax_rows[B(G.nrows[{k}]), TPB](G.V[{k}], {_in(n, 0)}, "
                                 f"*plan.rowsplit[{k}], True)",
    Op.layernorm: lambda k, n: (f"FK.layernorm_rows[B(plan.rows[{k}]), TPB](G.V[{k}], *G.aux[{k}], {_in(n, 0)}, "
                                f"{_in(n, 1)}, {_in(n, 2)}, plan.rows[{k}], plan.n[{k}], {n.attr('eps')!r})"),
    Op.matmul: lambda k, n: f"FK.matmul[G.mm_grid[{k}], (TILE, TILE)](G.V[{k}], {_in(n, 0)}, {_in(n, 1)}, *G.mm[{k}], "
                            f"*plan.mm[{k}][3:])",
    Op.transpose: lambda k, n: f"FK.gather[B(plan.size[{k}]), TPB](G.V[{k}], {_in(n, 0)}, G.map[{k}][0])",
    Op.reshape: lambda k, n: f"FK.gather[B(plan.size[{k}]), TPB](G.V[{k}], {_in(n, 0)}, G.map[{k}][0])",
    Op.index: lambda k, n: f"FK.gather[B(plan.size[{k}]), TPB](G.V[{k}], {_in(n, 0)}, G.map[{k}][0])",
    Op.take: lambda k, n: f"FK.gather[B(plan.size[{k}]), TPB](G.V[{k}], {_in(n, 0)}, G.take[{k}][0])",
    Op.concat: lambda k, n: "\n    ".join(
        f"FK.gather_part[B(plan.size[{k}]), TPB](G.V[{k}], {_in(n, s)}, G.map[{k}][{s}])"
        for s in range(len(n.inputs))),
}


def _bwd(kernel: str, grid: str, k: int, u: int, *args: str, block: str = "TPB") -> str:
    return f"SR.{kernel}[{grid}, {block}](*G.D[{u}].values(), *G.D[{k}].values(), {', '.join(args)})"


def _layernorm(k, s, u, n):
    base = f"plan.base[{k}][{s}]"
    if s == 0:
        return _bwd("bwd_layernorm", f"B(plan.size[{u}])", k, u, f"*G.aux[{k}]", _in(n, 1),
                    f"plan.rows[{k}]", f"plan.n[{k}]", base)
    if s == 1:
        return _bwd("bwd_csr_w", f"B(plan.size[{u}])", k, u, f"G.aux[{k}][0]", f"*G.colcsr[{k}]", base)
    return _bwd("bwd_csr", f"B(plan.size[{u}])", k, u, f"*G.colcsr[{k}]", base)


def _matmul(k, s, u, n):
    kern = "matmul_bwd_a" if s == 0 else "matmul_bwd_b"
    return _bwd(kern, f"G.mm_bwd_grid[{k}][{s}]", k, u, _in(n, 1 - s), f"*G.mm[{k}]", f"*G.mm_groups[{k}][{s}]",
                f"*plan.mm[{k}][3:]", f"plan.base[{k}][{s}]", block="(SR.TILE, SR.TILE)")


def _scatter(k, s, u, n):
    return _bwd("bwd_scatter1", f"B(plan.size[{k}])", k, u, f"G.map[{k}][{s}]", f"plan.base[{k}][{s}]")


BACKWARD = {
    Op.sum: lambda k, s, u, n: _bwd("bwd_reduce", f"B(plan.size[{u}])", k, u, f"G.outmap[{k}]", "1.0",
                                    f"plan.base[{k}][{s}]"),
    Op.mean: lambda k, s, u, n: _bwd("bwd_reduce", f"B(plan.size[{u}])", k, u, f"G.outmap[{k}]",
                                     f"plan.scale[{k}]", f"plan.base[{k}][{s}]"),
    Op.max: lambda k, s, u, n: _bwd("bwd_scatter1", f"B(plan.size[{k}])", k, u, f"G.aux[{k}]",
                                    f"plan.base[{k}][{s}]"),
    Op.softmax: lambda k, s, u, n: _bwd("bwd_softmax", f"B(plan.size[{u}])", k, u, f"G.V[{k}]",
                                        f"*plan.rowsplit[{k}]", "False", f"plan.base[{k}][{s}]"),
    Op.log_softmax: lambda k, s, u, n: _bwd("bwd_softmax", f"B(plan.size[{u}])", k, u, f"G.V[{k}]",
                                            f"*plan.rowsplit[{k}]", "True", f"plan.base[{k}][{s}]"),
    Op.layernorm: _layernorm,
    Op.matmul: _matmul,
    Op.transpose: _scatter,
    Op.reshape: _scatter,
    Op.index: _scatter,
    Op.concat: _scatter,
    Op.take: lambda k, s, u, n: (_bwd("bwd_csr", f"B(plan.size[{u}])", k, u, f"*G.take[{k}][1:]",
                                      f"plan.base[{k}][{s}]") if s == 0 else ""),
}


def generate(prog: Program, wrt: tuple[str, ...], semiring, sr_module: str) -> tuple[str, Analysis]:
    a = analyse(prog, wrt)
    fields = [f.name for f in semiring.fields]
    kernels = KernelSet()

    def launch(name: str, args: list, grid: str) -> str:
        return f"{name}[{grid}, TPB]({', '.join(arg_expr(*x, ARGS) for x in args)})"

    def fwd_group(gid: int) -> list[str]:
        text, args = group_forward(a, gid, GPU)
        return [f"    {launch(kernels.name(text, 'fused_fwd'), args, f'B(plan.group_size[{gid}])')}"]

    def fwd_node(k: int, n) -> list[str]:  # constants are filled once, when the device plan is built
        return [f"    {FORWARD[n.op](k, n)}  # {n.name} = {n.op.value}"] if n.op in STRUCTURED else []

    def bwd_group(gid: int) -> list[str]:
        deferred: list[tuple[int, int]] = []
        res = group_backward(a, gid, fields, GPU, deferred)
        lines = []
        if res is not None:
            names = ", ".join(prog.nodes[m].name for m in a.groups[gid])
            lines.append(f"    {launch(kernels.name(res[0], 'fused_bwd'), res[1], f'B(plan.group_size[{gid}])')}"
                         f"  # {names}")
        for m, slot in deferred:
            text, args = broadcast_backward(a, m, slot, fields)
            u = a.index[prog.nodes[m].inputs[slot]]
            lines.append(f"    {launch(kernels.name(text, 'bcast_bwd'), args, f'B(plan.size[{u}])')}"
                         f"  # {prog.nodes[m].name} -> {prog.nodes[u].name}")
        return lines

    fwd = forward_lines(a, fwd_group, fwd_node)
    bwd = backward_lines(a, bwd_group, lambda k, slot, u, n: BACKWARD[n.op](k, slot, u, n))
    out = [f"# Generated by semir: CUDA kernels of program {prog.name!r} in semiring {semiring.name!r}. Do not edit.",
           "import math", "", "import numpy as np", "from numba import cuda", "",
           "from semir.backends.cuda import forward_kernels as FK", "from semir.backends.cuda import prelude as P",
           "from semir.backends.cuda.launch import TILE, TPB", "from semir.backends.cuda.launch import blocks as B",
           f"import {sr_module} as SR", f"from {sr_module} import acc", "", *kernels.sources()]
    out += ["", "def forward(G, plan):", *(fwd or ["    pass"])]
    out += ["", "def backward(G, plan):", *(bwd or ["    pass"])]
    return "\n".join(out) + "\n", a
