"""Batched BERT programs (issue 15): every semiring's states, and every path, equal one-by-one runs."""

import numpy as np
import pytest

import semir

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")
from test_models import tiny_bert  # noqa: E402

NAMES = ["embeddings", "layer0.attention.input", "layer1.attention.input"]
SEMIRINGS = ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:3"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("bert")
    tiny_bert(d, layers=2, hidden=8, heads=2, ffn=12)
    m = semir.models.load(d)
    ids = [m.tokenize(t) for t in ("the keys to the", "a table on the", "the cabinet are keys")]
    assert len({len(i) for i in ids}) == 1
    return m, ids, np.linspace(-1.0, 1.0, 8).astype(np.float32)


def _same_path(pb, p1):
    assert len(pb) == len(p1) and pb.value == pytest.approx(p1.value, rel=1e-6)
    for sb, s1 in zip(pb, p1):
        assert sb.node == s1.node and sb.weight == pytest.approx(s1.weight, rel=1e-6)
        assert sb.index == s1.index or sb.index[1:] == s1.index  # the batch axis leads where a node has one


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("sr", SEMIRINGS)
def test_a_batch_equals_its_sentences_one_by_one(model, sr, backend):
    m, ids, u = model
    batched = semir.compile(m.program(position=0, batch=True), sr, backend=backend, wrt=NAMES)
    rb = batched(**m.batch_inputs(ids, readout=u))
    one = semir.compile(m.program(position=0), sr, backend=backend, wrt=NAMES)
    assert float(rb.output) == pytest.approx(sum(float(one.forward(**m.inputs(i, readout=u))) for i in ids),
                                             rel=1e-5)
    for k, i in enumerate(ids):
        r1 = one(**m.inputs(i, readout=u))
        for name in NAMES:
            np.testing.assert_allclose(rb[name][k], r1[name], rtol=1e-5, atol=1e-6, err_msg=f"{sr} {name}")
            if rb.semiring.has_paths:
                flat = np.argsort(-np.abs(np.asarray(r1[name], np.float64)).reshape(-1, rb.semiring.k or 1)[:, 0])
                for f in flat[:5]:  # the five strongest elements' paths, step by step
                    idx = tuple(int(x) for x in np.unravel_index(f, r1[name].shape[:2]))
                    for comp in (("hi", "lo") if sr == "max_product" else (0, 2) if sr.startswith("topk") else (None,)):
                        _same_path(rb.path(name, (k, *idx), comp), r1.path(name, idx, comp))


def test_a_batch_of_mixed_lengths_is_refused(model):
    m, ids, u = model
    with pytest.raises(semir.InputError, match="one length"):
        m.batch_inputs([ids[0], ids[0][:3]], readout=u)
