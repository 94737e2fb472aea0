"""§5.2 substitute and App. B.2: subject–verb agreement on MiniLM-L6, from template sentences.

Each sentence has a subject, 0-4 attractors (nouns of the other number, in prepositional phrases or
relative clauses) and the verb masked; all have the same length and the mask at the same position,
so one compiled kernel serves them all and entropy is compared at equal length:

    [CLS] the keys near the cabinet that the doctor likes really [MASK] ready . [SEP]

A singular/plural probe is trained with semir on MiniLM's final state at the mask. The quantity of
interest is the probe's logit difference (plural minus singular). Its max-product paths give the
branch (skip/query/key/value) at every layer for the subject, the attractors and all tokens (Fig. 4),
and its entropy semiring gives the entropy of every token's input representation (App. B.2).

The paper's findings: for the subject, the top path takes the skip connection in early layers and
self-attention (mostly keys) in the last layer; all tokens take the skip connection mostly; entropy
shows minimal correlation with the number of attractors once length is controlled.
"""

from __future__ import annotations

import numpy as np

from ..analysis.branch import BRANCHES, branch_records
from ..compiler import compile
from ..errors import SemirError
from ..train import Adam, train
from ..train.models import LinearProbe
from .common import Timer, pyplot, save, spearman, write

# (singular, plural) nouns, each a single WordPiece of the uncased vocabulary (checked at run time)
NOUNS = (("author", "authors"), ("pilot", "pilots"), ("surgeon", "surgeons"), ("farmer", "farmers"),
         ("manager", "managers"), ("customer", "customers"), ("officer", "officers"), ("teacher", "teachers"),
         ("senator", "senators"), ("guard", "guards"), ("dog", "dogs"), ("key", "keys"),
         ("cabinet", "cabinets"), ("table", "tables"), ("letter", "letters"), ("doctor", "doctors"),
         ("lawyer", "lawyers"), ("student", "students"), ("painter", "painters"), ("driver", "drivers"),
         ("actor", "actors"), ("singer", "singers"), ("worker", "workers"), ("friend", "friends"),
         ("neighbor", "neighbors"), ("child", "children"), ("king", "kings"), ("bird", "birds"),
         ("horse", "horses"), ("car", "cars"), ("house", "houses"), ("book", "books"), ("window", "windows"),
         ("door", "doors"), ("tree", "trees"), ("lamp", "lamps"), ("chair", "chairs"), ("picture", "pictures"),
         ("garden", "gardens"), ("machine", "machines"))
PREPOSITIONS = ("near", "behind", "beside", "with", "from", "for", "of")
RC_VERBS = (("likes", "like"), ("sees", "see"), ("knows", "know"), ("helps", "help"))  # agree with their noun
ENDINGS = ("ready", "happy", "here", "old", "tall", "young", "small", "late")
LENGTH = 24  # tokens with [CLS] and [SEP]; the longest template (4 relative clauses) has 23
MASK = LENGTH - 4  # ... [MASK] <ending> . [SEP]
FULL = {"probe_sentences": 2000, "per_count": 100, "epochs": 40}
REDUCED = {"probe_sentences": 800, "per_count": 6, "epochs": 40}
CATEGORIES = ("all tokens", "subject", "attractors")


def sentence(rng: np.random.Generator, attractors: int) -> dict:
    """One template sentence: words, label (1 = plural subject), and the word positions of each role."""
    plural = int(rng.integers(2))
    lemma = int(rng.integers(len(NOUNS)))
    words, roles = ["the", NOUNS[lemma][plural]], ["", "subject"]
    for _ in range(attractors):
        other = int(rng.choice([i for i in range(len(NOUNS)) if i != lemma]))
        noun = NOUNS[other][1 - plural]
        if rng.random() < 0.3:  # a relative clause whose own verb agrees with the attractor
            verb = RC_VERBS[int(rng.integers(len(RC_VERBS)))][1 - plural]
            words += ["that", "the", noun, verb]
            roles += ["", "", "attractor", ""]
        else:
            words += [str(rng.choice(PREPOSITIONS)), "the", noun]
            roles += ["", "", "attractor"]
    pad = MASK - 1 - len(words)  # noun-free filler puts the mask at the same position in every sentence
    words += ["really"] * pad + ["[MASK]", str(rng.choice(ENDINGS)), "."]
    roles += [""] * pad + ["mask", "", ""]
    return {"text": " ".join(words), "label": plural, "attractors": attractors,
            "subject": [1 + i for i, r in enumerate(roles) if r == "subject"],
            "attractor_positions": [1 + i for i, r in enumerate(roles) if r == "attractor"]}


