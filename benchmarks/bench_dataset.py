"""Data-set throughput on MiniLM (issue 15): the one-sentence `semir analyze` loop against the data-set runner,
in-process and on a dask LocalCluster of 2 workers. Sentences of about 32 tokens; token entropy, the branch
table, the gradient norm and one top path per sentence.

    python benchmarks/bench_dataset.py --sentences 40
    python benchmarks/bench_dataset.py --sentences 160 --only workers   # 1 and 2 workers, batches of 8

Each configuration runs in a new output directory; kernels come warm from semir's on-disk cache (one warm-up
run first), as they do for a user's second run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("the keys near the cabinet that the doctor likes are on the table by the door of the old house "
         "where a man and his dog live with three cats").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=30)) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=40)
    ap.add_argument("--legacy", type=int, default=10, help="sentences for the one-sentence loop")
    ap.add_argument("--only", choices=("all", "workers"), default="all")
    args = ap.parse_args()
    from semir.analysis import dataset

    texts = sentences(args.sentences)
    u = np.random.default_rng(0).normal(size=384).astype(np.float32)
    tmp = Path(tempfile.mkdtemp())
    dataset.run("minilm", texts[:2], u, tmp / "warm", description="warm-up", progress=False)
    out = {}
    configs = [("data-set runner, in-process, batches of 8", None, 8),
               ("data-set runner, in-process, one at a time", None, 1),
               ("data-set runner, 1 worker, batches of 8", 1, 8),
               ("data-set runner, 1 worker, one at a time", 1, 1),
               ("data-set runner, 2 workers, batches of 8", 2, 8)]
    if args.only == "workers":
        configs = [c for c in configs if c[1] and c[2] == 8]
    else:
        with open(tmp / "legacy.txt", "w") as f:
            f.write("\n".join(texts[:args.legacy]) + "\n")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "semir.cli", "analyze", "minilm", "--sentences",
                        str(tmp / "legacy.txt"), "--objective", "random", "--json"], check=True, capture_output=True)
        out["one-sentence loop (semir analyze --sentences)"] = args.legacy / (time.perf_counter() - t)
    for name, workers, batch in configs:
        t = time.perf_counter()
        dataset.run("minilm", texts, u, tmp / f"run{workers}_{batch}",
                    description="u", workers=workers, batch_size=batch,
                    partition_size=8, progress=False)
        out[name] = args.sentences / (time.perf_counter() - t)
    print(json.dumps({k: round(v, 3) for k, v in out.items()}, indent=1))
    print("sentences per second; tokens per sentence:", len(texts[0].split()) + 2)


if __name__ == "__main__":
    main()
