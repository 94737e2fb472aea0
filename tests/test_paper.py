"""CONTRACT §2 / issue 3 cases, with expected values derived here from the paths, by hand."""

import math

import numpy as np
import pytest

import semir
from semir import ops
from semir.errors import InputError

FIG1 = """
def f(x: f64, y: f64) -> f64 {
    x2 = exp(x)
    x3 = x - y
    x4 = y * x3
    return x2 + x4
}
"""


def entropy_of(products):
    mags = np.abs(np.asarray(products, float))
    p = mags / mags.sum()
    return float(-(p * np.log(p)).sum())


def run(text_or_prog, semiring, granularity="op", **inputs):
    prog = semir.parse(text_or_prog) if isinstance(text_or_prog, str) else text_or_prog
    return semir.compile(prog, semiring, backend="reference", granularity=granularity)(**inputs)


def test_fig1_every_semiring_from_its_paths():
    x, y = 1.0, 2.0
    # Paths from x: x -exp-> x2 -> out (weight e^x); x -1-> x3 -(y)-> x4 -> out (weight y).
    px = [math.exp(x), y]
    # Paths from y: y -(-1)-> x3 -(y)-> x4 -> out (weight -y); y -(x3)-> x4 -> out (weight x - y).
    py = [-y, x - y]
    r = {s: run(FIG1, s, x=x, y=y) for s in ["sum_product", "max_product", "entropy", "max_abs", "log",
                                              "counting", "boolean", "topk:2"]}
    assert r["sum_product"]["x"] == pytest.approx(sum(px)) == pytest.approx(math.e + 2)
    assert r["sum_product"]["y"] == pytest.approx(sum(py)) == pytest.approx(-3)
    assert r["max_product"]["x"] == pytest.approx(max(px)) == pytest.approx(math.e)
    assert r["max_product"].state("x")["lo"] == pytest.approx(min(px)) == pytest.approx(2)
    assert r["max_product"]["y"] == pytest.approx(max(py)) == pytest.approx(-1)
    assert r["max_product"].state("y")["lo"] == pytest.approx(min(py)) == pytest.approx(-2)
    assert r["entropy"]["x"] == pytest.approx(entropy_of(px)) == pytest.approx(0.681514, abs=1e-6)
    assert r["entropy"]["y"] == pytest.approx(entropy_of(py)) == pytest.approx(0.636514, abs=1e-6)
    assert r["max_abs"]["y"] == pytest.approx(-2)
    assert r["log"]["x"] == pytest.approx(math.log(sum(abs(p) for p in px)))
    assert r["counting"]["x"] == 2 and r["boolean"]["x"]
    np.testing.assert_allclose(r["topk:2"]["x"], sorted(px, key=abs, reverse=True))
    np.testing.assert_allclose(r["topk:2"]["y"], sorted(py, key=abs, reverse=True))


def test_fig1_paths_follow_app_a():
    r = run(FIG1, "max_product", x=1.0, y=2.0)
    hi = r.path("y")
    assert [s.node for s in hi] == ["y", "x4", "output"] and hi.value == pytest.approx(-1)
    lo = r.path("y", component="lo")
    assert [s.node for s in lo] == ["y", "x3", "x4", "output"] and lo.value == pytest.approx(-2)
    assert r.path("x").value == pytest.approx(math.e)
    top = run(FIG1, "topk:2", x=1.0, y=2.0)
    assert [top.path("x", component=k).value for k in (0, 1)] == pytest.approx([math.e, 2.0])


def test_matmul_edges_are_scalar():
    prog = """
def main(x: f64[1, 2], w: f64[2, 4]) -> f64 {
    return sum(x @ w)
}"""
    w = np.array([[3, 4, 5, 6], [3, 4, 5, 6]], float)
    x = np.array([[1, 2]], float)
    # x[0, j] reaches the output through y[0, k] with weight w[j, k], for each k: best path 6, gradient 18.
    np.testing.assert_allclose(run(prog, "max_product", x=x, w=w)["x"], [[6, 6]])
    np.testing.assert_allclose(run(prog, "sum_product", x=x, w=w)["x"], [[18, 18]])
    # w[j, k] reaches the output through y[0, k] with weight x[0, j].
    np.testing.assert_allclose(run(prog, "max_product", x=x, w=w)["w"], [[1] * 4, [2] * 4])


