"""Branch flow at every attention input: which of skip / query / key / value carries the best path (paper §5)."""

from __future__ import annotations

import numpy as np

from ..compiler import compile

BRANCHES = ("skip", "query", "key", "value")


def _branch(consumer: str, layer: int) -> str:
    pre = f"layer{layer}.attention."
    if consumer == pre + "skip":
        return "skip"
    for b in ("query", "key", "value"):
        if consumer == f"{pre}{b}.proj":
            return b
    return "none" if not consumer else "other"


def branch_flow(model, ids, readout, position: int = 0, backend: str | None = None, objective=None) -> list[dict]:
    """Per layer and token: the branch of the max-product path, by two rules.

    ``argmax_branch``: the paper's rule, the branch taken by the best path from the token's hidden unit
    with the largest max-product value. ``share_<branch>``: the fraction of the token's hidden units whose
    best path takes that branch; ``sum_<branch>``: the sum of their max-product values. The output is
    ``readout · h_final[position]``, or the ``objective`` (:mod:`.objectives`) where given.
    """
    if objective is not None:
        prog, ins = objective.program(model, position), objective.single_inputs(model, ids)
    else:
        prog, ins = model.program(position=position), model.inputs(ids, readout=readout)
    names = [f"layer{i}.attention.input" for i in range(model.layers)]
    r = compile(prog, "max_product", backend=backend, wrt=names)(**ins)
    return branch_records(r, model.layers, model.tokens(ids))


def branch_records(r, layers: int, tokens: list[str]) -> list[dict]:
    """The records of :func:`branch_flow` from a max_product result with states at every attention input."""
    names = [f"layer{i}.attention.input" for i in range(layers)]
    records = []
    for i, name in enumerate(names):
        value = r[name]
        # a few distinct consumers per node: name each once, then index (a call per element cost 0.7 s a batch)
        names_, inverse = np.unique(r.next_nodes(name), return_inverse=True)
        branch = np.array([_branch(c, i) for c in names_], dtype=object)[inverse.reshape(value.shape)]
        for t in range(value.shape[0]):
            d = int(np.argmax(value[t]))
            rec = {"layer": i, "position": t, "token": tokens[t], "argmax_unit": d,
                   "argmax_branch": branch[t, d], "argmax_value": float(value[t, d])}
            for b in BRANCHES:
                sel = branch[t] == b
                rec[f"share_{b}"] = float(sel.mean())
                rec[f"sum_{b}"] = float(value[t][sel].sum())
            records.append(rec)
    return records


def plot_branch_flow(records: list[dict], path, sentence: str = "", objective: str = "") -> None:
    """A figure of branch shares per layer (matplotlib), titled with the sentence and the objective."""
    from ..figures import legend_outside, pyplot, save, short

    plt = pyplot()
    layers = sorted({r["layer"] for r in records})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bottom = np.zeros(len(layers))
    for b in BRANCHES:
        share = np.array([np.mean([r[f"share_{b}"] for r in records if r["layer"] == layer]) for layer in layers])
        ax.bar(layers, share, bottom=bottom, label=b)
        bottom += share
    ax.set_xlabel("layer")
    ax.set_ylabel("share of hidden units (mean over tokens)")
    ax.set_xticks(layers)
    ax.set_ylim(0, 1)
    ax.set_title(f"branch of each unit's max-product path\n{short(sentence, 70)}\nobjective: {short(objective, 70)}",
                 fontsize=8)
    legend_outside(ax, title="branch")
    save(fig, path)
