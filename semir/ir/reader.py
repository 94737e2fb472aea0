"""``parse_ir``: read the canonical IR text back into a :class:`Program`, with the grammar ``grammar/ir.lark``
(its types are the model language's, ``grammar/types.lark``)."""

from __future__ import annotations

import functools
import json
from typing import Any

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import SourceError
from .node import Loc, Node, Program
from .ops import Op
from .type_syntax import parse_dim, type_from_tree
from .verify import verify

LITERALS = {"true": True, "false": False, "null": None, "NaN": float("nan"), "Infinity": float("inf")}
DIRECTIVES = ("return", "alias", "fuse")
# what the parser's terminal names mean, for error messages
_TERMINALS = {"IDENT": "a name", "STRING": "a quoted string", "DTYPE": "a dtype (f32, f64, i32, i64, bool)",
              "NUMBER": "a number", "INT": "an integer", "NAME": "a dimension name", "_NL": "a new line",
              "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'",
              "COMMA": "','", "COLON": "':'", "EQUAL": "'='", "AT": "'@'", "MINUS": "'-'", "PLUS": "'+'",
              "STAR": "'*'", "FUNC": "'func'", "__ANON_0": "'->'"}


@functools.cache
def _parser() -> lark.Lark:
    return lark.Lark.open_from_package("semir.grammar", "ir.lark", parser="lalr", maybe_placeholders=True)


def _expected(e: UnexpectedInput) -> str:
    names = sorted({_TERMINALS.get(t, t) for t in (getattr(e, "expected", None) or getattr(e, "allowed", ()))})
    return f"; expected {' or '.join(names)}" if names else ""


def _syntax_error(e: UnexpectedInput, text: str, file: str) -> SourceError:
    if isinstance(e, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return SourceError(f"unexpected end of the IR text{_expected(e)}", file, len(lines), len(lines[-1]) + 1,
                           text)
    if isinstance(e, UnexpectedToken):
        tok = e.token
        what = {"_NL": "end of line", "$END": "end of the IR text"}.get(tok.type, repr(str(tok)))
        return SourceError(f"unexpected {what}{_expected(e)}", file, e.line, e.column, text)
    if isinstance(e, UnexpectedCharacters):
        return SourceError(f"unexpected character {e.char!r}{_expected(e)}", file, e.line, e.column, text)
    return SourceError(str(e), file, getattr(e, "line", 0), getattr(e, "column", 0), text)


class _Reader:
    def __init__(self, text: str, file: str):
        self.text, self.file = text, file

    def error(self, msg: str, at) -> SourceError:
        tok = at if isinstance(at, lark.Token) else next(at.scan_values(lambda v: isinstance(v, lark.Token)), None)
        line, col = (tok.line, tok.column) if tok is not None else (0, 0)
        return SourceError(msg, self.file, line, col, self.text)

    def ident(self, tree: lark.Tree) -> str:
        tok = tree.children[0]
        return json.loads(str(tok)) if tok.type == "STRING" else str(tok)

    def type(self, tree: lark.Tree):
        try:
            return type_from_tree(tree)
        except ValueError as e:
            raise self.error(str(e), tree) from None

    def value(self, tree: lark.Tree) -> Any:
        if tree.data == "array":
            return [self.value(c) for c in tree.children if c is not None]
        tok = tree.children[0]
        if tree.data == "literal":
            if str(tok) not in LITERALS:
                raise self.error(f"bad value {str(tok)!r}: attribute values are JSON", tok)
            return LITERALS[str(tok)]
        return json.loads(str(tok))  # a string or a number (json reads -Infinity too)

    def node(self, tree: lark.Tree) -> Node:
        name, ntype, optok, *rest, loc_tree = tree.children  # loc_tree: None without "@ file:line:col"
        try:
            op = Op(str(optok))
        except ValueError:
            raise self.error(f"unknown op {str(optok)!r}", optok) from None
        inputs, attrs = [], []
        for arg in rest:
            if arg is None:
                continue
            if arg.data == "attr":
                key = str(arg.children[0])
                attrs.append((key, _decode_attr(key, self.value(arg.children[1]))))
            elif attrs:
                raise self.error("operands must come before attributes", arg)
            else:
                inputs.append(self.ident(arg))
        loc = None
        if loc_tree is not None:
            lfile, lline, lcol = loc_tree.children
            loc = Loc(json.loads(str(lfile)), int(lline), int(lcol))
        return Node(self.ident(name), op, self.type(ntype), tuple(inputs), tuple(sorted(attrs)), loc)

    def directive(self, tree: lark.Tree) -> tuple[str, list[str], str | None]:
        word, *names, target_tree = tree.children  # the last child: the optional "= TARGET" (None without)
        idents = [self.ident(n) for n in names]
        target = self.ident(target_tree) if target_tree is not None else None
        kind = str(word)
        if kind not in DIRECTIVES:
            raise self.error(f"unknown line {kind!r}: a line is a node (name: type = op(...)), "
                             f"{', '.join(DIRECTIVES)}", word)
        if kind == "alias":
            if target is None or len(idents) != 1:
                raise self.error("expected 'alias NAME = TARGET'", word)
        elif target is not None or (kind == "return" and len(idents) != 1):
            raise self.error(f"expected '{kind} NAME{', NAME' if kind == 'fuse' else ''}'", word)
        return kind, idents, target

    def program(self, tree: lark.Tree) -> Program:
        header, *lines = tree.children
        pname, *params = header.children
        params = params[:-1]  # the last child is the declared result type
        nodes = [Node(self.ident(p.children[0]), Op.input, self.type(p.children[1])) for p in params if p is not None]
        aliases, fused, output = [], [], None
        for line in lines:
            if line.data == "node":
                nodes.append(self.node(line))
                continue
            kind, idents, target = self.directive(line)
            if kind == "return":
                output = idents[0]
            elif kind == "alias":
                aliases.append((idents[0], target))
            else:
                fused.append(tuple(idents))
        if output is None:
            raise SourceError("missing 'return'", self.file, len(self.text.splitlines()), 1, self.text)
        return Program(self.ident(pname), tuple(nodes), output, tuple(aliases), tuple(fused))


def _decode_attr(key: str, v: Any) -> Any:
    if isinstance(v, list):
        v = tuple(_decode_attr("", x) for x in v)
    if key == "shape":
        v = tuple(parse_dim(d) if isinstance(d, str) else d for d in v)
    if key == "spec":
        v = tuple(tuple(parse_dim(b) if isinstance(b, str) else b for b in it) if isinstance(it, tuple) else it
                  for it in v)
    return v


def parse_ir(text: str, file: str = "<ir>") -> Program:
    """Parse canonical IR text (as printed by ``str(program)``); errors carry file:line:col."""
    if not any(ln.strip() and not ln.strip().startswith("#") for ln in text.splitlines()):
        raise SourceError("empty IR text", file)
    try:
        tree = _parser().parse(text if text.endswith("\n") else text + "\n")
    except UnexpectedInput as e:
        raise _syntax_error(e, text, file) from None
    reader = _Reader(text, file)
    try:
        prog = reader.program(tree)
    except ValueError as e:  # a bad dimension inside an attribute
        raise SourceError(str(e), file) from None
    verify(prog)
    return prog
