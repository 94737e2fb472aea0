"""Analyses: branch flow, token statistics, top paths, attributions (issue 6)."""

import math
import re

import numpy as np
import pytest
from conftest import EXAMPLES

import semir
from semir import analysis

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")
from test_models import tiny_bert  # noqa: E402


@pytest.fixture
def tiny(tmp_path):
    tiny_bert(tmp_path, layers=2, hidden=8, heads=2, ffn=12)
    m = semir.models.load(tmp_path)
    return m, m.tokenize("the keys"), np.linspace(-1.0, 1.0, 8).astype(np.float32)


def test_branch_flow_agrees_with_reference_paths(tiny):
    m, ids, u = tiny
    recs = analysis.branch_flow(m, ids, u, backend="numba")
    assert len(recs) == m.layers * len(ids)
    ref = semir.compile(m.program(position=0), "max_product", backend="reference",
                        wrt=[f"layer{i}.attention.input" for i in range(m.layers)])(**m.inputs(ids, readout=u))
    for rec in recs:
        shares = [rec[f"share_{b}"] for b in analysis.BRANCHES]
        assert sum(shares) == pytest.approx(1.0)  # every unit's best path leaves through one of the four branches
        # the paper's rule, recomputed from the reference backend's recovered path
        name = f"layer{rec['layer']}.attention.input"
        value = ref[name][rec["position"]]
        d = int(np.argmax(value))
        assert d == rec["argmax_unit"] and value[d] == pytest.approx(rec["argmax_value"], rel=1e-5)
        second = ref.path(name, (rec["position"], d))[1].node
        want = "skip" if second.endswith(".skip") else second.split(".")[-2]
        assert rec["argmax_branch"] == want


def test_token_stats_are_aggregates(tiny):
    m, ids, u = tiny
    recs = analysis.token_stats(m, ids, u, backend="numba")
    ins = m.inputs(ids, readout=u)
    ent = semir.compile(m.program(position=0), "entropy", backend="reference", wrt=["embeddings"])(**ins)
    grad = semir.compile(m.program(position=0), "sum_product", backend="reference", wrt=["embeddings"])(**ins)
    for r in recs:
        assert r["entropy"] == pytest.approx(float(ent.aggregate("embeddings", -1)[r["position"]]), rel=1e-4)
        assert r["grad_norm"] == pytest.approx(float(np.linalg.norm(grad["embeddings"][r["position"]])), rel=1e-4)
        assert r["entropy"] >= 0


def test_top_paths_and_dot(tiny):
    m, ids, u = tiny
    r = semir.compile(m.program(position=0), "topk:3", backend="numba", wrt=["embeddings"])(**m.inputs(ids, readout=u))
    paths = analysis.top_paths(r, "embeddings", (1,))
    mags = [abs(p.value) for p in paths]
    assert len(paths) == 3 and mags == sorted(mags, reverse=True)
    # the best of all units' top-3 lists: at least as large as each unit's own best
    assert mags[0] == pytest.approx(float(np.max(np.abs(r["embeddings"][1][..., 0]))), rel=1e-5)
    for p in paths:
        assert p[0].node == "embeddings" and p[0].index[0] == 1 and p[-1].node == r.program.output
    dot = analysis.path_to_dot(paths, tokens=m.tokens(ids))
    edges = re.findall(r'^  ("[^"]+") -> ("[^"]+") \[label="([^" ]+)(?:  \(paths ([0-9,]+)\))?"\];$', dot, re.M)
    assert dot.startswith("digraph") and edges
    assert len(edges) == len(set(edges))  # an edge that several paths share is drawn once
    for n, p in enumerate(paths, 1):
        mine = [(a, b, float(w)) for a, b, w, used in edges if str(n) in used.split(",")]
        # the edges of each path chain from its first step to the output, and their labels multiply to its value
        assert mine[0][0] == f'"embeddings[{",".join(map(str, p[0].index))}]"' and mine[-1][1].startswith('"output')
        assert all(x[1] == y[0] for x, y in zip(mine, mine[1:]))
        assert math.prod(w for _, _, w in mine) == pytest.approx(p.value, rel=1e-4)


