"""Scalar helpers that generated elementwise kernels call (forward values and local derivatives)."""

import math
import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .checked_cache import protect

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True)
def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True)
def gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


@njit(cache=True)
def gelu_tanh_d(x):
    t = math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)


@njit(cache=True)
def sign(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


# ln 2 split in two so that k * LN2_HI is exact for every binary exponent k of a double.
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10


@njit(cache=True, _nrt=False, error_model="numpy")
def log_positive(x, out, n):
    """out[:n] = log(x[:n]) for positive normal doubles (x = 0 gives a finite value; callers weight it by 0).

    libm's log is a call per element and stops the vectoriser; this form vectorises and is within 2 ulp.
    x = 2^k m with m in [sqrt(2)/2, sqrt(2)), and log m = 2 atanh(s) with s = (m - 1) / (m + 1), |s| < 0.172:
    the odd series 2 (s + s^3/3 + ... + s^23/23) is exact to double precision there.
    """
    xb = x.view(np.int64)
    mb = out.view(np.int64)
    for i in range(n):  # the mantissa, moved into [sqrt(2)/2, sqrt(2)), as a double in out
        frac = xb[i] & 0x000FFFFFFFFFFFFF
        mb[i] = frac | (0x3FE0000000000000 if frac > 0x6A09E667F3BCD else 0x3FF0000000000000)
    for i in range(n):
        frac = xb[i] & 0x000FFFFFFFFFFFFF
        k = float((xb[i] >> 52) - 1023 + (1 if frac > 0x6A09E667F3BCD else 0))
        f = out[i] - 1.0
        s = f / (2.0 + f)
        z = s * s
        p = ((((((((((1.0 / 23.0) * z + 1.0 / 21.0) * z + 1.0 / 19.0) * z + 1.0 / 17.0) * z + 1.0 / 15.0) * z
                  + 1.0 / 13.0) * z + 1.0 / 11.0) * z + 1.0 / 9.0) * z + 1.0 / 7.0) * z + 1.0 / 5.0) * z + 1.0 / 3.0
        out[i] = k * LN2_HI + (2.0 * s + (2.0 * s * z * p + k * LN2_LO))


@njit(cache=True, _nrt=False, error_model="numpy")
def exp_nonpositive(x, out, n):
    """out[:n] = exp(x[:n]) for float64 x <= 0 (:func:`exp_neg`), vectorised. Below -708 it gives 0: its
    callers round to float32, where e^-104 is already 0. NaN stays NaN."""
    for i in range(n):
        out[i] = exp_neg(x[i])


# ln 2 split for float32 (Cody and Waite's): k * LN2_HI32 is exact for the |k| <= 150 of float32's exponents.
LN2_HI32 = 0.693359375
LN2_LO32 = float(np.float32(-2.12194440e-4))
# log(1 + f) = f - f²/2 + f³ P(f) on f in [sqrt(2)/2 - 1, sqrt(2) - 1): the minimax coefficients of Cephes'
# logf, rounded to float32, highest degree first
_LOG32_P = tuple(float(np.float32(c)) for c in (
    7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
    2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1))


def _fma(builder, t):
    """a·x + c rounded once, for LLVM float type ``t`` (``llvm.fma.f32`` or ``.f64``)."""
    name = "llvm.fma.f32" if isinstance(t, ir.FloatType) else "llvm.fma.f64"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(t, [t] * 3), name)
    return lambda a, x, c: builder.call(fn, [a, x, c])


def _fma_intrinsic(nbtype, lltype):
    def fma(typingctx, a, x, c):
        return nbtype(nbtype, nbtype, nbtype), lambda context, builder, sig, args: _fma(builder, lltype())(*args)

    fma.__name__ = fma.__qualname__ = f"fma_{nbtype}"
    return intrinsic(fma)


