"""The paper's experiments, each one command writing a PNG figure and its numbers (JSON, CSV).

    python -m semir.experiments NAME [--full] [--out results] [--seed 0]

Without ``--full`` each runs a reduced setting (what CI runs); ``--full`` is the paper's setting.
"""

from __future__ import annotations

import importlib
import inspect

from ..errors import OptionError

EXPERIMENTS = {"fig1": "fig1", "sec51": "sec51", "mlp-hidden": "mlp_hidden", "sva": "sva",
               "minilm-length": "minilm_length", "mdl": "mdl"}


def run(name: str, out, full: bool = False, seed: int = 0, progress: bool = True, **options) -> dict:
    """Run one experiment; ``options`` go to it (``semantics="brunoflow"`` for sec51, ``model_path`` for the
    MiniLM ones)."""
    from pathlib import Path

    from ..errors import unknown

    if name not in EXPERIMENTS:
        raise unknown("experiment", name, EXPERIMENTS)
    mod = importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")
    accepted = set(inspect.signature(mod.run).parameters) - {"out", "full", "seed", "progress"}
    extra = sorted(set(options) - accepted)
    if extra:
        raise OptionError(f"experiment {name!r} takes no option {extra[0]!r}; its options: "
                          f"{', '.join(sorted(accepted)) or 'none'}")
    return mod.run(Path(out), full=full, seed=seed, progress=progress, **options)