def test_attributions_on_a_smooth_program():
    prog = semir.load(EXAMPLES / "mlp.semir")
    prog = semir.parse_ir(str(prog).replace("f32", "f64"))
    rng = np.random.default_rng(0)
    ins = {"x": rng.normal(size=(3, 4)), "w1": rng.normal(size=(4, 8)), "b1": rng.normal(size=8),
           "w2": rng.normal(size=(8, 1)), "b2": rng.normal(size=1)}
    k = semir.compile(prog, "sum_product", wrt=["x", "w1"])
    g = analysis.saliency(k, ins, "x")
    np.testing.assert_allclose(analysis.smoothgrad(k, ins, "x", samples=3, sigma=0.0), g, rtol=1e-12)
    attr, gap = analysis.integrated_gradients(k, ins, "x", steps=64)
    assert abs(gap) < 1e-3 * max(1.0, float(np.abs(attr).sum()))  # completeness: Σ attributions = f(x) - f(0)
    assert analysis.gradcheck(k, ins, "x") < 1e-6
    assert analysis.gradcheck(k, ins, "w1") < 1e-6


def test_gradcheck_catches_a_wrong_gradient():
    prog = semir.parse("def f(x: f64[3]) -> f64 {\n  return sum(x * x)\n}")
    k = semir.compile(prog, "sum_product", backend="reference")

    class Wrong:
        semiring, program, wrt = k.semiring, k.program, k.wrt

        def __call__(self, **ins):
            r = k(**ins)
            r.states["x"]["v"] = r.states["x"]["v"] * 1.01
            return r

        def forward(self, **ins):
            return k.forward(**ins)
    assert analysis.gradcheck(Wrong(), {"x": np.array([1.0, -2.0, 0.5])}, "x") == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert math.isfinite(analysis.gradcheck(k, {"x": np.array([1.0, -2.0, 0.5])}, "x"))


def test_analyze_command(tmp_path, capsys):
    from semir.cli import main

    folder = tmp_path / "bert"
    folder.mkdir()
    tiny_bert(folder)
    out = tmp_path / "out"
    # no objective, no run: a random direction only when asked for
    assert main(["analyze", str(folder), "--sentence", "the keys"]) == 2
    assert "--objective random" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--sentence", "the keys", "--sentence", "the table", "--json",
                 "--out", str(out), "--readout", "random"]) == 0
    docs = __import__("json").loads(capsys.readouterr().out)
    assert [d["tokens"] for d in docs] == [["[CLS]", "the", "keys", "[SEP]"], ["[CLS]", "the", "table", "[SEP]"]]
    assert {r["argmax_branch"] for d in docs for r in d["branch_flow"]} <= set(analysis.BRANCHES)
    assert (out / "analysis.json").exists() and (out / "sentence1.dot").read_text().startswith("digraph")
    assert main(["analyze", str(folder), "--sentence", "the", "--position", "9", "--readout", "random"]) == 2
    assert "outside the 3 tokens" in capsys.readouterr().err


def test_token_flow_exact_equals_finite_difference_jacobian(tiny):
    m, ids, _ = tiny
    G = analysis.token_flow(m, ids, layer=1, samples=None, backend="numba")
    S = len(ids)
    assert G.shape == (S, S) and np.all(G >= 0)
    # Independent: the Jacobian block of layer 1 by central differences on its float64 forward.
    ins = m.inputs(ids, readout=np.zeros(m.hidden))  # a forward value only: the readout does not change it
    h_in = semir.compile(m.program(position=0), "sum_product", backend="reference",
                         wrt=["layer0.output"])(**ins).value("layer0.output").astype(np.float64)
    prog = semir.parse_ir(str(m.block_program(1, 1)).replace("f32", "f64"))
    k = semir.compile(prog, "sum_product", backend="reference")
    base = {key: np.asarray(v, np.float64) for key, v in m.block_inputs(1, 1, h_in).items()}
    H = h_in.shape[1]
    for t1, t2 in ((0, 1), (2, 2)):
        J = np.zeros((H, H))
        for d in range(H):
            cot = np.zeros_like(h_in)
            cot[t2, d] = 1.0
            for e in range(H):
                p, q = h_in.copy(), h_in.copy()
                p[t1, e] += 1e-6
                q[t1, e] -= 1e-6
                J[d, e] = (k.forward(**{**base, "h_in": p, "cotangent": cot})
                           - k.forward(**{**base, "h_in": q, "cotangent": cot})) / 2e-6
        assert G[t1, t2] == pytest.approx(np.linalg.norm(J), rel=1e-3)
    est = analysis.token_flow(m, ids, layer=1, samples=400, seed=1, backend="numba")
    assert np.allclose(est, G, rtol=0.25, atol=1e-3)  # Hutchinson converges to the exact norm
    A = analysis.attention_flow(m, ids, layer=1, backend="numba")
    np.testing.assert_allclose(A.sum(axis=0), 1.0, rtol=1e-5)  # each token's attention sums to one
