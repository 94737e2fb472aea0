"""The model-language frontend: text -> lark tree -> Builder calls -> Program."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from dataclasses import dataclass
from typing import Any

import lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ..errors import SemirError, SourceError, TypeCheckError, suggest
from ..ir.node import Loc, Program
from ..ir.type_syntax import dim_from_tree
from ..ir.types import Dim, DType, SymDim, TensorType, dim_symbols, substitute, unify_dim
from . import builtins
from .builder import Builder, Value

_COMPARE = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}
_TOKEN_NAMES = {"_NL": "a newline", "RPAR": "')'", "LPAR": "'('", "RSQB": "']'", "LSQB": "'['",
                "RBRACE": "'}'", "LBRACE": "'{'", "COMMA": "','", "NAME": "a name", "NUMBER": "a number",
                "EQUAL": "'='", "COLON": "':'", "DTYPE": "a dtype", "MINUS": "'-'", "PLUS": "'+'",
                "STRING": "a string", "INT": "an integer", "STAR": "'*'", "SLASH": "'/'", "RETURN": "'return'",
                "DEF": "'def'", "COMPOP": "a comparison", "MORETHAN": "'>'", "__ANON_0": "'->'"}


class _BracketNewlines:
    """Post-lexer: newlines inside (...) or [...] continue the statement."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        for tok in stream:
            if tok.type in ("LPAR", "LSQB"):
                depth += 1
            elif tok.type in ("RPAR", "RSQB"):
                depth = max(depth - 1, 0)
            elif tok.type == "_NL" and depth:
                continue
            yield tok


@functools.cache
def _parser() -> lark.Lark:
    # from the package, so that its %import of the shared type rules (grammar/types.lark) resolves
    return lark.Lark.open_from_package("semir.grammar", "semir.lark", parser="lalr", propagate_positions=True,
                                       maybe_placeholders=True, postlex=_BracketNewlines())


@dataclass
class _Def:
    name: str
    params: list[tuple[str, Any]]  # (name, type tree)
    ret: Any
    body: list[Any]
    meta: Any


class _Frame:
    def __init__(self, d: _Def):
        self.d = d
        self.env: dict[str, Any] = {}
        self.dims: dict[str, Dim] = {}


