"""The Numba backend's kernel: generated modules, per-shape call plans, results with paths."""

from __future__ import annotations

import bisect
import copy
import threading
from typing import Any

import numpy as np

from semir.errors import InputError, SemirError
from semir.ir.eval_rules import evaluate as evaluate_op
from semir.ir.eval_rules import layernorm_parts
from semir.ir.index_maps import broadcast_index, reduce_index, row_index
from semir.ir.node import Program
from semir.ir.ops import STRUCTURED, Op
from semir.results import Result
from semir.runtime import bind_attrs, bind_inputs
from semir.semirings import EDGE_END, EDGE_NONE, Semiring

from ..semiring_kernels import kernels_for
from . import cache, codegen, templates, threads
from .pool import BlockPool


def _float_dtype(prog: Program) -> np.dtype:
    from semir.backends.reference.backend import float_dtype_of

    return float_dtype_of(prog)


class Plan:
    """Everything that depends on the bound shapes: sizes, index maps, offsets, pointer bases.

    Built once per binding of the symbolic dims, shared by every call and never
    written after construction: the per-call data that depends on values
    (argmax choices, gather maps of ``take``, layernorm statistics) lives in
    ``aux`` of the call's own copy (:meth:`for_call`), so concurrent calls of
    one kernel cannot see each other's state.
    """

    def __init__(self, prog: Program, a: codegen.Analysis, env: dict[str, int], sr: Semiring, fdt: np.dtype):
        self.prog, self.env, self.gemm = prog, env, kernels_for(sr).gemm
        self.blocks = BlockPool()  # the state blocks of earlier calls, shared by every call's view of the plan
        self.index = a.index
        self.shape = [tuple(int(d) for d in n.type.bind(env).shape) for n in prog.nodes]
        self.size = [int(np.prod(s, dtype=np.int64)) for s in self.shape]
        self.dtype = [n.type.dtype.numpy for n in prog.nodes]  # mixed precision: per node
        self.attrs = [bind_attrs(n.attr_dict, env) for n in prog.nodes]
        self.group_size = [self.size[g[-1]] for g in a.groups]
        self.bmap: dict[tuple[int, int], np.ndarray] = {}
        self.spread_shape: dict[tuple[int, int], tuple] = {}
        for gid, members in enumerate(a.groups):
            root = members[-1]
            for m in members:
                for name in prog.nodes[m].inputs:
                    u = a.index[name]
                    # the generated kernel reads a map wherever the operand's *declared* shape broadcasts,
                    # also when its dims bind to 1
                    if u not in members and codegen.operand_mode(prog.nodes[u], prog.nodes[root]) == "map":
                        self.bmap[(gid, u)] = broadcast_index(self.shape[u], self.shape[root])
                        self.spread_shape[(gid, u)] = (self.shape[u], self.shape[root])
        # Pointer bases: (consumer, slot) in program order, each as wide as the consumer's output.
        self.base: list[list[int]] = []
        self._bases: list[tuple[int, int, int]] = []
        nxt = 0
        for k, n in enumerate(prog.nodes):
            row = []
            for slot in range(len(n.inputs)):
                row.append(nxt)
                self._bases.append((nxt, k, slot))
                nxt += self.size[k]
            self.base.append(row)
        self.map: dict[int, list] = {}
        self.outmap, self.scale, self.rowsplit, self.rows, self.n, self.colmap = {}, {}, {}, {}, {}, {}
        self.mm, self.mm_shapes, self.shared, self.sel_rows = {}, {}, {}, {}
        for k, n in enumerate(prog.nodes):
            if n.op in STRUCTURED:
                PLAN_DATA[n.op](self, k, [self.shape[a.index[i]] for i in n.inputs], self.attrs[k])
        self.aux: dict[int, Any] = {}

    def for_call(self) -> Plan:
        """A view of this plan for one call: every shape-derived table shared, ``aux`` its own."""
        view = copy.copy(self)
        view.aux = {}
        return view

    # -- forward of non-elementwise ops: NumPy/BLAS, the reference rules ----

    def evaluate(self, k: int, V: list) -> np.ndarray:
        """The flat value of structured or constant node ``k`` from the values ``V`` of its operands."""
        n = self.prog.nodes[k]
        args = [V[self.index[i]].reshape(self.shape[self.index[i]]) for i in n.inputs]
        return EVALUATE[n.op](self, k, args)

    def spread(self, V: list, key: tuple[int, int]) -> np.ndarray:
        """Broadcast operand ``key[1]`` of group ``key[0]`` copied out to the group's size: what its index map
        (``bmap``, NumPy's broadcasting) reads, by a broadcast copy (6× faster than gathering by the map)."""
        shape, out = self.spread_shape[key]
        return np.broadcast_to(V[key[1]].reshape(shape), out).reshape(-1)

    def take_map(self, k: int, ids: np.ndarray) -> np.ndarray:
        """Flat table element read by each output element of ``take`` node ``k``; checks the ids' range."""
        n = self.prog.nodes[k]
        table = self.shape[self.index[n.inputs[0]]]
        rows = table[0]
        bad = (ids < 0) | (ids >= rows)  # a negative id is refused, never wrapped
        if np.any(bad):
            raise InputError(f"node {n.name!r}: id {int(ids[bad].ravel()[0])} is out of range for a "
                             f"table of {rows} rows (0..{rows - 1})")
        row = int(np.prod(table[1:], dtype=np.int64))
        m = (ids.reshape(-1).astype(np.int64)[:, None] * row + np.arange(row)).ravel()  # O(output), not O(table)
        return np.ascontiguousarray(m, dtype=np.int64)

    def edge(self, edge: int) -> tuple[int, int, int]:
        """(consumer node index, slot, output element) of a pointer."""
        i = bisect.bisect_right(self._bases, (edge, len(self.prog.nodes), 0)) - 1
        base, k, slot = self._bases[i]
        return k, slot, edge - base


