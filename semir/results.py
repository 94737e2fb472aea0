"""What a compiled kernel returns: forward value, per-node semiring states, paths, aggregates."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .errors import OptionError, SemirError, suggest
from .ir.node import Program
from .ir.ops import Op
from .pathview import format_path, layer_hops
from .semirings import EDGE_END, EDGE_NONE, Semiring, State
from .semirings.base import reduce_state


class Step(NamedTuple):
    """One element on a path: ``weight`` is the edge from it to the next step (1.0 at the output)."""

    node: str
    index: tuple[int, ...]
    weight: float


class Path(list):
    """The steps of a path from a chosen element to the output; ``value`` is the product of weights.

    ``program`` (set by :meth:`Result.path`) lets it print one line per layer; see :mod:`semir.pathview`.
    """

    program: Program | None = None
    shapes: dict[str, tuple[int, ...]] = {}  # noqa: RUF012  (replaced per instance) concrete node shapes

    @property
    def value(self) -> float:
        """The product of the weights in float64, formed as the sweep forms it, from the output back, and with
        0·∞ = 0 (a zero weight makes the product 0 even where the rest overflowed)."""
        w = [s.weight for s in self]
        if not w or 0 in w:
            return 0.0
        p = 1.0
        for x in reversed(w):
            p *= x  # Python floats overflow to inf without a warning
        return p

    def format(self, tokens: list[str] | None = None, detail: bool | None = None) -> str:
        """One line per layer: the factor it contributes, the token the path leaves it at, and the steps that
        branch, scale or change token (``tokens``: the sentence's tokens, to label them). ``detail``: every
        step with its edge weight (default: for paths of at most 12 steps)."""
        return format_path(self, self.program, tokens, detail)

    def layers(self, tokens: list[str] | None = None) -> list[dict]:
        """The path as data, one entry per layer: ``segment``, ``factor`` and the ``token`` it leaves at."""
        return layer_hops(self, self.program, tokens)

    def __str__(self) -> str:
        return self.format()

    def _repr_html_(self) -> str:  # Jupyter: the one-line-per-layer text
        import html

        return f"<pre>{html.escape(self.format())}</pre>"

    def __repr__(self) -> str:
        if not self:
            return "<Path: none>"
        return (f"<Path value {self.value:.6g}, {len(self) - 1} edges, {self[0].node}{list(self[0].index)} -> "
                f"{self[-1].node}>")


# (pointer, element it leaves from) -> (consumer node, consumer element, edge weight)
EdgeInfo = Callable[[int, int], tuple[str, int, float]]


def _follow_single(state: State, i: int, comp: Any):
    return int(state["edge"].reshape(-1)[i]), lambda w: comp


def _follow_signed(state: State, i: int, comp: Any):
    other = {"hi": "lo", "lo": "hi"}[comp]
    return int(state[f"{comp}_edge"].reshape(-1)[i]), lambda w: comp if w >= 0 else other


def _follow_ranked(state: State, i: int, comp: Any):
    k = state["edge"].shape[-1]
    r = int(comp)
    nxt = int(state["rank"].reshape(-1, k)[i, r])
    return int(state["edge"].reshape(-1, k)[i, r]), lambda w: nxt


# How pointers are followed, by the semiring's ``paths`` kind.
FOLLOW = {"single": _follow_single, "signed": _follow_signed, "ranked": _follow_ranked}
DEFAULT_COMPONENT = {"single": "v", "signed": "hi", "ranked": 0}


@dataclass
class Result:
    program: Program
    semiring: Semiring
    backend: str
    granularity: str
    output: Any
    wrt: tuple[str, ...]
    states: dict[str, State]
    values: dict[str, np.ndarray] | None = None
    edge_info: EdgeInfo | None = None
    float_dtype: Any = np.float64

    def __repr__(self) -> str:  # short: the states of a real model are megabytes
        out = np.asarray(self.output)
        value = f"{out.item():.6g}" if out.size == 1 else f"array of shape {out.shape}"
        wrt = ", ".join(f"{n} {tuple(np.shape(self.states[self.program.resolve(n)][self.semiring.fields[0].name]))}"
                        for n in self.wrt[:4]) + (f", ... ({len(self.wrt) - 4} more)" if len(self.wrt) > 4 else "")
        return f"<Result {self.semiring.name} on {self.backend}: output {value}; wrt {wrt}>"

    def _repr_html_(self) -> str:  # Jupyter: one row per reported node, with a summary of its values
        import html

        out = np.asarray(self.output)
        value = f"{out.item():.6g}" if out.size == 1 else f"array of shape {out.shape}"
        rows = []
        for n in self.wrt[:20]:
            v = np.asarray(self.node(n))
            finite = v[np.isfinite(v)] if v.dtype.kind == "f" else v
            summary = (f"{v.item():.6g}" if v.size == 1 else "no finite values" if not finite.size else
                       f"min {finite.min():.4g}, max {finite.max():.4g}, mean {finite.mean():.4g}")
            rows.append(f"<tr><td><code>{html.escape(n)}</code></td><td>{v.shape}</td><td>{v.dtype}</td>"
                        f"<td>{summary}</td></tr>")
        more = f"<tr><td colspan=4>... {len(self.wrt) - 20} more</td></tr>" if len(self.wrt) > 20 else ""
        return (f"<p><b>{html.escape(self.semiring.name)}</b> on {html.escape(self.backend)}: output "
                f"{value}</p><table><tr><th>node</th><th>shape</th><th>dtype</th><th>reported value</th></tr>"
                + "".join(rows) + more + "</table>")

    # -- lookup ---------------------------------------------------------------

    def _name(self, name: str) -> str:
        node = self.program.resolve(name)
        if node in self.states:
            return node
        if node in self.program.by_name:
            n = self.program.by_name[node]
            if not n.type.dtype.is_float:
                raise SemirError(f"node {name!r} holds {n.type}: integer and boolean values have no gradient paths")
            raise SemirError(f"node {name!r} was not computed by this kernel; compile with wrt=[..., {name!r}]")
        raise SemirError(f"unknown node {name!r}{suggest(name, self.program.names())}; the program has no such "
                         "name (or it does not reach the output and was removed)")

    def state(self, name: str) -> State:
        """The raw carrier arrays at ``name``, shaped like the node (``topk:K``: plus a trailing K axis)."""
        return self.states[self._name(name)]

    def node(self, name: str) -> np.ndarray:
        """The reported value (the semiring's finalisation) of the derivative at any computed node."""
        return self._checked(self.semiring.finalize(self.state(name)))

    @functools.cached_property
    def nonfinite(self) -> str | None:
        """The first node on a gradient path (from a ``wrt`` node to the output) whose forward value holds NaN
        or inf, or None. Where there is one, semirings whose ``nonfinite`` policy is "nan" report NaN
        everywhere and refuse paths: their values would depend on the order of evaluation."""
        if self.values is None:
            return None
        prog = self.program
        reach = {prog.output}
        for n in reversed(prog.nodes):
            if n.name in reach:
                reach.update(n.inputs)
        live = {prog.resolve(w) for w in self.wrt}
        for n in prog.nodes:
            if n.name in live or (n.op is not Op.detach and any(i in live for i in n.inputs)):
                live.add(n.name)
                if n.name not in reach:
                    continue
                # the node and every operand of it: an operand off the path still sets the edge weights
                for m in (n.name, *n.inputs):
                    v = self.values.get(m)
                    if prog.by_name[m].type.dtype.is_float and v is not None and not np.all(np.isfinite(v)):
                        return m
        return None

    def _checked(self, reported: np.ndarray) -> np.ndarray:
        if self.semiring.nonfinite != "nan" or self.nonfinite is None:
            return reported
        return np.full(np.shape(reported), np.nan)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.node(name)

    def value(self, name: str) -> np.ndarray:
        """The forward value of a node."""
        if self.values is None:
            raise SemirError("this kernel did not keep forward values")
        return self.values[self.program.resolve(name)]

    # -- aggregation (paper Eq. 3) ----------------------------------------

    def aggregate(self, name: str, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
        """⊕ the states of ``name`` over ``axis`` (None: all), then finalise (entropy of the union of paths)."""
        return self._checked(self.semiring.finalize(self.aggregate_state(name, axis)))

    def aggregate_state(self, name: str, axis: int | tuple[int, ...] | None = None) -> State:
        s = self.state(name)
        rank = len(self._shape(self._name(name)))
        items = tuple(range(rank)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
        for a in items:
            if not -rank <= a < rank:
                raise OptionError(f"axis {a} is out of range for node {name!r} of rank {rank}")
        return reduce_state(self.semiring, s, tuple(sorted({a % rank for a in items})), rank)

    # -- paths ----------------------------------------------------------------

    def path(self, name: str, index: Any = (), component: Any = None) -> Path:
        """The path achieving the reported value at element ``index`` of ``name``.

        ``component``: ``"hi"``/``"lo"`` for max_product, the rank (0 = best)
        for topk:K. Each step is (node, element index, edge weight); the
        product of the weights equals the reported value.
        """
        sr = self.semiring
        if not sr.has_paths:
            raise OptionError(f"semiring {sr.name!r} does not record paths; use max_product, max_abs or topk:K")
        if self.edge_info is None:
            raise SemirError("this kernel did not keep path pointers")
        if self.semiring.nonfinite == "nan" and self.nonfinite is not None:
            raise SemirError(f"no path is defined: node {self.nonfinite!r} holds NaN or inf on a gradient path")
        comp = DEFAULT_COMPONENT[sr.paths] if component is None else component
        if sr.paths == "signed" and comp not in ("hi", "lo"):
            raise OptionError(f"component must be 'hi' or 'lo', got {comp!r}")
        if sr.paths == "ranked" and not (isinstance(comp, int) and 0 <= comp < sr.k):
            raise OptionError(f"component must be a rank in 0..{sr.k - 1}, got {comp!r}")
        node = self._name(name)
        shape = self._shape(node)
        idx = self._flat(shape, index, name)
        steps = Path()
        steps.program = self.program
        steps.shapes = {n: np.shape(v) for n, v in self.values.items()} if self.values else {}
        for _ in range(10_000_000):
            edge, nxt = FOLLOW[sr.paths](*self._pointers(node, idx, comp), comp)
            here = tuple(int(i) for i in np.unravel_index(idx, shape)) if shape else ()
            if edge == EDGE_END:
                steps.append(Step(node, here, 1.0))
                return steps
            if edge == EDGE_NONE:
                if not steps:
                    if sr.paths == "signed" and np.isfinite(self.states[node][comp].reshape(-1)[idx]):
                        # semantics="brunoflow": a 0 that the dense VJP gave an element with no edge
                        raise SemirError(f"no path carries the value at {name}{list(here)}: it is brunoflow's "
                                         "zero adjoint for an element that does not feed the op")
                    return steps  # no path from this element: the value is 0̄
                raise SemirError(f"broken path pointer at {node}{list(here)}")
            consumer, out_i, w = self.edge_info(edge, idx)
            steps.append(Step(node, here, float(w)))
            node, idx, comp = consumer, out_i, nxt(w)
            shape = self._shape(node)
        raise SemirError("path recovery did not terminate")

    def next_nodes(self, name: str, component: Any = None) -> np.ndarray:
        """For every element of ``name``: the node its best path goes to next ("" if it has no path).

        At a branching point this says which branch carries the path (``component`` as in :meth:`path`).
        """
        sr = self.semiring
        if not sr.has_paths or self.edge_info is None:
            raise OptionError(f"semiring {sr.name!r} does not record paths; use max_product, max_abs or topk:K")
        comp = DEFAULT_COMPONENT[sr.paths] if component is None else component
        if sr.paths == "signed" and comp not in ("hi", "lo"):
            raise OptionError(f"component must be 'hi' or 'lo', got {comp!r}")
        node = self._name(name)
        st = self.states[node]
        if sr.lazy:  # every element's pointer, recovered (on numba: the whole node at once)
            size = int(np.prod(self._shape(node), dtype=np.int64))
            whole = (self.edge_info.pointer_state(node)[f"{comp}_edge"]
                     if hasattr(self.edge_info, "pointer_state") and node != self.program.resolve(self.program.output)
                     else np.array([self._lazy_pointer(node, i, comp) for i in range(size)], np.int64))
            st = {f"{comp}_edge": whole.reshape(self._shape(node))}
        field = {"single": "edge", "signed": f"{comp}_edge", "ranked": "edge"}[sr.paths]
        edges = st[field][..., int(comp)] if sr.paths == "ranked" else st[field]
        flat = edges.reshape(-1)
        out = np.where(flat == EDGE_END, self.program.output, "").astype(object)
        real = (flat != EDGE_END) & (flat != EDGE_NONE)
        if real.any():
            out[real] = self.edge_info.consumers(flat[real])
        return out.reshape(edges.shape)

    def _pointers(self, node: str, idx: int, comp: Any) -> tuple[State, int]:
        """(state, index) holding element ``idx``'s pointer: the sweep's state, or (lazy) the rescanned one."""
        if not self.semiring.lazy:
            return self.states[node], idx
        return {f"{comp}_edge": np.array([self._lazy_pointer(node, idx, comp)], np.int64)}, 0

    def _lazy_pointer(self, node: str, idx: int, comp: Any) -> int:
        """The pointer of element ``idx`` of ``node`` that an eager sweep would have kept: the ⊕ of the
        candidates its edges bring, with their edge ids, by the eager semiring (the same tie rule)."""
        eager = self.semiring.eager
        if node == self.program.resolve(self.program.output):
            return EDGE_END
        if hasattr(self.edge_info, "pointer_state"):  # the backend recovers (and checks) a whole node at once
            return int(self.edge_info.pointer_state(node)[f"{comp}_edge"][idx])
        zero = eager.zeros((), self.float_dtype)
        best = zero
        for ids, consumer, outs, w in self.edge_info.out_edges(node, idx):
            if not len(ids):
                continue
            if consumer not in self.states:
                raise SemirError(f"no state was kept at {consumer!r} to recover a path through it")
            vals = {f: v.reshape(-1)[outs] for f, v in self.states[consumer].items()}
            empty = np.logical_and.reduce([vals[f] == zero[f] for f in vals])
            for f in eager.fields:  # the consumer's own pointer does not matter here, only whether it has one
                if f.pointer:
                    vals[f.name] = np.where(empty, EDGE_NONE, EDGE_END)
            cand = eager.extend(vals, w, ids)
            best = eager.plus(best, reduce_state(eager, cand, (0,), 1))
        have = self.states[node][comp].reshape(-1)[idx]
        if not (best[comp] == have or (np.isnan(best[comp]) and np.isnan(have))):
            raise SemirError(f"recovering the pointer of {node}[{idx}] found {float(best[comp])!r} where the sweep "
                             f"computed {float(have)!r}: the lazy rescan and the kernel disagree")
        return int(best[f"{comp}_edge"])

    def _shape(self, node: str) -> tuple[int, ...]:
        arr = self.states[node][self.semiring.fields[0].name]
        return arr.shape[:-1] if self.semiring.k else arr.shape

    def _flat(self, shape: tuple[int, ...], index: Any, name: str) -> int:
        idx = (index,) if isinstance(index, int | np.integer) else tuple(index)
        if len(idx) != len(shape) or any(not -d <= i < d for i, d in zip(idx, shape)):
            raise OptionError(f"index {list(idx)} is not an element of {name!r} (shape {list(shape)})")
        return int(np.ravel_multi_index(tuple(i % d for i, d in zip(idx, shape)), shape)) if shape else 0

    # -- export -----------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "semiring": self.semiring.name,
            "backend": self.backend,
            "granularity": self.granularity,
            "output": _jsonable(self.output),
            "wrt": {n: _jsonable(self.node(n)) for n in self.wrt},
        }


def _jsonable(a: Any) -> Any:
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return [_jsonable(x) for x in a] if a.ndim else (float(a) if np.isfinite(a) else str(float(a)))
    return a.tolist()
