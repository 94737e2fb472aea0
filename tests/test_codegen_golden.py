"""Snapshots of generated source (issue 16): what the Numba and CUDA generators write for a few programs, and
one semiring kernel module per backend. A change to the generators shows up here as a reviewable diff;
``pytest --accept`` rewrites the snapshots. The numbers those sources compute are checked elsewhere (against
the reference backend, which is checked against path enumeration)."""

import pytest
from conftest import EXAMPLES, check_golden
from semir.backends.cuda import codegen as cuda_codegen
from semir.backends.cuda import templates as cuda_templates
from semir.backends.numba import codegen as numba_codegen
from semir.backends.numba import templates as numba_templates

import semir
from semir.compiler import resolve_wrt
from semir.passes import optimize

CASES = [("paper_fig1", "max_product"), ("attention", "max_product"), ("transformer_layer", "entropy"),
         ("mlp", "sum_product")]


def _program(model):
    prog = optimize(semir.load(EXAMPLES / f"{model}.semir"))
    return prog, resolve_wrt(prog, None)


@pytest.mark.parametrize("model, semiring", CASES)
def test_numba_generated_source(model, semiring, accept):
    prog, wrt = _program(model)
    fwd, bwd, _ = numba_codegen.generate(prog, wrt, semir.semirings.get(semiring), "SR_MODULE")
    check_golden(f"codegen/{model}.{semiring}.numba.txt", fwd + "\n# ---- backward module ----\n" + bwd, accept)


@pytest.mark.parametrize("model, semiring", CASES[:3])
def test_cuda_generated_source(model, semiring, accept):
    prog, wrt = _program(model)
    src, _ = cuda_codegen.generate(prog, wrt, semir.semirings.get(semiring), "SR_MODULE")
    check_golden(f"codegen/{model}.{semiring}.cuda.txt", src, accept)


def test_semiring_kernel_modules(accept):
    sr = semir.semirings.get("max_abs")
    check_golden("codegen/max_abs.kernels.numba.txt", numba_templates.instantiate(sr), accept)
    check_golden("codegen/max_abs.kernels.cuda.txt", cuda_templates.instantiate(sr, "float32", 16), accept)


def test_generated_source_is_deterministic():
    # the same program twice gives the same text: the snapshots (and the kernel cache's keys) depend on it
    prog, wrt = _program("transformer_layer")
    sr = semir.semirings.get("max_product")
    assert numba_codegen.generate(prog, wrt, sr, "M")[:2] == numba_codegen.generate(prog, wrt, sr, "M")[:2]
