"""Language models from Hugging Face folders through transformers and ``semir.from_torch``: decoders (GPT-2,
Llama, any ``...ForCausalLM``) and masked-LM encoders (RoBERTa, DistilBERT, and BERT with its head).

The folder is read offline (``local_files_only``) by transformers with eager attention, and each objective
is exported once per sentence length: the logit or log-probability of one token at one position, or the
logit difference between two tokens there (the subject-verb agreement and IOI contrasts). Node names are
the module paths of the transformers model under ``lm.`` (``lm.transformer.h.3.attn``,
``lm.model.layers.0.mlp``). Needs torch and transformers (``pip install "semir[torch]" transformers``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OptionError, SemirError
from .text import Tokenized, load_tokenizer

OBJECTIVES = ("logit", "logprob")
# Encoders read through their masked-LM head (BERT's backbone also has a native importer, models/bert.py, and
# comes here for its head: ``semir.models.load(folder, head="masked_lm")``). RoBERTa
# numbers positions from padding_idx + 1; semir's ids have no padding, so the positions are fixed.
MASKED = ("roberta", "distilbert")
ENCODERS = MASKED + ("bert",)

# semir's names for each family's modules, as aliases: (embeddings, layer i, {name in the layer: module path in
# it}). BERT-family encoders get the names of semir's native BERT importer where the value is the same (post-LN
# blocks); pre-LN decoders get names of their own, since their blocks' outputs are not BERT's.
STABLE_NAMES: dict[str, tuple[str, str, dict[str, str]]] = {
    "bert": ("lm.bert.embeddings", "lm.bert.encoder.layer.{i}", {
        "attention.query": "attention.self.query", "attention.key": "attention.self.key",
        "attention.value": "attention.self.value", "attention.output": "attention",
        "ffn.input": "attention", "ffn.intermediate": "intermediate", "ffn.output": "output.dense"}),
    "roberta": ("lm.roberta.embeddings", "lm.roberta.encoder.layer.{i}", {
        "attention.query": "attention.self.query", "attention.key": "attention.self.key",
        "attention.value": "attention.self.value", "attention.output": "attention",
        "ffn.input": "attention", "ffn.intermediate": "intermediate", "ffn.output": "output.dense"}),
    "distilbert": ("lm.distilbert.embeddings", "lm.distilbert.transformer.layer.{i}", {
        "attention.query": "attention.q_lin", "attention.key": "attention.k_lin", "attention.value": "attention.v_lin",
        "attention.output": "sa_layer_norm", "ffn.input": "sa_layer_norm", "ffn.intermediate": "ffn.activation",
        "ffn.output": "ffn.lin2"}),
    "gpt2": ("lm.transformer.drop", "lm.transformer.h.{i}", {"attention": "attn", "mlp": "mlp"}),
    "llama": ("lm.model.embed_tokens", "lm.model.layers.{i}", {
        "attention": "self_attn", "attention.query": "self_attn.q_proj", "attention.key": "self_attn.k_proj",
        "attention.value": "self_attn.v_proj", "mlp": "mlp"}),
}


def stable_aliases(model_type: str, program) -> tuple[tuple[str, str], ...]:
    """``embeddings``, ``layer{i}.input`` (``layer{i}.attention.input`` for encoders), ``layer{i}.output`` and
    the family's names inside a layer, for the modules the program has."""
    if model_type not in STABLE_NAMES:
        return ()
    emb, layer, inner = STABLE_NAMES[model_type]
    have = set(program.names())
    out = [("embeddings", emb)] if emb in have else []
    entry = "attention.input" if model_type in ENCODERS else "input"
    i = 0
    while layer.format(i=i) in have:
        base = layer.format(i=i)
        out.append((f"layer{i}.{entry}", "embeddings" if i == 0 else f"layer{i - 1}.output"))
        out.append((f"layer{i}.output", base))
        out += [(f"layer{i}.{k}", f"{base}.{v}") for k, v in inner.items() if f"{base}.{v}" in have]
        i += 1
    return tuple((a, t) for a, t in out if a not in have)


