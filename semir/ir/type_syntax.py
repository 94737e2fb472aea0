"""The type and dimension syntax shared by the model language and the IR text: ``f32``, ``f64[S, 16]``,
``i64[2*S-1]``, from one set of grammar rules (``grammar/types.lark``, imported by ``semir.lark`` and
``ir.lark``). Both readers and ``semir.trace``'s type strings turn those rules' trees into types here."""

from __future__ import annotations

import functools
from collections.abc import Callable

import lark

from .types import Dim, DType, SymDim, TensorType, dim_add


@functools.cache
def _parser() -> lark.Lark:
    return lark.Lark.open_from_package("semir.grammar", "types.lark", parser="lalr", start=["type", "dim"])


def dim_from_tree(tree: lark.Tree, int_of: Callable[[lark.Token, lark.Tree], int] = lambda tok, tree: int(tok)) -> Dim:
    """A ``dim`` tree as an affine dim; ``int_of`` reads (and may refuse) each integer literal."""
    total: Dim = 0
    for part in tree.children:
        sign = -1 if part.data in ("dneg", "dminus") else 1
        term = part.children[0] if part.data in ("dneg", "dplus", "dminus") else part
        toks = term.children
        if term.data == "dint":
            d: Dim = int_of(toks[0], term)
        elif term.data == "dsym":
            d = SymDim.make({str(toks[0]): 1}, 0)
        else:  # dscaled: INT "*" NAME
            d = SymDim.make({str(toks[1]): int_of(toks[0], term)}, 0)
        total = dim_add(total, d, sign)
    return total


def type_from_tree(tree: lark.Tree, dim: Callable[[lark.Tree], Dim] = dim_from_tree) -> TensorType:
    """A ``type`` tree as a :class:`TensorType` (``dim`` reads each dimension)."""
    return TensorType(DType(str(tree.children[0])), tuple(dim(t) for t in tree.children[1:] if t is not None))


def _parse(text: str, start: str) -> lark.Tree:
    try:
        return _parser().parse(text, start=start)
    except lark.exceptions.UnexpectedInput as e:
        raise ValueError(f"bad {'type' if start == 'type' else 'dimension'} {text!r} (at column {e.column})") from None


def parse_type(text: str) -> TensorType:
    """``"f32[S, 16]"`` -> TensorType; a ValueError names the bad text and column."""
    return type_from_tree(_parse(text, "type"))


def parse_dim(text: str) -> Dim:
    """``"S"``, ``"2*S-1"``, ``"16"`` (the printed form of a dim) -> a dim."""
    return dim_from_tree(_parse(text, "dim"))
