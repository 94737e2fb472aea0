"""The Numba backend equals the reference backend; its cache is content-addressed and robust (issue 4)."""

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import EXAMPLES, as_f64, compare, compare_paths, random_inputs
from semir.backends.numba import cache

import semir

SEMIRINGS = ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:3"]
MODELS = sorted(p.stem for p in EXAMPLES.glob("*.semir"))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_examples_equal_reference_float64(model, semiring):
    prog = as_f64(semir.load(EXAMPLES / f"{model}.semir"))
    ins = random_inputs(prog, seed=5, dims={"S": 3, "B": 2}, scale=0.7)
    ref = semir.compile(prog, semiring, backend="reference")(**ins)
    got = semir.compile(prog, semiring, backend="numba")(**ins)
    np.testing.assert_allclose(got.output, ref.output, rtol=1e-12)
    compare(got, ref, semiring, rtol=1e-9, atol=1e-12)
    compare_paths(got, ref, semiring, {"S": 3, "B": 2})


@pytest.mark.parametrize("semiring", ["sum_product", "max_product", "entropy"])
def test_transformer_float32(semiring):
    prog = semir.load(EXAMPLES / "transformer_layer.semir")
    ins = random_inputs(prog, seed=6, dims={"S": 4}, scale=0.5)
    ref = semir.compile(prog, semiring, backend="reference")(**ins)
    got = semir.compile(prog, semiring, backend="numba")(**ins)
    assert got.state("h")[got.semiring.fields[0].name].dtype == np.float32
    compare(got, ref, semiring, rtol=2e-4, atol=1e-5)


def test_wrt_internal_nodes_and_pruning():
    prog = as_f64(semir.load(EXAMPLES / "attention.semir"))
    ins = random_inputs(prog, seed=7, dims={"S": 3})
    k = semir.compile(prog, "entropy", backend="numba", wrt=["attn.k"])
    r = k(**ins)
    ref = semir.compile(prog, "entropy", backend="reference", wrt=["attn.k"])(**ins)
    np.testing.assert_allclose(r["attn.k"], ref["attn.k"], rtol=1e-9)
    # adjoint pruning: only nodes between attn.k and the output carry states
    assert "h" not in r.states and "wq" not in r.states and "attn.q" not in r.states
    with pytest.raises(semir.SemirError, match="not computed"):
        r.node("h")


def test_batched_matmul_broadcast_and_1d():
    prog = semir.parse(textwrap.dedent("""
        def main(a: f64[2, 3, 4], w: f64[4, 2], v: f64[4], q: f64[3]) -> f64 {
            b = a @ w
            c = (a @ v) @ q
            return sum(b * b) + sum(c)
        }"""))
    rng = np.random.default_rng(1)
    ins = {"a": rng.normal(size=(2, 3, 4)), "w": rng.normal(size=(4, 2)), "v": rng.normal(size=4),
           "q": rng.normal(size=3)}
    for s in ["sum_product", "max_product", "entropy", "topk:2"]:
        ref = semir.compile(prog, s, backend="reference")(**ins)
        got = semir.compile(prog, s, backend="numba")(**ins)
        compare(got, ref, s, 1e-9, 1e-12)


def test_generated_source_is_deterministic_and_cached():
    prog = semir.load(EXAMPLES / "transformer_layer.semir")
    k1 = semir.compile(prog, "max_product", backend="numba")
    k2 = semir.compile(semir.load(EXAMPLES / "transformer_layer.semir"), "max_product", backend="numba")
    assert k1.module_name == k2.module_name and not k2.generated
    assert k1.emit("python") == k2.emit("python")
    src = k1.emit("python")
    assert "@njit(cache=True, " in src and "def backward(V, D, plan):" in src and "SR.matmul_bwd_a" in src


