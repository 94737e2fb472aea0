"""Forward evaluation: one NumPy rule per op. This table is the definition of every op's value."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from semir.ir.ops import Op

EvalRule = Callable[[list[np.ndarray], dict[str, Any]], np.ndarray]

_erf = np.frompyfunc(math.erf, 1, 1)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_C = 0.044715


def erf(x: np.ndarray) -> np.ndarray:
    return np.asarray(_erf(x), dtype=np.result_type(x, np.float32))


def sigmoid(x: np.ndarray) -> np.ndarray:
    # Split by sign so neither branch overflows exp.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype)


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    # In float64, rounded once to x's dtype: in float32, 1 + erf(x/√2) cancels for x < -4 and loses every
    # digit by x = -6, so a float32 evaluation would disagree with any correctly rounded one.
    z = np.asarray(x, np.float64)
    if approximate == "tanh":
        y = 0.5 * z * (1.0 + np.tanh(SQRT_2_OVER_PI * (z + GELU_TANH_C * z ** 3)))
    else:
        y = 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
    return y.astype(np.result_type(x, np.float32))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def layernorm_parts(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(x̂, 1/σ) over the last axis, σ = sqrt(var + eps)."""
    mu = np.mean(x, axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt(np.mean((x - mu) ** 2, axis=-1, keepdims=True) + eps)
    return (x - mu) * inv, inv


def index_key(spec: tuple) -> tuple:
    return tuple(i if isinstance(i, int) else slice(*i) for i in spec)


def _axes(a: dict) -> tuple[int, ...] | None:
    return a.get("axes")


EVAL_RULES: dict[Op, EvalRule] = {
    Op.input: lambda xs, a: xs[0],
    Op.const: lambda xs, a: np.asarray(a["value"], dtype=np.dtype({"f32": "float32", "f64": "float64", "i32": "int32",
                                                                    "i64": "int64", "bool": "bool"}[a["dtype"]])),
    Op.neg: lambda xs, a: -xs[0],
    Op.exp: lambda xs, a: np.exp(xs[0]),
    Op.log: lambda xs, a: np.log(xs[0]),
    Op.tanh: lambda xs, a: np.tanh(xs[0]),
    Op.sigmoid: lambda xs, a: sigmoid(xs[0]),
    Op.relu: lambda xs, a: np.maximum(xs[0], 0),
    Op.gelu: lambda xs, a: gelu(xs[0], a.get("approximate", "none")),
    Op.erf: lambda xs, a: erf(xs[0]),
    Op.sqrt: lambda xs, a: np.sqrt(xs[0]),
    Op.rsqrt: lambda xs, a: 1.0 / np.sqrt(xs[0]),
    Op.abs: lambda xs, a: np.abs(xs[0]),
    Op.square: lambda xs, a: xs[0] * xs[0],
    Op.sin: lambda xs, a: np.sin(xs[0]),
    Op.cos: lambda xs, a: np.cos(xs[0]),
    Op.pow: lambda xs, a: np.power(xs[0], a["exponent"]),
    Op.cast: lambda xs, a: xs[0],
    Op.detach: lambda xs, a: xs[0],
    Op.add: lambda xs, a: xs[0] + xs[1],
    Op.sub: lambda xs, a: xs[0] - xs[1],
    Op.mul: lambda xs, a: xs[0] * xs[1],
    Op.div: lambda xs, a: xs[0] / xs[1],
    Op.maximum: lambda xs, a: np.where(xs[0] >= xs[1], xs[0], xs[1]),
    Op.minimum: lambda xs, a: np.where(xs[0] <= xs[1], xs[0], xs[1]),
    Op.lt: lambda xs, a: xs[0] < xs[1],
    Op.le: lambda xs, a: xs[0] <= xs[1],
    Op.gt: lambda xs, a: xs[0] > xs[1],
    Op.ge: lambda xs, a: xs[0] >= xs[1],
    Op.eq: lambda xs, a: xs[0] == xs[1],
    Op.ne: lambda xs, a: xs[0] != xs[1],
    Op.where: lambda xs, a: np.where(xs[0].astype(bool), xs[1], xs[2]),
    Op.sum: lambda xs, a: np.sum(xs[0], axis=_axes(a), keepdims=bool(a.get("keepdims"))),
    Op.mean: lambda xs, a: np.mean(xs[0], axis=_axes(a), keepdims=bool(a.get("keepdims"))),
    Op.max: lambda xs, a: np.max(xs[0], axis=_axes(a), keepdims=bool(a.get("keepdims"))),
    Op.softmax: lambda xs, a: softmax(xs[0], a["axis"]),
    Op.log_softmax: lambda xs, a: log_softmax(xs[0], a["axis"]),
    Op.layernorm: lambda xs, a: layernorm_parts(xs[0], a["eps"])[0] * xs[1] + xs[2],
    Op.matmul: lambda xs, a: np.matmul(xs[0], xs[1]),
    Op.transpose: lambda xs, a: np.transpose(xs[0], a["axes"]),
    Op.reshape: lambda xs, a: np.reshape(xs[0], a["shape"]),
    Op.index: lambda xs, a: xs[0][index_key(a["spec"])],
    Op.concat: lambda xs, a: np.concatenate(xs, axis=a["axis"]),
    Op.take: lambda xs, a: np.take(xs[0], xs[1], axis=0),
}


def evaluate(op: Op, args: list[np.ndarray], attrs: dict[str, Any], dtype: np.dtype) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(EVAL_RULES[op](args, attrs)).astype(dtype, copy=False)
