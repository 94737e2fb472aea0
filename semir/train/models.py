"""Small trainable models for the paper's experiments, built as IR with named branching points.

``TinyTransformer`` is a post-LN BERT-style encoder with a classifier on the first token's final state.
Its node names follow :mod:`semir.models.bert` (``embeddings``, ``layer{i}.attention.input`` and its
consumers ``.query.proj`` / ``.key.proj`` / ``.value.proj`` / ``.skip``), so the analyses written for
real models (:func:`semir.analysis.branch_flow`, :func:`semir.analysis.token_stats`) run on it unchanged.
``MLP`` is the one-hidden-layer perceptron of App. B.1.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops as B
from ..errors import InputError
from ..frontend.builder import Builder, Value
from ..ir.node import Program
from ..ir.types import DType, SymDim, TensorType

F32 = DType.f32


def _glorot(rng, shape) -> np.ndarray:
    fan = shape[0] + shape[-1]
    return (rng.normal(size=shape) * math.sqrt(2.0 / fan)).astype(np.float32)


class TinyTransformer:
    def __init__(self, vocab: int, length: int, classes: int = 2, hidden: int = 16, heads: int = 2,
                 layers: int = 1, ffn: int | None = None, seed: int = 0):
        self.vocab, self.length, self.classes = vocab, length, classes
        self.hidden, self.heads, self.layers, self.ffn = hidden, heads, layers, ffn or 4 * hidden
        rng = np.random.default_rng(seed)
        H, Fd = hidden, self.ffn
        p = {"emb": _glorot(rng, (vocab + 1, H)), "pos": _glorot(rng, (length, H))}
        for i in range(layers):
            for w in ("wq", "wk", "wv", "wo"):
                p[f"l{i}.{w}"] = _glorot(rng, (H, H))
            for bias in ("bq", "bk", "bv", "bo", "b2", "e1", "e2"):
                p[f"l{i}.{bias}"] = np.zeros(H, np.float32)
            p[f"l{i}.g1"] = np.ones(H, np.float32)
            p[f"l{i}.g2"] = np.ones(H, np.float32)
            p[f"l{i}.w1"], p[f"l{i}.b1"] = _glorot(rng, (H, Fd)), np.zeros(Fd, np.float32)
            p[f"l{i}.w2"] = _glorot(rng, (Fd, H))
        p["wc"], p["bc"] = _glorot(rng, (H, classes)), np.zeros(classes, np.float32)
        self.params = p
        self._programs: dict = {}

    # -- programs -------------------------------------------------------------

    def logits_program(self) -> Program:
        """Input ``ids`` i64[B, S]; output the logits f32[B, classes] (the training program)."""
        if "logits" not in self._programs:
            b = Builder()
            Bd = SymDim.make({"B": 1}, 0)
            ids = b.param("ids", TensorType(DType.i64, (Bd, self.length)))
            self._programs["logits"] = b.finish(self._body(b, ids, (Bd,)), "tiny_transformer")
        return self._programs["logits"]

    def program(self, readout=None, position: int = 0) -> Program:
        """One sequence: output ``readout · logits`` (e.g. readout = [-1, 1]: the logit difference)."""
        if "readout" not in self._programs:
            b = Builder()
            ids = b.param("ids", TensorType(DType.i64, (self.length,)))
            logits = self._body(b, ids, ())
            r = b.param("readout", TensorType(F32, (self.classes,)))
            self._programs["readout"] = b.finish(B.sum(logits * r), "tiny_transformer_readout")
        return self._programs["readout"]

    def inputs(self, ids, readout=None) -> dict[str, np.ndarray]:
        """Inputs of :meth:`program`; ``readout`` defaults to [-1, 1], the logit difference of class 1 over
        class 0 (two classes; give one of length ``classes`` otherwise)."""
        if readout is None and self.classes != 2:
            raise InputError(f"readout: {self.classes} classes have no default logit difference; pass readout=u")
        r = np.array([-1.0, 1.0] if readout is None else readout, np.float32)
        return {**self.params, "ids": np.asarray(ids, np.int64), "readout": r}

    def tokens(self, ids) -> list[str]:
        return [str(int(t)) for t in np.asarray(ids)]

    def _body(self, b: Builder, ids: Value, batch: tuple) -> Value:
        W = {k: b.param(k, TensorType(F32, tuple(v.shape))) for k, v in self.params.items()}
        S, H, A = self.length, self.hidden, self.heads
        D, o = H // A, len(batch)

        def name(v: Value, n: str) -> Value:
            b.bind(v, n)
            return v

        def heads(x: Value) -> Value:  # [..., S, H] -> [..., A, S, D]
            perm = list(range(o)) + [o + 1, o, o + 2]
            return B.transpose(B.reshape(x, [*batch, S, A, D]), perm)

        h = name(B.take(W["emb"], ids) + W["pos"], "embeddings")
        for i in range(self.layers):
            ln, w = f"layer{i}", (lambda n, i=i: W[f"l{i}.{n}"])
            b.bind(h, f"{ln}.attention.input")
            proj = {}
            for part, wn, bn in (("query", "wq", "bq"), ("key", "wk", "bk"), ("value", "wv", "bv")):
                proj[part] = name(name(h @ w(wn), f"{ln}.attention.{part}.proj") + w(bn), f"{ln}.attention.{part}")
            skip = name(B.reshape(h, [*batch, S, H]), f"{ln}.attention.skip")
            kt = B.transpose(heads(proj["key"]), list(range(o + 1)) + [o + 2, o + 1])
            probs = name(B.softmax(heads(proj["query"]) @ kt * (1.0 / math.sqrt(D)), axis=-1),
                         f"{ln}.attention.probs")
            ctx = B.reshape(B.transpose(probs @ heads(proj["value"]), list(range(o)) + [o + 1, o, o + 2]),
                            [*batch, S, H])
            h1 = name(B.layernorm(skip + ctx @ w("wo") + w("bo"), w("g1"), w("e1"), eps=1e-5),
                      f"{ln}.attention.output")
            ff = B.gelu(h1 @ w("w1") + w("b1")) @ w("w2") + w("b2")
            h = name(B.layernorm(name(B.reshape(h1, [*batch, S, H]), f"{ln}.ffn.skip") + ff, w("g2"), w("e2"),
                                 eps=1e-5), f"{ln}.output")
        first = h[:, 0] if batch else h[0]
        return name(first @ W["wc"] + W["bc"], "logits")


class MLP:
    """``tanh(x W1 + b1) W2 + b2`` over ``features`` inputs; the input node is ``x``."""

    def __init__(self, features: int, hidden: int, classes: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.features, self.hidden, self.classes = features, hidden, classes
        self.params = {"w1": _glorot(rng, (features, hidden)), "b1": np.zeros(hidden, np.float32),
                       "w2": _glorot(rng, (hidden, classes)), "b2": np.zeros(classes, np.float32)}
        self._programs: dict = {}

    def logits_program(self) -> Program:
        if "logits" not in self._programs:
            b = Builder()
            x = b.param("x", TensorType(F32, (SymDim.make({"B": 1}, 0), self.features)))
            self._programs["logits"] = b.finish(self._body(b, x), "mlp")
        return self._programs["logits"]

    def program(self) -> Program:
        """One example: output ``readout · logits``."""
        if "readout" not in self._programs:
            b = Builder()
            x = b.param("x", TensorType(F32, (self.features,)))
            logits = self._body(b, x)
            r = b.param("readout", TensorType(F32, (self.classes,)))
            self._programs["readout"] = b.finish(B.sum(logits * r), "mlp_readout")
        return self._programs["readout"]

    def _body(self, b: Builder, x: Value) -> Value:
        W = {k: b.param(k, TensorType(F32, tuple(v.shape))) for k, v in self.params.items()}
        h = B.tanh(x @ W["w1"] + W["b1"])
        b.bind(h, "hidden")
        return h @ W["w2"] + W["b2"]


class LinearProbe:
    """``x W + b``: a linear classifier of ``features``-dimensional representations (a probe); input ``x``."""

    def __init__(self, features: int, classes: int = 2, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.params = {"w": _glorot(rng, (features, classes)), "b": np.zeros(classes, np.float32)}
        self.features = features
        self._program = None

    def logits_program(self) -> Program:
        if self._program is None:
            b = Builder()
            x = b.param("x", TensorType(F32, (SymDim.make({"B": 1}, 0), self.features)))
            W = {k: b.param(k, TensorType(F32, tuple(v.shape))) for k, v in self.params.items()}
            self._program = b.finish(x @ W["w"] + W["b"], "probe")
        return self._program
