"""The pointers policy (``compile(..., pointers=...)``): a values-only sweep (lazy) gives the eager sweep's
values, and its recovered pointers and paths are the eager ones, for every element and both components."""

import numpy as np
import pytest
from conftest import EXAMPLES, as_f64, compare_paths, random_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

import semir
from semir.semirings import EDGE_NONE
from semir.testing.strategies import tensor_programs


def _float_nodes(prog):
    return [n.name for n in prog.nodes if n.type.dtype.is_float]


def assert_lazy_equals_eager(prog, ins, backend, wrt=None):
    """Values bit for bit at every reported node; the pointer and the path of every element, both components;
    ``next_nodes`` of every node."""
    eager = semir.compile(prog, "max_product", backend=backend, wrt=wrt, pointers="eager")(**ins)
    lazy = semir.compile(prog, "max_product", backend=backend, wrt=wrt, pointers="lazy")(**ins)
    assert lazy.semiring.lazy and not eager.semiring.lazy
    assert set(lazy.state(eager.wrt[0])) == {"hi", "lo"}  # no pointer arrays in the sweep
    paths = 0
    for name in eager.wrt:
        for f in ("hi", "lo"):
            np.testing.assert_array_equal(lazy.state(name)[f], eager.state(name)[f], err_msg=f"{name}.{f}")
        for comp in ("hi", "lo"):
            assert lazy.next_nodes(name, comp).tolist() == eager.next_nodes(name, comp).tolist(), (name, comp)
            for idx in np.ndindex(*eager.state(name)["hi"].shape):
                pe, pl = eager.path(name, idx, comp), lazy.path(name, idx, comp)
                assert list(pl) == list(pe), (name, idx, comp)
                paths += bool(pe)
    return paths


@pytest.mark.parametrize("model, backend", [
    pytest.param(m, b, marks=pytest.mark.slow if (m, b) == ("transformer_layer", "reference") else ())  # 16 s
    for m in ("paper_fig1", "mlp", "attention", "transformer_layer", "lstm", "simplify")
    for b in ("numba", "reference")])
def test_lazy_paths_equal_eager_on_the_examples(model, backend):
    prog = semir.load(EXAMPLES / f"{model}.semir")
    ins = random_inputs(prog, seed=11, dims={"S": 4, "B": 2, "T": 3}, scale=0.6)
    wrt = [n for n in _float_nodes(prog) if n in {i.name for i in prog.inputs}] + ["attn.k"] * (model == "attention")
    assert assert_lazy_equals_eager(prog, ins, backend, wrt=wrt) > 0


def test_lazy_paths_equal_eager_float64_every_internal_node():
    prog = as_f64(semir.load(EXAMPLES / "transformer_layer.semir"))
    ins = random_inputs(prog, seed=12, dims={"S": 3}, scale=0.7)
    opt = semir.compile(prog, "max_product", backend="numba").program  # the optimised program's node names
    wrt = [n for n in _float_nodes(opt) if not n.startswith("%")][:40]
    assert assert_lazy_equals_eager(prog, ins, "numba", wrt=wrt) > 0


def test_ties_recover_the_lowest_edge():
    # every edge weight and state equal: each element's best edge is a tie, broken toward the lowest edge
    src = """
def main(x: f32[3, 4], w: f32[4, 4], v: f32[4]) -> f32 {
    h = x @ w
    y = layernorm(h, v, v, eps=1e-5)
    return sum(softmax(y, axis=-1) * y) + sum(h @ v)
}
"""
    prog = semir.parse(src)
    ins = {"x": np.ones((3, 4), np.float32), "w": np.ones((4, 4), np.float32), "v": np.ones(4, np.float32)}
    assert assert_lazy_equals_eager(prog, ins, "numba") > 0


# Random programs: broadcasting, matmul, reductions, softmax, layernorm, movement, take, where.
@settings(max_examples=5)
@given(tensor_programs(), st.integers(0, 2**16))
def test_lazy_paths_equal_eager_on_random_programs(gen, seed):
    prog = semir.parse(gen.text)
    ins = gen.inputs(seed)
    nodes = [n for n, t in gen.params if t.startswith("f")] + [t for t, _, _ in gen.lines]
    assert_lazy_equals_eager(prog, ins, "numba", wrt=nodes)