def test_corrupted_cache_entry_is_rebuilt():
    prog = semir.load(EXAMPLES / "paper_fig1.semir")
    k = semir.compile(prog, "entropy", backend="numba")
    path = cache.cache_dir() / f"{k.module_name}.py"
    text = path.read_text()
    path.write_text(text.replace("acc(", "acc_broken(", 1))
    sys.modules.pop(k.module_name, None)
    k2 = semir.compile(prog, "entropy", backend="numba")
    assert k2.generated  # detected by its checksum and regenerated
    assert float(k2(x=1.0, y=2.0)["x"]) == pytest.approx(0.681514, abs=1e-6)
    path.write_text(text[: len(text) // 2])  # truncated
    sys.modules.pop(k.module_name, None)
    assert semir.compile(prog, "entropy", backend="numba").generated


def test_concurrent_compiles_of_one_key(tmp_path):
    code = textwrap.dedent(f"""
        import semir
        p = semir.load({str(EXAMPLES / 'mlp.semir')!r})
        k = semir.compile(p, "max_product", backend="numba")
        import numpy as np
        r = k(x=np.ones((2, 4)), w1=np.ones((4, 8)), b1=np.zeros(8), w2=np.ones((8, 1)), b2=np.zeros(1))
        print(float(r["x"][0, 0]))
    """)
    env = {**os.environ, "SEMIR_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert len({o[0] for o in outs}) == 1
    for f in tmp_path.glob("semir_*.py"):
        assert cache.read_valid(f) is not None
    assert not list(tmp_path.glob("*.tmp"))


def test_emit_llvm_and_cli():
    from semir.cli import main

    k = semir.compile(semir.load(EXAMPLES / "paper_fig1.semir"), "max_product", backend="numba")
    llvm = k.emit("llvm")
    assert "define" in llvm and "fused_bwd" in llvm
    assert main(["run", str(EXAMPLES / "paper_fig1.semir"), "--semiring", "topk:2", "--backend", "numba",
                 "--input", "x=1", "--input", "y=2", "--json"]) == 0


def test_user_semiring_runs_on_numba():  # in full: test_user_semiring.py
    s = semir.semirings.from_scalar("plain", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b)
    r = semir.compile(semir.load(EXAMPLES / "paper_fig1.semir"), s, backend="numba")(x=1.0, y=2.0)
    np.testing.assert_allclose([r["x"], r["y"]], [np.e + 2.0, -3.0])  # f = e^x + (x - y) y at (1, 2)


def test_one_program_many_wrt_sets_share_the_forward_module():
    prog = as_f64(semir.load(EXAMPLES / "attention.semir"))
    ins = random_inputs(prog, seed=8, dims={"S": 3})
    names = ["h", "attn", "attn.a", "out"]
    for wrt in (["h"], ["attn.a"], names):
        k = semir.compile(prog, "max_product", backend="numba", wrt=wrt)
        ref = semir.compile(prog, "max_product", backend="reference", wrt=wrt)(**ins)
        got = k(**ins)
        for n in wrt:
            np.testing.assert_allclose(got[n], ref[n], rtol=1e-12)
    assert len({semir.compile(prog, "max_product", backend="numba", wrt=w).fwd_name for w in (["h"], names)}) == 1


@pytest.mark.parametrize("semiring", ["entropy", "log", "counting"])
def test_gemm_falls_back_to_exact_where_the_shifted_sum_underflows(semiring):
    # Every weight into column 0 is ~1e-300: the shifted linear sum drops below the GEMM's safe range and
    # those elements are recomputed exactly in log space; they must still equal the reference.
    prog = semir.parse("def main(x: f64[2, 3], w: f64[3, 2]) -> f64 {\n  return sum(tanh(x @ w))\n}")
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    w = np.array([[1e-300, 0.5], [3e-301, 0.0], [2e-300, -1.5]])
    a = semir.compile(prog, semiring, backend="numba")(x=x, w=w)
    b = semir.compile(prog, semiring, backend="reference")(x=x, w=w)
    for name in ("x", "w"):
        for f in a.state(name):
            np.testing.assert_allclose(a.state(name)[f], b.state(name)[f], rtol=1e-9, atol=1e-12)
    assert np.all(np.isfinite(a.state("x")[a.semiring.fields[0].name]))


@pytest.mark.parametrize("w11", [0.0, 1e-41])  # a zero weight (paths counted by a GEMM) or none (by rows)
def test_float32_entropy_gemms_underflow_to_the_exact_form(w11):
    # float32 GEMMs: x[:, 1] reaches the output only through w[1, 0] = 3e-41 (subnormal) and v[0] = 1e-5 (and
    # w[1, 1]), so its shifted sum is a subnormal float32 with 8 significant bits (log Z off by 0.5%); it is
    # redone exactly
    prog = semir.parse("def main(x: f32[2, 3], w: f32[3, 2], v: f32[2]) -> f32 {\n  return sum(tanh(x @ w) * v)\n}")
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], np.float32)
    w = np.array([[1e-40, 0.5], [3e-41, w11], [2e-40, -1.5]], np.float32)
    v = np.array([1e-5, 1.0], np.float32)
    a = semir.compile(prog, "entropy", backend="numba")(x=x, w=w, v=v)
    b = semir.compile(prog, "entropy", backend="reference")(x=x, w=w, v=v)
    for f in ("logz", "h"):
        np.testing.assert_allclose(a.state("x")[f], b.state("x")[f], rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(a.state("x")["logz"]))


def test_float32_entropy_layernorm_rows_underflow_to_the_exact_form():
    # γ = 1e-40 (subnormal in float32): every weight of the rows is subnormal, so the rows' float32 sums have
    # lost bits (below 1e-30) and are redone exactly, edge by edge
    prog = semir.parse("def main(x: f32[3, 8], g: f32[8], b: f32[8], u: f32[3, 8]) -> f32 {\n"
                       "  return sum(layernorm(x, g, b, eps=1e-5) * u)\n}")
    rng = np.random.default_rng(2)
    ins = {"x": rng.normal(size=(3, 8)).astype(np.float32), "g": np.full(8, 1e-40, np.float32),
           "b": np.zeros(8, np.float32), "u": rng.normal(size=(3, 8)).astype(np.float32)}
    a = semir.compile(prog, "entropy", backend="numba", wrt=["x"])(**ins)
    b = semir.compile(prog, "entropy", backend="reference", wrt=["x"])(**ins)
    for f in ("logz", "h"):
        np.testing.assert_allclose(a.state("x")[f], b.state("x")[f], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 17, 33, 96, 385])
