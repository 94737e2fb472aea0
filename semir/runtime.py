"""Run-time input handling shared by every backend: check, convert, bind symbolic dims."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError, suggest
from .ir.node import Program
from .ir.ops import Op
from .ir.types import SymDim, TensorType, bind_dim, unify_dim


def bind_inputs(prog: Program, inputs: dict[str, Any], allow_nonfinite: bool = False
                ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Check the inputs against the signature; return arrays of the declared dtypes and dim bindings."""
    params = prog.inputs
    names = [p.name for p in params]
    extra = [k for k in inputs if k not in names]
    if extra:
        raise InputError(f"unexpected input {extra[0]!r}{suggest(extra[0], names)}; "
                         f"the inputs are: {', '.join(names)}")
    missing = [n for n in names if n not in inputs]
    if missing:
        want = {p.name: p.type for p in params}
        raise InputError("missing input" + ("s " if len(missing) > 1 else " ")
                         + ", ".join(f"{m!r} ({want[m]})" for m in missing))
    env: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for p in params:
        arrays[p.name] = _convert(p.name, inputs[p.name], p.type, env, allow_nonfinite)
    env = {k: int(v) for k, v in env.items()}
    _check_indices(prog, env)
    return arrays, env


def _check_indices(prog: Program, env: dict[str, int]) -> None:
    """Integer indices into symbolic dims are checked once the dims are bound (``h[5]`` with S = 3 would
    otherwise fail deep in a kernel, or, negative, wrap to another element)."""
    for n in prog.nodes:
        if n.op is not Op.index:
            continue
        src = prog.by_name[n.inputs[0]].type
        for axis, (item, d) in enumerate(zip(n.attr("spec"), src.shape)):
            if isinstance(item, int) and not isinstance(d, int):
                size = int(bind_dim(d, env))
                if not -size <= item < size:
                    bound = ", ".join(f"{k}={v}" for k, v in sorted(env.items()))
                    raise InputError(f"node {n.name!r}: index {item} is out of range for axis {axis} of size "
                                     f"{size} ({d} with {bound})")


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {tuple(a.shape)}" if a.ndim else f"{a.dtype} scalar"


def _convert(name: str, value: Any, t: TensorType, env: dict, allow_nonfinite: bool) -> np.ndarray:
    try:
        a = np.asarray(value)
    except (ValueError, TypeError):
        raise InputError(f"input {name!r}: expected {t}, got a value numpy cannot read as an array") from None
    if a.dtype.kind not in "biuf":
        raise InputError(f"input {name!r}: expected {t}, got non-numeric {_describe(a)}")
    if t.dtype.is_int and a.dtype.kind == "f":
        # ids and counts are never floats: truncating 2.7 to 2 would pick a row nobody asked for
        raise InputError(f"input {name!r}: expected integers ({t}), got {_describe(a)}; pass an integer array")
    if t.dtype.value == "bool" and (a.dtype.kind not in "biu" or (a.dtype.kind != "b" and a.size
                                                                   and not np.all((a == 0) | (a == 1)))):
        raise InputError(f"input {name!r}: expected booleans ({t}), got {_describe(a)}")
    ok = a.ndim == t.rank
    trial = dict(env)
    if ok:
        for want, got in zip(t.shape, a.shape):
            if not unify_dim(want, got, trial):
                ok = False
                break
    if not ok:
        shown = TensorType(t.dtype, tuple(bind_dim(d, {k: v for k, v in env.items() if isinstance(v, int)})
                                          for d in t.shape))
        known = ", ".join(f"{k}={v}" for k, v in sorted(env.items()))
        raise InputError(f"input {name!r}: expected {shown}, got {_describe(a)}"
                         + (f" (with {known} bound by earlier inputs)" if known and any(
                             isinstance(d, SymDim) for d in t.shape) else ""))
    env.update(trial)
    out = _cast(name, a, t)
    if out.dtype.kind == "f" and not allow_nonfinite and not _all_finite(out):
        bad = "NaN" if np.any(np.isnan(out)) else "inf"
        raise InputError(f"input {name!r} contains {bad}; pass allow_nonfinite=True (CLI: --allow-nonfinite) "
                         "to run anyway")
    return out


_EXPONENT = {np.dtype(np.float32): (np.int32, np.int32(0x7F800000)),
             np.dtype(np.float64): (np.int64, np.int64(0x7FF0000000000000))}


def _all_finite(a: np.ndarray) -> bool:
    """No NaN or inf in ``a``. Large contiguous arrays (a model's weights, on every call) are checked by their
    exponent bits in one compiled pass, without the boolean temporary of ``np.isfinite`` (10.6 M weights of
    MiniLM's shape: 3 ms a call, a tenth of a gradient)."""
    if a.size < 65536 or a.dtype not in _EXPONENT or not a.flags.c_contiguous:
        return bool(np.all(np.isfinite(a)))
    from semir.backends.numba.prelude import count_nonfinite

    view, mask = _EXPONENT[a.dtype]
    return count_nonfinite(a.reshape(-1).view(view), mask) == 0


def _cast(name: str, a: np.ndarray, t: TensorType) -> np.ndarray:
    """``a`` in the declared dtype. Integers must fit (no wrap-around); integers fed to a float input must be
    exact in it; floats are rounded to the nearest value of a narrower float dtype (IEEE round to nearest,
    as ``numpy.astype`` does), but a finite value that would overflow to inf is refused."""
    want = t.dtype.numpy
    if a.dtype == want:
        return a
    if t.dtype.is_int and a.size:
        info = np.iinfo(want)
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise InputError(f"input {name!r}: value {int(bad)} does not fit {t.dtype.value} "
                             f"({info.min}..{info.max})")
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(want)
    if want.kind == "f" and a.size:
        if a.dtype.kind in "iu" and not np.array_equal(out.astype(a.dtype), a):
            bad = a.ravel()[np.argmax((out.astype(a.dtype) != a).ravel())]
            raise InputError(f"input {name!r}: integer {int(bad)} is not exactly representable in {t.dtype.value}")
        if a.dtype.kind == "f":
            over = np.isfinite(a) & ~np.isfinite(out)
            if np.any(over):
                raise InputError(f"input {name!r}: value {float(a[over].ravel()[0])!r} overflows "
                                 f"{t.dtype.value}")
    return out


def bind_attrs(attrs: dict[str, Any], env: dict[str, int]) -> dict[str, Any]:
    """Attributes with symbolic dims (reshape shapes, slice bounds) made concrete."""
    out = dict(attrs)
    if "shape" in out:
        out["shape"] = tuple(bind_dim(d, env) for d in out["shape"])
    if "spec" in out:
        out["spec"] = tuple(tuple(bind_dim(b, env) if b is not None else None for b in it)
                            if isinstance(it, tuple) else it for it in out["spec"])
    return out
