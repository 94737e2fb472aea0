"""Pass objects and their registry.

A pass takes a verified program and returns a program with the same
semiring results at every node it keeps (CONTRACT §2: no pass may change a
result). Each states its contract in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import SemirError, unknown
from ..ir.node import Program


@dataclass(frozen=True)
class PassContext:
    """What passes must respect: ``keep`` names are observable (wrt targets), never merged or removed."""

    keep: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pass:
    name: str
    run: Callable[[Program, PassContext], Program] = field(repr=False)
    doc: str = ""

    def __call__(self, prog: Program, ctx: PassContext | None = None) -> Program:
        try:
            return self.run(prog, ctx or PassContext())
        except SemirError as e:
            raise type(e)(f"in pass {self.name!r}: {e}") from None


PASSES: dict[str, Pass] = {}


def register(name: str):
    def deco(fn: Callable[[Program, PassContext], Program]):
        PASSES[name] = Pass(name, fn, (fn.__doc__ or "").strip().splitlines()[0])
        return fn
    return deco


def get_pass(name: str) -> Pass:
    if name not in PASSES:
        raise unknown("pass", name, PASSES)
    return PASSES[name]