def test_float32_entropy_layernorm_row_sums_equal_a_float64_oracle(n):
    # a log per pair (|m_ij| = |m_ji|), four consumers a block, masked 16-lane spans: the sums A, B, C of one
    # row against NumPy in float64, widths off every block and vector boundary, a consumer without a path
    from semir.backends.numba.semirings.entropy import _ent_ln_sums32

    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    xhat = ((x - x.mean()) / (x.std() + 1e-3)).astype(np.float32)
    a = rng.random(n) * 2
    a[0] = 0.0
    b, t = a * rng.standard_normal(n), a * rng.random(n) * 3
    q = np.abs(np.eye(n) - 1.0 / n - np.outer(xhat.astype(np.float64), xhat) / n)  # q[i, j], consumer i
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = np.where(q > 0, np.log(q), 0.0)
    want = [(a[:, None] * q).sum(0), (q * (b[:, None] + a[:, None] * lq)).sum(0), (t[:, None] * q).sum(0)]
    got = [np.zeros(n) for _ in range(3)]
    _ent_ln_sums32(xhat, 0, n, a, b, t, *got, np.empty((6, n), np.float32))
    for g, w in zip(got, want):  # 4e-7 measured at n = 385; n = 2 cancels (x̂ = ±1): 3e-6
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * max(np.abs(w).max(), 1e-30))


def test_float32_entropy_is_within_float32_rounding_of_the_float64_program():
    # float32 GEMMs (backends/semiring_kernels.py) against the float64 program on the reference backend:
    # the error is the float32 program's own (forward values, weights), a few ulp of H's terms
    prog = semir.load(EXAMPLES / "transformer_layer.semir")
    ins = random_inputs(prog, seed=21, dims={"S": 6}, scale=0.7)
    got = semir.compile(prog, "entropy", backend="numba")(**ins)
    p64 = as_f64(prog)
    want = semir.compile(p64, "entropy", backend="reference")(
        **{k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in ins.items()})
    for name in got.wrt:
        for f in ("logz", "h"):
            np.testing.assert_allclose(got.state(name)[f], want.state(name)[f], rtol=2e-6, atol=2e-5,
                                       err_msg=f"{name}.{f}")


