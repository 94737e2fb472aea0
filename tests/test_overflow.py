"""max_product where path products overflow while every forward value is finite.

A partial product past the dtype's range is ±∞, and a zero factor then makes the path's product 0 (0·∞ = 0,
as for the reals the floats stand for; IEEE's NaN would depend on the order in which candidates meet). A
path state whose products all overflowed negative is (−∞, −∞), a path, not 0̄ = (−∞, +∞). The expected values
come from path enumeration (float64), and every backend and pointer policy must give them, field by field,
with the same paths.
"""

import numpy as np
import pytest
from test_semantics import check_against_oracle, check_paths

import semir
from semir.testing.oracle import Oracle

# (big, tiny): big² overflows the dtype; the forward values stay finite through tiny
SCALE = {"f64": (1e200, 1e-300), "f32": (1e30, 1e-30)}

MATMUL = """
def main(x: {t}[2, 3], b: {t}[3, 2], c: {t}[2, 2], d: {t}[2, 2]) -> {t} {{
    return sum(((x @ b) @ c) @ d)
}}
"""

WIDE = """
def main(x: {t}[4, 8], b: {t}[8, 32], c: {t}[32, 32], d: {t}[32, 32]) -> {t} {{
    return sum(((x @ b) @ c) @ d)
}}
"""

SQRT = """
def main(x: {t}[4], z: {t}[4]) -> {t} {{
    return sum(sqrt(x) * z)
}}
"""

ROWS = """
def main(x: {t}[2, 4], g: {t}[4], s: {t}[2, 4], e: {t}[2, 4], c: {t}[4, 4], d: {t}[4, 4]) -> {t} {{
    y = layernorm(x, g, g, eps=1e-5)
    p = softmax(s, axis=-1)
    q = log_softmax(s, axis=-1)
    return sum((((y + p + q) * e) @ c) @ d)
}}
"""


def _matmul(big, tiny, sign):
    x = np.array([[tiny, 0, 2 * tiny], [0, tiny, tiny]])
    b = np.array([[0, 1], [-1, 0], [1, 1]])
    d = np.array([[big, -big], [big, big]]) if sign == "mixed" else np.full((2, 2), -big)
    return {"x": x, "b": b, "c": np.full((2, 2), big), "d": d}


def _wide(big, tiny, sign):
    # rows of whole 512-bit vectors and whole register blocks, where the vector code runs unless a consumer
    # overflowed. Every product is +inf but through a zero of b, so each lo is 0 exactly where b's row has one.
    rng = np.random.default_rng(5)
    b = rng.choice([0.0, 0.5, 1.0], size=(8, 32), p=[0.05, 0.45, 0.5])
    return {"x": rng.choice([tiny, 2 * tiny], size=(4, 8)), "b": b, "c": np.full((32, 32), big),
            "d": np.full((32, 32), big)}


def _sqrt(big, tiny, sign):
    # sqrt's weight at 0 is infinite; the mul's weight z = 0 makes that path's product 0
    return {"x": np.array([0.0, 1.0, 4.0, 0.0]), "z": np.array([0.0, 2.0, -1.0, 3.0])}


def _rows(big, tiny, sign):
    rng = np.random.default_rng(3)
    s = rng.normal(size=(2, 4))
    s[0] = [0.0, -1e4, -1e4, -1e4]  # a one-hot softmax: weights s_i(δ_ij − s_j) and δ_ij − e^{s_j} of exactly 0
    c = np.full((4, 4), big) * (1 if sign == "mixed" else -1)
    c[0, 1] = -big
    # γ_1 = 0: layernorm's row 1 of weights is 0
    return {"x": rng.normal(size=(2, 4)), "g": np.array([1.0, 0.0, -2.0, 0.5]), "s": s,
            "e": np.full((2, 4), tiny), "c": c, "d": np.full((4, 4), big)}


CASES = {"matmul": (MATMUL, _matmul), "sqrt": (SQRT, _sqrt), "rows": (ROWS, _rows)}
WIDE_CASES = {"wide": (WIDE, _wide)}


def _program(case, dtype, sign):
    src, make = {**CASES, **WIDE_CASES}[case]
    prog = semir.parse(src.format(t=dtype))
    dt = np.float32 if dtype == "f32" else np.float64
    return prog, {k: v.astype(dt) for k, v in make(*SCALE[dtype], sign).items()}


def _results(prog, ins):
    wrt = [p.name for p in prog.inputs]
    return {(b, p): semir.compile(prog, "max_product", backend=b, pointers=p, wrt=wrt)(**ins)
            for b in ("reference", "numba") for p in ("eager", "lazy")}


@pytest.mark.parametrize("sign", ["mixed", "negative"])
@pytest.mark.parametrize("case", list(CASES))
def test_overflowed_products_equal_the_oracle_on_every_backend(case, sign):
    prog, ins = _program(case, "f64", sign)
    oracle = Oracle(prog, ins)
    results = _results(prog, ins)
    infinite = 0
    for r in results.values():
        assert r.nonfinite is None  # the forward values are finite: the policy for them does not apply
        for p in prog.inputs:
            check_against_oracle(r, oracle, "max_product", p.name)
            check_paths(r, ins, p.name, "max_product")
            infinite += int(np.isinf(r.state(p.name)["hi"]).sum() + np.isinf(r.state(p.name)["lo"]).sum())
    assert infinite  # the case overflows


@pytest.mark.parametrize("case", [*CASES, *WIDE_CASES])
def test_overflowed_products_agree_bit_for_bit_in_float32(case):
    prog, ins = _program(case, "f32", "mixed")
    results = _results(prog, ins)
    ref = results[("reference", "eager")]
    assert any(np.isinf(ref.state(p.name)["hi"]).any() for p in prog.inputs)
    for key, r in results.items():
        for p in prog.inputs:
            for f in ("hi", "lo"):
                np.testing.assert_array_equal(r.state(p.name)[f], ref.state(p.name)[f], err_msg=f"{key} {p.name}.{f}")
            for comp in ("hi", "lo"):
                for idx in np.ndindex(*ref.state(p.name)["hi"].shape):
                    assert list(r.path(p.name, idx, comp)) == list(ref.path(p.name, idx, comp)), (key, p.name, idx)


def test_a_path_whose_products_all_overflowed_negative_is_a_path():
    prog, ins = _program("matmul", "f64", "negative")
    for r in _results(prog, ins).values():
        hi, lo = r.state("x")["hi"], r.state("x")["lo"]
        assert hi[0, 2] == lo[0, 2] == -np.inf  # every path from x[0, 2] goes through b[2] = [1, 1]
        path = r.path("x", (0, 2), "hi")
        assert path and path.value == -np.inf
