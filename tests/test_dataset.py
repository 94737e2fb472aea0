"""Data-set runs (issue 15): Parquet tables, resume after an interruption, failures by sentence id, Dask."""

import json

import numpy as np
import pytest

import semir
from semir import analysis
from semir.analysis import dataset
from semir.cli import main

pytest.importorskip("safetensors.numpy")
pytest.importorskip("tokenizers")
pa = pytest.importorskip("pyarrow")
from test_models import tiny_bert  # noqa: E402

WORDS = ["the", "keys", "to", "cabinet", "are", "on", "table", "a"]
U = np.linspace(-1.0, 1.0, 8).astype(np.float32)


def sentences(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 8)))) for _ in range(n)]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "model").mkdir()
    tiny_bert(tmp_path / "model", layers=2, hidden=8, heads=2, ffn=12)
    return tmp_path / "model"


def _sorted(table):
    return table.sort_by([("sentence_id", "ascending"), ("position", "ascending"), ("layer", "ascending"),
                          ("statistic", "ascending")])


def test_tables_hold_what_the_reference_backend_computes(folder, tmp_path):
    texts = sentences(5)
    s = dataset.run(str(folder), texts, U, tmp_path / "run",
                    description="u · final[0]", partition_size=2, progress=False)
    assert (s.sentences, s.partitions, s.failures) == (5, 3, [])
    tokens, sents = dataset.read_results(tmp_path / "run")
    m = semir.models.load(folder)
    rows = tokens.to_pylist()
    for sid, text in enumerate(texts):
        ids = m.tokenize(text)
        mine = [r for r in rows if r["sentence_id"] == str(sid)]
        assert all(r["text"] == text for r in mine)
        for st in analysis.token_stats(m, ids, U, backend="reference"):
            got = {r["statistic"]: r["value"] for r in mine if r["position"] == st["position"] and r["layer"] is None}
            assert got["entropy"] == pytest.approx(st["entropy"], rel=1e-4)
            assert got["log_z"] == pytest.approx(st["log_z"], rel=1e-4, abs=1e-5)
            assert got["grad_norm"] == pytest.approx(st["grad_norm"], rel=1e-4)
        for rec in analysis.branch_flow(m, ids, U, backend="reference"):
            got = [r for r in mine if r["position"] == rec["position"] and r["layer"] == rec["layer"]]
            top = next(r for r in got if r["statistic"] == "argmax_value")
            assert top["label"] == rec["argmax_branch"] and top["value"] == pytest.approx(rec["argmax_value"], rel=1e-5)
        ref = semir.compile(m.program(position=0), "max_product", backend="reference", wrt=["embeddings"])
        path = analysis.top_paths(ref(**m.inputs(ids, readout=U)), "embeddings", (1,))[0]
        row = next(r for r in sents.to_pylist() if r["sentence_id"] == str(sid))
        assert row["path_value"] == pytest.approx(path.value, rel=1e-5) and row["objective"] == "u · final[0]"
    assert len({r["sentence_id"] for r in rows}) == 5


