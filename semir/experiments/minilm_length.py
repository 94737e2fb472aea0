"""App. B.1 (Fig. 6a): entropy of MiniLM-L6's gradient graph as the sentence grows.

Each text is cut to its first L tokens ([CLS] ... [SEP]); the quantity of interest is one component of
the mean-pooled sentence embedding (a fixed random unit readout). The entropy of every token's input
representation (all paths from its 384 embedding units, Eq. 3) is averaged over the sentence. The
paper's finding: more tokens, more paths, higher entropy.
"""

from __future__ import annotations

import numpy as np

from ..compiler import compile
from ..errors import SemirError
from ..progress import Progress
from .common import Timer, legend_outside, pyplot, save, spearman, write

TEXTS = (
    "the old lighthouse keeper climbed the narrow stairs every evening to light the lamp , and from the top "
    "he could see the fishing boats returning to the harbour while the gulls circled above the grey water and "
    "the wind carried the smell of salt and rain across the small town below , where the bakers were already "
    "preparing bread for the morning market",
    "after the meeting ended , the committee members walked slowly back to their offices , discussing the "
    "budget , the new schedule and the complaints that had arrived from several departments during the past "
    "month , although nobody seemed sure what the director would decide next week or whether the plan would "
    "survive another round of difficult questions from the board and from the staff",
    "in the spring the river rises quickly , flooding the low fields near the village , so the farmers move "
    "their animals to the hills and wait for the water to fall before they plant the wheat and barley that "
    "will feed their families through the long winter , when snow covers the roads and the markets in the "
    "valley close for months",
    "the children built a small wooden boat in the garden behind the school , painted it bright blue , and "
    "carried it down to the pond on saturday morning , where it floated for almost an hour before the "
    "wind pushed it into the reeds on the far side , and two of them had to wade in up to their knees to "
    "bring it back",
    "she opened the letter carefully , read the first few lines twice , and then sat down at the kitchen "
    "table , because the news from her brother in the city was not what she had expected after so many "
    "years of silence between them , and she wondered for a long time whether she should answer at all or "
    "simply wait",
)
FULL = {"lengths": list(range(4, 65, 4)), "texts": len(TEXTS)}
REDUCED = {"lengths": [4, 8, 16, 32], "texts": 2}


def run(out, full: bool = False, seed: int = 0, progress: bool = True, model_path: str = "minilm") -> dict:
    from ..models import load

    cfg = FULL if full else REDUCED
    with Timer() as t:
        m = load(model_path)
        kernel = compile(m.program(pool="mean"), "entropy", wrt=["embeddings"])
        u = np.random.default_rng(seed).normal(size=m.hidden)
        u = (u / np.linalg.norm(u)).astype(np.float32)
        sep = m.tokenizer.token_to_id("[SEP]")
        rows = []
        bar = Progress(cfg["texts"] * len(cfg["lengths"]), "sentences", enabled=progress)
        for ti, text in enumerate(TEXTS[:cfg["texts"]]):
            ids = m.tokenize(text)
            if len(ids) < max(cfg["lengths"]):
                raise SemirError(f"text {ti} has {len(ids)} tokens, fewer than {max(cfg['lengths'])}")
            for L in cfg["lengths"]:
                cut = np.append(ids[:L - 1], sep)
                r = kernel(**m.inputs(cut, readout=u))
                per_token = r.semiring.finalize(r.aggregate_state("embeddings", -1))
                rows.append({"text": ti, "tokens": L, "entropy_mean": float(np.mean(per_token)),
                             "entropy_first": float(per_token[1]), "log_z_mean":
                             float(np.mean(r.aggregate_state("embeddings", -1)["logz"]))})
                bar.update(1)
        bar.close()
    lengths = cfg["lengths"]
    by = {L: float(np.mean([r["entropy_mean"] for r in rows if r["tokens"] == L])) for L in lengths}
    summary = {"setting": "full" if full else "reduced", "config": cfg, "seed": seed, "seconds": t.seconds,
               "entropy_by_length": by,
               "spearman_length_entropy": spearman([r["tokens"] for r in rows], [r["entropy_mean"] for r in rows])}
    write(out, "minilm_length", summary, rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for ti in sorted({r["text"] for r in rows}):
        sel = [r for r in rows if r["text"] == ti]
        ax.plot([r["tokens"] for r in sel], [r["entropy_mean"] for r in sel], marker=".", alpha=0.5, label=f"text {ti}")
    ax.plot(lengths, [by[L] for L in lengths], color="black", marker="o", label="mean")
    ax.set_xlabel("tokens")
    ax.set_ylabel("mean token entropy (nats)")
    ax.set_title("MiniLM-L6: entropy vs sentence length", fontsize=10)
    legend_outside(ax, fontsize=7)
    fig.tight_layout()
    save(fig, out / "minilm_length.png")
    return summary
