"""The typed DAG IR: types, ops, nodes, shape rules, canonical text."""

from .node import Loc, Node, Program
from .ops import Op
from .reader import parse_ir
from .types import DType, SymDim, TensorType

__all__ = ["DType", "Loc", "Node", "Op", "Program", "SymDim", "TensorType", "parse_ir"]
