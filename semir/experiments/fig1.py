"""Fig. 1: f(x, y) = e^x + (x − y)·y under every semiring, and every path of its gradient graph.

The paths are listed by the top-k semiring with k large enough to hold them all; each semiring's value is
computed by the compiled kernels (reference backend) and, independently, from that path list by the
semiring's definition, and the two are recorded side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compiler import compile
from .common import Timer, pyplot, save, write

SEMIRINGS = ("sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean")
SOURCE = """def f(x: f64, y: f64) -> f64 {
    x2 = exp(x)
    x3 = x - y
    x4 = y * x3
    return x2 + x4
}"""


def _by_definition(name: str, products: list[float]) -> float:
    p = np.array(products)
    nz = p[p != 0]
    if name == "sum_product":
        return float(p.sum())
    if name == "max_product":
        return float(p.max())
    if name == "max_abs":
        return float(p[np.argmax(np.abs(p))])
    if name == "entropy":
        q = np.abs(nz) / np.abs(nz).sum()
        return float(-(q * np.log(q)).sum())
    if name == "log":
        return float(np.log(np.abs(nz).sum()))
    if name == "counting":
        return float(len(nz))
    return float(len(nz) > 0)


def run(out, full: bool = False, seed: int = 0, progress: bool = True, x: float = 1.0, y: float = 2.0) -> dict:
    from .. import parse

    prog = parse(SOURCE)
    with Timer() as t:
        r = compile(prog, "topk:8", backend="reference")(x=x, y=y)
        paths = {}
        for v in ("x", "y"):
            paths[v] = []
            for rank in range(8):
                if not np.isfinite(r.state(v)["v"][rank]) or r.state(v)["edge"][rank] == np.iinfo(np.int64).max:
                    break
                p = r.path(v, (), rank)
                paths[v].append({"steps": [s.node for s in p], "weights": [s.weight for s in p],
                                 "product": float(np.prod([s.weight for s in p]))})
        rows = []
        for name in SEMIRINGS:
            res = compile(prog, name, backend="reference")(x=x, y=y)
            for v in ("x", "y"):
                rows.append({"semiring": name, "input": v, "value": float(np.asarray(res[v])),
                             "by_definition": _by_definition(name, [p["product"] for p in paths[v]])})
    summary = {"x": x, "y": y, "seconds": t.seconds, "paths": paths, "values": rows}
    write(Path(out), "fig1", summary, rows)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, v in zip(axes, ("x", "y")):
        labels = [" → ".join(p["steps"]) for p in paths[v]]
        ax.barh(range(len(labels)), [p["product"] for p in paths[v]])
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"paths from {v} (x={x}, y={y})", fontsize=9)
        ax.set_xlabel("path product (edge weights multiplied)")
        ax.set_ylabel("path (node → node)")
        ax.axvline(0, color="black", lw=0.5)
    fig.suptitle("Fig. 1: f(x, y) = exp(x) + (x − y)·y, every path to the output", fontsize=10)
    fig.tight_layout()
    save(fig, Path(out) / "fig1.png")
    return summary
