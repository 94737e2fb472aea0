"""semir: a compiler for semiring backpropagation."""

from . import ops, semirings
from .compiler import compile
from .errors import InputError, OptionError, SemirError, SourceError, TypeCheckError
from .frontend.language import parse
from .frontend.trace import trace
from .ir import DType, Program, TensorType, parse_ir

__version__ = "0.1.0"


def load(path, entry=None) -> Program:
    """Parse a model file into IR."""
    from pathlib import Path

    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SemirError(f"cannot read model file {str(path)!r}: {e.strerror}") from None
    return parse(text, str(path), entry=entry)


__all__ = ["compile", "ops", "semirings", "trace", "DType", "InputError", "OptionError", "Program", "SemirError", "SourceError", "TensorType",
           "TypeCheckError", "load", "parse", "parse_ir"]
