"""The one IR node type and the program that holds a DAG of them."""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .ops import Op
from .types import TensorType


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Node:
    """An SSA value: ``name: type = op(inputs..., attrs...)``.

    ``inputs`` are names of earlier nodes; ``attrs`` is a tuple of
    ``(key, value)`` sorted by key, values hashable (ints, floats, strings,
    tuples, dims). The source location does not take part in equality.
    """

    name: str
    op: Op
    type: TensorType
    inputs: tuple[str, ...] = ()
    attrs: tuple[tuple[str, Any], ...] = ()
    loc: Loc | None = field(default=None, compare=False)

    def attr(self, key: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    @property
    def attr_dict(self) -> dict[str, Any]:
        return dict(self.attrs)

    @property
    def key(self) -> tuple:
        """Structural identity (everything but the name and location). Floats compare by bit pattern:
        ``0.0 == -0.0`` in Python, but ``1/0.0`` and ``1/-0.0`` differ, and NaN never equals itself."""
        return (self.op, self.type, self.inputs, tuple((k, _bits(v)) for k, v in self.attrs))

    def replace(self, **changes: Any) -> Node:
        return dataclasses.replace(self, **changes)


def _bits(v: Any) -> Any:
    if isinstance(v, float):
        return ("f64", struct.pack("<d", v))
    if isinstance(v, tuple):
        return tuple(_bits(x) for x in v)
    return v


def make_attrs(**kwargs: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, v) for k, v in kwargs.items() if v is not None))


@dataclass(frozen=True)
class Program:
    """A DAG of nodes in definition order, with named inputs and one output.

    ``nodes`` starts with the ``input`` nodes in signature order. ``aliases``
    maps extra names (``y = x`` bindings, calls returning a named value) to
    node names so that analyses can select nodes by every name the user wrote.
    ``fused`` holds the groups of the ``fuse`` pass (elementwise nodes computed
    in one kernel, root last); it changes no value.
    """

    name: str
    nodes: tuple[Node, ...]
    output: str
    aliases: tuple[tuple[str, str], ...] = ()
    fused: tuple[tuple[str, ...], ...] = ()

    @cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op is Op.input)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.inputs)

    @property
    def output_node(self) -> Node:
        return self.by_name[self.output]

    def resolve(self, name: str) -> str:
        """The node name that ``name`` refers to (following aliases)."""
        seen = 0
        alias = dict(self.aliases)
        while name not in self.by_name and name in alias and seen < 64:
            name, seen = alias[name], seen + 1
        return name

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) in self.by_name

    def __getitem__(self, name: str) -> Node:
        return self.by_name[self.resolve(name)]

    def names(self) -> list[str]:
        """Every name a user can select: node names, then aliases."""
        return [n.name for n in self.nodes] + [a for a, _ in self.aliases]

    def users(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n.name)
        return out

    def replace(self, **changes: Any) -> Program:
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        from .printer import format_program

        return format_program(self)

    def __repr__(self) -> str:  # short: a real model has thousands of nodes; str() prints the IR
        ins = [f"{n.name}: {n.type}" for n in self.inputs]
        shown = ", ".join(ins[:4]) + (f", ... ({len(ins) - 4} more)" if len(ins) > 4 else "")
        return f"<Program {self.name!r}: {len(self.nodes)} nodes; inputs {shown}; output {self.output_node.type}>"

    def format(self, locations: bool = False) -> str:
        from .printer import format_program

        return format_program(self, locations=locations)
