"""Peak memory of recovering one top path (issue 12): compile + max_product call + path, each shape in a
fresh process, on the BERT-shaped encoder with random weights (benchmarks/encoder.py).

    python benchmarks/bench_path_memory.py                    # MiniLM shape at 32 and 128 tokens, BERT-base at 128
    python benchmarks/bench_path_memory.py --shape 12,768,12,3072,128
    python benchmarks/bench_path_memory.py --pointers eager          # pointers kept in the sweep

Peak resident memory (ru_maxrss) is read after the call and again after the path, so the difference is what
the path added; then the top path from every other token is recovered, timed and measured too. A path needs
one edge weight per step; it must not build a matmul's or a layernorm's whole
Jacobian slot for it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import resource, sys, time, json
sys.path.insert(0, {here!r})
from encoder import encoder_text, random_weights
import semir
from semir import analysis
L, H, A, F, S = {shape}
prog = semir.parse(encoder_text(L, H, A, F))
ins = random_weights(L, H, F, S)
k = semir.compile(prog, "max_product", wrt=["x"], pointers={pointers!r})
r = k(**ins)
mb = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
after_call = mb()
t = time.perf_counter()
path = analysis.top_paths(r, "x", (0,))[0]
seconds = time.perf_counter() - t
after_path = mb()
t = time.perf_counter()
for i in range(1, S):  # the top path from every other token: the nodes they share are recovered once
    analysis.top_paths(r, "x", (i,))
print(json.dumps({{"shape": [L, H, A, F, S], "pointers": {pointers!r}, "peak_after_call_mb": after_call,
                  "peak_after_path_mb": after_path, "path_seconds": seconds, "steps": len(path),
                  "other_tokens_paths_seconds": time.perf_counter() - t, "peak_after_all_mb": mb()}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", action="append", help="layers,hidden,heads,ffn,tokens (repeatable)")
    ap.add_argument("--pointers", default="auto", choices=("auto", "eager", "lazy"))
    args = ap.parse_args()
    shapes = args.shape or ["6,384,12,1536,32", "6,384,12,1536,128", "12,768,12,3072,128"]
    for s in shapes:
        code = CHILD.format(here=str(HERE), shape=tuple(int(v) for v in s.split(",")), pointers=args.pointers)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        print(json.dumps(json.loads(out.stdout.strip().splitlines()[-1])))


if __name__ == "__main__":
    main()