def test_an_interrupted_run_resumes_without_recomputing_or_losing_anything(folder, tmp_path, monkeypatch):
    texts = sentences(200, seed=1)
    whole = dataset.run(str(folder), texts, U, tmp_path / "whole", description="u", partition_size=20, progress=False)
    calls = []
    real = dataset.run_partition

    def interrupted(an, out, index, items):
        calls.append(index)
        if len(calls) == 6:
            raise KeyboardInterrupt  # Ctrl-C halfway, in the middle of a partition
        return real(an, out, index, items)

    monkeypatch.setattr(dataset, "run_partition", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataset.run(str(folder), texts, U, tmp_path / "resumed", description="u", partition_size=20, progress=False)
    calls.clear()
    again = dataset.run(str(folder), texts, U, tmp_path / "resumed", description="u", partition_size=20, progress=False)
    assert calls == list(range(5, 10))  # the five finished partitions are not recomputed
    assert again.sentences == whole.sentences == 200 and again.skipped == 5
    a, b = dataset.read_results(tmp_path / "whole"), dataset.read_results(tmp_path / "resumed")
    assert _sorted(a[0]).equals(_sorted(b[0])) and a[1].num_rows == b[1].num_rows == 200
    # the same directory with other sentences is refused, never mixed
    with pytest.raises(semir.OptionError, match="different run"):
        dataset.run(str(folder), texts[:10], U, tmp_path / "resumed",
                    description="u", partition_size=20, progress=False)


def test_a_failing_sentence_is_reported_by_id(folder, tmp_path, capsys):
    rows = [{"id": "ok-1", "text": "the keys"}, {"id": "too-long", "text": " ".join(["the"] * 30)},
            {"id": "ok-2", "text": "a table"}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = main(["analyze", str(folder), "--dataset", str(path), "--out", str(tmp_path / "out"),
                 "--readout", "random", "--plot"])
    err = capsys.readouterr().err
    assert code == 1 and "sentence too-long" in err and "objective: " in err
    tokens, sents = dataset.read_results(tmp_path / "out")
    assert sorted(sents.column("sentence_id").to_pylist()) == ["ok-1", "ok-2"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [f["sentence_id"] for f in summary["failures"]] == ["too-long"]
    assert [r["layer"] for r in summary["branches"]] == [0, 1]
    assert (tmp_path / "out" / "summary.png").stat().st_size > 0
    # the shares are fractions of the recorded tokens, and each interval holds its share
    for r in summary["branches"]:
        assert sum(r[b][0] for b in ("skip", "query", "key", "value")) == pytest.approx(1.0)
        assert all(r[b][1] <= r[b][0] <= r[b][2] for b in ("skip", "query", "key", "value"))


def test_progress_reports_count_and_rate():
    import io

    from semir.progress import Progress

    out = io.StringIO()
    bar = Progress(3, "sentences", stream=out)
    for _ in range(3):
        bar.update()
    bar.close()
    assert "3/3" in out.getvalue()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".txt"])
def test_datasets_read_from_csv_parquet_and_text(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    table = pa.table({"id": ["a", "b"], "text": ["the keys", "a table"]})
    if suffix == ".csv":
        import pyarrow.csv

        pyarrow.csv.write_csv(table, path)
    elif suffix == ".parquet":
        import pyarrow.parquet

        pyarrow.parquet.write_table(table, path)
    else:
        path.write_text("the keys\n\na table\n")
    got = dataset.read_dataset(path)
    assert [r["text"] for r in got] == ["the keys", "a table"]
    assert [r["id"] for r in got] == (["a", "b"] if suffix != ".txt" else ["0", "2"])


def test_a_dask_cluster_of_two_workers_gives_the_same_tables(folder, tmp_path):
    pytest.importorskip("dask.distributed")
    texts = sentences(6, seed=2)
    dataset.run(str(folder), texts, U, tmp_path / "one", description="u", partition_size=2, progress=False)
    s = dataset.run(str(folder), texts, U, tmp_path / "two",
                    description="u", partition_size=2, workers=2, progress=False)
    assert s.sentences == 6 and s.failures == []
    a, b = dataset.read_results(tmp_path / "one"), dataset.read_results(tmp_path / "two")
    assert _sorted(a[0]).equals(_sorted(b[0]))
    assert a[1].sort_by("sentence_id").equals(b[1].sort_by("sentence_id"))
    # an existing cluster, by its scheduler's address
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        s = dataset.run(str(folder), texts, U, tmp_path / "three", description="u", partition_size=3,
                        scheduler=cluster.scheduler_address, progress=False)
    assert s.sentences == 6 and _sorted(dataset.read_results(tmp_path / "three")[0]).equals(_sorted(a[0]))


def test_a_pooled_component_objective(folder, tmp_path, capsys):
    path = tmp_path / "s.txt"
    path.write_text("the keys to the\na table\n")
    assert main(["analyze", str(folder), "--dataset", str(path), "--out", str(tmp_path / "out"),
                 "--readout", "pooled:3"]) == 0
    assert "component 3 of the mean-pooled" in capsys.readouterr().err
    _, sents = dataset.read_results(tmp_path / "out")
    m = semir.models.load(folder)
    e3 = np.eye(8, dtype=np.float32)[3]
    for row in sents.to_pylist():  # the objective is the pooled embedding's component, by the reference backend
        k = semir.compile(m.program(pool="mean"), "sum_product", backend="reference", wrt=[])
        assert row["output"] == pytest.approx(float(k.forward(**m.inputs(m.tokenize(row["text"]), readout=e3))),
                                              rel=1e-5, abs=1e-6)
    # sentences given on the command line take every objective too
    assert main(["analyze", str(folder), "--sentence", "the keys", "--objective", "pooled:3", "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    k = semir.compile(m.program(pool="mean"), "sum_product", backend="reference", wrt=[])
    assert doc["output"] == pytest.approx(float(k.forward(**m.inputs(m.tokenize("the keys"), readout=e3))), rel=1e-5)
    assert main(["analyze", str(folder), "--dataset", str(path), "--out", str(tmp_path / "o2"),
                 "--readout", "pooled:99"]) == 2


def test_statistics_match_their_closed_forms():
    from semir.analysis.dataset import _wilson
    from semir.experiments.common import spearman

    k, n, z = 3, 10, 1.959963984540054  # Wilson's score interval, written out
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    np.testing.assert_allclose(_wilson(k, n), (centre - half, centre + half), rtol=1e-9)
    assert np.isnan(_wilson(0, 0)).all()
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))  # 1 - 6 Σd² / n(n²-1)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
