"""Top paths from a token (or any element prefix) to the output, and their Graphviz export."""

from __future__ import annotations

import numpy as np

from ..pathview import dot
from ..results import Path, Result


def top_paths(result: Result, name: str, prefix: tuple[int, ...] = (), k: int | None = None) -> list[Path]:
    """The best paths from the elements of ``name`` under ``prefix`` (e.g. one token's vector).

    With ``topk:K`` results, the K best over all those elements; with max_product/max_abs, the best one.
    """
    sr = result.semiring
    state = result.state(name)
    vals = np.asarray(sr.finalize(state))[prefix]
    if not sr.k:
        flat = np.argmax(np.abs(vals) if sr.paths == "single" else vals)
        idx = prefix + tuple(int(i) for i in np.unravel_index(flat, vals.shape))
        return [result.path(name, idx)]
    k = k or sr.k
    valid = state["edge"][prefix] != np.iinfo(np.int64).max
    cand = [(abs(float(v)), idx) for idx, v in np.ndenumerate(vals) if valid[idx]]
    cand.sort(key=lambda c: (-c[0], c[1]))
    return [result.path(name, prefix + tuple(idx[:-1]), component=int(idx[-1])) for _, idx in cand[:k]]


def path_to_dot(paths: list[Path], title: str = "paths", tokens: list[str] | None = None) -> str:
    """Graphviz DOT text for one or more paths: the steps that branch, scale or change token, grouped in one
    cluster per layer from left to right; each edge is labelled with its weight (the product of the weights of
    the steps it stands for) and, with several paths, the paths that share it, drawn once."""
    program = next((p.program for p in paths if p), None)
    return dot(paths, program, title, tokens)
