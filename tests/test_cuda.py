"""The CUDA backend equals the reference backend, paths included (issue 5).

Without a GPU (CI) these run the generated kernels in numba's CUDA simulator (conftest sets
NUMBA_ENABLE_CUDASIM=1), which executes every thread as Python: shapes stay small, and the default run
covers every semiring on the small examples plus representative semirings on the larger ones. ``-m slow``
runs the full example × semiring matrix; ``SEMIR_CUDA_DEVICE=1 pytest -m 'gpu or not gpu' tests/test_cuda.py``
runs everything on a real GPU.
"""

import textwrap

import numpy as np
import pytest
from conftest import EXAMPLES, as_f64, compare, compare_paths, random_inputs

import semir

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install -e '.[test]')")

if not cuda.is_available():  # only when SEMIR_CUDA_DEVICE=1 was asked for on a machine without a GPU
    pytest.skip("no CUDA device and the simulator is off", allow_module_level=True)

SEMIRINGS = ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:3"]
DIMS = {"S": 3, "B": 2}
# (model, semiring) pairs of the default run; the rest of the matrix is marked slow (about 5 min simulated). The
# transformer layer's default run is test_transformer_float32.
FAST = {("paper_fig1", s) for s in SEMIRINGS} | {("mlp", s) for s in SEMIRINGS} | {
    ("attention", "max_product"), ("attention", "entropy"), ("lstm", "topk:3")}
MATRIX = [pytest.param(m, s, marks=() if (m, s) in FAST else pytest.mark.slow)
          for m in sorted(p.stem for p in EXAMPLES.glob("*.semir")) for s in SEMIRINGS]


def both(prog, semiring, ins, **kw):
    ref = semir.compile(prog, semiring, backend="reference", **kw)(**ins)
    got = semir.compile(prog, semiring, backend="cuda", **kw)(**ins)
    return got, ref


@pytest.mark.parametrize("model, semiring", MATRIX)
def test_examples_equal_reference(model, semiring):
    prog = as_f64(semir.load(EXAMPLES / f"{model}.semir"))
    ins = random_inputs(prog, seed=5, dims=DIMS, scale=0.7)
    got, ref = both(prog, semiring, ins)
    assert got.backend == "cuda"
    np.testing.assert_allclose(got.output, ref.output, rtol=1e-12)
    compare(got, ref, semiring, rtol=1e-9, atol=1e-12)
    compare_paths(got, ref, semiring, DIMS)


def test_gathers_broadcasts_and_batched_matmul():
    # take with repeated ids (several outputs read one table row), operands broadcast into fused groups
    # (a row vector and a one-element scale), x * x (two parallel edges), a batched matmul whose right
    # operand is shared by every batch, a matmul-vector product, max and mean reductions, concat.
    prog = semir.parse(textwrap.dedent("""
        def main(ids: i64[5], table: f64[4, 3], a: f64[2, 3, 3], w: f64[3, 2], b: f64[3], s: f64[1]) -> f64 {
            e = take(table, ids)
            h = tanh(e * b + s)
            z = a @ w
            c = concat([h, h * h], axis=0)
            return sum(max(c, axis=1)) + mean(z * s) + sum(a @ b)
        }"""))
    rng = np.random.default_rng(3)
    ins = {"ids": np.array([2, 0, 2, 3, 2]), "table": rng.normal(size=(4, 3)), "a": rng.normal(size=(2, 3, 3)),
           "w": rng.normal(size=(3, 2)), "b": rng.normal(size=3), "s": np.array([0.7])}
    for semiring in ("sum_product", "max_product", "entropy", "topk:2"):
        got, ref = both(prog, semiring, ins)
        compare(got, ref, semiring, 1e-9, 1e-12)
        compare_paths(got, ref, semiring, {})


@pytest.mark.parametrize("semiring", ["max_product", pytest.param("sum_product", marks=pytest.mark.slow)])
def test_transformer_float32(semiring):
    prog = semir.load(EXAMPLES / "transformer_layer.semir")
    ins = random_inputs(prog, seed=6, dims={"S": 3}, scale=0.5)
    got, ref = both(prog, semiring, ins)
    assert got.state("h")[got.semiring.fields[0].name].dtype == np.float32
    compare(got, ref, semiring, rtol=2e-4, atol=1e-5)


