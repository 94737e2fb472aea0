"""``fuse``: which elementwise nodes the code generators compute in one kernel.

A group is an elementwise node (its root) with the elementwise operands of the same shape that nothing
outside the group reads, transitively. The pass changes no node: it records the groups on the program
(``Program.fused``, printed as ``fuse a, b, c``), and the Numba and CUDA generators read them. The groups
depend on the program only, so one forward module serves every ``wrt`` set; every member's state is still
materialised, so a ``wrt`` node inside a group stays observable.
"""

from __future__ import annotations

from ..ir.node import Program
from ..ir.ops import ELEMENTWISE
from .base import PassContext, register

# A group is one generated function, and LLVM's time grows faster than linearly in a function's length: a
# 500-node group (a 250-step scalar chain) took 205 s to compile. Bounded groups keep compile time linear
# in the program; each costs one function call per sweep.
MAX_MEMBERS = 64


def fusion_groups(prog: Program, max_members: int = MAX_MEMBERS) -> tuple[tuple[str, ...], ...]:
    """The groups of two to ``max_members`` nodes, in program order, each in program order (its root last).
    Every other elementwise node is a kernel of its own."""
    index = {n.name: k for k, n in enumerate(prog.nodes)}
    users = prog.users()
    taken: set[int] = set()
    groups: list[list[int]] = []
    for k in range(len(prog.nodes) - 1, -1, -1):  # roots first: a node joins the group of its last reader
        n = prog.nodes[k]
        if n.op not in ELEMENTWISE or k in taken:
            continue
        members, work = {k}, [k]
        while work:
            for name in prog.nodes[work.pop()].inputs:
                u = index[name]
                un = prog.nodes[u]
                if (len(members) >= max_members or u in members or u in taken or un.op not in ELEMENTWISE
                        or un.type.shape != n.type.shape or un.name == prog.output
                        or not all(index[x] in members for x in users[un.name])):
                    continue
                members.add(u)
                work.append(u)
        taken |= members
        groups.append(sorted(members))
    return tuple(tuple(prog.nodes[m].name for m in g) for g in reversed(groups) if len(g) > 1)


@register("fuse")
def fuse_pass(prog: Program, ctx: PassContext) -> Program:
    """Group elementwise nodes into the kernels the code generators emit (no node changes)."""
    return prog.replace(fused=fusion_groups(prog))