def test_default_policy_is_lazy_on_numba_and_eager_elsewhere():
    prog = semir.load(EXAMPLES / "mlp.semir")
    assert semir.compile(prog, "max_product").semiring.lazy
    assert not semir.compile(prog, "max_product", backend="reference").semiring.lazy
    assert not semir.compile(prog, "max_abs").semiring.lazy
    assert not semir.compile(prog, "max_product", semantics="brunoflow").semiring.lazy


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"semiring": "max_abs"}, "max_abs and topk:K mark which elements have a path"),
    ({"semiring": "topk:2"}, "keeps its pointers"),
    ({"semiring": "sum_product"}, "records no paths"),
    ({"semiring": "max_product", "semantics": "brunoflow"}, "semantics='brunoflow' keeps pointers"),
    ({"semiring": "max_product", "backend": "cuda"}, "backend 'cuda' keeps pointers"),
])
def test_lazy_is_refused_where_it_does_not_apply(kwargs, message):
    prog = semir.load(EXAMPLES / "mlp.semir")
    with pytest.raises(semir.OptionError, match=message):
        semir.compile(prog, pointers="lazy", **kwargs)


def test_unknown_policy_names_the_choices():
    with pytest.raises(semir.OptionError, match="auto.*eager.*lazy"):
        semir.compile(semir.load(EXAMPLES / "mlp.semir"), "max_product", pointers="sometimes")


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_a_state_that_disagrees_with_the_rescan_is_refused(backend):
    # recovery checks the best candidate it finds against the sweep's value: a corrupted state is an error,
    # never a path for another value
    prog = semir.load(EXAMPLES / "mlp.semir")
    ins = random_inputs(prog, seed=3, dims={"B": 2})
    r = semir.compile(prog, "max_product", backend=backend, pointers="lazy")(**ins)
    name = r.wrt[0]
    r.state(name)["hi"].reshape(-1)[0] *= 2
    with pytest.raises(semir.SemirError, match="disagree"):
        r.path(name, np.unravel_index(0, r.state(name)["hi"].shape))


def test_an_element_with_no_path_has_none():
    src = """
def main(x: f32[3], y: f32[3]) -> f32 {
    return sum(x[0:2] * y[0:2])
}
"""
    r = semir.compile(semir.parse(src), "max_product", pointers="lazy")(x=np.ones(3, np.float32),
                                                                         y=np.ones(3, np.float32))
    assert r.path("x", (2,)) == [] and r["x"][2] == -np.inf
    assert r.next_nodes("x").tolist()[2] == ""
    assert r.path("x", (1,))


def test_the_eager_state_keeps_its_pointer_fields():
    r = semir.compile(semir.load(EXAMPLES / "mlp.semir"), "max_product", pointers="eager")(
        **random_inputs(semir.load(EXAMPLES / "mlp.semir"), seed=1, dims={"B": 2}))
    s = r.state(r.wrt[0])
    assert {"hi_edge", "lo_edge"} <= set(s) and not np.all(s["hi_edge"] == EDGE_NONE)


@pytest.mark.parametrize("n", [150, 700])  # rows of n short (a lane's n kept) and long (chunks of n: CHUNKED_FROM)
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_vector_contraction_with_tails_ties_and_elements_without_a_path(dtype, n):
    # M odd (a row left after the 2-row blocks), K not a multiple of 4, N not a multiple of the lanes; only
    # some columns of the product reach the output, so D_Y holds elements with no path (in the first vector of
    # the lowest chunk of n too, and in a partial top chunk, in both dtypes); small integers tie.
    # Every weight is an input value, so the reference's numbers are exact and the states must equal them
    src = (f"def main(x: {dtype}[5, 37], w: {dtype}[37, {n}], v: {dtype}[5, {n - 12}]) -> {dtype} {{\n"
           f"    return sum((x @ w)[:, 3:{n - 9}] * v)\n}}\n")
    prog = semir.parse(src)
    rng = np.random.default_rng(4)
    npdt = np.float32 if dtype == "f32" else np.float64
    ins = {"x": rng.integers(-2, 3, size=(5, 37)).astype(npdt) / 4,
           "w": rng.integers(-2, 3, size=(37, n)).astype(npdt), "v": rng.normal(size=(5, n - 12)).astype(npdt)}
    ref = semir.compile(prog, "max_product", backend="reference", wrt=["x"])(**ins)
    lazy = semir.compile(prog, "max_product", backend="numba", wrt=["x"], pointers="lazy")(**ins)
    eager = semir.compile(prog, "max_product", backend="numba", wrt=["x"], pointers="eager")(**ins)
    for f in ("hi", "lo"):
        np.testing.assert_array_equal(lazy.state("x")[f], ref.state("x")[f], err_msg=f)
        np.testing.assert_array_equal(eager.state("x")[f], ref.state("x")[f], err_msg=f)
    compare_paths(eager, ref, "max_product", {}, limit=5 * 37)  # the vector code's pointers: the lowest edge
    assert assert_lazy_equals_eager(prog, ins, "numba", wrt=["x"]) > 0


