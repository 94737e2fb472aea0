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

With pointers (the eager sweep and lazy recovery), for rows shorter than CHUNKED_FROM vectors
(``max_times_block_pointers``) each lane also keeps the n of its best hi and lo as int32 vectors, blended on
the same compares, and the lanes are reduced to the lowest n among those holding the best value: the edge
the scalar kernels and the reference pick. For longer rows (``max_times_block_chunks``) a lane keeps only the
chunk of CHUNK vectors its best came from, and the winning chunk is computed again for the lowest n: fewer
operations per edge, more per element.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

RM, RK = 2, 4  # rows of D_Y and of B per block: 16 accumulators of 32 registers, 8 loads per 8 pairs
# with pointers each pair also keeps two index vectors: 2×2 pairs, 16 accumulators again
PM, PK = 2, 2
CHUNKED_FROM = 40  # vectors of n from which the chunked kernel is the faster (measured: 24 slower, 48 faster)
CHUNK = 4  # vectors of n per chunk with pointers: the lanes record the chunk of their best, not the n
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
    """:func:`max_times_block` with pointers, on a PM×PK block, for short rows (see ``_Block.emit_lanes``):
    each lane keeps, beside its best hi and lo, the n that brought it (an int32 vector). n runs downwards and a
    lane takes the n of a candidate that is >= (<= for lo) its best, so it ends with the lowest n among equal
    values, and a candidate of -inf (an overflowed product) is taken too; a NaN one (no path) never is. The
    lanes are then reduced to the best value and, among the lanes holding it, the lowest n; that candidate's
    edge ``e0 + r*N + n`` is ⊕-merged into element ``ua + r*K + c`` by (value, edge), as every kernel does."""
    sig = types.void(Uh, Ul, Uhe, Ule, Yh, Yl, B, ua, yb, bb, K, N, nv, e0)

    def codegen(context, builder, signature, args):
        _Block(context, builder, signature, args, n_arrays=7, rows=(PM, PK), pointers="lanes").emit()
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def max_times_block_chunks(typingctx, Uh, Ul, Uhe, Ule, Yh, Yl, B, ua, yb, bb, K, N, nv, e0, dense):
    """:func:`max_times_block_pointers` for long rows (``nv`` of CHUNKED_FROM vectors or more; see
    ``_Block.emit_chunks``): the lanes keep the chunk of CHUNK vectors of n that brought their best, not the
    n, and the winning chunk alone is scanned again for the lowest n whose candidate equals the best. Same
    results, fewer operations per edge, more per element. ``dense`` says no consumer is NaN, which saves a
    compare at the start of each chunk."""
    sig = types.void(Uh, Ul, Uhe, Ule, Yh, Yl, B, ua, yb, bb, K, N, nv, e0, dense)

    def codegen(context, builder, signature, args):
        _Block(context, builder, signature, args, n_arrays=7, rows=(PM, PK), pointers="chunks").emit()
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

    def candidates(self, w, vh, vl):
        """The candidate hi and lo of one weight vector against a consumer's (hi, lo): ``vmaxps``/``vminps``."""
        b = self.b
        p, q = b.fmul(w, vh), b.fmul(w, vl)
        gt = b.fcmp_ordered(">", p, q)
        return b.select(gt, p, q), b.select(gt, q, p)

    def better(self, cmp: str, cand, old):
        """The strict ⊕ of one component (``vmaxps``/``vminps``): a NaN candidate never wins."""
        return self.b.select(self.b.fcmp_ordered(cmp, cand, old), cand, old)

    def emit(self) -> None:
        if self.pointers:
            {"lanes": self.emit_lanes, "chunks": self.emit_chunks}[self.pointers]()
            return
        b, (nr, nc) = self.b, self.rows
        i64 = ir.IntType(64)
        ua, yb, bb, k, n, nv = self.ints[:6]
        pairs = [(r, c) for r in range(nr) for c in range(nc)]
        best = {(r, c, f): cgutils.alloca_once_value(b, self.splat(float("-inf") if f == "h" else float("inf")))
                for r, c in pairs for f in "hl"}
        with cgutils.for_range(b, b.sdiv(nv, ir.Constant(i64, self.width))) as loop:
            n0 = b.mul(loop.index, ir.Constant(i64, self.width))
            ys = [self.consumer(yb, r, n0) for r in range(nr)]
            for c in range(nc):
                w = self.weight(bb, c, n0)
                for r, (vh, vl) in enumerate(ys):
                    for f, cand, cmp in zip("hl", self.candidates(w, vh, vl), "><"):
                        b.store(self.better(cmp, cand, b.load(best[(r, c, f)])), best[(r, c, f)])
        for r, c in pairs:
            j = b.add(ua, b.add(b.mul(ir.Constant(i64, r), k), ir.Constant(i64, c)))
            for f, field, op, cmp in (("h", 0, "fmax", ">"), ("l", 1, "fmin", "<")):
                top = b.call(self.reduce[op], [b.load(best[(r, c, f)])], fastmath=("nnan",))
                where = b.gep(self.ptr[field], [j])
                b.store(self.better(cmp, top, b.load(where)), where)

    def row(self, start, r: int, n0):
        """Element ``n0`` of row ``r`` (rows of length N) of a block starting at ``start``."""
        b, i64 = self.b, ir.IntType(64)
        return b.add(start, b.add(b.mul(ir.Constant(i64, r), self.ints[4]), n0))

    def consumer(self, yb, r: int, n0):
        y_h, y_l = (4, 5) if self.pointers else (2, 3)
        return tuple(self.b.load(self.at(i, self.row(yb, r, n0)), align=self.align) for i in (y_h, y_l))

    def weight(self, bb, c: int, n0):
        return self.b.load(self.at(6 if self.pointers else 4, self.row(bb, c, n0)), align=self.align)

    def pointer_slots(self):
        """(the block's pairs, each component's empty value, the lanes' best of each (pair, component) and the
        int32 lanes saying where it came from, -1 for none)."""
        pairs = [(r, c) for r in range(self.rows[0]) for c in range(self.rows[1])]
        init = {"h": self.splat(float("-inf")), "l": self.splat(float("inf"))}
        best = {(r, c, f): cgutils.alloca_once_value(self.b, init[f]) for r, c in pairs for f in "hl"}
        which = {key: cgutils.alloca_once_value(self.b, self.ints32(-1)) for key in best}
        return pairs, init, best, which

    def emit_lanes(self) -> None:
        """Per vector of n and pair: the candidates, then per component a strict max (min), a >= (<=) compare
        and a blend of the lanes' n: 10 operations."""
        b, (nr, nc) = self.b, self.rows
        i64, i32 = ir.IntType(64), ir.IntType(32)
        yb, bb, nv = self.ints[1], self.ints[2], self.ints[5]
        pairs, init, best, which = self.pointer_slots()
        iota = ir.Constant(self.ity, [ir.Constant(i32, i) for i in range(self.width)])
        steps = b.sdiv(nv, ir.Constant(i64, self.width))
        with cgutils.for_range(b, steps) as loop:
            n0 = b.mul(b.sub(b.sub(steps, loop.index), ir.Constant(i64, 1)), ir.Constant(i64, self.width))
            lane_n = b.add(self.broadcast(b.trunc(n0, i32), self.ity), iota)
            ys = [self.consumer(yb, r, n0) for r in range(nr)]
            for c in range(nc):
                w = self.weight(bb, c, n0)
                for r, (vh, vl) in enumerate(ys):
                    for f, cand, cmp in zip("hl", self.candidates(w, vh, vl), "><"):
                        old = b.load(best[(r, c, f)])
                        b.store(self.better(cmp, cand, old), best[(r, c, f)])
                        take = b.fcmp_ordered(cmp + "=", cand, old)
                        b.store(b.select(take, lane_n, b.load(which[(r, c, f)])), which[(r, c, f)])
        for r, c in pairs:
            for f in "hl":
                top, first = self.lowest_at_top(f, b.load(best[(r, c, f)]), b.load(which[(r, c, f)]))
                self.merge(r, c, f, top, b.icmp_signed("!=", first, ir.Constant(i32, NO_LANE)), b.sext(first, i64))

    def lowest_at_top(self, f: str, vec, idx):
        """(the lanes' best value, the lowest ``idx`` among the lanes holding it that have a candidate, or
        NO_LANE)."""
        b = self.b
        top = b.call(self.reduce["fmax" if f == "h" else "fmin"], [vec], fastmath=("nnan",))
        at_top = b.and_(b.fcmp_ordered("==", vec, self.broadcast(top, self.vty)),
                        b.icmp_signed(">=", idx, self.ints32(0)))
        return top, b.call(self.smin, [b.select(at_top, idx, self.ints32(NO_LANE))])

    def merge(self, r: int, c: int, f: str, top, has, at):
        """⊕-merge candidate ``top`` of edge ``e0 + r*N + at`` (where ``has``) into element ``ua + r*K + c`` by
        (value, edge)."""
        b, i64 = self.b, ir.IntType(64)
        ua, k, n, e0 = self.ints[0], self.ints[3], self.ints[4], self.ints[6]
        dst = b.add(ua, b.add(b.mul(ir.Constant(i64, r), k), ir.Constant(i64, c)))
        field = "hl".index(f)
        e = b.add(e0, b.add(b.mul(ir.Constant(i64, r), n), at))
        where, ewhere = b.gep(self.ptr[field], [dst]), b.gep(self.ptr[field + 2], [dst])
        old, eold = b.load(where), b.load(ewhere)
        cmp = ">" if f == "h" else "<"
        win = b.or_(b.fcmp_ordered(cmp, top, old), b.and_(b.fcmp_ordered("==", top, old), b.icmp_signed("<", e, eold)))
        win = b.and_(has, win)
        b.store(b.select(win, top, old), where)
        b.store(b.select(win, e, eold), ewhere)

    def emit_chunks(self) -> None:
        """n in chunks of CHUNK vectors, from the top chunk down. Within a chunk each lane keeps its best hi and
        lo by value only; at the chunk's end a lane takes the chunk's best (the value by a strict compare) and
        records the chunk if that best is >= (<= for lo) its best so far, so each lane ends with the lowest
        chunk holding its best. The lanes are reduced to the best value, then to the lowest chunk among the
        lanes holding it, and that chunk alone is scanned again, lowest n first, for the first candidate equal
        to the best: the lowest n among all equal candidates. A best of -inf (+inf for lo) cannot tell a
        candidate from an empty lane, so the whole row is scanned for it instead (an overflowed product: rare).
        Per vector of n and pair this is 6 operations and 4/CHUNK at the chunk's end, against 10 when every
        step blends the n."""
        b, (nr, nc) = self.b, self.rows
        i64, i32 = ir.IntType(64), ir.IntType(32)
        yb, bb, nv = self.ints[1], self.ints[2], self.ints[5]
        pairs, init, best, which = self.pointer_slots()
        chunk = {key: cgutils.alloca_once_value(b, init[key[2]]) for key in best}
        width = ir.Constant(i64, self.width)
        steps = b.sdiv(nv, width)
        full = b.sdiv(steps, ir.Constant(i64, CHUNK))

        def step(s, first: bool, dense: bool = False):  # the candidates of vector s into the chunk's bests: a
            # NaN one (no path) never enters, not even as the chunk's first, where it would block every later
            # one; where no consumer is NaN the first is taken as it is
            n0 = b.mul(s, width)
            ys = [self.consumer(yb, r, n0) for r in range(nr)]
            for c in range(nc):
                w = self.weight(bb, c, n0)
                for r, (vh, vl) in enumerate(ys):
                    for f, cand, cmp in zip("hl", self.candidates(w, vh, vl), "><"):
                        slot = chunk[(r, c, f)]
                        if first:
                            b.store(cand if dense else self.better(cmp, cand, init[f]), slot)
                        else:
                            b.store(self.better(cmp, cand, b.load(slot)), slot)

        # the chunk's number as a vector counted down in a register: a broadcast from a general register
        # per chunk and pair cost a tenth of the speed
        chunk_no = cgutils.alloca_once_value(b, self.broadcast(b.trunc(full, i32), self.ity))

        def close():  # the chunk's bests into the lanes' bests, and its number where a lane's is >= (<=) its own
            jv = b.load(chunk_no)
            b.store(b.sub(jv, self.ints32(1)), chunk_no)
            for key in best:
                cmp = ">" if key[2] == "h" else "<"
                cand, old = b.load(chunk[key]), b.load(best[key])
                b.store(b.select(b.fcmp_ordered(cmp + "=", cand, old), jv, b.load(which[key])), which[key])
                b.store(self.better(cmp, cand, old), best[key])

        # the top chunk, partial where CHUNK does not divide the steps: its lanes start empty
        for key, slot in chunk.items():
            b.store(init[key[2]], slot)
        with cgutils.for_range(b, b.sub(steps, b.mul(full, ir.Constant(i64, CHUNK)))) as loop:
            step(b.add(b.mul(full, ir.Constant(i64, CHUNK)), loop.index), first=False)
        close()
        def chunks(dense: bool):  # the full chunks, from the top down
            with cgutils.for_range(b, full) as loop:
                j = b.sub(b.sub(full, loop.index), ir.Constant(i64, 1))
                for i in range(CHUNK):
                    step(b.add(b.mul(j, ir.Constant(i64, CHUNK)), ir.Constant(i64, i)), first=i == 0, dense=dense)
                close()

        flag = self.ints[7]
        if flag.type != ir.IntType(1):
            flag = b.icmp_unsigned("!=", flag, ir.Constant(flag.type, 0))
        with b.if_else(flag) as (dense, sparse):
            with dense:
                chunks(True)
            with sparse:
                chunks(False)
        for r, c in pairs:
            for f in "hl":
                top, j = self.lowest_at_top(f, b.load(best[(r, c, f)]), b.load(which[(r, c, f)]))
                j = b.sext(j, i64)
                finite = b.fcmp_ordered("!=", top, ir.Constant(self.fty, float("-inf" if f == "h" else "inf")))
                has, at = self.first_equal(yb, bb, r, c, f, top, j, b.and_(finite, b.icmp_signed("<", j, full)),
                                           steps)
                self.merge(r, c, f, top, has, at)

    def first_equal(self, yb, bb, r: int, c: int, f: str, top, j, whole: bool, steps):
        """(found, n) of the lowest n whose candidate (component ``f`` of pair (r, c)) equals ``top``: among the
        CHUNK vectors of chunk ``j`` where ``whole`` (one mask of CHUNK·lanes bits, no branch), else among all
        ``steps`` vectors by a loop (a partial top chunk, or a best of ∓inf). The candidates are recomputed by
        the same operations, so bit for bit."""
        b = self.b
        i64, i1 = ir.IntType(64), ir.IntType(1)
        wide = ir.IntType(CHUNK * self.width)
        splat = self.broadcast(top, self.vty)
        fn = b.function
        fast, head, body, hit, done = (fn.append_basic_block(f"rescan.{x}") for x in
                                       ("chunk", "head", "body", "hit", "done"))
        entry = b.block
        b.cbranch(whole, fast, head)

        def equal(s):  # the bits of the lanes of vector s whose candidate is ``top``
            n0 = b.mul(s, ir.Constant(i64, self.width))
            cand = self.candidates(self.weight(bb, c, n0), *self.consumer(yb, r, n0))["hl".index(f)]
            return n0, b.bitcast(b.fcmp_ordered("==", cand, splat), ir.IntType(self.width))

        b.position_at_end(fast)
        s0 = b.mul(j, ir.Constant(i64, CHUNK))
        bits = ir.Constant(wide, 0)
        for i in range(CHUNK):
            mask = b.zext(equal(b.add(s0, ir.Constant(i64, i)))[1], wide)
            bits = b.or_(bits, b.shl(mask, ir.Constant(wide, i * self.width)))
        lane = b.cttz(bits, ir.Constant(i1, 0))
        lane = b.trunc(lane, i64) if wide.width > 64 else b.zext(lane, i64) if wide.width < 64 else lane
        fast_at = b.add(b.mul(s0, ir.Constant(i64, self.width)), lane)
        fast_has = b.icmp_unsigned("!=", bits, ir.Constant(wide, 0))
        fast_end = b.block
        b.branch(done)

        b.position_at_end(head)
        s = b.phi(i64)
        s.add_incoming(ir.Constant(i64, 0), entry)
        b.cbranch(b.icmp_signed("<", s, steps), body, done)
        b.position_at_end(body)
        n0, mask = equal(s)
        s.add_incoming(b.add(s, ir.Constant(i64, 1)), body)
        b.cbranch(b.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(self.width), 0)), hit, head)
        b.position_at_end(hit)
        at_hit = b.add(n0, b.zext(b.cttz(mask, ir.Constant(i1, 1)), i64))
        b.branch(done)

        b.position_at_end(done)
        found, at = b.phi(i1), b.phi(i64)
        for block, has_v, at_v in ((fast_end, fast_has, fast_at), (head, ir.Constant(i1, 0), ir.Constant(i64, 0)),
                                   (hit, ir.Constant(i1, 1), at_hit)):
            found.add_incoming(has_v, block)
            at.add_incoming(at_v, block)
        return found, at
