"""The reference backend equals the path-enumeration oracle, for every semiring (CONTRACT §5)."""

import math
import os

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import semir
from semir.testing.oracle import Oracle
from semir.testing.strategies import scalar_programs, tensor_programs

NUMBA_EXAMPLES = int(os.environ.get("SEMIR_NUMBA_EXAMPLES", "6"))
SEMIRINGS = ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:3"]


def check_against_oracle(result, oracle: Oracle, semiring: str, node: str, rtol=1e-9, atol=1e-12):
    exp = oracle.expected(semiring, node)
    got = result[node]
    where = f"{semiring} at {node}"
    if semiring == "boolean":
        np.testing.assert_array_equal(got, exp["value"], err_msg=where)
    elif semiring in ("max_abs",) or semiring.startswith("topk:"):
        # Magnitudes are defined exactly; the sign only where no other path has the same magnitude.
        np.testing.assert_allclose(np.abs(got), exp["magnitude"], rtol=rtol, atol=atol, err_msg=where)
        node_name = oracle.prog.resolve(node)
        shape = oracle.values[node_name].shape
        for f in range(int(np.prod(shape))):
            mags = sorted({round(abs(p), 12) for p, _ in oracle.paths(node_name, f)})
            signs = {}
            for p, _ in oracle.paths(node_name, f):
                signs.setdefault(round(abs(p), 12), set()).add(np.sign(p))
            if semiring == "max_abs" and mags and len(signs[mags[-1]]) == 1:
                g = np.asarray(got).reshape(-1)[f]
                e = np.asarray(exp["value"]).reshape(-1)[f]
                assert math.isclose(g, e, rel_tol=rtol, abs_tol=atol), where
    else:
        np.testing.assert_allclose(np.asarray(got, float), np.asarray(exp["value"], float), rtol=rtol, atol=atol,
                                   err_msg=where)
        if semiring == "max_product":
            np.testing.assert_allclose(result.state(node)["lo"], exp["lo"], rtol=rtol, atol=atol, err_msg=where)
        if semiring == "entropy":
            np.testing.assert_allclose(result.state(node)["logz"], exp["logz"], rtol=rtol, atol=1e-9, err_msg=where)


def check_paths(result, inputs, node: str, semiring: str):
    """Every recovered path is a real path of the scalar graph and its product is the reported value."""
    oracle = Oracle(result.program, inputs)  # paths name the nodes of the program the kernel ran
    name = oracle.prog.resolve(node)
    shape = oracle.values[name].shape
    comps = {"max_product": ["hi", "lo"], "max_abs": [None]}.get(semiring, list(range(3)))
    for f in range(int(np.prod(shape))):
        idx = np.unravel_index(f, shape) if shape else ()
        for comp in comps:
            path = result.path(node, idx, comp)
            if not path:
                assert not oracle.paths(name, f) or semiring.startswith("topk:")
                continue
            for a, b in zip(path, path[1:]):
                assert oracle.is_edge(a.node, _flat(a.index, oracle, a.node), b.node, _flat(b.index, oracle, b.node),
                                      a.weight), f"{a} -> {b} is not an edge"
            assert path[-1].node == oracle.prog.output
            state = result.state(node)
            want = {"hi": state.get("hi"), "lo": state.get("lo")}.get(comp) if semiring == "max_product" else (
                state["v"][..., comp] if semiring.startswith("topk:") else state["v"])
            assert math.isclose(path.value, float(np.asarray(want)[idx]), rel_tol=1e-9, abs_tol=1e-12)


def _flat(index, oracle, node):
    shape = oracle.values[node].shape
    return int(np.ravel_multi_index(index, shape)) if shape else 0


def _finite(prog, inputs):
    out = semir.compile(prog, "sum_product", backend="reference").forward(**inputs)
    return np.all(np.isfinite(out)) and np.all(np.abs(out) < 1e6)


def oracle_scalar(gen, seed, backend):
    prog = semir.parse(gen.text)
    inputs = gen.inputs(seed)
    assume(_finite(prog, inputs))
    oracle = Oracle(prog, inputs)
    nodes = [n for n, _ in gen.params] + [t for t, _, _ in gen.lines]
    for s in SEMIRINGS:
        r = semir.compile(prog, s, backend=backend, wrt=nodes)(**inputs)
        for node in nodes:
            check_against_oracle(r, oracle, s, node)
            if r.semiring.has_paths:
                check_paths(r, inputs, node, s)


