"""BERT-family encoders from Hugging Face format folders, offline.

A folder holds ``config.json``, ``model.safetensors`` (read with the
safetensors NumPy API: no torch) and ``tokenizer.json`` (read with the
``tokenizers`` library, padding and truncation off). The IR is built with
the same :class:`Builder` as the model language, with stable dotted names:

``embeddings``
    output of the embedding block (word + position + token type, LayerNorm):
    per-position embeddings, the input to layer 0.
``layer{i}.attention.input``
    the branching point (an alias of the previous layer's output); its four
    consumers are ``layer{i}.attention.query.proj``, ``.key.proj``,
    ``.value.proj`` (the projections) and ``layer{i}.attention.skip`` (an
    identity node on the residual path, weight-1 edges).
``layer{i}.attention.query`` / ``.key`` / ``.value``
    the projected vectors (after their bias); ``.scores`` the scaled dot products, ``.probs`` the attention
    weights, ``.context`` the weighted values, ``.dense`` their projection, ``.residual`` skip + dense, and
    ``layer{i}.attention.output`` the post-LN attention block output.
``layer{i}.ffn.input``, ``layer{i}.ffn.skip``, ``layer{i}.ffn.intermediate``,
``layer{i}.ffn.output``, ``layer{i}.ffn.residual``, ``layer{i}.output``
    the feed-forward block, its residual, and the layer's output.

Every other node is named after the named node it feeds (``layer0.attention.scores.matmul``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import ops as B
from ..errors import InputError, OptionError, SemirError
from ..frontend.builder import Builder, Value
from ..ir.node import Program
from ..ir.types import DType, SymDim, TensorType
from .text import Tokenized, load_tokenizer

_LINEARS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
            "intermediate.dense", "output.dense")


def _require(module: str, extra: str = "models"):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise SemirError(f"this needs the optional package {module!r}: pip install 'semir[{extra}]'") from None


# transformers' names of the activations BERT uses -> the gelu that computes each
_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


@dataclass
class BertModel(Tokenized):
    """A BERT encoder: config, NumPy weights and tokenizer, and the IR to analyse it."""

    path: Path
    config: dict[str, Any]
    weights: dict[str, np.ndarray]
    tokenizer: Any = None
    default_readout: np.ndarray | None = field(default=None, repr=False)
    _programs: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_folder(cls, path: str | Path) -> BertModel:
        path = Path(path)
        missing = [f for f in ("config.json", "model.safetensors") if not (path / f).exists()]
        if missing:
            raise OptionError(f"{path}: not a BERT model folder (missing {', '.join(missing)}; expected "
                              "config.json, model.safetensors and tokenizer.json)")
        config = json.loads((path / "config.json").read_text())
        if config.get("model_type") not in ("bert", None):
            raise OptionError(f"{path}: model_type {config.get('model_type')!r} is not a BERT encoder")
        if config.get("hidden_act", "gelu") not in _GELU:
            raise OptionError(f"{path}: hidden_act {config.get('hidden_act')!r} is not supported; valid choices: "
                              f"{', '.join(_GELU)}")
        st = _require("safetensors.numpy")
        raw = st.load_file(str(path / "model.safetensors"))
        weights = {k.removeprefix("bert."): v for k, v in raw.items()}
        return cls(path, config, weights, load_tokenizer(path))

    def __repr__(self) -> str:
        return (f"<BertModel {str(self.path)!r}: {self.layers} layers, hidden {self.hidden}, {self.heads} heads, "
                f"vocabulary {self.config.get('vocab_size')}>")

    # -- configuration ------------------------------------------------------

    @property
    def layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def hidden(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def heads(self) -> int:
        return int(self.config["num_attention_heads"])

    # -- IR -------------------------------------------------------------------

    def program(self, readout: Any = None, position: int = 0, pool: str | None = None,
                batch: bool = False, head: str | None = None, contrast: bool = False,
                normalize: bool = False) -> Program:
        """The encoder with output ``readout · h_final[position]``, or with ``pool="mean"``
        ``readout · mean over tokens of h_final`` (a pooled-embedding component for a one-hot readout).

        The readout is an input of the program. ``readout=u`` here makes ``u`` the one that
        :meth:`inputs` feeds when it is not given one; ``inputs(ids, readout=u)`` overrides it. With
        neither, :meth:`inputs` refuses: a zero readout would make every statistic 0.

        The objective around the readout (node ``objective``):

        * ``head="masked_lm"``: the readout reads the masked-LM head's transform of the state (dense, the
          activation, layernorm), where the decoder's row of a token is that token's logit (less its bias);
        * ``contrast=True``: ``readout · x − readout_b · x``, two readouts subtracted as a network computes a
          logit difference: each logit's paths are paths of their own;
        * ``normalize=True``: ``readout · x / ‖x‖``, the cosine with a unit-length readout.

        ``batch=True``: a batch of sentences of one length (``[B, S]`` ids, fed by :meth:`batch_inputs`),
        every node with a leading batch axis, the output the sum of the sentences' outputs. No edge crosses
        sentences (attention is within each), so every path from a sentence's element ends at its own
        term, and every semiring's states of sentence ``b`` are ``[b]`` of the batched ones.
        """
        if readout is not None:
            self.default_readout = self.check_readout(readout)
        if pool not in (None, "mean"):
            raise OptionError(f"unknown pooling {pool!r}; valid choices: mean")
        if head not in (None, "masked_lm"):
            raise OptionError(f"unknown head {head!r}; valid choices: masked_lm")
        if head and not self.has_mlm_head:
            raise OptionError(f"{self.path}: the folder has no masked-LM head (cls.predictions.* weights, as "
                              "BertForMaskedLM saves them)")
        key = ("readout", int(position), pool, bool(batch), head, bool(contrast), bool(normalize))
        if key not in self._programs:
            self._programs[key] = self._build(position, pool, batch, head, contrast, normalize)
        return self._programs[key]

    @property
    def has_mlm_head(self) -> bool:
        return "cls.predictions.transform.dense.weight" in self.weights

    def mlm_rows(self, token_ids) -> tuple[np.ndarray, np.ndarray]:
        """The masked-LM decoder's rows and biases of ``token_ids``: token t's logit is ``row_t · x + bias_t``
        for the head's transformed state x (the rows are the word embeddings where the decoder is tied)."""
        if not self.has_mlm_head:
            raise OptionError(f"{self.path}: the folder has no masked-LM head")
        w = self.weights
        rows = w.get("cls.predictions.decoder.weight", w["embeddings.word_embeddings.weight"])
        bias = w.get("cls.predictions.bias", w.get("cls.predictions.decoder.bias"))
        ids = np.asarray(token_ids, dtype=np.int64)
        return rows[ids].astype(np.float32), (bias[ids] if bias is not None else np.zeros(len(ids))).astype(np.float64)

    def batch_inputs(self, batch_ids, readout: Any = None) -> dict[str, np.ndarray]:
        """Inputs of ``program(batch=True)``: sentences of one length (no padding, so no masked position can
        add a path), ``[B, S]``."""
        rows = [self._check_ids(ids) for ids in batch_ids]
        if not rows:
            raise InputError("batch_ids: no sentences")
        if len({len(r) for r in rows}) != 1:
            raise InputError(f"batch_ids: a batch holds sentences of one length, got lengths "
                             f"{sorted({len(r) for r in rows})}; group them by length (padding would add paths)")
        one = self.inputs(rows[0], readout=readout)
        Bn, S = len(rows), len(rows[0])
        one.update(ids=np.stack(rows), positions=np.tile(np.arange(S, dtype=np.int64), (Bn, 1)),
                   token_types=np.zeros((Bn, S), np.int64), attention_mask=np.ones((Bn, S), np.float32))
        return one

    def similarity_program(self) -> Program:
        """Output: the cosine similarity of two sentences' mean-pooled embeddings (inputs ``*_a``, ``*_b``).

        Node names carry the sentence: ``a.embeddings``, ``b.layer3.attention.input``, ``a.pooled``.
        """
        if "similarity" not in self._programs:
            b = Builder()
            W = self._weights(b, embeddings=True, layers=range(self.layers))
            pooled = []
            for tag in ("a", "b"):
                S = SymDim.make({f"S_{tag}": 1}, 0)
                ids, pos, types, mask_add = self._sentence(b, S, f"_{tag}")
                scope = b.open_scope(tag, tag)
                h = self._embed(b, W, ids, pos, types)
                for i in range(self.layers):
                    h = self._layer(b, W, S, mask_add, i, h)
                v = B.mean(h, axis=0)
                b.bind(v, "pooled")
                b.close_scope(scope)
                pooled.append(v)
            a, c = pooled
            cos = B.sum(a * c) * B.rsqrt(B.sum(a * a) * B.sum(c * c))
            self._programs["similarity"] = b.finish(cos, "bert_similarity")
        return self._programs["similarity"]

    def similarity_inputs(self, ids_a, ids_b) -> dict[str, np.ndarray]:
        out = dict(self._params())
        for tag, ids in (("a", ids_a), ("b", ids_b)):
            ids = self._check_ids(ids)
            out.update({f"ids_{tag}": ids, f"positions_{tag}": np.arange(len(ids), dtype=np.int64),
                        f"token_types_{tag}": np.zeros(len(ids), np.int64),
                        f"attention_mask_{tag}": np.ones(len(ids), np.float32)})
        return out

    def inputs(self, ids, readout: Any = None, mask: Any = None, readout_b: Any = None,
               head: str | None = None) -> dict[str, np.ndarray]:
        """Everything the program takes: ids, positions, token types, mask, readout and the weights
        (``readout_b`` for a ``contrast`` program, the head's weights with ``head="masked_lm"``).

        ``readout`` defaults to the one given to :meth:`program`; with neither this is an error.
        """
        ids = self._check_ids(ids)
        S = len(ids)
        if readout is None:
            readout = self.default_readout
        if readout is None:
            raise InputError("readout: no readout vector; pass readout=u (shape "
                             f"({self.hidden},)) to m.program(...) or m.inputs(...): the output is u · hidden state")
        out = {"ids": ids, "positions": np.arange(S, dtype=np.int64), "token_types": np.zeros(S, np.int64),
               "attention_mask": self._check_mask(mask, S), "readout": self.check_readout(readout)}
        if readout_b is not None:
            out["readout_b"] = self.check_readout(readout_b, "readout_b")
        out.update(self._params())
        if head:
            out.update(self.head_params())
        return out

    def check_readout(self, readout: Any, name: str = "readout") -> np.ndarray:
        u = np.asarray(readout)
        if u.shape != (self.hidden,) or u.dtype.kind not in "biuf":
            raise InputError(f"{name}: expected a float vector of shape ({self.hidden},), got "
                             f"{u.dtype} of shape {u.shape}")
        if not np.all(np.isfinite(u)):
            raise InputError(f"{name}: contains NaN or inf")
        return u.astype(np.float32)

    def _check_ids(self, ids: Any) -> np.ndarray:
        a = np.asarray(ids)
        if a.ndim != 1:
            raise InputError(f"ids: expected a 1-D array of token ids, got shape {a.shape}")
        if len(a) == 0:
            raise InputError("ids: empty; a sentence needs at least one token")
        if a.dtype.kind not in "iu":
            raise InputError(f"ids: expected integer token ids, got {a.dtype}")
        vocab = int(self.config["vocab_size"])
        bad = (a < 0) | (a >= vocab)
        if np.any(bad):
            raise InputError(f"ids: token id {int(a[bad][0])} at position {int(np.argmax(bad))} is outside the "
                             f"vocabulary (0..{vocab - 1})")
        S = len(a)
        if S > self.config.get("max_position_embeddings", 512):
            raise InputError(f"ids: {S} tokens exceed max_position_embeddings "
                             f"({self.config.get('max_position_embeddings', 512)})")
        return a.astype(np.int64)

    @staticmethod
    def _check_mask(mask: Any, S: int) -> np.ndarray:
        if mask is None:
            return np.ones(S, np.float32)
        m = np.asarray(mask)
        if m.shape != (S,) or m.dtype.kind not in "biuf" or not np.all((m == 0) | (m == 1)):
            raise InputError(f"mask: expected {S} values of 0 or 1 (one per token), got {m.dtype} of shape {m.shape}")
        if not np.any(m):
            raise InputError("mask: every token is masked out; at least one must be attended to")
        return m.astype(np.float32)

    def _params(self) -> dict[str, np.ndarray]:
        if "_params" not in self._programs:
            p = {}
            w = self.weights
            for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
                p[f"embeddings.{name}"] = w[f"embeddings.{name}.weight"]
            p["embeddings.LayerNorm.weight"] = w["embeddings.LayerNorm.weight"]
            p["embeddings.LayerNorm.bias"] = w["embeddings.LayerNorm.bias"]
            for i in range(self.layers):
                pre = f"encoder.layer.{i}."
                for lin in _LINEARS:
                    # torch Linear stores [out, in]; the IR multiplies x @ W with W [in, out]
                    p[pre + lin + ".weight"] = np.ascontiguousarray(w[pre + lin + ".weight"].T)
                    p[pre + lin + ".bias"] = w[pre + lin + ".bias"]
                for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
                    p[pre + ln + ".weight"] = w[pre + ln + ".weight"]
                    p[pre + ln + ".bias"] = w[pre + ln + ".bias"]
            self._programs["_params"] = {k: v.astype(np.float32) for k, v in p.items()}
        return self._programs["_params"]

    def _gelu(self, x: Value) -> Value:
        return B.gelu(x, approximate=_GELU[self.config.get("hidden_act", "gelu")])

    def head_params(self) -> dict[str, np.ndarray]:
        w, pre = self.weights, "cls.predictions.transform."
        return {"head.dense.weight": np.ascontiguousarray(w[pre + "dense.weight"].T).astype(np.float32),
                "head.dense.bias": w[pre + "dense.bias"].astype(np.float32),
                "head.LayerNorm.weight": w[pre + "LayerNorm.weight"].astype(np.float32),
                "head.LayerNorm.bias": w[pre + "LayerNorm.bias"].astype(np.float32)}

    def _build(self, position: int, pool: str | None, batch: bool = False, head: str | None = None,
               contrast: bool = False, normalize: bool = False) -> Program:
        b = Builder()
        S = SymDim.make({"S": 1}, 0)
        lead = (SymDim.make({"B": 1}, 0),) if batch else ()
        ids, pos, types, mask_add = self._sentence(b, S, "", lead)
        if batch:  # [B, S] -> [B, 1, 1, S]: over the key positions of each sentence's heads and queries
            mask_add = B.reshape(mask_add, [lead[0], 1, 1, S])
        W = self._weights(b, embeddings=True, layers=range(self.layers))
        h = self._embed(b, W, ids, pos, types)
        for i in range(self.layers):
            h = self._layer(b, W, S, mask_add, i, h, lead)
        final = B.mean(h, axis=-2) if pool == "mean" else (h[:, position] if batch else h[position])
        b.bind(final, "pooled" if pool == "mean" else "final")
        x = final
        if head == "masked_lm":
            Hd = {k: b.param(k, TensorType(DType.f32, v.shape)) for k, v in self.head_params().items()}
            t = self._gelu(x @ Hd["head.dense.weight"] + Hd["head.dense.bias"])  # as the FFN's
            x = B.layernorm(t, Hd["head.LayerNorm.weight"], Hd["head.LayerNorm.bias"],
                            eps=float(self.config.get("layer_norm_eps", 1e-12)))
            b.bind(x, "head.transform")
        vec = TensorType(DType.f32, (self.hidden,))
        out = B.sum(x * b.param("readout", vec), axis=-1)
        if contrast:
            b.bind(out, "objective.a")
            other = B.sum(x * b.param("readout_b", vec), axis=-1)
            b.bind(other, "objective.b")
            out = out - other
        if normalize:
            out = out * B.rsqrt(B.sum(x * x, axis=-1))
        b.bind(out, "objective")
        return b.finish(B.sum(out), "bert", name_temporaries=True)

    def block_program(self, first: int, last: int) -> Program:
        """Layers ``first..last`` alone: input ``h_in`` [S, H] (the state entering layer ``first``), output
        ``Σ h_out ⊙ cotangent`` with ``cotangent`` [S, H] an input, so sum_product gives Jᵀ·cotangent."""
        if not 0 <= first <= last < self.layers:
            raise OptionError(f"layers {first}..{last} are not within 0..{self.layers - 1}")
        key = ("block", first, last)
        if key not in self._programs:
            b = Builder()
            S = SymDim.make({"S": 1}, 0)
            mask = b.param("attention_mask", TensorType(DType.f32, (S,)))
            W = self._weights(b, embeddings=False, layers=range(first, last + 1))
            h = b.param("h_in", TensorType(DType.f32, (S, self.hidden)))
            for i in range(first, last + 1):
                h = self._layer(b, W, S, (1.0 - mask) * -10000.0, i, h)
            cot = b.param("cotangent", TensorType(DType.f32, (S, self.hidden)))
            self._programs[key] = b.finish(B.sum(h * cot), f"bert_layers_{first}_{last}", name_temporaries=True)
        return self._programs[key]

    def block_inputs(self, first: int, last: int, h_in, cotangent=None, mask=None) -> dict[str, np.ndarray]:
        """Inputs of :meth:`block_program`. Without ``cotangent`` the dict has none, and a call without one is
        an error (a zero cotangent would make every gradient 0)."""
        params = self._params()
        pre = tuple(f"encoder.layer.{i}." for i in range(first, last + 1))
        h_in = np.asarray(h_in, np.float32)
        out = {k: v for k, v in params.items() if k.startswith(pre)}
        out.update(h_in=h_in, attention_mask=self._check_mask(mask, len(h_in)))
        if cotangent is not None:
            out["cotangent"] = np.asarray(cotangent, np.float32)
        return out

    # -- graph pieces ---------------------------------------------------------

    def _sentence(self, b: Builder, S, suffix: str, lead: tuple = ()):
        """ids, positions, token types and the additive attention mask of one sentence (``lead``: a batch)."""
        i64 = TensorType(DType.i64, (*lead, S))
        ids, pos, types = (b.param(n + suffix, i64) for n in ("ids", "positions", "token_types"))
        mask = b.param("attention_mask" + suffix, TensorType(DType.f32, (*lead, S)))
        # additive mask over key positions: 0 where attended, -10000 where masked (as in BERT)
        mask_add = (1.0 - mask) * -10000.0
        b.bind(mask_add, "attention_mask_add" + suffix)
        return ids, pos, types, mask_add

    def _weights(self, b: Builder, embeddings: bool, layers) -> dict[str, Value]:
        keep = tuple(f"encoder.layer.{i}." for i in layers) + (("embeddings.",) if embeddings else ())
        return {k: b.param(k, TensorType(DType.f32, tuple(v.shape))) for k, v in self._params().items()
                if k.startswith(keep)}

    def _embed(self, b: Builder, W: dict, ids: Value, pos: Value, types: Value) -> Value:
        eps = float(self.config.get("layer_norm_eps", 1e-12))
        emb = (B.take(W["embeddings.word_embeddings"], ids) + B.take(W["embeddings.position_embeddings"], pos)
               + B.take(W["embeddings.token_type_embeddings"], types))
        h = B.layernorm(emb, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps=eps)
        b.bind(h, "embeddings")
        return h

    def _layer(self, b: Builder, W: dict, S, mask_add: Value, i: int, h: Value, lead: tuple = ()) -> Value:
        def name(v: Value, n: str) -> Value:
            b.bind(v, n)
            return v

        eps = float(self.config.get("layer_norm_eps", 1e-12))
        H, A = self.hidden, self.heads
        D = H // A
        L = len(lead)
        keep = list(range(L))  # batch axes stay in front

        def heads(x: Value) -> Value:
            return B.transpose(B.reshape(x, [*lead, S, A, D]), [*keep, L + 1, L, L + 2])

        pre, ln = f"encoder.layer.{i}.", f"layer{i}"
        b.bind(h, f"{ln}.attention.input")
        proj = {}
        for part in ("query", "key", "value"):
            mm = name(h @ W[f"{pre}attention.self.{part}.weight"], f"{ln}.attention.{part}.proj")
            proj[part] = name(mm + W[f"{pre}attention.self.{part}.bias"], f"{ln}.attention.{part}")
        skip = name(B.reshape(h, [*lead, S, H]), f"{ln}.attention.skip")
        keys = B.transpose(heads(proj["key"]), [*keep, L, L + 2, L + 1])
        scores = name(heads(proj["query"]) @ keys * (1.0 / math.sqrt(D)), f"{ln}.attention.scores")
        probs = name(B.softmax(scores + mask_add, axis=-1), f"{ln}.attention.probs")
        ctx = name(B.reshape(B.transpose(probs @ heads(proj["value"]), [*keep, L + 1, L, L + 2]), [*lead, S, H]),
                   f"{ln}.attention.context")
        dense = name(ctx @ W[f"{pre}attention.output.dense.weight"] + W[f"{pre}attention.output.dense.bias"],
                     f"{ln}.attention.dense")
        residual = name(skip + dense, f"{ln}.attention.residual")
        h1 = name(B.layernorm(residual, W[f"{pre}attention.output.LayerNorm.weight"],
                              W[f"{pre}attention.output.LayerNorm.bias"], eps=eps), f"{ln}.attention.output")
        b.bind(h1, f"{ln}.ffn.input")
        inter = name(self._gelu(h1 @ W[f"{pre}intermediate.dense.weight"] + W[f"{pre}intermediate.dense.bias"]),
                     f"{ln}.ffn.intermediate")
        out = name(inter @ W[f"{pre}output.dense.weight"] + W[f"{pre}output.dense.bias"], f"{ln}.ffn.output")
        fskip = name(B.reshape(h1, [*lead, S, H]), f"{ln}.ffn.skip")
        residual = name(fskip + out, f"{ln}.ffn.residual")
        return name(B.layernorm(residual, W[f"{pre}output.LayerNorm.weight"], W[f"{pre}output.LayerNorm.bias"],
                                eps=eps), f"{ln}.output")


def hidden_states(prog_result_values: dict[str, np.ndarray], layers: int) -> list[np.ndarray]:
    """Embeddings and each layer's output from a result's forward values (HF's ``hidden_states``)."""
    return [prog_result_values["embeddings"]] + [prog_result_values[f"layer{i}.output"] for i in range(layers)]

