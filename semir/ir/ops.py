"""The closed set of IR primitives, in named groups.

Every interpretation (shape rules, reference evaluation, local Jacobian,
code emission, plan data) is a table keyed by :class:`Op`;
``tests/test_tables.py`` checks that each table covers exactly its domain
(every op, the elementwise ops, or the structured ones).
"""

from __future__ import annotations

import enum


class Op(enum.Enum):
    # sources
    input = "input"
    const = "const"
    # elementwise, one operand
    neg = "neg"
    exp = "exp"
    log = "log"
    tanh = "tanh"
    sigmoid = "sigmoid"
    relu = "relu"
    gelu = "gelu"
    erf = "erf"
    sqrt = "sqrt"
    rsqrt = "rsqrt"
    abs = "abs"
    square = "square"
    sin = "sin"
    cos = "cos"
    pow = "pow"
    cast = "cast"
    detach = "detach"
    # elementwise, two operands (numpy broadcasting)
    add = "add"
    sub = "sub"
    mul = "mul"
    div = "div"
    maximum = "maximum"
    minimum = "minimum"
    # comparisons: boolean results, no gradient edges
    lt = "lt"
    le = "le"
    gt = "gt"
    ge = "ge"
    eq = "eq"
    ne = "ne"
    where = "where"
    # reductions over `axes`
    sum = "sum"
    mean = "mean"
    max = "max"
    # row-wise normalisations with dense per-row Jacobians
    softmax = "softmax"
    log_softmax = "log_softmax"
    layernorm = "layernorm"
    # contraction
    matmul = "matmul"
    # movement
    transpose = "transpose"
    reshape = "reshape"
    index = "index"
    concat = "concat"
    take = "take"

    def __repr__(self) -> str:
        return f"Op.{self.value}"


UNARY = frozenset({
    Op.neg, Op.exp, Op.log, Op.tanh, Op.sigmoid, Op.relu, Op.gelu, Op.erf, Op.sqrt, Op.rsqrt,
    Op.abs, Op.square, Op.sin, Op.cos, Op.pow, Op.cast, Op.detach,
})
BINARY = frozenset({Op.add, Op.sub, Op.mul, Op.div, Op.maximum, Op.minimum})
COMPARE = frozenset({Op.lt, Op.le, Op.gt, Op.ge, Op.eq, Op.ne})
ELEMENTWISE = UNARY | BINARY | COMPARE | {Op.where}
REDUCTION = frozenset({Op.sum, Op.mean, Op.max})
NORMALIZATION = frozenset({Op.softmax, Op.log_softmax, Op.layernorm})
CONTRACTION = frozenset({Op.matmul})
MOVEMENT = frozenset({Op.transpose, Op.reshape, Op.index, Op.concat, Op.take})
SOURCE = frozenset({Op.input, Op.const})
# What code generators lower one node at a time, each by its own kernel; elementwise ops are fused into groups
# and sources need no code. Backends' per-op tables are keyed by exactly one of these domains.
STRUCTURED = REDUCTION | NORMALIZATION | CONTRACTION | MOVEMENT

# Ops that pick one operand element per output element: they create an edge
# only from the element that actually flows (no phantom zero-weight paths).
ROUTING = frozenset({Op.maximum, Op.minimum, Op.where, Op.max})

GROUPS = {
    "source": SOURCE,
    "elementwise": ELEMENTWISE,
    "reduction": REDUCTION,
    "normalization": NORMALIZATION,
    "contraction": CONTRACTION,
    "movement": MOVEMENT,
}

assert sorted(o.value for g in GROUPS.values() for o in g) == sorted(o.value for o in Op)