class Compiler:
    def __init__(self, text: str, file: str):
        self.text, self.file = text, file
        self.builder = Builder()
        self.stack: list[str] = []

    def error(self, msg: str, meta) -> SourceError:
        line = getattr(meta, "line", 0) or 0
        col = getattr(meta, "column", 0) or 0
        return SourceError(msg, self.file, line, col, self.text)

    @contextlib.contextmanager
    def at(self, meta):
        old = self.builder.loc
        if getattr(meta, "line", None):
            self.builder.loc = Loc(self.file, meta.line, meta.column)
        try:
            yield
        except SourceError:
            raise
        except SemirError as e:
            raise self.error(str(e), meta) from None
        except (TypeError, ValueError, OverflowError) as e:  # a builtin given an argument it cannot take
            raise self.error(f"invalid argument: {e}", meta) from None
        finally:
            self.builder.loc = old

    # -- program ------------------------------------------------------------

    def compile(self, entry: str | None) -> Program:
        tree = parse_tree(self.text, self.file)
        check_depth(tree, self.text, self.file)
        self.defs: dict[str, _Def] = {}
        for d in tree.children:
            name = str(d.children[0])
            if name in self.defs:
                raise self.error(f"def {name!r} is defined twice", d.meta)
            params = [(str(p.children[0]), p.children[1]) for p in d.children[1:-2] if p is not None]
            self.defs[name] = _Def(name, params, d.children[-2], d.children[-1].children, d.meta)
        if not self.defs:
            lines = self.text.split("\n")
            raise SourceError("the model has no def (a model is one or more `def name(...) -> type { ... }`)",
                              self.file, len(lines), len(lines[-1]) + 1)
        if entry is None:
            entry = "main" if "main" in self.defs else list(self.defs)[-1]
        if entry not in self.defs:
            raise SourceError(f"no def named {entry!r}{suggest(entry, self.defs)}; defs: {', '.join(self.defs)}",
                              self.file)
        d = self.defs[entry]
        frame = _Frame(d)
        for pname, ptree in d.params:
            if pname in frame.env:
                raise self.error(f"parameter {pname!r} appears twice", ptree.meta)
            frame.env[pname] = self.builder.param(pname, self.type_of(ptree, frame, declare=True))
        self.stack.append(entry)
        out = self.run_body(frame)
        self.stack.pop()
        if not isinstance(out, Value):
            with self.at(d.meta):
                out = self.builder.lift(out, None)
        self.check_return(frame, out)
        return self.builder.finish(out, entry)

    def type_of(self, tree, frame: _Frame, declare: bool) -> TensorType:
        """The declared type; with ``declare``, unknown symbols stand for themselves (entry signature)."""
        dtype = DType(str(tree.children[0]))
        dims: list[Dim] = []
        for dt in tree.children[1:]:
            if dt is None:
                continue
            d = self.dim_of(dt)
            for s in dim_symbols(d):
                if s not in frame.dims:
                    if not declare:
                        raise self.error(f"unknown dimension {s!r}", dt.meta)
                    frame.dims[s] = SymDim.make({s: 1}, 0)
            dims.append(substitute(d, frame.dims))
        return TensorType(dtype, tuple(dims))

    def dim_of(self, tree) -> Dim:
        """A dim tree in the def's own symbols."""
        return dim_from_tree(tree, self.dim_int)

    def dim_int(self, tok, tree) -> int:
        s = str(tok)
        if len(s.lstrip("0")) > 12:  # a dimension of 10^12 elements is no tensor anyone can run
            raise self.error(f"dimension {s[:20]}{'...' if len(s) > 20 else ''} is too large", tree.meta)
        return int(s)

    def run_body(self, frame: _Frame) -> Any:
        result = None
        for stmt in frame.d.body:
            if stmt is None:
                continue
            if stmt.data == "assign":
                target = str(stmt.children[0])
                value = self.expr(stmt.children[1], frame, target, direct=True)
                if isinstance(value, str):
                    raise self.error("strings can only be passed as keyword arguments", stmt.meta)
                frame.env[target] = value
                if isinstance(value, Value):
                    self.builder.bind(value, target)
            else:
                if result is not None:
                    raise self.error("a def returns once", stmt.meta)
                result = self.expr(stmt.children[0], frame, None, direct=True)
                break
        if result is None:
            raise self.error(f"def {frame.d.name!r} has no return statement", frame.d.meta)
        return result

    def check_return(self, frame: _Frame, out: Value) -> None:
        if frame.d.ret is None:
            return
        want = self.type_of(frame.d.ret, frame, declare=False)
        if want != out.type:
            raise self.error(f"def {frame.d.name!r} is declared to return {want}, but returns {out.type}",
                             frame.d.ret.meta)

    # -- expressions --------------------------------------------------------

    def expr(self, t, frame: _Frame, target: str | None, direct: bool = False) -> Any:
        kind = t.data if isinstance(t, lark.Tree) else None
        if kind == "number":
            return self.number(t)
        if kind == "string":
            return str(t.children[0])[1:-1]
        if kind == "var":
            return self.var(t, frame)
        if kind == "list":
            return [self.expr(c, frame, target) for c in t.children if c is not None]
        if kind == "call":
            return self.call(t, frame, target, direct)
        if kind == "index":
            with self.at(t.meta):
                return self.index(t, frame, target)
        sub = [self.expr(c, frame, target) for c in t.children if not isinstance(c, lark.Token)]
        with self.at(t.meta):
            if kind in ("add", "sub", "mul", "div", "matmul"):
                return builtins.binary(kind, *self.operands(sub, t))
            if kind == "compare":
                a, b = self.operands(sub, t)
                return builtins.binary(_COMPARE[str(t.children[1])], a, b)
            if kind == "neg":
                x = self.operands(sub, t)[0]
                return -x
            if kind == "pos":
                return self.operands(sub, t)[0]
            if kind == "pow":
                base, p = self.operands(sub, t)
                return base ** p if not isinstance(base, Value) else builtins.power(base, p)
        raise self.error(f"unsupported expression {kind}", t.meta)

    def number(self, t) -> int | float:
        s = str(t.children[0])
        if any(c in s for c in ".eE"):
            v = float(s)
            if not math.isfinite(v):
                raise self.error(f"number {s[:20]}{'...' if len(s) > 20 else ''} is too large for a float", t.meta)
            return v
        if len(s.lstrip("0")) > 19 or int(s) > 2**63 - 1:  # checked by length first: int() of 5,000 digits raises
            raise self.error(f"integer {s[:20]}{'...' if len(s) > 20 else ''} does not fit in 64 bits", t.meta)
        return int(s)

    def operands(self, vals: list, t) -> list:
        for v in vals:
            if isinstance(v, str | list):
                raise self.error(f"a {'string' if isinstance(v, str) else 'list'} is not a valid operand here",
                                 t.meta)
            if isinstance(v, SymDim) and not (t.data in ("add", "sub", "mul", "neg", "pos") and all(
                    isinstance(w, int | SymDim) and not isinstance(w, bool) for w in vals)):
                raise self.error("a symbolic dimension is not a value; use it only in shapes and with "
                                 "integers (+, -, *)", t.meta)
        return vals

    def var(self, t, frame: _Frame) -> Any:
        name = str(t.children[0])
        if name in frame.env:
            return frame.env[name]
        if name in ("True", "False"):
            return name == "True"
        if name in frame.dims:
            return frame.dims[name]
        if name in self.defs or name in builtins.BUILTINS:
            raise self.error(f"{name!r} is a function; call it with (...)", t.meta)
        known = list(frame.env) + list(frame.dims)
        raise self.error(f"unknown name {name!r}{suggest(name, known)}", t.meta)

    def index(self, t, frame: _Frame, target):
        base = self.expr(t.children[0], frame, target)
        if not isinstance(base, Value):
            raise self.error("only tensors can be indexed", t.meta)
        key = []
        for s in t.children[1:]:
            if isinstance(s, lark.Tree) and s.data == "slice":
                parts = [None if c is None else self.expr(c, frame, target) for c in s.children]
                for p in parts:
                    if p is not None and not isinstance(p, int | SymDim):
                        raise self.error("slice bounds must be integers or dimensions", s.meta)
                key.append(slice(*parts))
            else:
                v = self.expr(s, frame, target)
                if isinstance(v, Value):
                    raise self.error("indexing with a tensor is not supported; use take(table, ids)", t.meta)
                if not isinstance(v, int):
                    raise self.error(f"index must be an integer, got {v!r}", t.meta)
                key.append(v)
        return builtins.getitem(base, tuple(key))

    def call(self, t, frame: _Frame, target: str | None, direct: bool) -> Any:
        name = str(t.children[0])
        args, kwargs = [], {}
        for a in t.children[1:]:
            if a is None:
                continue
            if isinstance(a, lark.Tree) and a.data == "kwarg":
                key = str(a.children[0])
                if key in kwargs:
                    raise self.error(f"keyword argument {key!r} repeated", a.meta)
                kwargs[key] = self.expr(a.children[1], frame, target)
            else:
                if kwargs:
                    raise self.error("positional argument after a keyword argument", a.meta)
                args.append(self.expr(a, frame, target))
        if name in self.defs:
            return self.inline(self.defs[name], args, kwargs, t, target, direct)
        if name not in builtins.BUILTINS:
            choices = list(self.defs) + list(builtins.BUILTINS)
            raise self.error(f"unknown function {name!r}{suggest(name, choices)}", t.meta)
        with self.at(t.meta):
            return builtins.BUILTINS[name](*args, **kwargs)

    def inline(self, d: _Def, args, kwargs, t, target, direct) -> Any:
        if d.name in self.stack:
            chain = " -> ".join(self.stack[self.stack.index(d.name):] + [d.name])
            raise self.error(f"recursive call to {d.name!r} ({chain}); defs are inlined and cannot recurse", t.meta)
        names = [p for p, _ in d.params]
        if len(args) > len(names):
            raise self.error(f"{d.name}() takes {len(names)} arguments, got {len(args)}", t.meta)
        vals = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise self.error(f"{d.name}() has no parameter {k!r}{suggest(k, names)}", t.meta)
            vals[k] = v
        missing = [p for p in names if p not in vals]
        if missing:
            raise self.error(f"{d.name}() is missing argument {missing[0]!r}", t.meta)
        frame = _Frame(d)
        for pname, ptree in d.params:
            v = vals[pname]
            if not isinstance(v, Value):
                # A literal argument stays a number, as it does in a traced Python call.
                if isinstance(v, str | list | SymDim) or len(ptree.children) > 1 and ptree.children[1]:
                    raise self.error(f"argument {pname!r} of {d.name}(): expected {str(ptree.children[0])}"
                                     f"{'[...]' if len(ptree.children) > 1 and ptree.children[1] else ''}, "
                                     f"got {v!r}", t.meta)
            else:
                self.unify(d, pname, ptree, v, frame, t)
            frame.env[pname] = v
        label = target if direct and target else (f"{target}.{d.name}" if target else d.name)
        scope = self.builder.open_scope(d.name, label)
        self.stack.append(d.name)
        out = self.run_body(frame)
        self.stack.pop()
        self.builder.close_scope(scope)
        if isinstance(out, Value):
            self.check_return(frame, out)
        return out

    def unify(self, d: _Def, pname: str, ptree, v: Value, frame: _Frame, t) -> None:
        dtype = DType(str(ptree.children[0]))
        want = [self.dim_of(dt) for dt in ptree.children[1:] if dt is not None]
        got = v.type
        ok = dtype == got.dtype and len(want) == got.rank
        for wd, gd in zip(want, got.shape):
            ok = ok and unify_dim(wd, gd, frame.dims)
        if not ok:
            declared = TensorType(dtype, tuple(want))
            syms = sorted({s for w in want for s in dim_symbols(w) if s in frame.dims})
            bound = ", ".join(f"{s}={frame.dims[s]}" for s in syms)
            raise self.error(f"argument {pname!r} of {d.name}(): expected {declared}"
                             + (f" with {bound}" if bound else "") + f", got {got}", t.meta)


