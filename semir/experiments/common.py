"""Output helpers shared by the experiments: numbers as JSON and CSV, figures as PNG, timings."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from ..errors import SemirError


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SemirError("experiments write figures with matplotlib: pip install matplotlib") from None
    return plt


def write(out: Path, name: str, summary: dict, rows: list[dict] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
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
