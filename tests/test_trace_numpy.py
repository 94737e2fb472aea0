"""Tracing behaves like array code: x.T, .sum()-style methods, abs() and NumPy ufuncs/functions on traced
values build the same IR as the model language; anything else is a clear error, never a raw NumPy one."""

import numpy as np
import pytest

import semir
from semir.errors import SemirError


def test_numpy_calls_and_methods_trace_like_the_language():
    def f(x, w):
        h = np.tanh(x @ w)
        g = abs(h.T).sum(axis=0)
        return np.sum(np.exp(g) * 2.0) + h.mean() + np.max(np.maximum(h, 0.5)) + h.reshape(12).max()

    text = """
def f(x: f64[3, 4], w: f64[4, 4]) -> f64 {
    h = tanh(x @ w)
    g = sum(abs(transpose(h)), axis=0)
    return sum(exp(g) * 2.0) + mean(h) + max(maximum(h, 0.5)) + max(reshape(h, [12]))
}"""
    traced = semir.trace(f, x="f64[3, 4]", w="f64[4, 4]")
    assert str(traced) == str(semir.parse(text))
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(3, 4)), rng.normal(size=(4, 4))
    h = np.tanh(x @ w)
    want = np.sum(np.exp(np.abs(h.T).sum(axis=0)) * 2.0) + h.mean() + np.max(np.maximum(h, 0.5)) + h.max()
    assert semir.compile(traced, "sum_product").forward(x=x, w=w) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("fn,needle", [
    (lambda x: np.arctan2(x, x), "numpy.arctan2 on a traced tensor is not supported"),
    (lambda x: np.cumsum(x), "numpy.cumsum on a traced tensor is not supported"),
    (lambda x: np.add.reduce(x), "numpy.add.reduce"),
    (lambda x: np.sum(x, dtype=np.float32), "numpy.sum"),
])
def test_unsupported_numpy_is_a_clear_error(fn, needle):
    with pytest.raises(SemirError, match=needle):
        semir.trace(fn, x="f64[3]")
