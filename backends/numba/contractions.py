"""Compiled element passes of the ring semirings' BLAS contractions (``backends/semiring_kernels.py``).

A shifted contraction needs per-weight operands (|W| and |W|·log|W|, in float64) on every call. As NumPy
expressions they took eight passes over the weight, about 6 ms for a 384×1536 weight on one core; fused
into one compiled pass with the vectorised log they take 0.6 ms (float32 weights: 0.3 ms, their log taken in
float32, as the reference takes it for a float32 program). Results agree with the NumPy form to rounding.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from numba import njit

from .checked_cache import protect
from .prelude import log_positive, log_positive32


@njit(cache=True, error_model="numpy")
def _abs_xlogx(w, aw, awl, tmp):
    n = w.shape[0]
    for i in range(n):
        x = abs(np.float64(w[i]))
        aw[i] = x
        tmp[i] = x if x > 0 else 1.0  # log(1) = 0 gives 0·log 0 = 0 below
    log_positive(tmp, awl, n)
    for i in range(n):
        awl[i] = aw[i] * awl[i]


@njit(cache=True, error_model="numpy")
def _abs_xlogx32(w, aw, awl, tmp, lw):
    # a float32 weight: |w| and |w|·log|w| in float32 (log_positive32, 0.33 against 0.9 ns), as the reference
    # takes the log, for the float32 GEMMs of a float32 program
    n = w.shape[0]
    for i in range(n):
        x = abs(w[i])
        aw[i] = x
        tmp[i] = x if x > 0 else np.float32(1.0)
    log_positive32(tmp, lw, n)
    for i in range(n):
        awl[i] = aw[i] * lw[i]


_local = threading.local()


def _buffers(n: int, dtype) -> list[np.ndarray]:
    """This thread's buffers of ``n`` elements of ``dtype`` (three, and a float32 one for the logs), one set per
    weight size and dtype, reused from call to call: fresh ones cost their page faults on every call, 2-6× the
    pass itself for a weight of MiniLM's FFN. A model has a few weight sizes (MiniLM two: 14 MB of buffers)."""
    pools = getattr(_local, "pools", None)
    if pools is None:
        pools = _local.pools = {}
    key = (n, np.dtype(dtype).str)
    if key not in pools:
        pools[key] = [np.empty(n, dtype), np.empty(n, dtype), np.empty(n, dtype), np.empty(n, np.float32)]
    return pools[key]


def abs_xlogx(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|W|, |W|·log|W|) in W's dtype (float32 or float64), shaped like ``W``; 0·log 0 = 0.

    The arrays are this thread's buffers: valid until its next call (the contraction uses them at once)."""
    flat = np.ascontiguousarray(W).reshape(-1)
    aw, awl, tmp, lw32 = _buffers(flat.size, flat.dtype)
    if flat.dtype == np.float32:
        _abs_xlogx32(flat, aw, awl, tmp, lw32)
    else:
        _abs_xlogx(flat.astype(np.float64, copy=False), aw, awl, tmp)
    return aw.reshape(W.shape), awl.reshape(W.shape)


protect(sys.modules[__name__])  # checksummed disk cache for the kernels above (see checked_cache.py)
