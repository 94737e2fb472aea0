"""Semirings as data, and the registry that names them (``"entropy"``, ``"topk:5"``, user-defined)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import OptionError, unknown
from .base import EDGE_END, EDGE_NONE, Field, ScalarFunctions, Semiring, State
from .builtin import BUILTIN, topk

_REGISTRY: dict[str, Semiring] = dict(BUILTIN)


MAX_TOPK = 1024


def names() -> list[str]:
    return list(_REGISTRY) + ["topk:K"]


def get(name: str | Semiring) -> Semiring:
    """The semiring named ``name`` (``topk:K`` for any K >= 1), or a Semiring passed through."""
    if isinstance(name, Semiring):
        return name
    if name in _REGISTRY:
        return _REGISTRY[name]
    if isinstance(name, str) and name.startswith("topk:"):
        k = name[5:]
        # ASCII digits only: int() also reads "+3", " 3" and "٣"; K bounds the per-element state (K floats)
        if not (k.isascii() and k.isdigit()) or not 1 <= int(k) <= MAX_TOPK:
            raise OptionError(f"bad semiring {name!r}: topk:K needs an integer K in 1..{MAX_TOPK}")
        return topk(int(k))
    raise unknown("semiring", str(name), names())


def register(semiring: Semiring, replace: bool = False) -> Semiring:
    """Make a semiring available by name to ``semir.compile`` and the CLI. A built-in name, or one already
    registered, is replaced only with ``replace=True``: silently shadowing ``entropy`` would change what
    every later ``compile(..., "entropy")`` computes."""
    if not isinstance(semiring, Semiring):
        raise OptionError(f"register expects a Semiring, got {type(semiring).__name__}")
    if (semiring.name in _REGISTRY or semiring.name.startswith("topk:")) and not replace:
        what = "a built-in semiring" if semiring.name in BUILTIN or semiring.name.startswith("topk:") else \
            "already registered"
        raise OptionError(f"semiring name {semiring.name!r} is {what}; choose another name or pass replace=True")
    _REGISTRY[semiring.name] = semiring
    return semiring


def from_scalar(name: str, zero: float, one: float, plus: Callable[[float, float], float],
                times: Callable[[float, float], float], lift: Callable[[float], float] = lambda w: w,
                finalize: Callable[[float], float] = lambda x: x) -> Semiring:
    """A semiring over real numbers from scalar Python functions.

    It runs on the reference backend (its functions vectorised with
    ``numpy.frompyfunc``: slow, but exact to its definition) and on the Numba
    backend, which compiles the functions with Numba; a function Numba cannot
    compile is refused there with the reason. Every value is rounded to the
    program's float dtype after each ⊕, ⊗ and lift, on both backends::

        tropical = semir.semirings.from_scalar("min_plus_log", np.inf, 0.0, min,
                                               lambda a, b: a + b, lambda w: -np.log(abs(w)))
    """
    def vec(f, n):
        g = np.frompyfunc(f, n, 1)
        return lambda *xs: np.asarray(g(*xs), dtype=np.result_type(*xs, np.float32))

    p, t, li, fi = vec(plus, 2), vec(times, 2), vec(lift, 1), vec(finalize, 1)
    return Semiring(
        name=name,
        fields=(Field("v", zero, one),),
        plus=lambda a, b: {"v": p(a["v"], b["v"])},
        times=lambda a, b: {"v": t(a["v"], b["v"])},
        lift=lambda w: {"v": li(np.asarray(w))},
        finalize=lambda s: fi(s["v"]),
        description=f"user-defined semiring {name!r}",
        scalar=ScalarFunctions(zero, one, plus, times, lift, finalize),
    )


__all__ = ["EDGE_END", "EDGE_NONE", "Field", "ScalarFunctions", "Semiring", "State", "from_scalar", "get", "names",
           "register"]
