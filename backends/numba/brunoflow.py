"""semantics="brunoflow" for max-product on the Numba backend: dense VJPs, as brunoflow runs them.

brunoflow computes the max and min path products by running each op's vector-Jacobian product on the
consumer's hi and on its lo, ordering the two results, and taking the max (min) over consumers (see
``backends/reference/brunoflow.py`` for the rule on explicit edges, the specification this is checked
against). Written as VJPs, a matmul's are two ordinary GEMMs per operand, so nothing here materialises a
contraction's edges: the memory is that of the values, and MiniLM runs at BLAS speed. The other ops' edges
are linear in their size; their scatter and the per-consumer merge are compiled Numba loops.

Like brunoflow, the kernel records at every element which *consumer* gave its max and its min, not which
element: ``Result.next_nodes`` (the branch analyses) works, element paths need ``backend="reference"``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from semir.errors import OptionError
from semir.ir.node import Program
from semir.ir.ops import Op
from semir.results import Result
from semir.runtime import bind_attrs, bind_inputs
from semir.semirings import Semiring
from semir.semirings.base import EDGE_NONE

from ..reference.backend import float_dtype_of, forward
from ..reference.jacobian import local_edges


@njit(cache=True, nogil=True)
def _scatter(seg, out_idx, w, src, n):  # pragma: no cover  (compiled)
    out = np.zeros(n, np.float64)
    for i in range(len(seg)):
        out[seg[i]] += w[i] * src[out_idx[i]]
    return out


@njit(cache=True, nogil=True)
def _merge(hi, lo, hi_c, lo_c, a, b, has_edge, consumer, none):  # pragma: no cover  (compiled)
    # Consumers arrive in reverse forward order, so each one precedes every earlier arrival: a tie goes to
    # it, as the reference's lowest edge id. A 0 that only the dense VJP gave (no edge) names no consumer
    # and loses ties, as the reference's "no edge" pointer.
    for i in range(len(hi)):
        top, bot = (a[i], b[i]) if a[i] >= b[i] else (b[i], a[i])
        p = consumer if has_edge[i] else none
        if top > hi[i] or (top == hi[i] and has_edge[i]):
            hi[i], hi_c[i] = top, p
        if bot < lo[i] or (bot == lo[i] and has_edge[i]):
            lo[i], lo_c[i] = bot, p


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` down to ``shape``: the VJP of numpy broadcasting."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for ax, d in enumerate(shape):
        if d == 1 and g.shape[ax] != 1:
            g = g.sum(axis=ax, keepdims=True)
    return g


def _matmul_vjp(a: np.ndarray, b: np.ndarray, g: np.ndarray, slot: int) -> np.ndarray:
    """The VJP of ``a @ b`` for one operand, numpy's 1-D promotion included: two GEMMs' worth of work."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g.reshape(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1]))
    if slot == 0:
        return _unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
    return _unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)


class _Consumers:
    """Pointers here are consumer indices: they name the branch, and refuse to be followed to an element."""

    def __init__(self, names: list[str]):
        self.names = np.array(names + [""], dtype=object)

    def consumers(self, ids: np.ndarray) -> np.ndarray:
        return self.names[ids]

    def __call__(self, edge: int, from_idx: int):
        raise OptionError("semantics='brunoflow' on the numba backend records which consumer carries each "
                          "element's max, as brunoflow does, not which element: Result.next_nodes works; "
                          "for element paths compile with backend='reference'")


class BrunoflowKernel:
    backend = "numba"

    def __init__(self, prog: Program, semiring: Semiring, wrt: tuple[str, ...], granularity: str,
                 allow_nonfinite: bool = False):
        if semiring.paths != "signed" or len(semiring.lumped) != 2:
            raise OptionError(f"semantics='brunoflow' on numba computes max_product, not {semiring.name!r}")
        self.program, self.semiring, self.wrt = prog, semiring, wrt
        self.granularity, self.allow_nonfinite = granularity, allow_nonfinite
        self.float_dtype = float_dtype_of(prog)
        reach = {prog.output}
        for n in reversed(prog.nodes):
            if n.name in reach:
                reach.update(n.inputs)
        self.live = [n for n in prog.nodes if n.type.dtype.is_float and n.name in reach]

    def forward(self, **inputs) -> np.ndarray:
        arrays, env = bind_inputs(self.program, inputs, self.allow_nonfinite)
        return forward(self.program, arrays, env)[self.program.output]

    def __call__(self, **inputs) -> Result:
        prog, sr, fdt = self.program, self.semiring, self.float_dtype
        (hi, hi_e), (lo, lo_e) = sr.lumped
        arrays, env = bind_inputs(prog, inputs, self.allow_nonfinite)
        values = forward(prog, arrays, env)
        live = {n.name for n in self.live}
        D = {n.name: {k: v.copy() for k, v in sr.zeros((values[n.name].size,), np.float64).items()}
             for n in prog.nodes if n.type.dtype.is_float}
        D[prog.output] = {k: v.copy() for k, v in sr.ones((values[prog.output].size,), np.float64).items()}
        index = {n.name: k for k, n in enumerate(prog.nodes)}
        for n in reversed(self.live):
            if n.op in (Op.input, Op.const):
                continue
            xs = [values[i] for i in n.inputs]
            out = D[n.name]
            slots = [s for s, u in enumerate(n.inputs) if u in live]
            if not slots:
                continue
            edges = None if n.op is Op.matmul else local_edges(n.op, xs, values[n.name], bind_attrs(n.attr_dict, env))
            for slot in reversed(slots):  # the reference numbers edges by slot: ties go to the lower one
                u, size = n.inputs[slot], xs[slot].size
                if n.op is Op.matmul:
                    shape = values[n.name].shape
                    a, b = (_matmul_vjp(xs[0].astype(np.float64), xs[1].astype(np.float64),
                                        out[f].reshape(shape), slot).ravel() for f in (hi, lo))
                    has_edge = np.full(size, values[n.name].size > 0)
                else:
                    e = edges[slot]
                    if e is None:
                        continue
                    w = e.w.astype(np.float64)
                    a, b = (_scatter(e.in_idx, e.out_idx, w, out[f], size) for f in (hi, lo))
                    has_edge = np.bincount(e.in_idx, minlength=size) > 0
                a, b = (v.astype(fdt).astype(np.float64) for v in (a, b))  # each slot rounded, as the reference
                s = D[u]
                _merge(s[hi], s[lo], s[hi_e], s[lo_e], a, b, has_edge, index[n.name], EDGE_NONE)
        states = {name: {k: (v.astype(fdt) if v.dtype.kind == "f" else v).reshape(values[name].shape)
                         for k, v in s.items()} for name, s in D.items()}
        return Result(program=prog, semiring=sr, backend=self.backend, granularity=self.granularity,
                      output=values[prog.output], wrt=self.wrt, states=states, values=values,
                      edge_info=_Consumers([n.name for n in prog.nodes]), float_dtype=fdt)
