"""§5.1: a one-layer transformer on FirstTokenRepeatedOnce; which branch carries the top gradient path.

The paper's finding: the max-product path leaves the first token through the *query* branch, and the
other tokens, above all the repeat token, through the *key* branch.
"""

from __future__ import annotations

import numpy as np

from ..analysis.branch import BRANCHES, branch_records
from ..compiler import compile
from ..train import Adam, make_task, train
from ..train.models import TinyTransformer
from .common import Timer, legend_outside, pyplot, save, write

FULL = {"n": 10_000, "epochs": 40, "examples": 1000}
REDUCED = {"n": 4_000, "epochs": 25, "examples": 200}
CATEGORIES = ("first token", "other tokens", "repeat token")


def run(out, full: bool = False, seed: int = 0, progress: bool = True, semantics: str = "exact") -> dict:
    cfg = FULL if full else REDUCED
    with Timer() as t:
        task = make_task("FirstTokenRepeatedOnce", n=cfg["n"], length=10, vocab=20, seed=seed)
        tr, va = task.split(0.9)
        model = TinyTransformer(vocab=20, length=10, hidden=16, heads=2, layers=1, seed=seed)
        res = train(model.logits_program(), model.params, tr.X, tr.y, optimizer=Adam(3e-3), epochs=cfg["epochs"],
                    batch_size=64, seed=seed, val=(va.X, va.y), stop_at_accuracy=0.995, progress=progress)
        model.params = res.params
        kernel = compile(model.program(), "max_product", wrt=["layer0.attention.input"], semantics=semantics)
        rows = []
        for ex in range(min(cfg["examples"], len(va.y))):
            ids = va.X[ex]
            r = kernel(**model.inputs(ids, readout=[-1.0, 1.0]))
            for rec in branch_records(r, 1, model.tokens(ids)):
                t_ = rec["position"]
                cat = "first token" if t_ == 0 else (
                    "repeat token" if va.y[ex] == 1 and ids[t_] == ids[0] else "other tokens")
                rows.append({"example": ex, "label": int(va.y[ex]), "category": cat, **rec})
    summary = {"setting": "full" if full else "reduced", "config": cfg, "seed": seed, "semantics": semantics,
               "val_accuracy": res.final_val_accuracy, "epochs_trained": res.evals[-1]["epoch"] + 1,
               "seconds": t.seconds, "categories": {}}
    for cat in CATEGORIES:
        sel = [r for r in rows if r["category"] == cat]
        summary["categories"][cat] = {
            "tokens": len(sel),
            **{f"argmax_{b}": float(np.mean([r["argmax_branch"] == b for r in sel])) for b in BRANCHES},
            **{f"mean_value_{b}": float(np.mean([r[f"sum_{b}"] for r in sel])) for b in BRANCHES},
        }
    tag = "sec51" if semantics == "exact" else f"sec51_{semantics}"
    write(out, tag, summary, rows)
    _plot(summary, out / f"{tag}.png")
    return summary


def _plot(summary: dict, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    x = np.arange(len(CATEGORIES))
    for i, b in enumerate(BRANCHES):
        axes[0].bar(x + 0.2 * i - 0.3, [summary["categories"][c][f"argmax_{b}"] for c in CATEGORIES], 0.2, label=b)
        axes[1].bar(x + 0.2 * i - 0.3, [summary["categories"][c][f"mean_value_{b}"] for c in CATEGORIES], 0.2)
    for ax, title, ylabel in zip(axes, ("share of tokens whose top path takes the branch",
                                        "mean summed max-product value per branch"),
                                 ("fraction of tokens", "summed max-product value")):
        ax.set_xticks(x, CATEGORIES)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("token category")
        ax.set_ylabel(ylabel)
    legend_outside(axes[1], title="branch")
    fig.suptitle(f"FirstTokenRepeatedOnce, 1-layer transformer (val acc {summary['val_accuracy']:.3f}, "
                 f"{summary['semantics']} semantics)", fontsize=10)
    fig.tight_layout()
    save(fig, path)
