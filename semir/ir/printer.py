"""Canonical IR text.

::

    func main(x: f64, y: f64) -> f64 {
      x2: f64 = exp(x)
      %0: f64 = sub(x, y)
      ...
      return out
    }

One node a line: ``name: type = op(operands, key=value, ...)``; attribute
values are JSON (tuples print as lists, dims as strings). ``parse_ir``
in :mod:`semir.ir.reader` reads this back to an identical program.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from .types import SymDim

if TYPE_CHECKING:  # the printer reads nodes; node.py calls it for str(program), so no import back
    from .node import Node, Program

_PLAIN_NAME = re.compile(r"^(%\d+|[A-Za-z_]\w*(\.(?:[A-Za-z_]\w*|\d+))*)$")


def format_name(name: str) -> str:
    return name if _PLAIN_NAME.match(name) else json.dumps(name)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, SymDim):
        return str(v)
    return v


def format_value(v: Any) -> str:
    return json.dumps(_jsonable(v), separators=(", ", ": "))


def format_node(n: Node, locations: bool = False) -> str:
    args = [format_name(i) for i in n.inputs]
    args += [f"{k}={format_value(v)}" for k, v in n.attrs]
    line = f"{format_name(n.name)}: {n.type} = {n.op.value}({', '.join(args)})"
    if locations and n.loc is not None:
        line += f"  @ {json.dumps(n.loc.file)}:{n.loc.line}:{n.loc.col}"
    return line


def format_program(p: Program, locations: bool = False) -> str:
    params = ", ".join(f"{format_name(n.name)}: {n.type}" for n in p.inputs)
    lines = [f"func {format_name(p.name)}({params}) -> {p.output_node.type} {{"]
    for n in p.nodes:
        if n.op.value != "input":
            lines.append("  " + format_node(n, locations))
    for alias, target in p.aliases:
        lines.append(f"  alias {format_name(alias)} = {format_name(target)}")
    for group in p.fused:
        lines.append("  fuse " + ", ".join(format_name(n) for n in group))
    lines.append(f"  return {format_name(p.output)}")
    lines.append("}")
    return "\n".join(lines) + "\n"
