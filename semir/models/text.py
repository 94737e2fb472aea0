"""Tokenizers of model folders (``tokenizer.json``, read with the ``tokenizers`` library, no padding or
truncation), shared by every model family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemirError


def load_tokenizer(path: Path) -> Any:
    """The folder's ``tokenizer.json`` as a ``tokenizers.Tokenizer``, or None if it has none."""
    if not (path / "tokenizer.json").exists():
        return None
    try:
        import tokenizers
    except ImportError:
        raise SemirError("this needs the optional package 'tokenizers': pip install 'semir[models]'") from None
    tok = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


class Tokenized:
    """``tokenize`` and ``tokens`` for a model with ``path`` and ``tokenizer`` attributes."""

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids (int64) with the tokenizer's special tokens, no padding."""
        if self.tokenizer is None:
            raise SemirError(f"{self.path}: no tokenizer.json in the model folder; pass token ids")
        return np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)

    def tokens(self, ids) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) for i in ids] if self.tokenizer else [str(i) for i in ids]
