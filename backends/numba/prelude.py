"""Scalar helpers that generated elementwise kernels call (forward values and local derivatives)."""

import math

from numba import njit

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True)
def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True)
def gelu(x):
    return 0.5 * x * (1.0 + math.erf(x * INV_SQRT_2))


@njit(cache=True)
def gelu_d(x):
    return 0.5 * (1.0 + math.erf(x * INV_SQRT_2)) + x * math.exp(-0.5 * x * x) * INV_SQRT_2PI


@njit(cache=True)
def gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


@njit(cache=True)
def gelu_tanh_d(x):
    t = math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)


@njit(cache=True)
def sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)
