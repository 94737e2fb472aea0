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

With pointers (``max_times_block_pointers``, the eager sweep and lazy recovery) each lane also keeps the n
of its best hi and lo as int32 vectors, blended on the same compares, and the lanes are reduced to the
lowest n among those holding the best value: the edge the scalar kernels and the reference pick.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

RM, RK = 2, 4  # rows of D_Y and of B per block: 16 accumulators of 32 registers, 8 loads per 8 pairs
# with pointers each pair also keeps two index vectors: 2×2 pairs, 16 accumulators again
PM, PK = 2, 2
NO_LANE = 2**31 - 1  # the reduced lane index where no lane has a candidate


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

    def codegen(context, builder, signature, args):
        _Block(context, builder, signature, args, n_arrays=5, rows=(RM, RK), pointers=False).emit()
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def max_times_block_pointers(typingctx, Uh, Ul, Uhe, Ule, Yh, Yl, B, ua, yb, bb, K, N, nv, e0):
    """:func:`max_times_block` with pointers, on a PM×PK block: each lane keeps, beside its best hi and lo, the
    n that brought it (an int32 vector). n runs downwards and a lane takes the n of a candidate that is >=
    (<= for lo) its best, so it ends with the lowest n among equal values, and a candidate of -inf (an
    overflowed product) is taken too; a NaN one (no path) never is. The value itself is kept by a strict
    compare (one ``vmaxps``/``vminps``, not a masked move: 10 against 15.5 G edges/s at M = 128), which can
    differ from the n's candidate only in the sign of a zero. The lanes are then
    reduced to the best value and, among the lanes holding it, the lowest n; that candidate's edge
    ``e0 + r*N + n`` is ⊕-merged into element ``ua + r*K + c`` by (value, edge), as every kernel does."""
    sig = types.void(Uh, Ul, Uhe, Ule, Yh, Yl, B, ua, yb, bb, K, N, nv, e0)

    def codegen(context, builder, signature, args):
        _Block(context, builder, signature, args, n_arrays=7, rows=(PM, PK), pointers=True).emit()
        return context.get_dummy_value()

    return sig, codegen


