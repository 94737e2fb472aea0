"""Benchmarks of the CUDA backend (issue 5); needs a GPU. Ratios against anchors measured in the same run.

    python benchmarks/bench_cuda.py                    # MiniLM-shaped batch and max-times at 4096^3
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda.py --smoke   # tiny shapes: checks the script runs

minilm: a MiniLM-shaped encoder (6 layers, hidden 384, 12 heads, FFN 1536) over 64 sentences of 32 tokens,
sum_product / max_product with pointers / entropy on the GPU vs the CPU (numba) backend and vs torch
autograd on the same GPU. maxtimes: the tiled max-times kernel with argmax pointers at n^3 in TOPS vs
cuBLAS SGEMM (torch.matmul). Results go to benchmarks/results/cuda.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_numba import RESULTS, best, report, torch_encoder  # noqa: E402
from encoder import encoder_text, random_weights  # noqa: E402

import semir  # noqa: E402


def minilm(smoke: bool) -> None:
    L, H, A, F, S, n = (1, 16, 2, 32, 4, 2) if smoke else (6, 384, 12, 1536, 32, 64)
    prog = semir.parse(encoder_text(L, H, A, F))
    batch = [random_weights(L, H, F, S, seed=i) for i in range(n)]
    times = {}
    for s in ("sum_product", "max_product", "entropy"):
        for backend in ("cuda", "numba"):
            k = semir.compile(prog, s, backend=backend, wrt=["x"])
            sents = batch if backend == "cuda" else batch[: max(1, n // 8)]  # CPU: extrapolate from 1/8
            t = best(lambda k=k, sents=sents: [k(**ins) for ins in sents], repeat=1 if smoke else 3)
            times[(s, backend)] = t * n / len(sents)
            report("minilm", f"{s} {backend}, {n} sentences s", times[(s, backend)], "s")
        report("minilm", f"{s} GPU speed-up over the CPU backend (target >= 20)",
               times[(s, "numba")] / times[(s, "cuda")], "x")
    try:
        import torch
    except ImportError:
        report("minilm", "torch", "not installed: no torch ratio")
        return
    if not torch.cuda.is_available():
        report("minilm", "torch", "no CUDA device for torch: no torch ratio")
        return
    t_torch = best(lambda: [torch_encoder(ins, L, H, A, F, device="cuda") for ins in batch], repeat=3)
    report("minilm", f"torch autograd on the GPU, {n} sentences s", t_torch, "s")
    report("minilm", "sum_product / torch (target <= 2)", times[("sum_product", "cuda")] / t_torch, "x")


def maxtimes(smoke: bool) -> None:
    from numba import cuda

    n = 32 if smoke else 4096
    k = semir.compile(semir.parse("def f(x: f32[N, N], w: f32[N, N]) -> f32[N, N] {\n  return x @ w\n}"),
                      "max_product", backend="cuda", wrt=["x"])
    rng = np.random.default_rng(0)
    w = cuda.to_device(rng.normal(size=n * n).astype(np.float32))
    mp = semir.semirings.get("max_product")
    U = [cuda.to_device(a) for a in mp.zeros((n * n,), np.float32).values()]
    V = [cuda.to_device(a) for a in mp.ones((n * n,), np.float32).values()]
    off, grp = cuda.to_device(np.zeros(1, np.int64)), cuda.to_device(np.array([0, 1], np.int64))
    from semir.backends.cuda.launch import TILE

    grid = (-(-n // TILE), -(-n // TILE), 1)

    def run():
        k.sr.matmul_bwd_a[grid, (TILE, TILE)](*U, *V, w, off, off, off, grp, off, n, n, n, 0)
        cuda.synchronize()

    t = best(run, repeat=1 if smoke else 3)
    report("maxtimes", f"n={n} max-times (hi, lo, 2 pointers) TOPS", 2 * n ** 3 / t / 1e12)
    try:
        import torch

        if torch.cuda.is_available():
            a = torch.randn(n, n, device="cuda")
            tb = best(lambda: (a @ a, torch.cuda.synchronize()), repeat=5)
            report("maxtimes", f"n={n} cuBLAS SGEMM TFLOPS", 2 * n ** 3 / tb / 1e12)
            report("maxtimes", "max-times / SGEMM throughput", tb / t, "x")
    except ImportError:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes (for the simulator)")
    args = ap.parse_args()
    minilm(args.smoke)
    maxtimes(args.smoke)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "cuda.json").write_text(json.dumps(RESULTS, indent=2))


if __name__ == "__main__":
    main()
