"""NumPy functions and ufuncs applied to traced values: each maps to the builtin that builds the same node,
or is refused with the builtin to use instead (never a raw NumPy error, never an object array)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import TypeCheckError
from .builtins import BUILTINS, binary

# ufunc -> how to build it from its positional operands
UFUNCS = {
    np.exp: lambda x: BUILTINS["exp"](x), np.log: lambda x: BUILTINS["log"](x),
    np.tanh: lambda x: BUILTINS["tanh"](x), np.sqrt: lambda x: BUILTINS["sqrt"](x),
    np.abs: lambda x: BUILTINS["abs"](x), np.absolute: lambda x: BUILTINS["abs"](x),
    np.sin: lambda x: BUILTINS["sin"](x), np.cos: lambda x: BUILTINS["cos"](x),
    np.square: lambda x: BUILTINS["square"](x), np.negative: lambda x: -x, np.positive: lambda x: x,
    np.add: lambda a, b: binary("add", a, b), np.subtract: lambda a, b: binary("sub", a, b),
    np.multiply: lambda a, b: binary("mul", a, b), np.divide: lambda a, b: binary("div", a, b),
    np.true_divide: lambda a, b: binary("div", a, b), np.matmul: lambda a, b: binary("matmul", a, b),
    np.maximum: lambda a, b: binary("maximum", a, b), np.minimum: lambda a, b: binary("minimum", a, b),
    np.less: lambda a, b: binary("lt", a, b), np.less_equal: lambda a, b: binary("le", a, b),
    np.greater: lambda a, b: binary("gt", a, b), np.greater_equal: lambda a, b: binary("ge", a, b),
    np.equal: lambda a, b: binary("eq", a, b), np.not_equal: lambda a, b: binary("ne", a, b),
}

FUNCTIONS = {
    np.sum: lambda x, axis=None, keepdims=False: BUILTINS["sum"](x, axis, keepdims),
    np.mean: lambda x, axis=None, keepdims=False: BUILTINS["mean"](x, axis, keepdims),
    np.max: lambda x, axis=None, keepdims=False: BUILTINS["max"](x, axis, keepdims),
    np.amax: lambda x, axis=None, keepdims=False: BUILTINS["max"](x, axis, keepdims),
    np.transpose: lambda x, axes=None: BUILTINS["transpose"](x, None if axes is None else list(axes)),
    np.reshape: lambda x, shape: BUILTINS["reshape"](x, list(shape) if isinstance(shape, tuple | list) else [shape]),
    np.concatenate: lambda xs, axis=0: BUILTINS["concat"](list(xs), axis),
    np.where: lambda c, a, b: BUILTINS["where"](c, a, b),
    np.matmul: lambda a, b: binary("matmul", a, b),
}


def _operand(x: Any) -> Any:
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return x.item()
    if isinstance(x, np.ndarray):
        raise TypeCheckError("a NumPy array cannot be combined with a traced tensor; pass it as an input of the "
                             "traced function (its values are fed at call time)")
    return x


def ufunc(uf, method: str, args: tuple, kwargs: dict) -> Any:
    if method != "__call__" or kwargs or uf not in UFUNCS:
        raise TypeCheckError(f"numpy.{uf.__name__}{'' if method == '__call__' else '.' + method} on a traced tensor "
                             f"is not supported; use the builtins of semir.ops ({', '.join(sorted(BUILTINS))})")
    return UFUNCS[uf](*(_operand(a) for a in args))


def function(func, args: tuple, kwargs: dict) -> Any:
    if func not in FUNCTIONS:
        raise TypeCheckError(f"numpy.{func.__name__} on a traced tensor is not supported; use the builtins of "
                             f"semir.ops ({', '.join(sorted(BUILTINS))})")
    try:
        return FUNCTIONS[func](*args, **kwargs)
    except TypeError as e:  # an argument the builtin does not take (out=, dtype=, ...)
        raise TypeCheckError(f"numpy.{func.__name__}: {e}") from None
