"""Tokenizers from folders without tokenizer.json: vocab.txt (WordPiece) and vocab.json + merges.txt (byte-level
BPE), each compared with transformers' own tokenizer for the same files (issue 17)."""

import json

import numpy as np
import pytest

import semir
from semir.models.text import load_tokenizer

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")
from test_models import tiny_bert  # noqa: E402

TEXTS = ["the keys to the cabinet are on the table", "The Keys, to THE cabinet!", "a tablekeys", "unseen words here"]


def test_a_bert_folder_with_only_vocab_txt(tmp_path):
    tiny_bert(tmp_path)
    words = [json.loads((tmp_path / "tokenizer.json").read_text())["model"]["vocab"]]
    (tmp_path / "tokenizer.json").unlink()
    vocab = sorted(words[0], key=words[0].get)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab + ["[MASK]", "##s", "##key"]) + "\n")
    ours = load_tokenizer(tmp_path)
    theirs = transformers.BertTokenizer.from_pretrained(str(tmp_path))
    for text in TEXTS:
        assert ours.encode(text).ids == theirs(text)["input_ids"], text
    m = semir.models.load(tmp_path)  # the native BERT importer reads it too
    assert m.tokenize("the keys").tolist() == theirs("the keys")["input_ids"]
    assert m.tokens(m.tokenize("the keys")) == ["[CLS]", "the", "keys", "[SEP]"]


@pytest.mark.parametrize("kind", ["gpt2", "roberta"])
def test_a_folder_with_vocab_json_and_merges_txt(tmp_path, kind):
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 20, vocab_size=300, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>"])
    bpe.save_model(str(tmp_path))  # vocab.json and merges.txt
    (tmp_path / "config.json").write_text(json.dumps({"model_type": kind}))
    ours = load_tokenizer(tmp_path)
    cls = transformers.GPT2Tokenizer if kind == "gpt2" else transformers.RobertaTokenizer
    theirs = cls.from_pretrained(str(tmp_path))
    for text in TEXTS:
        assert ours.encode(text).ids == theirs(text)["input_ids"], text
    if kind == "roberta":
        assert ours.encode("the keys").tokens[0] == "<s>" and ours.encode("the keys").tokens[-1] == "</s>"


def test_a_folder_without_tokenizer_files_asks_for_ids(tmp_path):
    tiny_bert(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    m = semir.models.load(tmp_path)
    with pytest.raises(semir.SemirError, match="vocab.txt"):
        m.tokenize("the keys")
    assert m.tokens(np.array([2, 4])) == ["2", "4"]
