"""The reference backend: the executable specification of CONTRACT §2.

Forward: every node by its NumPy rule. Backward: Algorithm 2 over the
explicit scalar edges of every node (``jacobian.py``), in one reverse
topological sweep: ``D[o] = 1̄``; ``D[u] ⊕= lift(w) ⊗ D[v]`` for every edge.

Edge ids are global: consumers in forward topological order, then operand
slot, then the op's canonical edge order (by output element, then operand
element). Path pointers are these ids, and ties break toward the lower id.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from semir.errors import InputError, SemirError
from semir.ir.eval_rules import evaluate
from semir.ir.node import Program
from semir.ir.ops import Op
from semir.results import Result
from semir.runtime import bind_attrs, bind_inputs
from semir.semirings import Semiring
from semir.semirings.base import State, take

from . import brunoflow as bf_rule
from .jacobian import Edges, local_edges


def float_dtype_of(prog: Program) -> np.dtype:
    floats = [n.type.dtype for n in prog.nodes if n.type.dtype.is_float]
    return np.dtype(np.float64) if any(d.value == "f64" for d in floats) or not floats else np.dtype(np.float32)


def forward(prog: Program, arrays: dict[str, np.ndarray], env: dict[str, int]) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = dict(arrays)
    for n in prog.nodes:
        if n.op is Op.input:
            continue
        args = [values[i] for i in n.inputs]
        attrs = bind_attrs(n.attr_dict, env)
        if n.op is Op.take:
            rows = args[0].shape[0]
            bad = (args[1] < 0) | (args[1] >= rows)  # a negative id is refused, never wrapped
            if np.any(bad):
                raise InputError(f"node {n.name!r}: id {int(args[1][bad].ravel()[0])} is out of range for a "
                                 f"table of {rows} rows (0..{rows - 1})")
        values[n.name] = evaluate(n.op, args, attrs, n.type.dtype.numpy)
    return values


def segment_reduce(sr: Semiring, contrib: State, seg: np.ndarray, n: int, fdt) -> State:
    """⊕ of the contributions that land on each of ``n`` elements (``seg`` gives the element)."""
    counts = np.bincount(seg, minlength=n)
    if len(seg) == n and np.all(counts == 1):
        order = np.argsort(seg, kind="stable")
        return take(contrib, order)
    maxdeg = int(counts.max()) if len(seg) else 0
    grid = sr.zeros((n, max(maxdeg, 1)), fdt)
    if len(seg):
        order = np.argsort(seg, kind="stable")
        s_sorted = seg[order]
        starts = np.cumsum(counts) - counts
        pos = np.arange(len(seg)) - starts[s_sorted]
        for k, v in contrib.items():
            grid[k][s_sorted, pos] = v[order]
    width = grid[next(iter(grid))].shape[1]
    while width > 1:
        if width % 2:
            pad = sr.zeros((n, 1), fdt)
            grid = {k: np.concatenate([v, pad[k]], axis=1) for k, v in grid.items()}
            width += 1
        grid = sr.plus({k: v[:, 0::2] for k, v in grid.items()}, {k: v[:, 1::2] for k, v in grid.items()})
        width //= 2
    return {k: v[:, 0] for k, v in grid.items()}


class ByOperand:
    """A slot's edge list indexed by operand element: ``(positions, out_idx, w)`` of the edges out of one."""

    def __init__(self, e: Edges):
        self.e = e
        self.order = np.argsort(e.in_idx, kind="stable")
        self.keys = e.in_idx[self.order]

    def __call__(self, in_flat: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = np.searchsorted(self.keys, in_flat, "left"), np.searchsorted(self.keys, in_flat, "right")
        pos = self.order[lo:hi]
        return pos, self.e.out_idx[pos], self.e.w[pos]


@dataclass
class _EdgeTable:
    """Edge lists of every consumer slot, with their global id offsets, for path recovery."""

    starts: list[int] = field(default_factory=list)
    entries: list[tuple[str, Edges]] = field(default_factory=list)
    operands: dict[str, list[int]] = field(default_factory=dict)  # node -> the entries it is the operand of
    _by: dict[int, ByOperand] = field(default_factory=dict)

    def add(self, start: int, consumer: str, edges: Edges, operand: str) -> None:
        self.operands.setdefault(operand, []).append(len(self.entries))
        self.starts.append(start)
        self.entries.append((consumer, edges))

    def out_edges(self, name: str, from_idx: int) -> list[tuple[np.ndarray, str, np.ndarray, np.ndarray]]:
        """(pointers, consumer, consumer elements, weights) of the edges out of element ``from_idx`` of ``name``,
        one entry per consumer slot: what a lazy pointer is recovered from (``Result.path``)."""
        found = []
        for k in self.operands.get(name, []):
            consumer, e = self.entries[k]
            if k not in self._by:
                self._by[k] = ByOperand(e)
            pos, outs, w = self._by[k](from_idx)
            found.append((self.starts[k] + pos, consumer, outs, w))
        return found

    def consumers(self, edges: np.ndarray) -> np.ndarray:
        """The consumer node of each pointer (vectorised)."""
        k = np.searchsorted(np.asarray(self.starts), edges, side="right") - 1
        names = np.array([c for c, _ in self.entries] or [""], dtype=object)
        return names[np.clip(k, 0, None)]

    def __call__(self, edge: int, from_idx: int) -> tuple[str, int, float]:
        k = bisect.bisect_right(self.starts, edge) - 1
        consumer, e = self.entries[k]
        i = edge - self.starts[k]
        if int(e.in_idx[i]) != from_idx:
            raise SemirError(f"inconsistent path pointer into {consumer!r}")
        return consumer, int(e.out_idx[i]), float(e.w[i])


class ReferenceKernel:
    backend = "reference"

    def __init__(self, prog: Program, semiring: Semiring, wrt: tuple[str, ...], granularity: str,
                 allow_nonfinite: bool = False, semantics: str = "exact"):
        self.program, self.semiring, self.wrt = prog, semiring, wrt
        self.granularity, self.allow_nonfinite, self.semantics = granularity, allow_nonfinite, semantics
        self.float_dtype = float_dtype_of(prog)
        reach = {prog.output}
        for n in reversed(prog.nodes):
            if n.name in reach:
                reach.update(n.inputs)
        # Every float node gets a state (0̄ where no path reaches the output); only nodes with a path
        # to the output take part in the sweep.
        self.float_nodes = [n for n in prog.nodes if n.type.dtype.is_float]
        self.live = [n for n in self.float_nodes if n.name in reach]

    def forward(self, **inputs) -> np.ndarray:
        arrays, env = bind_inputs(self.program, inputs, self.allow_nonfinite)
        return forward(self.program, arrays, env)[self.program.output]

    def __call__(self, **inputs) -> Result:
        prog, sr, fdt = self.program, self.semiring, self.float_dtype
        arrays, env = bind_inputs(prog, inputs, self.allow_nonfinite)
        values = forward(prog, arrays, env)
        live = {n.name for n in self.live}
        D: dict[str, State] = {n.name: sr.zeros((values[n.name].size,), fdt) for n in self.float_nodes}
        out = prog.output
        if out in D:
            D[out] = sr.ones((values[out].size,), fdt)
        # Edges of every live consumer, numbered in forward order.
        brunoflow = self.semantics == "brunoflow"
        table = _EdgeTable()
        plan = []
        next_id = 0
        for n in self.live:
            if n.op in (Op.input, Op.const):
                continue
            xs = [values[i] for i in n.inputs]
            attrs = bind_attrs(n.attr_dict, env)
            for slot, e in enumerate(local_edges(n.op, xs, values[n.name], attrs)):
                # brunoflow's dense VJP reaches every element of a live operand, edges or not
                if e is None or n.inputs[slot] not in live or (len(e) == 0 and not brunoflow):
                    continue
                table.add(next_id, n.name, e, n.inputs[slot])
                plan.append((n.name, n.inputs[slot], e, next_id))
                next_id += len(e)
        for v, u, e, start in reversed(plan):
            terms = take(D[v], e.out_idx)
            contrib = sr.extend(terms, e.w, np.arange(start, start + len(e)))
            best = segment_reduce(sr, contrib, e.in_idx, values[u].size, fdt)
            if brunoflow:
                raws = bf_rule.raw_sums(sr, terms, e.w, e.in_idx, values[u].size)
                has_edge = np.bincount(e.in_idx, minlength=values[u].size) > 0
                best = bf_rule.ordered(sr, raws, best, has_edge, fdt)
            D[u] = sr.plus(D[u], best)
        tail = (sr.k,) if sr.k else ()
        states = {n: {k: a.reshape(values[n].shape + tail) for k, a in s.items()} for n, s in D.items()}
        return Result(program=prog, semiring=sr, backend=self.backend, granularity=self.granularity,
                      output=values[out], wrt=self.wrt, states=states, values=values, edge_info=table,
                      float_dtype=fdt)


def compile_reference(prog: Program, semiring: Semiring, wrt: tuple[str, ...], granularity: str,
                      allow_nonfinite: bool = False, semantics: str = "exact") -> ReferenceKernel:
    return ReferenceKernel(prog, semiring, wrt, granularity, allow_nonfinite, semantics)
