"""Every example: forward values equal an independent NumPy implementation; every semiring runs."""

import math

import numpy as np
import pytest
from conftest import EXAMPLES, random_inputs

import semir

erf = np.vectorize(math.erf)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def layernorm(z, g, b, eps):
    mu = z.mean(-1, keepdims=True)
    return (z - mu) / np.sqrt(((z - mu) ** 2).mean(-1, keepdims=True) + eps) * g + b


def np_paper_fig1(x, y):
    return np.exp(x) + (x - y) * y


def np_mlp(x, w1, b1, w2, b2):
    return sigmoid(np.tanh(x @ w1 + b1) @ w2 + b2).sum()


def np_attention(h, wq, wk, wv, u):
    q, k, v = h @ wq, h @ wk, h @ wv
    out = h + softmax(q @ k.T * 0.25) @ v
    return (out[0] * u).sum()


def np_transformer_layer(h, wq, bq, wk, bk, wv, bv, wo, bo, g1, be1, w1, b1, w2, b2, g2, be2, u):
    S = h.shape[0]

    def heads(z):
        return z.reshape(S, 2, 8).transpose(1, 0, 2)
    q, k, v = heads(h @ wq + bq), heads(h @ wk + bk), heads(h @ wv + bv)
    p = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(8))
    ctx = (p @ v).transpose(1, 0, 2).reshape(S, 16)
    h1 = layernorm(h + ctx @ wo + bo, g1, be1, 1e-12)
    z = h1 @ w1 + b1
    ffn = (0.5 * z * (1 + erf(z / math.sqrt(2)))) @ w2 + b2
    h2 = layernorm(h1 + ffn, g2, be2, 1e-12)
    return (h2[0] * u).sum()


def np_lstm(xs, h0, c0, wih, whh, b, u):
    h, c = h0, c0
    H = h0.shape[0]
    for t in range(xs.shape[0]):
        z = xs[t] @ wih + h @ whh + b
        i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
    return (h * u).sum()


def np_simplify(x, w):
    a = np.tanh(x * w)
    return np.sum(2.0 * a) + np.sum(a) + np.sum(x * 0.0) + np.sum(x * -0.0) + np.sum(a * a)


NUMPY = {"paper_fig1": np_paper_fig1, "mlp": np_mlp, "attention": np_attention, "simplify": np_simplify,
         "transformer_layer": np_transformer_layer, "lstm": np_lstm}
MODELS = sorted(p.stem for p in EXAMPLES.glob("*.semir"))


def test_every_example_has_an_independent_reference():
    assert sorted(NUMPY) == MODELS


@pytest.mark.parametrize("model", MODELS)
def test_forward_matches_numpy(model):
    prog = semir.load(EXAMPLES / f"{model}.semir")
    ins = random_inputs(prog, seed=1, dims={"S": 5, "B": 3}, scale=0.5)
    ins64 = {k: np.asarray(v, np.float64) for k, v in ins.items()}
    out = semir.compile(prog, backend="reference").forward(**ins)
    tol = 1e-12 if out.dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, NUMPY[model](**ins64), rtol=tol, atol=tol)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("semiring", ["sum_product", "max_product", "entropy", "topk:2"])
def test_examples_run_in_every_semiring(model, semiring):
    prog = semir.load(EXAMPLES / f"{model}.semir")
    ins = random_inputs(prog, seed=2, dims={"S": 3, "B": 2}, scale=0.5)
    r = semir.compile(prog, semiring, backend="reference")(**ins)
    for name in r.wrt:
        for v in r.state(name).values():
            assert not np.any(np.isnan(v))
    if r.semiring.has_paths:
        first = r.wrt[0]
        idx = tuple(0 for _ in r.program[first].type.shape)
        path = r.path(first, idx)
        want = float(np.asarray(r[first])[idx + ((0,) if r.semiring.k else ())])
        assert path.value == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("model", ["attention", "transformer_layer", "lstm"])
def test_sum_product_matches_finite_differences_float64(model):
    prog = semir.load(EXAMPLES / f"{model}.semir")
    text = str(prog).replace("f32", "f64")
    prog64 = semir.parse_ir(text)
    ins = {k: np.asarray(v, np.float64) for k, v in random_inputs(prog, seed=3, dims={"S": 3}, scale=0.5).items()}
    k = semir.compile(prog64, "sum_product", backend="reference")
    r = k(**ins)
    name = prog.inputs[0].name
    x = ins[name]
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        p, m = x.copy(), x.copy()
        p[i] += 1e-6
        m[i] -= 1e-6
        fd[i] = (k.forward(**{**ins, name: p}) - k.forward(**{**ins, name: m})) / 2e-6
    np.testing.assert_allclose(r[name], fd, rtol=1e-5, atol=1e-7)


def test_flagship_demo_runs():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, str(EXAMPLES / "demo.py")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "entropy      x:                 0.681514" in p.stdout
    assert "leaves the branching point through the" in p.stdout
