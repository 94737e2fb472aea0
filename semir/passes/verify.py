"""The ``verify`` pass: the IR verifier (:mod:`semir.ir.verify`) as a step of the pipeline."""

from __future__ import annotations

from ..ir.node import Program
from ..ir.verify import verify
from .base import PassContext, register


@register("verify")
def verify_pass(prog: Program, ctx: PassContext) -> Program:
    """Check the IR (names, operands, acyclicity, types, fused groups); changes nothing."""
    verify(prog)
    return prog
