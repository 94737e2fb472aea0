"""semir: a compiler for semiring backpropagation."""

import importlib.util as _util

# backends/ and grammar/ sit beside semir/ in the repository and map into the package only through an install
# (``pip install -e .`` for a checkout). Imported from a bare checkout, say so instead of failing later with
# a bare ModuleNotFoundError at the first compile.
if _util.find_spec(f"{__name__}.backends") is None or _util.find_spec(f"{__name__}.grammar") is None:
    raise ImportError(f"semir is imported from {__path__[0]} without its backends/ and grammar/: in a source "
                      "checkout, install it first (pip install -e .), which maps them into the package")

from . import models, ops, semirings
from ._version import __version__  # noqa: F401  (semir.__version__)
from .compiler import compile
from .errors import InputError, OptionError, SemirError, SourceError, TypeCheckError
from .frontend.language import parse
from .frontend.trace import trace
from .ir import DType, Program, TensorType, parse_ir


def import_onnx(path, shapes=None, output=None, readout=True):
    """Translate an ONNX export into semir IR (see :func:`semir.models.onnx_import.import_onnx`)."""
    from .models.onnx_import import import_onnx as _import

    return _import(path, shapes, output, readout)


def from_torch(module, example_inputs, name=None):
    """A PyTorch module, captured with ``torch.export``, as IR (see :mod:`semir.frontend.torch_export`)."""
    from .frontend.torch_export import from_torch as _from_torch

    return _from_torch(module, example_inputs, name)


def load(path, entry=None) -> Program:
    """Parse a model file into IR."""
    from pathlib import Path

    from .frontend.language import decode

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise SemirError(f"cannot read model file {str(path)!r}: {e.strerror}") from None
    return parse(decode(data, str(path)), str(path), entry=entry)


__all__ = [
    "DType", "InputError", "OptionError", "Program", "SemirError", "SourceError", "TensorType", "TypeCheckError",
    "compile", "from_torch", "import_onnx", "load", "models", "ops", "parse", "parse_ir", "semirings", "trace",
]
