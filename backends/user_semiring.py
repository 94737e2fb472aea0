"""User-defined semirings (``semir.semirings.from_scalar``) on the Numba backend.

Their scalar functions are compiled with Numba and called from one generated ``acc``, so every generic kernel
of ``templates.py`` runs them edge by edge: D_u[j] = plus(D_u[j], times(lift(w), D_v[i])), each result
rounded to the program's float dtype, as the reference backend rounds the arrays its vectorised functions
return. A function Numba cannot compile is refused with Numba's reason before anything is generated.

Generated modules are plain files in the kernel cache and cannot hold Python objects, so the module looks its
functions up here by a *token*: a digest of the functions' code, constants, names and closure values. Equal
definitions share a token (and so the cached module); changing a definition changes the module's name.
"""

from __future__ import annotations

import hashlib
import threading
import types

import numpy as np
from numba import njit
from numba import types as nbtypes
from numba.core.errors import NumbaError
from numba.extending import overload

from semir.errors import OptionError
from semir.semirings import ScalarFunctions, Semiring

ROLES = ("plus", "times", "lift")
_JITTED: dict[str, tuple] = {}
_LOCK = threading.Lock()


def cast_like(a, x):
    """``x`` as the element type of array ``a`` (inside Numba code)."""
    return a.dtype.type(x)


@overload(cast_like, jit_options={"cache": True})
def _cast_like(a, x):
    to = np.dtype(str(a.dtype)).type  # np.float32 or np.float64: a constant of the specialisation

    def impl(a, x):
        return to(x)
    return impl


def _describe(obj, out: list, depth: int = 0) -> None:
    """A deterministic description of a function's definition (code, constants, closure), for the token."""
    if depth > 8:
        out.append("...")
    elif isinstance(obj, types.FunctionType):
        out.append(f"{obj.__module__}.{obj.__qualname__}")
        _describe(obj.__code__, out, depth + 1)
        for cell in obj.__closure__ or ():
            _describe(cell.cell_contents, out, depth + 1)
        for d in obj.__defaults__ or ():
            _describe(d, out, depth + 1)
        # the globals it reads: Numba freezes their values into the compiled code, so a changed global
        # must change the token (and so the cached module), as a changed closure value does
        for name in sorted(_global_names(obj.__code__)):
            if name in obj.__globals__:
                out.append(name)
                _describe(obj.__globals__[name], out, depth + 1)
    elif isinstance(obj, np.ndarray):
        out.append(f"ndarray:{obj.dtype}:{obj.shape}:{hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}")
    elif isinstance(obj, types.CodeType):
        out.append(obj.co_code.hex())
        out.append(repr(obj.co_names))
        for c in obj.co_consts:
            _describe(c, out, depth + 1)
    else:  # a builtin, a module, a number: its kind, name and repr
        out.append(f"{type(obj).__qualname__}:{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}:"
                   f"{obj!r}")


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):  # nested functions and comprehensions read the same globals
            names |= _global_names(c)
    return names


def token(fns: ScalarFunctions) -> str:
    parts: list[str] = [repr(float(fns.zero)), repr(float(fns.one))]
    for role in ROLES:
        _describe(getattr(fns, role), parts)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _jittable(fn, arity: int):
    """A Numba dispatcher for ``fn``: a Python function directly; a builtin (``min``, ``math.log``) through a
    one-line wrapper, since Numba compiles calls to builtins but not the builtins themselves."""
    if isinstance(fn, types.FunctionType):
        return njit(fn)
    if arity == 1:
        def wrap1(a):
            return fn(a)
        return njit(wrap1)

    def wrap2(a, b):
        return fn(a, b)
    return njit(wrap2)


def check(sr: Semiring, float_dtype) -> str:
    """Compile the semiring's functions for ``float_dtype`` and register them; their token. An
    :class:`OptionError` names the function Numba could not compile and why."""
    fns = sr.scalar
    tok = token(fns)
    nb = nbtypes.float32 if np.dtype(float_dtype) == np.float32 else nbtypes.float64
    with _LOCK:
        jitted = _JITTED.get(tok) or tuple(_jittable(getattr(fns, r), 1 if r == "lift" else 2) for r in ROLES)
        for role, fn in zip(ROLES, jitted):
            sig = (nb,) if role == "lift" else (nb, nb)
            try:
                fn.compile(sig)
            except NumbaError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise OptionError(f"semiring {sr.name!r}: its {role} function cannot be compiled by Numba "
                                  f"({first}); use backend='reference'") from None
            ret = next(s.return_type for s in fn.nopython_signatures if tuple(s.args) == sig)
            if not isinstance(ret, nbtypes.Number | nbtypes.Boolean):
                raise OptionError(f"semiring {sr.name!r}: its {role} function returns {ret}, not a number; "
                                  "use backend='reference'")
        _JITTED[tok] = jitted
    return tok


def functions(tok: str) -> tuple:
    """The compiled (plus, times, lift) of a checked semiring, for its generated module."""
    try:
        return _JITTED[tok]
    except KeyError:
        raise OptionError(f"user-defined semiring {tok} was not checked in this process; compile it with "
                          "semir.compile") from None


def acc_source(tok: str) -> tuple[str, str]:
    """(module prelude, ``acc`` source) of the semiring with this token."""
    prelude = (f"from semir.backends.user_semiring import cast_like, functions\n\n"
               f"_plus, _times, _lift = functions({tok!r})\n")
    acc = ("def acc(U_v, j, V_v, i, w, e):\n"
           "    x = cast_like(U_v, _times(cast_like(U_v, _lift(cast_like(U_v, w))), V_v[i]))\n"
           "    U_v[j] = cast_like(U_v, _plus(U_v[j], x))\n")
    return prelude, acc