# a·x + c rounded once (one vfmadd where the loop vectorises): Numba contracts a multiply and an add only under
# fast-math, which would also contract the edge weights' own rounding
fma32 = _fma_intrinsic(types.float32, ir.FloatType)
fma64 = _fma_intrinsic(types.float64, ir.DoubleType)


@intrinsic
def f64_from_bits(typingctx, i):
    """The double whose bits are the int64 ``i``."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


def _polynomial(first, second=None):
    """An intrinsic p(x) (or p(x, pick)) evaluating a float64 polynomial by Horner's rule in FMAs, its
    coefficients (highest degree first) emitted as constants: straight-line code that a loop vectorises, where
    a loop over a tuple of coefficients stays scalar. With ``second`` (of the same degree), each coefficient
    is ``first``'s where ``pick`` is true and ``second``'s elsewhere, so two pieces cost one evaluation."""
    f64 = ir.DoubleType()

    def body(builder, x, pick):
        fma = _fma(builder, f64)

        def coef(k):
            if second is None:
                return ir.Constant(f64, first[k])
            return builder.select(pick, ir.Constant(f64, first[k]), ir.Constant(f64, second[k]))

        p = coef(0)
        for k in range(1, len(first)):
            p = fma(p, x, coef(k))
        return p

    if second is None:
        @intrinsic
        def poly(typingctx, x):
            return types.float64(types.float64), lambda context, builder, sig, args: body(builder, args[0], None)
    else:
        assert len(first) == len(second)

        @intrinsic
        def poly(typingctx, x, pick):
            return (types.float64(types.float64, types.boolean),
                    lambda context, builder, sig, args: body(builder, args[0], args[1]))
    return poly


_EXP_C = tuple(1.0 / math.factorial(i) for i in range(12, -1, -1))  # Taylor's, highest degree first
_exp_taylor = _polynomial(_EXP_C)


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def exp_neg(x):
    """exp(x) for float64 x <= 0, branch-free so that a loop calling it vectorises (libm's exp is a call per
    element and stops the vectoriser). x = k ln 2 + r with |r| <= ln(2)/2, exp r by its Taylor series to r^12
    (the remainder below 2e-16 relative), times 2^k put together in the exponent bits; within 2 ulp. Below
    -708 (where 2^k would be subnormal) it gives 0; NaN stays NaN."""
    xi = x if x >= -708.0 else -708.0  # NaN too: the result is chosen below
    k = np.floor(xi * 1.4426950408889634 + 0.5)
    r = (xi - k * LN2_HI) - k * LN2_LO
    y = _exp_taylor(r) * f64_from_bits((np.int64(k) + 1023) << 52)
    return x if x != x else (y if x >= -708.0 else 0.0)


# erf. |x| < 1: erf x = x P(x²). 1 <= |x| < 6: erf |x| = 1 - e^{-x²} Q(1/|x|), Q = erfcx (e^{x²} erfc x) in
# two pieces, u = 1/|x| in [1/2, 1] and [1/6, 1/2], each a polynomial in u mapped onto [-1, 1]. |x| >= 6:
# ±1 (erfc 6 = 2e-17 is below half an ulp of 1). The coefficients are mpmath's Chebyshev fits (50 digits,
# `mpmath.chebyfit`, degrees 12 and 17; errors 1.3e-19, and 2.6e-18 and 9.5e-18 relative), rounded to
# float64. Within 1 ulp of glibc's erf over [-7, 7] (tests/test_numba.py); a vectorised loop of it is about 5×
# faster than libm's, called an element at a time.
_ERF_P = _polynomial((
    5.957176147748911e-11, -1.1372848856791674e-09, 1.4659775274047436e-08, -1.6350312701054695e-07,
    1.6461000484121368e-06, -1.4925595266831182e-05, 0.0001205533111164271, -0.000854832698083379,
    0.0052239776248180145, -0.026866170645076792, 0.11283791670954879, -0.3761263890318375))  # but x^0's
_ERF_P0 = 1.1283791670955126  # 2/√π: added last, x·P0 + x·(x²·P(x²)) with one rounding (fma64)
_ERFCX_Q = _polynomial((  # u in [1/2, 1], v = (u - 3/4)·4
    -2.433944558881952e-13, 6.071293753583871e-13, 9.873209019839293e-13, -1.3734229530571249e-11,
    8.806211987600212e-11, -4.3800820707566906e-10, 1.6882322181169658e-09, -4.195222257557001e-09,
    -3.973712041486476e-09, 1.3591774353280387e-07, -1.0800982345390573e-06, 5.884037237514273e-06,
    -2.16789016057272e-05, 9.546477750004191e-06, 0.0007744964443061016, -0.009660629582122408,
    0.08534221467485857, 0.3511346940289053), (  # u in [1/6, 1/2], v = (u - 1/3)·6
    1.474261473369105e-13, -1.7427650614363845e-12, 7.035502384186072e-12, -9.960070409800249e-12,
    -5.022550713489909e-11, 4.475614086894308e-10, -1.794814037795012e-09, 2.709413722163032e-09,
    1.7853262529752334e-08, -1.657982694066721e-07, 6.468492966620247e-07, -9.983028811344667e-08,
    -1.734070046499527e-05, 0.00012459325308655103, -0.000232157920013192, -0.00503935989566923,
    0.08155839001075932, 0.17900115118138993))


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def erf(x):
    """erf of a float64, branch-free (every piece computed, one selected) so that a loop calling it
    vectorises; NaN gives NaN, ±inf ±1."""
    a = abs(x)
    s = a * a
    s1 = min(s, 1.0)
    near = fma64(a, _ERF_P0, a * (s1 * _ERF_P(s1)))
    u = 1.0 / max(a, 1.0)
    first = a < 2.0
    v = (min(u, 1.0) - 0.75) * 4.0 if first else (max(u, 1.0 / 6.0) - 1.0 / 3.0) * 6.0
    far = fma64(-exp_neg(-min(s, 37.0)), _ERFCX_Q(v, first), 1.0)
    r = math.copysign(near if a < 1.0 else (far if a < 6.0 else 1.0), x)  # erf(-0) = -0
    return x if x != x else r


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")  # inlined, so a loop of it vectorises
def gelu(x):
    return 0.5 * x * (1.0 + erf(x * INV_SQRT_2))


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def gelu_d(x):
    return 0.5 * (1.0 + erf(x * INV_SQRT_2)) + x * exp_neg(-0.5 * x * x) * INV_SQRT_2PI


def _log32_parts(b, x):
    """(k, log m) of a positive float32 x = 2^k m, m in [sqrt(2)/2, sqrt(2)), both float32 values in LLVM IR
    (k exact; log m = f - f²/2 + f³ P(f), without the k·ln 2 terms)."""
    f32, i32 = ir.FloatType(), ir.IntType(32)
    fma = _fma(b, f32)

    def c(t, v):
        return ir.Constant(t, v)

    bits = b.bitcast(x, i32)
    frac = b.and_(bits, c(i32, 0x007FFFFF))
    big = b.icmp_unsigned(">", frac, c(i32, 0x3504F3))  # the mantissa above sqrt(2): halve it, k + 1
    m = b.bitcast(b.or_(frac, b.select(big, c(i32, 0x3F000000), c(i32, 0x3F800000))), f32)
    k = b.sitofp(b.add(b.sub(b.lshr(bits, c(i32, 23)), c(i32, 127)), b.zext(big, i32)), f32)
    f = b.fsub(m, c(f32, 1.0))
    z = b.fmul(f, f)
    p = c(f32, _LOG32_P[0])
    for coef in _LOG32_P[1:]:
        p = fma(p, f, c(f32, coef))
    return k, f, z, b.fmul(b.fmul(f, z), p)


@intrinsic
def log32(typingctx, x):
    """log of a positive normal float32 (0 gives a finite value; callers weight it by 0), as LLVM IR on 32-bit
    integers and floats, so a loop calling it vectorises 16 lanes wide (Numba widens integer arithmetic to 64
    bits, halving the lanes). The float32 twin of :func:`log_positive`: x = 2^k m with m in [sqrt(2)/2,
    sqrt(2)), f = m - 1, log m = f - f²/2 + f³ P(f) by FMAs, no division (the series in atanh((m-1)/(m+1))
    it replaced divided once a log, and was within 1.8 ulp); within 0.72 ulp, against 3.1 for NumPy's float32
    log on the same inputs (tests/test_numba.py)."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        b, f32 = builder, ir.FloatType()
        fma = _fma(b, f32)
        k, f, z, t = _log32_parts(b, args[0])
        y = fma(k, ir.Constant(f32, LN2_LO32), t)
        y = fma(ir.Constant(f32, -0.5), z, y)
        return fma(k, ir.Constant(f32, LN2_HI32), b.fadd(f, y))

    return sig, codegen


