"""semir.from_torch: PyTorch modules captured with torch.export, against torch autograd (sum_product) and the
reference backend (max_product, paths included); node names follow the module hierarchy."""

import math

import numpy as np
import pytest
from conftest import compare, compare_paths

import semir

torch = pytest.importorskip("torch")
nn = torch.nn


class Block(nn.Module):
    """Pre-LN MLP block with a residual."""

    def __init__(self, d=8, f=16):
        super().__init__()
        self.ln, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x):
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln(x))))


class Attention(nn.Module):
    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads, self.q, self.k, self.v, self.o = heads, nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), \
            nn.Linear(d, d)

    def forward(self, x):
        S, D = x.shape
        H = self.heads

        def split(t):
            return t.view(S, H, D // H).transpose(0, 1)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // H), dim=-1)
        return self.o((a @ v).transpose(0, 1).reshape(S, D))


class TransformerBlock(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.attention, self.ln1, self.ffn, self.ln2 = Attention(d), nn.LayerNorm(d), Block(d), nn.LayerNorm(d)

    def forward(self, x):
        h = self.ln1(x + self.attention(x))
        return self.ln2(self.ffn(h))


class Classifier(nn.Module):
    def __init__(self, body, vocab=12, d=8):
        super().__init__()
        self.emb, self.body, self.head = nn.Embedding(vocab, d), body, nn.Linear(d, 3)

    def forward(self, ids):
        return torch.log_softmax(self.head(self.body(self.emb(ids))), dim=-1)[0, 2]


class LSTMLM(nn.Module):
    def __init__(self, vocab=12, d=4, h=5):
        super().__init__()
        self.emb, self.lstm, self.out = nn.Embedding(vocab, d), nn.LSTM(d, h, batch_first=True), nn.Linear(h, vocab)

    def forward(self, ids):
        h, _ = self.lstm(self.emb(ids)[None])
        return torch.log_softmax(self.out(h[0]), dim=-1)[-1, 3]


MODELS = {"mlp_block": lambda: Classifier(Block()), "transformer_block": lambda: Classifier(TransformerBlock()),
          "lstm": LSTMLM}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sum_product_equals_torch_autograd(name):
    torch.manual_seed(0)
    m = MODELS[name]()
    ids = torch.tensor([1, 5, 2, 7])
    tm = semir.from_torch(m, (ids,))
    params = dict(m.named_parameters())
    k = semir.compile(tm, "sum_product", backend="numba", wrt=sorted(params))
    r = k(**tm.inputs(ids))
    out = m(ids)
    out.backward()
    assert float(r.output) == pytest.approx(float(out.detach()), rel=1e-5)
    for pname, p in params.items():
        g = p.grad.numpy()
        np.testing.assert_allclose(r[pname], g, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(g).max())),
                                   err_msg=pname)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_path_semirings_equal_the_reference(name):
    torch.manual_seed(1)
    m = MODELS[name]()
    ids = torch.tensor([3, 0, 4])
    tm = semir.from_torch(m, (ids,))
    for s in ("max_product", "entropy"):
        got = semir.compile(tm, s, backend="numba", wrt=["emb.weight"])(**tm.inputs(ids))
        ref = semir.compile(tm, s, backend="reference", wrt=["emb.weight"])(**tm.inputs(ids))
        compare(got, ref, s, 2e-4, 1e-5)
        compare_paths(got, ref, s, {}, limit=16)


def test_node_names_follow_the_module_hierarchy():
    m = Classifier(TransformerBlock())
    tm = semir.from_torch(m, (torch.tensor([1, 2, 3]),))
    prog = tm.program
    for path in ("emb", "body.attention.q", "body.attention", "body.ln1", "body.ffn.fc1", "body.ffn", "head"):
        assert path in prog, path
    assert "body.attention.q.weight" in [n.name for n in prog.inputs]
    # an internal module output is a wrt target by the name users know
    r = semir.compile(tm, "max_product", wrt=["body.attention"])(**tm.inputs(torch.tensor([1, 2, 3])))
    assert r["body.attention"].shape == (3, 8)
    assert any(s.node.startswith("body.") for s in r.path("body.attention", (0, 0)))


def test_unsupported_ops_name_the_op_and_the_module():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(3, 3)

        def forward(self, x):
            return torch.cumsum(self.inner(x), dim=0).sum()

    with pytest.raises(semir.OptionError, match="aten.cumsum.default' in module 'inner'|aten.cumsum"):
        semir.from_torch(Odd(), (torch.randn(2, 3),))
    with pytest.raises(semir.OptionError, match="torch.nn.Module"):
        semir.from_torch(lambda x: x, (torch.randn(2),))
    with pytest.raises(semir.InputError, match="missing input"):
        semir.from_torch(Block(), (torch.randn(2, 8),)).inputs()


