import os
from pathlib import Path

# CI has no GPU: the CUDA backend's tests run its kernels in numba's CUDA simulator. This must be set before
# numba is first imported. SEMIR_CUDA_DEVICE=1 runs them on a real GPU instead.
if not os.environ.get("SEMIR_CUDA_DEVICE"):
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("SEMIR_HYPOTHESIS", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    # One kernel cache for the session, never the user's: tests exercise warm starts as well as cold ones.
    # Under xdist the workers share it (their temporary folders are siblings): a generated module is compiled
    # once for all of them; the cache writes each file atomically.
    if "SEMIR_CACHE_DIR" not in os.environ:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            shared = tmp_path_factory.getbasetemp().parent / "semir-cache"
            shared.mkdir(exist_ok=True)
            os.environ["SEMIR_CACHE_DIR"] = str(shared)
        else:
            os.environ["SEMIR_CACHE_DIR"] = str(tmp_path_factory.mktemp("semir-cache"))


def pytest_sessionfinish(session, exitstatus):
    """With SEMIR_NO_SKIPS=1 (CI) a skipped test fails the run: every reference comparison must run there."""
    if not os.environ.get("SEMIR_NO_SKIPS"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for rep in skipped:
            reporter.write_line(f"SEMIR_NO_SKIPS: skipped: {rep.nodeid}: {rep.longrepr}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_addoption(parser):
    parser.addoption("--accept", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture
def accept(request):
    return request.config.getoption("--accept")


GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str, accept: bool):
    """``text`` equals the golden file ``tests/golden/NAME``; ``pytest --accept`` rewrites it (review the diff)."""
    path = GOLDEN / name
    if accept or not path.exists():
        if not accept:
            pytest.fail(f"missing golden file {path}; run pytest --accept to create it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file (pytest --accept to update)"


def random_inputs(prog, seed=0, dims=None, scale=1.0):
    """Random inputs for a program's signature; symbolic dims from ``dims`` (default 3)."""
    from semir.ir.types import bind_dim

    rng = np.random.default_rng(seed)
    env = dict(dims or {})
    out = {}
    for n in prog.inputs:
        shape = []
        for d in n.type.shape:
            b = bind_dim(d, env)
            if not isinstance(b, int):
                for s, _ in b.terms:
                    env.setdefault(s, 3)
                b = bind_dim(d, env)
            shape.append(b)
        if n.type.dtype.is_int:
            out[n.name] = rng.integers(0, 4, size=shape)
        else:
            out[n.name] = (rng.normal(size=shape) * scale).astype(n.type.dtype.numpy)
    return out


def as_f64(prog):
    import semir

    return semir.parse_ir(str(prog).replace("f32", "f64"))


def compare(a, b, semiring, rtol, atol):
    """States of every wrt node agree: floats within tolerance, booleans and integers exactly, and the
    reported values (NaN where entropy has no path). Pointer fields are backend-specific edge ids: they are
    compared through the recovered paths (:func:`compare_paths`); a values-only result (pointers="lazy") has
    none."""
    pointers = {f.name for sr in (a.semiring, b.semiring) for f in (sr.eager or sr).fields if f.pointer}
    for name in a.wrt:
        sa, sb = a.state(name), b.state(name)
        assert sa.keys() - pointers == sb.keys() - pointers
        for f in sa.keys() & sb.keys():
            x, y = np.asarray(sa[f]), np.asarray(sb[f])
            if f in pointers:
                # where one backend has no path the other must have none either
                from semir.semirings.base import EDGE_NONE

                np.testing.assert_array_equal(x == EDGE_NONE, y == EDGE_NONE, err_msg=f"{semiring} {name}.{f}")
            elif x.dtype.kind in "biu":
                np.testing.assert_array_equal(x, y, err_msg=f"{semiring} {name}.{f}")
            else:
                np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"{semiring} {name}.{f}")
        np.testing.assert_allclose(np.asarray(a[name], float), np.asarray(b[name], float), rtol=rtol, atol=atol,
                                   err_msg=f"{semiring} {name} (reported)")


def compare_paths(got, ref, semiring, dims, limit=64):
    """The best path (each component) from every element of every wrt node (the first ``limit``) is the same
    edge sequence on both backends, or absent on both."""
    if not ref.semiring.has_paths:
        return
    from semir.errors import SemirError

    for name in ref.wrt:
        shape = ref.program[name].type.bind(dims).shape
        for idx in list(np.ndindex(*shape))[:limit]:
            for comp in ({"max_product": ["hi", "lo"], "max_abs": [None]}.get(semiring) or [0, 1]):
                try:
                    p_ref = [(s.node, s.index, s.weight) for s in ref.path(name, idx, comp)]
                except SemirError:
                    p_ref = None
                try:
                    p_got = [(s.node, s.index, s.weight) for s in got.path(name, idx, comp)]
                except SemirError:
                    p_got = None
                assert (p_ref is None) == (p_got is None), (name, idx, comp, p_ref, p_got)
                if p_ref is None:
                    continue
                # equal-value ties break toward the same edge on every backend, so paths agree exactly
                assert [s[:2] for s in p_got] == [s[:2] for s in p_ref], (name, idx, comp)
                # float32: a weight such as 1 - tanh² cancels, so 1 ulp in a forward value shows as 1e-7 absolute
                tol = {"rtol": 1e-12} if ref.float_dtype == np.float64 else {"rtol": 1e-4, "atol": 1e-6}
                np.testing.assert_allclose([s[2] for s in p_got], [s[2] for s in p_ref], **tol)


def check_figure(fig) -> None:
    """A figure a user reads: every axes that shows data labels both axes, no legend covers any axes, and every
    annotation lies inside its axes."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    axes = [a for a in fig.axes if a.get_visible() and (a.lines or a.patches or a.collections or a.images)]
    legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend() is not None)]
    for a in axes:
        where = a.get_title() or a.get_label() or "an axes"
        assert a.get_xlabel().strip(), f"{where}: the x axis has no label"
        assert a.get_ylabel().strip(), f"{where}: the y axis has no label"
        box = a.get_window_extent(r)
        for leg in legends:
            assert not leg.get_window_extent(r).overlaps(box), f"{where}: a legend is drawn over the axes"
        for t in a.texts:
            e = t.get_window_extent(r)
            assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1 and box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, \
                f"{where}: the label {t.get_text()!r} runs off the axes"


@pytest.fixture
def figures_are_checked(monkeypatch):
    """Every figure saved while the test runs passes :func:`check_figure`; returns how many were checked."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    seen = []
    save = Figure.savefig

    def checked(self, *a, **kw):
        check_figure(self)
        seen.append(a[0] if a else kw.get("fname"))
        return save(self, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", checked)
    return seen
