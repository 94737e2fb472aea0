"""The IR verifier: single definitions, defined operands, no cycles, types as inferred, well-formed fused
groups. Every reader of IR (``parse_ir``, the pass pipeline's ``verify`` pass, training) calls it."""

from __future__ import annotations

from ..errors import TypeCheckError
from .node import Node, Program
from .ops import BINARY, COMPARE, ELEMENTWISE, Op
from .shapes import infer

ARITY = {Op.input: 0, Op.const: 0, Op.where: 3, Op.layernorm: 3, Op.matmul: 2, Op.take: 2}


def arity(op: Op) -> int | None:
    if op in ARITY:
        return ARITY[op]
    if op is Op.concat:
        return None
    return 2 if op in BINARY | COMPARE else 1


def _where(n: Node) -> str:
    return f" at {n.loc}" if n.loc else ""


def verify(prog: Program) -> None:
    defined: dict[str, Node] = {}
    for n in prog.nodes:
        if n.name in defined:
            raise TypeCheckError(f"node {n.name!r} is defined twice{_where(n)}")
        defined[n.name] = n
    for n in prog.nodes:
        want = arity(n.op)
        if (want is not None and len(n.inputs) != want) or (want is None and not n.inputs):
            raise TypeCheckError(f"node {n.name!r}: {n.op.value} takes {want or 'one or more'} operands, "
                                 f"got {len(n.inputs)}{_where(n)}")
        for i in n.inputs:
            if i not in defined:
                raise TypeCheckError(f"node {n.name!r} uses undefined value {i!r}{_where(n)}")
        if n.op is Op.input:
            continue
        got = infer(n.op, [defined[i].type for i in n.inputs], n.attr_dict)
        if got != n.type:
            raise TypeCheckError(f"node {n.name!r}: {n.op.value} gives {got}, but the node is typed {n.type}"
                                 f"{_where(n)}")
    _check_acyclic(prog, defined)
    if prog.output not in defined:
        raise TypeCheckError(f"the output {prog.output!r} is not defined")
    for alias, target in prog.aliases:
        if alias in defined:
            raise TypeCheckError(f"alias {alias!r} shadows a node of the same name")
        if prog.resolve(target) not in defined:
            raise TypeCheckError(f"alias {alias!r} refers to undefined {target!r}")
    check_groups(prog)


def _check_acyclic(prog: Program, defined: dict[str, Node]) -> None:
    state: dict[str, int] = {}
    for root in defined:
        stack = [(root, iter(defined[root].inputs))]
        if state.get(root):
            continue
        state[root] = 1
        while stack:
            name, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[name] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise TypeCheckError(f"the graph has a cycle through {nxt!r}")
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(defined[nxt].inputs)))


def check_groups(prog: Program) -> None:
    """Refuse groups a generator would compute wrongly (from IR text, say): unknown or non-elementwise
    members, mixed shapes, a node in two groups, or a member other than the root read outside its group."""
    users = prog.users()
    seen: set[str] = set()
    for group in prog.fused:
        root = prog.by_name.get(group[-1]) if group else None
        if root is None or root.op not in ELEMENTWISE or len(group) < 2:
            raise TypeCheckError(f"fuse {', '.join(group)}: a group is two or more elementwise nodes, its root last")
        for name in group:
            n = prog.by_name.get(name)
            if n is None or n.op not in ELEMENTWISE or n.type.shape != root.type.shape:
                raise TypeCheckError(f"fuse {', '.join(group)}: {name!r} is not an elementwise node of the "
                                     f"root's shape {root.type.shape}")
            if name in seen:
                raise TypeCheckError(f"fuse: {name!r} is in two groups")
            seen.add(name)
            if name != root.name and (name == prog.output or not set(users[name]) <= set(group)):
                raise TypeCheckError(f"fuse {', '.join(group)}: {name!r} is read outside the group")