def test_generated_source_and_keys_identical_across_processes(tmp_path):
    code = textwrap.dedent(f"""
        import semir
        k = semir.compile(semir.load({str(EXAMPLES / 'transformer_layer.semir')!r}), "entropy", backend="numba")
        print(k.module_name, k.fwd_name, k.sr_name)
        print(k.emit("python"))
    """)
    outs = []
    for i, seed in enumerate(("0", "12345")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "SEMIR_CACHE_DIR": str(tmp_path / f"c{i}")}
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        outs.append(p.stdout)
    assert outs[0] == outs[1] and "def backward(V, D, plan):" in outs[0]


DENSE_ROWS = textwrap.dedent("""
    def main(x: f64[3, 5, 4], m: f64[3, 5, 4], g: f64[4], t: f64[4], b: f64[4], u: f64[3, 5, 4]) -> f64 {
        s = softmax(x, axis=1) * m
        l = log_softmax(x, axis=-1)
        h = layernorm(x, g, b, eps=1e-5) + layernorm(x * m, t, b, eps=1e-5)
        return sum(tanh(s + l * 0.25 + h) * u)
    }""")


@pytest.mark.parametrize("semiring", ["entropy", "max_product", "max_abs", "log"])
def test_dense_row_kernels_equal_reference_on_degenerate_rows(semiring):
    # The closed-form and register-local row kernels (softmax along a middle axis, log_softmax, layernorm)
    # against the per-edge reference, on rows that hit their special cases: probabilities that are exactly 0
    # (logits of -800), consumers with no path (m = 0), a zero γ, and a layernorm of ~1e-300 weights whose
    # shifted sums underflow into the exact fallback.
    prog = semir.parse(DENSE_ROWS)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 5, 4))
    x[0, 2, :] = -800.0
    x[1, :, 3] = -800.0
    m = np.ones((3, 5, 4))
    m[2, 1, :] = 0.0
    m[0, :, 1] = 0.0
    g = np.array([1.3, 0.0, -0.7, 1e-300])
    t = np.array([1e-300, -2e-300, 3e-301, 1e-300])
    ins = {"x": x, "m": m, "g": g, "t": t, "b": rng.normal(size=4), "u": rng.normal(size=(3, 5, 4))}
    ref = semir.compile(prog, semiring, backend="reference")(**ins)
    got = semir.compile(prog, semiring, backend="numba")(**ins)
    compare(got, ref, semiring, rtol=1e-9, atol=1e-12)
    compare_paths(got, ref, semiring, {})


@pytest.mark.parametrize("semiring", ["max_product", "max_abs"])
@pytest.mark.parametrize("row", ["layernorm(x, g, b, eps=1e-5)", "softmax(x, axis=-1)"])
def test_dense_row_ties_break_toward_the_lowest_edge(semiring, row):
    # Repeated inputs give bit-equal candidates from several consumers of one layernorm or softmax row; every
    # backend must pick the same (lowest) edge, so every element's best path is the reference's.
    prog = semir.parse(textwrap.dedent(f"""
        def main(x: f64[2, 6], g: f64[6], b: f64[6]) -> f64 {{
            return sum({row} * g)
        }}"""))
    ins = {"x": np.array([[1.0, 1.0, 2.0, 2.0, 3.0, 1.0], [0.5, -1.0, 0.5, -1.0, 0.5, 2.0]]),
           "g": np.ones(6), "b": np.zeros(6)}
    ref = semir.compile(prog, semiring, backend="reference")(**ins)
    got = semir.compile(prog, semiring, backend="numba")(**ins)
    compare(got, ref, semiring, rtol=1e-12, atol=1e-14)
    for idx in np.ndindex(2, 6):
        for comp in (["hi", "lo"] if semiring == "max_product" else [None]):
            assert ([(s.node, s.index) for s in got.path("x", idx, comp)]
                    == [(s.node, s.index) for s in ref.path("x", idx, comp)])


