"""The kernel cache on disk: corrupted Numba cache files are recompiled (never a crash, never a wrong result),
files are shared like the user's other files, an unwritable cache directory is a clear error."""

import os
import random
import stat
import subprocess
import sys
import textwrap

from conftest import EXAMPLES

RUN = textwrap.dedent(f"""
    import numpy as np, semir
    p = semir.load({str(EXAMPLES / 'mlp.semir')!r})
    rng = np.random.default_rng(0)
    ins = dict(x=rng.normal(size=(2, 4)), w1=rng.normal(size=(4, 8)), b1=rng.normal(size=8),
               w2=rng.normal(size=(8, 1)), b2=rng.normal(size=1))
    for s in ("max_product", "entropy"):
        r = semir.compile(p, s, backend="numba")(**ins)
        print(s, repr(float(r["x"][0, 0])), repr(float(r["w1"][1, 2])))
""")


def _run(cache_dir):
    env = {**os.environ, "SEMIR_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, timeout=600)


def test_corrupted_numba_cache_files_are_recompiled(tmp_path):
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    files = sorted(p for p in tmp_path.rglob("*") if p.suffix in (".nbi", ".nbc"))
    assert files, "the kernels left no Numba cache files"
    rng = random.Random(0)
    for trial in range(4):
        for f in files:  # flip bits, truncate, or empty every compiled-code file
            data = bytearray(f.read_bytes())
            kind = trial % 3
            if kind == 0 and data:
                for _ in range(8):
                    data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif kind == 1:
                data = data[: len(data) // 2]
            else:
                data = bytearray()
            f.write_bytes(bytes(data))
        again = _run(tmp_path)
        assert again.returncode == 0, again.stderr[-2000:]
        assert again.stdout == first.stdout  # identical results after recompiling


def test_cache_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert _run(tmp_path).returncode == 0
    finally:
        os.umask(old)
    for f in tmp_path.glob("semir_*.py"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def test_unwritable_cache_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env = {**os.environ, "SEMIR_CACHE_DIR": str(blocker / "cache")}  # cannot be created, even by root
    p = subprocess.run([sys.executable, "-m", "semir.cli", "run", str(EXAMPLES / "paper_fig1.semir"),
                        "--input", "x=1", "--input", "y=2"], env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "SEMIR_CACHE_DIR" in p.stderr and "Traceback" not in p.stderr


def test_a_dependency_joins_the_cache_stamp(tmp_path, monkeypatch):
    # Numba checks only the defining file; code compiled in from another module (an intrinsic, an inlined
    # helper) must invalidate the cache too, or an edit to it would run the old machine code
    import importlib

    from semir.backends.numba.checked_cache import protect

    (tmp_path / "semir_dep_mod.py").write_text("X = 1\n")
    (tmp_path / "semir_user_mod.py").write_text("from numba import njit\n\n\n@njit(cache=True)\ndef f(x):\n"
                                                 "    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    dep, user = importlib.import_module("semir_dep_mod"), importlib.import_module("semir_user_mod")
    stamps = []
    for text in ("X = 1\n", "X = 2\n"):
        (tmp_path / "semir_dep_mod.py").write_text(text)
        user = importlib.reload(user)
        protect(user, depends=(dep,))
        stamps.append(user.f._cache._cache_file._source_stamp)
    assert stamps[0] != stamps[1]
    assert user.f(1) == 2