@pytest.mark.parametrize("n", [160, 800])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_vector_contraction_pointers_take_the_lowest_edge_among_ties(dtype, n):
    # every candidate of every element equal: each lane of the vector code sees many ties, and the path of
    # every element must leave it by the lowest edge, as the reference's ⊕ picks it
    prog = semir.parse(f"def main(x: {dtype}[4, 8], w: {dtype}[8, {n}]) -> {dtype} {{\n    return sum(x @ w)\n}}\n")
    npdt = np.float32 if dtype == "f32" else np.float64
    ins = {"x": np.ones((4, 8), npdt), "w": np.ones((8, n), npdt)}
    ref = semir.compile(prog, "max_product", backend="reference", wrt=["x"], pointers="eager")(**ins)
    eager = semir.compile(prog, "max_product", backend="numba", wrt=["x"], pointers="eager")(**ins)
    compare_paths(eager, ref, "max_product", {}, limit=32)
    assert eager.path("x", (1, 2), "hi")[1].index == (1, 0)  # the consumer element (m, n) = (1, 0)


def test_vector_contraction_pointers_where_every_product_overflowed():
    # whole chunks of n (float32, N = 704; n < 64, the lowest chunk, has no path). Every product of B's rows
    # 0, 2, 4, 6 with D_Y overflows to −∞, so those elements' best hi and lo are −∞ (a path), which the vector
    # code's lanes cannot tell from having no candidate: it scans the whole row for the lowest edge instead
    # (rescanning the lowest chunk finds none). The other rows' products are finite.
    prog = semir.parse("def main(x: f32[4, 8], w: f32[8, 704], c: f32[4, 640]) -> f32 {\n"
                       "    return sum((x @ w)[:, 64:704] * c)\n}\n")
    rng = np.random.default_rng(7)
    w = np.full((8, 704), -10.0, np.float32)
    w[1::2] = rng.normal(size=(4, 704)) * 1e-30
    ins = {"x": np.full((4, 8), 1e-30, np.float32), "w": w, "c": np.full((4, 640), 1e38, np.float32)}
    ref = semir.compile(prog, "max_product", backend="reference", wrt=["x"])(**ins)
    eager = semir.compile(prog, "max_product", backend="numba", wrt=["x"], pointers="eager")(**ins)
    hi = ref.state("x")["hi"]
    assert np.isneginf(hi[:, 0::2]).all() and np.isfinite(hi[:, 1::2]).all()
    for f in ("hi", "lo"):
        np.testing.assert_array_equal(eager.state("x")[f], ref.state("x")[f], err_msg=f)
    compare_paths(eager, ref, "max_product", {}, limit=4 * 8)
    assert assert_lazy_equals_eager(prog, ins, "numba", wrt=["x"]) > 0


