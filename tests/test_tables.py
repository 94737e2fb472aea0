"""Every op appears in every rule table, and every builtin maps onto primitives."""

from semir.backends.cuda import codegen as cuda_codegen
from semir.backends.numba import codegen as numba_codegen
from semir.backends.reference.jacobian import JACOBIAN

from semir.frontend.builtins import BUILTINS
from semir.ir.eval_rules import EVAL_RULES
from semir.ir.ops import ELEMENTWISE, GROUPS, Op
from semir.ir.shapes import SHAPE_RULES

TABLES = {"shape": SHAPE_RULES, "eval": EVAL_RULES, "jacobian": JACOBIAN, "numba backward": numba_codegen.BACKWARD,
          "cuda forward": cuda_codegen.FORWARD, "cuda backward": cuda_codegen.BACKWARD}


def test_every_op_in_every_table():
    for name, table in TABLES.items():
        missing = [op.value for op in Op if op not in table]
        assert not missing, f"{name} table lacks {missing}"
        extra = [k for k in table if not isinstance(k, Op)]
        assert not extra, f"{name} table has non-op keys {extra}"


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
    for table in (numba_codegen.FWD, numba_codegen.EDGES):
        assert sorted(op.value for op in ELEMENTWISE if op not in table) == []


def test_semirings_are_data_and_every_builtin_has_its_kernels_in_backends():
    import dataclasses

    from semir.backends.semiring_kernels import KERNELS, kernels_for

    from semir.semirings import BUILTIN, Semiring, topk

    assert not [f.name for f in dataclasses.fields(Semiring)
                if f.name.startswith("numba") or f.name in ("gemm", "cuda")]
    for sr in [*BUILTIN.values(), topk(3)]:
        assert kernels_for(sr) is not None and kernels_for(sr).acc.lstrip().startswith("def acc("), sr.name
    assert set(KERNELS) == set(BUILTIN) | {"topk"}
