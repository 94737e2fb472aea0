"""The compile pipeline, as one list of named passes."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import unknown
from ..ir.node import Program
from . import brunoflow, decompose, fuse, simplify, verify  # noqa: F401  (register passes)
from .base import PassContext, get_pass

GRANULARITIES = ("op", "decomposed")


def pipeline(granularity: str = "op", semantics: str = "exact") -> tuple[str, ...]:
    if granularity not in GRANULARITIES:
        raise unknown("granularity", granularity, GRANULARITIES)
    if semantics == "brunoflow":
        return (
            "verify", "toposort",
            "brunoflow_lower", "toposort",  # softmax and layernorm as brunoflow composes them
            "fold",
            # no cse: brunoflow combines max-product per consumer, so merging two equal nodes could change it
            "dce", "fuse", "verify",
        )
    return (
        "verify",      # the frontend's output is well formed
        "toposort",    # every later pass and backend walks nodes in order
        *(("decompose", "toposort") if granularity == "decomposed" else ()),  # finer gradient graph on request
        "fold",        # scalar constant arithmetic
        "cse",         # merge duplicate temporaries
        "dce",         # drop what cannot reach the output
        "fuse",        # group elementwise nodes into the generators' kernels (changes no node)
        "verify",      # and check that nothing broke
    )


def optimize(prog: Program, keep: tuple[str, ...] = (), granularity: str = "op",
             passes: tuple[str, ...] | None = None,
             on_pass: Callable[[str, Program], None] | None = None, semantics: str = "exact") -> Program:
    """Run the pipeline; ``on_pass(name, program)`` sees the IR after each pass (``semir ir --after``)."""
    ctx = PassContext(keep=tuple(keep))
    for name in passes if passes is not None else pipeline(granularity, semantics):
        if prog.fused and name not in ("fuse", "verify"):  # groups describe the nodes they were made for
            prog = prog.replace(fused=())
        prog = get_pass(name)(prog, ctx)
        if on_pass is not None:
            on_pass(name, prog)
    return prog


def pass_names(granularity: str = "op") -> list[str]:
    return list(dict.fromkeys(pipeline(granularity)))


__all__ = ["optimize", "pipeline", "pass_names", "GRANULARITIES", "unknown"]
