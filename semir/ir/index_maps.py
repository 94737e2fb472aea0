"""Index maps of the ops, as flat element indices: which operand element an output element reads under
broadcasting, which output element a reduction sends an input element to, and the rows of a row op. They
are op semantics, shared by the reference backend's edges and the generated kernels' plans."""

from __future__ import annotations

import numpy as np


def broadcast_index(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """For each output element, the flat index of the operand element it reads under broadcasting."""
    n = int(np.prod(shape, dtype=np.int64))
    return np.broadcast_to(np.arange(n).reshape(shape), out_shape).ravel()


def reduce_index(x: np.ndarray, axes) -> np.ndarray:
    """For each input element, the flat index of the output element it is reduced into."""
    kshape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    n = int(np.prod(kshape, dtype=np.int64))
    return np.broadcast_to(np.arange(n).reshape(kshape), x.shape).ravel()


def row_index(x: np.ndarray, axes) -> np.ndarray:
    """Flat indices of x arranged as [groups, group size], the group axes last."""
    keep = [i for i in range(x.ndim) if i not in axes]
    idx = np.arange(x.size).reshape(x.shape).transpose(keep + list(axes))
    size = int(np.prod([x.shape[i] for i in axes], dtype=np.int64))
    return idx.reshape(-1, size)
