"""Compiled element passes of the ring semirings' BLAS contractions (``backends/semiring_kernels.py``).

A shifted contraction needs per-weight operands (|W| and |W|·log|W|) on every call. As NumPy expressions they
took eight passes over the weight, about 6 ms for a 384×1536 weight on one core; as one compiled pass with a
vectorised log, 0.6 ms in float64 and less for a float32 weight (float32 operands and log, as the reference
takes the log for a float32 program). Results agree with the NumPy form to rounding.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
from numba import njit

from . import prelude
from .checked_cache import protect
from .prelude import log32, log_positive


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
def _abs_xlogx32(w, aw, awl):
    # a float32 weight: |w| and |w|·log|w| in float32 (log32, 16 lanes), as the reference takes the log, for
    # the float32 GEMMs of a float32 program
    for i in range(w.shape[0]):
        x = abs(w[i])
        aw[i] = x
        awl[i] = x * log32(x if x > 0 else np.float32(1.0))  # 0·log 0 = 0


_local = threading.local()


def _buffers(n: int, dtype) -> list[np.ndarray]:
    """This thread's three buffers of ``n`` elements of ``dtype``, one set per weight size and dtype, reused
    from call to call: fresh ones cost their page faults on every call, 2-6× the pass itself for a weight of
    MiniLM's FFN. A model has a few weight sizes (MiniLM two: 9 MB of buffers)."""
    pools = getattr(_local, "pools", None)
    if pools is None:
        pools = _local.pools = {}
    key = (n, np.dtype(dtype).str)
    if key not in pools:
        pools[key] = [np.empty(n, dtype), np.empty(n, dtype), np.empty(n, dtype)]
    return pools[key]


def abs_xlogx(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|W|, |W|·log|W|) in W's dtype (float32 or float64), shaped like ``W``; 0·log 0 = 0.

    The arrays are this thread's buffers: valid until its next call (the contraction uses them at once)."""
    flat = np.ascontiguousarray(W).reshape(-1)
    aw, awl, tmp = _buffers(flat.size, flat.dtype)
    if flat.dtype == np.float32:
        _abs_xlogx32(flat, aw, awl)
    else:
        _abs_xlogx(flat.astype(np.float64, copy=False), aw, awl, tmp)
    return aw.reshape(W.shape), awl.reshape(W.shape)


protect(sys.modules[__name__], depends=(prelude,))  # checksummed disk cache (see checked_cache.py)
