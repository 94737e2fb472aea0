
"""Every per-op table covers exactly its domain, with a real rule for each op, and every builtin maps onto
primitives."""

import inspect

import pytest
from semir.backends import skeleton
from semir.backends.cuda import codegen as cuda_codegen
from semir.backends.cuda import kernel as cuda_kernel
from semir.backends.numba import codegen as numba_codegen
from semir.backends.numba import kernel as numba_kernel
from semir.backends.reference.jacobian import JACOBIAN

from semir.frontend.builtins import BUILTINS
from semir.ir.eval_rules import EVAL_RULES
from semir.ir.ops import ELEMENTWISE, GROUPS, SOURCE, STRUCTURED, Op
from semir.ir.shapes import SHAPE_RULES

ALL = frozenset(Op)
# Every per-op decision of the compiler and its backends, with the ops it must decide for: each table holds
# exactly those keys (an op that no table decides for, or a key outside the domain, fails).
TABLES = {
    "shape rules": (SHAPE_RULES, ALL),
    "evaluation rules (IR)": (EVAL_RULES, ALL),
    "local Jacobians (reference)": (JACOBIAN, ALL),
    "forward expressions (Numba, CUDA)": (skeleton.FWD, ELEMENTWISE),
    "local edges (Numba, CUDA)": (skeleton.EDGES, ELEMENTWISE),
    "host plan data (Numba, CUDA)": (numba_kernel.PLAN_DATA, STRUCTURED),
    "forward evaluation (Numba)": (numba_kernel.EVALUATE, STRUCTURED | {Op.const}),
    "backward calls (Numba)": (numba_codegen.BACKWARD, STRUCTURED),
    "forward launches (CUDA)": (cuda_codegen.FORWARD, STRUCTURED),
    "backward launches (CUDA)": (cuda_codegen.BACKWARD, STRUCTURED),
    "device plan data (CUDA)": (cuda_kernel.DEVICE_DATA, STRUCTURED),
}


@pytest.mark.parametrize("name", TABLES)
def test_every_table_covers_exactly_its_domain(name):
    table, domain = TABLES[name]
    assert not [k for k in table if not isinstance(k, Op)], f"{name}: non-op keys"
    assert sorted(o.value for o in domain - table.keys()) == [], f"{name} lacks these ops"
    assert sorted(o.value for o in table.keys() - domain) == [], f"{name} has entries outside its domain"


@pytest.mark.parametrize("name", TABLES)
def test_no_placeholder_rules(name):
    # a rule that only raises ("unreachable") would make coverage pass by construction
    for op, rule in TABLES[name][0].items():
        if callable(rule):
            src = inspect.getsource(rule) if not isinstance(rule, type) else ""
            assert "unreachable" not in src.lower() and "AssertionError" not in src, f"{name}: {op} is a placeholder"


def test_domains_partition_the_ops():
    assert ELEMENTWISE | STRUCTURED | SOURCE == ALL
    assert not ELEMENTWISE & STRUCTURED and not SOURCE & (ELEMENTWISE | STRUCTURED)


def test_emit_variants_name_real_ops_attributes_and_rules():
    for (op, attr, _value), variant in skeleton.VARIANTS.items():
        assert op in ELEMENTWISE and f'"{attr}"' in inspect.getsource(EVAL_RULES[op]), (op, attr)  # a real attribute
        assert set(variant) <= {"fwd", "edges"} and variant
        if "edges" in variant:
            assert len(variant["edges"]) == len(skeleton.EDGES[op])


def test_groups_partition_the_ops():
    seen = [op for group in GROUPS.values() for op in group]
    assert sorted(o.value for o in seen) == sorted(o.value for o in Op)
    assert len(seen) == len(set(seen))


def test_spec_builtins_exist():
    spec = ("exp log tanh sigmoid relu gelu sqrt rsqrt abs square sin cos maximum minimum where sum mean max "
            "softmax log_softmax layernorm transpose reshape concat take").split()
    assert [b for b in spec if b not in BUILTINS] == []


def test_every_elementwise_op_has_emit_rules():
    # the fused-group emitters of both code-generating backends read these two tables
    for table in (skeleton.FWD, skeleton.EDGES):
        assert sorted(op.value for op in ELEMENTWISE if op not in table) == []


def test_semirings_are_data_and_every_builtin_has_its_kernels_in_backends():
    import dataclasses

    from semir.backends.semiring_kernels import KERNELS, acc_source, kernels_for

    from semir.semirings import BUILTIN, Semiring, topk

    assert not [f.name for f in dataclasses.fields(Semiring)
                if f.name.startswith("numba") or f.name in ("gemm", "cuda")]
    from semir.semirings.builtin import LAZY

    # every built-in semiring's kernels, and each values-only variant's, are an ordinary module
    for sr in [*BUILTIN.values(), topk(3), *LAZY.values()]:
        k = kernels_for(sr)
        assert k.module and not k.acc and acc_source(k).lstrip().startswith("def acc("), sr.name
    assert set(KERNELS) == set(BUILTIN) | {"topk"} | {f"{name}/values" for name in LAZY}
