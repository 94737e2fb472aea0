"""brunoflow's combination rule for max-product, on explicit edges (CONTRACT §2: the paper engine's semantics).

brunoflow runs, for every consumer of a node and every operand slot, the op's ordinary vector-Jacobian
product twice: on the consumer's max (hi) and on its min (lo). Inside the op the terms are *summed* (a matmul
row, a broadcast, repeated embedding ids) and the VJP is dense, so an operand element that has no edge into
the consumer, or only zero-weight ones, receives 0 from it. Only then are the two results ordered, the larger
becoming hi, and hi is the max over consumers (lo the min). An exact semiring orders each term first.
"""

from __future__ import annotations

import numpy as np

from semir.semirings import Semiring
from semir.semirings.base import EDGE_NONE, State


def raw_sums(sr: Semiring, out_terms: State, w: np.ndarray, seg: np.ndarray, n: int) -> list[np.ndarray]:
    """Σ w · (lumped field of the consumer) per operand element: brunoflow's VJP of one slot, dense."""
    return [np.bincount(seg, weights=w.astype(np.float64) * out_terms[f].astype(np.float64), minlength=n)
            for f, _ in sr.lumped]


def ordered(sr: Semiring, raws: list[np.ndarray], pointers: State, has_edge: np.ndarray, fdt) -> State:
    """The slot's state: the raw sums sorted into the lumped fields (hi the largest), the pointers of the
    ⊕-best edge where the element has an edge and none where its 0 came from the dense VJP alone."""
    stack = np.sort(np.stack(raws), axis=0)[::-1]
    out = dict(pointers)
    for (f, ptr), v in zip(sr.lumped, stack):
        out[f] = v.astype(fdt)
        out[ptr] = np.where(has_edge, pointers[ptr], EDGE_NONE)
    return out
