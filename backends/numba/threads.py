"""Thread settings of the Numba backend, made once, when the first kernel is compiled (never at import).

``OMP_WAIT_POLICY=PASSIVE`` unless the user set it: Numba's OpenMP threads and OpenBLAS's threads both spin
while idle, and alternating BLAS calls with parallel kernels (as every backward sweep does) then ran up to 10x
slower on few cores. Numba starts its thread pool at the first parallel kernel, after this.

The TBB threading layer wherever the PyPI ``tbb`` wheel is installed (``pip install "semir[tbb]"``; the
``torch`` extra brings it). Numba's own default order is tbb, omp, workqueue, but the wheel puts
``libtbb.so.12`` in the environment's ``lib/``, which the dynamic loader does not search, so Numba would fall
back to omp. The omp layer shares the OpenMP runtime torch loads, and with torch imported first it ran
sum_product 6x slower on 2 threads; workqueue is unaffected but not thread-safe. TBB is both
(docs/BENCHMARKS.md §6c). So unless the user chose a layer TBB cannot serve, the wheel's library is loaded
here, globally, before Numba starts its pool, and Numba's default picks it. Without the wheel nothing
changes.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

_DONE = threading.Event()
_LOCK = threading.Lock()


def configure() -> None:
    """The backend's thread settings (above), once per process; a value the user set is kept."""
    if _DONE.is_set():
        return
    with _LOCK:
        if not _DONE.is_set():
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            preload_tbb()
            _DONE.set()


# Numba layers (NUMBA_THREADING_LAYER) that TBB can serve: the default order, "safe" (tbb only), "threadsafe".
TBB_LAYERS = ("", "default", "tbb", "safe", "threadsafe")


def preload_tbb() -> bool:
    """Load the wheel's libtbb unless the user chose a layer TBB cannot serve; True if it was loaded here."""
    if os.environ.get("NUMBA_THREADING_LAYER", "").lower() not in TBB_LAYERS:
        return False
    for lib in (Path(sys.prefix) / "lib" / "libtbb.so.12", Path(sys.base_prefix) / "lib" / "libtbb.so.12"):
        if lib.exists():
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                return False  # Numba then says why it cannot use TBB
            return True
    return False
