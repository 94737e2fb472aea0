"""Output helpers shared by the experiments: numbers as JSON and CSV, figures as PNG, timings."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from ..figures import legend_outside, pyplot, save, short  # noqa: F401  (the experiments' figure helpers)


def write(out: Path, name: str, summary: dict | None, rows: list[dict] | None = None) -> None:
    """``name.json`` (the summary, unless None) and ``name.csv`` (the rows, if any) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if summary is not None:
        (out / f"{name}.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(out / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(rows)


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t


def spearman(x, y) -> float:
    """Spearman's rank correlation (scipy; ties get their average rank); NaN when either side is constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")  # scipy warns and returns NaN here; the experiments report it as such
    return float(spearmanr(x, y).statistic)
