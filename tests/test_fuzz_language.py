"""Model text fuzzed from the examples: every outcome is a program or a SourceError with file:line:col, never a
Python traceback; on the CLI, exit 2 and no traceback."""

import contextlib
import io
import os
import re

from conftest import EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

import semir
from semir.cli import main
from semir.errors import SourceError

SOURCES = [p.read_bytes() for p in sorted(EXAMPLES.glob("*.semir"))]
# fragments that broke the front end before: deep nesting, long chains, huge literals, bad bytes, CR endings
FRAGMENTS = [b"(", b")", b"[", b"]", b"{", b"}", b",", b"=", b"+", b"-", b"**", b"@", b"\n", b"\r", b"\r\n",
             b"\xff", b"\xc3", b"\x00", "\u0663".encode(), b"9" * 5000, b"1e999", b"99999999999999999999",
             b"(" * 400, b"-" * 3000, b"x + " * 1500, b"[" * 300, b"axis=", b"axis='a'", b'"s"', b"sum(",
             b"take(", b"reshape(", b"transpose(", b"layernorm(", b"softmax(", b"eps=", b"[]", b"f32[", b"S",
             b"def", b"return", b"#", b"topk"]

mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.sampled_from(FRAGMENTS)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 12)),
    st.tuples(st.just("byte"), st.integers(0, 10_000), st.integers(0, 255)),
)


def _mutate(src: bytes, muts) -> bytes:
    s = bytearray(src)
    for kind, pos, arg in muts:
        pos %= len(s) + 1
        if kind == "insert":
            s[pos:pos] = arg
        elif kind == "delete":
            del s[pos:pos + arg]
        else:
            s[pos:pos + 1] = bytes([arg])
    return bytes(s)


@settings(max_examples=int(os.environ.get("SEMIR_FUZZ_EXAMPLES", 300)))
@given(st.sampled_from(SOURCES), st.lists(mutation, min_size=1, max_size=4))
def test_fuzzed_model_text_gives_a_positioned_error_or_a_program(tmp_path_factory, src, muts):
    path = tmp_path_factory.mktemp("fuzz") / "m.semir"
    path.write_bytes(_mutate(src, muts))
    try:
        semir.load(path)
    except SourceError as e:
        assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", str(e)), str(e)


@settings(max_examples=40)
@given(st.sampled_from(SOURCES), st.lists(mutation, min_size=1, max_size=3))
def test_fuzzed_model_text_on_the_cli_exits_0_or_2(tmp_path_factory, src, muts):
    path = tmp_path_factory.mktemp("fuzz") / "m.semir"
    path.write_bytes(_mutate(src, muts))
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        code = main(["check", str(path)])
    err = buf.getvalue()
    assert code in (0, 2) and "Traceback" not in err
    if code == 2:
        assert re.match(rf"{re.escape(str(path))}:\d+(:\d+)?: error: ", err), err


def test_line_endings_and_encodings_are_one_language(tmp_path):
    text = "def main(x: f64) -> f64 {\n    return x * 2.0\n}\n"
    for ending in ("\n", "\r\n", "\r"):
        t = text.replace("\n", ending)
        assert str(semir.parse(t)) == str(semir.parse(text))
        p = tmp_path / "m.semir"
        p.write_bytes(t.encode())
        assert str(semir.load(p)) == str(semir.parse(text))
