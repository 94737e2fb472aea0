"""Content-addressed cache of generated modules.

Each module is a real file (so numba's ``cache=True`` can keep compiled code
beside it) whose first line records the SHA-256 of the rest. A file that
fails the check (truncated, edited, half-written) is regenerated; writes go
to a temporary file in the same directory and are renamed into place, so
concurrent compilers of one key never expose a partial file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import llvmlite
import numba

from semir._version import __version__
from semir.errors import OptionError

from . import checked_cache

HEADER = "# semir-cache sha256="


def cache_dir() -> Path:
    d = Path(os.environ.get("SEMIR_CACHE_DIR") or Path.home() / ".cache" / "semir")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptionError(f"cannot create the kernel cache {str(d)!r} ({e.strerror}); set SEMIR_CACHE_DIR to a "
                          "writable directory") from None
    return d


def cpu_target() -> str:
    from llvmlite import binding

    return f"{binding.get_host_cpu_name()}:{binding.get_host_cpu_features().flatten()}"


@functools.cache
def generator_digest() -> str:
    """Hash of the code that writes generated modules, so that changing it never reuses stale files."""
    from semir.semirings import base, builtin

    from .. import semiring_kernels, skeleton, user_semiring
    from . import codegen, prelude, templates, vector

    h = hashlib.sha256()
    # semiring_kernels: its snippets (row reductions, matmul and layernorm rows) reach generated modules too;
    # skeleton: the fused kernels' bodies, shared with the CUDA backend
    for mod in (codegen, skeleton, templates, prelude, vector, semiring_kernels, user_semiring, builtin, base):
        h.update(Path(mod.__file__).read_bytes())
    # semiring kernel modules: Numba's cache of a generated module does not notice a change in what it imports
    for path in sorted((Path(codegen.__file__).parent / "semirings").glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def key(*parts: str) -> str:
    """Hash of the parts plus everything else that changes generated or compiled code."""
    h = hashlib.sha256()
    for p in (*parts, __version__, numba.__version__, llvmlite.__version__, cpu_target(), generator_digest()):
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def read_valid(path: Path) -> str | None:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    head, _, body = text.partition("\n")
    return body if head == HEADER + _digest(body) else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, body: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    except OSError as e:
        raise OptionError(f"the kernel cache {str(path.parent)!r} is not writable ({e.strerror}); set "
                          "SEMIR_CACHE_DIR to a writable directory") from None
    try:
        # mkstemp makes the file 0600; a cache is shared like any other file the user writes (their umask)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(HEADER + _digest(body) + "\n" + body)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(name: str, make_body) -> tuple[ModuleType, bool]:
    """Import module ``name`` from the cache, calling ``make_body()`` only when the file is missing or corrupt.

    Returns the module and whether its source had to be (re)generated.
    """
    path = cache_dir() / f"{name}.py"
    written = False
    if read_valid(path) is None:
        write_atomic(path, make_body())
        written = True
    if name in sys.modules and not written:
        return sys.modules[name], written
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    checked_cache.protect(module)
    return module, written


def source(name: str) -> str | None:
    return read_valid(cache_dir() / f"{name}.py")
