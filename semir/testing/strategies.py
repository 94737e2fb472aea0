"""Hypothesis strategies for random well-typed programs.

Each draws a :class:`GenProgram`: the same program as model text and as a
Python function for ``semir.trace``, plus its parameter types and a way to
make random inputs. Sizes stay tiny so that the path oracle can enumerate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

UNARY = ("exp", "tanh", "sigmoid", "sin", "cos", "square", "relu", "gelu", "abs")


@dataclass
class GenProgram:
    params: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # (target, model expr, python expr)
    ret: tuple[str, str] = ("", "")
    int_params: dict[str, int] = field(default_factory=dict)  # ids param -> exclusive upper bound

    @property
    def text(self) -> str:
        sig = ", ".join(f"{n}: {t}" for n, t in self.params)
        body = "\n".join(f"    {t} = {e}" for t, e, _ in self.lines)
        return f"def main({sig}) {{\n{body}\n    return {self.ret[0]}\n}}\n"

    @property
    def python(self) -> str:
        sig = ", ".join(n for n, _ in self.params)
        body = "\n".join(f"    {t} = {p}" for t, _, p in self.lines)
        return f"def main({sig}):\n{body}\n    return {self.ret[1]}\n"

    def types(self) -> dict[str, str]:
        return dict(self.params)

    def inputs(self, seed: int, dims: dict[str, int] | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        out = {}
        for name, t in self.params:
            shape = [] if "[" not in t else [int(d) for d in t[t.index("[") + 1:-1].split(",")]
            if name in self.int_params:
                out[name] = rng.integers(0, self.int_params[name], size=shape)
            else:
                out[name] = rng.normal(size=shape) if shape else float(rng.normal())
        return out


def _unary_expr(fn: str, a: str) -> tuple[str, str]:
    if fn == "neg":
        return f"-{a}", f"-{a}"
    return f"{fn}({a})", f"ops.{fn}({a})"


@st.composite
def scalar_programs(draw, max_params: int = 3, max_stmts: int = 6):  # draws a GenProgram
    """Scalar DAGs with fan-out and parallel edges (``x * x``, ``x - x``)."""
    g = GenProgram()
    n_params = draw(st.integers(1, max_params))
    g.params = [(f"x{i}", "f64") for i in range(n_params)]
    pool = [n for n, _ in g.params]
    for i in range(draw(st.integers(1, max_stmts))):
        a = draw(st.sampled_from(pool))
        b = draw(st.sampled_from(pool))  # may equal a: parallel edges
        kind = draw(st.sampled_from(["unary", "binary", "binary", "literal", "pow", "div", "log"]))
        if kind == "unary":
            m, p = _unary_expr(draw(st.sampled_from(UNARY + ("neg",))), a)
        elif kind == "binary":
            op = draw(st.sampled_from(["+", "-", "*", "maximum", "minimum"]))
            if op in ("maximum", "minimum"):
                m, p = f"{op}({a}, {b})", f"ops.{op}({a}, {b})"
            else:
                m = p = f"{a} {op} {b}"
        elif kind == "literal":
            c = draw(st.sampled_from([0.5, 2.0, -1.5, 3]))
            m = p = draw(st.sampled_from([f"{a} * {c}", f"{c} - {a}", f"{a} + {c}"]))
        elif kind == "pow":
            e = draw(st.sampled_from([2, 3]))
            m = p = f"{a} ** {e}"
        elif kind == "div":
            m, p = f"{a} / (square({b}) + 1.0)", f"{a} / (ops.square({b}) + 1.0)"
        else:
            m, p = f"log(square({a}) + 0.5)", f"ops.log(ops.square({a}) + 0.5)"
        target = f"v{i}"
        g.lines.append((target, m, p))
        pool.append(target)
    last = pool[-1]
    other = draw(st.sampled_from(pool))
    g.ret = (f"{last} + {other}", f"{last} + {other}") if draw(st.booleans()) else (last, last)
    return g


@st.composite
def tensor_programs(draw, max_stmts: int = 4):  # draws a GenProgram
    """Small tensor programs: broadcasting, matmul, reductions, softmax, layernorm, movement, take."""
    g = GenProgram()
    A, B = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    g.params = [("x", f"f64[{A}, {B}]")]
    pool: list[tuple[str, tuple[int, ...]]] = [("x", (A, B))]
    counter = [0]

    def param(shape: tuple[int, ...], dtype: str = "f64") -> str:
        counter[0] += 1
        name = f"p{counter[0]}"
        g.params.append((name, f"{dtype}[{', '.join(map(str, shape))}]" if shape else dtype))
        return name

    for i in range(draw(st.integers(1, max_stmts))):
        a, sa = draw(st.sampled_from(pool))
        rank = len(sa)
        choices = ["unary", "binary", "bcast"]
        if rank >= 1:
            choices += ["matmul", "reduce", "softmax", "layernorm", "index", "concat", "where"]
        if rank == 2:
            choices += ["transpose", "reshape", "take"]
        kind = draw(st.sampled_from(choices))
        if kind == "unary":
            m, p = _unary_expr(draw(st.sampled_from(UNARY)), a)
            shape = sa
        elif kind == "binary":
            same = [n for n, s in pool if s == sa]
            b = draw(st.sampled_from(same))
            op = draw(st.sampled_from(["+", "-", "*"]))
            m = p = f"{a} {op} {b}"
            shape = sa
        elif kind == "bcast":
            b = param(sa[-1:] if sa else ())
            op = draw(st.sampled_from(["+", "*"]))
            m = p = f"{a} {op} {b}"
            shape = sa
        elif kind == "matmul":
            n = draw(st.integers(1, 3))
            w = param((sa[-1], n))
            m = p = f"{a} @ {w}"
            shape = sa[:-1] + (n,)
        elif kind == "reduce":
            fn = draw(st.sampled_from(["sum", "mean", "max"]))
            ax = draw(st.integers(0, rank - 1))
            keep = draw(st.booleans())
            kw = f", axis={ax}" + (", keepdims=True" if keep else "")
            m, p = f"{fn}({a}{kw})", f"ops.{fn}({a}{kw})"
            shape = tuple(1 if k == ax else d for k, d in enumerate(sa)) if keep else sa[:ax] + sa[ax + 1:]
        elif kind == "softmax":
            fn = draw(st.sampled_from(["softmax", "log_softmax"]))
            ax = draw(st.integers(-rank, rank - 1))
            m, p = f"{fn}({a}, axis={ax})", f"ops.{fn}({a}, axis={ax})"
            shape = sa
        elif kind == "layernorm":
            gm, bt = param(sa[-1:]), param(sa[-1:])
            m, p = f"layernorm({a}, {gm}, {bt}, eps=0.1)", f"ops.layernorm({a}, {gm}, {bt}, eps=0.1)"
            shape = sa
        elif kind == "index":
            if sa[0] > 1 and draw(st.booleans()):
                m = p = f"{a}[1:]"
                shape = (sa[0] - 1,) + sa[1:]
            else:
                m = p = f"{a}[0]"
                shape = sa[1:]
        elif kind == "concat":
            m, p = f"concat([{a}, {a}], axis=0)", f"ops.concat([{a}, {a}], axis=0)"
            shape = (2 * sa[0],) + sa[1:]
        elif kind == "where":
            same = [n for n, s in pool if s == sa]
            b = draw(st.sampled_from(same))
            m, p = f"where({a} > 0.0, {a}, {b})", f"ops.where({a} > 0.0, {a}, {b})"
            shape = sa
        elif kind == "transpose":
            m, p = f"transpose({a})", f"ops.transpose({a})"
            shape = sa[::-1]
        elif kind == "reshape":
            m, p = f"reshape({a}, [{sa[0] * sa[1]}])", f"ops.reshape({a}, [{sa[0] * sa[1]}])"
            shape = (sa[0] * sa[1],)
        else:  # take
            k = draw(st.integers(1, 3))
            ids = param((k,), "i64")
            g.int_params[ids] = sa[0]
            m, p = f"take({a}, {ids})", f"ops.take({a}, {ids})"
            shape = (k,) + sa[1:]
        target = f"t{i}"
        g.lines.append((target, m, p))
        pool.append((target, shape))
    last, shape = pool[-1]
    if shape and draw(st.booleans()):
        g.ret = (f"sum({last} * {last})", f"ops.sum({last} * {last})")
    else:
        g.ret = (last, last)
    return g
