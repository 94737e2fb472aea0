"""A self-contained HTML report of gradient flow, for one analysed sentence or a whole data-set run.

``report(source)`` reads what ``semir analyze --out DIR`` wrote (``analysis.json`` for sentences given on
the command line, or the Parquet tables of a ``--dataset`` run) and draws it with plotly:

* the data set: the branch of each token's best path per layer with 95% intervals, and the entropy of
  gradient flow by position (± one standard error);
* per sentence, behind one sentence picker: the tokens coloured by gradient norm and by entropy, the branch
  (skip / query / key / value) of each token's best path at every layer as a heatmap and as a flow across
  layers (a Sankey diagram), and the top paths, one column per layer, edges that several paths share drawn
  once.

The page embeds plotly.js, so it opens offline, with no server. Every figure is titled with the model, the
objective, the semantics and the date of the run.
"""

from __future__ import annotations

import datetime
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, SemirError
from .dataset import BRANCH_STATS, summarize

BRANCHES = tuple(b.removeprefix("share_") for b in BRANCH_STATS)
CATEGORIES = (*BRANCHES, "other")  # the branch heatmap's colours: a best path may leave by none of the four
COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#9d9d9d")
TRACES_PER_SENTENCE = 7  # gradient norm, entropy, branch heatmap, path edges, edge labels, path nodes, Sankey


@dataclass
class Sentence:
    """One sentence's statistics, as the report draws them."""

    id: str
    text: str
    tokens: list[str]
    grad_norm: np.ndarray  # [tokens]
    entropy: np.ndarray  # [tokens], nats
    branch: list[list[str]]  # [layer][token]: the branch of the best path from the token's best unit
    shares: np.ndarray  # [layer, token, 4]: fraction of the token's units whose best path takes each branch
    argmax_value: np.ndarray  # [layer, token]
    paths: list[dict] = field(default_factory=list)  # {"token", "value", "layers": Path.layers()}


@dataclass
class Data:
    meta: dict  # model, objective, semantics, date
    sentences: list[Sentence]
    rows: list[dict]  # the tidy token rows, for the data-set summary
    total: int  # sentences in the run (the picker may show fewer)


# -- reading results ------------------------------------------------------------------------------------------

def load(source: str | Path, max_sentences: int = 50) -> Data:
    """The statistics under ``source``: a data-set run's directory (``run.json`` and Parquet tables) or what
    ``semir analyze --out`` wrote for sentences (``analysis.json``, or the directory holding it)."""
    p = Path(source)
    if p.is_dir() and (p / "run.json").exists():
        return _from_dataset(p, max_sentences)
    if p.is_dir():
        p = p / "analysis.json"
    if not p.exists():
        raise InputError(f"{source}: expected the --out directory of 'semir analyze' (analysis.json, or run.json "
                         "and the Parquet tables of a --dataset run)")
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: cannot read it ({e})") from None
    if not isinstance(doc, dict) or "sentences" not in doc:
        raise InputError(f"{p}: not an analysis written by this version of semir (rerun 'semir analyze --out')")
    try:
        sentences = [_from_doc(d) for d in doc["sentences"]]
        rows = [r for d in doc["sentences"] for r in _rows(d)]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"{p}: a sentence record is incomplete ({type(e).__name__}: {e}); rerun "
                         "'semir analyze --out'") from None
    meta = {k: doc.get(k) for k in ("model", "objective", "semantics", "date")}
    return Data(meta, sentences[:max_sentences], rows, len(sentences))


def _from_doc(d: dict) -> Sentence:
    layers = 1 + max((r["layer"] for r in d["branch_flow"]), default=-1)
    t = len(d["tokens"])
    branch = [["other"] * t for _ in range(layers)]
    shares = np.zeros((layers, t, len(BRANCHES)))
    value = np.zeros((layers, t))
    for r in d["branch_flow"]:
        branch[r["layer"]][r["position"]] = r["argmax_branch"]
        shares[r["layer"], r["position"]] = [r[s] for s in BRANCH_STATS]
        value[r["layer"], r["position"]] = r["argmax_value"]
    stats = sorted(d["token_stats"], key=lambda r: r["position"])
    return Sentence(str(d.get("id", "0")), d["sentence"], d["tokens"], np.array([r["grad_norm"] for r in stats]),
                    np.array([r["entropy"] for r in stats]), branch, shares, value, d.get("top_paths", []))


