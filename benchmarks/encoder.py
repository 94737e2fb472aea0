"""A BERT-shaped post-LN encoder as model text, with random weights (shared by the benchmarks)."""

from __future__ import annotations

import math

import numpy as np

LAYER = """
def heads(x: f32[S, {H}]) -> f32[{A}, S, {D}] {{
    return transpose(reshape(x, [S, {A}, {D}]), [1, 0, 2])
}}

def layer(h: f32[S, {H}], wq: f32[{H}, {H}], bq: f32[{H}], wk: f32[{H}, {H}], bk: f32[{H}],
          wv: f32[{H}, {H}], bv: f32[{H}], wo: f32[{H}, {H}], bo: f32[{H}], g1: f32[{H}], e1: f32[{H}],
          w1: f32[{H}, {F}], b1: f32[{F}], w2: f32[{F}, {H}], b2: f32[{H}],
          g2: f32[{H}], e2: f32[{H}]) -> f32[S, {H}] {{
    query = heads(h @ wq + bq)
    key = heads(h @ wk + bk)
    value = heads(h @ wv + bv)
    probs = softmax(query @ transpose(key, [0, 2, 1]) * {scale}, axis=-1)
    context = reshape(transpose(probs @ value, [1, 0, 2]), [S, {H}])
    attention = layernorm(h + context @ wo + bo, g1, e1, eps=1e-12)
    ffn = gelu(attention @ w1 + b1) @ w2 + b2
    return layernorm(attention + ffn, g2, e2, eps=1e-12)
}}
"""

WEIGHTS = ["wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "g1", "e1", "w1", "b1", "w2", "b2", "g2", "e2"]


def encoder_text(layers: int, hidden: int, heads: int, ffn: int) -> str:
    d = hidden // heads
    text = LAYER.format(H=hidden, A=heads, D=d, F=ffn, scale=repr(1 / math.sqrt(d)))
    params = [f"x: f32[S, {hidden}]"]
    body = ["    h0 = x"]
    for i in range(layers):
        params += [f"l{i}_{w}: {_type(w, hidden, ffn)}" for w in WEIGHTS]
        args = ", ".join(f"l{i}_{w}" for w in WEIGHTS)
        body.append(f"    h{i + 1} = layer(h{i}, {args})")
    params.append(f"u: f32[{hidden}]")
    body.append(f"    return sum(h{layers}[0] * u)")
    return text + "\ndef main(" + ", ".join(params) + ") -> f32 {\n" + "\n".join(body) + "\n}\n"


def _type(w: str, hidden: int, ffn: int) -> str:
    return {"w1": f"f32[{hidden}, {ffn}]", "b1": f"f32[{ffn}]", "w2": f"f32[{ffn}, {hidden}]"}.get(
        w, f"f32[{hidden}, {hidden}]" if w.startswith("w") else f"f32[{hidden}]")


def random_weights(layers: int, hidden: int, ffn: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"x": rng.normal(size=(seq, hidden)).astype(np.float32), "u": rng.normal(size=hidden).astype(np.float32)}
    for i in range(layers):
        for w in WEIGHTS:
            shape = [int(s) for s in _type(w, hidden, ffn)[4:-1].split(",")]
            if w.startswith("g"):
                a = 1 + 0.1 * rng.normal(size=shape)
            elif w.startswith("w"):
                a = rng.normal(size=shape) / math.sqrt(shape[0])
            else:
                a = 0.1 * rng.normal(size=shape)
            out[f"l{i}_{w}"] = a.astype(np.float32)
    return out