# -- host plan data per structured op: shape-derived tables, built once per binding ------------------------

def _movement_map(p: Plan, k: int, ins, at) -> None:
    src = np.arange(int(np.prod(ins[0], dtype=np.int64))).reshape(ins[0])
    p.map[k] = [np.ascontiguousarray(evaluate_op(p.prog.nodes[k].op, [src], at, np.int64)).ravel()]


def _concat_maps(p: Plan, k: int, ins, at) -> None:
    maps = []
    for s in range(len(ins)):
        parts = [np.arange(int(np.prod(sh))).reshape(sh) if i == s else np.full(sh, -1) for i, sh in enumerate(ins)]
        maps.append(np.concatenate(parts, axis=at["axis"]).ravel())
    p.map[k] = maps


def _reduce_plan(p: Plan, k: int, ins, at) -> None:
    p.outmap[k] = np.ascontiguousarray(reduce_index(np.empty(ins[0]), at["axes"]))
    count = int(np.prod([ins[0][i] for i in at["axes"]], dtype=np.int64))
    p.scale[k] = 1.0 / max(count, 1)


def _max_plan(p: Plan, k: int, ins, at) -> None:
    p.sel_rows[k] = row_index(np.empty(ins[0]), at["axes"])


def _softmax_plan(p: Plan, k: int, ins, at) -> None:
    sh, ax = ins[0], at["axis"]
    p.rowsplit[k] = (int(np.prod(sh[:ax], dtype=np.int64)), sh[ax], int(np.prod(sh[ax + 1:], dtype=np.int64)))


def _layernorm_plan(p: Plan, k: int, ins, at) -> None:
    width = ins[0][-1]
    p.n[k] = width
    p.rows[k] = p.size[k] // max(width, 1)
    p.colmap[k] = np.ascontiguousarray(np.arange(p.size[k]) % max(width, 1))


