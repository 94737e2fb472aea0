"""``semir.trace``: build IR by running a Python function on symbolic tensors.

The function uses Python operators and the functions of :mod:`semir.ops`;
Python control flow (loops over layers, helper functions) runs at trace
time. Node names follow the model language's rules (see ``builder.py``):
the tracer watches each user frame's local variables with ``sys.settrace``
and records ``name = value`` bindings and call scopes in the same order the
language frontend does, so a traced function and the equivalent model file
give identical IR.
"""

from __future__ import annotations

import inspect
import os
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import SemirError, TypeCheckError
from ..ir.node import Loc, Program
from ..ir.type_syntax import parse_type as _parse_type
from ..ir.types import TensorType
from .builder import Builder, Scope, Value

_SEMIR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIB_DIRS = tuple({os.path.abspath(p) for p in (sysconfig.get_paths().get("stdlib"),
                                                 sysconfig.get_paths().get("platstdlib"),
                                                 sysconfig.get_paths().get("purelib"),
                                                 sysconfig.get_paths().get("platlib")) if p})


def parse_type(spec: str | TensorType) -> TensorType:
    """``"f32[S, 16]"`` -> TensorType."""
    if isinstance(spec, TensorType):
        return spec
    try:
        return _parse_type(str(spec))
    except ValueError:
        raise TypeCheckError(f"bad type {spec!r}; write e.g. 'f32', 'f64[S, 16]', 'i64[S]'") from None


@dataclass
class _Frame:
    scope: Scope
    snapshot: dict[str, int]
    pending: list[tuple[Scope, Any]] = field(default_factory=list)


class _Tracer:
    def __init__(self, builder: Builder, fn: Callable):
        self.builder = builder
        self.fn_file = os.path.abspath(fn.__code__.co_filename)
        self.frames: dict[int, _Frame] = {}
        self.stack: list[int] = []

    def is_user(self, code) -> bool:
        if code.co_name.startswith("<"):  # comprehensions, lambdas: transparent, part of the enclosing scope
            return False
        f = os.path.abspath(code.co_filename)
        if f == self.fn_file:
            return True
        # "<string>" and the like: generated code (dataclass __init__s, exec'd helpers), not the user's
        return not (code.co_filename.startswith("<") or f.startswith(_SEMIR_DIR) or f.startswith(_LIB_DIRS))

    def on_call(self, frame, event, arg):
        if event != "call" or not self.is_user(frame.f_code):
            return None
        if self.stack:
            scope = self.builder.open_scope(frame.f_code.co_name, None)
        else:
            scope = self.builder.root
        self.frames[id(frame)] = _Frame(scope, self._values(frame))
        self.stack.append(id(frame))
        return self.on_event

    def on_event(self, frame, event, arg):
        rec = self.frames.get(id(frame))
        if rec is None:
            return None
        if event == "line":
            self.sync(frame, rec)
        elif event == "return":
            self.sync(frame, rec)
            self.label_pending(rec, None)
            self.stack.pop()
            del self.frames[id(frame)]
            if self.stack:
                self.builder.close_scope(rec.scope)
                self.frames[self.stack[-1]].pending.append((rec.scope, arg))
        return self.on_event

    @staticmethod
    def _values(frame) -> dict[str, int]:
        return {k: id(v) for k, v in frame.f_locals.items() if isinstance(v, Value)}

    def sync(self, frame, rec: _Frame) -> None:
        self.builder.loc = Loc(frame.f_code.co_filename, frame.f_lineno, 0)
        now = frame.f_locals
        bound = [(k, v) for k, v in now.items() if isinstance(v, Value) and rec.snapshot.get(k) != id(v)]
        if bound:
            self.label_pending(rec, bound[0])
        for k, v in bound:
            self.builder.scope = rec.scope
            self.builder.bind(v, k)
            rec.snapshot[k] = id(v)

    @staticmethod
    def label_pending(rec: _Frame, bound: tuple[str, Value] | None) -> None:
        for scope, ret in rec.pending:
            if bound is None:
                scope.label = scope.callee
            elif ret is bound[1]:
                scope.label = bound[0]
            else:
                scope.label = f"{bound[0]}.{scope.callee}"
        rec.pending.clear()

    def __enter__(self):
        self.old = sys.gettrace()
        sys.settrace(self.on_call)
        return self

    def __exit__(self, *exc):
        sys.settrace(self.old)
        return False


def trace(fn: Callable, name: str | None = None, **types: str | TensorType) -> Program:
    """Trace ``fn`` with parameters of the given types (``semir.trace(f, x="f32[S, 16]", w="f32[16, 16]")``)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters)
    missing = [p for p in params if p not in types]
    extra = [t for t in types if t not in params]
    if missing or extra:
        raise SemirError(f"trace: give a type for every parameter of {fn.__name__}() "
                         f"(missing: {', '.join(missing) or 'none'}; unknown: {', '.join(extra) or 'none'})")
    builder = Builder()
    args = [builder.param(p, parse_type(types[p])) for p in params]
    with _Tracer(builder, fn):
        out = fn(*args)
    if not isinstance(out, Value):
        out = builder.lift(out, None)
    return builder.finish(out, name or fn.__name__)
