"""Analyses over a data set: partitions, Parquet tables, resumable runs, on one process or a Dask cluster.

``run(model, texts, objective, out)`` analyses every sentence and writes, per partition of
``partition_size`` sentences, two Parquet tables (pyarrow) under ``out/``:

* ``tokens-NNNNN.parquet``: one row per sentence × token × layer × statistic (``layer`` is null for per-token
  statistics): ``entropy`` and ``log_z`` of the token's paths (Eq. 3), ``grad_norm``; per layer the
  max-product value of the token's best unit (``argmax_value``, its branch in ``label``) and the share of
  its units whose best path takes each branch (``share_skip`` ... ``share_value``).
* ``sentences-NNNNN.parquet``: one row per sentence: its objective value, and the top path from
  ``path_token``: its value, its one-line-per-layer text and, as JSON, its layers (``Path.layers``).

The sentence id and text travel with every row. Per sentence, one max-product sweep serves both the branch
table and the top path. A partition is written to temporary files and renamed, then marked done, so a
rerun skips finished partitions and recomputes nothing. ``run.json`` fingerprints the run (model, objective,
sentences, settings); an ``out`` holding a different run is refused rather than mixed. A sentence that
fails (too long for the model, say) is recorded with its id and error in ``failures-NNNNN.json`` and
reported, never dropped silently. With ``workers=N`` (a ``dask.distributed`` LocalCluster of N processes,
one thread each) or ``scheduler=ADDRESS``, partitions run in parallel; each worker loads the model once
and compiles from semir's on-disk kernel cache. A worker holds one sentence's states at a time, so its
memory is bounded by the largest sentence, not the data set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OptionError, SemirError

BRANCH_STATS = ("share_skip", "share_query", "share_key", "share_value")
VERSION = 2  # 2: the sentences table carries the top path as data (path_layers)


@dataclass
class Settings:
    """What a run computes; part of its fingerprint."""

    model: str
    objective: str  # the objective's description
    objective_id: str  # its fingerprint: kind, readouts, head, position
    path_token: int = 1
    backend: str | None = None
    partition_size: int = 16
    batch_size: int = 8


def _fingerprint(settings: Settings, items: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"version": VERSION, **settings.__dict__}, sort_keys=True).encode())
    for sid, text in items:
        h.update(f"{sid}\0{text}\0".encode())
    return h.hexdigest()


def _items(texts) -> list[tuple[str, str]]:
    """(sentence id, text) pairs: strings get their index as id; dicts give ``id`` (optional) and ``text``."""
    out = []
    for i, t in enumerate(texts):
        if isinstance(t, str):
            out.append((str(i), t))
        elif isinstance(t, dict) and isinstance(t.get("text"), str):
            out.append((str(t.get("id", i)), t["text"]))
        else:
            raise InputError(f"sentence {i}: expected a string or a record with a 'text' field, got {t!r:.60}")
    ids = [sid for sid, _ in out]
    if len(set(ids)) != len(ids):
        dup = next(s for s in ids if ids.count(s) > 1)
        raise InputError(f"sentence ids must be unique; {dup!r} appears more than once")
    return out


def read_dataset(path: str | Path) -> list[dict]:
    """Sentences from a .txt (one per line), .jsonl (``{"id": ..., "text": ...}``), .csv or .parquet file
    (columns ``text`` and optionally ``id``)."""
    p = Path(path)
    try:
        if p.suffix == ".txt":
            return [{"id": str(i), "text": ln.strip()} for i, ln in enumerate(p.read_text().splitlines()) if ln.strip()]
        if p.suffix == ".jsonl":
            rows = [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
        elif p.suffix in (".csv", ".parquet"):
            import pyarrow.csv
            import pyarrow.parquet

            table = pyarrow.csv.read_csv(p) if p.suffix == ".csv" else pyarrow.parquet.read_table(p)
            rows = table.to_pylist()
        else:
            raise InputError(f"--dataset {str(p)!r}: expected .txt, .jsonl, .csv or .parquet")
    except (OSError, ValueError) as e:
        raise InputError(f"--dataset {str(p)!r}: cannot read it ({e})") from None
    except ImportError:
        raise SemirError("reading .csv and .parquet needs pyarrow: pip install 'semir[data]'") from None
    if rows and "text" not in rows[0]:
        raise InputError(f"--dataset {str(p)!r}: needs a 'text' field (columns: {', '.join(rows[0])})")
    return [{"id": str(r.get("id", i)), "text": str(r["text"])} for i, r in enumerate(rows)]


# -- one worker -------------------------------------------------------------------------------------------

_MODELS: dict[str, Any] = {}


class _Example:
    """Sentence ``k`` of a batched result, as the per-sentence analyses read a result. ``cache`` is shared by
    the batch's sentences: each lookup runs once over the whole batch, not once per sentence."""

    def __init__(self, r, k: int, cache: dict):
        self.r, self.k, self.cache = r, k, cache

    def _batch(self, key: tuple, fn) -> np.ndarray:
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key][self.k]

    def __getitem__(self, name: str) -> np.ndarray:
        return self._batch(("value", name), lambda: self.r[name])

    def next_nodes(self, name: str, component: Any = None) -> np.ndarray:
        return self._batch(("next", name, component), lambda: self.r.next_nodes(name, component))


