"""The registered semirings (CONTRACT §2 table), each a :class:`Semiring` value: backend-neutral data. Their
Numba and CUDA kernels live in ``backends/semiring_kernels.py``."""

from __future__ import annotations

import numpy as np

from .base import EDGE_END, EDGE_NONE, Field, Semiring, State

_I64 = "int64"


def _log_abs(w: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.abs(w))


def _xlogx(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).astype(p.dtype)


# -- sum-product: the gradient ---------------------------------------------


sum_product = Semiring(
    name="sum_product",
    nonfinite="ieee",
    fields=(Field("v", 0.0, 1.0),),
    plus=lambda a, b: {"v": a["v"] + b["v"]},
    times=lambda a, b: {"v": a["v"] * b["v"]},
    lift=lambda w: {"v": np.asarray(w)},
    extend_fn=lambda s, w, e: {"v": s["v"] * w},
    finalize=lambda s: s["v"],
    kind="ring",
    description="the gradient (Σ over paths of the product of edge weights)",
    # Σ_i w_ij g_i over a dense row has a closed form for these Jacobians: O(n) per row instead of O(n²).
)


# -- contractions of ring-embeddable semirings as GEMMs ----------------------
# D_A[m, k] ⊕= ⊕_n lift(B[k, n]) ⊗ D_Y[m, n] (slot "a") or D_B[k, n] ⊕= ⊕_m lift(A[m, k]) ⊗ D_Y[m, n]
# (slot "b"). Log-domain carriers are shifted by the maximum along the contracted axis, so the linear
# sums lie in (0, |w|·N]; where a sum still underflows while paths exist, the element is redone exactly.


# -- max-product with signed hi/lo (paper Eq. 5, App. A) -------------------

def _better(new_v, new_e, old_v, old_e, larger: bool):
    strictly = new_v > old_v if larger else new_v < old_v
    return strictly | ((new_v == old_v) & (new_e < old_e))


def _mp_plus(a: State, b: State) -> State:
    hi = _better(b["hi"], b["hi_edge"], a["hi"], a["hi_edge"], True)
    lo = _better(b["lo"], b["lo_edge"], a["lo"], a["lo_edge"], False)
    return {"hi": np.where(hi, b["hi"], a["hi"]), "hi_edge": np.where(hi, b["hi_edge"], a["hi_edge"]),
            "lo": np.where(lo, b["lo"], a["lo"]), "lo_edge": np.where(lo, b["lo_edge"], a["lo_edge"])}


def _mp_zero_where(invalid: np.ndarray, s: State) -> State:
    return {"hi": np.where(invalid, -np.inf, s["hi"]).astype(s["hi"].dtype),
            "lo": np.where(invalid, np.inf, s["lo"]).astype(s["lo"].dtype),
            "hi_edge": np.where(invalid, EDGE_NONE, s["hi_edge"]),
            "lo_edge": np.where(invalid, EDGE_NONE, s["lo_edge"])}


def _mp_none(s: State) -> np.ndarray:
    # "no path" is 0̄ = (−∞, +∞), the one state with hi < lo: a path's hi >= lo, and a path whose product
    # overflowed is (±∞, ±∞), so hi = −∞ alone does not mean "no path"
    return s["hi"] < s["lo"]


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # a·b with 0·∞ = 0: a zero edge weight makes a path's product 0 whatever else is on it, an overflowed
    # (infinite) partial product or an infinite derivative included, as the product of the reals does
    with np.errstate(invalid="ignore", over="ignore"):
        p = a * b
    return np.where((a == 0) | (b == 0), np.zeros_like(p), p)


def _mp_times(a: State, b: State) -> State:
    corners = np.stack([_mul(a["hi"], b["hi"]), _mul(a["hi"], b["lo"]), _mul(a["lo"], b["hi"]),
                        _mul(a["lo"], b["lo"])])
    edge = np.maximum(a["hi_edge"], b["hi_edge"])
    s = {"hi": corners.max(axis=0), "lo": corners.min(axis=0), "hi_edge": edge, "lo_edge": edge}
    return _mp_zero_where(_mp_none(a) | _mp_none(b), s)


