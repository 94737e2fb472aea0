"""``parse_ir``: read the canonical IR text back into a :class:`Program`."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import SourceError
from .node import Loc, Node, Program
from .ops import Op
from .types import DType, TensorType, parse_dim

_NAME = re.compile(r"%\d+|[A-Za-z_]\w*(?:\.(?:[A-Za-z_]\w*|\d+))*")
_WORD = re.compile(r"[A-Za-z_]\w*")
_DECODER = json.JSONDecoder()


def _decode_attr(key: str, v: Any) -> Any:
    if isinstance(v, list):
        v = tuple(_decode_attr("", x) for x in v)
    if key == "shape":
        v = tuple(parse_dim(d) if isinstance(d, str) else d for d in v)
    if key == "spec":
        v = tuple(tuple(parse_dim(b) if isinstance(b, str) else b for b in it) if isinstance(it, tuple) else it
                  for it in v)
    return v


class _Line:
    def __init__(self, text: str, lineno: int, file: str, source: str):
        self.text, self.pos, self.lineno, self.file, self.source = text, 0, lineno, file, source

    def error(self, msg: str) -> SourceError:
        return SourceError(msg, self.file, self.lineno, self.pos + 1, self.source)

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self, s: str) -> bool:
        self.ws()
        return self.text.startswith(s, self.pos)

    def expect(self, s: str) -> None:
        if not self.peek(s):
            raise self.error(f"expected {s!r}")
        self.pos += len(s)

    def word(self) -> str:
        self.ws()
        m = _WORD.match(self.text, self.pos)
        if not m:
            raise self.error("expected a word")
        self.pos = m.end()
        return m.group()

    def name(self) -> str:
        self.ws()
        if self.peek('"'):
            return self.json()
        m = _NAME.match(self.text, self.pos)
        if not m:
            raise self.error("expected a name")
        self.pos = m.end()
        return m.group()

    def json(self) -> Any:
        self.ws()
        try:
            v, end = _DECODER.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as e:
            raise self.error(f"bad value: {e.msg}") from None
        self.pos = end
        return v

    def type(self) -> TensorType:
        word = self.word()
        try:
            dtype = DType(word)
        except ValueError:
            raise self.error(f"unknown dtype {word!r}") from None
        if not self.peek("["):
            return TensorType(dtype)
        self.expect("[")
        end = self.text.index("]", self.pos)
        body, self.pos = self.text[self.pos:end], end + 1
        try:
            dims = tuple(parse_dim(d) for d in body.split(",")) if body.strip() else ()
        except ValueError as e:
            raise self.error(str(e)) from None
        return TensorType(dtype, dims)

    def done(self) -> bool:
        self.ws()
        return self.pos >= len(self.text)


def parse_ir(text: str, file: str = "<ir>") -> Program:
    """Parse canonical IR text (as printed by ``str(program)``)."""
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise SourceError("empty IR text", file)
    nodes: list[Node] = []
    aliases: list[tuple[str, str]] = []
    fused: list[tuple[str, ...]] = []
    lineno, head = lines[0]
    ln = _Line(head, lineno, file, text)
    ln.expect("func")
    name = ln.name()
    ln.expect("(")
    while not ln.peek(")"):
        pname = ln.name()
        ln.expect(":")
        nodes.append(Node(pname, Op.input, ln.type()))
        if not ln.peek(")"):
            ln.expect(",")
    ln.expect(")")
    ln.expect("->")
    ln.type()
    ln.expect("{")
    output = None
    for lineno, body in lines[1:]:
        ln = _Line(body, lineno, file, text)
        if ln.peek("}"):
            break
        if ln.peek("return "):
            ln.expect("return")
            output = ln.name()
            continue
        if ln.peek("fuse "):
            ln.expect("fuse")
            group = [ln.name()]
            while ln.peek(","):
                ln.expect(",")
                group.append(ln.name())
            if not ln.done():
                raise ln.error("unexpected text after the fused group")
            fused.append(tuple(group))
            continue
        if ln.peek("alias "):
            ln.expect("alias")
            alias = ln.name()
            ln.expect("=")
            aliases.append((alias, ln.name()))
            continue
        nname = ln.name()
        ln.expect(":")
        ntype = ln.type()
        ln.expect("=")
        opname = ln.word()
        try:
            op = Op(opname)
        except ValueError:
            raise ln.error(f"unknown op {opname!r}") from None
        ln.expect("(")
        inputs, attrs = [], []
        while not ln.peek(")"):
            save = ln.pos
            m = _WORD.match(ln.text, ln.pos)
            if m and ln.text[m.end():].lstrip().startswith("="):
                key = ln.word()
                ln.expect("=")
                attrs.append((key, _decode_attr(key, ln.json())))
            else:
                ln.pos = save
                if attrs:
                    raise ln.error("operands must come before attributes")
                inputs.append(ln.name())
            if not ln.peek(")"):
                ln.expect(",")
        ln.expect(")")
        loc = None
        if ln.peek("@"):
            ln.expect("@")
            lfile = ln.json()
            ln.expect(":")
            lline = _int(ln)
            ln.expect(":")
            loc = Loc(lfile, lline, _int(ln))
        if not ln.done():
            raise ln.error("unexpected text after the node")
        nodes.append(Node(nname, op, ntype, tuple(inputs), tuple(sorted(attrs)), loc))
    if output is None:
        raise SourceError("missing 'return'", file, lines[-1][0], 1, text)
    prog = Program(name, tuple(nodes), output, tuple(aliases), tuple(fused))
    from ..passes.verify import verify

    verify(prog)
    return prog


def _int(ln: _Line) -> int:
    ln.ws()
    m = re.compile(r"\d+").match(ln.text, ln.pos)
    if not m:
        raise ln.error("expected an integer")
    ln.pos = m.end()
    return int(m.group())