def test_vectorised_log_within_two_ulp():
    from semir.backends.numba.prelude import log_positive

    rng = np.random.default_rng(0)
    x = np.concatenate([np.exp(rng.uniform(-700, 700, 20000)), 1 + rng.uniform(-1e-3, 1e-3, 2000),
                        [1.0, np.nextafter(1.0, 2.0), np.nextafter(1.0, 0.0), np.sqrt(2.0), np.sqrt(0.5),
                         2.2250738585072014e-308, 1.7976931348623157e308]])
    out = np.empty_like(x)
    log_positive(x, out, len(x))
    ref = np.log(x)
    assert np.all(np.abs(out - ref) <= 2 * np.spacing(np.abs(ref)) + (ref == 0) * 1e-300)


def test_float32_vectorised_log_within_one_ulp():
    # against float64's log rounded to float32: the ulps of the float32 result
    from semir.backends.numba.prelude import log_positive32

    rng = np.random.default_rng(1)
    x = np.concatenate([np.exp(rng.uniform(-87, 88, 20000)), 1 + rng.uniform(-1e-3, 1e-3, 2000),
                        [1.0, np.sqrt(2.0), np.sqrt(0.5), 1.1754944e-38, 3.4028235e38]]).astype(np.float32)
    x = x[np.isfinite(x) & (x >= np.finfo(np.float32).tiny)]
    out = np.empty_like(x)
    log_positive32(x, out, len(x))
    ref = np.log(x.astype(np.float64))
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(out.astype(np.float64) - ref) <= ulp + (ref == 0) * 1e-38)  # 0.72 measured


def test_float32_log_widened_to_float64_within_an_absolute_5e_8():
    # log32_wide: an error absolute, not relative to the log, so that c + log x keeps float32 precision where
    # it cancels; near 1, where log x is small, relative too
    from numba import njit
    from semir.backends.numba.prelude import log32_wide

    @njit
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = log32_wide(x[i])

    rng = np.random.default_rng(2)
    x = np.concatenate([np.exp(rng.uniform(-87, 88, 20000)), 1 + rng.uniform(-1e-3, 1e-3, 2000),
                        [1.0, np.sqrt(2.0), np.sqrt(0.5), 1.1754944e-38, 3.4028235e38]]).astype(np.float32)
    x = x[np.isfinite(x) & (x >= np.finfo(np.float32).tiny)]
    out = np.empty(len(x))
    run(x, out)
    ref = np.log(x.astype(np.float64))
    err = np.abs(out - ref)
    assert err.max() < 5e-8
    near = np.abs(ref) < 1e-3
    assert np.all(err[near] <= 2 * np.spacing(np.abs(ref[near]).astype(np.float32)) + (ref[near] == 0) * 1e-38)


def test_vectorised_exp_of_nonpositive_doubles_within_two_ulp():
    from semir.backends.numba.prelude import exp_nonpositive

    rng = np.random.default_rng(3)
    x = np.concatenate([-rng.exponential(20, 20000), -rng.uniform(0, 1e-6, 2000),
                        [0.0, -0.0, -np.log(2) / 2, -708.0, -1e-300]])
    out = np.empty_like(x)
    exp_nonpositive(x, out, len(x))
    ref = np.exp(x)
    assert np.all(np.abs(out - ref) <= 2 * np.spacing(ref))
    far = np.array([-708.5, -745.0, -1e4, -np.inf, np.nan])  # where 2^k would be subnormal: 0 (its callers'
    exp_nonpositive(far, out, len(far))  # float32 has 0); NaN stays NaN, never a plausible 0
    assert np.all(out[:4] == 0.0) and np.isnan(out[4])


def _loop(fn, dtype=np.float64):
    from numba import njit

    @njit
    def run(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])

    return lambda x: (lambda out: (run(x, out), out)[1])(np.empty(x.shape, dtype))


