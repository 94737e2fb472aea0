"""Path recovery reads one edge weight without building the op's whole Jacobian slot (issue 12): the weight
equals the full edge list's for every edge, and a path on a model does not build the big slots."""

import numpy as np
import pytest
from semir.backends.reference import one_edge
from semir.backends.reference.jacobian import local_edges

from semir.ir.ops import Op

rng = np.random.default_rng(0)
CASES = [
    (Op.matmul, [rng.normal(size=(3, 4)), rng.normal(size=(4, 5))], {}),
    (Op.matmul, [rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 2))], {}),  # batch broadcast
    (Op.matmul, [rng.normal(size=(2, 1, 3, 4)), rng.normal(size=(5, 4, 2))], {}),
    (Op.matmul, [rng.normal(size=4), rng.normal(size=(4, 3))], {}),  # 1-D promotion
    (Op.matmul, [rng.normal(size=(3, 4)), rng.normal(size=4)], {}),
    (Op.layernorm, [rng.normal(size=(3, 5)), rng.normal(size=5), rng.normal(size=5)], {"eps": 1e-5}),
    (Op.softmax, [rng.normal(size=(2, 3, 4))], {"axis": 2}),
    (Op.log_softmax, [rng.normal(size=(2, 4))], {"axis": 1}),
    (Op.softmax, [rng.normal(size=(3, 4))], {"axis": 0}),  # an inner axis: the full list
    (Op.exp, [rng.normal(size=(3, 4))], {}),
    (Op.mul, [rng.normal(size=(2, 3, 4)), rng.normal(size=(3, 1))], {}),  # broadcasting
    (Op.div, [rng.normal(size=4), rng.normal(size=(3, 4))], {}),
    (Op.maximum, [np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])], {}),  # a tie routes to the first
    (Op.where, [np.array([True, False, True]), rng.normal(size=3), rng.normal(size=(2, 3))], {}),
    (Op.pow, [rng.normal(size=5)], {"exponent": 3.0}),
    (Op.gelu, [rng.normal(size=(2, 5))], {"approximate": "tanh"}),
    (Op.add, [np.float64(2.0) * np.ones(()), rng.normal(size=(2, 2))], {}),  # a 0-d operand
]


def _forward(op, xs, a):
    from semir.ir.eval_rules import evaluate

    return evaluate(op, xs, a, np.float64)


@pytest.mark.parametrize("op,xs,a", CASES, ids=[f"{c[0].value}{i}" for i, c in enumerate(CASES)])
def test_one_edge_weight_equals_the_full_list(op, xs, a):
    out = _forward(op, xs, a)
    full = local_edges(op, xs, out, a)
    for slot, e in enumerate(full):
        if e is None:  # a boolean or integer operand: no edges
            continue
        calls = []

        def full_slot(slot=slot, calls=calls):
            calls.append(1)
            return full[slot]

        for o, i, w in zip(e.out_idx, e.in_idx, e.w):
            assert one_edge.edge_weight(op, xs, out, a, slot, int(o), int(i), full_slot) == float(w)
        if op in one_edge.ONE_EDGE and not (op is Op.softmax and a["axis"] == 0):
            assert not calls  # never built the slot
