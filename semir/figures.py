"""Matplotlib figures, one convention for all: legends outside the data, every axis labelled, titles that
say what was measured, saved with the whole drawing inside the image."""

from __future__ import annotations

from .errors import SemirError


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SemirError("figures are drawn with matplotlib: pip install matplotlib") from None
    return plt


def short(text: str, n: int = 80) -> str:
    """``text`` cut to ``n`` characters, for a title."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def legend_outside(ax, **kw) -> None:
    """The legend to the right of the axes, where it cannot cover data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **{"fontsize": 8, **kw})


def save(fig, path) -> None:
    """Save with every label, title and outside legend inside the image, and close."""
    plt = pyplot()
    fig.savefig(path, bbox_inches="tight", dpi=110)
    plt.close(fig)