class CausalLM(Tokenized):
    """A language model from a Hugging Face folder: tokenizer, and programs for token objectives (the next
    token for decoders, a masked position for encoders)."""

    def __init__(self, path: Path, lm: Any, tokenizer: Any, config: dict):
        self.path, self.lm, self.tokenizer, self.config = path, lm, tokenizer, config
        self._programs: dict[tuple, Any] = {}

    def __repr__(self) -> str:
        return (f"<CausalLM {str(self.path)!r}: {self.config.get('model_type')}, "
                f"vocabulary {self.config.get('vocab_size')}>")

    @classmethod
    def from_folder(cls, path: str | Path, masked: bool | None = None) -> CausalLM:
        path = Path(path)
        try:
            import torch  # noqa: F401
            import transformers
        except ImportError:
            raise SemirError(f"{path}: decoder models load through transformers and torch: "
                             "pip install 'semir[torch]' transformers") from None
        config = json.loads((path / "config.json").read_text())
        masked = config.get("model_type") in MASKED if masked is None else masked
        auto = transformers.AutoModelForMaskedLM if masked else transformers.AutoModelForCausalLM
        kind = "a masked LM" if masked else "a causal LM"
        try:
            lm, info = auto.from_pretrained(str(path), local_files_only=True, attn_implementation="eager",
                                            output_loading_info=True)
        except Exception as e:  # transformers raises many kinds for a folder it cannot read
            raise OptionError(f"{path}: transformers cannot load this folder as {kind}: {e}") from None
        missing = sorted(info.get("missing_keys") or ())
        if missing:  # transformers would fill them with random numbers: a head that computes nothing real
            raise OptionError(f"{path}: the folder lacks weights of {kind} ({len(missing)} missing, e.g. "
                              f"{missing[0]!r}); transformers would initialise them at random")
        lm.eval()
        return cls(path, lm, load_tokenizer(path), config)

    # -- programs ---------------------------------------------------------------

    def program(self, length: int, token: int, position: int = -1, contrast: int | None = None,
                objective: str = "logit"):
        """The model for sentences of ``length`` tokens, output: the ``objective`` ("logit" or "logprob") of
        ``token`` at ``position``, minus that of ``contrast`` when given. Returns a
        :class:`~semir.frontend.torch_export.TorchModel`; feed it with :meth:`inputs`."""
        import torch

        from ..frontend.torch_export import from_torch

        if objective not in OBJECTIVES:
            raise OptionError(f"unknown objective {objective!r}; valid choices: {', '.join(OBJECTIVES)}")
        vocab = int(self.config["vocab_size"])
        for what, t in (("token", token), ("contrast", contrast)):
            if t is not None and not 0 <= int(t) < vocab:
                raise InputError(f"{what}: {t} is outside the vocabulary (0..{vocab - 1})")
        if not 1 <= length <= int(self.config.get("max_position_embeddings", self.config.get("n_positions", 2048))):
            raise InputError(f"length: {length} tokens is outside what the model takes")
        if not -length <= position < length:
            raise InputError(f"position {position} is outside a sentence of {length} tokens")
        key = (length, int(token), position, contrast, objective)
        if key not in self._programs:
            first = int(self.config["pad_token_id"]) + 1 if self.config.get("model_type") == "roberta" else None
            head = _objective(self.lm, int(token), position, contrast, objective == "logprob", first)
            tm = from_torch(head, (torch.zeros(length, dtype=torch.long),),
                            name=f"{self.config.get('model_type', 'lm')}_{objective}")
            extra = stable_aliases(self.config.get("model_type", ""), tm.program)
            self._programs[key] = dataclasses.replace(
                tm, program=dataclasses.replace(tm.program, aliases=tm.program.aliases + extra))
        return self._programs[key]

    def inputs(self, program, ids) -> dict[str, np.ndarray]:
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise InputError(f"ids: expected a 1-D array of integer token ids, got {ids.dtype} {ids.shape}")
        vocab = int(self.config["vocab_size"])
        if len(ids) and (ids.min() < 0 or ids.max() >= vocab):
            raise InputError(f"ids: token ids must lie in 0..{vocab - 1}")
        pad = self.config.get("pad_token_id")
        if self.config.get("model_type") == "roberta" and pad is not None and np.any(ids == pad):
            raise InputError(f"ids: the padding id {pad} cannot appear (positions are numbered without padding)")
        return program.inputs(ids.astype(np.int64))


def _objective_module():
    import torch

    class Objective(torch.nn.Module):
        def __init__(self, lm, token, position, contrast, logprob, first_position):
            super().__init__()
            self.lm, self.token, self.position, self.contrast, self.logprob = lm, token, position, contrast, logprob
            self.first_position = first_position

        def forward(self, ids):
            kw = {} if self.first_position is None else {
                "position_ids": torch.arange(ids.shape[0])[None] + self.first_position}
            if self.lm.config.model_type not in ENCODERS:
                kw["use_cache"] = False  # no key-value cache: one pass over the whole sentence
            logits = self.lm(input_ids=ids[None], **kw).logits[0, self.position]
            scores = torch.log_softmax(logits, dim=-1) if self.logprob else logits
            out = scores[self.token]
            return out - scores[self.contrast] if self.contrast is not None else out

    return Objective


def _objective(*args):
    return _objective_module()(*args)  # the class needs torch, which is imported only here