def _rows(d: dict) -> list[dict]:
    """A sentence of analysis.json as the rows of a data-set run's token table (what :func:`summarize` reads)."""
    rows = [{"position": r["position"], "layer": None, "statistic": "entropy", "value": r["entropy"], "label": None}
            for r in d["token_stats"]]
    rows += [{"position": r["position"], "layer": r["layer"], "statistic": "argmax_value",
              "value": r["argmax_value"], "label": r["argmax_branch"]} for r in d["branch_flow"]]
    return rows


def _from_dataset(d: Path, max_sentences: int) -> Data:
    from .dataset import read_results

    try:
        run = json.loads((d / "run.json").read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{d / 'run.json'}: cannot read it ({e})") from None
    tokens, sents = read_results(d)
    if "path_layers" not in sents.column_names:
        raise InputError(f"{d}: written by an older semir (no path_layers); rerun 'semir analyze --dataset' into a "
                         "new --out")
    rows = tokens.to_pylist()
    by_id: dict[str, list[dict]] = {}
    for r in rows:
        by_id.setdefault(r["sentence_id"], []).append(r)
    out = []
    for s in sents.to_pylist()[:max_sentences]:
        mine = by_id.get(s["sentence_id"], [])
        t = s["tokens"]
        layers = 1 + max((r["layer"] for r in mine if r["layer"] is not None), default=-1)
        words = [""] * t
        per = {"grad_norm": np.full(t, np.nan), "entropy": np.full(t, np.nan)}
        branch = [["other"] * t for _ in range(layers)]
        shares = np.zeros((layers, t, len(BRANCHES)))
        value = np.zeros((layers, t))
        for r in mine:
            p, layer = r["position"], r["layer"]
            words[p] = r["token"]
            if layer is None and r["statistic"] in per:
                per[r["statistic"]][p] = r["value"]
            elif r["statistic"] == "argmax_value":
                branch[layer][p], value[layer, p] = r["label"], r["value"]
            elif r["statistic"] in BRANCH_STATS:
                shares[layer, p, BRANCH_STATS.index(r["statistic"])] = r["value"]
        paths = [{"token": s["path_token"], "value": s["path_value"], "layers": json.loads(s["path_layers"])}]
        out.append(Sentence(s["sentence_id"], s["text"], words, per["grad_norm"], per["entropy"], branch, shares,
                            value, paths))
    settings = run.get("settings", {})
    meta = {"model": settings.get("model"), "objective": run.get("objective"),
            "semantics": run.get("semantics", "exact"), "date": run.get("date")}
    return Data(meta, out, rows, int(run.get("sentences", len(out))))


# -- figures --------------------------------------------------------------------------------------------------

def _go():
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise SemirError("the report draws with plotly: pip install 'semir[report]'") from None
    return go, make_subplots


def _title(data: Data, what: str) -> str:
    m = data.meta
    objective = m.get("objective") or "objective not recorded"
    objective = objective if len(objective) <= 110 else objective[:107] + "..."
    return (f"{what}<br><sup>{html.escape(str(m.get('model')))} · objective: {html.escape(objective)} · "
            f"{m.get('semantics') or 'exact'} semantics · {m.get('date') or 'date not recorded'}</sup>")


def summary_figure(data: Data):
    """Across the data set: the branch of each token's best path per layer (95% Wilson intervals), and the
    mean token entropy by position (± one standard error)."""
    go, make_subplots = _go()
    stats = summarize(data.rows)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "branch of each token's best path (95% interval)", "entropy of gradient flow by position (± 1 s.e.)"))
    layers = [r["layer"] for r in stats["branches"]]
    for b, colour in zip(BRANCHES, COLOURS):
        mid = np.array([r[b][0] for r in stats["branches"]])
        lo = np.array([r[b][1] for r in stats["branches"]])
        hi = np.array([r[b][2] for r in stats["branches"]])
        fig.add_trace(go.Bar(x=layers, y=mid, name=b, marker_color=colour,
                             error_y={"type": "data", "array": (hi - mid).clip(0), "arrayminus": (mid - lo).clip(0)},
                             hovertemplate=f"layer %{{x}}: {b} %{{y:.3f}}<extra></extra>"), row=1, col=1)
    pos = stats["entropy_by_position"]
    fig.add_trace(go.Scatter(x=[p["position"] for p in pos], y=[p["mean"] for p in pos], mode="lines+markers",
                             name="mean entropy", showlegend=False, marker_color="#333",
                             error_y={"type": "data", "array": [p["se"] for p in pos]},
                             customdata=[p["tokens"] for p in pos],
                             hovertemplate="position %{x}: %{y:.3f} nats (%{customdata} tokens)<extra></extra>"),
                  row=1, col=2)
    fig.update_xaxes(title_text="layer", dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="fraction of tokens", range=[0, 1.05], row=1, col=1)
    fig.update_xaxes(title_text="token position", row=1, col=2)
    fig.update_yaxes(title_text="entropy (nats)", row=1, col=2)
    n = data.total
    fig.update_layout(title_text=_title(data, f"{n} sentence{'s' * (n != 1)}, {stats['tokens']} tokens: mean "
                                              f"entropy {stats['entropy_mean']:.3f} nats"),
                      barmode="group", height=430, margin={"t": 110}, legend={"title": {"text": "branch"}})
    return fig


