"""Explicit vector code for the max-times contraction, emitted through llvmlite as a Numba intrinsic.

Numba leaves a max/min reduction over n scalar (a select chain carries a dependence LLVM vectorises only
under fast-math, which would change NaN semantics), and with a dozen arrays in one loop LLVM gives up the
run-time alias checks that vectorising needs. So the block of the contraction that matters is written
here as LLVM vector IR: rows m, m+1 of D_Y against rows k..k+3 of B (n contiguous in both, so B needs no
transpose), one 512-bit vector of n at a time, with the lane-wise best hi and lo of the 8 (m, k) pairs kept
in registers. The operations are the scalar kernels' (``ch = p if p > q else q``; ``best = ch if ch > best
else best``): ordered compares and selects, no fast-math flags, so a NaN candidate never wins, as in ⊕.
LLVM lowers each compare-and-select to one ``vmaxps``/``vminps`` (whose semantics are exactly that).

Only the order in which candidates meet changes (per lane, then across lanes), which a max cannot see,
except for the sign of a zero: +0 and -0 compare equal, so either may be reported where both are best.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

RM, RK = 2, 4  # rows of D_Y and of B per block: 16 accumulators of 32 registers, 8 loads per 8 pairs


def lanes(itemsize: int) -> int:
    """Lanes of one 512-bit vector (LLVM splits it where the CPU has only 256-bit registers)."""
    return 64 // itemsize


@intrinsic
def max_times_block(typingctx, Uh, Ul, Yh, Yl, B, ua, yb, bb, K, N, nv):
    """⊕ into ``Uh``/``Ul`` of the candidates over n < ``nv`` (a multiple of the lanes) of the RM×RK block whose
    D_Y rows start at ``yb`` and B rows at ``bb`` (row length ``N``): pair (r, c) into element
    ``ua + r*K + c``. A consumer element without a path must be NaN in ``Yh`` and ``Yl``: its candidates never
    win. Every other consumer value must be finite (0·∞ would be NaN here, where ⊗ has 0·∞ = 0). The lanes
    of each pair are reduced with ``llvm.vector.reduce.fmax``/``fmin``, flagged ``nnan`` (a shuffle tree of
    vmaxps instead of a NaN-aware scalar chain): the lanes never hold NaN, since they start at ∓inf and take
    only candidates that compare greater or smaller."""
    sig = types.void(Uh, Ul, Yh, Yl, B, ua, yb, bb, K, N, nv)
    width = lanes(Yh.dtype.bitwidth // 8)
    align = Yh.dtype.bitwidth // 8

    def codegen(context, builder, signature, args):
        ua_, yb_, bb_, k_, n_, nv_ = args[5:]
        ptr = {i: context.make_array(signature.args[i])(context, builder, args[i]).data for i in range(5)}
        fty = ptr[0].type.pointee
        vty = ir.VectorType(fty, width)
        i64 = ir.IntType(64)
        suffix = f"v{width}{'f32' if fty == ir.FloatType() else 'f64'}"
        reduce = {op: cgutils.get_or_insert_function(builder.module, ir.FunctionType(fty, [vty]),
                                                     f"llvm.vector.reduce.{op}.{suffix}") for op in ("fmax", "fmin")}

        def at(i: int, off):
            return builder.bitcast(builder.gep(ptr[i], [off]), vty.as_pointer())

        def row(start, r: int, n0):  # element n0 of row r of a block starting at ``start``
            return builder.add(start, builder.add(builder.mul(ir.Constant(i64, r), n_), n0))

        def splat(x: float):
            return ir.Constant(vty, [ir.Constant(fty, x)] * width)

        acc_h = [cgutils.alloca_once_value(builder, splat(float("-inf"))) for _ in range(RM * RK)]
        acc_l = [cgutils.alloca_once_value(builder, splat(float("inf"))) for _ in range(RM * RK)]
        with cgutils.for_range_slice(builder, ir.Constant(i64, 0), nv_, ir.Constant(i64, width)) as (n0, _):
            ys = [(builder.load(at(2, row(yb_, r, n0)), align=align), builder.load(at(3, row(yb_, r, n0)), align=align))
                  for r in range(RM)]
            for c in range(RK):
                w = builder.load(at(4, row(bb_, c, n0)), align=align)
                for r, (vh, vl) in enumerate(ys):
                    p = builder.fmul(w, vh)
                    q = builder.fmul(w, vl)
                    gt = builder.fcmp_ordered(">", p, q)
                    ch, cl = builder.select(gt, p, q), builder.select(gt, q, p)
                    h, lo = acc_h[r * RK + c], acc_l[r * RK + c]
                    old = builder.load(h)
                    builder.store(builder.select(builder.fcmp_ordered(">", ch, old), ch, old), h)
                    old = builder.load(lo)
                    builder.store(builder.select(builder.fcmp_ordered("<", cl, old), cl, old), lo)
        for r in range(RM):
            for c in range(RK):
                j = builder.add(ua_, builder.add(builder.mul(ir.Constant(i64, r), k_), ir.Constant(i64, c)))
                for acc, field, op, cmp in ((acc_h, 0, "fmax", ">"), (acc_l, 1, "fmin", "<")):
                    best = builder.call(reduce[op], [builder.load(acc[r * RK + c])], fastmath=("nnan",))
                    where = builder.gep(ptr[field], [j])
                    old = builder.load(where)
                    builder.store(builder.select(builder.fcmp_ordered(cmp, best, old), best, old), where)
        return context.get_dummy_value()

    return sig, codegen
