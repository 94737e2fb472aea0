"""The path-enumeration oracle: ground truth for every semiring on small programs.

It expands a program into its scalar gradient graph with its own rules,
written element by element with plain loops and scalar derivative formulas
(independent of ``backends/reference/jacobian.py``), enumerates every path
from an element to the output explicitly, and computes each semiring's
value *by definition* from the multiset of path products (CONTRACT §2), without
using any semiring's ⊕ or ⊗.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

import numpy as np

from ..ir.node import Program
from ..ir.ops import Op
from ..runtime import bind_attrs, bind_inputs

Edge = tuple[str, int, str, int, float]  # (u node, u flat, v node, v flat, weight)


def _scalar_deriv(op: Op, x: float, y: float, a: dict) -> float:
    if op is Op.neg:
        return -1.0
    if op is Op.exp:
        return math.exp(x)
    if op is Op.log:
        return 1.0 / x
    if op is Op.tanh:
        return 1.0 - math.tanh(x) ** 2
    if op is Op.sigmoid:
        s = 1.0 / (1.0 + math.exp(-x))
        return s * (1.0 - s)
    if op is Op.relu:
        return 1.0 if x > 0 else 0.0
    if op is Op.gelu:
        if a.get("approximate") == "tanh":
            c = math.sqrt(2.0 / math.pi)
            t = math.tanh(c * (x + 0.044715 * x ** 3))
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
        return 0.5 * (1 + math.erf(x / math.sqrt(2))) + x * math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    if op is Op.erf:
        return 2.0 / math.sqrt(math.pi) * math.exp(-x * x)
    if op is Op.sqrt:
        return 0.5 / math.sqrt(x) if x > 0 else math.inf  # IEEE's 0.5/√0 (Python raises)
    if op is Op.rsqrt:
        return -0.5 * x ** -1.5
    if op is Op.abs:
        return float(np.sign(x))
    if op is Op.square:
        return 2.0 * x
    if op is Op.sin:
        return math.cos(x)
    if op is Op.cos:
        return -math.sin(x)
    if op is Op.pow:
        p = a["exponent"]
        return 0.0 if p == 0 else p * x ** (p - 1)
    if op is Op.cast:
        return 1.0
    raise KeyError(op)


def _bidx(out_idx: tuple, shape: tuple) -> tuple:
    """Index of a broadcast operand read by output element ``out_idx``."""
    off = len(out_idx) - len(shape)
    return tuple(0 if d == 1 else out_idx[off + k] for k, d in enumerate(shape))


def _flat(idx: tuple, shape: tuple) -> int:
    return int(np.ravel_multi_index(idx, shape)) if shape else 0


def scalar_edges(op: Op, xs: list[np.ndarray], out: np.ndarray, a: dict, names: list[str], me: str) -> list[Edge]:
    E: list[Edge] = []
    isf = [x.dtype.kind == "f" for x in xs]
    if out.dtype.kind != "f" or op in (Op.input, Op.const, Op.detach, Op.lt, Op.le, Op.gt, Op.ge, Op.eq, Op.ne):
        return E

    def add(slot, iidx, oidx, w):
        if isf[slot]:
            E.append((names[slot], _flat(iidx, xs[slot].shape), me, _flat(oidx, out.shape), float(w)))

    oshape = out.shape
    if op in (Op.neg, Op.exp, Op.log, Op.tanh, Op.sigmoid, Op.relu, Op.gelu, Op.erf, Op.sqrt, Op.rsqrt, Op.abs,
              Op.square, Op.sin, Op.cos, Op.pow, Op.cast):
        for o in np.ndindex(oshape):
            add(0, o, o, _scalar_deriv(op, float(xs[0][o]), float(out[o]), a))
    elif op in (Op.add, Op.sub, Op.mul, Op.div, Op.maximum, Op.minimum):
        for o in np.ndindex(oshape):
            i0, i1 = _bidx(o, xs[0].shape), _bidx(o, xs[1].shape)
            p, q = float(xs[0][i0]), float(xs[1][i1])
            if op is Op.add:
                add(0, i0, o, 1.0), add(1, i1, o, 1.0)
            elif op is Op.sub:
                add(0, i0, o, 1.0), add(1, i1, o, -1.0)
            elif op is Op.mul:
                add(0, i0, o, q), add(1, i1, o, p)
            elif op is Op.div:
                add(0, i0, o, 1.0 / q), add(1, i1, o, -p / (q * q))
            elif op is Op.maximum:
                add(0, i0, o, 1.0) if p >= q else add(1, i1, o, 1.0)
            else:
                add(0, i0, o, 1.0) if p <= q else add(1, i1, o, 1.0)
    elif op is Op.where:
        for o in np.ndindex(oshape):
            c = bool(xs[0][_bidx(o, xs[0].shape)])
            slot = 1 if c else 2
            add(slot, _bidx(o, xs[slot].shape), o, 1.0)
    elif op in (Op.sum, Op.mean, Op.max):
        axes, keep = a["axes"], a.get("keepdims", False)
        x = xs[0]
        count = int(np.prod([x.shape[i] for i in axes])) if axes else 1

        def out_of(i):
            return tuple((0 if k in axes else v) for k, v in enumerate(i)) if keep else tuple(
                v for k, v in enumerate(i) if k not in axes)
        if op is Op.max:
            best: dict[tuple, tuple] = {}
            for i in np.ndindex(x.shape):
                o = out_of(i)
                if o not in best or x[i] > x[best[o]]:
                    best[o] = i
            for o, i in best.items():
                add(0, i, o, 1.0)
        else:
            for i in np.ndindex(x.shape):
                add(0, i, out_of(i), 1.0 / count if op is Op.mean else 1.0)
    elif op in (Op.softmax, Op.log_softmax):
        ax = a["axis"]
        s = out if op is Op.softmax else np.exp(out)
        for o in np.ndindex(oshape):
            for j in range(oshape[ax]):
                i = o[:ax] + (j,) + o[ax + 1:]
                delta = 1.0 if j == o[ax] else 0.0
                w = s[o] * (delta - s[i]) if op is Op.softmax else delta - s[i]
                add(0, i, o, w)
    elif op is Op.layernorm:
        x, g, _ = xs
        n = x.shape[-1]
        for row in np.ndindex(x.shape[:-1]):
            v = [float(x[row + (k,)]) for k in range(n)]
            mu = sum(v) / n
            sd = math.sqrt(sum((t - mu) ** 2 for t in v) / n + a["eps"])
            xh = [(t - mu) / sd for t in v]
            for i in range(n):
                for j in range(n):
                    w = float(g[i]) / sd * ((1.0 if i == j else 0.0) - 1.0 / n - xh[i] * xh[j] / n)
                    add(0, row + (j,), row + (i,), w)
                add(1, (i,), row + (i,), xh[i])
                add(2, (i,), row + (i,), 1.0)
    elif op is Op.matmul:
        x, y = xs
        xs2 = x.reshape((1,) + x.shape) if x.ndim == 1 else x
        ys2 = y.reshape(y.shape + (1,)) if y.ndim == 1 else y
        K = xs2.shape[-1]
        o2shape = np.broadcast_shapes(xs2.shape[:-2], ys2.shape[:-2]) + (xs2.shape[-2], ys2.shape[-1])
        for o2 in np.ndindex(o2shape):
            batch, m, n_ = o2[:-2], o2[-2], o2[-1]
            o = batch + ((m,) if x.ndim > 1 else ()) + ((n_,) if y.ndim > 1 else ())
            for k in range(K):
                xi = _bidx(batch, xs2.shape[:-2]) + (m, k)
                yi = _bidx(batch, ys2.shape[:-2]) + (k, n_)
                xi_orig = (k,) if x.ndim == 1 else xi
                yi_orig = (k,) if y.ndim == 1 else yi
                add(0, xi_orig, o, float(ys2[yi]))
                add(1, yi_orig, o, float(xs2[xi]))
    elif op is Op.transpose:
        axes = a["axes"]
        for o in np.ndindex(oshape):
            i = [0] * len(axes)
            for k, ax in enumerate(axes):
                i[ax] = o[k]
            add(0, tuple(i), o, 1.0)
    elif op is Op.reshape:
        for f in range(out.size):
            E.append((names[0], f, me, f, 1.0))
    elif op is Op.index:
        x = xs[0]
        spec = a["spec"]
        for o in np.ndindex(oshape):
            i, k = [], 0
            for d, item in enumerate(spec):
                if isinstance(item, int):
                    i.append(item % x.shape[d])
                else:
                    start, _, step = slice(*item).indices(x.shape[d])
                    i.append(start + step * o[k])
                    k += 1
            i.extend(o[k:])
            add(0, tuple(i), o, 1.0)
    elif op is Op.concat:
        ax = a["axis"]
        for o in np.ndindex(oshape):
            pos = o[ax]
            for slot, x in enumerate(xs):
                if pos < x.shape[ax]:
                    add(slot, o[:ax] + (pos,) + o[ax + 1:], o, 1.0)
                    break
                pos -= x.shape[ax]
    elif op is Op.take:
        table, ids = xs
        for o in np.ndindex(oshape):
            row = int(ids[o[:ids.ndim]]) % table.shape[0]
            add(0, (row,) + o[ids.ndim:], o, 1.0)
    else:
        raise KeyError(f"oracle has no rule for {op}")
    return E


class Oracle:
    """Scalar gradient graph of one program on one input, with explicit path enumeration."""

    def __init__(self, prog: Program, inputs: dict[str, Any], max_paths: int = 200_000):
        from semir.ir.eval_rules import evaluate

        # forward values from the ops' own rules (semir.ir), not from a backend
        arrays, env = bind_inputs(prog, inputs)
        values = dict(arrays)
        for n in prog.nodes:
            if n.op.value != "input":
                values[n.name] = evaluate(n.op, [values[i] for i in n.inputs], bind_attrs(n.attr_dict, env),
                                          n.type.dtype.numpy)
        self.prog, self.values = prog, values
        self.out_edges: dict[tuple[str, int], list[tuple[str, int, float]]] = defaultdict(list)
        for n in prog.nodes:
            xs = [self.values[i] for i in n.inputs]
            for u, ui, v, vi, w in scalar_edges(n.op, xs, self.values[n.name], bind_attrs(n.attr_dict, env),
                                                list(n.inputs), n.name):
                self.out_edges[(u, ui)].append((v, vi, w))
        self.max_paths = max_paths
        self._memo: dict[tuple[str, int], list[tuple[float, bool]]] = {}

    def paths(self, node: str, flat: int) -> list[tuple[float, bool]]:
        """(product, all edges non-zero) for every path from element ``flat`` of ``node`` to the output."""
        key = (node, flat)
        if key in self._memo:
            return self._memo[key]
        out: list[tuple[float, bool]] = [(1.0, True)] if node == self.prog.output else []
        for v, vi, w in self.out_edges.get(key, ()):
            for g, nz in self.paths(v, vi):
                # a product of reals: a zero factor makes it 0, even where the float product of the rest
                # overflowed or a derivative is infinite (IEEE's 0·∞ is NaN)
                out.append((0.0 if w == 0 or g == 0 else w * g, nz and w != 0))
        if len(out) > self.max_paths:
            raise ValueError("too many paths for the oracle")
        self._memo[key] = out
        return out

    def is_edge(self, u: str, ui: int, v: str, vi: int, w: float, rtol: float = 1e-9) -> bool:
        return any(t == v and ti == vi and math.isclose(tw, w, rel_tol=rtol, abs_tol=1e-300)
                   for t, ti, tw in self.out_edges.get((u, ui), ()))

    def expected(self, semiring: str, node: str) -> dict[str, np.ndarray]:
        """Reported values by definition, for every element of ``node``: {"value": ..., and extras}."""
        node = self.prog.resolve(node)
        shape = self.values[node].shape
        return _by_definition(semiring, [self.paths(node, f) for f in range(int(np.prod(shape)))], shape)

    def expected_union(self, semiring: str, node: str) -> dict[str, np.ndarray]:
        """By definition, over the union of the path sets of every element of ``node`` (Eq. 3)."""
        node = self.prog.resolve(node)
        size = self.values[node].size
        return _by_definition(semiring, [list(itertools.chain(*(self.paths(node, f) for f in range(size))))], ())


def _by_definition(semiring: str, per_elem: list[list[tuple[float, bool]]], shape) -> dict[str, np.ndarray]:
    vals, extra = [], defaultdict(list)
    for ps in per_elem:
        g = [p for p, _ in ps]
        mags = [abs(p) for p in g]
        if semiring == "sum_product":
            vals.append(math.fsum(g))
        elif semiring == "max_product":
            vals.append(max(g) if g else -math.inf)
            extra["lo"].append(min(g) if g else math.inf)
        elif semiring == "max_abs":
            best = max(mags) if g else 0.0
            vals.append(next((p for p in g if abs(p) == best), 0.0))
            extra["magnitude"].append(best)
        elif semiring == "entropy":
            Z = math.fsum(mags)
            vals.append(math.nan if Z == 0 else -math.fsum((m / Z) * math.log(m / Z) for m in mags if m > 0))
            extra["logz"].append(math.log(Z) if Z > 0 else -math.inf)
        elif semiring == "log":
            Z = math.fsum(mags)
            vals.append(math.log(Z) if Z > 0 else -math.inf)
        elif semiring == "counting":
            vals.append(float(sum(1 for _, nz in ps if nz)))
        elif semiring == "boolean":
            vals.append(any(nz for _, nz in ps))
        elif semiring.startswith("topk:"):
            k = int(semiring[5:])
            top = sorted(g, key=abs, reverse=True)[:k]
            vals.append(top + [0.0] * (k - len(top)))
            extra["magnitude"].append(sorted(mags, reverse=True)[:k] + [0.0] * (k - len(top)))
        else:
            raise KeyError(semiring)
    tail = (int(semiring[5:]),) if semiring.startswith("topk:") else ()
    out = {"value": np.array(vals, dtype=object if semiring == "boolean" else float).reshape(shape + tail)}
    for k, v in extra.items():
        out[k] = np.array(v, dtype=float).reshape(shape + (tail if k == "magnitude" else ()))
    if semiring == "boolean":
        out["value"] = out["value"].astype(bool)
    return out
