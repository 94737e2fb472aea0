"""One compiled kernel called from many threads gives exactly the serial results: values, states and paths.

Per-call data (take's gather maps, layernorm statistics, max's argmax choices) must live with the call, not
with the kernel's shared per-shape plan.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import semir

SRC = """
def main(table: f32[V, D], ids: i64[S], g: f32[D], b: f32[D], u: f32[D]) -> f32 {
    e = take(table, ids)
    h = layernorm(e, g, b, eps=1e-5)
    m = max(h, axis=0)
    return sum(tanh(m * u)) + sum(h * h)
}
"""


def _inputs(seed, S):
    rng = np.random.default_rng(seed)
    return {"table": rng.normal(size=(7, 5)).astype(np.float32), "ids": rng.integers(0, 7, size=S),
            "g": rng.normal(size=5).astype(np.float32), "b": rng.normal(size=5).astype(np.float32),
            "u": rng.normal(size=5).astype(np.float32)}


def _summary(r, S):
    out = {"output": np.asarray(r.output).copy()}
    for name in ("table", "g", "b", "u"):
        for f, a in r.state(name).items():
            out[f"{name}.{f}"] = np.asarray(a).copy()
    # the best path from every element of u and from a few table rows
    out["paths"] = [[(s.node, s.index, s.weight) for s in r.path(name, idx, comp)]
                    for name, idx in [("u", (j,)) for j in range(5)] + [("table", (i, 0)) for i in range(7)]
                    for comp in ("hi", "lo")]
    return out


@pytest.mark.parametrize("semiring", ["max_product", "sum_product"])
def test_concurrent_calls_equal_serial(semiring):
    k = semir.compile(semir.parse(SRC), semiring, backend="numba")
    # two sentence lengths: two plans, shared by the threads that use them
    jobs = [(seed, 3 + seed % 2) for seed in range(48)]

    def one(job):
        seed, S = job
        r = k(**_inputs(seed, S))
        if semiring == "max_product":
            return _summary(r, S)
        return {"output": np.asarray(r.output).copy(), **{n: np.asarray(r[n]).copy() for n in ("table", "g", "u")}}

    serial = [one(j) for j in jobs]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a shared per-call state shows at once
    try:
        _race(one, jobs, serial)
    finally:
        sys.setswitchinterval(old)
    if os.environ.get("SEMIR_EXPECT_LAYER"):  # set by the test below, in its own process
        import numba

        assert numba.threading_layer() == os.environ["SEMIR_EXPECT_LAYER"]


# the default choice in the fast run; choosing a layer by name (20 s each, a new process) is slow
@pytest.mark.parametrize("chosen, expect", [pytest.param("tbb", "tbb", marks=pytest.mark.slow), (None, "tbb"),
                                           pytest.param("omp", "omp", marks=pytest.mark.slow)])
def test_the_tbb_layer_loads_from_the_wheel_and_is_reentrant(chosen, expect):
    """With the PyPI tbb wheel installed (pip install "semir[tbb]"), semir loads the wheel's libtbb, which the
    dynamic loader would not find: Numba's default then picks TBB, as does NUMBA_THREADING_LAYER=tbb, and the
    kernels stay re-entrant on it; a layer the user chose otherwise is kept."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("tbb")  # the wheel ships libraries only; the test extra installs it
    except PackageNotFoundError:
        pytest.skip("pip install tbb (the test extra installs it)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env.update({"SEMIR_EXPECT_LAYER": expect, **({"NUMBA_THREADING_LAYER": chosen} if chosen else {})})
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        f"{__file__}::test_concurrent_calls_equal_serial"], env=env, capture_output=True, text=True,
                       cwd=Path(__file__).parent)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]


def _race(one, jobs, serial):
    for _ in range(5):
        with ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(one, jobs * 4))
        for got, want in zip(parallel, serial * 4):
            assert got.keys() == want.keys()
            for key in want:
                if key == "paths":
                    assert got[key] == want[key]
                else:
                    np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_a_held_result_keeps_its_states_and_a_dropped_ones_block_is_reused():
    # the states of a call live in a block the plan reuses (backends/numba/pool.py) only once nothing refers
    # to it: results kept whole or through one view keep their numbers through later calls
    import weakref

    k = semir.compile(semir.parse(SRC), "max_product", backend="numba")
    held, views = [], []
    for seed in range(6):
        r = k(**_inputs(seed, 3))
        if seed % 3 == 0:
            held.append((r, _summary(r, 3)))
        elif seed % 3 == 1:
            views.append((r.state("table")["hi"], r.state("table")["hi"].copy()))
        del r
    for r, summary in held:
        got = _summary(r, 3)
        assert got["paths"] == summary["paths"]
        for name in summary:
            if name != "paths":
                np.testing.assert_array_equal(got[name], summary[name], err_msg=name)
    for view, copy in views:
        np.testing.assert_array_equal(view, copy)
    # a loop that rebinds its result: two blocks in turn, the same ones
    blocks = []
    r = None
    for seed in range(5):
        r = k(**_inputs(seed, 3))
        blocks.append(weakref.ref(r.state("table")["hi"].base))
    assert blocks[0]() is not None and blocks[0]() is blocks[2]() is blocks[4]()
    assert blocks[1]() is blocks[3]() is not blocks[0]()


def test_the_kept_blocks_of_every_plan_stay_within_their_budget(monkeypatch):
    # a plan per sentence length, each keeping its last blocks: together they stay under pool.TOTAL_BYTES, the
    # oldest dropped first, and the results are those of a kernel that keeps none
    from semir.backends.numba import pool

    monkeypatch.setattr(pool, "TOTAL_BYTES", pool.kept_bytes() + 3000)
    k = semir.compile(semir.parse(SRC), "max_product", backend="numba")
    fresh = semir.compile(semir.parse(SRC), "max_product", backend="numba")
    for S in range(2, 12):
        got = k(**_inputs(S, S))
        monkeypatch.setattr(pool, "MAX_BYTES", -1)  # keeps nothing
        want = fresh(**_inputs(S, S))
        monkeypatch.setattr(pool, "MAX_BYTES", 256 << 20)
        for name in ("table", "g", "u"):
            for f in ("hi", "lo"):
                np.testing.assert_array_equal(got.state(name)[f], want.state(name)[f])
        del got, want
        assert pool.kept_bytes() <= pool.TOTAL_BYTES
    assert pool.kept_bytes() > 0
