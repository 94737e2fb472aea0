"""Local Jacobians: for every op, its structural scalar edges and their weights (CONTRACT §2).

A rule returns one entry per operand slot: ``None`` for a slot with no
edges (integer ids, boolean conditions, detached values), else an
:class:`Edges` of flat C-order indices ``out_idx`` (element of the result)
and ``in_idx`` (element of the operand), and the partial derivative ``w``.
Parallel edges stay separate: ``x * x`` has one edge in each slot.
Routing ops (maximum, minimum, where, max) give an edge only from the
element that is actually selected; ties go to the first operand / lowest
index, as in the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from semir.ir.eval_rules import GELU_TANH_C, SQRT_2_OVER_PI, index_key, layernorm_parts
from semir.ir.index_maps import broadcast_index as _bcast
from semir.ir.index_maps import reduce_index as _reduce_map
from semir.ir.index_maps import row_index as _rows
from semir.ir.ops import Op


@dataclass(frozen=True)
class Edges:
    out_idx: np.ndarray
    in_idx: np.ndarray
    w: np.ndarray

    def __len__(self) -> int:
        return len(self.out_idx)

    def sorted(self) -> Edges:
        o, i = self.out_idx, self.in_idx
        if len(o) < 2 or np.all((o[1:] > o[:-1]) | ((o[1:] == o[:-1]) & (i[1:] > i[:-1]))):
            return self
        order = np.lexsort((self.in_idx, self.out_idx))
        return Edges(self.out_idx[order], self.in_idx[order], self.w[order])


JacobianRule = Callable[[list[np.ndarray], np.ndarray, dict[str, Any]], list[Edges | None]]




def _elementwise(derivs: Callable[[list[np.ndarray], np.ndarray, dict], list]) -> JacobianRule:
    """Rule for ops where each output element depends on the same position of each (broadcast) operand."""
    def rule(xs, out, a):
        result = []
        n = out.size
        for x, d in zip(xs, derivs(xs, out, a)):
            if d is None:
                result.append(None)
                continue
            w = np.broadcast_to(np.asarray(d, dtype=out.dtype), out.shape).ravel()
            result.append(Edges(np.arange(n), _bcast(x.shape, out.shape), w))
        return result
    return rule


def _routing(select: Callable[[list[np.ndarray]], list[np.ndarray | None]]) -> JacobianRule:
    """Each output element flows from exactly one operand: edges of weight 1 from that one only."""
    def rule(xs, out, a):
        result = []
        for x, mask in zip(xs, select(xs)):
            if mask is None:
                result.append(None)
                continue
            m = np.broadcast_to(mask, out.shape).ravel()
            oi = np.nonzero(m)[0]
            result.append(Edges(oi, _bcast(x.shape, out.shape)[oi], np.ones(len(oi), out.dtype)))
        return result
    return rule


def _unary(d: Callable[[np.ndarray, np.ndarray, dict], np.ndarray]) -> JacobianRule:
    return _elementwise(lambda xs, out, a: [d(xs[0], out, a)])


def _gelu_d(x, out, a):
    # float64, rounded to the node's dtype by the caller: the two terms cancel for x < -4 (see eval_rules.gelu)
    dt = x.dtype
    x = np.asarray(x, np.float64)
    if a.get("approximate") == "tanh":
        u = SQRT_2_OVER_PI * (x + GELU_TANH_C * x ** 3)
        t = np.tanh(u)
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_C * x * x)
    else:
        from semir.ir.eval_rules import erf

        d = 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return d.astype(dt)


def _pow_d(x, out, a):
    p = a["exponent"]
    return np.zeros_like(x) if p == 0 else p * np.power(x, p - 1)


def _linear(signs: tuple[float, ...]) -> JacobianRule:
    return _elementwise(lambda xs, out, a: [s if x.dtype.kind == "f" else None for s, x in zip(signs, xs)])


def _div_d(xs, out, a):
    x, y = xs
    return [1.0 / y, -x / (y * y)]


def _mul_d(xs, out, a):
    return [xs[1], xs[0]]


def _none(xs, out, a):
    return [None] * len(xs)


# -- reductions ---------------------------------------------------------------



def _sum_like(scale: bool) -> JacobianRule:
    def rule(xs, out, a):
        x = xs[0]
        axes = a["axes"]
        count = int(np.prod([x.shape[i] for i in axes], dtype=np.int64))
        w = np.full(x.size, 1.0 / count if scale else 1.0, dtype=out.dtype)
        return [Edges(_reduce_map(x, axes), np.arange(x.size), w).sorted()]
    return rule




def _max_rule(xs, out, a):
    x = xs[0]
    rows = _rows(x, a["axes"])
    first = np.argmax(x.ravel()[rows], axis=1)  # argmax picks the first maximum: ties to the lowest index
    src = rows[np.arange(len(rows)), first]
    return [Edges(np.arange(len(rows)), src, np.ones(len(rows), out.dtype))]


# -- row-wise dense Jacobians ----------------------------------------------

def _dense(idx_out: np.ndarray, idx_in: np.ndarray, w: np.ndarray) -> Edges:
    """Edges for every (i, j) within each row: idx_* are [R, n], w is [R, n, n] indexed (row, i, j)."""
    R, n = idx_out.shape
    oi = np.broadcast_to(idx_out[:, :, None], (R, n, n)).ravel()
    ii = np.broadcast_to(idx_in[:, None, :], (R, n, n)).ravel()
    return Edges(oi, ii, w.reshape(-1))


def _softmax_rule(log: bool) -> JacobianRule:
    def rule(xs, out, a):
        rows = _rows(xs[0], (a["axis"],))
        s = out.ravel()[rows]
        if log:
            s = np.exp(s)
            w = np.eye(s.shape[1], dtype=out.dtype)[None] - s[:, None, :]
        else:
            w = s[:, :, None] * (np.eye(s.shape[1], dtype=out.dtype)[None] - s[:, None, :])
        return [_dense(rows, rows, w.astype(out.dtype))]
    return rule


def _layernorm_rule(xs, out, a):
    x, g, b = xs
    xhat, inv = layernorm_parts(x, a["eps"])
    n = x.shape[-1]
    rows = np.arange(x.size).reshape(-1, n)
    dt = out.dtype.type
    xh = xhat.reshape(-1, n).astype(out.dtype)
    # w_ij = (γ_i/σ)·((δ_ij − 1/n) − x̂_i·(x̂_j/n)), every operation in the node's dtype (1/n and x̂_j/n rounded
    # to it): the generated kernels compute these same numbers, and x̂_j/n is taken once per element
    gi = g.astype(out.dtype).reshape(1, n, 1) * inv.reshape(-1, 1, 1).astype(out.dtype)
    xn = xh / dt(n)
    w = gi * ((np.eye(n, dtype=out.dtype)[None] - dt(1.0 / n)) - xh[:, :, None] * xn[:, None, :])
    gcol = np.broadcast_to(np.arange(n), x.shape).ravel()
    return [
        _dense(rows, rows, w.astype(out.dtype)),
        Edges(np.arange(x.size), gcol, xhat.ravel().astype(out.dtype)),
        Edges(np.arange(x.size), gcol, np.ones(x.size, out.dtype)),
    ]


# -- contraction --------------------------------------------------------------

def _matmul_rule(xs, out, a):
    x, y = xs
    xi = np.arange(x.size).reshape(x.shape)
    yi = np.arange(y.size).reshape(y.shape)
    xv, yv = x, y
    if x.ndim == 1:
        xi, xv = xi[None, :], xv[None, :]
    if y.ndim == 1:
        yi, yv = yi[:, None], yv[:, None]
    batch = np.broadcast_shapes(xi.shape[:-2], yi.shape[:-2])
    M, K, N = xi.shape[-2], xi.shape[-1], yi.shape[-1]
    oi = np.arange(out.size).reshape(batch + (M, N))
    full = batch + (M, K, N)
    o = np.broadcast_to(oi[..., :, None, :], full).ravel()
    ex = Edges(o, np.broadcast_to(xi[..., :, :, None], full).ravel(),
               np.broadcast_to(yv[..., None, :, :], full).ravel().astype(out.dtype))
    ey = Edges(o, np.broadcast_to(yi[..., None, :, :], full).ravel(),
               np.broadcast_to(xv[..., :, :, None], full).ravel().astype(out.dtype))
    return [ex.sorted() if x.dtype.kind == "f" else None, ey.sorted() if y.dtype.kind == "f" else None]


# -- movement: apply the op to an array of indices ---------------------------

def _movement(fn: Callable[[np.ndarray, dict], np.ndarray]) -> JacobianRule:
    def rule(xs, out, a):
        x = xs[0]
        src = fn(np.arange(x.size).reshape(x.shape), a).ravel()
        return [Edges(np.arange(src.size), src, np.ones(src.size, out.dtype))]
    return rule


def _concat_rule(xs, out, a):
    result = []
    for k in range(len(xs)):
        parts = [np.arange(x.size).reshape(x.shape) if i == k else np.full(x.shape, -1) for i, x in enumerate(xs)]
        src = np.concatenate(parts, axis=a["axis"]).ravel()
        oi = np.nonzero(src >= 0)[0]
        result.append(Edges(oi, src[oi], np.ones(len(oi), out.dtype)) if xs[k].dtype.kind == "f" else None)
    return result


def _take_rule(xs, out, a):
    table, ids = xs
    row = int(np.prod(table.shape[1:], dtype=np.int64))
    src = ((ids.reshape(-1) % table.shape[0])[:, None] * row + np.arange(row)).ravel()
    return [Edges(np.arange(src.size), src, np.ones(src.size, out.dtype)), None]


JACOBIAN: dict[Op, JacobianRule] = {
    Op.input: _none,
    Op.const: _none,
    Op.neg: _unary(lambda x, o, a: -np.ones_like(x)),
    Op.exp: _unary(lambda x, o, a: o),
    Op.log: _unary(lambda x, o, a: 1.0 / x),
    Op.tanh: _unary(lambda x, o, a: 1.0 - o * o),
    Op.sigmoid: _unary(lambda x, o, a: o * (1.0 - o)),
    Op.relu: _unary(lambda x, o, a: (x > 0).astype(o.dtype)),
    Op.gelu: _unary(_gelu_d),
    Op.erf: _unary(lambda x, o, a: 2.0 / math.sqrt(math.pi) * np.exp(-x * x)),
    Op.sqrt: _unary(lambda x, o, a: 0.5 / o),
    Op.rsqrt: _unary(lambda x, o, a: -0.5 * o / x),
    Op.abs: _unary(lambda x, o, a: np.sign(x)),
    Op.square: _unary(lambda x, o, a: 2.0 * x),
    Op.sin: _unary(lambda x, o, a: np.cos(x)),
    Op.cos: _unary(lambda x, o, a: -np.sin(x)),
    Op.pow: _unary(_pow_d),
    Op.cast: _elementwise(lambda xs, o, a: [1.0 if xs[0].dtype.kind == "f" and o.dtype.kind == "f" else None]),
    Op.detach: _none,
    Op.add: _linear((1.0, 1.0)),
    Op.sub: _linear((1.0, -1.0)),
    Op.mul: _elementwise(_mul_d),
    Op.div: _elementwise(_div_d),
    Op.maximum: _routing(lambda xs: [xs[0] >= xs[1], ~(xs[0] >= xs[1])]),
    Op.minimum: _routing(lambda xs: [xs[0] <= xs[1], ~(xs[0] <= xs[1])]),
    Op.lt: _none,
    Op.le: _none,
    Op.gt: _none,
    Op.ge: _none,
    Op.eq: _none,
    Op.ne: _none,
    Op.where: _routing(lambda xs: [None, xs[0].astype(bool), ~xs[0].astype(bool)]),
    Op.sum: _sum_like(False),
    Op.mean: _sum_like(True),
    Op.max: _max_rule,
    Op.softmax: _softmax_rule(False),
    Op.log_softmax: _softmax_rule(True),
    Op.layernorm: _layernorm_rule,
    Op.matmul: _matmul_rule,
    Op.transpose: _movement(lambda i, a: np.transpose(i, a["axes"])),
    Op.reshape: _movement(lambda i, a: np.reshape(i, a["shape"])),
    Op.index: _movement(lambda i, a: i[index_key(a["spec"])]),
    Op.concat: _concat_rule,
    Op.take: _take_rule,
}


def local_edges(op: Op, xs: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> list[Edges | None]:
    """Edges of one node, slot by slot, in canonical order (by output element, then operand element).

    Slots whose operand or result is not floating point have no edges.
    """
    if out.dtype.kind != "f":
        return [None] * len(xs)
    with np.errstate(all="ignore"):
        edges = JACOBIAN[op](xs, out, attrs)
    return [e.sorted() if e is not None and x.dtype.kind == "f" else None for e, x in zip(edges, xs)]

