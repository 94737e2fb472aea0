"""Analyses researchers run on models: branch flow, per-token statistics, top paths, attributions.

Each returns tidy records (lists of dicts) or arrays; ``semir analyze`` prints them and ``report`` draws them
as one self-contained HTML page.
"""

from .attribution import gradcheck, integrated_gradients, saliency, smoothgrad
from .branch import BRANCHES, branch_flow
from .flow import attention_flow, token_flow
from .htmlreport import report
from .paths import path_to_dot, top_paths
from .tokens import token_stats

__all__ = ["BRANCHES", "attention_flow", "branch_flow", "gradcheck", "integrated_gradients", "path_to_dot",
           "report", "saliency", "smoothgrad", "token_flow", "token_stats", "top_paths"]
