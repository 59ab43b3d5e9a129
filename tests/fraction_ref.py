"""An exact, slow reference for fp8mac's arithmetic, written from ARCHITECTURE.md §1-§2 alone.

Nothing here calls the golden model: codes are decoded by the bit-level decoder below, values are
``fractions.Fraction``, and every rounding is the textbook definition applied to the exact value.
Only a format's *fields* (``exp_bits``, ``man_bits``, ``bias``, ``specials``, ``subnormals``,
``overflow``: the data of §1) are read from the model's ``FloatFormat`` objects.

Conventions that ARCHITECTURE.md leaves to IEEE 754 and that this reference states explicitly:

* The canonical NaN is the positive quiet NaN with only the top mantissa bit set (``ieee``), or
  the positive all-ones code S.1...1.1...1 with S = 0 (``fn``).
* Overflow under ``zero`` (truncation) gives the largest finite value even when the format's
  policy is ``"inf"`` (IEEE 754-2019 §7.4: roundTowardZero carries no overflow to infinity).
* A result that rounds to zero keeps the sign of the exact value; an exact zero sum is +0 unless
  both addends are -0 (§2), so ``x + (-x) = +0``. For a sum of many terms (§3b's fused steps) an
  exact zero is +0 unless every term is -0.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

__all__ = ["Value", "decode", "encode_exact", "round_value", "add", "mul", "fma", "add_codes", "sum_values", "dot",
           "stochastic_q", "max_finite", "nan_code", "width", "from_float", "NAN"]


class Value(NamedTuple):
    """``kind`` is ``"num"``, ``"inf"`` or ``"nan"``; ``sign`` 0/1 (zeros are signed); ``mag`` >= 0."""

    kind: str
    sign: int
    mag: Fraction


NAN = Value("nan", 0, Fraction(0))


def _pow2(k: int) -> Fraction:
    return Fraction(1 << k) if k >= 0 else Fraction(1, 1 << -k)


def _floor_log2(x: Fraction) -> int:
    """floor(log2(x)) for x > 0, exactly."""
    n, d = x.numerator, x.denominator
    k = n.bit_length() - d.bit_length()
    # 2**k <= x  <=>  n <= ... compare n with d * 2**k on integers
    lhs, rhs = (n, d << k) if k >= 0 else (n << -k, d)
    return k if lhs >= rhs else k - 1


def width(fmt) -> int:
    return 1 + fmt.exp_bits + fmt.man_bits


def from_float(x: float) -> Value:
    """A float64 as an exact Value (NaN, signed infinities and zeros included)."""
    if x != x:
        return NAN
    sign = int(math.copysign(1.0, x) < 0)
    if x in (float("inf"), float("-inf")):
        return Value("inf", sign, Fraction(0))
    return Value("num", sign, abs(Fraction(x)))


# ---- §1: codes <-> values ------------------------------------------------------------------------
def decode(fmt, code: int) -> Value:
    """A code's exact value, from the bit fields (subnormal inputs flush when subnormals are off)."""
    e, m, bias = fmt.exp_bits, fmt.man_bits, fmt.bias
    code = int(code)
    assert 0 <= code < 1 << width(fmt), code
    sign = code >> (e + m)
    ef = (code >> m) & ((1 << e) - 1)
    mf = code & ((1 << m) - 1)
    top = ef == (1 << e) - 1
    if fmt.specials == "ieee" and top:
        return Value("inf", sign, Fraction(0)) if mf == 0 else NAN
    if fmt.specials == "fn" and top and mf == (1 << m) - 1:
        return NAN
    if ef == 0:  # zero or subnormal: 0.mf * 2**(1 - bias)
        mag = Fraction(mf) * _pow2(1 - bias - m) if fmt.subnormals else Fraction(0)
    else:  # normal: 1.mf * 2**(ef - bias)
        mag = Fraction((1 << m) | mf) * _pow2(ef - bias - m)
    return Value("num", sign, mag)


def max_finite(fmt) -> Fraction:
    e, m = fmt.exp_bits, fmt.man_bits
    top_field = (1 << e) - 1 - (1 if fmt.specials == "ieee" else 0)
    top_sig = (1 << (m + 1)) - 1 - (1 if fmt.specials == "fn" else 0)  # fn: S.1..1.1..1 is NaN
    return Fraction(top_sig) * _pow2(top_field - fmt.bias - m)


def nan_code(fmt) -> int:
    e, m = fmt.exp_bits, fmt.man_bits
    if fmt.specials == "ieee":
        return (((1 << e) - 1) << m) | (1 << (m - 1))
    assert fmt.specials == "fn"
    return (1 << (e + m)) - 1


def encode_exact(fmt, sign: int, mag: Fraction) -> int:
    """The code of a value the format holds exactly (asserts that it does)."""
    e, m, bias = fmt.exp_bits, fmt.man_bits, fmt.bias
    emin = 1 - bias
    if mag == 0:
        return sign << (e + m)
    k = _floor_log2(mag)
    if k < emin:
        ef, frac = 0, mag / _pow2(emin - m)
        assert frac.denominator == 1 and frac < 1 << m, (mag, fmt)
        mf = int(frac)
    else:
        ef, frac = k + bias, mag / _pow2(k - m)
        assert frac.denominator == 1 and ef < 1 << e, (mag, fmt)
        mf = int(frac) - (1 << m)
    code = (sign << (e + m)) | (ef << m) | mf
    assert decode(fmt, code) == Value("num", sign, mag), (mag, fmt)
    return code