def _matmul_plan(p: Plan, k: int, ins, at) -> None:
    xs = (1,) + ins[0] if len(ins[0]) == 1 else ins[0]
    ys = ins[1] + (1,) if len(ins[1]) == 1 else ins[1]
    M, K, N = xs[-2], xs[-1], ys[-1]
    batch = np.broadcast_shapes(xs[:-2], ys[:-2])
    nb = int(np.prod(batch, dtype=np.int64))
    ab = np.broadcast_to(np.arange(int(np.prod(xs[:-2], dtype=np.int64))).reshape(xs[:-2]), batch).ravel()
    bb = np.broadcast_to(np.arange(int(np.prod(ys[:-2], dtype=np.int64))).reshape(ys[:-2]), batch).ravel()
    a_off = np.ascontiguousarray(ab * (M * K), dtype=np.int64)
    b_off = np.ascontiguousarray(bb * (K * N), dtype=np.int64)
    y_off = np.arange(nb, dtype=np.int64) * (M * N)
    p.mm[k] = (a_off, b_off, y_off, M, K, N)
    p.shared[k] = [len(np.unique(a_off)) < nb, len(np.unique(b_off)) < nb]
    p.mm_shapes[k] = (xs, ys)


def _take_plan(p: Plan, k: int, ins, at) -> None:
    """None: take's gather map depends on the ids, a value; each call builds it (``Plan.take_map``)."""


PLAN_DATA = {
    Op.sum: _reduce_plan, Op.mean: _reduce_plan, Op.max: _max_plan,
    Op.softmax: _softmax_plan, Op.log_softmax: _softmax_plan, Op.layernorm: _layernorm_plan,
    Op.matmul: _matmul_plan,
    Op.transpose: _movement_map, Op.reshape: _movement_map, Op.index: _movement_map, Op.concat: _concat_maps,
    Op.take: _take_plan,
}


# -- forward evaluation of structured and constant nodes: NumPy/BLAS, the IR's rules -----------------------

def _eval_const(p: Plan, k: int, args) -> np.ndarray:
    return np.full(1, p.attrs[k]["value"], dtype=p.dtype[k])


def _eval_rule(p: Plan, k: int, args) -> np.ndarray:
    return np.ascontiguousarray(evaluate_op(p.prog.nodes[k].op, args, p.attrs[k], p.dtype[k])).reshape(-1)


def _eval_matmul(p: Plan, k: int, args) -> np.ndarray:
    xs, ys = p.mm_shapes[k]
    return np.ascontiguousarray(np.matmul(args[0].reshape(xs), args[1].reshape(ys)), dtype=p.dtype[k]).reshape(-1)


def _eval_max(p: Plan, k: int, args) -> np.ndarray:
    rows = p.sel_rows[k]
    flat = args[0].reshape(-1)
    first = np.argmax(flat[rows], axis=1)  # the first maximum: ties to the lowest index
    sel = rows[np.arange(len(rows)), first]
    p.aux[k] = np.ascontiguousarray(sel, dtype=np.int64)
    return np.ascontiguousarray(flat[sel], dtype=p.dtype[k])


def _eval_layernorm(p: Plan, k: int, args) -> np.ndarray:
    dt = p.dtype[k]
    xhat, inv = layernorm_parts(args[0], p.attrs[k]["eps"])
    p.aux[k] = (np.ascontiguousarray(xhat, dtype=dt).reshape(-1), np.ascontiguousarray(inv, dtype=dt).reshape(-1))
    return np.ascontiguousarray(xhat * args[1] + args[2], dtype=dt).reshape(-1)


def _eval_take(p: Plan, k: int, args) -> np.ndarray:
    p.aux[k] = p.take_map(k, args[1])
    return args[0].reshape(-1)[p.aux[k]]


def _eval_gather(p: Plan, k: int, args) -> np.ndarray:
    return args[0].reshape(-1)[p.map[k][0]]  # the movement map of the plan: no copy through NumPy's rule


def _eval_view(p: Plan, k: int, args) -> np.ndarray:
    return args[0].reshape(-1)  # reshape keeps the flat layout: its operand's values, not a copy (never written)


EVALUATE = {
    Op.const: _eval_const,
    Op.sum: _eval_rule, Op.mean: _eval_rule, Op.max: _eval_max,
    Op.softmax: _eval_rule, Op.log_softmax: _eval_rule, Op.layernorm: _eval_layernorm,
    Op.matmul: _eval_matmul,
    Op.transpose: _eval_gather, Op.reshape: _eval_view, Op.index: _eval_gather, Op.concat: _eval_rule,
    Op.take: _eval_take,
}


