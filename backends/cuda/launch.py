"""Launch geometry, fixed per process: numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) runs every thread
as a Python thread, so it gets small tiles and blocks that waste fewer idle threads on small shapes."""

from numba.cuda import config as _config

SIMULATOR = bool(_config.ENABLE_CUDASIM)
TPB = 32 if SIMULATOR else 256  # threads per block of 1-D launches
TILE = 4 if SIMULATOR else 16  # edge of the square shared-memory tiles of contractions


def blocks(n: int) -> int:
    return max(1, (int(n) + TPB - 1) // TPB)
