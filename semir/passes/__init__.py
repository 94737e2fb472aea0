"""The pass pipeline: small named passes with stated contracts (see ``pipeline.py``)."""

from .base import PASSES, Pass, PassContext, get_pass
from .pipeline import GRANULARITIES, optimize, pipeline

__all__ = ["GRANULARITIES", "PASSES", "Pass", "PassContext", "get_pass", "optimize", "pipeline"]