def test_internal_wrt_and_repeated_calls_reuse_the_device_plan():
    prog = as_f64(semir.load(EXAMPLES / "attention.semir"))
    k = semir.compile(prog, "max_product", backend="cuda", wrt=["attn.k", "h"])
    ins = random_inputs(prog, seed=7, dims={"S": 2})
    r1 = k(**ins)
    ref = semir.compile(prog, "max_product", backend="reference", wrt=["attn.k", "h"])(**ins)
    np.testing.assert_allclose(r1["attn.k"], ref["attn.k"], rtol=1e-12)
    assert "wq" not in r1.states  # adjoint pruning as on the CPU
    r2 = k(**random_inputs(prog, seed=8, dims={"S": 2}))
    r3 = k(**ins)
    assert len(k.plans) == 1  # one device allocation for one shape binding
    for f, v in r1.state("h").items():  # deterministic: bit-identical, pointers included
        assert np.array_equal(v, r3.state("h")[f])
    assert not np.array_equal(r1["h"], r2["h"])
    k(**random_inputs(prog, seed=9, dims={"S": 1}))
    assert len(k.plans) == 2


def test_errors_and_cli(capsys):
    from semir.cli import main

    prog = semir.load(EXAMPLES / "paper_fig1.semir")
    user = semir.semirings.from_scalar("plain", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b)
    with pytest.raises(semir.OptionError, match="runs on backend 'numba'"):
        semir.compile(prog, user, backend="cuda")
    k = semir.compile(prog, "max_product", backend="cuda")
    assert "@cuda.jit" in k.emit("python") and "def backward(G, plan):" in k.emit("python")
    with pytest.raises(semir.OptionError, match="simulator"):
        k.emit("ptx")
    assert main(["run", str(EXAMPLES / "paper_fig1.semir"), "--semiring", "max_product", "--backend", "cuda",
                 "--input", "x=1", "--input", "y=2", "--json"]) == 0
    assert '"backend": "cuda"' in capsys.readouterr().out
    bad = semir.parse("def main(t: f64[3, 2], i: i64[2]) -> f64 {\n  return sum(take(t, i))\n}")
    with pytest.raises(semir.InputError, match="out of range"):
        semir.compile(bad, "sum_product", backend="cuda")(t=np.ones((3, 2)), i=np.array([0, 3]))


@pytest.mark.gpu
def test_emit_ptx_on_a_real_gpu():
    k = semir.compile(semir.load(EXAMPLES / "mlp.semir"), "max_product", backend="cuda")
    ptx = k.emit("ptx")
    assert ".entry" in ptx and "matmul_bwd_a" in ptx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contraction_tiles_fit_the_shared_memory_budget(dtype):
    from semir.backends.cuda import launch

    from semir.semirings import BUILTIN

    device_tile = 16  # the tile on a real GPU (the simulator uses smaller ones)
    srs = list(BUILTIN.values()) + [semir.semirings.get(f"topk:{k}") for k in (1, 2, 7, 8, 9, 10, 64, 1024)]
    for sr in srs:
        t = launch.tile_for(sr, dtype, device_tile)
        assert 1 <= t <= device_tile
        assert launch.shared_bytes(sr, dtype, t) <= launch.SHARED_BYTES, sr.name
        assert t == device_tile or launch.shared_bytes(sr, dtype, t + 1) > launch.SHARED_BYTES, sr.name
    # the case that overflowed before: topk:8 in float64 needs more than 48 KiB at 16 x 16
    assert launch.tile_for(semir.semirings.get("topk:8"), np.float64, device_tile) < device_tile


@pytest.mark.parametrize("case", ["matmul", "sqrt", "rows"])
def test_overflowed_path_products_equal_reference(case):
    # 0·∞ = 0 where a path product overflowed (or a derivative is infinite) and meets a zero factor
    from test_overflow import _program

    prog, ins = _program(case, "f64", "mixed")
    got, ref = both(prog, "max_product", ins, wrt=[p.name for p in prog.inputs])
    assert any(np.isinf(ref.state(p.name)["hi"]).any() for p in prog.inputs)
    compare(got, ref, "max_product", rtol=1e-9, atol=0)  # CUDA's forward values may differ by an ulp
    compare_paths(got, ref, "max_product", {})
