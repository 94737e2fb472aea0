"""LSTM and GRU language models from an npz of weights in PyTorch's layout, unrolled with named gates.

The npz holds ``embedding`` [V, E], the single-layer ``nn.LSTM``/``nn.GRU`` state-dict arrays
``weight_ih_l0`` [G·H, E], ``weight_hh_l0`` [G·H, H], ``bias_ih_l0``, ``bias_hh_l0`` (gate order i, f, g, o
for the LSTM, r, z, n for the GRU), and optionally a ``decoder`` [V, H] with ``decoder_bias`` [V]. Nodes:
``embeddings`` [T, E]; per step t ``step{t}.input_gate``, ``.forget_gate``, ``.cell_gate``,
``.output_gate``, ``.cell``, ``.hidden`` (LSTM) or ``.reset_gate``, ``.update_gate``, ``.candidate``,
``.hidden`` (GRU). The output is ``readout · h_T``, or with ``target=k`` the log-probability of token k
after the sequence (log_softmax of the decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import ops
from ..errors import InputError, OptionError
from ..frontend.builder import Builder, Value
from ..ir.node import Program
from ..ir.types import DType, TensorType

GATES = {"lstm": 4, "gru": 3}


@dataclass
class RecurrentModel:
    kind: str
    weights: dict[str, np.ndarray]

    def __repr__(self) -> str:
        return f"<RecurrentModel {self.kind}: {len(self.weights)} weight arrays>"

    @classmethod
    def from_npz(cls, path: str | Path, kind: str = "lstm") -> RecurrentModel:
        if kind not in GATES:
            raise OptionError(f"unknown recurrent kind {kind!r}; valid choices: lstm, gru")
        try:
            with np.load(path) as f:
                w = {k: np.asarray(f[k], np.float32) for k in f.files}
        except (OSError, ValueError) as e:
            raise OptionError(f"cannot read recurrent weights from {str(path)!r}: {e}") from None
        need = ["embedding", "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
        missing = [k for k in need if k not in w]
        if missing:
            raise OptionError(f"{path}: missing arrays {', '.join(missing)} (PyTorch nn.{kind.upper()} layout)")
        m = cls(kind, w)
        if w["weight_ih_l0"].shape != (GATES[kind] * m.hidden, m.embed):
            raise OptionError(f"{path}: weight_ih_l0 has shape {w['weight_ih_l0'].shape}, expected "
                              f"({GATES[kind] * m.hidden}, {m.embed}) for an {kind.upper()}")
        return m

    @property
    def hidden(self) -> int:
        return self.weights["weight_hh_l0"].shape[1]

    @property
    def embed(self) -> int:
        return self.weights["embedding"].shape[1]

    def inputs(self, ids, readout=None) -> dict[str, np.ndarray]:
        ids = np.asarray(ids, np.int64)
        if ids.ndim != 1:
            raise InputError(f"ids: expected a 1-D array, got shape {ids.shape}")
        w = self.weights
        out = {"ids": ids, "embedding": w["embedding"],
               "w_ih": np.ascontiguousarray(w["weight_ih_l0"].T), "w_hh": np.ascontiguousarray(w["weight_hh_l0"].T),
               "b": w["bias_ih_l0"] + w["bias_hh_l0"] if self.kind == "lstm" else w["bias_ih_l0"],
               "readout": np.zeros(self.hidden, np.float32) if readout is None else np.asarray(readout, np.float32)}
        if self.kind == "gru":
            out["b_hh"] = w["bias_hh_l0"]
        if "decoder" in w:
            out["decoder"] = np.ascontiguousarray(w["decoder"].T)
            out["decoder_bias"] = w.get("decoder_bias", np.zeros(w["decoder"].shape[0], np.float32))
        return out

    def program(self, steps: int, target: int | None = None) -> Program:
        """The model unrolled over ``steps`` tokens."""
        if target is not None and "decoder" not in self.weights:
            raise OptionError("target= needs a decoder in the npz (decoder, decoder_bias)")
        H, E, V = self.hidden, self.embed, self.weights["embedding"].shape[0]
        G = GATES[self.kind]
        b = Builder()
        f32 = DType.f32
        ids = b.param("ids", TensorType(DType.i64, (steps,)))
        emb_t = b.param("embedding", TensorType(f32, (V, E)))
        w_ih = b.param("w_ih", TensorType(f32, (E, G * H)))
        w_hh = b.param("w_hh", TensorType(f32, (H, G * H)))
        bias = b.param("b", TensorType(f32, (G * H,)))
        b_hh = b.param("b_hh", TensorType(f32, (G * H,))) if self.kind == "gru" else None
        readout = b.param("readout", TensorType(f32, (H,)))
        dec = dec_b = None
        if "decoder" in self.weights:
            dec = b.param("decoder", TensorType(f32, (H, V)))
            dec_b = b.param("decoder_bias", TensorType(f32, (V,)))

        def name(v: Value, n: str) -> Value:
            b.bind(v, n)
            return v

        x = name(ops.take(emb_t, ids), "embeddings")
        h = c = None
        for t in range(steps):
            s = f"step{t}"
            xi = x[t] @ w_ih
            if self.kind == "lstm":
                z = xi + bias if h is None else xi + h @ w_hh + bias
                i = name(ops.sigmoid(z[0:H]), f"{s}.input_gate")
                f = name(ops.sigmoid(z[H:2 * H]), f"{s}.forget_gate")
                g = name(ops.tanh(z[2 * H:3 * H]), f"{s}.cell_gate")
                o = name(ops.sigmoid(z[3 * H:4 * H]), f"{s}.output_gate")
                c = name(i * g if c is None else f * c + i * g, f"{s}.cell")
                h = name(o * ops.tanh(c), f"{s}.hidden")
            else:
                gi = xi + bias
                gh = b_hh if h is None else h @ w_hh + b_hh
                r = name(ops.sigmoid(gi[0:H] + gh[0:H]), f"{s}.reset_gate")
                zg = name(ops.sigmoid(gi[H:2 * H] + gh[H:2 * H]), f"{s}.update_gate")
                n = name(ops.tanh(gi[2 * H:3 * H] + r * gh[2 * H:3 * H]), f"{s}.candidate")
                h = name((1.0 - zg) * n if t == 0 else (1.0 - zg) * n + zg * h, f"{s}.hidden")
        if target is None:
            out = ops.sum(h * readout)
        else:
            logp = name(ops.log_softmax(h @ dec + dec_b), "log_probs")
            out = logp[int(target)]
        return b.finish(out, self.kind, name_temporaries=True)


def load_recurrent(path: str | Path, kind: str = "lstm") -> RecurrentModel:
    return RecurrentModel.from_npz(path, kind)
