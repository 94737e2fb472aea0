"""Gradient attributions with the compiled sum_product kernels, and a finite-difference gradient check."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, OptionError


def _perturbable(kernel, inputs: dict[str, Any], name: str, method: str) -> None:
    """These methods move an input and rerun: ``name`` must be a float input of the program, the kernel a
    gradient (sum_product) kernel."""
    if kernel.semiring.name != "sum_product":
        raise OptionError(f"{method} needs a sum_product kernel (a gradient), got {kernel.semiring.name!r}")
    prog = kernel.program
    params = [n.name for n in prog.inputs if n.type.dtype.is_float]
    if name not in params:
        what = "an internal node" if name in prog else "not a node of the program"
        raise OptionError(f"{method}: {name!r} is {what}; it perturbs an input and reruns, so give one of the "
                          f"float inputs: {', '.join(params)} (saliency reads internal nodes)")
    if name not in kernel.wrt:
        raise OptionError(f"{method}: compile the kernel with {name!r} in wrt")
    if name not in inputs:
        raise InputError(f"{method}: inputs has no {name!r}")


def saliency(kernel, inputs: dict[str, Any], name: str, times_input: bool = False) -> np.ndarray:
    """The gradient of the output with respect to input ``name`` (optionally gradient × input)."""
    g = kernel(**inputs)[name]
    return g * np.asarray(inputs[name]) if times_input else g


def smoothgrad(kernel, inputs: dict[str, Any], name: str, samples: int = 32, sigma: float = 0.1,
               seed: int = 0) -> np.ndarray:
    """Mean gradient over inputs with Gaussian noise of std ``sigma`` × (max - min) of the input."""
    _perturbable(kernel, inputs, name, "smoothgrad")
    rng = np.random.default_rng(seed)
    x = np.asarray(inputs[name], dtype=np.float64)
    scale = sigma * float(x.max() - x.min() or 1.0)
    total = np.zeros_like(x)
    for _ in range(samples):
        noisy = (x + rng.normal(scale=scale, size=x.shape)).astype(np.asarray(inputs[name]).dtype)
        total += kernel(**{**inputs, name: noisy})[name]
    return total / samples


def integrated_gradients(kernel, inputs: dict[str, Any], name: str, baseline: Any = None,
                         steps: int = 32) -> tuple[np.ndarray, float]:
    """(x - x0) · mean gradient on the straight path from ``baseline`` (zeros) to x (trapezoid rule).

    Also returns the completeness gap: sum of attributions minus (f(x) - f(x0)).
    """
    _perturbable(kernel, inputs, name, "integrated_gradients")
    x = np.asarray(inputs[name], dtype=np.float64)
    x0 = np.zeros_like(x) if baseline is None else np.asarray(baseline, dtype=np.float64)
    dtype = np.asarray(inputs[name]).dtype
    alphas = np.linspace(0.0, 1.0, steps + 1)
    grads = [kernel(**{**inputs, name: (x0 + a * (x - x0)).astype(dtype)})[name] for a in alphas]
    mean = (np.sum(grads, axis=0) - 0.5 * (grads[0] + grads[-1])) / steps
    attr = (x - x0) * mean
    f = kernel.forward(**inputs)
    f0 = kernel.forward(**{**inputs, name: x0.astype(dtype)})
    return attr, float(np.sum(attr) - (np.sum(f) - np.sum(f0)))


def gradcheck(kernel, inputs: dict[str, Any], name: str, eps: float = 1e-6, max_elements: int = 64,
              seed: int = 0) -> float:
    """Largest relative difference between the sum_product gradient and central differences (float64 inputs)."""
    _perturbable(kernel, inputs, name, "gradcheck")
    x = np.asarray(inputs[name], dtype=np.float64)
    g = kernel(**inputs)[name]
    rng = np.random.default_rng(seed)
    picks = rng.choice(x.size, size=min(max_elements, x.size), replace=False)
    worst = 0.0
    for f in picks:
        idx = np.unravel_index(f, x.shape) if x.shape else ()
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (np.sum(kernel.forward(**{**inputs, name: plus})) - np.sum(kernel.forward(**{**inputs, name: minus})))
        fd /= 2 * eps
        worst = max(worst, abs(fd - float(np.asarray(g)[idx])) / max(abs(fd), abs(float(np.asarray(g)[idx])), 1e-8))
    return worst
