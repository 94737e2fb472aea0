"""Launch geometry, fixed per process: numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) runs every thread
as a Python thread, so it gets small tiles and blocks that waste fewer idle threads on small shapes."""

from numba.cuda import config as _config

SIMULATOR = bool(_config.ENABLE_CUDASIM)
TPB = 32 if SIMULATOR else 256  # threads per block of 1-D launches
TILE = 4 if SIMULATOR else 16  # edge of the square shared-memory tiles of contractions


def blocks(n: int) -> int:
    return max(1, (int(n) + TPB - 1) // TPB)


# Static shared memory a block may use on every CUDA device numba targets (compute capability >= 3.5).
SHARED_BYTES = 48 * 1024


def shared_bytes(semiring, float_dtype, tile: int) -> int:
    """Shared memory of one contraction-backward block: a float64 weight tile plus one carrier per element
    (``topk:K`` carries K entries of every field)."""
    state = sum(semiring.field_dtype(f, float_dtype).itemsize for f in semiring.fields) * max(semiring.k, 1)
    return tile * tile * (8 + state)


def tile_for(semiring, float_dtype, start: int = TILE) -> int:
    """The largest square tile up to ``start`` whose backward block fits :data:`SHARED_BYTES`."""
    t = start
    while t > 1 and shared_bytes(semiring, float_dtype, t) > SHARED_BYTES:
        t -= 1
    if shared_bytes(semiring, float_dtype, t) > SHARED_BYTES:
        from semir.errors import OptionError

        raise OptionError(f"semiring {semiring.name!r} needs {shared_bytes(semiring, float_dtype, 1)} bytes of "
                          f"shared memory per element, over the CUDA limit of {SHARED_BYTES}")
    return t
