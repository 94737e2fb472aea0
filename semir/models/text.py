"""Tokenizers of model folders, shared by every model family, read with the ``tokenizers`` library with no
padding or truncation: ``tokenizer.json``, or where a folder has only the older files, ``vocab.txt``
(WordPiece, as BERT's) or ``vocab.json`` with ``merges.txt`` (byte-level BPE, as GPT-2's and RoBERTa's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemirError


def load_tokenizer(path: Path) -> Any:
    """The folder's tokenizer as a ``tokenizers`` object, or None if it has no tokenizer files."""
    files = {f: (path / f).exists() for f in ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt")}
    if not (files["tokenizer.json"] or files["vocab.txt"] or (files["vocab.json"] and files["merges.txt"])):
        return None
    try:
        import tokenizers
        from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer
    except ImportError:
        raise SemirError("this needs the optional package 'tokenizers': pip install 'semir[models]'") from None
    settings = _json(path / "tokenizer_config.json")
    if files["tokenizer.json"]:
        tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    elif files["vocab.txt"]:
        tok = BertWordPieceTokenizer(str(path / "vocab.txt"), lowercase=bool(settings.get("do_lower_case", True)))
    else:
        tok = ByteLevelBPETokenizer(str(path / "vocab.json"), str(path / "merges.txt"),
                                    add_prefix_space=bool(settings.get("add_prefix_space", False)))
        if _json(path / "config.json").get("model_type") == "roberta":  # <s> ... </s>, as RoBERTa's tokenizer
            bos, eos = settings.get("bos_token", "<s>"), settings.get("eos_token", "</s>")
            tok.post_processor = tokenizers.processors.RobertaProcessing(
                (eos, tok.token_to_id(eos)), (bos, tok.token_to_id(bos)))
    tok.no_padding()
    tok.no_truncation()
    return tok


def _json(p: Path) -> dict:
    try:
        doc = json.loads(p.read_text()) if p.exists() else {}
    except (OSError, ValueError) as e:
        raise SemirError(f"{p}: not readable as JSON: {e}") from None
    return doc if isinstance(doc, dict) else {}


class Tokenized:
    """``tokenize`` and ``tokens`` for a model with ``path`` and ``tokenizer`` attributes."""

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids (int64) with the tokenizer's special tokens, no padding."""
        if self.tokenizer is None:
            raise SemirError(f"{self.path}: the model folder has no tokenizer (tokenizer.json, vocab.txt, or "
                             "vocab.json with merges.txt); pass token ids")
        return np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)

    def tokens(self, ids) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) for i in ids] if self.tokenizer else [str(i) for i in ids]