class _Block:
    """The LLVM IR of one register block (see the intrinsics above)."""

    def __init__(self, context, builder, signature, args, n_arrays: int, rows: tuple[int, int], pointers: bool):
        self.b, self.rows, self.pointers = builder, rows, pointers
        self.ptr = [context.make_array(signature.args[i])(context, builder, args[i]).data for i in range(n_arrays)]
        self.ints = args[n_arrays:]
        fty = self.ptr[0].type.pointee
        self.align = 4 if fty == ir.FloatType() else 8
        self.width = lanes(self.align)
        self.fty, self.vty = fty, ir.VectorType(fty, self.width)
        self.ity = ir.VectorType(ir.IntType(32), self.width)
        suffix = f"v{self.width}{'f32' if fty == ir.FloatType() else 'f64'}"
        mod = builder.module
        self.reduce = {op: cgutils.get_or_insert_function(mod, ir.FunctionType(fty, [self.vty]),
                                                          f"llvm.vector.reduce.{op}.{suffix}")
                       for op in ("fmax", "fmin")}
        self.smin = cgutils.get_or_insert_function(mod, ir.FunctionType(ir.IntType(32), [self.ity]),
                                                   f"llvm.vector.reduce.smin.v{self.width}i32")

    def splat(self, x: float):
        return ir.Constant(self.vty, [ir.Constant(self.fty, x)] * self.width)

    def ints32(self, x: int):
        return ir.Constant(self.ity, [ir.Constant(ir.IntType(32), x)] * self.width)

    def broadcast(self, value, vty):
        """``value`` in every lane of a vector of type ``vty`` (insert into lane 0, shuffle)."""
        lane0 = self.b.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
        return self.b.shuffle_vector(lane0, ir.Constant(vty, ir.Undefined),
                                     ir.Constant(ir.VectorType(ir.IntType(32), self.width), [0] * self.width))

    def at(self, i: int, off):
        return self.b.bitcast(self.b.gep(self.ptr[i], [off]), self.vty.as_pointer())

    def emit(self) -> None:
        b, (nr, nc) = self.b, self.rows
        i64, i32 = ir.IntType(64), ir.IntType(32)
        y_h, y_l, w_arr = (4, 5, 6) if self.pointers else (2, 3, 4)
        ua, yb, bb, k, n, nv = self.ints[:6]

        def row(start, r: int, n0):  # element n0 of row r of a block starting at ``start``
            return b.add(start, b.add(b.mul(ir.Constant(i64, r), n), n0))

        pairs = [(r, c) for r in range(nr) for c in range(nc)]
        best = {(r, c, f): cgutils.alloca_once_value(b, self.splat(float("-inf") if f == "h" else float("inf")))
                for r, c in pairs for f in "hl"}
        which = {key: cgutils.alloca_once_value(b, self.ints32(-1)) for key in best} if self.pointers else {}
        iota = ir.Constant(self.ity, [ir.Constant(i32, i) for i in range(self.width)])
        # values only: n upwards with strict compares; with pointers: n downwards with >= / <= (see above)
        steps = b.sdiv(nv, ir.Constant(i64, self.width))
        with cgutils.for_range(b, steps) as loop:
            if self.pointers:
                n0 = b.mul(b.sub(b.sub(steps, loop.index), ir.Constant(i64, 1)), ir.Constant(i64, self.width))
                lane_n = b.add(self.broadcast(b.trunc(n0, i32), self.ity), iota)
            else:
                n0 = b.mul(loop.index, ir.Constant(i64, self.width))
            ys = [(b.load(self.at(y_h, row(yb, r, n0)), align=self.align),
                   b.load(self.at(y_l, row(yb, r, n0)), align=self.align)) for r in range(nr)]
            for c in range(nc):
                w = b.load(self.at(w_arr, row(bb, c, n0)), align=self.align)
                for r, (vh, vl) in enumerate(ys):
                    p, q = b.fmul(w, vh), b.fmul(w, vl)
                    gt = b.fcmp_ordered(">", p, q)
                    for f, cand, cmp in (("h", b.select(gt, p, q), ">"), ("l", b.select(gt, q, p), "<")):
                        slot = best[(r, c, f)]
                        old = b.load(slot)
                        b.store(b.select(b.fcmp_ordered(cmp, cand, old), cand, old), slot)  # vmaxps/vminps
                        if self.pointers:  # the n of a candidate >= (<=) the best: the lowest n among ties
                            idx = which[(r, c, f)]
                            take = b.fcmp_ordered(cmp + "=", cand, old)
                            b.store(b.select(take, lane_n, b.load(idx)), idx)
        for r, c in pairs:
            j = b.add(ua, b.add(b.mul(ir.Constant(i64, r), k), ir.Constant(i64, c)))
            for f, field, op, cmp in (("h", 0, "fmax", ">"), ("l", 1, "fmin", "<")):
                vec = b.load(best[(r, c, f)])
                top = b.call(self.reduce[op], [vec], fastmath=("nnan",))
                where = b.gep(self.ptr[field], [j])
                old = b.load(where)
                if not self.pointers:
                    b.store(b.select(b.fcmp_ordered(cmp, top, old), top, old), where)
                    continue
                # the lowest n among the lanes that hold the best value and have a candidate
                idx = b.load(which[(r, c, f)])
                at_top = b.and_(b.fcmp_ordered("==", vec, self.broadcast(top, self.vty)),
                                b.icmp_signed(">=", idx, self.ints32(0)))
                first = b.call(self.smin, [b.select(at_top, idx, self.ints32(NO_LANE))])
                has = b.icmp_signed("!=", first, ir.Constant(i32, NO_LANE))
                e = b.add(self.ints[6], b.add(b.mul(ir.Constant(i64, r), n), b.sext(first, i64)))
                ewhere = b.gep(self.ptr[field + 2], [j])
                eold = b.load(ewhere)
                win = b.or_(b.fcmp_ordered(cmp, top, old),
                            b.and_(b.fcmp_ordered("==", top, old), b.icmp_signed("<", e, eold)))
                win = b.and_(has, win)
                b.store(b.select(win, top, old), where)
                b.store(b.select(win, e, eold), ewhere)
