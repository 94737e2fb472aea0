"""App. B.1 (Fig. 6b): gradient-graph entropy of MLPs of growing hidden size on the four-feature task.

The paper's finding: the entropy of the input features rises with the hidden size, and is higher for
the relevant feature (the label is ``x0 > 0.5``) than for the three irrelevant ones.
"""

from __future__ import annotations

import numpy as np

from ..compiler import compile
from ..train import Adam, four_features, train
from ..train.models import MLP
from .common import Timer, legend_outside, pyplot, save, write

FULL = {"hidden": [4, 8, 16, 32, 64, 128], "n": 4000, "epochs": 40, "examples": 500}
REDUCED = {"hidden": [4, 16, 64], "n": 2000, "epochs": 15, "examples": 100}


def run(out, full: bool = False, seed: int = 0, progress: bool = True) -> dict:
    cfg = FULL if full else REDUCED
    task = four_features(cfg["n"], seed=seed)
    tr, va = task.split(0.8)
    rows = []
    with Timer() as t:
        for H in cfg["hidden"]:
            model = MLP(4, H, seed=seed)
            res = train(model.logits_program(), model.params, tr.X, tr.y, optimizer=Adam(1e-2), epochs=cfg["epochs"],
                        batch_size=64, seed=seed, val=(va.X, va.y), progress=progress)
            k = compile(model.program(), "entropy", wrt=["x"])
            ent = np.array([k(**res.params, x=va.X[i], readout=np.array([-1.0, 1.0], np.float32))["x"]
                            for i in range(min(cfg["examples"], len(va.y)))])
            rows.append({"hidden": H, "val_accuracy": res.final_val_accuracy,
                         "entropy_relevant": float(ent[:, 0].mean()), "entropy_irrelevant": float(ent[:, 1:].mean()),
                         "entropy_all": float(ent.mean())})
    summary = {"setting": "full" if full else "reduced", "config": cfg, "seed": seed, "seconds": t.seconds,
               "rows": rows}
    write(out, "mlp_hidden", summary, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    hs = [r["hidden"] for r in rows]
    for key, label in (("entropy_relevant", "relevant feature (x0)"), ("entropy_irrelevant", "irrelevant (x1..x3)")):
        ax.plot(hs, [r[key] for r in rows], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden size")
    ax.set_ylabel("entropy of paths from the feature (nats)")
    legend_outside(ax)
    ax.set_title("MLP on the four-feature task", fontsize=10)
    fig.tight_layout()
    save(fig, out / "mlp_hidden.png")
    return summary
