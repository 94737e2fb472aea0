"""Optimisers over a dict of NumPy parameters, updated in place. Their state goes into checkpoints."""

from __future__ import annotations

import numpy as np


class SGD:
    def __init__(self, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.state: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for name in sorted(grads):
            g = grads[name] + self.weight_decay * params[name]
            if self.momentum:
                v = self.state.setdefault(f"v.{name}", np.zeros_like(params[name]))
                v *= self.momentum
                v += g
                g = v
            params[name] -= (self.lr * g).astype(params[name].dtype)


class Adam:
    """Adam (Kingma & Ba) with bias correction; ``weight_decay`` is decoupled (AdamW) when non-zero."""

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.state: dict[str, np.ndarray] = {"t": np.zeros(())}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        b1, b2 = self.betas
        self.state["t"] = self.state["t"] + 1
        t = float(self.state["t"])
        for name in sorted(grads):
            g = grads[name].astype(np.float64)
            m = self.state.setdefault(f"m.{name}", np.zeros(g.shape))
            v = self.state.setdefault(f"v.{name}", np.zeros(g.shape))
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            update = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + self.eps)
            if self.weight_decay:
                update = update + self.weight_decay * params[name]
            params[name] -= (self.lr * update).astype(params[name].dtype)
