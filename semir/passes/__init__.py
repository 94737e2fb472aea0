"""The pass pipeline."""
from . import verify  # noqa: F401  (registers the pass)
from .base import PASSES, Pass, PassContext, get_pass

__all__ = ["PASSES", "Pass", "PassContext", "get_pass"]