class NumbaKernel:
    backend = "numba"

    def __init__(self, prog: Program, semiring: Semiring, wrt: tuple[str, ...], granularity: str,
                 allow_nonfinite: bool = False):
        self.program, self.semiring, self.wrt = prog, semiring, wrt
        self.granularity, self.allow_nonfinite = granularity, allow_nonfinite
        self.float_dtype = _float_dtype(prog)
        self.analysis = codegen.analyse(prog, wrt)
        if semiring.scalar is not None:  # user-defined: compile its functions first, refusing what Numba cannot
            from ..user_semiring import check

            check(semiring, self.float_dtype)
        sr_source = templates.instantiate(semiring)
        self.sr_name = f"semir_sr_{cache.key(sr_source)}"
        self.sr, _ = cache.load(self.sr_name, lambda: sr_source)
        ir = prog.format()
        # The forward depends on the program only, the backward also on the semiring and the wrt set.
        self.fwd_name = f"semir_fwd_{cache.key(ir, str(self.float_dtype))}"
        self.module_name = f"semir_bwd_{cache.key(ir, self.sr_name, repr(wrt), granularity, str(self.float_dtype))}"
        self.fwd, fresh_f = cache.load(self.fwd_name, lambda: codegen.generate(prog, wrt, semiring, self.sr_name)[0])
        self.module, fresh_b = cache.load(
            self.module_name, lambda: codegen.generate(prog, wrt, semiring, self.sr_name)[1])
        self.generated = fresh_f or fresh_b
        self.plans: dict[tuple, Plan] = {}
        self._plans_lock = threading.Lock()
        self._eager = None

    def eager_module(self):
        """The backward module of this program with the eager semiring (pointers kept), loaded at the first
        path a values-only kernel is asked for: its steps recover a node's pointers."""
        with self._plans_lock:
            if self._eager is None:
                eager = self.semiring.eager
                sr_source = templates.instantiate(eager)
                sr_name = f"semir_sr_{cache.key(sr_source)}"
                cache.load(sr_name, lambda: sr_source)
                key = cache.key(self.program.format(), sr_name, repr(self.wrt), self.granularity,
                                str(self.float_dtype))
                name = f"semir_bwd_{key}"
                self._eager, _ = cache.load(name, lambda: codegen.generate(self.program, self.wrt, eager, sr_name)[1])
            return self._eager

    def plan(self, env: dict[str, int]) -> Plan:
        k = tuple(sorted(env.items()))
        with self._plans_lock:
            if k not in self.plans:
                self.plans[k] = Plan(self.program, self.analysis, env, self.semiring, self.float_dtype)
            return self.plans[k]

    def _forward(self, inputs: dict) -> tuple[list, Plan]:
        arrays, env = bind_inputs(self.program, inputs, self.allow_nonfinite)
        plan = self.plan(env).for_call()
        V: list = [None] * len(self.program.nodes)
        for n in self.program.inputs:
            k = plan.index[n.name]
            V[k] = np.ascontiguousarray(arrays[n.name], dtype=plan.dtype[k]).reshape(-1)
        self.fwd.forward(V, plan)
        return V, plan

    def forward(self, **inputs) -> np.ndarray:
        V, plan = self._forward(inputs)
        k = plan.index[self.program.output]
        return V[k].reshape(plan.shape[k])

    def __call__(self, **inputs) -> Result:
        sr, prog = self.semiring, self.program
        V, plan = self._forward(inputs)
        fdt = self.float_dtype
        # every state a slice of one block per field, filled with 0̄ at once: a fill per state (MiniLM: 185
        # states, two fields) cost as much again as the filling itself
        ks = [plan.index[name] for name in sorted(self.analysis.needed, key=plan.index.get)]
        total = sum(plan.size[k] for k in ks)
        zero = sr.zeros((1,), fdt)
        block = plan.blocks.take(lambda: sr.zeros((total,), fdt),
                                 lambda b: [np.copyto(a, zero[f]) for f, a in b.items()])
        D: dict[int, dict[str, np.ndarray]] = {}
        off = 0
        for k in ks:
            D[k] = {f: a[off:off + plan.size[k]] for f, a in block.items()}
            off += plan.size[k]
        out = plan.index[prog.output]
        if out in D:
            D[out] = sr.ones((plan.size[out],), fdt)
        self.module.backward(V, D, plan)
        result = build_result(self, V, D, plan)
        plan.blocks.give(block)
        return result

    def emit(self, what: str) -> str:
        if what == "python":
            return (cache.source(self.fwd_name) or "") + "\n\n" + (cache.source(self.module_name) or "")
        if what == "llvm":
            return self._llvm()
        raise InputError(f"--emit {what} is not available on the numba backend (choose ir, python or llvm)")

    def _llvm(self) -> str:
        """LLVM IR of the compiled kernels, after one run on small random inputs to fix their types."""
        self(**self._sample_inputs(self.program))
        out = []
        for mod in (self.fwd, self.module, self.sr):
            for name in sorted(vars(mod)):
                fn = getattr(mod, name)
                # only the module's own kernels: helpers it imports (prelude) are not part of this program
                if (hasattr(fn, "inspect_llvm") and fn.signatures
                        and getattr(fn.py_func, "__module__", None) == mod.__name__):
                    for sig, text in _inspectable(fn).inspect_llvm().items():
                        out.append(f"; ---- {mod.__name__}.{name}{sig}\n{text}")
        return "\n".join(out)

    @staticmethod
    def _sample_inputs(prog: Program) -> dict[str, np.ndarray]:
        """Small random inputs (symbolic dims 2), to run a kernel once and fix its argument types."""
        rng = np.random.default_rng(0)
        env: dict[str, int] = {}
        inputs = {}
        for n in prog.inputs:
            shape = []
            for d in n.type.shape:
                if not isinstance(d, int):
                    for s, _ in d.terms:
                        env.setdefault(s, 2)
                    d = d.bind(env)
                shape.append(int(d))
            inputs[n.name] = (rng.integers(0, 2, size=shape) if n.type.dtype.is_int
                              else rng.normal(size=shape) * 0.5)
        return inputs


