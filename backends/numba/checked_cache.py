"""Numba's on-disk cache with a checksum on every file, so a corrupted entry is recompiled, never run.

Numba keeps compiled machine code beside each module (``__pycache__/*.nbi`` index, ``*.nbc`` data) and
unpickles it unchecked: a flipped bit raised raw pickle or LLVM errors, or ran damaged machine code and
crashed the process. :func:`protect` gives each dispatcher of a module a cache file object that appends a
SHA-256 to every file it writes and treats a file whose digest does not match as missing, so Numba compiles
afresh and overwrites it. Only the dispatchers semir creates are changed; Numba itself is not patched.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from types import ModuleType

from numba.core.caching import IndexDataCacheFile

MAGIC = b"semir-nb-sha256:"
_TRAILER = len(MAGIC) + 32


def _seal(payload: bytes) -> bytes:
    return payload + MAGIC + hashlib.sha256(payload).digest()


def _open(blob: bytes) -> bytes | None:
    """The payload of a sealed file, or None if it is not one or its digest does not match."""
    if len(blob) < _TRAILER or blob[-_TRAILER:-32] != MAGIC:
        return None
    payload = blob[:-_TRAILER]
    return payload if hashlib.sha256(payload).digest() == blob[-32:] else None


class CheckedCacheFile(IndexDataCacheFile):
    """:class:`IndexDataCacheFile` whose index and data files carry a digest of their contents."""

    def _load_index(self):
        try:
            with open(self._index_path, "rb") as f:
                payload = _open(f.read())
        except FileNotFoundError:
            return {}
        if payload is None:  # corrupted, truncated, or written without a digest: start the index afresh
            return {}
        try:
            version, stamp, overloads = pickle.loads(payload)
        except Exception:  # a digest of a payload that is not ours: treat as missing
            return {}
        if version != self._version or stamp != self._source_stamp:
            return {}
        return overloads

    def _save_index(self, overloads):
        payload = pickle.dumps((self._version, self._source_stamp, overloads), protocol=-1)
        with self._open_for_write(self._index_path) as f:
            f.write(_seal(payload))

    def _load_data(self, name):
        with open(self._data_path(name), "rb") as f:
            payload = _open(f.read())
        if payload is None:
            # numba's load() treats OSError as "no entry": it compiles again and overwrites the file
            raise OSError(f"semir: corrupted Numba cache file {name}")
        return pickle.loads(payload)

    def _save_data(self, name, data):
        with self._open_for_write(self._data_path(name)) as f:
            f.write(_seal(self._dump(data)))


def protect(module: ModuleType, depends: tuple[ModuleType, ...] = ()) -> None:
    """Give every caching dispatcher defined in ``module`` a :class:`CheckedCacheFile` (before first use).

    ``depends``: modules whose code the dispatchers compile in (intrinsics, inlined helpers). Numba checks only
    the defining file's time stamp, so their contents join the stamp: editing one recompiles, never reuses.
    """
    extra = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in depends)).hexdigest() if depends else ""
    for obj in vars(module).values():
        cache = getattr(obj, "_cache", None)
        cf = getattr(cache, "_cache_file", None)
        if type(cf) is IndexDataCacheFile:
            checked = CheckedCacheFile.__new__(CheckedCacheFile)
            checked.__dict__.update(cf.__dict__)
            # another file name: a sealed file and numba's own unsealed one never stand for each other
            checked._index_name = cf._index_name.replace(".nbi", ".semir.nbi")
            checked._index_path = cf._index_path.replace(".nbi", ".semir.nbi")
            checked._data_name_pattern = cf._data_name_pattern.replace(".nbc", ".semir.nbc")
            if extra:
                checked._source_stamp = (cf._source_stamp, extra)
            cache._cache_file = checked
