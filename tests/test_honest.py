"""No silent wrong answers: each case here once returned a plausible-looking wrong number."""

import numpy as np
import pytest
from conftest import EXAMPLES, compare, compare_paths, random_inputs
from test_models import tiny_bert

import semir
from semir.errors import InputError, OptionError

ALL = ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:2"]


@pytest.fixture
def bert(tmp_path):
    tiny_bert(tmp_path, layers=1, hidden=8, heads=2, ffn=12)
    return semir.models.load(tmp_path)


def test_the_readout_given_to_program_is_the_one_used(bert):
    ids = bert.tokenize("the keys")
    u = np.linspace(-1, 1, 8).astype(np.float32)
    k = semir.compile(bert.program(readout=u, position=0), "sum_product", backend="reference", wrt=["embeddings"])
    r = k(**bert.inputs(ids))
    want = float(u @ r.value("final"))
    assert r.output == pytest.approx(want, rel=1e-6) and abs(want) > 1e-3
    assert np.abs(r["embeddings"]).max() > 0
    # inputs(readout=...) overrides it
    r2 = k(**bert.inputs(ids, readout=2 * u))
    assert r2.output == pytest.approx(2 * want, rel=1e-6)


def test_a_missing_readout_is_an_error_not_zeros(tmp_path):
    tiny_bert(tmp_path, layers=1, hidden=8, heads=2, ffn=12)
    m = semir.models.load(tmp_path)
    m.program(position=0)
    with pytest.raises(InputError, match="no readout"):
        m.inputs(m.tokenize("the keys"))


def test_model_inputs_are_checked(bert):
    ids = bert.tokenize("the keys")
    u = np.ones(8, np.float32)
    prog = bert.program(readout=u, position=3)
    k = semir.compile(prog, "sum_product", backend="numba", wrt=["embeddings"])
    with pytest.raises(InputError, match="index 3 is out of range"):  # position beyond the sentence
        k(**bert.inputs(ids[:2]))
    with pytest.raises(InputError, match="empty"):
        bert.inputs(ids[:0])
    with pytest.raises(InputError, match="outside the vocabulary"):
        bert.inputs(np.array([2, -1, 3]))
    with pytest.raises(InputError, match="integer"):
        bert.inputs(ids.astype(np.float64))
    with pytest.raises(InputError, match="every token is masked"):
        bert.inputs(ids, mask=np.zeros(len(ids)))
    with pytest.raises(InputError, match="readout"):
        bert.inputs(ids, readout=np.ones(7))
    # one token ([CLS] alone) runs on every backend and agrees with the reference
    one = semir.compile(bert.program(readout=u, position=0), "max_product", backend="numba", wrt=["embeddings"])
    ref = semir.compile(bert.program(readout=u, position=0), "max_product", backend="reference", wrt=["embeddings"])
    compare(one(**bert.inputs(ids[:1])), ref(**bert.inputs(ids[:1])), "max_product", 1e-5, 1e-6)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_integer_inputs_never_wrap(backend):
    prog = semir.parse("def main(t: f32[4, 2], i: i32[N]) -> f32 {\n    return sum(take(t, i))\n}")
    k = semir.compile(prog, "sum_product", backend=backend)
    t = np.ones((4, 2), np.float32)
    assert k(t=t, i=np.array([0, 3]))["t"].sum() == 4
    for bad, what in [(np.array([2**32 + 1]), "does not fit i32"), (np.array([-1]), "out of range"),
                      (np.array([4]), "out of range"), (np.array([1.0]), "expected integers")]:
        with pytest.raises(InputError, match=what):
            k(t=t, i=bad)


def test_float_inputs_round_to_nearest_but_never_overflow():
    prog = semir.parse("def main(x: f32) -> f32 {\n    return x * 1.0\n}")
    k = semir.compile(prog, "sum_product", backend="reference")
    assert k(x=0.1).output == np.float32(0.1)  # f64 0.1 rounds to the nearest f32 (documented)
    with pytest.raises(InputError, match="overflows f32"):
        k(x=1e300)
    with pytest.raises(InputError, match="not exactly representable"):
        k(x=2**24 + 1)


def test_cse_keeps_signed_zeros_apart():
    prog = semir.parse("def main(x: f64) -> f64 {\n    return 1.0 / (x * 0.0) + 1.0 / (x * -0.0)\n}")
    for backend in ("reference", "numba"):
        on = semir.compile(prog, "sum_product", backend=backend, allow_nonfinite=True).forward(x=2.0)
        off = semir.compile(prog, "sum_product", backend=backend, optimize_ir=False,
                            allow_nonfinite=True).forward(x=2.0)
        assert np.isnan(on) and np.isnan(off)  # inf + -inf


