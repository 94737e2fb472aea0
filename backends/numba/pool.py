"""A call's state block, reused once nothing refers to it any more.

Every call's states are slices of one block per field (``NumbaKernel.__call__``). A fresh block of that size
costs its page faults: MiniLM's shape at 32 tokens, two float32 fields of 2.9 M elements, 3.5 ms a call for
``np.full`` against 0.3 ms to refill a block already mapped, a twentieth of a max_product call. So a plan
keeps the blocks of its last calls and hands one out again, refilled with 0̄, only when no result, view or
buffer refers to any of its arrays: their reference counts are what a block referred to by the pool alone
has (measured on a probe, not assumed). A block that a result still holds is never touched; a caller who
keeps every result gets a fresh block each call, as without the pool.

The blocks kept by all plans together stay under TOTAL_BYTES, the least recently given dropped first: a data
set of many sentence lengths has a plan per length, and each would otherwise keep its own.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

KEEP = 2  # blocks kept: a loop that rebinds its result (r = k(...)) still holds the last one during the next call
MAX_BYTES = 256 << 20  # a larger block is not kept: its page faults are a smaller share, its memory not
TOTAL_BYTES = 512 << 20  # every pool's kept blocks together

_lock = threading.Lock()
_given: OrderedDict[int, tuple[BlockPool, int]] = OrderedDict()  # id(block) -> (its pool, its bytes), oldest first


def _counts(block: dict[str, np.ndarray]) -> list[int]:
    return [sys.getrefcount(a) for a in block.values()]


_ALONE = _counts({"probe": np.empty(1)})[0]  # an array referred to by its block's dict only, counted as below


def kept_bytes() -> int:
    """The bytes of every pool's kept blocks."""
    with _lock:
        return sum(n for _, n in _given.values())


class BlockPool:
    """The blocks a plan's calls may reuse; thread-safe (a block is handed to one call at a time)."""

    def __init__(self) -> None:
        self._kept: list[dict[str, np.ndarray]] = []

    def _drop(self, block: dict[str, np.ndarray]) -> None:  # with _lock held
        self._kept = [b for b in self._kept if b is not block]
        _given.pop(id(block), None)

    def take(self, make: Callable[[], dict[str, np.ndarray]],
             fill: Callable[[dict[str, np.ndarray]], None]) -> dict[str, np.ndarray]:
        """A kept block nothing else refers to, after ``fill``; else ``make()``."""
        with _lock:
            block = next((b for b in self._kept if all(c == _ALONE for c in _counts(b))), None)
            if block is not None:
                self._drop(block)
        if block is None:
            return make()
        fill(block)
        return block

    def give(self, block: dict[str, np.ndarray]) -> None:
        """Keep ``block`` (which the call's result still refers to) for a later call: the newest KEEP of this
        pool, within TOTAL_BYTES over every pool."""
        size = sum(a.nbytes for a in block.values())
        if size > MAX_BYTES:
            return
        with _lock:
            self._kept.append(block)
            _given[id(block)] = (self, size)
            for old in self._kept[:-KEEP]:
                self._drop(old)
            while sum(n for _, n in _given.values()) > TOTAL_BYTES:
                oldest = next(iter(_given))
                pool, _ = _given[oldest]
                pool._drop(next(b for b in pool._kept if id(b) == oldest))
