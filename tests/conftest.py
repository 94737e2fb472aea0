import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("SEMIR_HYPOTHESIS", "ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser):
    parser.addoption("--accept", action="store_true", help="rewrite golden files from the current output")


@pytest.fixture
def accept(request):
    return request.config.getoption("--accept")


def random_inputs(prog, seed=0, dims=None, scale=1.0):
    """Random inputs for a program's signature; symbolic dims from ``dims`` (default 3)."""
    from semir.ir.types import bind_dim

    rng = np.random.default_rng(seed)
    env = dict(dims or {})
    out = {}
    for n in prog.inputs:
        shape = []
        for d in n.type.shape:
            b = bind_dim(d, env)
            if not isinstance(b, int):
                for s, _ in b.terms:
                    env.setdefault(s, 3)
                b = bind_dim(d, env)
            shape.append(b)
        if n.type.dtype.is_int:
            out[n.name] = rng.integers(0, 4, size=shape)
        else:
            out[n.name] = (rng.normal(size=shape) * scale).astype(n.type.dtype.numpy)
    return out