def oracle_tensor(gen, seed, backend):
    prog = semir.parse(gen.text)
    inputs = gen.inputs(seed)
    assume(_finite(prog, inputs))
    try:
        oracle = Oracle(prog, inputs, max_paths=20_000)
    except ValueError:
        assume(False)
    nodes = [n for n, t in gen.params if t.startswith("f")] + [t for t, _, _ in gen.lines]
    for s in SEMIRINGS:
        r = semir.compile(prog, s, backend=backend, wrt=nodes)(**inputs)
        for node in nodes:
            check_against_oracle(r, oracle, s, node, rtol=1e-8, atol=1e-10)
            if r.semiring.has_paths and s != "topk:3":
                check_paths(r, inputs, node, s)


@given(scalar_programs(), st.integers(0, 2**16))
def test_reference_equals_oracle_scalar(gen, seed):
    oracle_scalar(gen, seed, "reference")


@given(tensor_programs(), st.integers(0, 2**16))
def test_reference_equals_oracle_tensor(gen, seed):
    oracle_tensor(gen, seed, "reference")


# Each random program compiles fresh Numba kernels (about a second per semiring), so fewer examples.
@settings(max_examples=NUMBA_EXAMPLES)
@given(scalar_programs(), st.integers(0, 2**16))
def test_numba_equals_oracle_scalar(gen, seed):
    oracle_scalar(gen, seed, "numba")


@settings(max_examples=NUMBA_EXAMPLES)
@given(tensor_programs(), st.integers(0, 2**16))
def test_numba_equals_oracle_tensor(gen, seed):
    oracle_tensor(gen, seed, "numba")


def central_difference(kernel, inputs, name, h=1e-6):
    x = np.array(inputs[name], dtype=float)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += h
        minus[i] -= h
        fp = kernel.forward(**{**inputs, name: plus})
        fm = kernel.forward(**{**inputs, name: minus})
        grad[i] = (np.sum(fp) - np.sum(fm)) / (2 * h)
    return grad


@given(scalar_programs(), st.integers(0, 2**16))
def test_sum_product_equals_finite_differences_scalar(gen, seed):
    prog = semir.parse(gen.text)
    inputs = gen.inputs(seed)
    assume(_finite(prog, inputs))
    k = semir.compile(prog, "sum_product", backend="reference")
    r = k(**inputs)
    for name, _ in gen.params:
        fd = central_difference(k, inputs, name)
        np.testing.assert_allclose(r[name], fd, rtol=1e-4, atol=1e-5)


@given(tensor_programs(), st.integers(0, 2**16))
def test_sum_product_equals_finite_differences_tensor(gen, seed):
    prog = semir.parse(gen.text)
    inputs = gen.inputs(seed)
    assume(_finite(prog, inputs))
    k = semir.compile(prog, "sum_product", backend="reference")
    r = k(**inputs)
    for name, t in gen.params:
        if t.startswith("f"):
            fd = central_difference(k, inputs, name)
            # kinks (relu, abs, max, where) make finite differences unreliable right at a switch
            assume(np.allclose(central_difference(k, inputs, name, h=1e-5), fd, rtol=1e-3, atol=1e-4))
            np.testing.assert_allclose(r[name], fd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("semiring", SEMIRINGS)
def test_aggregate_is_union_of_path_sets(semiring):
    prog = semir.parse("""
def main(x: f64[3], w: f64[3, 2]) -> f64 {
    h = tanh(x @ w)
    return sum(h * h) + sum(x)
}""")
    inputs = {"x": np.array([0.3, -1.2, 0.7]), "w": np.array([[0.5, -1.0], [2.0, 0.1], [-0.3, 0.8]])}
    r = semir.compile(prog, semiring, backend="reference")(**inputs)
    oracle = Oracle(prog, inputs)
    exp = oracle.expected_union(semiring, "x")
    got = r.aggregate("x")
    if semiring == "boolean":
        assert bool(got) == bool(exp["value"])
    elif semiring in ("max_abs",) or semiring.startswith("topk:"):
        np.testing.assert_allclose(np.abs(got), exp["magnitude"], rtol=1e-9)
    else:
        np.testing.assert_allclose(got, exp["value"], rtol=1e-9)
    if semiring == "entropy":
        per_elem = oracle.expected("entropy", "x")["value"]
        assert not np.isclose(got, per_elem.sum()), "aggregated entropy must not be a sum of entropies"