def _inspectable(fn):
    """``fn``, or a fresh compile of it where its machine code came from Numba's disk cache, whose LLVM IR
    Numba cannot show."""
    if not sum(fn.stats.cache_hits.values()):
        return fn
    from numba import jit

    fresh = jit(**{k: v for k, v in fn.targetoptions.items() if k != "cache"})(fn.py_func)
    for sig in fn.signatures:
        fresh.compile(sig)
    return fresh


def build_result(kernel, V: list, D: dict[int, dict[str, np.ndarray]], plan: Plan) -> Result:
    """The :class:`Result` of a compiled kernel from flat host arrays: values ``V`` and states ``D``."""
    sr, prog, fdt = kernel.semiring, kernel.program, kernel.float_dtype
    for name in kernel.wrt:  # a wrt node with no path to the output: 0̄ everywhere
        k = plan.index[prog.resolve(name)]
        if k not in D:
            D[k] = sr.zeros((plan.size[k],), fdt)
    tail = (sr.k,) if sr.k else ()
    states = {prog.nodes[k].name: {f: a.reshape(plan.shape[k] + tail) for f, a in s.items()} for k, s in D.items()}
    values = {n.name: V[k].reshape(plan.shape[k]) for k, n in enumerate(prog.nodes)}
    info = _LazyEdgeInfo(prog, plan, values, kernel, V, D) if sr.lazy else _EdgeInfo(prog, plan, values)
    return Result(program=prog, semiring=sr, backend=kernel.backend, granularity=kernel.granularity,
                  output=values[prog.output], wrt=kernel.wrt, states=states, values=values, edge_info=info,
                  float_dtype=fdt)


