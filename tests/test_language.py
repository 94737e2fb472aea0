"""The model language: features, naming, and one clear error per class of bad input (issue 2)."""

import math
import textwrap

import numpy as np
import pytest

import semir
from semir.errors import InputError, SourceError


def parse(text, **kw):
    return semir.parse(textwrap.dedent(text), "model.semir", **kw)


def fwd(text, **inputs):
    return semir.compile(parse(text), backend="reference").forward(**inputs)


def test_python_precedence_and_unary_minus():
    # -x ** 2 is -(x**2); * binds tighter than +; @ with *; comparisons lowest
    out = fwd("""
    def f(x: f64, y: f64) -> f64 {
        return -x ** 2 + 3 * y - 2 / 4 * x + (x - y) * y
    }""", x=1.5, y=-0.5)
    x, y = 1.5, -0.5
    assert out == pytest.approx(-x ** 2 + 3 * y - 2 / 4 * x + (x - y) * y)


def test_comments_newlines_in_brackets_and_kwargs():
    out = fwd("""
    # a comment line
    def f(x: f64[2, 3]) -> f64[2] {   # trailing comment
        s = softmax(x,
                    axis=-1)
        return sum(s * x, axis=1)
    }""", x=np.arange(6.0).reshape(2, 3))
    x = np.arange(6.0).reshape(2, 3)
    s = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(out, (s * x).sum(1))


def test_indexing_slicing_broadcasting():
    x = np.arange(24.0).reshape(2, 3, 4)
    out = fwd("""
    def f(x: f64[2, 3, 4], b: f64[4]) -> f64[2, 3] {
        return transpose(x[1, :, 1:3] + b[0:2] * 2.0 - x[-1, :, ::2])
    }""", x=x, b=np.arange(4.0))
    np.testing.assert_allclose(out, (x[1, :, 1:3] + np.arange(4.0)[0:2] * 2.0 - x[-1, :, ::2]).T)


def test_where_comparisons_maximum_take_concat_reshape():
    ids = np.array([2, 0, 2])
    t = np.arange(8.0).reshape(4, 2) - 3
    out = fwd("""
    def f(t: f64[4, 2], ids: i64[3]) -> f64[12] {
        e = take(t, ids)
        w = where(e > 0.0, e, minimum(e, -1.0) * 0.5)
        return reshape(concat([w, maximum(e, 1.0)], axis=0), [-1])
    }""", t=t, ids=ids)
    e = t[ids]
    w = np.where(e > 0, e, np.minimum(e, -1.0) * 0.5)
    np.testing.assert_allclose(out, np.concatenate([w, np.maximum(e, 1.0)]).reshape(-1))


def test_defs_are_inlined_with_dotted_names():
    prog = parse("""
    def block(x: f64[N], w: f64[N, N]) -> f64[N] {
        q = tanh(x @ w)
        k = q * 2.0
        return q + k
    }
    def main(x: f64[3], w: f64[3, 3]) -> f64 {
        h1 = block(x, w)
        h2 = block(h1, w)
        y = sum(block(h2, w)) + 1.0
        return y
    }""")
    names = [n.name for n in prog.nodes]
    for n in ("h1.q", "h1.k", "h1", "h2.q", "h2", "y.block.q", "y"):
        assert n in names, n


def test_entry_selection():
    text = "def a(x: f64) -> f64 {\n  return exp(x)\n}\ndef b(x: f64) -> f64 {\n  return log(x)\n}\n"
    assert parse(text).name == "b"
    assert parse(text, entry="a").name == "a"
    with pytest.raises(semir.SemirError, match="no def named 'c'"):
        parse(text, entry="c")


def test_symbolic_dims_and_affine_dims():
    prog = parse("""
    def f(x: f32[S, 2*H], h: f32[H]) -> f32[S, H] {
        return x[:, 0:H] * h + x[:, H:2*H]
    }""")
    assert str(prog.output_node.type) == "f32[S, H]"
    x = np.ones((4, 6), np.float32)
    out = semir.compile(prog, backend="reference").forward(x=x, h=np.arange(3, dtype=np.float32))
    assert out.shape == (4, 3)


def test_gelu_forms():
    x = np.linspace(-3, 3, 7)
    exact = fwd("def f(x: f64[7]) -> f64[7] {\n return gelu(x)\n}", x=x)
    approx = fwd('def f(x: f64[7]) -> f64[7] {\n return gelu(x, approximate="tanh")\n}', x=x)
    np.testing.assert_allclose(exact, [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    np.testing.assert_allclose(approx, 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))))