class _Analyzer:
    """A model, its objective and three kernels over batches of same-length sentences, compiled once per
    process for each position the objective reads."""

    def __init__(self, model, objective, settings: Settings):
        self.m, self.obj, self.s = model, objective, settings
        self.kernels: dict[int, tuple] = {}

    def _kernels(self, position: int) -> tuple:
        from ..compiler import compile

        if position not in self.kernels:
            m, backend = self.m, self.s.backend
            layers = [f"layer{i}.attention.input" for i in range(m.layers)]
            prog = self.obj.program(m, position, batch=True)
            self.kernels[position] = (compile(prog, "max_product", backend=backend, wrt=["embeddings", *layers]),
                                      compile(prog, "entropy", backend=backend, wrt=["embeddings"]),
                                      compile(prog, "sum_product", backend=backend, wrt=["embeddings"]))
        return self.kernels[position]

    def check(self, text: str) -> tuple[np.ndarray, int]:
        """The sentence's ids and the position its objective reads; refuses what cannot be analysed."""
        ids = self.m.tokenize(text)
        if not 0 <= self.s.path_token < len(ids):
            raise InputError(f"the path token {self.s.path_token} is outside the sentence's {len(ids)} tokens")
        position = self.obj.position_of(ids)
        self.m.inputs(ids, readout=np.zeros(self.m.hidden, np.float32) + 1)  # every other input check
        return ids, position

    def batch(self, group: list[tuple[str, str, np.ndarray]], position: int) -> list[tuple[list, dict]]:
        """Rows of each sentence of ``group`` (same length and position), from one call per statistic."""
        from .branch import branch_records
        from .paths import top_paths

        m, s = self.m, self.s
        ins = self.obj.inputs(m, [ids for _, _, ids in group])
        kbest, kent, kgrad = self._kernels(position)
        best, ent, grad = kbest(**ins), kent(**ins), kgrad(**ins)["embeddings"]
        state = ent.aggregate_state("embeddings", -1)
        h = ent.semiring.finalize(state)
        shared: dict = {}
        out = []
        for k, (sid, text, ids) in enumerate(group):
            tokens = m.tokens(ids)
            rows = []
            base = {"sentence_id": sid, "text": text}
            for t in range(len(tokens)):
                for stat, v in (("entropy", h[k, t]), ("log_z", state["logz"][k, t]),
                                ("grad_norm", np.linalg.norm(grad[k, t]))):
                    rows.append(_row(base, tokens, t, None, stat, v))
            for rec in branch_records(_Example(best, k, shared), m.layers, tokens):
                p, layer = rec["position"], rec["layer"]
                rows.append(_row(base, tokens, p, layer, "argmax_value", rec["argmax_value"], rec["argmax_branch"]))
                rows += [_row(base, tokens, p, layer, b, rec[b]) for b in BRANCH_STATS]
            path = top_paths(best, "embeddings", (k, s.path_token))[0]
            sent = {**base, "tokens": len(tokens), "objective": s.objective, "position": position,
                    "output": self.obj.value(best, k),
                    "path_token": s.path_token, "path_value": path.value, "path_text": path.format(tokens=tokens),
                    "path_layers": json.dumps(path.layers(tokens))}
            out.append((rows, sent))
        return out


def _row(base: dict, tokens: list[str], position: int, layer, statistic: str, value, label=None) -> dict:
    return {**base, "position": position, "token": tokens[position], "layer": layer, "statistic": statistic,
            "value": float(value), "label": label}


