"""Top paths from a token (or any element prefix) to the output, and their Graphviz export."""

from __future__ import annotations

import json

import numpy as np

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


def path_to_dot(paths: list[Path], title: str = "paths") -> str:
    """Graphviz DOT text: one node per (node, element), edges labelled with their weights."""
    lines = [f"digraph {json.dumps(title)} {{", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    seen = set()
    for p in paths:
        for a, b in zip(p, p[1:]):
            ka, kb = f"{a.node}{list(a.index)}", f"{b.node}{list(b.index)}"
            for key in (ka, kb):
                if key not in seen:
                    seen.add(key)
                    lines.append(f"  {json.dumps(key)};")
            lines.append(f"  {json.dumps(ka)} -> {json.dumps(kb)} [label={json.dumps(f'{a.weight:.4g}')}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