def _columns(paths: list[dict]) -> list[str]:
    cols = ["start"]
    for p in paths:
        for h in p["layers"][1:]:
            if h["segment"] not in cols:
                cols.append(h["segment"])
    return cols


def _path_traces(go, s: Sentence) -> list:
    """The top paths as three traces: edges (drawn once however many paths share them), a hover point at the
    middle of each edge with its factor and the paths that take it, and the nodes labelled with their token."""
    cols = _columns(s.paths)
    edges: dict[tuple, list[int]] = {}
    nodes: dict[tuple[int, int], str] = {}

    def y(tok):
        return -1 if tok is None else tok

    for p in s.paths:
        hops = p["layers"]
        for k, h in enumerate(hops):
            x = 0 if k == 0 else cols.index(h["segment"])
            nodes[(x, y(h["token"]))] = "" if h["token"] is None else s.tokens[h["token"]]
            if k:
                prev = hops[k - 1]
                x0 = 0 if k == 1 else cols.index(prev["segment"])
                key = (x0, y(prev["token"]), x, y(h["token"]), float(f"{h['factor']:.9g}"))
                edges.setdefault(key, []).append(p["token"])
    lx, ly, mx, my, mtext, mcol = [], [], [], [], [], []
    for (x0, y0, x1, y1, f), used in edges.items():
        lx += [x0, x1, None]
        ly += [y0, y1, None]
        mx.append((x0 + x1) / 2)
        my.append((y0 + y1) / 2)
        who = ", ".join(f"{t} {s.tokens[t]!r}" for t in used)
        mtext.append(f"{html.escape(cols[x1])}: ×{f:.4g}<br>on the top path from token {html.escape(who)}")
        mcol.append(COLOURS[0] if f >= 0 else COLOURS[3])
    edge = go.Scatter(x=lx, y=ly, mode="lines", line={"color": "#888", "width": 2}, hoverinfo="skip",
                      showlegend=False)
    mid = go.Scatter(x=mx, y=my, mode="markers", marker={"color": mcol, "size": 9, "symbol": "diamond"},
                     hovertext=mtext, hoverinfo="text", showlegend=False)
    pts = sorted(nodes.items())
    node = go.Scatter(x=[k[0] for k, _ in pts], y=[k[1] for k, _ in pts], mode="markers+text",
                      text=[html.escape(w) for _, w in pts], textposition="top center", textfont={"size": 10},
                      marker={"color": "#333", "size": 6}, hoverinfo="text",
                      hovertext=[f"{html.escape(cols[k[0]])}, token {k[1]} {html.escape(w)!r}" for k, w in pts],
                      showlegend=False)
    return [edge, mid, node], cols


