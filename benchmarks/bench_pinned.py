"""semir against torch autograd in one process, both on one thread (issue 12's methodology).

    taskset -c 0 env NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_pinned.py
    ... python benchmarks/bench_pinned.py --shape 12,768,12,3072,128      # BERT-base-shaped

The MiniLM-shaped encoder with random weights (benchmarks/encoder.py; layers, hidden, heads, FFN, tokens
6, 384, 12, 1536, 32 by default), wrt the input. Rounds alternate torch (forward + backward of the same
encoder, ``torch.set_num_threads(1)``) and each semiring's compiled kernel; each figure is the best over
the rounds, so a burst of load on a shared machine hits both sides alike. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_numba import torch_encoder  # noqa: E402
from encoder import encoder_text, random_weights  # noqa: E402

import semir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="6,384,12,1536,32", help="layers,hidden,heads,ffn,tokens")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--semirings", nargs="+", default=["sum_product", "max_product", "entropy"],
                    help="semiring names; NAME/eager or NAME/lazy compiles with that pointers policy")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    L, H, A, F, S = (int(v) for v in args.shape.split(","))
    prog = semir.parse(encoder_text(L, H, A, F))
    ins = random_weights(L, H, F, S)
    kernels = {s: semir.compile(prog, s.split("/")[0], wrt=["x"], pointers=(s.split("/") + ["auto"])[1])
               for s in args.semirings}
    runs = {"torch": lambda: torch_encoder(ins, L, H, A, F), **{s: (lambda k=k: k(**ins)) for s, k in kernels.items()}}
    for fn in runs.values():  # warm: compiled, cached, first-touch memory
        fn()
    best = {name: float("inf") for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    out = {"shape": [L, H, A, F, S], "threads": torch.get_num_threads(),
           **{f"{k}_ms": round(v * 1e3, 2) for k, v in best.items()},
           **{f"{s}_over_torch": round(best[s] / best["torch"], 2) for s in kernels}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
