"""Thread settings of the Numba backend, made once, when the first kernel is compiled (never at import).

``OMP_WAIT_POLICY=PASSIVE`` unless the user set it: Numba's OpenMP threads and OpenBLAS's threads both spin
while idle, and alternating BLAS calls with parallel kernels (as every backward sweep does) then ran up to 10x
slower on few cores. Numba starts its thread pool at the first parallel kernel, after this.

Numba's TBB threading layer from the PyPI ``tbb`` wheel, when the user chose it.

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
