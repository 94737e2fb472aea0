"""The ``semir`` command. User errors print one clear message and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import zipfile
from typing import Any

import numpy as np

from . import semirings
from .compiler import BACKENDS, DEFAULT_BACKEND, POINTERS, compile
from .errors import InputError, OptionError, SemirError, SourceError
from .passes.pipeline import GRANULARITIES, optimize, pass_names

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: same exit code, no traceback
        self.print_usage(sys.stderr)
        print(f"semir: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _load(args) -> Any:
    from . import load

    return load(args.model, entry=args.entry)


def _parse_value(name: str, text: str) -> Any:
    shown = text if len(text) <= 40 else text[:40] + "..."
    try:
        v = json.loads(text)
    except (json.JSONDecodeError, ValueError):  # ValueError: an integer of more than 4,300 digits
        raise InputError(f"input {name!r}: cannot read {shown!r} as a number or a JSON list of numbers") from None
    except RecursionError:
        raise InputError(f"input {name!r}: the JSON list is nested too deeply") from None
    if not isinstance(v, int | float | list) or isinstance(v, bool):
        raise InputError(f"input {name!r}: expected a number or a JSON list of numbers, got {shown!r}")
    return v


def _inputs(args) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.inputs:
        try:
            f = np.load(args.inputs, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(f"cannot read inputs from {args.inputs!r}: {e}") from None
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise InputError(f"--inputs {args.inputs!r}: expected an .npz file of arrays by input name "
                             "(np.savez(path, x=..., y=...)); for one array use --input NAME=VALUE")
        with f:
            values.update({k: f[k] for k in f.files})
    for item in args.input or []:
        if "=" not in item:
            raise InputError(f"--input expects NAME=VALUE, got {item!r}")
        name, text = item.split("=", 1)
        values[name.strip()] = _parse_value(name.strip(), text.strip())
    return values


_PATH_SPEC = re.compile(r"^([^\[\]]+)(?:\[([-0-9, ]*)\])?$")


def _path_spec(text: str) -> tuple[str, tuple[int, ...]]:
    m = _PATH_SPEC.match(text.strip())
    if not m:
        raise OptionError(f"--path expects NAME or NAME[i,j,...], got {text!r}")
    try:
        idx = tuple(int(x) for x in m.group(2).split(",") if x.strip()) if m.group(2) else ()
    except ValueError:
        raise OptionError(f"--path expects NAME or NAME[i,j,...] with integer indices, got {text!r}") from None
    return m.group(1), idx


def _writable_file(path: str, flag: str) -> None:
    """Fail before any work when an output file cannot be written."""
    from pathlib import Path

    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise InputError(f"{flag} {path!r}: the directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{flag} {path!r}: the directory {str(parent)!r} is not writable")


def _writable_dir(path: str, flag: str):
    from pathlib import Path

    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{flag} {path!r}: cannot create the directory ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise InputError(f"{flag} {path!r}: the directory is not writable")
    return out


def cmd_check(args) -> int:
    prog = _load(args)
    opt = optimize(prog)
    print(f"{args.model}: ok ({len(prog.nodes)} nodes, {len(opt.nodes)} after the pipeline; "
          f"entry {prog.name!r}, inputs: {', '.join(f'{n.name}: {n.type}' for n in prog.inputs)})")
    return 0


def cmd_ir(args) -> int:
    prog = _load(args)
    if not args.after:
        print(prog.format(locations=args.locations), end="")
        return 0
    names = pass_names(args.granularity)
    if args.after != "all" and args.after not in names:
        raise OptionError(f"unknown pass {args.after!r}; valid choices: all, {', '.join(names)}")

    last: list = []

    def show(name, p):
        if args.after == "all":
            print(f"// ---- after {name}")
            print(p.format(locations=args.locations), end="")
        elif name == args.after:  # a pass that runs twice is shown after its last run
            last[:] = [p]
    optimize(prog, granularity=args.granularity, on_pass=show)
    if last:
        print(last[0].format(locations=args.locations), end="")
    return 0


def cmd_compile(args) -> int:
    prog = _load(args)
    kernel = compile(prog, args.semiring, backend=args.backend, granularity=args.granularity, pointers=args.pointers)
    if args.emit == "ir":
        print(kernel.program, end="")
        return 0
    emit = getattr(kernel, "emit", None)
    if emit is None:
        raise OptionError(f"--emit {args.emit} needs a code-generating backend; the "
                          f"{kernel.backend!r} backend interprets the IR (try --emit ir)")
    print(emit(args.emit), end="")
    return 0


def cmd_run(args) -> int:
    prog = _load(args)
    paths = [_path_spec(p) for p in args.path or []]
    if args.out:
        if not args.out.endswith(".npz"):  # numpy would append .npz and write another file than the one named
            raise InputError(f"--out {args.out!r}: the file name must end with .npz")
        _writable_file(args.out, "--out")
    wrt = list(dict.fromkeys((args.wrt or []) + [n for n, _ in paths])) if args.wrt else None
    kernel = compile(prog, args.semiring, backend=args.backend, wrt=wrt, granularity=args.granularity,
                     allow_nonfinite=args.allow_nonfinite, pointers=args.pointers)
    result = kernel(**_inputs(args))
    if args.out:
        arrays = {"output": np.asarray(result.output)}
        for name in result.wrt:
            arrays[f"value/{name}"] = np.asarray(result[name])
            for k, v in result.state(name).items():
                arrays[f"state/{name}/{k}"] = v
        np.savez(args.out, **arrays)
    if args.json:
        doc = result.to_json()
        if paths:
            doc["paths"] = {f"{n}{list(i)}": [[s.node, list(s.index), s.weight] for s in result.path(n, i)]
                            for n, i in paths}
        print(json.dumps(doc))
        return 0
    sr = result.semiring
    print(f"semiring {sr.name} ({sr.description}); backend {result.backend}; granularity {result.granularity}")
    print(f"output = {_fmt(result.output)}")
    for name in result.wrt:
        print(f"{name} = {_fmt(result[name])}")
    for name, idx in paths:
        print(f"{name}{list(idx)}: {result.path(name, idx)}")
    return 0


def _fmt(a: Any) -> str:
    a = np.asarray(a)
    text = np.array2string(a, precision=6, threshold=200, max_line_width=100)
    return text if "\n" not in text else "\n  " + text.replace("\n", "\n  ")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = _Parser(prog="semir", description="Semiring backpropagation compiler: gradients, top paths, entropy.")
    p.add_argument("--version", action="version", version=f"semir {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def model_cmd(name: str, help: str):
        c = sub.add_parser(name, help=help)
        c.add_argument("model", help="model file (.semir)")
        c.add_argument("--entry", help="the def to use as entry point (default: main, else the last def)")
        return c

    model_cmd("check", "parse and verify a model")
    c = model_cmd("ir", "print the IR, optionally after a pass")
    c.add_argument("--after", metavar="PASS|all", help="show the IR after this pass (or after each)")
    c.add_argument("--granularity", default="op", choices=GRANULARITIES)
    c.add_argument("--locations", action="store_true", help="print source locations")
    sr_help = f"semiring: {', '.join(semirings.names())}"
    pointers_help = ("path pointers: kept for every element in the sweep (eager), or recovered for the elements a "
                     "path visits (lazy; max_product on numba and reference); auto: lazy on numba for max_product")
    c = model_cmd("compile", "compile for a semiring and print an artefact")
    c.add_argument("--semiring", required=True, help=sr_help)
    c.add_argument("--backend", default=None, help=f"one of: {', '.join(BACKENDS)} (default {DEFAULT_BACKEND})")
    c.add_argument("--granularity", default="op", choices=GRANULARITIES)
    c.add_argument("--emit", default="ir", choices=("ir", "python", "llvm", "ptx"))
    c.add_argument("--pointers", default="auto", choices=POINTERS, help=pointers_help)
    c = model_cmd("run", "run the forward pass and the semiring backward pass")
    c.add_argument("--semiring", default="sum_product", help=sr_help)
    c.add_argument("--backend", default=None, help=f"one of: {', '.join(BACKENDS)} (default {DEFAULT_BACKEND})")
    c.add_argument("--granularity", default="op", choices=GRANULARITIES)
    c.add_argument("--wrt", nargs="+", metavar="NAME", help="nodes to report (default: every float input)")
    c.add_argument("--input", action="append", metavar="NAME=VALUE", help="a number or JSON nested list")
    c.add_argument("--inputs", metavar="FILE.npz", help="inputs by name from an .npz file")
    c.add_argument("--path", action="append", metavar="NAME[INDEX]", help="print the recovered path")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.add_argument("--out", metavar="FILE.npz", help="save reported values and raw states")
    c.add_argument("--allow-nonfinite", action="store_true", help="accept NaN/inf in inputs")
    c.add_argument("--pointers", default="auto", choices=POINTERS, help=pointers_help)
    c = sub.add_parser("analyze", help="branch flow, per-token entropy and top paths on a real model")
    c.add_argument("model", help="'minilm' or a BERT folder (config.json, model.safetensors, tokenizer.json)")
    c.add_argument("--sentence", action="append", help="a sentence (repeatable)")
    c.add_argument("--sentences", metavar="FILE", help="a file of sentences, one per line")
    c.add_argument("--position", type=int, default=0, help="token position whose final state is read out")
    c.add_argument("--objective", metavar="SPEC", help="what to attribute: FILE.npy (u · the final state at "
                   "--position), pooled:K, cosine:TEXT, probe:FILE.npz[:A-B], mlm:TOKEN[,TOKEN] (at the [MASK]), "
                   "or random")
    c.add_argument("--readout", metavar="SPEC", help="the older name of --objective")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--path-token", type=int, default=1, help="print the top path from this token")
    c.add_argument("--backend", default=None, help=f"one of: {', '.join(BACKENDS)}")
    c.add_argument("--out", metavar="DIR", help="write analysis.json, Graphviz paths and plots here")
    c.add_argument("--plot", action="store_true", help="with --out: write branch-flow figures (matplotlib)")
    c.add_argument("--json", action="store_true", help="print the records as JSON")
    c.add_argument("--dataset", metavar="FILE", help="a data set (.txt, .jsonl, .csv or .parquet with a 'text' "
                   "column): Parquet tables under --out, resumable")
    c.add_argument("--workers", type=int, metavar="N", help="with --dataset: N worker processes (dask LocalCluster)")
    c.add_argument("--scheduler", metavar="ADDRESS", help="with --dataset: an existing dask scheduler")
    c.add_argument("--partition-size", type=int, default=16, help="with --dataset: sentences per partition")
    c.add_argument("--batch-size", type=int, default=8, help="with --dataset: same-length sentences per call")
    from .experiments import EXPERIMENTS

    c = sub.add_parser("report", help="a self-contained HTML report of an analysis (opens offline)")
    c.add_argument("results", help="the --out directory of 'semir analyze' (sentences or a --dataset run)")
    c.add_argument("--out", required=True, metavar="FILE.html", help="where the report goes")
    c.add_argument("--max-sentences", type=int, default=50, metavar="N",
                   help="sentences in the report's picker (default 50; the summary covers all)")
    c = sub.add_parser("experiment", help="run one of the paper's experiments (figure + numbers)")
    c.add_argument("name", help=f"one of: {', '.join(EXPERIMENTS)}")
    c.add_argument("--full", action="store_true", help="the paper's setting (default: the reduced one CI runs)")
    c.add_argument("--out", default="results", metavar="DIR", help="where the PNG, JSON and CSV go")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--semantics", choices=("exact", "brunoflow"),
                   help="sec51 and sva: exact or the paper engine's semantics (mdl reports both)")
    return p


def cmd_experiment(args) -> int:
    from . import experiments

    opts = {"semantics": args.semantics} if args.semantics else {}
    summary = experiments.run(args.name, args.out, full=args.full, seed=args.seed, **opts)
    print(f"{args.name}: wrote {args.out}/ ({summary.get('seconds', 0.0):.1f} s)")
    return 0


def cmd_report(args) -> int:
    from .analysis.htmlreport import report

    if not args.out.endswith((".html", ".htm")):
        raise InputError(f"--out {args.out!r}: the report is HTML; give a name ending in .html")
    _writable_file(args.out, "--out")
    r = report(args.results, args.out, max_sentences=args.max_sentences)
    print(f"wrote {args.out} ({len(r.html) / 1e6:.1f} MB, {r.data.total} sentences; opens offline)")
    return 0


def cmd_analyze(args) -> int:
    from pathlib import Path

    from . import analysis, models

    if args.dataset or args.workers or args.scheduler:
        return _analyze_dataset(args)
    m = models.load(args.model)
    sentences = list(args.sentence or [])
    if args.sentences:
        try:
            sentences += [ln.strip() for ln in Path(args.sentences).read_text().splitlines() if ln.strip()]
        except OSError as e:
            raise InputError(f"cannot read sentences from {args.sentences!r}: {e.strerror}") from None
    if not sentences:
        raise InputError("give --sentence TEXT or --sentences FILE")
    obj = _objective(args, m)
    objective = obj.description
    out = _writable_dir(args.out, "--out") if args.out else None
    print(f"objective: {objective}", file=sys.stderr)
    docs = []
    for n, text in enumerate(_progress(sentences)):
        ids = m.tokenize(text)
        if obj.position is not None and not 0 <= obj.position < len(ids):
            raise InputError(f"--position {obj.position} is outside the {len(ids)} tokens of {text!r}")
        try:
            position = obj.position_of(ids)
        except InputError as e:
            raise InputError(f"{e} ({text!r})") from None
        if not 0 <= args.path_token < len(ids):
            raise InputError(f"--path-token {args.path_token} is outside the {len(ids)} tokens of {text!r} "
                             f"(0..{len(ids) - 1})")
        tokens = m.tokens(ids)
        stats = analysis.token_stats(m, ids, None, position, backend=args.backend, objective=obj)
        flow = analysis.branch_flow(m, ids, None, position, backend=args.backend, objective=obj)
        best = compile(obj.program(m, position), "max_product", backend=args.backend,
                       wrt=["embeddings"])(**obj.single_inputs(m, ids))
        paths = [analysis.top_paths(best, "embeddings", (t,))[0] for t in range(len(ids))]
        tok, path = args.path_token, paths[args.path_token]
        docs.append({"id": str(n), "sentence": text, "objective": objective, "position": position,
                     "output": obj.value(best),
                     "tokens": tokens, "token_stats": stats, "branch_flow": flow,
                     "top_path": {"token": tok, "value": path.value, "text": path.format(tokens=tokens),
                                  "steps": [[s.node, list(s.index), s.weight] for s in path]},
                     "top_paths": [{"token": t, "value": p.value, "layers": p.layers(tokens)}
                                   for t, p in enumerate(paths)]})
        if out:
            title = f"top path from token {tok} {tokens[tok]!r} of {text!r} ({objective})"
            (out / f"sentence{n}.dot").write_text(analysis.path_to_dot([path], title, tokens=tokens))
            if args.plot:
                from .analysis.branch import plot_branch_flow

                plot_branch_flow(flow, out / f"sentence{n}_branches.png", f"{text!r}", objective)
        if not args.json:
            _print_analysis(docs[-1], m.layers)
    if out:
        meta = {"model": args.model, "objective": objective, "semantics": "exact",
                "date": datetime.datetime.now().isoformat(timespec="seconds")}
        (out / "analysis.json").write_text(json.dumps({**meta, "sentences": docs}, indent=1))
        print(f"wrote {out}/analysis.json; 'semir report {out} --out report.html' draws it", file=sys.stderr)
    if args.json:
        print(json.dumps(docs))
    return 0


def _analyze_dataset(args) -> int:
    from .analysis import dataset

    if not args.dataset:
        raise InputError("--workers and --scheduler need --dataset FILE")
    if not args.out:
        raise InputError("--dataset needs --out DIR for its tables")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    rows = dataset.read_dataset(args.dataset)
    out = _writable_dir(args.out, "--out")
    from . import models

    m = models.load(args.model)
    obj = _objective(args, m)
    objective = obj.description
    print(f"objective: {objective}", file=sys.stderr)
    print(f"compiling the kernels, then {len(rows)} sentences in partitions of {args.partition_size}",
          file=sys.stderr)
    summary = dataset.run(args.model, rows, obj, out,
                          path_token=args.path_token, partition_size=args.partition_size,
                          batch_size=args.batch_size, backend=args.backend,
                          workers=args.workers, scheduler=args.scheduler)
    tokens, _ = dataset.read_results(out)
    stats = dataset.summarize(tokens)
    (out / "summary.json").write_text(json.dumps({"objective": objective, "sentences": summary.sentences,
                                                  "failures": summary.failures, **stats}, indent=1))
    if args.plot:
        dataset.plot_summary(stats, out / "summary.png", args.model, objective, summary.sentences)
    if args.json:
        print(json.dumps({"sentences": summary.sentences, "failures": summary.failures, **stats}))
    else:
        print(f"{summary.sentences} sentences analysed ({summary.skipped} of {summary.partitions} partitions were "
              f"already done); tables in {out}/")
        print(f"mean token entropy {stats['entropy_mean']:.3f} ± {stats['entropy_se']:.3f} nats "
              f"({stats['tokens']} tokens); branch of each token's best path (95% interval):")
        for r in stats["branches"]:
            cells = "  ".join(f"{b} {r[b][0]:.2f} [{r[b][1]:.2f}, {r[b][2]:.2f}]"
                              for b in ("skip", "query", "key", "value"))
            print(f"  layer {r['layer']}: {cells}")
    for f in summary.failures:
        print(f"failed: sentence {f['sentence_id']}: {f['error']}", file=sys.stderr)
    return 1 if summary.failures else 0


def _objective(args, m):
    """The objective (``--objective``, or its older spelling ``--readout``), described in one line."""
    from .analysis import objectives

    if args.objective and args.readout:
        raise InputError("give --objective or --readout, not both (--readout is --objective's older name)")
    spec = args.objective or args.readout
    if spec is None:
        raise InputError(f"--objective: give what to attribute: {', '.join(objectives.KINDS)} (--objective "
                         "random for a seeded random direction)")
    return objectives.parse(spec, m, args.position, args.seed)


def _progress(items: list):
    from .progress import Progress

    bar = Progress(len(items), "sentences", enabled=len(items) > 1)
    for item in items:
        yield item
        bar.update()
    bar.close()


def _print_analysis(doc: dict, layers: int) -> None:
    print(f"== {doc['sentence']}")
    print(f"  {'pos':>3} {'token':12s} {'entropy':>9s} {'log Z':>9s} {'|grad|':>9s}")
    for r in doc["token_stats"]:
        print(f"  {r['position']:3d} {r['token']:12s} {r['entropy']:9.3f} {r['log_z']:9.3f} {r['grad_norm']:9.4f}")
    print("  branch of the best path at each attention input, per token (argmax-unit rule),")
    print("  then the mean share of hidden units per branch (skip/query/key/value):")
    for i in range(layers):
        rows = [r for r in doc["branch_flow"] if r["layer"] == i]
        cells = " ".join(f"{r['argmax_branch'][0]}" for r in rows)
        shares = "/".join(f"{np.mean([r[f'share_{b}'] for r in rows]):.2f}" for b in ("skip", "query", "key", "value"))
        print(f"    layer {i}: {cells}   {shares}")
    tp = doc["top_path"]
    print(f"  top path from token {tp['token']} ({doc['tokens'][tp['token']]}):")
    print("\n".join("    " + line for line in tp["text"].splitlines()))


COMMANDS = {"check": cmd_check, "ir": cmd_ir, "compile": cmd_compile, "run": cmd_run, "analyze": cmd_analyze,
            "report": cmd_report, "experiment": cmd_experiment}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SemirError as e:
        print(str(e) if isinstance(e, SourceError) else f"semir: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0
    except OSError as e:  # a file the user named could not be written or read (disk full, permissions)
        print(f"semir: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
