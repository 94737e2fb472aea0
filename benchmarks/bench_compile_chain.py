"""Cold compile time of a long scalar chain (issue 12): h_{i+1} = tanh(w·h_i), max_product, in a fresh
kernel cache. Fused elementwise groups are bounded (semir/passes/fuse.py), so this grows linearly.

    python benchmarks/bench_compile_chain.py 250 2000
"""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import os, sys, tempfile, time
os.environ["SEMIR_CACHE_DIR"] = tempfile.mkdtemp()
import numpy as np, semir
n = {n}
src = ["def f(x: f64, w: f64) -> f64 {{", "  h0 = x"] + [f"  h{{i + 1}} = tanh(w * h{{i}})" for i in range(n)]
t = time.perf_counter()
k = semir.compile(semir.parse("\\n".join(src + [f"  return h{{n}}", "}}"])), "max_product", wrt=["x"])
r = k(x=0.5, w=0.9)
print(f"{{n}} steps: parse + compile + first call, cold: {{time.perf_counter() - t:.1f}} s")
"""


def main() -> None:
    for n in [int(a) for a in sys.argv[1:]] or [250, 2000]:
        # a new process each: nothing compiled is shared between the runs
        subprocess.run([sys.executable, "-c", CHILD.format(n=n)], check=True)


if __name__ == "__main__":
    main()
