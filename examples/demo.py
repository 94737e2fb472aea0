"""semir's flagship demo: what flows where in a gradient, exactly.

1. The paper's Fig. 1 function in every semiring, with its recovered paths.
2. A self-attention block with a residual: per-token gradient, entropy of
   gradient flow (aggregated over hidden units, Eq. 3), the top path from a
   token to the output, and through which branch (skip, query, key, value)
   the best path leaves the branching point.

Run: python examples/demo.py
"""

from pathlib import Path

import numpy as np

import semir

HERE = Path(__file__).parent
BACKEND = "numba"  # generated, cached kernels; "reference" is the NumPy executable specification


def fig1() -> None:
    prog = semir.load(HERE / "paper_fig1.semir")
    print("== f(x, y) = e^x + (x - y) y at (1, 2)")
    for s in ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:2"]:
        r = semir.compile(prog, s, backend=BACKEND)(x=1.0, y=2.0)
        print(f"  {s:12s} x: {np.array2string(np.asarray(r['x']), precision=6):>24s}   "
              f"y: {np.array2string(np.asarray(r['y']), precision=6):>24s}")
    r = semir.compile(prog, "max_product", backend=BACKEND)(x=1.0, y=2.0)
    print("  top path from y (hi):", " -> ".join(f"{s.node}" for s in r.path("y")), f"= {r.path('y').value:g}")
    print("  lowest path from y (lo):", " -> ".join(f"{s.node}" for s in r.path("y", component="lo")),
          f"= {r.path('y', component='lo').value:g}")


def attention() -> None:
    prog = semir.load(HERE / "attention.semir")
    rng = np.random.default_rng(0)
    S, D = 6, 16
    ins = {"h": rng.normal(size=(S, D)), "u": rng.normal(size=D)}
    ins.update({w: rng.normal(size=(D, D)) / np.sqrt(D) for w in ("wq", "wk", "wv")})
    ins = {k: v.astype(np.float32) for k, v in ins.items()}
    print(f"\n== attention block with residual, {S} tokens, hidden {D}; output = u · out[0]")
    wrt = ["h", "attn.q", "attn.k", "attn.v"]
    grad = semir.compile(prog, "sum_product", backend=BACKEND, wrt=wrt)(**ins)
    ent = semir.compile(prog, "entropy", backend=BACKEND, wrt=wrt)(**ins)
    best = semir.compile(prog, "max_product", backend=BACKEND, wrt=wrt)(**ins)
    print("  token  |grad|     entropy   best path product")
    for t in range(S):
        print(f"  {t:5d}  {np.linalg.norm(grad['h'][t]):8.4f}  {float(ent.aggregate('h', -1)[t]):8.4f}"
              f"   {float(best.aggregate('h', -1)[t]):+.4g}")
    unit = int(np.argmax(best["h"][1]))
    path = best.path("h", (1, unit))
    print(f"  top path from token 1 (unit {unit}), value {path.value:+.4g}:")
    print("   ", " -> ".join(f"{s.node}{list(s.index)}" for s in path))
    branch = path[1].node
    names = {"attn.q": "query", "attn.k": "key", "attn.v": "value", "out": "skip"}
    print(f"  it leaves the branching point through the {names.get(branch, branch)} branch")


if __name__ == "__main__":
    fig1()
    attention()