def _mp_extend(s: State, w: np.ndarray, edge: np.ndarray) -> State:
    pos = w >= 0
    hi = np.where(pos, _mul(w, s["hi"]), _mul(w, s["lo"]))
    lo = np.where(pos, _mul(w, s["lo"]), _mul(w, s["hi"]))
    edge = np.broadcast_to(edge, hi.shape)
    return _mp_zero_where(_mp_none(s), {"hi": hi.astype(s["hi"].dtype), "lo": lo.astype(s["lo"].dtype),
                                        "hi_edge": edge, "lo_edge": edge})


max_product = Semiring(
    name="max_product",
    fields=(Field("hi", -np.inf, 1.0), Field("lo", np.inf, 1.0),
            Field("hi_edge", EDGE_NONE, EDGE_END, _I64, True), Field("lo_edge", EDGE_NONE, EDGE_END, _I64, True)),
    plus=_mp_plus,
    times=_mp_times,
    lift=lambda w: {"hi": np.asarray(w), "lo": np.asarray(w), "hi_edge": np.full(np.shape(w), EDGE_END),
                    "lo_edge": np.full(np.shape(w), EDGE_END)},
    extend_fn=_mp_extend,
    finalize=lambda s: s["hi"],
    kind="selective",
    paths="signed",
    components=("hi", "lo"),
    lumped=(("hi", "hi_edge"), ("lo", "lo_edge")),
    description="the largest signed path product (hi) and the smallest (lo), with pointers",
)


# Values only: the same hi and lo (⊕ keeps the larger hi and the smaller lo, whichever edge brought them), no
# pointers. 0̄ is hi = -inf, so "no path" stays distinct from a path of product 0 without a pointer field.
def _mpv_plus(a: State, b: State) -> State:
    return {"hi": np.where(b["hi"] > a["hi"], b["hi"], a["hi"]), "lo": np.where(b["lo"] < a["lo"], b["lo"], a["lo"])}


def _mpv_with_edges(s: State) -> State:
    none = _mp_none(s)
    return {**s, "hi_edge": np.where(none, EDGE_NONE, EDGE_END), "lo_edge": np.where(none, EDGE_NONE, EDGE_END)}


def _values(s: State) -> State:
    return {"hi": s["hi"], "lo": s["lo"]}


max_product_values = Semiring(
    name="max_product",
    fields=(Field("hi", -np.inf, 1.0), Field("lo", np.inf, 1.0)),
    plus=_mpv_plus,
    times=lambda a, b: _values(_mp_times(_mpv_with_edges(a), _mpv_with_edges(b))),
    lift=lambda w: {"hi": np.asarray(w), "lo": np.asarray(w)},
    extend_fn=lambda s, w, e: _values(_mp_extend(_mpv_with_edges(s), w, e)),
    finalize=lambda s: s["hi"],
    kind="selective",
    paths="signed",
    components=("hi", "lo"),
    eager=max_product,
    description="the largest signed path product (hi) and the smallest (lo); pointers recovered per path",
)

# The values-only variant of each semiring that has one (max_abs and topk mark "no path" by their pointers)
LAZY = {max_product.name: max_product_values}


# -- max-|·|: gradient tracing ---------------------------------------------

def _ma_plus(a: State, b: State) -> State:
    take_b = _better(np.abs(b["v"]), b["edge"], np.abs(a["v"]), a["edge"], True)
    return {"v": np.where(take_b, b["v"], a["v"]), "edge": np.where(take_b, b["edge"], a["edge"])}


def _ma_extend(s: State, w: np.ndarray, edge: np.ndarray) -> State:
    valid = s["edge"] != EDGE_NONE
    return {"v": np.where(valid, s["v"] * w, 0).astype(s["v"].dtype),
            "edge": np.where(valid, np.broadcast_to(edge, s["v"].shape), EDGE_NONE)}


max_abs = Semiring(
    name="max_abs",
    fields=(Field("v", 0.0, 1.0), Field("edge", EDGE_NONE, EDGE_END, _I64, True)),
    plus=_ma_plus,
    times=lambda a, b: {"v": a["v"] * b["v"], "edge": np.maximum(a["edge"], b["edge"])},
    lift=lambda w: {"v": np.asarray(w), "edge": np.full(np.shape(w), EDGE_END)},
    extend_fn=_ma_extend,
    finalize=lambda s: s["v"],
    kind="selective",
    paths="single",
    components=("v",),
    description="the signed product of the path of largest magnitude",
)