def _sankey(go, s: Sentence):
    """The flow across layers: from each layer's input through the branches its units' best paths take (the
    mean share over tokens) into the next layer."""
    layers = len(s.branch)
    labels = [f"layer {i} input" for i in range(layers)] + [f"layer {layers - 1} output"]
    node_colour = ["#777"] * (layers + 1)
    src, dst, val, colour = [], [], [], []
    for i in range(layers):
        mean = s.shares[i].mean(axis=0) if s.shares.shape[1] else np.zeros(len(BRANCHES))
        for k, b in enumerate(BRANCHES):
            labels.append(f"layer {i}: {b}")
            node_colour.append(COLOURS[k])
            node = len(labels) - 1
            src += [i, node]
            dst += [node, i + 1]
            val += [float(mean[k])] * 2
            colour += [COLOURS[k]] * 2
    return go.Sankey(node={"label": labels, "pad": 12, "thickness": 12, "color": node_colour},
                     link={"source": src, "target": dst, "value": val, "color": [c + "88" for c in colour]},
                     valueformat=".3f", valuesuffix=" of the units")


def sentence_figure(data: Data):
    """Per sentence, one picker for all: tokens by gradient norm and by entropy, the branch heatmap, the top
    paths and the flow across layers."""
    go, make_subplots = _go()
    if not data.sentences:
        raise InputError("the results hold no analysed sentence")
    layers = max(len(s.branch) for s in data.sentences)
    fig = make_subplots(
        rows=5, cols=1, vertical_spacing=0.06, row_heights=[0.08, 0.08, 0.26, 0.3, 0.28],
        specs=[[{"type": "xy"}]] * 4 + [[{"type": "domain"}]],
        subplot_titles=("tokens by gradient norm ‖∂output/∂embedding‖", "tokens by entropy of gradient flow (nats)",
                        "branch of the best path from each token's best unit, per layer (hover: shares of units)",
                        "top paths, one column per layer; an edge several paths share is drawn once",
                        "flow across layers: share of units whose best path takes each branch"))
    domains = [fig.layout[f"yaxis{'' if r == 1 else r}"].domain for r in (1, 2, 3)]
    buttons, per = [], []
    for n, s in enumerate(data.sentences):
        t = np.arange(len(s.tokens))
        words = [[html.escape(w) for w in s.tokens]]
        tr = [
            go.Heatmap(z=[s.grad_norm], x=t, text=words, texttemplate="%{text}", colorscale="Blues",
                       colorbar=_bar(domains[0], "norm"), hovertemplate="token %{x} %{text}: %{z:.4g}<extra></extra>"),
            go.Heatmap(z=[s.entropy], x=t, text=words, texttemplate="%{text}", colorscale="Oranges",
                       colorbar=_bar(domains[1], "nats"),
                       hovertemplate="token %{x} %{text}: %{z:.4f} nats<extra></extra>"),
            _branch_heatmap(go, s, domains[2]),
        ]
        paths, cols = _path_traces(go, s)
        tr += paths
        tr.append(_sankey(go, s))
        rows = (1, 2, 3, 4, 4, 4, 5)
        for trace, row in zip(tr, rows):
            trace.visible = n == 0
            fig.add_trace(trace, row=row, col=1)
        per.append((s, cols))
    total = len(fig.data)
    for n, (s, cols) in enumerate(per):
        vis = [False] * total
        vis[n * TRACES_PER_SENTENCE:(n + 1) * TRACES_PER_SENTENCE] = [True] * TRACES_PER_SENTENCE
        label = f"{s.id}: {s.text}"
        buttons.append({"label": label if len(label) <= 60 else label[:57] + "...", "method": "update",
                        "args": [{"visible": vis}, {"title.text": _sentence_title(data, s),
                                                    "xaxis4.tickvals": list(range(len(cols))),
                                                    "xaxis4.ticktext": cols}]})
    first_cols = per[0][1]
    fig.update_xaxes(title_text="token position", dtick=1, row=2, col=1)
    fig.update_xaxes(dtick=1, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(showticklabels=False, row=2, col=1)
    fig.update_xaxes(title_text="token position", dtick=1, row=3, col=1)
    fig.update_yaxes(title_text="layer", dtick=1, autorange="reversed", range=[-0.5, layers - 0.5], row=3, col=1)
    fig.update_xaxes(title_text="layer (where the path leaves it)", tickvals=list(range(len(first_cols))),
                     ticktext=first_cols, row=4, col=1)
    fig.update_yaxes(title_text="token position (−1: no token axis)", dtick=1, row=4, col=1)
    fig.update_layout(title_text=_sentence_title(data, data.sentences[0]), height=1350, margin={"t": 150},
                      updatemenus=[{"buttons": buttons, "direction": "down", "x": 0, "xanchor": "left", "y": 1.1,
                                    "yanchor": "bottom", "showactive": True, "active": 0}])
    return fig


def _sentence_title(data: Data, s: Sentence) -> str:
    text = s.text if len(s.text) <= 90 else s.text[:87] + "..."
    return _title(data, f"sentence {html.escape(s.id)}: “{html.escape(text)}” ({len(s.tokens)} tokens)")


def _bar(domain, title: str) -> dict:
    lo, hi = domain
    return {"title": {"text": title}, "y": (lo + hi) / 2, "len": max(hi - lo, 0.1), "thickness": 12}


def _branch_heatmap(go, s: Sentence, domain):
    code = np.array([[CATEGORIES.index(b) if b in CATEGORIES else len(CATEGORIES) - 1 for b in row]
                     for row in s.branch], dtype=float)
    k = len(CATEGORIES)
    scale = []
    for i, c in enumerate(COLOURS):
        scale += [[i / k, c], [(i + 1) / k, c]]
    custom = np.concatenate([s.shares, s.argmax_value[..., None]], axis=-1)
    hover = ("layer %{y}, token %{x}: best path takes %{text}<br>max-product value %{customdata[4]:.4g}<br>"
             + "<br>".join(f"{b}: %{{customdata[{i}]:.2f}} of the units" for i, b in enumerate(BRANCHES))
             + "<extra></extra>")
    lo, hi = domain
    return go.Heatmap(z=code, text=[list(r) for r in s.branch], texttemplate="%{text}", textfont={"size": 9},
                      customdata=custom,
                      colorscale=scale, zmin=-0.5, zmax=k - 0.5, hovertemplate=hover, xgap=1, ygap=1,
                      colorbar={"tickvals": list(range(k)), "ticktext": list(CATEGORIES), "y": (lo + hi) / 2,
                                "len": hi - lo, "thickness": 12, "title": {"text": "branch"}})


# -- the page -------------------------------------------------------------------------------------------------

@dataclass
class Report:
    """The report's HTML (``save`` it, or show it in Jupyter) and the data it was drawn from."""

    html: str
    data: Data

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.html, encoding="utf-8")
        return p

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html)}" style="width:100%;height:1000px;border:0" '
                'sandbox="allow-scripts"></iframe>')

    def __repr__(self) -> str:
        m = self.data.meta
        return (f"<Report {m.get('model')}: {self.data.total} sentences ({len(self.data.sentences)} in the "
                f"picker), {len(self.html) / 1e6:.1f} MB of HTML>")