def _block_oracle(Yh, Yl, B, M, K, N, nv):
    # each (m, k): the best hi (lo) over n < nv of max (min) of w·hi, w·lo in the dtype, consumers with no path
    # (NaN) left out, and the lowest n holding it; edge m·N + n; -1 where no n has a candidate
    out = [np.full(M * K, -np.inf, Yh.dtype), np.full(M * K, np.inf, Yh.dtype), np.full(M * K, -1), np.full(M * K, -1)]
    for m in range(M):
        y_h, y_l, live = Yh[m * N:m * N + nv], Yl[m * N:m * N + nv], ~np.isnan(Yh[m * N:m * N + nv])
        for k in range(K):
            w = B[k * N:k * N + nv]
            for f, pick, best in ((0, np.maximum, np.max), (1, np.minimum, np.min)):
                cand = pick(w * y_h, w * y_l)
                if live.any():
                    top = best(cand[live])
                    out[f][m * K + k] = top
                    out[f + 2][m * K + k] = m * N + int(np.flatnonzero(live & (cand == top))[0])
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_pointer_blocks_equal_an_independent_oracle(dtype):
    # the per-lane and the chunked vector blocks, called directly on rows of 1 to 60 vectors (partial top
    # chunks included) of ties, all-equal values, products that overflow to ±inf, and consumers with no path
    from numba import njit
    from semir.backends.numba import vector

    @njit(_nrt=False, error_model="numpy")
    def run(U0, U1, U2, U3, Yh, Yl, B, M, K, N, nv, chunked, dense):
        for m in range(0, M, vector.PM):
            for k in range(0, K, vector.PK):
                if chunked:
                    vector.max_times_block_chunks(U0, U1, U2, U3, Yh, Yl, B, m * K + k, m * N, k * N, K, N, nv, m * N,
                                                  dense)
                else:
                    vector.max_times_block_pointers(U0, U1, U2, U3, Yh, Yl, B, m * K + k, m * N, k * N, K, N, nv,
                                                    m * N)

    rng = np.random.default_rng(11)
    L = vector.lanes(np.dtype(dtype).itemsize)
    big = np.finfo(dtype).max / 4
    for trial in range(40):
        M, K, steps = 2, 2, int(rng.integers(1, 61))
        nv = steps * L
        N = nv + int(rng.integers(0, L))
        kind = trial % 4
        if kind == 0:  # small integers: ties
            Yh = rng.integers(-2, 3, M * N).astype(dtype)
            B = rng.integers(-2, 3, K * N).astype(dtype)
        elif kind == 1:  # every candidate equal
            Yh, B = np.ones(M * N, dtype), np.ones(K * N, dtype)
        elif kind == 2:  # products of ±inf
            Yh, B = rng.choice([big, -big, 1.0], M * N).astype(dtype), rng.choice([-8.0, 8.0, 0.5], K * N).astype(dtype)
        else:
            Yh, B = rng.normal(size=M * N).astype(dtype), rng.normal(size=K * N).astype(dtype)
        Yl = (Yh - rng.integers(0, 2, M * N)).astype(dtype) if kind != 1 else Yh.copy()
        none = rng.random(M * N) < (0.3 if trial % 3 == 0 else 0.0)
        Yh[none] = Yl[none] = np.nan
        expected = _block_oracle(Yh, Yl, B, M, K, N, nv)
        for chunked in (False, True):
            U = [np.full(M * K, -np.inf, dtype), np.full(M * K, np.inf, dtype), np.full(M * K, -1), np.full(M * K, -1)]
            run(*U, Yh, Yl, B, M, K, N, nv, chunked, not none.any())
            for got, want, name in zip(U, expected, ("hi", "lo", "hi edge", "lo edge")):
                np.testing.assert_array_equal(got, want, err_msg=f"trial {trial} chunked={chunked} {name}")