# -- entropy of the path distribution p ∝ |g(p)| (paper Eq. 6-7) -----------
# Carried as (log Z, H). Under ⊗ by an edge, log Z shifts by log|w| and H is
# unchanged; ⊕ is the mixture rule H = p1 H1 + p2 H2 + H(p1, p2) with
# p_i = Z_i / Z. Nothing over- or underflows and nothing cancels, so deep
# graphs keep float32 accuracy.

def _mixture_weights(la: np.ndarray, lb: np.ndarray):
    """(p_a, p_b, log(Z_a + Z_b)) from log Z_a, log Z_b, via their difference.

    Forming p_a = exp(la - l) directly loses the absolute precision of a large
    |log Z| (float32: ~1e-4 at 3000) and p_a + p_b drifts from 1, rescaling H at
    every ⊕; the sigmoid of d = la - lb keeps p_a + p_b = 1 by construction.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        d = la - lb
        d = np.where(np.isnan(d), 0, d)  # both -inf (both empty): any split, the weights multiply 0̄
        e = np.exp(-np.abs(d))
        big = 1.0 / (1.0 + e)
        small = e / (1.0 + e)
        pa = np.where(d >= 0, big, small).astype(la.dtype)
        pb = np.where(d >= 0, small, big).astype(la.dtype)
        l = (np.maximum(la, lb) + np.log1p(e)).astype(la.dtype)
    return pa, pb, l


def _ent_plus(a: State, b: State) -> State:
    pa, pb, l = _mixture_weights(a["logz"], b["logz"])
    h = pa * a["h"] + pb * b["h"] - _xlogx(pa) - _xlogx(pb)
    return {"logz": l, "h": np.where(l == -np.inf, 0, h).astype(a["h"].dtype)}


def _ent_times(a: State, b: State) -> State:
    l = a["logz"] + b["logz"]
    return {"logz": l, "h": np.where(l == -np.inf, 0, a["h"] + b["h"]).astype(a["h"].dtype)}


def _ent_extend(s: State, w: np.ndarray, edge: np.ndarray) -> State:
    l = (s["logz"] + _log_abs(w)).astype(s["logz"].dtype)
    return {"logz": l, "h": np.where(l == -np.inf, 0, s["h"]).astype(s["h"].dtype)}


def _ent_finalize(s: State) -> np.ndarray:
    # no path (Z = 0) has no distribution: NaN, never the 0.0 of a single path
    return np.where(s["logz"] == -np.inf, np.nan, s["h"]).astype(s["h"].dtype)


entropy = Semiring(
    name="entropy",
    fields=(Field("logz", -np.inf, 0.0), Field("h", 0.0, 0.0)),
    plus=_ent_plus,
    times=_ent_times,
    lift=lambda w: {"logz": _log_abs(np.asarray(w)), "h": np.zeros(np.shape(w))},
    extend_fn=_ent_extend,
    finalize=_ent_finalize,
    kind="ring",
    description="entropy (nats) of the distribution over paths with p ∝ |product of edge weights|",
)


# -- log: log Z = log Σ_p |g(p)| -------------------------------------------

log = Semiring(
    name="log",
    fields=(Field("logz", -np.inf, 0.0),),
    plus=lambda a, b: {"logz": np.logaddexp(a["logz"], b["logz"])},
    times=lambda a, b: {"logz": a["logz"] + b["logz"]},
    lift=lambda w: {"logz": _log_abs(np.asarray(w))},
    extend_fn=lambda s, w, e: {"logz": (s["logz"] + _log_abs(w)).astype(s["logz"].dtype)},
    finalize=lambda s: s["logz"],
    kind="ring",
    description="log of the sum over paths of |product of edge weights|",
)


# -- counting: paths whose edges are all non-zero --------------------------
# The count is exact in float64 up to 2**53; past float64's range it becomes
# inf, and the field ``log_count`` (always carried) still holds its log.

def _counting(f):
    with np.errstate(over="ignore"):  # the count may overflow to inf; log_count carries on
        return f()


counting = Semiring(
    name="counting",
    nonfinite="structural",
    fields=(Field("count", 0.0, 1.0, "float64"), Field("log_count", -np.inf, 0.0, "float64")),
    plus=lambda a, b: _counting(lambda: {"count": a["count"] + b["count"],
                                         "log_count": np.logaddexp(a["log_count"], b["log_count"])}),
    times=lambda a, b: _counting(lambda: {"count": a["count"] * b["count"],
                                          "log_count": a["log_count"] + b["log_count"]}),
    lift=lambda w: {"count": (np.asarray(w) != 0).astype(np.float64),
                    "log_count": np.where(np.asarray(w) != 0, 0.0, -np.inf)},
    extend_fn=lambda s, w, e: {"count": np.where(w != 0, s["count"], 0.0),
                               "log_count": np.where(w != 0, s["log_count"], -np.inf)},
    finalize=lambda s: s["count"],
    kind="ring",
    description="the number of paths whose edges are all non-zero (state 'log_count' holds its log)",
)


boolean = Semiring(
    name="boolean",
    nonfinite="structural",
    fields=(Field("b", False, True, "bool"),),
    plus=lambda a, b: {"b": a["b"] | b["b"]},
    times=lambda a, b: {"b": a["b"] & b["b"]},
    lift=lambda w: {"b": np.asarray(w) != 0},
    extend_fn=lambda s, w, e: {"b": s["b"] & (w != 0)},
    finalize=lambda s: s["b"],
    kind="ring",
    description="whether a path with all edges non-zero exists",
)


# -- top-k paths by magnitude ------------------------------------------------

def _topk_select(v, edge, rank, k: int) -> State:
    order = np.lexsort((rank, edge, -np.abs(v)), axis=-1)[..., :k]
    return {"v": np.take_along_axis(v, order, -1), "edge": np.take_along_axis(edge, order, -1),
            "rank": np.take_along_axis(rank, order, -1)}


def topk(k: int) -> Semiring:
    if k < 1:
        raise ValueError("topk needs K >= 1")

    def plus(a: State, b: State) -> State:
        return _topk_select(*(np.concatenate([a[f], b[f]], axis=-1) for f in ("v", "edge", "rank")), k)

    def times(a: State, b: State) -> State:
        v = (a["v"][..., :, None] * b["v"][..., None, :])
        valid = (a["edge"][..., :, None] != EDGE_NONE) & (b["edge"][..., None, :] != EDGE_NONE)
        shape = v.shape[:-2] + (k * k,)
        edge = np.where(valid, 0, EDGE_NONE).reshape(shape)
        return _topk_select(np.where(valid, v, 0).reshape(shape).astype(a["v"].dtype), edge,
                            np.zeros(shape, np.int64), k)

    def lift(w) -> State:
        w = np.asarray(w)
        v = np.zeros(w.shape + (k,), w.dtype)
        v[..., 0] = w
        edge = np.full(w.shape + (k,), EDGE_NONE)
        edge[..., 0] = EDGE_END
        return {"v": v, "edge": edge, "rank": np.zeros(w.shape + (k,), np.int64)}

    def extend(s: State, w: np.ndarray, edge: np.ndarray) -> State:
        valid = s["edge"] != EDGE_NONE
        w = np.asarray(w)[..., None]
        return {"v": np.where(valid, s["v"] * w, 0).astype(s["v"].dtype),
                "edge": np.where(valid, np.asarray(edge)[..., None], EDGE_NONE),
                "rank": np.where(valid, np.arange(k), 0)}

    return Semiring(
        name=f"topk:{k}",
        fields=(Field("v", 0.0, 1.0), Field("edge", EDGE_NONE, EDGE_END, _I64, True), Field("rank", 0, 0, _I64)),
        plus=plus, times=times, lift=lift, extend_fn=extend, finalize=lambda s: s["v"],
        kind="selective", k=k, paths="ranked", components=tuple(str(i) for i in range(k)),
        description=f"the {k} path products of largest magnitude, signed, sorted by magnitude (missing: 0)",
    )


BUILTIN = {s.name: s for s in (sum_product, max_product, max_abs, entropy, log, counting, boolean)}
