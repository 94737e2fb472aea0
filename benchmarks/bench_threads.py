"""Threads with and without PyTorch in the process (issue 12): the MiniLM-shaped encoder on 2 threads, per Numba
threading layer, each configuration in a fresh process.

    python benchmarks/bench_threads.py                 # omp and workqueue, with and without `import torch`
    python benchmarks/bench_threads.py --layers omp tbb   # tbb: pip install "semir[tbb]"
    python benchmarks/bench_threads.py --layers default   # what semir picks with NUMBA_THREADING_LAYER unset
    taskset -c 0 python benchmarks/bench_threads.py --threads 1 --layers omp --without-torch   # one core

Numba's omp layer shares the OpenMP runtime that torch initialises; the workqueue layer does not, but it is
not thread-safe (concurrent kernel calls abort the process), so it cannot be semir's default. TBB is both
thread-safe and independent of OpenMP.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import sys, time, json
if {torch!r}:
    import torch  # noqa: F401  (imported first, as in a notebook or a PyTorch frontend)
sys.path.insert(0, {here!r})
from encoder import encoder_text, random_weights
import numba, semir
L, H, A, F, S = 6, 384, 12, 1536, 32
prog = semir.parse(encoder_text(L, H, A, F))
ins = random_weights(L, H, F, S)
out = {{}}
for s in ("sum_product", "max_product", "entropy"):
    k = semir.compile(prog, s, wrt=["x"])
    k(**ins)
    ts = []
    for _ in range(7):
        t = time.perf_counter(); k(**ins); ts.append(time.perf_counter() - t)
    out[s] = min(ts)
print(json.dumps({{"layer": numba.threading_layer(), **out}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", nargs="+", default=["omp", "workqueue"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--without-torch", action="store_true", help="only the runs without torch imported")
    args = ap.parse_args()
    print(f"{'layer':10s} {'torch':6s} {'sum_product ms':>15s} {'max_product ms':>15s} {'entropy ms':>11s}")
    for layer in args.layers:
        for torch in (False,) if args.without_torch else (False, True):
            env = {**{k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"},
                   "NUMBA_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads),
                   "OPENBLAS_NUM_THREADS": str(args.threads)}
            if layer != "default":  # "default": semir's choice, the variable unset
                env["NUMBA_THREADING_LAYER"] = layer
            p = subprocess.run([sys.executable, "-c", CHILD.format(torch=torch, here=str(HERE))], env=env,
                               capture_output=True, text=True)
            if p.returncode:
                print(f"{layer:10s} {str(torch):6s} failed: {p.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"{r['layer']:10s} {str(torch):6s} {1e3 * r['sum_product']:15.1f} {1e3 * r['max_product']:15.1f} "
                  f"{1e3 * r['entropy']:11.1f}")


if __name__ == "__main__":
    main()