# ---- §2: rounding ----------------------------------------------------------------------------------
def _ulp_split(fmt, mag: Fraction):
    """``(n, t, ulp)``: |x| = (n + t) * ulp with integer n and 0 <= t < 1, ulp of |x|'s binade
    clamped at the subnormal ulp."""
    emin = 1 - fmt.bias
    ulp = _pow2(max(_floor_log2(mag), emin) - fmt.man_bits)
    scaled = mag / ulp
    n = scaled.numerator // scaled.denominator
    return n, scaled - n, ulp


def stochastic_q(fmt, v: Value, rbits: int) -> int:
    """q = floor(t * 2**r) of §2 for a finite non-zero value (0 for anything else)."""
    if v.kind != "num" or v.mag == 0:
        return 0
    _, t, _ = _ulp_split(fmt, v.mag)
    return int(t * (1 << rbits))


def round_value(fmt, v: Value, rounding: str, rand: int | None = None, rbits: int | None = None) -> int:
    """§2: round the exact value, then overflow, then flush-to-zero; returns the code."""
    e, m = fmt.exp_bits, fmt.man_bits
    sign_bit = 1 << (e + m)
    if v.kind == "nan":
        return nan_code(fmt)
    if v.kind == "inf":
        if fmt.specials == "ieee":
            return (v.sign * sign_bit) | (((1 << e) - 1) << m)
        if fmt.specials == "fn":
            return nan_code(fmt)
        return encode_exact(fmt, v.sign, max_finite(fmt))
    if v.mag == 0:
        return encode_exact(fmt, v.sign, Fraction(0))
    n, t, ulp = _ulp_split(fmt, v.mag)
    if rounding == "nearest":
        up = t > Fraction(1, 2) or (t == Fraction(1, 2) and n % 2 == 1)
    elif rounding == "zero":
        up = False
    elif rounding == "stochastic":
        assert 0 <= rand < 1 << rbits
        q = int(t * (1 << rbits))
        up = q + rand >= 1 << rbits
    else:
        raise AssertionError(rounding)
    mag = (n + up) * ulp
    if mag > max_finite(fmt):
        if fmt.overflow == "inf" and rounding != "zero":
            return (v.sign * sign_bit) | (((1 << e) - 1) << m)
        mag = max_finite(fmt)
    if not fmt.subnormals and mag < _pow2(1 - fmt.bias):
        mag = Fraction(0)
    return encode_exact(fmt, v.sign, mag)


# ---- exact operations (IEEE 754 specials) ------------------------------------------------------------
def add(x: Value, y: Value) -> Value:
    """The exact sum."""
    if x.kind == "nan" or y.kind == "nan":
        return NAN
    if x.kind == "inf" and y.kind == "inf":
        return x if x.sign == y.sign else NAN
    if x.kind == "inf":
        return x
    if y.kind == "inf":
        return y
    s = (-x.mag if x.sign else x.mag) + (-y.mag if y.sign else y.mag)
    if s == 0:
        return Value("num", x.sign & y.sign, Fraction(0))  # -0 only for (-0) + (-0)
    return Value("num", int(s < 0), abs(s))


def mul(x: Value, y: Value) -> Value:
    """The exact product (NaN for 0 * inf)."""
    if x.kind == "nan" or y.kind == "nan":
        return NAN
    sign = x.sign ^ y.sign
    if x.kind == "inf" or y.kind == "inf":
        other = y if x.kind == "inf" else x
        if other.kind == "num" and other.mag == 0:
            return NAN
        return Value("inf", sign, Fraction(0))
    return Value("num", sign, x.mag * y.mag)


def sum_values(terms) -> Value:
    """The exact sum of any number of values: NaN if one is NaN or both +inf and -inf occur, else
    an infinity if one occurs, else the Fraction sum (an exact zero is -0 only if every term is -0)."""
    terms = list(terms)
    if any(t.kind == "nan" for t in terms):
        return NAN
    infs = {t.sign for t in terms if t.kind == "inf"}
    if len(infs) == 2:
        return NAN
    if infs:
        return Value("inf", infs.pop(), Fraction(0))
    s = sum((-t.mag if t.sign else t.mag) for t in terms)
    if s == 0:
        return Value("num", int(all(t.sign for t in terms)), Fraction(0))
    return Value("num", int(s < 0), abs(s))


def dot(acc_fmt, in_fmt, acc: int, a, b, rounding="nearest", rand=None, rbits=None) -> int:
    """§3b's fused step: round(acc + a[0]*b[0] + ... + a[d-1]*b[d-1]) in ``acc_fmt``, one rounding
    of the exact value (``a``, ``b``: sequences of d ``in_fmt`` codes)."""
    a, b = list(a), list(b)
    assert len(a) == len(b) >= 1
    terms = [decode(acc_fmt, acc)] + [mul(decode(in_fmt, x), decode(in_fmt, y)) for x, y in zip(a, b)]
    return round_value(acc_fmt, sum_values(terms), rounding, rand, rbits)


def add_codes(fmt, a: int, b: int, rounding="nearest", rand=None, rbits=None) -> int:
    """round(a + b) in ``fmt``."""
    return round_value(fmt, add(decode(fmt, a), decode(fmt, b)), rounding, rand, rbits)


def fma(acc_fmt, in_fmt, acc: int, a: int, b: int, rounding="nearest", rand=None, rbits=None) -> int:
    """round(acc + a * b) in ``acc_fmt``, one rounding of the exact value."""
    exact = add(decode(acc_fmt, acc), mul(decode(in_fmt, a), decode(in_fmt, b)))
    return round_value(acc_fmt, exact, rounding, rand, rbits)