class _EdgeInfo:
    """Decode a pointer and recompute the weight of that one edge from the forward values."""

    def __init__(self, prog: Program, plan: Plan, values: dict[str, np.ndarray]):
        self.prog, self.plan, self.values = prog, plan, values
        self._edges: dict[tuple[int, int], Any] = {}

    def consumers(self, edges: np.ndarray) -> np.ndarray:
        """The consumer node of each pointer (vectorised)."""
        starts = np.array([b for b, _, _ in self.plan._bases], dtype=np.int64)
        owners = np.array([self.prog.nodes[k].name for _, k, _ in self.plan._bases], dtype=object)
        return owners[np.clip(np.searchsorted(starts, edges, side="right") - 1, 0, None)]

    def __call__(self, edge: int, from_idx: int) -> tuple[str, int, float]:
        from semir.backends.reference.jacobian import local_edges
        from semir.backends.reference.one_edge import edge_weight

        k, slot, out = self.plan.edge(edge)
        node = self.prog.nodes[k]
        xs = [self.values[i] for i in node.inputs]
        value = self.values[node.name]

        def full_slot():  # linear in the node's size: kept for the next step through this node
            if (k, slot) not in self._edges:
                self._edges[(k, slot)] = local_edges(node.op, xs, value, self.plan.attrs[k])[slot]
            return self._edges[(k, slot)]

        try:
            w = edge_weight(node.op, xs, value, self.plan.attrs[k], slot, out, from_idx, full_slot)
        except InputError:
            raise InputError(f"inconsistent path pointer into {node.name}") from None
        return node.name, out, w


class _LazyEdgeInfo(_EdgeInfo):
    """A values-only result's pointers, recovered node by node: the steps of the backward that write into the node
    are rerun with the eager kernels (the same weights, ⊕ and tie rule as an eager sweep), from the states of
    its consumers. ⊕ is idempotent, so the other states those steps touch stay what they are; the node's own
    starts at 0̄ and ends as the eager sweep's, values checked equal to this sweep's."""

    KEEP_BYTES = 256 << 20  # the recovered pointers kept, least recently used dropped first: paths from many
    # elements of one node (every token's) visit the same nodes, and the budget bounds what they cost in memory

    def __init__(self, prog: Program, plan: Plan, values: dict[str, np.ndarray], kernel, V: list, D: dict):
        super().__init__(prog, plan, values)
        self.kernel, self.V, self.D = kernel, V, D
        self._kept: dict[str, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _eager_form(self, k: int) -> dict[str, np.ndarray]:
        eager = self.kernel.semiring.eager
        s = self.D[k]
        zero = eager.zeros((), self.kernel.float_dtype)
        empty = np.logical_and.reduce([s[f] == zero[f] for f in s])
        out = {}
        for f in eager.fields:  # only whether a consumer element has a path matters to its operands' pointers
            out[f.name] = np.where(empty, EDGE_NONE, EDGE_END) if f.pointer else s[f.name].copy()
        return out

    def pointer_state(self, name: str) -> dict[str, np.ndarray]:
        """The eager sweep's pointer fields (flat) of node ``name``."""
        with self._lock:
            if name in self._kept:
                self._kept[name] = self._kept.pop(name)  # most recently used last
                return self._kept[name]
            u = self.plan.index[name]
            eager = self.kernel.semiring.eager
            module = self.kernel.eager_module()
            Dn = {u: eager.zeros((self.plan.size[u],), self.kernel.float_dtype)}
            for step, writes, reads in module.STEPS:
                if u in writes:
                    for k in writes + reads:
                        if k not in Dn:
                            Dn[k] = self._eager_form(k)
                    step(self.V, Dn, self.plan)
            got = Dn[u]
            for f in self.D[u]:
                a, b = got[f], self.D[u][f]
                bad = ~((a == b) | (np.isnan(a) & np.isnan(b)))
                if bad.any():
                    i = int(np.argmax(bad))
                    raise SemirError(f"recovering the pointers of {name!r}: element {i} has {f} {a[i]!r} rerun with "
                                     f"pointers, {b[i]!r} in the values-only sweep; the two kernels disagree")
            got = {f.name: got[f.name] for f in eager.fields if f.pointer}
            self._kept[name] = got
            while len(self._kept) > 1 and sum(a.nbytes for p in self._kept.values() for a in p.values()) > \
                    self.KEEP_BYTES:
                self._kept.pop(next(iter(self._kept)))
            return got


def compile_numba(prog: Program, semiring: Semiring, wrt: tuple[str, ...], granularity: str,
                  allow_nonfinite: bool = False, semantics: str = "exact") -> NumbaKernel:
    threads.configure()  # before the first kernel runs: Numba starts its thread pool then
    if semantics == "brunoflow":
        from .brunoflow import BrunoflowKernel

        return BrunoflowKernel(prog, semiring, wrt, granularity, allow_nonfinite)
    return NumbaKernel(prog, semiring, wrt, granularity, allow_nonfinite)

