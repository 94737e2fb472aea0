"""semantics="brunoflow": the paper engine's choices, on cases whose values are derived by hand (issue 7);
tests/test_brunoflow_engine.py compares with numbers recorded from brunoflow itself."""

import numpy as np
import pytest

import semir


def run(src, semiring, semantics, **ins):
    return semir.compile(semir.parse(src), semiring, semantics=semantics)(**ins)


MATMUL = "def main(x: f64[1, 2], w: f64[2, 2]) -> f64 {\n  return sum(x @ w)\n}"


def test_matmul_sums_inside_for_max_product():
    x, w = np.array([[1.0, 2.0]]), np.array([[1.0, 3.0], [2.0, -1.0]])
    # x[k] feeds y[n] with weight w[k, n], and each y[n] reaches the output with weight 1.
    # exact: the best single path, max_n w[k, n] = [3, 2]; brunoflow: the dot product Σ_n w[k, n] = [4, 1]
    np.testing.assert_allclose(run(MATMUL, "max_product", "exact", x=x, w=w)["x"], [[3.0, 2.0]])
    np.testing.assert_allclose(run(MATMUL, "max_product", "brunoflow", x=x, w=w)["x"], [[4.0, 1.0]])
    with pytest.raises(semir.OptionError, match="no brunoflow counterpart"):
        run(MATMUL, "max_abs", "brunoflow", x=x, w=w)
    # ring semirings already sum: sum_product is the gradient under both semantics
    for sem in ("exact", "brunoflow"):
        np.testing.assert_allclose(run(MATMUL, "sum_product", sem, x=x, w=w)["x"], [[4.0, 1.0]])


def test_broadcast_and_embedding_lookup_sum_inside():
    src = "def main(x: f64[3, 2], b: f64[2]) -> f64 {\n  return sum(x * b)\n}"
    x, b = np.array([[1.0, -2.0], [3.0, 0.5], [2.0, 1.0]]), np.array([1.0, 1.0])
    # b[j] is broadcast to 3 rows; its edges carry weight x[r, j]. exact: max_r; brunoflow: Σ_r
    np.testing.assert_allclose(run(src, "max_product", "exact", x=x, b=b)["b"], [3.0, 1.0])
    np.testing.assert_allclose(run(src, "max_product", "brunoflow", x=x, b=b)["b"], [6.0, -0.5])
    src = "def main(t: f64[3, 2], ids: i64[4], u: f64[4, 2]) -> f64 {\n  return sum(take(t, ids) * u)\n}"
    t, ids, u = np.ones((3, 2)), np.array([2, 0, 2, 2]), np.array([[1.0, 2], [3, 4], [5, 6], [-7, 8]])
    # row 2 of the table is looked up at positions 0, 2, 3: exact max of u there, brunoflow the sum
    np.testing.assert_allclose(run(src, "max_product", "exact", t=t, ids=ids, u=u)["t"][2], [5.0, 8.0])
    np.testing.assert_allclose(run(src, "max_product", "brunoflow", t=t, ids=ids, u=u)["t"][2], [-1.0, 16.0])
    np.testing.assert_allclose(run(src, "max_product", "brunoflow", t=t, ids=ids, u=u)["t"][0], [3.0, 4.0])
    # row 1 is never looked up: brunoflow's dense VJP still hands it 0, a zero-weight "path" (exact: none)
    assert run(src, "max_product", "exact", t=t, ids=ids, u=u)["t"][1].tolist() == [-np.inf, -np.inf]
    bf = semir.compile(semir.parse(src), "max_product", backend="reference", semantics="brunoflow")(t=t, ids=ids, u=u)
    np.testing.assert_array_equal(bf["t"][1], [0.0, 0.0])
    with pytest.raises(semir.SemirError, match="zero adjoint"):  # a value no path carries is not given a path
        bf.path("t", (1, 0))


def test_softmax_is_composed_as_brunoflow_composes_it_and_pointers_name_consumers():
    src = "def main(x: f64[2]) -> f64 {\n  s = softmax(x, axis=0)\n  return s[0]\n}"
    ref = semir.compile(semir.parse(src), "max_product", backend="reference", semantics="brunoflow")
    assert ref.granularity == "op" and ref.backend == "reference"
    # exp(x - logsumexp(x)), the max inside logsumexp not detached
    ops = [n.op.value for n in ref.program.nodes]
    assert "softmax" not in ops and "detach" not in ops and {"max", "exp", "log"} <= set(ops)
    r = ref(x=np.array([0.3, -0.2]))
    p = r.path("x", (0,), "hi")
    assert p[0].node == "x" and p[-1].node == r.program.output
    fast = semir.compile(semir.parse(src), "max_product", backend="numba", semantics="brunoflow")
    fast = fast(x=np.array([0.3, -0.2]))
    np.testing.assert_allclose(fast.state("x")["hi"], r.state("x")["hi"], rtol=1e-12)
    assert fast.next_nodes("x").tolist() == r.next_nodes("x").tolist()
    with pytest.raises(semir.OptionError, match="next_nodes works"):
        fast.path("x", (0,))
    with pytest.raises(semir.OptionError, match="valid choices: exact, brunoflow"):
        semir.compile(semir.parse(src), "max_product", semantics="paper")
    with pytest.raises(semir.OptionError, match="no granularity option"):
        semir.compile(semir.parse(src), "max_product", semantics="brunoflow", granularity="decomposed")
