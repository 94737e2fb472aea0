"""The Numba CPU backend: generated, semiring-specialised kernels with a content-addressed disk cache."""

import os

# Numba's OpenMP threads and OpenBLAS's threads both spin while idle; alternating BLAS calls and parallel
# kernels (as every backward sweep does) then runs up to 10x slower on few cores. Passive waiting removes
# that. It must be set before Numba starts its thread pool; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .threads import preload_tbb  # noqa: E402

preload_tbb()

from .kernel import NumbaKernel, compile_numba  # noqa: E402

__all__ = ["NumbaKernel", "compile_numba"]
