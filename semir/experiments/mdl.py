"""§5.3 (Fig. 5): gradient-graph entropy against task difficulty measured by MDL, on the synthetic tasks.

For every task, a 2-layer transformer (hidden 64, 4 heads, 36 output classes, as in the paper) gives
* the prequential (online) code length of the training labels (Voita & Titov, 2020): the first block
  sent with a uniform code over the task's classes, every later block with the predictions of a fresh
  model trained on all blocks before it; the sum in bits is the MDL;
* after training on all of it, the entropy (nats) of all paths from the input embeddings to the logit
  of the example's label, averaged over held-out examples, under exact semantics and under the paper
  engine's (``semantics="brunoflow"``: softmax and layernorm composed as brunoflow composes them, which
  adds paths).
Runs below 90% validation accuracy are kept in the numbers but left out of the correlation, as in the
paper. The paper's finding: no positive relationship (a negative one among the binary tasks).
"""

from __future__ import annotations

import math

import numpy as np

from ..compiler import compile
from ..train import Adam, make_task, predict, train
from ..train.models import TinyTransformer
from .common import Timer, pyplot, save, spearman, write

TASKS = (("Contains1", {}), ("AdjacentDuplicate", {}), ("FirstTokenRepeatedImmediately", {}),
         ("FirstTokenRepeatedLast", {}), ("FirstTokenRepeatedOnce", {}), ("ContainsTokenSet", {"tokens": (1, 2)}),
         ("ContainsTokenSet", {"tokens": (1, 2, 3)}), ("BinCountOnes", {"classes": 2}),
         ("BinCountOnes", {"classes": 5}), ("BinCountOnes", {"classes": 10}))
FULL = {"tasks": [i for i in range(len(TASKS))], "n": 2500, "blocks": [1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1],
        "epochs": 20, "examples": 100}
REDUCED = {"tasks": [0, 8], "n": 800, "blocks": [0.1, 0.3, 1.0], "epochs": 8, "examples": 20}
CLASSES, LENGTH, VOCAB = 36, 10, 20


def _model(seed: int) -> TinyTransformer:
    return TinyTransformer(vocab=VOCAB, length=LENGTH, classes=CLASSES, hidden=64, heads=4, layers=2, seed=seed)


def _fit(X, y, epochs: int, seed: int, val=None):
    m = _model(seed)
    return m, train(m.logits_program(), m.params, X, y, optimizer=Adam(3e-3), epochs=epochs, batch_size=32,
                    seed=seed, val=val, progress=False)


def prequential_bits(X, y, classes: int, blocks: list[float], epochs: int, seed: int) -> float:
    """Code length (bits) of the labels ``y`` sent block by block (block ends at fractions ``blocks``)."""
    ends = [max(1, int(round(f * len(y)))) for f in blocks]
    bits = ends[0] * math.log2(classes)
    for start, end in zip(ends, ends[1:]):
        m, res = _fit(X[:start], y[:start], epochs, seed)
        logits = predict(m.logits_program(), res.params, X[start:end]).astype(np.float64)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        bits += float(-logp[np.arange(end - start), y[start:end]].sum() / math.log(2))
    return bits


def run(out, full: bool = False, seed: int = 0, progress: bool = True) -> dict:
    from ..progress import Progress

    cfg = FULL if full else REDUCED
    rows = []
    with Timer() as t:
        bar = Progress(len(cfg["tasks"]), "tasks", enabled=progress)
        kernels = None
        for ti in cfg["tasks"]:
            name, params = TASKS[ti]
            task = make_task(name, n=cfg["n"], length=LENGTH, vocab=VOCAB, seed=seed, **params)
            tr, va = task.split(0.8)
            mdl = prequential_bits(tr.X, tr.y, task.num_classes, cfg["blocks"], cfg["epochs"], seed)
            m, res = _fit(tr.X, tr.y, cfg["epochs"], seed, val=(va.X, va.y))
            kernels = kernels or {sem: compile(m.program(), "entropy", wrt=["embeddings"], semantics=sem)
                                  for sem in ("exact", "brunoflow")}
            ent = {sem: [] for sem in kernels}
            for i in range(min(cfg["examples"], len(va.y))):
                ins = m.inputs(va.X[i], readout=np.eye(CLASSES, dtype=np.float32)[va.y[i]])
                for sem, k in kernels.items():
                    r = k(**ins)
                    ent[sem].append(float(r.semiring.finalize(r.aggregate_state("embeddings"))))
            label = name + "".join(f" {k}={v}" for k, v in params.items())
            rows.append({"task": label, "classes": task.num_classes, "mdl_bits": mdl,
                         "uniform_bits": len(tr.y) * math.log2(task.num_classes),
                         "val_accuracy": res.final_val_accuracy, "entropy": float(np.mean(ent["exact"])),
                         "entropy_brunoflow": float(np.mean(ent["brunoflow"]))})
            bar.update(1, task=label)
        bar.close()
    kept = [r for r in rows if r["val_accuracy"] > 0.9]
    summary = {"setting": "full" if full else "reduced", "config": cfg, "seed": seed, "seconds": t.seconds,
               "rows": rows, "kept": len(kept),
               **{f"spearman_mdl_{key}": spearman([r["mdl_bits"] for r in kept], [r[key] for r in kept])
                  if len(kept) > 2 else None for key in ("entropy", "entropy_brunoflow")}}
    write(out, "mdl", summary, rows)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "entropy", "exact semantics"), (axes[1], "entropy_brunoflow", "paper semantics")):
        xs, ys = [r["mdl_bits"] for r in rows], [r[key] for r in rows]
        mid_x, mid_y = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        for r in rows:
            marker = "*" if r["task"].startswith("BinCountOnes") else "o"
            ax.scatter(r["mdl_bits"], r[key], marker=marker, s=60, alpha=1.0 if r["val_accuracy"] > 0.9 else 0.3,
                       c=[[0.2, 0.3, 0.3 + 0.7 * min(r["classes"], 10) / 10]])
            # each label points inward, towards the middle of the data, so that none runs off the axes
            right, top = r["mdl_bits"] > mid_x, r[key] > mid_y
            ax.annotate(r["task"].replace("FirstTokenRepeated", "FTR").replace("ContainsTokenSet", "CTS"),
                        (r["mdl_bits"], r[key]), fontsize=6, textcoords="offset points",
                        xytext=(-4 if right else 4, -4 if top else 4), ha="right" if right else "left",
                        va="top" if top else "bottom")
        ax.set_xlabel("MDL (bits, prequential)")
        ax.set_ylabel("entropy of paths from the input (nats)")
        ax.set_title(f"entropy vs MDL, {title} (faded: val acc ≤ 90%)", fontsize=9)
        ax.margins(x=0.08, y=0.12)
    fig.tight_layout()
    save(fig, out / "mdl.png")
    return summary