@intrinsic
def log32_wide(typingctx, x):
    """log of a positive normal float32 as a float64: log m from :func:`log32`'s float32 polynomial (|log m|
    < 0.35, so within about 3e-8), plus k·ln 2 in float64. Its error is absolute, not one float32 ulp of the
    log: a sum c + log x that cancels (log Z of a contraction's candidate) keeps its float32 precision."""
    sig = types.float64(types.float32)

    def codegen(context, builder, signature, args):
        b, f32, f64 = builder, ir.FloatType(), ir.DoubleType()
        k, f, z, t = _log32_parts(b, args[0])
        logm = b.fadd(f, _fma(b, f32)(ir.Constant(f32, -0.5), z, t))
        return _fma(b, f64)(b.fpext(k, f64), ir.Constant(f64, math.log(2.0)), b.fpext(logm, f64))

    return sig, codegen


@njit(cache=True, _nrt=False, error_model="numpy")
def log_positive32(x, out, n):
    """out[:n] = log32(x[:n]) (0.27 ns a log, 16 lanes)."""
    for i in range(n):
        out[i] = log32(x[i])


@njit(cache=True, inline="always")
def ln_weight(gi, d, c, xi, xnj):
    """Layernorm's edge weight (γ_i/σ)·((δ_ij − 1/n) − x̂_i·(x̂_j/n)) from gi = γ_i/σ, d = δ_ij, c = 1/n and
    xnj = x̂_j/n, every argument in the node's dtype and so every operation: the reference's numbers."""
    return gi * ((d - c) - xi * xnj)


@njit(cache=True, inline="always")
def sm_weight(d, si, sj, log):
    """(Log-)softmax's edge weight s_i (δ_ij − s_j), or δ_ij − e^{s_j} (``sj`` holds e^{s_j} then), every argument
    in the node's dtype and so every operation, as the reference computes it."""
    return (d - sj) if log else si * (d - sj)


@njit(cache=True, _nrt=False, error_model="numpy")
def sm_row(s, start, n, inner, log, sj):
    """Into ``sj``: the s_j of the (log-)softmax row at ``start`` (elements ``inner`` apart); for log-softmax
    the kernels get e^s for s (NumPy's, in the dtype, as the reference takes it), so sj holds e^{s_j}."""
    for jj in range(n):
        sj[jj] = s[start + jj * inner]


@njit(cache=True, _nrt=False)
def count_nonfinite(bits, mask):
    """How many of the floats whose bit patterns are ``bits`` (an int32 or int64 view) are inf or NaN: all
    exponent bits (``mask``) set. An integer test and count, so the loop vectorises; no temporary array."""
    bad = 0
    for i in range(bits.shape[0]):
        bad += (bits[i] & mask) == mask
    return bad


protect(sys.modules[__name__])  # checksummed disk cache for the helpers above (see checked_cache.py)