def test_primitive_softmax_is_one_layer():
    prog = """
def main(x: f64[2]) -> f64 {
    return softmax(x)[0]
}"""
    x = np.array([2.0, 1.0])
    s = np.exp(x) / np.exp(x).sum()
    grad = np.array([s[0] * (1 - s[0]), -s[0] * s[1]])  # one edge from each x_j
    np.testing.assert_allclose(run(prog, "sum_product", x=x)["x"], grad)
    np.testing.assert_allclose(run(prog, "entropy", x=x)["x"], [0, 0], atol=1e-15)
    np.testing.assert_allclose(run(prog, "max_product", x=x)["x"], grad)
    # Decomposed into exp / sum / div, x0 has two paths (numerator and denominator): the gradient is the
    # same, the entropy is that of the two path products.
    dec = run(prog, "entropy", granularity="decomposed", x=x)
    e = np.exp(x - x.max())
    z = e.sum()
    paths_x0 = [e[0] / z, -e[0] * e[0] / z ** 2]
    assert dec["x"][0] == pytest.approx(entropy_of(paths_x0))
    assert dec.granularity == "decomposed"
    np.testing.assert_allclose(run(prog, "sum_product", granularity="decomposed", x=x)["x"], grad)


def test_log_softmax_and_layernorm_gradients_closed_form():
    prog = semir.parse("""
def main(x: f64[3], g: f64[3], b: f64[3], u: f64[3]) -> f64 {
    return sum(log_softmax(layernorm(x, g, b, eps=0.01)) * u)
}""")
    rng = np.random.default_rng(3)
    ins = {k: rng.normal(size=3) for k in "xgbu"}
    x, g, b, u = (ins[k] for k in "xgbu")
    mu, var = x.mean(), x.var()
    xh = (x - mu) / np.sqrt(var + 0.01)
    y = xh * g + b
    s = np.exp(y) / np.exp(y).sum()
    dy = u - s * u.sum()  # d/dy of u·log_softmax(y)
    dxh = dy * g
    dx = (dxh - dxh.mean() - xh * (dxh * xh).mean()) / np.sqrt(var + 0.01)
    for gran in ("op", "decomposed"):
        r = run(prog, "sum_product", granularity=gran, **ins)
        np.testing.assert_allclose(r["x"], dx, rtol=1e-9)
        np.testing.assert_allclose(r["g"], dy * xh, rtol=1e-9)
        np.testing.assert_allclose(r["b"], dy, rtol=1e-9)


def two_branch_chain(layers: int):
    def chain(x, a, b):
        h = x
        for _ in range(layers):
            h = ops.tanh(a * h + b * h)
        return h
    return semir.trace(chain, x="f32", a="f32", b="f32")


@pytest.mark.parametrize("a,b", [(3.0, -2.0), (0.02, 0.01), (3.0, 1.0)])
def test_entropy_of_2000_layer_chain_in_float32(a, b):
    # Each layer splits every path into two parallel edges of weights a·t' and b·t' (t' the tanh slope,
    # common to both), so the path distribution is a product of independent per-layer choices:
    # H = T · H(|a|, |b|) in closed form, while Z = Π (|a|+|b|) t' under- or overflows float32 and float64.
    T = 2000
    prog = two_branch_chain(T)
    r = semir.compile(prog, "entropy", backend="reference", wrt=["x"])(x=0.5, a=a, b=b)
    p = abs(a) / (abs(a) + abs(b))
    closed = T * -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert r.state("x")["h"].dtype == np.float32
    assert float(r["x"]) == pytest.approx(closed, rel=1e-3)
    # log Z in closed form from the forward values: Σ_t log((|a|+|b|) · (1 - h_t²)).
    hs = [float(r.value(n.name)) for n in r.program.nodes if n.op.value == "tanh"]
    logz = sum(math.log((abs(a) + abs(b)) * (1 - h * h)) for h in hs)
    assert abs(logz) > 88  # beyond float32's exponent range: a naive Z would be 0 or inf
    assert float(r.state("x")["logz"]) == pytest.approx(logz, rel=1e-4)
    lg = semir.compile(prog, "log", backend="reference", wrt=["x"])(x=0.5, a=a, b=b)
    assert float(lg["x"]) == pytest.approx(logz, rel=1e-4)


