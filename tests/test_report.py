"""The HTML report (issue 18): built from a data-set run and from sentences, rendered in headless Chromium.

The browser test checks, from the rendered page, that every figure drew (no JavaScript error, the expected
number of traces, every token label on the page), that the page loaded nothing from anywhere but itself, and
writes a screenshot (``$SEMIR_ARTIFACTS``, else the test's temporary directory).
"""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import semir
from semir.analysis import dataset
from semir.analysis import htmlreport as report_module
from semir.cli import main

pytest.importorskip("plotly")
pytest.importorskip("pyarrow")
pytest.importorskip("tokenizers")
from test_models import tiny_bert  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TEXTS = ["the keys to the cabinet are on the table", "a table", "the keys are on a table", "the cabinet"]
U = np.linspace(-1.0, 1.0, 8).astype(np.float32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    (d / "model").mkdir()
    tiny_bert(d / "model", layers=2, hidden=8, heads=2, ffn=12)
    dataset.run(str(d / "model"), TEXTS, U, d / "run", description="u · final[0]", partition_size=2, progress=False)
    np.save(d / "u.npy", U)
    assert main(["analyze", str(d / "model"), "--sentence", TEXTS[0], "--sentence", TEXTS[3], "--readout",
                 str(d / "u.npy"), "--out", str(d / "single")]) == 0
    return d


def test_the_report_holds_the_runs_numbers(runs):
    data = report_module.load(runs / "run")
    tokens, sents = dataset.read_results(runs / "run")
    rows = tokens.to_pylist()
    assert [s.text for s in data.sentences] == TEXTS and data.total == 4
    assert data.meta["objective"] == "u · final[0]" and data.meta["semantics"] == "exact" and data.meta["date"]
    for s in data.sentences:
        mine = [r for r in rows if r["sentence_id"] == s.id]
        for st in ("grad_norm", "entropy"):
            want = [r["value"] for r in sorted(mine, key=lambda r: r["position"]) if r["statistic"] == st]
            assert np.array_equal(getattr(s, st), want)
        assert s.branch[1][0] == next(r["label"] for r in mine if r["layer"] == 1 and r["position"] == 0
                                      and r["statistic"] == "argmax_value")
        # the drawn path: its layers' factors multiply to the path value the table holds
        (p,) = s.paths
        assert np.prod([h["factor"] for h in p["layers"]]) == pytest.approx(p["value"], rel=1e-9)
        assert p["layers"][0]["token"] == 1
    single = report_module.load(runs / "single")
    assert [s.text for s in single.sentences] == [TEXTS[0], TEXTS[3]]
    # sentences given on the command line: the top path from every token
    assert [p["token"] for p in single.sentences[1].paths] == list(range(len(single.sentences[1].tokens)))
    m = semir.models.load(runs / "model")
    ids = m.tokenize(TEXTS[3])
    want = semir.analysis.token_stats(m, ids, U, backend="reference")
    assert single.sentences[1].entropy == pytest.approx([r["entropy"] for r in want], rel=1e-4)


def test_the_report_command_and_its_errors(runs, tmp_path, capsys):
    assert main(["report", str(runs / "run"), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    # plotly.js is embedded, nothing is loaded from a network (the browser test checks every request)
    assert not re.findall(r"<script[^>]*\ssrc=", page) and len(page) > 3e6
    assert main(["report", str(runs / "run"), "--out", str(tmp_path / "r.png")]) == 2
    assert "ending in .html" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r.html")]) == 2
    assert "expected the --out directory" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "analysis.json").write_text("[]")
    assert main(["report", str(tmp_path / "old"), "--out", str(tmp_path / "r.html")]) == 2
    assert "rerun 'semir analyze --out'" in capsys.readouterr().err
    (tmp_path / "old" / "analysis.json").write_text('{"sentences": [{"sentence": "x"}]}')
    assert main(["report", str(tmp_path / "old"), "--out", str(tmp_path / "r.html")]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert main(["report", str(runs / "run"), "--out", str(tmp_path / "r.html"), "--max-sentences", "0"]) == 2
    # a data-set run of an older version, without the paths as data: refused with a clear message
    import shutil

    import pyarrow.parquet as pq

    shutil.copytree(runs / "run", tmp_path / "v1")
    for f in (tmp_path / "v1").glob("sentences-*.parquet"):
        pq.write_table(pq.read_table(f).drop_columns(["path_layers"]), f)
    assert main(["report", str(tmp_path / "v1"), "--out", str(tmp_path / "r.html")]) == 2
    assert "older semir" in capsys.readouterr().err


def test_the_analyze_figures_are_readable(runs, tmp_path, figures_are_checked):
    assert main(["analyze", str(runs / "model"), "--sentence", TEXTS[1], "--readout", str(runs / "u.npy"),
                 "--out", str(tmp_path), "--plot"]) == 0
    tokens, _ = dataset.read_results(runs / "run")
    dataset.plot_summary(dataset.summarize(tokens), tmp_path / "summary.png", "tiny", "u · final[0]", 4)
    assert len(figures_are_checked) == 2


def test_notebook_views_are_short(runs):
    r = semir.analysis.report(runs / "run", max_sentences=2)
    assert len(repr(r)) < 200 and r._repr_html_().startswith("<iframe srcdoc=")
    m = semir.models.load(runs / "model")
    k = semir.compile(m.program(), "max_product", wrt=["embeddings"])
    res = k(**m.inputs(m.tokenize(TEXTS[1]), readout=U))
    assert len(res._repr_html_()) < 2000 and "embeddings" in res._repr_html_()
    path = res.path("embeddings", (1, 0))
    assert path._repr_html_().startswith("<pre>path value")
    s = dataset.run(str(runs / "model"), TEXTS, U, runs / "run",
                    description="u · final[0]", partition_size=2, progress=False)
    assert "4 sentences" in s._repr_html_()


def _render(html_file: Path, shot: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("no chromium (Debian: apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            errors, fetched = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(html_file.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length == 2 && "
                                   "Array.from(document.querySelectorAll('.js-plotly-plot')).every(d => d._fullLayout)")
            drawn = page.evaluate("""() => Object.fromEntries(
                Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => [d.id, {
                    traces: d.data.length, visible: d.data.filter(t => t.visible !== false).length,
                    buttons: (d.layout.updatemenus || []).map(m => m.buttons.length),
                    title: d._fullLayout.title.text,
                    svgText: Array.from(d.querySelectorAll('text')).map(t => t.textContent)}]))""")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(u.startswith("file://") for u in fetched), fetched
    return drawn


@pytest.mark.parametrize("which", ["run", "single"])
def test_the_report_renders_in_chromium(runs, tmp_path, which):
    out = tmp_path / f"report-{which}.html"
    r = semir.analysis.report(runs / which, out)
    shots = Path(os.environ.get("SEMIR_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    drawn = _render(out, shots / f"report-{which}.png")
    assert drawn["semir-summary"]["traces"] == len(report_module.BRANCHES) + 1  # four branches, the entropy
    n = len(r.data.sentences)
    sent = drawn["semir-sentences"]
    assert sent["traces"] == report_module.TRACES_PER_SENTENCE * n and sent["buttons"] == [n]
    assert sent["visible"] == report_module.TRACES_PER_SENTENCE  # one sentence at a time
    first = r.data.sentences[0]
    text = set(sent["svgText"])
    assert all(w in text for w in first.tokens), (first.tokens, sorted(text)[:40])  # the token labels drew
    assert {"skip", "value"} & text  # the branch heatmap's cells
    for fig in drawn.values():
        assert "exact semantics" in fig["title"] and r.data.meta["objective"][:30] in fig["title"]
        assert r.data.meta["date"][:10] in fig["title"]
    assert "nats" in " ".join(drawn["semir-summary"]["svgText"])
    assert json.dumps(drawn)  # plain data came back from the page