def test_vectorised_erf_within_one_ulp_of_libm():
    # against glibc's erf (math.erf), itself within an ulp of the true value, on each piece and across the
    # joins (1, 2, 6); the signs, ±0, ±inf, NaN and the subnormals
    from semir.backends.numba.prelude import erf

    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-7, 7, 200000), rng.standard_normal(50000) * 1e-3,
                        *[np.nextafter(j, [-np.inf] * 8 + [np.inf] * 8) + rng.uniform(-1e-9, 1e-9, 16)
                          for j in (1.0, 2.0, 6.0, -1.0, -2.0, -6.0)],
                        [0.0, 1.0, 2.0, 6.0, 1e-300, 5e-324, 30.0]])
    out = _loop(erf)(x)
    ref = np.array([math.erf(v) for v in x])
    assert np.all(np.abs(out - ref) <= np.spacing(np.abs(ref)))  # 1 ulp measured; 4% of them differ
    edge = _loop(erf)(np.array([-0.0, np.inf, -np.inf, np.nan]))
    assert np.signbit(edge[0]) and edge[0] == 0 and edge[1] == 1 and edge[2] == -1 and np.isnan(edge[3])


def test_float32_gelu_and_its_derivative_equal_the_reference_rounded_to_float32():
    # the Numba backend's gelu (a vectorised erf) and the reference's (libm's, by NumPy) agree bit for bit once
    # rounded to float32, tails included (x < -5, where 1 + erf cancels)
    from semir.backends.numba.prelude import gelu, gelu_d
    from semir.backends.reference.jacobian import _gelu_d as ref_gelu_d

    from semir.ir.eval_rules import gelu as ref_gelu

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(100000) * 3, np.linspace(-12, 12, 100001)]).astype(np.float32)
    assert np.array_equal(_loop(gelu, np.float32)(x), ref_gelu(x))
    assert np.array_equal(_loop(gelu_d, np.float32)(x), ref_gelu_d(x, None, {}))


def test_emit_llvm_from_a_warm_cache_equals_a_cold_one(tmp_path):
    # Numba cannot show the IR of machine code loaded from its disk cache; emit recompiles those kernels.
    code = textwrap.dedent(f"""
        import warnings, semir
        warnings.simplefilter("error")
        k = semir.compile(semir.load({str(EXAMPLES / "paper_fig1.semir")!r}), "max_product", backend="numba")
        print(k.emit("llvm"))
    """)
    env = {**os.environ, "SEMIR_CACHE_DIR": str(tmp_path)}
    cold, warm = (subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
                  for _ in range(2))
    assert "define" in cold.stdout and warm.stdout == cold.stdout


@pytest.mark.parametrize("semiring", ["max_product", "max_abs", "topk:2"])
def test_softmax_rows_on_every_axis_equal_reference(semiring):
    # max_product's row kernel visits consumers in ascending order per operand element (ties: lowest edge);
    # strided rows (softmax over a leading axis) and log-softmax included, paths from every element
    prog = semir.parse(textwrap.dedent("""
        def main(x: f64[3, 4, 5], u: f64[3, 4, 5]) -> f64 {
            a = softmax(x, axis=0)
            b = log_softmax(x * 2.0, axis=1)
            c = softmax(x, axis=-1)
            return sum((a + b * c) * u)
        }"""))
    rng = np.random.default_rng(3)
    ins = {"x": rng.normal(size=(3, 4, 5)), "u": rng.normal(size=(3, 4, 5))}
    ins["x"][0, 0, :2] = 0.5  # exact ties inside a row
    ref = semir.compile(prog, semiring, backend="reference")(**ins)
    got = semir.compile(prog, semiring, backend="numba")(**ins)
    compare(got, ref, semiring, rtol=1e-12, atol=1e-15)
    compare_paths(got, ref, semiring, {}, limit=60)