def test_counting_past_float_range_keeps_log_count():
    prog = two_branch_chain(1100)
    r = semir.compile(prog, "counting", backend="reference", wrt=["x"])(x=0.5, a=0.5, b=0.25)
    assert np.isinf(r["x"])  # 2**1100 paths do not fit a float64
    assert r.state("x")["log_count"] == pytest.approx(1100 * math.log(2))
    small = semir.compile(two_branch_chain(40), "counting", backend="reference", wrt=["x"])(x=0.5, a=0.5, b=0.25)
    assert small["x"] == 2 ** 40


def test_zero_weight_edges_give_no_nan():
    prog = """
def main(x: f64[3], w: f64[3, 2]) -> f64 {
    return sum(relu(x) @ w)
}"""
    x = np.array([-1.0, 2.0, -3.0])
    w = np.array([[0.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    for s in ["entropy", "log", "max_product", "max_abs", "counting", "topk:2", "sum_product"]:
        r = run(prog, s, x=x, w=w)
        for name in ("x", "w"):
            for v in r.state(name).values():
                assert not np.any(np.isnan(v)), (s, name)
    ent = run(prog, "entropy", x=x, w=w)
    # x0, x2: relu off; x1: all its w are 0. No path has no distribution: NaN, never a single path's 0.0
    np.testing.assert_array_equal(ent["x"], [np.nan, np.nan, np.nan])
    assert np.isneginf(run(prog, "log", x=x, w=w)["x"]).all()
    assert run(prog, "counting", x=x, w=w)["x"].tolist() == [0, 0, 0]
    assert run(prog, "counting", x=np.abs(x), w=w)["x"].tolist() == [1, 0, 1]


def test_nonfinite_inputs_need_opt_in():
    prog = semir.parse(FIG1)
    with pytest.raises(InputError, match="'x' contains NaN"):
        semir.compile(prog, "sum_product", backend="reference")(x=float("nan"), y=1.0)
    r = semir.compile(prog, "sum_product", backend="reference", allow_nonfinite=True)(x=float("nan"), y=1.0)
    assert np.isnan(r.output)


def test_user_defined_semiring_runs_on_reference():
    # Shortest path with lengths -log|w|: the best path is the max-|·| path.
    shortest = semir.semirings.from_scalar("min_neglog", math.inf, 0.0, min, lambda p, q: p + q,
                                           lambda w: -math.log(abs(w)) if w != 0 else math.inf)
    prog = semir.parse(FIG1)
    r = semir.compile(prog, shortest, backend="reference")(x=1.0, y=2.0)
    m = semir.compile(prog, "max_abs", backend="reference")(x=1.0, y=2.0)
    assert float(r["x"]) == pytest.approx(-math.log(abs(float(m["x"]))))
    assert float(r["y"]) == pytest.approx(-math.log(abs(float(m["y"]))))


def test_internal_nodes_and_aliases():
    prog = semir.load(__import__("pathlib").Path(__file__).parent.parent / "examples" / "attention.semir")
    rng = np.random.default_rng(0)
    ins = {n.name: rng.normal(size=[4 if not isinstance(d, int) else d for d in n.type.shape]).astype(np.float32)
           for n in prog.inputs}
    r = semir.compile(prog, "sum_product", backend="reference", wrt=["h", "attn.k", "skip"])(**ins)
    assert r.node("attn.k").shape == (4, 16)
    np.testing.assert_array_equal(r["skip"], r["h"])  # skip is an alias of h
    # The gradient at the internal node attn.k by the chain rule: out = u·(h + softmax(q kᵀ/4) v)[0], so
    # d out/d k[j] = Σ_i g_i a_0i (e_ij - a_0j)/4 · q_0 with g = v u: only row 0 of the scores matters.
    q, v, u = ins["h"] @ ins["wq"], ins["h"] @ ins["wv"], ins["u"]
    k = ins["h"] @ ins["wk"]
    s = q[0] @ k.T * 0.25
    a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    g = v @ u
    ds = a * (g - a @ g)  # d out / d scores[0, j]
    np.testing.assert_allclose(r.node("attn.k"), np.outer(ds, q[0]) * 0.25, rtol=1e-4, atol=1e-6)
