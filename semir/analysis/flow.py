"""Token-to-token gradient flow per layer: gradient norms between token positions, read as how much
information flows from one token to another through a layer (as in studies of BERT that compare gradients
with attention weights and syntax).

``G_n(t1, t2)``: the 2-norm (Frobenius) of ∂h_n[t2] / ∂h_{n-1}[t1], the Jacobian block from token t1
entering layer n to token t2 leaving it. ``G*_n`` is the same from the embeddings (before layer 0), and
``A_n(t1, t2)`` the attention weight of t2 on t1 averaged over heads.
"""

from __future__ import annotations

import numpy as np

from ..compiler import compile


def _hidden(model, ids, name: str, backend: str | None) -> np.ndarray:
    k = compile(model.program(position=0), "sum_product", backend=backend, wrt=[name])
    # only a forward value is read, which no readout changes
    return k(**model.inputs(ids, readout=np.zeros(model.hidden, np.float32))).value(name)


def token_flow(model, ids, layer: int, from_layer: int | None = None, samples: int | None = 32, seed: int = 0,
               backend: str | None = None) -> np.ndarray:
    """``G[t1, t2]`` for layer ``layer``: from the state entering layer ``from_layer`` (default: ``layer``;
    0 gives G*) to the output of ``layer``.

    Each row of Jᵀ is one sum_product pass with a cotangent on token t2: exact with ``samples=None``
    (one unit cotangent per hidden unit), else the Hutchinson estimate ‖J‖²_F = E‖Jᵀz‖² with
    ``samples`` Gaussian cotangents per token.
    """
    first = layer if from_layer is None else from_layer
    entering = "embeddings" if first == 0 else f"layer{first - 1}.output"
    h_in = _hidden(model, ids, entering, backend)
    kernel = compile(model.block_program(first, layer), "sum_product", backend=backend, wrt=["h_in"])
    base = model.block_inputs(first, layer, h_in)
    S, H = h_in.shape
    rng = np.random.default_rng(seed)
    sq = np.zeros((S, S))
    for t2 in range(S):
        draws = range(H) if samples is None else range(samples)
        for d in draws:
            cot = np.zeros((S, H), np.float32)
            cot[t2] = (np.eye(H, dtype=np.float32)[d] if samples is None
                       else rng.normal(size=H).astype(np.float32))
            g = kernel(**{**base, "cotangent": cot})["h_in"].astype(np.float64)
            sq[:, t2] += (g * g).sum(axis=1)
        if samples is not None:
            sq[:, t2] /= samples
    return np.sqrt(sq)


def attention_flow(model, ids, layer: int, backend: str | None = None) -> np.ndarray:
    """``A[t1, t2]``: attention of token t2 on token t1 in ``layer``, averaged over heads."""
    probs = _hidden(model, ids, f"layer{layer}.attention.probs", backend)  # [heads, S (t2), S (t1)]
    return probs.mean(axis=0).T
