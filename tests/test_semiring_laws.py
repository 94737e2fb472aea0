"""Semiring laws hold for every registered semiring (property tests on carrier values)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semir import semirings
from semir.errors import OptionError

NAMES = ["sum_product", "max_product", "max_abs", "entropy", "log", "counting", "boolean", "topk:3"]
weights = st.one_of(st.just(0.0), st.floats(-4, 4, allow_nan=False).filter(lambda w: abs(w) > 1e-3))


def elements(sr):
    """Carrier elements built from lifted weights with ⊕ and ⊗: the values a backward sweep produces."""
    leaf = weights.map(lambda w: sr.lift(np.float64(w)))
    return st.recursive(leaf, lambda kids: st.one_of(
        st.tuples(kids, kids).map(lambda ab: sr.plus(*ab)),
        st.tuples(kids, kids).map(lambda ab: sr.times(*ab))), max_leaves=6)


VALUE_FIELDS = {"max_product": ("hi", "lo"), "entropy": ("logz", "h"), "counting": ("count", "log_count"),
                "max_abs": ("v",), "topk:3": ("v",)}


def same(sr, a, b):
    for f in VALUE_FIELDS.get(sr.name, tuple(a)):
        x, y = np.asarray(a[f]), np.asarray(b[f])
        if sr.name in ("max_abs", "topk:3"):  # ties in magnitude may keep either sign: compare magnitudes
            x, y = np.abs(x), np.abs(y)
        if x.dtype == bool:
            assert np.array_equal(x, y)
        else:
            assert np.allclose(x, y, rtol=1e-9, atol=1e-9, equal_nan=False) or np.array_equal(x, y), (f, x, y)


@pytest.mark.parametrize("name", NAMES)
def test_laws(name):
    sr = semirings.get(name)
    zero, one = sr.zeros((), np.float64), sr.ones((), np.float64)

    @given(elements(sr), elements(sr), elements(sr))
    def laws(a, b, c):
        same(sr, sr.plus(sr.plus(a, b), c), sr.plus(a, sr.plus(b, c)))
        same(sr, sr.plus(a, b), sr.plus(b, a))
        same(sr, sr.times(sr.times(a, b), c), sr.times(a, sr.times(b, c)))
        same(sr, sr.times(a, sr.plus(b, c)), sr.plus(sr.times(a, b), sr.times(a, c)))
        same(sr, sr.times(sr.plus(b, c), a), sr.plus(sr.times(b, a), sr.times(c, a)))
        same(sr, sr.plus(a, zero), a)
        same(sr, sr.times(a, one), a)
        same(sr, sr.times(one, a), a)
        same(sr, sr.times(a, zero), zero)
        same(sr, sr.times(zero, a), zero)

    laws()


@pytest.mark.parametrize("name", NAMES)
def test_extend_is_lift_times(name):
    """The fast path ``extend(s, w)`` used by backends equals ``lift(w) ⊗ s``."""
    sr = semirings.get(name)

    @given(elements(sr), weights)
    def check(s, w):
        same(sr, sr.extend(s, np.float64(w), np.int64(7)), sr.times(sr.lift(np.float64(w)), s))

    check()


def test_unknown_semiring_lists_choices():
    with pytest.raises(OptionError) as e:
        semirings.get("max_prodcut")
    assert "did you mean 'max_product'" in str(e.value) and "entropy" in str(e.value)
    with pytest.raises(Exception, match="topk:K needs an integer"):
        semirings.get("topk:x")