def report(source: str | Path, out: str | Path | None = None, max_sentences: int = 50) -> Report:
    """The HTML report of the results under ``source`` (see :func:`load`); written to ``out`` if given.
    ``max_sentences``: how many sentences the picker offers (the summary covers them all)."""
    import plotly.io as pio

    if max_sentences < 1:
        raise InputError(f"max_sentences must be at least 1, got {max_sentences}")
    data = load(source, max_sentences)
    figs = [("summary", summary_figure(data)), ("sentences", sentence_figure(data))]
    parts = [pio.to_html(fig, full_html=False, include_plotlyjs=(k == 0), div_id=f"semir-{name}",
                         config={"displaylogo": False, "responsive": True})
             for k, (name, fig) in enumerate(figs)]
    m = data.meta
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in (
        ("model", m.get("model")), ("objective", m.get("objective")), ("semantics", m.get("semantics") or "exact"),
        ("analysed", m.get("date")), ("sentences", f"{data.total} ({len(data.sentences)} in the picker)"),
        ("results", Path(source).resolve()), ("report written", datetime.date.today().isoformat())))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>semir report: {html.escape(str(m.get('model')))}</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse}}
th{{text-align:left;padding-right:1em;font-weight:600}} td,th{{padding:2px 6px;font-size:14px}}</style>
</head><body>
<h1>Gradient flow: {html.escape(str(m.get('model')))}</h1>
<table id="semir-meta">{rows}</table>
<p>Entropy is that of the distribution over gradient paths with p ∝ |product| (nats); the branch is the one
(skip, query, key or value of the layer's attention) that the max-product path takes. Hover for numbers.</p>
{parts[0]}
<h2>Sentences</h2>
<p>Pick a sentence in the menu above the figure.</p>
{parts[1]}
</body></html>
"""
    r = Report(page, data)
    if out is not None:
        r.save(out)
    return r

