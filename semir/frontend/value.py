"""The traced tensor's data, apart from its operators, so that the builtins need not import the builder."""

from __future__ import annotations

from typing import Any

from ..errors import TypeCheckError
from ..ir.types import DType, TensorType


class ValueBase:
    """A tensor being built: a node of a :class:`~semir.frontend.builder.Builder` and its type. The builtins
    take these; :class:`~semir.frontend.builder.Value` adds the Python operators, which call the builtins."""

    __slots__ = ("builder", "id")
    __array_priority__ = 1000  # keep numpy scalars from swallowing Value operators

    def __init__(self, builder: Any, nid: int):
        self.builder, self.id = builder, nid

    @property
    def type(self) -> TensorType:
        return self.builder.drafts[self.id].type

    @property
    def dtype(self) -> DType:
        return self.type.dtype

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def ndim(self) -> int:
        return self.type.rank

    def __repr__(self) -> str:
        return f"<semir.Value {self.type}>"

    def __bool__(self):
        raise TypeCheckError("a traced tensor has no truth value; use where(cond, a, b)")

    __hash__ = object.__hash__
