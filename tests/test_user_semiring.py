"""User-defined semirings (``from_scalar``) on the Numba backend equal the reference backend (issue 16)."""

import math

import numpy as np
import pytest
from conftest import EXAMPLES, as_f64, compare, random_inputs

import semir

BOTTLENECK = semir.semirings.from_scalar("bottleneck", 0.0, math.inf, max, min, abs)  # widest path in |w|
SHORTEST = semir.semirings.from_scalar("min_neglog", math.inf, 0.0, min, lambda p, q: p + q,
                                       lambda w: -math.log(abs(w)) if w != 0 else math.inf)
PLAIN = semir.semirings.from_scalar("plain", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b)
MODELS = sorted(p.stem for p in EXAMPLES.glob("*.semir"))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("sr", [BOTTLENECK, SHORTEST, PLAIN], ids=lambda s: s.name)
def test_user_semiring_on_numba_equals_reference(model, sr):
    prog = as_f64(semir.load(EXAMPLES / f"{model}.semir"))
    ins = random_inputs(prog, seed=11, dims={"S": 3, "B": 2}, scale=0.7)
    got = semir.compile(prog, sr, backend="numba")(**ins)
    ref = semir.compile(prog, sr, backend="reference")(**ins)
    assert got.wrt == ref.wrt
    compare(got, ref, sr.name, rtol=1e-9, atol=1e-12)  # as the built-in semirings (test_numba.py)


def test_float32_values_are_rounded_like_the_reference():
    prog = semir.load(EXAMPLES / "transformer_layer.semir")
    ins = random_inputs(prog, seed=12, dims={"S": 4}, scale=0.5)
    got = semir.compile(prog, SHORTEST, backend="numba")(**ins)
    ref = semir.compile(prog, SHORTEST, backend="reference")(**ins)
    assert got.state("h")["v"].dtype == np.float32
    compare(got, ref, SHORTEST.name, rtol=2e-6, atol=1e-6)


def test_plain_user_semiring_is_the_gradient():
    # an independent check of the numbers: the user-defined (+, ×) is the builtin sum_product's gradient
    prog = as_f64(semir.load(EXAMPLES / "mlp.semir"))
    ins = random_inputs(prog, seed=13, dims={"S": 3}, scale=0.7)
    got = semir.compile(prog, PLAIN, backend="numba")(**ins)
    grad = semir.compile(prog, "sum_product", backend="reference")(**ins)
    for n in got.wrt:
        np.testing.assert_allclose(got[n], grad[n], rtol=1e-12, atol=1e-15)


def _untyped(x):  # not jitted: Numba cannot call it
    return x


@pytest.mark.parametrize("kwargs, role", [
    ({"plus": lambda a, b: _untyped(a) + b}, "plus"),
    ({"lift": lambda w: str(w)}, "lift"),
])
def test_a_function_numba_cannot_compile_is_refused_by_name(kwargs, role):
    args = {"plus": lambda a, b: a + b, "times": lambda a, b: a * b, **kwargs}
    sr = semir.semirings.from_scalar("bad_" + role, 0.0, 1.0, **args)
    prog = semir.load(EXAMPLES / "paper_fig1.semir")
    with pytest.raises(semir.OptionError, match=f"its {role} function .*use backend='reference'"):
        semir.compile(prog, sr, backend="numba")
    semir.compile(prog, sr, backend="reference") if role == "plus" else None  # the reference still takes it


def test_changing_a_definition_never_reuses_the_cached_module():
    prog = as_f64(semir.load(EXAMPLES / "paper_fig1.semir"))
    one = semir.semirings.from_scalar("scaled", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b,
                                      lambda w: 2.0 * w)
    two = semir.semirings.from_scalar("scaled", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b,
                                      lambda w: 3.0 * w)
    a = semir.compile(prog, one, backend="numba")(x=1.0, y=2.0)
    b = semir.compile(prog, two, backend="numba")(x=1.0, y=2.0)
    ra = semir.compile(prog, one, backend="reference")(x=1.0, y=2.0)
    rb = semir.compile(prog, two, backend="reference")(x=1.0, y=2.0)
    np.testing.assert_allclose([a["x"], b["x"]], [ra["x"], rb["x"]], rtol=1e-12)
    assert float(a["x"]) != float(b["x"])


SCALE = 2.0


def _scaled(w):
    return SCALE * w


def test_a_changed_global_never_reuses_the_compiled_functions():
    # Numba freezes a global's value into compiled code: the same function reading another value of SCALE
    # must compile again (and get another cached module), never give the old numbers
    global SCALE
    prog = as_f64(semir.load(EXAMPLES / "paper_fig1.semir"))
    got = []
    try:
        for SCALE in (2.0, 5.0):  # noqa: B007  (the global _scaled reads)
            sr = semir.semirings.from_scalar("scaled_global", 0.0, 1.0, lambda a, b: a + b, lambda a, b: a * b,
                                             _scaled)
            got.append((float(semir.compile(prog, sr, backend="numba")(x=1.0, y=2.0)["x"]),
                        float(semir.compile(prog, sr, backend="reference")(x=1.0, y=2.0)["x"])))
    finally:
        SCALE = 2.0
    assert got[0][0] == pytest.approx(got[0][1], rel=1e-12) and got[1][0] == pytest.approx(got[1][1], rel=1e-12)
    assert got[0][0] != got[1][0]


def test_cuda_refuses_a_user_semiring_with_the_backends_that_take_it():
    with pytest.raises(semir.OptionError, match="backend 'numba'"):
        semir.compile(semir.load(EXAMPLES / "paper_fig1.semir"), PLAIN, backend="cuda")
