"""The model language's builtins as Python functions, for ``semir.trace``.

``ops.softmax(x, axis=-1)`` builds exactly the node that ``softmax(x,
axis=-1)`` builds in a model file. ``sum``, ``max`` and ``abs`` shadow the
Python builtins of the same names inside this module only.
"""

from .frontend.builtins import BUILTINS

globals().update(BUILTINS)

__all__ = sorted(BUILTINS)