def test_mixed_precision_is_honoured_on_every_backend():
    prog = semir.parse('def main(x: f64) -> f64 {\n    return cast(cast(x, "f32"), "f64") - x\n}')
    x = 0.1
    want = float(np.float64(np.float32(x))) - x
    assert want != 0
    for backend in ("reference", "numba"):
        assert semir.compile(prog, "sum_product", backend=backend).forward(x=x) == want, backend


@pytest.mark.parametrize("semiring", ["counting", "log", "entropy", "boolean"])
def test_edge_weights_are_rounded_in_the_program_dtype(semiring):
    # gelu'(-15.4) ~ 1e-51 is 0 in float32: the path does not exist on any backend
    prog = semir.parse("def main(x: f32[N]) -> f32 {\n    return sum(gelu(x))\n}")
    x = np.array([-15.4, 0.5], np.float32)
    ref = semir.compile(prog, semiring, backend="reference")(x=x)
    got = semir.compile(prog, semiring, backend="numba")(x=x)
    compare(got, ref, semiring, 1e-6, 1e-7)
    none = {"counting": 0.0, "log": -np.inf, "entropy": np.nan, "boolean": False}[semiring]
    np.testing.assert_array_equal(np.asarray(got["x"])[0], none)


def test_transformer_layer_float32_agrees_everywhere():
    prog = semir.load(EXAMPLES / "transformer_layer.semir")
    inputs = random_inputs(prog, seed=3, dims={"S": 4})
    for s in ALL:
        ref = semir.compile(prog, s, backend="reference")(**inputs)
        got = semir.compile(prog, s, backend="numba")(**inputs)
        compare(got, ref, s, 2e-4, 1e-5)


def test_entropy_of_no_path_is_nan_and_log_is_minus_inf():
    prog = semir.parse("def main(x: f64[2], y: f64) -> f64 {\n    return sum(relu(x)) + 0.0 * y\n}")
    for backend in ("reference", "numba"):
        e = semir.compile(prog, "entropy", backend=backend)(x=np.array([-1.0, 1.0]), y=1.0)
        assert np.isnan(e["x"][0]) and e["x"][1] == 0.0  # no path vs exactly one path
        lg = semir.compile(prog, "log", backend=backend)(x=np.array([-1.0, 1.0]), y=1.0)
        assert lg["x"][0] == -np.inf and lg["x"][1] == 0.0


@pytest.mark.parametrize("semiring", ALL)
def test_dims_bound_to_one_and_empty_batches(semiring):
    bcast = semir.parse("def main(a: f64[S, S], b: f64[S]) -> f64 {\n    return sum(tanh(a + b))\n}")
    ins = {"a": np.full((1, 1), 0.3), "b": np.full(1, -0.2)}
    ref = semir.compile(bcast, semiring, backend="reference")(**ins)
    got = semir.compile(bcast, semiring, backend="numba")(**ins)
    compare(got, ref, semiring, 1e-12, 1e-14)
    compare_paths(got, ref, semiring, {"S": 1})
    batch = semir.parse("""
def main(x: f64[B, 4], w: f64[4, 3]) -> f64 {
    return sum(softmax(x @ w, axis=-1) * 2.0) + sum(layernorm(x, w[:, 0], w[:, 1]))
}""")
    ins = {"x": np.zeros((0, 4)), "w": np.ones((4, 3))}
    ref = semir.compile(batch, semiring, backend="reference")(**ins)
    got = semir.compile(batch, semiring, backend="numba")(**ins)
    compare(got, ref, semiring, 1e-12, 1e-14)


def test_topk_names_are_ascii_and_bounded():
    prog = semir.parse("def main(x: f64) -> f64 {\n    return x\n}")
    for bad in ("topk:+3", "topk:\u0663", "topk: 3", "topk:0", "topk:100000"):
        with pytest.raises(OptionError, match="topk:K"):
            semir.compile(prog, bad)


def test_perturbation_attributions_refuse_internal_nodes():
    from semir import analysis

    prog = semir.parse("def main(x: f64[3], w: f64[3]) -> f64 {\n    h = tanh(x * w)\n    return sum(h)\n}")
    k = semir.compile(prog, "sum_product", backend="reference", wrt=["x", "h"])
    ins = {"x": np.array([0.1, 0.2, 0.3]), "w": np.array([1.0, -1.0, 2.0])}
    assert analysis.saliency(k, ins, "h").shape == (3,)  # reads the gradient at an internal node
    for method in (analysis.smoothgrad, analysis.integrated_gradients, analysis.gradcheck):
        with pytest.raises(OptionError, match="internal node"):
            method(k, ins, "h")
    with pytest.raises(OptionError, match="sum_product"):
        analysis.gradcheck(semir.compile(prog, "entropy", backend="reference"), ins, "x")
    assert analysis.gradcheck(k, ins, "x") < 1e-6