def _worker_analyzer(model_ref: str, objective, settings: Settings) -> _Analyzer:
    """A Dask worker's analyzer, loaded once per process and kept between partitions."""
    key = json.dumps(settings.__dict__, sort_keys=True)
    if key not in _MODELS:
        from .. import models

        _MODELS[key] = _Analyzer(models.load(model_ref), objective, settings)
    return _MODELS[key]


def _write_atomic(table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def worker_partition(model_ref: str, objective, settings: Settings, out: str, index: int,
                     items: list[tuple[str, str]]) -> dict:
    """One partition on a Dask worker."""
    return run_partition(_worker_analyzer(model_ref, objective, settings), out, index, items)


def run_partition(an: _Analyzer, out: str, index: int, items: list[tuple[str, str]]) -> dict:
    """Analyse one partition, in batches of sentences of one length and objective position (no padding), and
    write its tables; returns its counts and failures."""
    import pyarrow as pa

    failures, by_length = [], {}
    for sid, text in items:
        try:
            ids, position = an.check(text)
        except SemirError as e:
            failures.append({"sentence_id": sid, "text": text, "error": str(e)})
            continue
        by_length.setdefault((len(ids), position), []).append((sid, text, ids))
    done: dict[str, tuple[list, dict]] = {}
    size = an.s.batch_size
    for (_, position), group in by_length.items():
        for k in range(0, len(group), size):
            chunk = group[k:k + size]
            try:
                results = an.batch(chunk, position)
            except SemirError:  # find the sentence: one at a time
                results = []
                for one in chunk:
                    try:
                        results += an.batch([one], position)
                    except SemirError as e:
                        failures.append({"sentence_id": one[0], "text": one[1], "error": str(e)})
                        results.append(None)
            for one, res in zip(chunk, results):
                if res is not None:
                    done[one[0]] = res
    rows, sents = [], []
    for sid, _ in items:  # rows in the data set's order
        if sid in done:
            rows += done[sid][0]
            sents.append(done[sid][1])
    d = Path(out)
    _write_atomic(pa.Table.from_pylist(rows, schema=TOKENS_SCHEMA()), d / f"tokens-{index:05d}.parquet")
    _write_atomic(pa.Table.from_pylist(sents, schema=SENTENCES_SCHEMA()), d / f"sentences-{index:05d}.parquet")
    done = {"partition": index, "sentences": len(sents), "failures": failures}
    tmp = d / f"done-{index:05d}.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(done))
    os.replace(tmp, d / f"done-{index:05d}.json")  # the commit: written last
    return done


def TOKENS_SCHEMA():  # noqa: N802  (a function so that pyarrow is imported only when a run writes)
    import pyarrow as pa

    return pa.schema([("sentence_id", pa.string()), ("text", pa.string()), ("position", pa.int32()),
                      ("token", pa.string()), ("layer", pa.int32()), ("statistic", pa.string()),
                      ("value", pa.float64()), ("label", pa.string())])


def SENTENCES_SCHEMA():  # noqa: N802
    import pyarrow as pa

    return pa.schema([("sentence_id", pa.string()), ("text", pa.string()), ("tokens", pa.int32()),
                      ("objective", pa.string()), ("position", pa.int32()), ("output", pa.float64()),
                      ("path_token", pa.int32()),
                      ("path_value", pa.float64()), ("path_text", pa.string()), ("path_layers", pa.string())])


# -- the driver ---------------------------------------------------------------------------------------------

@dataclass
class RunSummary:
    out: Path
    sentences: int
    partitions: int
    skipped: int
    failures: list[dict]

    def __repr__(self) -> str:
        return (f"<analysis run {str(self.out)!r}: {self.sentences} sentences in {self.partitions} partitions "
                f"({self.skipped} already done), {len(self.failures)} failed>")

    def _repr_html_(self) -> str:  # Jupyter
        import html

        failed = "".join(f"<li>{html.escape(f['sentence_id'])}: {html.escape(f['error'])}</li>"
                         for f in self.failures[:20])
        return (f"<p>analysis run <code>{html.escape(str(self.out))}</code>: {self.sentences} sentences in "
                f"{self.partitions} partitions ({self.skipped} already done), {len(self.failures)} failed</p>"
                + (f"<ul>{failed}</ul>" if failed else ""))


def run(model, texts, objective, out: str | Path, position: int = 0, path_token: int = 1,
        partition_size: int = 16, batch_size: int = 8, backend: str | None = None,
        workers: int | None = None, scheduler: str | None = None, progress: bool = True,
        seed: int = 0, description: str | None = None) -> RunSummary:
    """Analyse ``texts`` (strings, or records with ``text`` and optionally ``id``) and write the tables under
    ``out``. ``model`` is a name or folder (``"minilm"``) or a loaded model; with ``workers``/``scheduler``
    it must be a name or folder, which every worker loads. ``objective``: an :class:`~.objectives.Objective`,
    a spec ``objectives.parse`` reads (``"pooled:3"``, ``"mlm:are,is"``, ``"probe:p.npz"``, ...), or a
    readout vector u (u · the final state at ``position``, described by ``description``); the objective's
    description is stored with every sentence.
    Returns a summary; :func:`read_results` reads the tables back."""
    from .. import models
    from ..progress import Progress
    from . import objectives

    items = _items(texts)
    if not items:
        raise InputError("no sentences to analyse")
    if partition_size < 1 or batch_size < 1:
        raise OptionError(f"partition_size and batch_size must be at least 1, got {partition_size}, {batch_size}")
    ref = str(model) if isinstance(model, str | Path) else model
    if (workers or scheduler) and not isinstance(ref, str):
        raise OptionError("with workers or a scheduler, give the model as a name or folder: each worker loads it")
    m = models.load(ref) if isinstance(ref, str) else ref
    if isinstance(objective, str):
        objective = objectives.parse(objective, m, position, seed)
    elif not isinstance(objective, objectives.Objective):
        objective = objectives.from_vector(m, objective, position, description)
    name = ref if isinstance(ref, str) else str(getattr(ref, "path", type(ref).__name__))
    settings = Settings(name, objective.description, objective.fingerprint(), path_token, backend, partition_size,
                        batch_size)
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(settings, items)
    manifest = d / "run.json"
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except ValueError:
            old = {}
        if old.get("fingerprint") != fp:
            raise OptionError(f"{d} holds the results of a different run (other model, objective, sentences or "
                              "settings); give another --out or remove it")
    else:
        import datetime

        manifest.write_text(json.dumps({"fingerprint": fp, "settings": settings.__dict__, "sentences": len(items),
                                        "objective": objective.description, "semantics": "exact",
                                        "date": datetime.datetime.now().isoformat(timespec="seconds")}, indent=1))
    parts = [(i, items[k:k + partition_size]) for i, k in enumerate(range(0, len(items), partition_size))]
    done = {i: json.loads((d / f"done-{i:05d}.json").read_text())
            for i, _ in parts if (d / f"done-{i:05d}.json").exists()}
    todo = [(i, p) for i, p in parts if i not in done]
    bar = Progress(len(todo), "partitions", enabled=progress and bool(todo))
    results = dict(done)
    if not todo:
        pass
    elif not (workers or scheduler):
        an = _Analyzer(m, objective, settings)
        for i, p in todo:
            results[i] = run_partition(an, str(d), i, p)
            bar.update()
    else:
        for i, res in _dask(ref, objective, settings, d, todo, workers, scheduler):
            results[i] = res
            bar.update()
    bar.close()
    failures = [f for i in sorted(results) for f in results[i]["failures"]]
    return RunSummary(d, sum(r["sentences"] for r in results.values()), len(parts), len(done), failures)


def _dask(ref, objective, settings, d: Path, todo, workers, scheduler):
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SemirError("parallel runs need dask: pip install 'semir[data]'") from None
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        # one thread per worker, kernels included: N workers share the machine's cores instead of each
        # starting a thread per core (set before the worker imports numba)
        single = {k: "1" for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
        # dask spawns workers with MALLOC_TRIM_THRESHOLD_=65536, which hands freed memory back at once, and
        # glibc maps every array over 32 MB afresh: each large state array is then page-faulted again on each
        # call (batches of 8 ran 1.5x slower than one at a time). Workers keep their heap instead; it is
        # bounded by one batch's states.
        import dask

        keep = {f"distributed.nanny.pre-spawn-environ.{k}": str(2 ** 30)
                for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")}
        with dask.config.set(keep):
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None, env=single)
        client = Client(cluster)
    try:
        futures = {client.submit(worker_partition, ref, objective, settings, str(d), i, p, key=f"semir-part-{i}",
                                 retries=2, pure=False): i for i, p in todo}
        failed = []
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                yield i, fut.result()
            except Exception as e:  # a partition that failed its retries: report its sentences, by id
                failed.append((i, e))
        if failed:
            i, e = failed[0]
            ids = [sid for j, p in todo if j in dict(failed) for sid, _ in p]
            raise SemirError(f"{len(failed)} partition(s) failed after retries ({type(e).__name__}: {e}); "
                             f"their sentences: {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}; "
                             "rerun to retry them (finished partitions are kept)")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def read_results(out: str | Path) -> tuple[Any, Any]:
    """The ``tokens`` and ``sentences`` tables of a run (pyarrow Tables), finished partitions only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = Path(out)
    done = sorted(d.glob("done-*.json"))
    if not done:
        raise InputError(f"{d}: no finished partitions")
    idx = [p.stem.split("-")[1] for p in done]
    tokens = pa.concat_tables([pq.read_table(d / f"tokens-{i}.parquet") for i in idx])
    sentences = pa.concat_tables([pq.read_table(d / f"sentences-{i}.parquet") for i in idx])
    return tokens, sentences


def summarize(tokens) -> dict:
    """Across the data set: per layer, the fraction of tokens whose best unit's path takes each branch, with a
    95% Wilson interval, and the mean token entropy with its standard error."""
    rows = tokens.to_pylist() if hasattr(tokens, "to_pylist") else list(tokens)
    layers = sorted({r["layer"] for r in rows if r["layer"] is not None})
    branches = [b.removeprefix("share_") for b in BRANCH_STATS]
    table = []
    for layer in layers:
        labels = [r["label"] for r in rows if r["layer"] == layer and r["statistic"] == "argmax_value"]
        n = len(labels)
        entry = {"layer": layer, "tokens": n}
        for b in branches:
            entry[b] = (sum(lab == b for lab in labels) / n, *_wilson(sum(lab == b for lab in labels), n))
        table.append(entry)
    ent_rows = [r for r in rows if r["statistic"] == "entropy"]
    ent = np.array([r["value"] for r in ent_rows])
    by_position = []
    for p in sorted({r["position"] for r in ent_rows}):
        v = np.array([r["value"] for r in ent_rows if r["position"] == p])
        by_position.append({"position": p, "tokens": len(v), "mean": float(v.mean()),
                            "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")})
    return {"branches": table, "entropy_mean": float(ent.mean()) if len(ent) else float("nan"),
            "entropy_se": float(ent.std(ddof=1) / np.sqrt(len(ent))) if len(ent) > 1 else float("nan"),
            "tokens": int(len(ent)), "entropy_by_position": by_position}


def plot_summary(stats: dict, path, model: str, objective: str, sentences: int) -> None:
    """Two panels: the branch of each token's best path per layer (95% intervals), and the mean token
    entropy by position (± one standard error); titled with the model, the objective and the count."""
    from ..figures import legend_outside, pyplot, save, short

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    layers = [r["layer"] for r in stats["branches"]]
    width = 0.2
    for k, br in enumerate(("skip", "query", "key", "value")):
        mid = np.array([r[br][0] for r in stats["branches"]])
        err = np.array([[m - r[br][1], r[br][2] - m] for m, r in zip(mid, stats["branches"])]).T.clip(0)  # rounding
        a.bar(np.array(layers) + (k - 1.5) * width, mid, width, yerr=err, capsize=2, label=br)
    a.set_xlabel("layer")
    a.set_ylabel("fraction of tokens (best unit's top path)")
    a.set_ylim(0, 1.05)
    a.set_xticks(layers)
    legend_outside(a, title="branch")
    pos = stats["entropy_by_position"]
    b.errorbar([p["position"] for p in pos], [p["mean"] for p in pos], yerr=[p["se"] for p in pos],
               marker="o", ms=3, capsize=2)
    b.set_xlabel("token position")
    b.set_ylabel("entropy of gradient flow (nats)")
    fig.suptitle(f"{model}: {sentences} sentences; objective: {short(objective, 90)}", fontsize=9)
    fig.tight_layout()
    save(fig, path)


def _wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion k/n (scipy); NaN for no tokens."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)
