"""The weight of one edge, for path recovery, without building the op's whole Jacobian slot.

A path step needs one edge: (operand element → output element) of one op. Building the slot's full edge
list for it costs O(M·K·N) for a matmul (hundreds of MB on MiniLM) and O(rows·n²) for layernorm and
softmax. Here those ops compute only what the one output element depends on: its matmul row and column, or
its row of the dense per-row Jacobian (by the same rule as the full list, on a one-row problem, so the
weight is the same number). Every other op's edges are linear in its size and come from the full list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from semir.errors import InputError
from semir.ir.ops import ELEMENTWISE, Op

from .jacobian import JACOBIAN, local_edges


def _matmul(xs, out, attrs, slot, out_flat, in_flat):
    x, y = xs
    x2 = x[None, :] if x.ndim == 1 else x
    y2 = y[:, None] if y.ndim == 1 else y
    batch = np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2])
    *b, m, n = np.unravel_index(out_flat, batch + (x2.shape[-2], y2.shape[-1]))

    def own(shape):  # the operand's batch index for output batch index b (numpy broadcasting)
        lead = len(batch) - len(shape)
        return tuple(0 if d == 1 else int(i) for i, d in zip(b[lead:], shape))

    if slot == 0:
        *bx, mi, k = np.unravel_index(in_flat, x2.shape)
        if mi != m or tuple(bx) != own(x2.shape[:-2]):
            raise InputError("inconsistent path pointer into a matmul")
        return y2[own(y2.shape[:-2]) + (k, n)]
    *by, k, ni = np.unravel_index(in_flat, y2.shape)
    if ni != n or tuple(by) != own(y2.shape[:-2]):
        raise InputError("inconsistent path pointer into a matmul")
    return x2[own(x2.shape[:-2]) + (m, k)]


def _last_axis_row(op: Op, axis_of):
    """An op whose Jacobian is dense within rows of the last axis: its rule on the output element's row."""

    def weight(xs, out, attrs, slot, out_flat, in_flat):
        x = xs[0]
        if axis_of(attrs, x.ndim) != x.ndim - 1:
            return None
        n = x.shape[-1]
        r, i = divmod(int(out_flat), n)
        row = [x.reshape(-1, n)[r:r + 1]] + list(xs[1:])
        a = {**attrs, "axis": 1} if "axis" in attrs else attrs
        with np.errstate(all="ignore"):
            e = JACOBIAN[op](row, out.reshape(-1, n)[r:r + 1], a)[slot]
        j = int(in_flat) - r * n if slot == 0 else int(in_flat)  # parameters (γ, β) keep their own index
        hit = np.nonzero((e.out_idx == i) & (e.in_idx == j))[0]
        if len(hit) != 1:
            raise InputError(f"inconsistent path pointer into a {op.value}")
        return e.w[hit[0]]

    return weight


def _elementwise(op: Op):
    """An elementwise op: its rule on the one output element and the operand elements it reads (numpy
    broadcasting), so the weight is the full list's number and no slot of the node's size is built."""

    def weight(xs, out, attrs, slot, out_flat, in_flat):
        oi = np.unravel_index(int(out_flat), out.shape)

        def own(x):  # the operand element that output element oi reads
            lead = out.ndim - x.ndim
            return tuple(0 if d == 1 else int(oi[lead + a]) for a, d in enumerate(x.shape))

        x = xs[slot]
        if (int(np.ravel_multi_index(own(x), x.shape)) if x.ndim else 0) != int(in_flat):
            raise InputError(f"inconsistent path pointer into a {op.value}")
        one = [np.asarray(v[own(v)]).reshape(1) for v in xs]
        e = local_edges(op, one, np.asarray(out[oi]).reshape(1), attrs)[slot]
        if e is None or len(e.w) != 1:
            raise InputError(f"inconsistent path pointer into a {op.value}")
        return e.w[0]

    return weight


# Each rule returns the weight, or None to use the full list (a softmax over an inner axis): the ops whose
# slots are larger than linear in the node's size, and the elementwise ops (a slot of the node's size for one
# step: 74 MB over a BERT-base path).
ONE_EDGE = {
    Op.matmul: _matmul,
    Op.layernorm: _last_axis_row(Op.layernorm, lambda a, nd: nd - 1),
    Op.softmax: _last_axis_row(Op.softmax, lambda a, nd: a["axis"] % nd),
    Op.log_softmax: _last_axis_row(Op.log_softmax, lambda a, nd: a["axis"] % nd),
    **{op: _elementwise(op) for op in ELEMENTWISE},
}


def edge_weight(op: Op, xs: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any], slot: int, out_flat: int,
                in_flat: int, full_slot) -> float:
    """The weight of the edge from operand ``slot``'s element ``in_flat`` to output element ``out_flat``.
    ``full_slot()`` gives the slot's full edge list (built once by the caller) for every other op."""
    rule = ONE_EDGE.get(op)
    w = rule(xs, out, attrs, slot, out_flat, in_flat) if rule else None
    if w is not None:
        return float(np.asarray(w, dtype=out.dtype))
    e = full_slot()
    lo = np.searchsorted(e.out_idx, out_flat, side="left")
    hi = np.searchsorted(e.out_idx, out_flat, side="right")
    hit = lo + np.nonzero(e.in_idx[lo:hi] == in_flat)[0]
    if len(hit) != 1:
        raise InputError("inconsistent path pointer")
    return float(e.w[hit[0]])