@pytest.mark.parametrize("semiring", ALL)
def test_one_nonfinite_policy_on_every_backend(semiring):
    prog = semir.load(EXAMPLES / "mlp.semir")
    ins = random_inputs(prog, seed=1, dims={"B": 2})
    ins["x"] = ins["x"].copy()
    ins["x"][0, 0] = np.nan
    rs = [semir.compile(prog, semiring, backend=b, allow_nonfinite=True)(**ins) for b in ("reference", "numba")]
    sr = rs[0].semiring
    for name in rs[0].wrt:
        a, b = (np.asarray(r[name], float) for r in rs)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True, err_msg=name)
        if sr.nonfinite == "nan":
            assert np.isnan(a).all()
    if sr.has_paths:
        with pytest.raises(semir.SemirError, match="NaN or inf"):
            rs[1].path("w1", (0, 0))
    assert rs[0].nonfinite == rs[1].nonfinite == "x"


def test_nonfinite_values_off_the_gradient_paths_change_nothing():
    # exp(y) = inf lies on no path from x, and the output is finite
    prog = semir.parse("def main(x: f64[2], y: f64) -> f64 {\n    return sum(tanh(x)) + exp(-exp(y))\n}")
    r = semir.compile(prog, "entropy", backend="numba", wrt=["x"])(x=np.array([0.1, 0.2]), y=1000.0)
    assert r.nonfinite is None and np.array_equal(r["x"], [0.0, 0.0])
    # an operand off the path still sets a weight on it: inf * tanh(x) has weight inf into tanh(x)
    prog = semir.parse("def main(x: f64[2], y: f64) -> f64 {\n    return sum(tanh(x) * exp(y))\n}")
    r = semir.compile(prog, "entropy", backend="numba", wrt=["x"], allow_nonfinite=True)(x=np.array([0.1, 0.2]),
                                                                                          y=1000.0)
    assert r.nonfinite is not None and np.isnan(r["x"]).all()


@pytest.mark.parametrize("example", ["mlp", "attention", pytest.param("lstm", marks=pytest.mark.slow),  # 10 s
                                     "transformer_layer"])
def test_float32_paths_from_every_element_agree(example):
    # candidates are compared in the storage dtype on both backends, so near-ties go the same way
    prog = semir.load(EXAMPLES / f"{example}.semir")
    dims = {"S": 3, "B": 2, "T": 3}
    for seed in range(2):
        ins = random_inputs(prog, seed=seed, dims=dims)
        for s in ("max_product", "max_abs", "topk:3"):
            ref = semir.compile(prog, s, backend="reference")(**ins)
            got = semir.compile(prog, s, backend="numba")(**ins)
            compare_paths(got, ref, s, dims, limit=48)


def test_reprs_are_short(bert):
    prog = bert.program(readout=np.ones(8), position=0)
    r = semir.compile(prog, "max_product", backend="numba", wrt=["embeddings"])(**bert.inputs(bert.tokenize("the")))
    for obj in (bert, prog, r):
        assert len(repr(obj)) < 300, repr(obj)
    assert "max_product on numba" in repr(r) and "layers" in repr(bert)


def test_register_never_silently_shadows_a_semiring():
    s = semir.semirings.from_scalar("entropy", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b)
    with pytest.raises(OptionError, match="built-in"):
        semir.semirings.register(s)
    assert semir.semirings.get("entropy") is semir.semirings.BUILTIN["entropy"]  # the built-in, untouched
    mine = semir.semirings.from_scalar("plain_sum_test", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b)
    semir.semirings.register(mine)
    with pytest.raises(OptionError, match="already registered"):
        semir.semirings.register(mine)
    semir.semirings.register(mine, replace=True)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_nonfinite_value_in_a_large_input_is_refused(dtype, bad):
    # large contiguous inputs are checked by their exponent bits (semir.runtime._all_finite), not np.isfinite
    prog = semir.parse(f"def f(w: {dtype}[300, 300], x: {dtype}[300]) -> {dtype} {{\n  return sum(w @ x)\n}}")
    k = semir.compile(prog, "sum_product", backend="reference")
    w = np.ones((300, 300), np.float32 if dtype == "f32" else np.float64)
    assert k(w=w, x=w[0]).output == 300 * 300
    w[123, 45] = bad
    with pytest.raises(semir.InputError, match="'w' contains (NaN|inf)"):
        k(w=w, x=w[0].copy() * 0 + 1)
    w[123, 45] = np.finfo(w.dtype).max  # the largest finite value passes
    k(w=w, x=np.zeros(300, w.dtype))
