"""``semir.compile``: program + semiring + backend -> a callable kernel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import OptionError, SemirError, suggest, unknown
from .ir.node import Program
from .passes import optimize
from .passes.pipeline import GRANULARITIES
from .semirings import Semiring
from .semirings import get as get_semiring

DEFAULT_BACKEND = "numba"


def _reference(prog, sr, wrt, granularity, **opts):
    from semir.backends.reference import compile_reference

    return compile_reference(prog, sr, wrt, granularity, **opts)


def _has_kernels(sr) -> bool:
    from semir.backends.semiring_kernels import kernels_for

    return kernels_for(sr) is not None


def _numba(prog, sr, wrt, granularity, **opts):
    if not _has_kernels(sr):
        raise OptionError(f"semiring {sr.name!r} has no Numba kernels (it is built from vectorised functions; "
                          "one made with semirings.from_scalar compiles); use backend='reference'")
    from semir.backends.numba import compile_numba

    return compile_numba(prog, sr, wrt, granularity, **opts)


def _cuda(prog, sr, wrt, granularity, **opts):
    if sr.scalar is not None:
        raise OptionError(f"semiring {sr.name!r} is user-defined: it runs on backend 'numba' (its functions "
                          "compiled by Numba) or 'reference', not 'cuda'")
    if not _has_kernels(sr):
        raise OptionError(f"semiring {sr.name!r} has no generated kernels (it is built from vectorised "
                          "functions); use backend='reference'")
    try:
        from semir.backends.cuda import compile_cuda
    except ImportError as e:
        raise OptionError(f"backend 'cuda' needs numba-cuda: pip install 'semir[cuda]' ({e})") from None
    return compile_cuda(prog, sr, wrt, granularity, **opts)


BACKENDS: dict[str, Callable[..., Any]] = {"reference": _reference, "numba": _numba, "cuda": _cuda}


def resolve_wrt(prog: Program, wrt: Any) -> tuple[str, ...]:
    if wrt is None:
        return tuple(n.name for n in prog.inputs if n.type.dtype.is_float)
    if isinstance(wrt, str):
        names: tuple = (wrt,)
    elif isinstance(wrt, list | tuple):
        names = tuple(wrt)
    else:
        raise OptionError(f"wrt: expected a node name or a list of node names, got {type(wrt).__name__}")
    for name in names:
        if not isinstance(name, str):
            raise OptionError(f"wrt: expected node names (str), got {name!r}")
        if name not in prog:
            raise OptionError(f"wrt: unknown node {name!r}{suggest(name, prog.names())}")
        if not prog[name].type.dtype.is_float:
            raise OptionError(f"wrt: node {name!r} holds {prog[name].type}; only floating-point nodes have "
                              "gradient paths")
    return names


SEMANTICS = ("exact", "brunoflow")
POINTERS = ("auto", "eager", "lazy")
LAZY_BACKENDS = ("numba", "reference")


def with_pointers(sr: Semiring, pointers: str, backend: str, semantics: str = "exact") -> Semiring:
    """The semiring a kernel runs for the ``pointers`` policy: ``sr`` itself (pointers kept for every element
    in the sweep) or its values-only variant (pointers recovered per path; see :func:`compile`)."""
    from .semirings.builtin import BUILTIN, LAZY

    if pointers not in POINTERS:
        raise unknown("pointers", pointers, POINTERS)
    eager = sr.eager or sr
    if not eager.has_paths:
        if pointers == "lazy":
            raise OptionError(f"pointers='lazy': semiring {sr.name!r} records no paths")
        return sr
    why = None
    if eager is not BUILTIN.get(eager.name) or eager.name not in LAZY:
        why = (f"semiring {sr.name!r} keeps its pointers (max_abs and topk:K mark which elements have a path by "
               "them); max_product has a values-only sweep")
    elif semantics != "exact":
        why = f"semantics={semantics!r} keeps pointers (they name brunoflow's consumers)"
    elif backend not in LAZY_BACKENDS:
        why = f"backend {backend!r} keeps pointers; lazy recovery runs on {' and '.join(LAZY_BACKENDS)}"
    if pointers == "lazy" and why:
        raise OptionError(f"pointers='lazy': {why}")
    lazy = pointers == "lazy" or (pointers == "auto" and why is None and backend == DEFAULT_BACKEND)
    return LAZY[eager.name] if lazy else eager


def compile(prog: Program, semiring: str | Semiring = "sum_product", backend: str | None = None,
            wrt: Any = None, granularity: str = "op", optimize_ir: bool = True,
            allow_nonfinite: bool = False, semantics: str = "exact", pointers: str = "auto") -> Any:
    """Compile ``prog`` for one semiring on one backend.

    ``backend``: "numba" (default), "reference" (NumPy, the executable specification), "cuda"
    (numba-cuda; ``NUMBA_ENABLE_CUDASIM=1`` runs it in numba's simulator), or another registered
    backend. ``wrt``: input or internal node names whose results the caller wants
    (default: every floating-point input). ``granularity``: ``"op"`` (every
    primitive is one layer of edges) or ``"decomposed"`` (softmax,
    log_softmax, layernorm and gelu lowered to elementary ops first).
    ``semantics``: ``"exact"`` (every scalar edge is an edge) or ``"brunoflow"``, the paper engine's
    choices, for reproducing its numbers: softmax and layernorm composed as brunoflow composes them (gelu
    stays one op), and for max_product brunoflow's combination: per consumer, the op's vector-Jacobian
    product of hi and of lo (sums inside the op, 0 for an element without an edge), then ordered, then the
    max over consumers. Ring semirings are exact on that graph. On numba, pointers name the consumer
    (as brunoflow's do); element paths need the reference backend. Checked against brunoflow itself.
    ``pointers`` (path semirings): ``"eager"`` keeps every element's pointer in the sweep (the state's
    ``*_edge`` fields); ``"lazy"`` (max_product, on numba and reference) sweeps values only and recovers
    pointers when :meth:`Result.path` or :meth:`Result.next_nodes` asks, with the same ⊕ and tie rule, so
    lazy and eager give the same paths: numba reruns the backward steps into each node a path visits with
    the eager kernels (once per node: recovered pointers are kept), the reference rescans the element's
    edges. ``"auto"`` (default): lazy on numba for max_product, eager otherwise.
    Returns a kernel; call it with inputs by name to get a :class:`Result`.
    """
    prog = getattr(prog, "program", prog)  # an imported model (from_torch, import_onnx) carries its program
    if not isinstance(prog, Program):
        raise SemirError(f"compile expects a semir Program, got {type(prog).__name__}")
    sr = get_semiring(semiring)
    if semantics not in SEMANTICS:
        raise unknown("semantics", semantics, SEMANTICS)
    opts: dict[str, Any] = {"allow_nonfinite": allow_nonfinite}
    if semantics == "brunoflow":
        if granularity != "op":
            raise OptionError("semantics='brunoflow' lowers softmax and layernorm as brunoflow does and keeps gelu; "
                              "it takes no granularity option")
        if sr.selective:
            if sr.paths != "signed":
                raise OptionError(f"semantics='brunoflow': brunoflow computes the max and min path products "
                                  f"(max_product) and ring statistics; {sr.name!r} has no brunoflow counterpart")
            opts["semantics"] = semantics  # brunoflow's per-consumer combination of max and min
        # ring semirings: brunoflow's graph, with exact ⊕ (its lumped sums are that ⊕ already)
    backend = backend or (DEFAULT_BACKEND if _has_kernels(sr) else "reference")
    if backend not in BACKENDS:
        raise unknown("backend", backend, BACKENDS)
    if granularity not in GRANULARITIES:
        raise unknown("granularity", granularity, GRANULARITIES)
    sr = with_pointers(sr, pointers, backend, semantics)
    names = resolve_wrt(prog, wrt)
    keep = tuple(prog.resolve(n) for n in names)
    if optimize_ir:
        prog = optimize(prog, keep=keep, granularity=granularity, semantics=semantics)
    elif granularity != "op" or semantics != "exact":
        raise OptionError("granularity other than 'op', and semantics='brunoflow', need the pass pipeline "
                          "(optimize_ir=True)")
    return BACKENDS[backend](prog, sr, names, granularity, **opts)