def _decoder(kind):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    common = dict(vocab_size=40, max_position_embeddings=16, attn_implementation="eager", bos_token_id=0,
                  eos_token_id=0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_embd=8, n_layer=2, n_head=2, n_positions=16, **common)
        return transformers.GPT2LMHeadModel(cfg).eval()
    cfg = transformers.LlamaConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=1, **common)  # grouped-query attention, RMSNorm, rotary
    return transformers.LlamaForCausalLM(cfg).eval()


class NextTokenLogit(nn.Module):
    """The logit of token 3 at the last position: a decoder's next-token objective."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, ids):
        return self.lm(input_ids=ids[None], use_cache=False).logits[0, -1, 3]


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_transformers_decoders_equal_torch_autograd(kind):
    """Tiny random GPT-2 (Conv1D, tied LM head, causal mask) and Llama-style (RMSNorm, rotary, SwiGLU, GQA)."""
    w = NextTokenLogit(_decoder(kind)).eval()
    ids = torch.tensor([1, 2, 3, 4])
    tm = semir.from_torch(w, (ids,))
    params = dict(w.named_parameters())
    k = semir.compile(tm, "sum_product", wrt=sorted(params))
    r = k(**tm.inputs(ids))
    out = w(ids)
    out.backward()
    assert float(r.output) == pytest.approx(float(out.detach()), rel=1e-5, abs=1e-7)
    for pname, p in params.items():
        g = np.zeros(p.shape, np.float32) if p.grad is None else p.grad.numpy()
        np.testing.assert_allclose(r[pname], g, rtol=1e-4, atol=1e-6, err_msg=pname)
    # constants (positions, the causal mask) were folded from shapes only: other ids give torch's output too
    other = torch.tensor([7, 0, 9, 5])
    assert float(semir.compile(tm, "sum_product", wrt=[]).forward(**tm.inputs(other))) == pytest.approx(
        float(w(other).detach()), rel=1e-5, abs=1e-7)
    # a top path from a token's embedding row to the logit, numba = reference
    emb = "lm.transformer.wte.weight" if kind == "gpt2" else "lm.model.embed_tokens.weight"
    got = semir.compile(tm, "max_product", backend="numba", wrt=[emb])(**tm.inputs(ids))
    ref = semir.compile(tm, "max_product", backend="reference", wrt=[emb])(**tm.inputs(ids))
    compare(got, ref, "max_product", 2e-4, 1e-5)
    path = got.path(emb, (2, 0))
    assert path[-1].node == tm.program.output and path[0].node == emb
    # readable: every node named, at most one line per layer (plus embedding, final norm and head)
    assert not [n.name for n in tm.program.nodes if n.name.startswith("%")]
    lines = str(path).splitlines()[1:]
    layer = "lm.transformer.h." if kind == "gpt2" else "lm.model.layers."
    per_layer = [line.split()[0] for line in lines if line.split()[0].startswith(layer)]
    assert len(per_layer) == len(set(per_layer)) and len(lines) <= len(set(per_layer)) + 4, str(path)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decoder_folders_load_offline_with_next_token_objectives(tmp_path, kind):
    tokenizers = pytest.importorskip("tokenizers")
    lm = _decoder(kind)
    lm.save_pretrained(tmp_path)
    vocab = {w: i for i, w in enumerate(["<s>", "[UNK]", "the", "keys", "to", "cabinet", "is", "are"])}
    vocab.update({f"w{i}": i for i in range(len(vocab), 40)})
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    m = semir.models.load(tmp_path)
    ids = m.tokenize("the keys to the cabinet")
    assert ids.tolist() == [2, 3, 4, 2, 5]
    are, is_ = vocab["are"], vocab["is"]
    tm = m.program(len(ids), token=are, contrast=is_)  # logit("are") - logit("is") at the last position
    r = semir.compile(tm, "sum_product", wrt=[])(**m.inputs(tm, ids))
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor(ids)[None]).logits[0, -1]
    assert float(r.output) == pytest.approx(float(logits[are] - logits[is_]), rel=1e-5, abs=1e-6)
    with torch.no_grad():
        hidden = lm(input_ids=torch.tensor(ids)[None], output_hidden_states=True).hidden_states
    full = semir.compile(tm, "sum_product", wrt=[])(**m.inputs(tm, ids))
    for i, name in enumerate(["embeddings", "layer0.output"]):  # the last hidden state is after the final norm
        np.testing.assert_allclose(full.value(name).reshape(len(ids), 8), hidden[i][0].numpy(), rtol=1e-5,
                                   atol=1e-5, err_msg=name)
    assert tm.program.resolve("layer1.input") == tm.program.resolve("layer0.output")
    lp = m.program(len(ids), token=are, objective="logprob")
    r = semir.compile(lp, "sum_product", wrt=[])(**m.inputs(lp, ids))
    assert float(r.output) == pytest.approx(float(torch.log_softmax(logits, -1)[are]), rel=1e-5)
    with pytest.raises(semir.InputError, match="outside the vocabulary"):
        m.program(len(ids), token=99)
    with pytest.raises(semir.OptionError, match="valid choices"):
        m.program(len(ids), token=are, objective="prob")


@pytest.mark.parametrize("kind", ["roberta", "distilbert"])
def test_masked_lm_folders_equal_transformers(tmp_path, kind):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "roberta":
        cfg = transformers.RobertaConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=16, max_position_embeddings=20, pad_token_id=1)
        lm = transformers.RobertaForMaskedLM(cfg)
    else:
        cfg = transformers.DistilBertConfig(vocab_size=40, dim=8, n_layers=2, n_heads=2, hidden_dim=16,
                                            max_position_embeddings=20, pad_token_id=0)
        lm = transformers.DistilBertForMaskedLM(cfg)
    lm.eval().save_pretrained(tmp_path)
    m = semir.models.load(tmp_path)
    ids = np.array([5, 7, 3, 9, 4])
    tm = m.program(len(ids), token=11, position=2, contrast=12)  # logit difference at a (masked) position
    params = sorted("lm." + n for n, _ in lm.named_parameters() if "lm." + n in tm.program)
    assert len(params) > 10
    r = semir.compile(tm, "sum_product", wrt=params)(**m.inputs(tm, ids))
    t_ids = torch.tensor(ids)[None]
    hf = lm(input_ids=t_ids, output_hidden_states=True)
    logits = hf.logits[0, 2]
    # semir's BERT names, as aliases of the family's modules: hidden states equal transformers'
    for i, name in enumerate(["embeddings"] + [f"layer{j}.output" for j in range(2)]):
        np.testing.assert_allclose(r.value(name).reshape(len(ids), 8), hf.hidden_states[i][0].detach().numpy(),
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    assert tm.program.resolve("layer1.attention.input") == tm.program.resolve("layer0.output")
    for part in ("query", "key", "value"):
        assert f"layer1.attention.{part}" in tm.program.names()
    out = logits[11] - logits[12]
    out.backward()
    assert float(r.output) == pytest.approx(float(out.detach()), rel=1e-5, abs=1e-6)
    for pname, p in lm.named_parameters():
        name = "lm." + pname
        if name in tm.program and p.grad is not None:
            np.testing.assert_allclose(r[name], p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_bert_folder_with_its_masked_lm_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=20)
    lm = transformers.BertForMaskedLM(cfg).eval()
    lm.save_pretrained(tmp_path)
    ids = np.array([2, 7, 3, 9, 4])
    m = semir.models.load(tmp_path, head="masked_lm")
    tm = m.program(len(ids), token=11, position=2, contrast=12)
    r = semir.compile(tm, "sum_product", wrt=["lm.bert.embeddings.word_embeddings.weight"])(**m.inputs(tm, ids))
    hf = lm(input_ids=torch.tensor(ids)[None], output_hidden_states=True)
    out = hf.logits[0, 2, 11] - hf.logits[0, 2, 12]
    out.backward()
    assert float(r.output) == pytest.approx(float(out.detach()), rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(r["lm.bert.embeddings.word_embeddings.weight"],
                               lm.bert.embeddings.word_embeddings.weight.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(r.value("layer1.output").reshape(len(ids), 8), hf.hidden_states[2][0].detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    # without head=, the same folder loads natively (no torch), the backbone only
    assert type(semir.models.load(tmp_path)).__name__ == "BertModel"
    # a folder with no head weights is refused, never given a random head
    transformers.BertModel(cfg).save_pretrained(tmp_path / "backbone")
    with pytest.raises(semir.OptionError, match="initialise them at random"):
        semir.models.load(tmp_path / "backbone", head="masked_lm")
    with pytest.raises(semir.OptionError, match="valid choices: masked_lm"):
        semir.models.load(tmp_path, head="lm")
