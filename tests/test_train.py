"""semir.train: synthetic tasks, the cross-entropy program, optimisers, deterministic training (issue 7)."""

import numpy as np
import pytest

import semir
from semir.train import SGD, Adam, cross_entropy_program, four_features, load_checkpoint, make_task, train
from semir.train.models import MLP

# Each label recomputed from its definition in the paper's App. C, one sequence at a time.
DEFINITIONS = {
    "FirstTokenRepeatedOnce": lambda x: int(x[0] in list(x[1:])),
    "Contains1": lambda x: int(1 in list(x)),
    "AdjacentDuplicate": lambda x: int(any(a == b for a, b in zip(x, x[1:]))),
    "FirstTokenRepeatedImmediately": lambda x: int(x[0] == x[1]),
    "FirstTokenRepeatedLast": lambda x: int(x[0] == x[-1]),
    "ContainsTokenSet": lambda x: int({1, 2, 3} <= set(x.tolist())),
}


@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_task_labels_follow_their_definitions(name):
    t = make_task(name, n=600, length=10, vocab=20, seed=1)
    assert t.X.min() >= 1 and t.X.max() <= 20
    assert [DEFINITIONS[name](x) for x in t.X] == t.y.tolist()
    assert 0.4 < t.y.mean() < 0.6  # balanced by construction
    if name == "FirstTokenRepeatedOnce":
        assert max(int((x[1:] == x[0]).sum()) for x in t.X) == 1  # the first token repeats at most once


def test_bin_count_ones_and_four_features():
    S, C = 12, 3
    t = make_task("BinCountOnes", n=600, length=S, vocab=9, seed=2, classes=C)
    ones = (t.X == 1).sum(axis=1)
    assert t.y.tolist() == [max(int(np.ceil(c / (S / C))) - 1, 0) for c in ones]
    assert sorted(set(t.y.tolist())) == [0, 1, 2]
    f = four_features(500, seed=3)
    assert f.y.tolist() == (f.X[:, 0] > 0.5).astype(int).tolist()
    with pytest.raises(semir.SemirError, match="valid choices"):
        make_task("Nope")


def test_the_loss_program_is_the_logits_program_and_four_nodes():
    from semir.train.models import LinearProbe

    got = cross_entropy_program(LinearProbe(8, 3).logits_program())
    assert got == semir.parse_ir("""func probe(x: f32[B, 8], w: f32[8, 3], b: f32[3], labels: f32[B, 3]) -> f32 {
  %0: f32[B, 3] = matmul(x, w)
  output: f32[B, 3] = add(%0, b)
  loss.logp: f32[B, 3] = log_softmax(output, axis=1)
  loss.picked: f32[B, 3] = mul(loss.logp, labels)
  loss.total: f32 = sum(loss.picked, axes=[0, 1])
  loss: f32 = neg(loss.total)
  return loss
}""")


def test_cross_entropy_gradient_closed_form():
    # d/dlogits of mean CE = (softmax - onehot) / B, so d/db2 is its column sum and d/dw2 = hidden^T (...)
    m = MLP(4, 5, classes=3, seed=0)
    prog = cross_entropy_program(m.logits_program())
    rng = np.random.default_rng(0)
    x = rng.random((6, 4)).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0, 2])
    onehot = np.eye(3, dtype=np.float32)[y]
    r = semir.compile(prog, "sum_product", wrt=["b2", "w2"])(**m.params, x=x, labels=onehot / 6)
    h = np.tanh(x @ m.params["w1"] + m.params["b1"])
    z = h @ m.params["w2"] + m.params["b2"]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(float(r.output), -np.mean(np.log(p[np.arange(6), y])), rtol=1e-5)
    np.testing.assert_allclose(r["b2"], (p - onehot).sum(0) / 6, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r["w2"], h.T @ (p - onehot) / 6, rtol=1e-4, atol=1e-6)


def test_optimisers_match_their_update_rules():
    g = {"w": np.array([0.5, -2.0], np.float32)}
    p = {"w": np.array([1.0, 1.0], np.float32)}
    Adam(lr=0.1).step(p, g)  # first Adam step moves each coordinate by lr * sign(g) (bias-corrected)
    np.testing.assert_allclose(p["w"], [0.9, 1.1], rtol=1e-6)
    p = {"w": np.array([1.0, 1.0], np.float32)}
    opt = SGD(lr=0.1, momentum=0.5)
    opt.step(p, g)
    opt.step(p, g)  # v1 = g, v2 = 0.5 g + g
    np.testing.assert_allclose(p["w"], 1.0 - 0.1 * (g["w"] + 1.5 * g["w"]), rtol=1e-6)


def test_training_is_deterministic_resumable_and_learns(tmp_path):
    task = four_features(600, seed=0)
    tr, va = task.split(0.8)
    m = MLP(4, 8, seed=0)
    prog = m.logits_program()
    calls = []
    hook = semir.train.semiring_hook(m.program(), "entropy", [{"x": va.X[i], "readout": np.array([-1.0, 1.0],
                                     np.float32)} for i in range(5)], "x")

    def record(step, params):
        calls.append(step)
        return hook(step, params)

    kw = dict(optimizer=Adam(3e-2), batch_size=32, seed=4, val=(va.X, va.y), progress=False)
    a = train(prog, m.params, tr.X, tr.y, epochs=6, every=30, hook=record, **kw)
    assert a.final_val_accuracy >= 0.95
    assert calls[:2] == [30, 60] and "entropy.x" in a.evals[0]
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    b = train(prog, m.params, tr.X, tr.y, epochs=6, **{**kw, "optimizer": Adam(3e-2)})
    for k in m.params:
        assert np.array_equal(a.params[k], b.params[k])
    # three epochs, checkpoint, then three more from the checkpoint: identical to six at once
    ck = tmp_path / "ck.npz"
    train(prog, m.params, tr.X, tr.y, epochs=3, checkpoint=ck, **{**kw, "optimizer": Adam(3e-2)})
    assert load_checkpoint(ck)["epoch"] == 3
    c = train(prog, m.params, tr.X, tr.y, epochs=6, resume=ck, **{**kw, "optimizer": Adam(3e-2)})
    for k in m.params:
        np.testing.assert_array_equal(a.params[k], c.params[k])


def test_bad_training_input():
    m = MLP(4, 3, seed=0)
    with pytest.raises(semir.InputError, match="labels must lie in 0..1"):
        train(m.logits_program(), m.params, np.zeros((4, 4), np.float32), np.array([0, 1, 2, 0]), progress=False)
    with pytest.raises(semir.InputError, match="not inputs"):
        train(m.logits_program(), {"nope": np.zeros(2)}, np.zeros((4, 4)), np.zeros(4, int), progress=False)