# -- bad input: one clear message per class --------------------------------


def err(text, match, line=None, col=None):
    with pytest.raises(SourceError) as e:
        parse(text)
    msg = str(e.value)
    assert msg.startswith("model.semir:"), msg
    assert match in msg, msg
    if line is not None:
        assert f"model.semir:{line}:{col}: error:" in msg, msg
    assert "^" in msg.splitlines()[-1]
    return msg


def test_syntax_error_has_position_line_and_caret():
    msg = err("def f(x: f64) -> f64 {\n    y = exp(x) +\n    return y\n}\n", "unexpected end of line", 2, 17)
    lines = msg.splitlines()
    assert lines[1] == "        y = exp(x) +"
    assert lines[2].index("^") == 4 + 16


def test_unknown_name_and_builtin_suggest_nearest():
    err("def f(x: f64) -> f64 {\n  y = epx(x)\n  return y\n}", "unknown function 'epx' (did you mean 'exp'?)", 2, 7)
    err("def f(xval: f64) -> f64 {\n  return xvl * 2.0\n}", "unknown name 'xvl' (did you mean 'xval'?)", 2, 10)


def test_arity_and_keyword_errors():
    err("def f(x: f64[3]) -> f64[3] {\n  return softmax(x, axs=0)\n}", "no argument 'axs' (did you mean 'axis'?)")
    err("def f(x: f64[3]) -> f64[3] {\n  return exp(x, x)\n}", "takes at most 1 arguments")
    err("def f(x: f64[3]) -> f64[3] {\n  return layernorm(x)\n}", "missing argument 'gamma'")
    err("def g(a: f64) -> f64 {\n  return a\n}\ndef f(x: f64) -> f64 {\n  return g(x, x)\n}", "takes 1 arguments")


def test_shape_and_dtype_errors_point_at_the_operator():
    err("def f(x: f64[3], w: f64[4, 2]) -> f64 {\n  h = x @ w\n  return sum(h)\n}",
        "matmul: contracted dimensions differ", 2, 7)
    err("def f(x: f64[3], y: f64[4]) -> f64[3] {\n  return x + y\n}", "do not broadcast", 2, 10)
    err("def f(x: i64[3]) -> f64[3] {\n  return exp(x)\n}", "expects a floating-point operand")
    err("def f(x: f64[3]) -> f64[3] {\n  return softmax(x, axis=2)\n}", "out of range")
    err("def f(x: f64[3]) -> f64 {\n  return x * 2.0\n}", "declared to return f64, but returns f64[3]")


def test_recursive_defs_are_rejected():
    err("def f(x: f64) -> f64 {\n  return g(x)\n}\ndef g(x: f64) -> f64 {\n  return f(x)\n}",
        "recursive call to 'g' (g -> f -> g)")


def test_call_argument_type_mismatch():
    err("def g(a: f64[N, N]) -> f64 {\n  return sum(a)\n}\ndef f(x: f64[2, 3]) -> f64 {\n  return g(x)\n}",
        "argument 'a' of g(): expected f64[N, N] with N=2, got f64[2, 3]")


def test_runtime_input_errors():
    prog = parse("def f(x: f32[S, 4], y: f32[S]) -> f32 {\n  return sum(x) + sum(y)\n}")
    k = semir.compile(prog, backend="reference")
    with pytest.raises(InputError, match="missing input 'y' \\(f32\\[S\\]\\)"):
        k(x=np.ones((2, 4)))
    with pytest.raises(InputError, match="unexpected input 'z'"):
        k(x=np.ones((2, 4)), y=np.ones(2), z=1.0)
    with pytest.raises(InputError, match=r"input 'x': expected f32\[S, 4\], got float64 array of shape \(2, 5\)"):
        k(x=np.ones((2, 5)), y=np.ones(2))
    with pytest.raises(InputError, match=r"input 'y': expected f32\[2\], got .* shape \(3,\) \(with S=2"):
        k(x=np.ones((2, 4)), y=np.ones(3))
    with pytest.raises(InputError, match="non-numeric"):
        k(x=np.array([["a"] * 4] * 2), y=np.ones(2))
    ids = semir.compile(parse("def f(t: f64[3, 2], i: i64[2]) -> f64 {\n  return sum(take(t, i))\n}"),
                        backend="reference")
    with pytest.raises(InputError, match="expected integers"):
        ids(t=np.ones((3, 2)), i=np.array([0.5, 1.0]))
    with pytest.raises(InputError, match="id 7 is out of range for a table of 3 rows"):
        ids(t=np.ones((3, 2)), i=np.array([0, 7]))