def dataset(model, n: int, seed: int, per_count: bool = False) -> list[dict]:
    """``n`` sentences with attractor counts cycling 0..4 (``per_count``: ``n`` of each count)."""
    rng = np.random.default_rng(seed)
    counts = [k for k in range(5) for _ in range(n)] if per_count else [i % 5 for i in range(n)]
    out = []
    for k in counts:
        s = sentence(rng, k)
        s["ids"] = model.tokenize(s["text"])
        if len(s["ids"]) != LENGTH or int(s["ids"][MASK]) != model.tokenizer.token_to_id("[MASK]"):
            raise SemirError(f"template sentence does not tokenize to {LENGTH} single-piece words: {s['text']!r}")
        out.append(s)
    return out


def run(out, full: bool = False, seed: int = 0, progress: bool = True, model_path: str = "minilm",
        semantics: str = "exact") -> dict:
    from ..models import load

    cfg = FULL if full else REDUCED
    with Timer() as t:
        m = load(model_path)
        prog = m.program(position=MASK)
        forward = compile(prog, "sum_product", wrt=[])
        zero = np.zeros(m.hidden, np.float32)

        # the probe: final state at the mask -> singular / plural
        probe_data = dataset(m, cfg["probe_sentences"], seed)
        X = np.stack([forward(**m.inputs(s["ids"], readout=zero)).value("final") for s in probe_data])
        y = np.array([s["label"] for s in probe_data])
        split = int(0.8 * len(y))
        # the probe sees standardised features (MiniLM's are small around large offsets); on h itself its
        # logit difference is h · (w_pl - w_sg)/σ + const, so that vector is the readout
        mu, sd = X[:split].mean(0), X[:split].std(0) + 1e-6
        Z = ((X - mu) / sd).astype(np.float32)
        probe = LinearProbe(m.hidden, 2, seed=seed)
        res = train(probe.logits_program(), probe.params, Z[:split], y[:split], optimizer=Adam(1e-2),
                    epochs=cfg["epochs"], batch_size=64, seed=seed, val=(Z[split:], y[split:]), progress=progress)
        w = res.params["w"]
        readout = ((w[:, 1] - w[:, 0]) / sd).astype(np.float32)  # logit(plural) - logit(singular) ...
        offset = float(res.params["b"][1] - res.params["b"][0] - mu @ readout)  # ... = h · readout + offset

        # branch flow and entropy on fresh sentences, the same number per attractor count
        names = [f"layer{i}.attention.input" for i in range(m.layers)]
        best = compile(prog, "max_product", wrt=names, semantics=semantics)
        ent = compile(prog, "entropy", wrt=["embeddings"], semantics=semantics)
        rows, sentences = [], []
        for ex, s in enumerate(dataset(m, cfg["per_count"], seed + 1, per_count=True)):
            ins = m.inputs(s["ids"], readout=readout)
            r = best(**ins)
            diff = float(r.output) + offset
            for rec in branch_records(r, m.layers, m.tokens(s["ids"])):
                p = rec["position"]
                role = "subject" if p in s["subject"] else "attractor" if p in s["attractor_positions"] else ""
                rows.append({"sentence": ex, "attractors": s["attractors"], "role": role, **rec})
            e = ent(**ins)
            per_token = e.semiring.finalize(e.aggregate_state("embeddings", -1))
            sentences.append({"sentence": ex, "text": s["text"], "label": s["label"], "attractors": s["attractors"],
                              "logit_difference": diff, "correct": bool((diff > 0) == (s["label"] == 1)),
                              "entropy_mean": float(np.mean(per_token)),
                              "entropy_subject": float(per_token[s["subject"][0]])})

    summary = {"setting": "full" if full else "reduced", "config": cfg, "seed": seed, "length": LENGTH,
               "semantics": semantics,
               "probe_val_accuracy": res.final_val_accuracy, "seconds": t.seconds,
               "branches": _branch_table(rows, m.layers), "entropy": _entropy_table(sentences)}
    tag = "sva" if semantics == "exact" else f"sva_{semantics}"
    write(out, tag, summary, rows)
    write(out, f"{tag}_sentences", None, sentences)
    _plot(summary, m.layers, out, tag)
    return summary


