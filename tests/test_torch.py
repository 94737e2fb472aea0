"""sum_product equals torch autograd on the same model (CONTRACT §5), where torch is installed."""

import sys
from pathlib import Path

import numpy as np
import pytest

import semir

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_numba import torch_encoder  # noqa: E402
from encoder import encoder_text, random_weights  # noqa: E402


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_encoder_gradient_equals_torch_autograd(backend):
    L, H, A, F, S = 2, 32, 4, 64, 5
    prog = semir.parse(encoder_text(L, H, A, F))
    ins = random_weights(L, H, F, S, seed=3)
    got = semir.compile(prog, "sum_product", backend=backend, wrt=["x"])(**ins)["x"]
    ref = torch_encoder(ins, L, H, A, F)
    assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < 1e-4
