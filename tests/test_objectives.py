"""Objectives that mean something (issue 15): masked-LM logits, a trained probe, cosine to a reference sentence.

Each objective's value and gradient are checked against transformers and torch autograd on a BertForMaskedLM
folder, through ``semir analyze`` on sentences and on a data set.
"""

import json

import numpy as np
import pytest

import semir
from semir.analysis import dataset, objectives
from semir.cli import main

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("pyarrow")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "keys", "key", "to", "cabinet", "are", "is", "on",
         "table", "a"]
TEXTS = ["the keys to the cabinet [MASK] on the table", "the key [MASK] on a table", "a [MASK] the key"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlm")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=20)
    transformers.BertForMaskedLM(cfg).eval().save_pretrained(d)
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece({t: i for i, t in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.add_special_tokens(["[MASK]"])
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(d / "tokenizer.json"))
    return d


def _hf(folder, ids):
    """transformers' masked-LM logits and hidden states, with the embedding output's gradient kept."""
    lm = transformers.BertForMaskedLM.from_pretrained(folder).eval()
    out = lm(input_ids=torch.tensor(ids)[None], output_hidden_states=True)
    out.hidden_states[0].retain_grad()
    return out


def test_masked_lm_logit_difference_equals_transformers(folder):
    m = semir.models.load(folder)
    obj = objectives.parse("mlm:are,is", m)
    ids = m.tokenize(TEXTS[0])
    mask = obj.position_of(ids)
    assert m.tokens(ids)[mask] == "[MASK]"
    r = semir.compile(obj.program(m, mask), "sum_product", wrt=["embeddings"])(**obj.single_inputs(m, ids))
    hf = _hf(folder, ids)
    diff = hf.logits[0, mask, WORDS.index("are")] - hf.logits[0, mask, WORDS.index("is")]
    diff.backward()
    assert obj.value(r) == pytest.approx(float(diff), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(r["embeddings"], hf.hidden_states[0].grad[0].numpy(), rtol=1e-4, atol=1e-6)
    # the two logits are two nodes, each with paths of its own; the top path takes one of them
    best = semir.compile(obj.program(m, mask), "max_product", wrt=["embeddings"])(**obj.single_inputs(m, ids))
    nodes = {s.node for s in best.path("embeddings", (1, 0))}
    assert len(nodes & {"objective.a", "objective.b"}) == 1
    one = objectives.parse("mlm:are", m)
    r1 = semir.compile(one.program(m, mask), "sum_product", wrt=[])(**one.single_inputs(m, ids))
    assert one.value(r1) == pytest.approx(
        float(hf.logits[0, mask, WORDS.index("are")]), rel=1e-5, abs=1e-6)


def test_masked_lm_objective_over_a_data_set(folder, tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
                    + json.dumps({"id": "nomask", "text": "the keys are on the table"}) + "\n")
    code = main(["analyze", str(folder), "--dataset", str(path), "--out", str(tmp_path / "out"),
                 "--objective", "mlm:are,is", "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 1 and "logit of 'are' minus that of 'is'" in err
    assert "nomask" in err and "[MASK]" in err  # refused by id, not analysed at position 0
    _, sents = dataset.read_results(tmp_path / "out")
    m = semir.models.load(folder)
    for row in sents.to_pylist():
        ids = m.tokenize(row["text"])
        hf = _hf(folder, ids)
        p = row["position"]
        assert m.tokens(ids)[p] == "[MASK]"
        want = hf.logits[0, p, WORDS.index("are")] - hf.logits[0, p, WORDS.index("is")]
        assert row["output"] == pytest.approx(float(want), rel=1e-5, abs=1e-6)
    assert sorted(r["sentence_id"] for r in sents.to_pylist()) == ["s0", "s1", "s2"]


def test_a_probe_trained_with_semir(folder, tmp_path):
    m = semir.models.load(folder)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS[5:], size=int(rng.integers(2, 6)))) for _ in range(40)]
    labels = [int("keys" in t or "are" in t) for t in texts]
    res = objectives.train_probe(m, texts, labels, tmp_path / "probe.npz", position=0, epochs=5)
    assert 0.0 <= res["val_accuracy"] <= 1.0
    obj = objectives.parse(f"probe:{tmp_path / 'probe.npz'}", m)
    z = np.load(tmp_path / "probe.npz")
    for text in TEXTS:
        ids = m.tokenize(text)
        r = semir.compile(obj.program(m, 0), "sum_product", wrt=["embeddings"])(**obj.single_inputs(m, ids))
        hf = _hf(folder, ids)
        h = hf.hidden_states[-1][0, 0]
        logits = ((h - torch.tensor(z["mu"], dtype=torch.float32)) / torch.tensor(z["sd"], dtype=torch.float32)
                  @ torch.tensor(z["w"], dtype=torch.float32) + torch.tensor(z["b"], dtype=torch.float32))
        diff = logits[1] - logits[0]
        diff.backward()
        # 1/sd amplifies the float32 forwards' last-bit differences in h (sd is small on some units)
        assert obj.value(r) == pytest.approx(float(diff), rel=1e-4, abs=1e-5)
        np.testing.assert_allclose(r["embeddings"], hf.hidden_states[0].grad[0].numpy(), rtol=1e-3, atol=1e-5)
    with pytest.raises(semir.InputError, match="classes must be"):
        objectives.parse(f"probe:{tmp_path / 'probe.npz'}:1-7", m)
    np.savez(tmp_path / "bad.npz", w=np.zeros((8, 2)))
    with pytest.raises(semir.InputError, match="lacks b, mu, sd"):
        objectives.parse(f"probe:{tmp_path / 'bad.npz'}", m)


def test_cosine_similarity_to_a_reference_sentence(folder, capsys):
    ref = "the keys are on the table"
    assert main(["analyze", str(folder), "--sentence", TEXTS[1], "--objective", f"cosine:{ref}", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    m = semir.models.load(folder)
    bert = transformers.BertModel.from_pretrained(folder).eval()
    pooled = [bert(input_ids=torch.tensor(m.tokenize(t))[None]).last_hidden_state[0].mean(0) for t in (TEXTS[1], ref)]
    assert doc["output"] == pytest.approx(float(torch.nn.functional.cosine_similarity(*pooled, dim=0)), rel=1e-5)
    assert doc["objective"].startswith("cosine similarity") and ref in doc["objective"]


def test_objective_errors_name_the_choices(folder, tmp_path, capsys):
    assert main(["analyze", str(folder), "--sentence", "the key", "--objective", "logits:3"]) == 2
    err = capsys.readouterr().err
    assert "valid choices" in err and "mlm:TOKEN" in err and "cosine:TEXT" in err
    assert main(["analyze", str(folder), "--sentence", "the key", "--objective", "mlm:are,zebra"]) == 2
    assert "'zebra' is not a token" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--sentence", "the key", "--objective", "mlm:are"]) == 2
    assert "[MASK]" in capsys.readouterr().err
    assert main(["analyze", str(folder), "--sentence", "the key"]) == 2
    assert "--objective random" in capsys.readouterr().err
    transformers.BertModel.from_pretrained(folder).save_pretrained(tmp_path / "backbone")
    (tmp_path / "backbone" / "tokenizer.json").write_text((folder / "tokenizer.json").read_text())
    assert main(["analyze", str(tmp_path / "backbone"), "--sentence", "the [MASK]", "--objective", "mlm:are"]) == 2
    assert "no masked-LM head" in capsys.readouterr().err