def _layernorm_rows_oracle(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, rows, n):
    # each row's weights γ_i/σ·((δ_ij − 1/n) − x̂_i·(x̂_j/n)) in the dtype, whole matrices at a time; the
    # candidates max/min of w·hi, w·lo with 0·∞ = 0, consumers with no path (hi < lo) left out
    dt = xhat.dtype.type
    hi, lo = U_hi.copy(), U_lo.copy()
    for r in range(rows):
        s = slice(r * n, r * n + n)
        x = xhat[s]
        vh, vl = V_hi[s][:, None], V_lo[s][:, None]
        with np.errstate(invalid="ignore", over="ignore"):
            g = gamma * inv[r]
            m = (np.eye(n, dtype=xhat.dtype) - dt(1.0 / n)) - np.outer(x, x / dt(n))
            w = g[:, None] * m
            p = np.where((w != 0) & (vh != 0), w * vh, dt(0))
            q = np.where((w != 0) & (vl != 0), w * vl, dt(0))
        live = (V_hi[s] >= V_lo[s])[:, None]
        best = np.where(live, np.maximum(p, q), -np.inf).max(axis=0, initial=-np.inf)
        worst = np.where(live, np.minimum(p, q), np.inf).min(axis=0, initial=np.inf)
        hi[s] = np.maximum(hi[s], best)
        lo[s] = np.minimum(lo[s], worst)
    return hi, lo


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_layernorm_rows_equal_an_independent_oracle(dtype):
    # the values-first layernorm rows (consumers four at a time, the diagonal in its own span) against whole
    # NumPy matrices, on widths 1 to 70 and 384: consumers with no path, zero and overflowed states, states
    # already holding candidates, gammas where a weight overflows, and ties of small integers
    from semir.backends.numba.semirings import max_product_values as mpv

    rng = np.random.default_rng(12)
    big = np.finfo(dtype).max
    for trial in range(60):
        n = 384 if trial % 10 == 9 else int(rng.integers(1, 71))
        rows = int(rng.integers(1, 4))
        kind = trial % 5
        xhat = rng.normal(size=rows * n).astype(dtype)
        gamma = rng.normal(size=n).astype(dtype)
        inv = rng.uniform(0.5, 2.0, rows).astype(dtype)
        V_hi = rng.normal(size=rows * n).astype(dtype)
        if kind == 1:  # small integers: ties between consumers
            xhat, gamma, V_hi = (np.round(a * 2).astype(dtype) for a in (xhat, gamma, V_hi))
        V_lo = (V_hi - rng.integers(0, 3, rows * n)).astype(dtype)
        none = rng.random(rows * n) < 0.2
        V_hi[none], V_lo[none] = -np.inf, np.inf
        if kind == 2:  # zero and overflowed states
            pick = rng.random(rows * n)
            V_hi[pick < 0.1], V_lo[pick < 0.1] = 0, 0
            V_hi[(pick > 0.9) & ~none] = np.inf
        if kind == 3:  # weights that overflow against a lo of 0 (±∞·0 would be NaN, where ⊗ has 0)
            # γ/σ itself infinite, or finite with γ/σ·m past the range where |m| > 1
            at = int(rng.integers(0, n))
            gamma[at], inv[:] = (big, 2) if trial % 2 else (big / 4, 1)
            xhat *= 1 if trial % 2 else 8
            V_hi[at::n], V_lo[at::n] = 1, 0
        U_hi = np.where(rng.random(rows * n) < 0.5, rng.normal(size=rows * n), -np.inf).astype(dtype)
        U_lo = np.where(U_hi > -np.inf, U_hi - 1, np.inf).astype(dtype)
        want = _layernorm_rows_oracle(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, rows, n)
        mpv.bwd_layernorm(U_hi, U_lo, V_hi, V_lo, xhat, inv, gamma, rows, n, 0)
        np.testing.assert_array_equal(U_hi, want[0], err_msg=f"trial {trial} n={n} hi")
        np.testing.assert_array_equal(U_lo, want[1], err_msg=f"trial {trial} n={n} lo")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_contraction_into_b_equals_an_independent_oracle(dtype):
    # D_B[b, k, n] ⊕= A[b, m, k]·D_Y[b, m, n] over m (values only), by the vector code on transposed copies
    # (m of 16 and more, B's blocks per batch) and the scalar rows (shared blocks, short m), against NumPy
    from semir.backends.numba.semirings import max_product_values as mpv

    rng = np.random.default_rng(13)
    for trial in range(30):
        nb, M = int(rng.integers(1, 4)), int(rng.integers(1, 70))
        K, N = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        shared = trial % 5 == 4
        A = rng.normal(size=(nb, M, K)).astype(dtype)
        if trial % 3 == 1:  # ties
            A = np.round(A).astype(dtype)
        Vh = rng.normal(size=(nb, M, N)).astype(dtype)
        Vl = (Vh - rng.integers(0, 2, Vh.shape)).astype(dtype)
        none = rng.random(Vh.shape) < 0.2
        Vh[none], Vl[none] = -np.inf, np.inf
        nB = 1 if shared else nb
        Uh = np.where(rng.random((nB, K, N)) < 0.5, rng.normal(size=(nB, K, N)), -np.inf).astype(dtype)
        Ul = np.where(Uh > -np.inf, Uh - 1, np.inf).astype(dtype)
        want_h, want_l = Uh.copy(), Ul.copy()
        for b in range(nb):
            live = ~none[b][:, None, :]  # [m, 1, n]
            w = A[b][:, :, None]  # [m, k, 1]
            with np.errstate(invalid="ignore"):  # a consumer with no path: w·∓∞, left out below
                p, q = w * Vh[b][:, None, :], w * Vl[b][:, None, :]
            best = np.where(live, np.maximum(p, q), -np.inf).max(axis=0)
            worst = np.where(live, np.minimum(p, q), np.inf).min(axis=0)
            o = 0 if shared else b
            want_h[o] = np.maximum(want_h[o], best)
            want_l[o] = np.minimum(want_l[o], worst)
        a_off = np.arange(nb) * M * K
        y_off = np.arange(nb) * M * N
        b_off = np.zeros(nb, np.int64) if shared else np.arange(nb) * K * N
        gh, gl = Uh.ravel().copy(), Ul.ravel().copy()
        mpv.matmul_bwd_b(gh, gl, Vh.ravel(), Vl.ravel(), A.ravel(), a_off, b_off, y_off, M, K, N, 0, shared)
        np.testing.assert_array_equal(gh, want_h.ravel(), err_msg=f"trial {trial} {(nb, M, K, N, shared)} hi")
        np.testing.assert_array_equal(gl, want_l.ravel(), err_msg=f"trial {trial} {(nb, M, K, N, shared)} lo")


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_softmax_rows_equal_an_independent_oracle(dtype, log):
    # the values-first softmax rows over the last axis against whole NumPy matrices: weights s_i(δ_ij − s_j),
    # or δ_ij − e^{s_j} for log-softmax (the kernel is given e^s); consumers with no path, zero and overflowed
    # states, one-hot rows, ties
    from semir.backends.numba.semirings import max_product_values as mpv

    rng = np.random.default_rng(14)
    dt = np.dtype(dtype).type
    for trial in range(40):
        n, outer = int(rng.integers(1, 71)), int(rng.integers(1, 4))
        kind = trial % 4
        s = rng.dirichlet(np.ones(n), size=outer).astype(dtype)
        if kind == 1:  # one-hot rows: weights of exactly 0
            s = np.eye(n, dtype=dtype)[rng.integers(0, n, outer)]
        V_hi = rng.normal(size=(outer, n)).astype(dtype)
        if kind == 3:
            V_hi = np.round(V_hi).astype(dtype)
        V_lo = (V_hi - rng.integers(0, 3, V_hi.shape)).astype(dtype)
        if kind == 2:  # zero and overflowed states, against weights of 0 (0·∞ = 0)
            pick = rng.random(V_hi.shape)
            V_hi[pick < 0.1], V_lo[pick < 0.1] = 0, 0
            V_hi[pick > 0.8] = np.inf
            s[:, rng.random(n) < 0.3] = 0
        none = rng.random(V_hi.shape) < 0.2
        V_hi[none], V_lo[none] = -np.inf, np.inf
        U_hi = np.where(rng.random(V_hi.shape) < 0.5, rng.normal(size=V_hi.shape), -np.inf).astype(dtype)
        U_lo = np.where(U_hi > -np.inf, U_hi - 1, np.inf).astype(dtype)
        want_h, want_l = U_hi.copy(), U_lo.copy()
        for r in range(outer):
            sj = s[r][None, :]
            d = np.eye(n, dtype=dtype)
            w = (d - sj) if log else s[r][:, None] * (d - sj)
            vh, vl = V_hi[r][:, None], V_lo[r][:, None]
            with np.errstate(invalid="ignore"):
                p = np.where((w != 0) & (vh != 0), w * vh, dt(0))
                q = np.where((w != 0) & (vl != 0), w * vl, dt(0))
            live = (V_hi[r] >= V_lo[r])[:, None]
            want_h[r] = np.maximum(want_h[r], np.where(live, np.maximum(p, q), -np.inf).max(axis=0))
            want_l[r] = np.minimum(want_l[r], np.where(live, np.minimum(p, q), np.inf).min(axis=0))
        gh, gl = U_hi.ravel().copy(), U_lo.ravel().copy()
        mpv.bwd_softmax(gh, gl, V_hi.ravel(), V_lo.ravel(), s.ravel(), outer, n, 1, log, 0)
        np.testing.assert_array_equal(gh, want_h.ravel(), err_msg=f"trial {trial} n={n} hi")
        np.testing.assert_array_equal(gl, want_l.ravel(), err_msg=f"trial {trial} n={n} lo")
    # four overflowed consumers of a one-hot row: every weight 0 (softmax) or 0, ±1 (log-softmax: δ_ij − e^{s_j}
    # with e^s one-hot), so candidates (0, 0) where w = 0, never 0·∞ = NaN
    hi, lo = np.full(4, -np.inf, dtype), np.full(4, np.inf, dtype)
    mpv.bwd_softmax(hi, lo, np.full(4, np.inf, dtype), np.ones(4, dtype), np.eye(4, dtype=dtype)[0], 1, 4, 1, log, 0)
    inf = np.inf
    want = ([0, inf, inf, inf], [-inf, 0, 0, 0]) if log else ([0, 0, 0, 0], [0, 0, 0, 0])
    np.testing.assert_array_equal(hi, want[0])
    np.testing.assert_array_equal(lo, want[1])
