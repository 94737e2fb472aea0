"""semantics="brunoflow" on MiniLM (issue 14): one 14-token sentence, max_product with states at the six
attention inputs and entropy at the embeddings, exact against brunoflow semantics (numba backend, warm),
best of 3 calls, and the process's peak memory.

    python benchmarks/bench_brunoflow.py
"""

from __future__ import annotations

import json
import resource
import time

import numpy as np

import semir


def best_of(k, ins, n: int = 3) -> float:
    k(**ins)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        k(**ins)
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    m = semir.models.load("minilm")
    ids = m.tokenize("the keys near the cabinet that the doctor likes are ready .")
    u = np.random.default_rng(0).normal(size=m.hidden).astype(np.float32)
    ins, prog = m.inputs(ids, readout=u), m.program(position=0)
    names = [f"layer{i}.attention.input" for i in range(m.layers)]
    out = {"tokens": len(ids)}
    for sem in ("exact", "brunoflow"):
        out[f"max_product {sem} s"] = best_of(semir.compile(prog, "max_product", wrt=names, semantics=sem), ins)
        out[f"entropy {sem} s"] = best_of(semir.compile(prog, "entropy", wrt=["embeddings"], semantics=sem), ins)
    out["peak MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}, indent=1))


if __name__ == "__main__":
    main()