def _branch_table(rows: list[dict], layers: int) -> dict:
    """Per category and layer: the fraction of tokens whose argmax unit's path takes each branch (``top_*``,
    the paper's rule), the mean share of units per branch, and the mean max-product value of the argmax unit."""
    table = {}
    for cat in CATEGORIES:
        sel = [r for r in rows if cat == "all tokens" or r["role"] == cat.rstrip("s")]
        table[cat] = []
        for layer in range(layers):
            rs = [r for r in sel if r["layer"] == layer]
            table[cat].append({"layer": layer, "tokens": len(rs),
                               **{f"top_{b}": float(np.mean([r["argmax_branch"] == b for r in rs])) for b in BRANCHES},
                               **{f"share_{b}": float(np.mean([r[f"share_{b}"] for r in rs])) for b in BRANCHES},
                               "mean_top_value": float(np.mean([r["argmax_value"] for r in rs]))})
    return table


def _entropy_table(sentences: list[dict]) -> dict:
    k = np.array([s["attractors"] for s in sentences])
    h = np.array([s["entropy_mean"] for s in sentences])
    by = {int(c): {"sentences": int(np.sum(k == c)), "entropy_mean": float(h[k == c].mean()),
                   "entropy_sd": float(h[k == c].std()),
                   "entropy_subject": float(np.mean([s["entropy_subject"] for s in sentences if s["attractors"] == c])),
                   "probe_accuracy": float(np.mean([s["correct"] for s in sentences if s["attractors"] == c]))}
          for c in sorted(set(k.tolist()))}
    return {"by_attractors": by, "spearman_attractors_entropy": spearman(k, h)}


def _plot(summary: dict, layers: int, out, tag: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, cat in zip(axes, CATEGORIES):
        tab = summary["branches"][cat]
        bottom = np.zeros(layers)
        for b in BRANCHES:
            v = np.array([r[f"top_{b}"] for r in tab])
            ax.bar(range(layers), v, bottom=bottom, label=b)
            bottom += v
        ax.set_title(cat, fontsize=10)
        ax.set_xlabel("layer")
        ax.set_ylabel("fraction of tokens")
        ax.set_xticks(range(layers))
    axes[0].set_ylabel("fraction of tokens (argmax unit's top path)", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="branch", fontsize=8, loc="upper center", ncol=len(BRANCHES),
               bbox_to_anchor=(0.4, 0.0))  # below the panels, outside every axes
    by = summary["entropy"]["by_attractors"]
    ks = sorted(by, key=int)
    axes[3].errorbar([int(k) for k in ks], [by[k]["entropy_mean"] for k in ks], yerr=[by[k]["entropy_sd"] for k in ks],
                     marker="o", capsize=3)
    axes[3].set_xlabel("attractors")
    axes[3].set_ylabel("mean token entropy (nats)")
    axes[3].set_title(f"entropy vs attractors ({LENGTH} tokens)", fontsize=10)
    fig.suptitle(f"subject-verb agreement on MiniLM-L6, {summary['semantics']} semantics", fontsize=10)
    fig.tight_layout()
    save(fig, out / f"{tag}.png")