def parse_tree(text: str, file: str) -> lark.Tree:
    try:
        return _parser().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text, file) from None


def _syntax_error(e: UnexpectedInput, text: str, file: str) -> SourceError:
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        return SourceError(f"unexpected character {ch!r}", file, e.line, e.column, text)
    if isinstance(e, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return SourceError("unexpected end of file (missing '}'?)", file, len(lines), len(lines[-1]) + 1, text)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    what = "end of line" if tok.type == "_NL" else repr(str(tok))
    expected = sorted(_TOKEN_NAMES.get(x, repr(x.lower())) for x in e.expected if not x.startswith("__"))
    hint = f"; expected {', '.join(expected[:6])}" if expected else ""
    return SourceError(f"unexpected {what}{hint}", file, tok.line, tok.column, text)


# Deepest expression nesting a model may have. The tree is walked recursively (about three Python frames a
# level), so the limit keeps a pathological file to a clear error rather than a RecursionError.
MAX_DEPTH = 200


def parse(text: str, file: str = "<string>", entry: str | None = None) -> Program:
    """Parse model text into a verified IR program. Line endings may be LF, CRLF or CR."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        compiler = Compiler(text, file)
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 20 * MAX_DEPTH))
        try:
            return compiler.compile(entry)
        finally:
            sys.setrecursionlimit(old)
    except TypeCheckError as e:  # errors without a position (rare): still name the file
        raise SourceError(str(e), file) from None
    except RecursionError:
        raise SourceError(f"the model is nested too deeply (more than {MAX_DEPTH} levels)", file) from None


def check_depth(tree: lark.Tree, text: str, file: str) -> None:
    """A clear error, at the place it happens, for nesting deeper than :data:`MAX_DEPTH`."""
    stack = [(tree, 0)]
    while stack:
        t, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = getattr(t, "meta", None)
            raise SourceError(f"expression nested too deeply (more than {MAX_DEPTH} levels); split it into "
                              "named steps", file, getattr(meta, "line", 0) or 0, getattr(meta, "column", 0) or 0,
                              text)
        stack.extend((c, depth + 1) for c in t.children if isinstance(c, lark.Tree))


def decode(data: bytes, file: str) -> str:
    """Model text from bytes: UTF-8 (a BOM is allowed), else an error at the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        head = data[:e.start]
        line = head.count(b"\n") + 1
        col = e.start - (head.rfind(b"\n") + 1) + 1
        raise SourceError(f"the file is not UTF-8 text (byte 0x{data[e.start]:02x})", file, line, col) from None