@pytest.mark.parametrize("semiring", ["max_product", "max_abs"])
def test_max_times_slot_b_with_shared_blocks_and_ties(semiring):
    # D_B of a broadcast batched matmul: blocks of b shared by batches in a non-contiguous pattern, small
    # integers so candidates tie exactly (the lowest edge must win), a zero row (no path through it)
    prog = semir.parse(textwrap.dedent("""
        def main(a: f64[2, 1, 3, 4], b: f64[5, 4, 2], u: f64[2, 5, 3, 2]) -> f64 {
            return sum((a @ b) * u)
        }"""))
    rng = np.random.default_rng(4)
    ins = {name: rng.integers(-2, 3, size=shape).astype(float)
           for name, shape in (("a", (2, 1, 3, 4)), ("b", (5, 4, 2)), ("u", (2, 5, 3, 2)))}
    ins["u"][1, 2] = 0.0
    ref = semir.compile(prog, semiring, backend="reference")(**ins)
    got = semir.compile(prog, semiring, backend="numba")(**ins)
    compare(got, ref, semiring, rtol=0, atol=0)
    compare_paths(got, ref, semiring, {}, limit=200)


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("op", ["layernorm(x, g, b, eps=1e-5)", "softmax(x, axis=-1)", "log_softmax(x, axis=-1)",
                                "softmax(x, axis=0)"])
def test_row_weights_are_the_references_bit_for_bit(op, dtype):
    # the dense row kernels compute each edge weight in the node's dtype by the reference's own formula, so a
    # selective semiring through one row op gives the reference's values exactly, not to a tolerance
    src = (f"def main(x: {dtype}[4, 24], g: {dtype}[24], b: {dtype}[24], u: {dtype}[4, 24]) -> {dtype} {{\n"
           f"    return sum({op} * u)\n}}\n")
    prog = semir.parse(src)
    rng = np.random.default_rng(0)
    npdt = np.float32 if dtype == "f32" else np.float64
    ins = {k: rng.normal(size=s).astype(npdt) for k, s in [("x", (4, 24)), ("g", (24,)), ("b", (24,)), ("u", (4, 24))]}
    for semiring, pointers in [("max_product", "lazy"), ("max_product", "eager"), ("max_abs", "auto")]:
        ref = semir.compile(prog, semiring, backend="reference", wrt=["x"])(**ins)
        got = semir.compile(prog, semiring, backend="numba", wrt=["x"], pointers=pointers)(**ins)
        for f in ("hi", "lo") if semiring == "max_product" else ("v",):
            np.testing.assert_array_equal(got.state("x")[f], ref.state("x")[f], err_msg=f"{semiring} {pointers} {f}")


def test_float32_entropy_contractions_merge_into_a_state_that_holds_paths():
    # x gets two contractions (through w, then u: the second's sums are ⊕-merged into a state that already
    # holds paths, by the mixture rule), w and u one each by slot B; a row of u is 0, so x's column 1 gets no
    # path through u (a sum of 0, left as it is). The compiled float32 passes around the GEMMs against the
    # float64 program on the reference: float32's own error here is up to 2e-5 (the reference's float32 ⊕
    # 1.4e-5 in w's H)
    src = ("def main(x: {t}[3, 4], w: {t}[4, 5], u: {t}[4, 5], v: {t}[5]) -> {t} {{\n"
           "  return sum(tanh(x @ w) * v) + sum((x @ u) * v)\n}}")
    rng = np.random.default_rng(2)
    ins = {k: rng.normal(size=s).astype(np.float32) for k, s in (("x", (3, 4)), ("w", (4, 5)), ("u", (4, 5)),
                                                                 ("v", (5,)))}
    ins["u"][1, :] = 0.0
    a = semir.compile(semir.parse(src.format(t="f32")), "entropy", backend="numba")(**ins)
    exact = semir.compile(semir.parse(src.format(t="f64")), "entropy", backend="reference")(
        **{k: v.astype(np.float64) for k, v in ins.items()})
    for name in ("x", "w", "u"):
        for f in ("logz", "h"):
            np.testing.assert_allclose(a.state(name)[f], exact.state(name)[f], rtol=5e-5, atol=1e-6,
                                       err_msg=name + f)
