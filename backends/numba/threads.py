"""Numba's TBB threading layer from the PyPI ``tbb`` wheel, when the user chose it.

The omp layer shares the OpenMP runtime torch loads, and with torch imported first it ran sum_product 6.5x
slower; workqueue is unaffected but not thread-safe. TBB is both (docs/BENCHMARKS.md §6c). The wheel puts
``libtbb.so.12`` in the environment's ``lib/``, which the dynamic loader does not search, so Numba reports TBB
missing. With ``NUMBA_THREADING_LAYER=tbb`` (and only then) the library is loaded here first, globally, so
Numba's TBB pool finds it. Nothing changes for any other choice.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path


def preload_tbb() -> bool:
    """Load the wheel's libtbb if the user asked for the tbb layer; True if it was loaded here."""
    if os.environ.get("NUMBA_THREADING_LAYER", "").lower() != "tbb":
        return False
    for lib in (Path(sys.prefix) / "lib" / "libtbb.so.12", Path(sys.base_prefix) / "lib" / "libtbb.so.12"):
        if lib.exists():
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                return False  # Numba then says why it cannot use TBB
            return True
    return False
