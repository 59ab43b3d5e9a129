"""A faster kernel for :func:`~fp8mac.model.gemm.mac_gemm`, proven equal to the integer path.

The integer path (:mod:`fp8mac.model.rounding`) is the definition. This module computes the same
roundings with about a third of the NumPy operations, for the common case, and is checked
against the integer path bit for bit by ``tests/test_model_fastpath.py`` (random, corner and
special cases, every preset accumulator, every rounding mode).

Why it is exact:

* Every value here is exact in float64: accumulator formats have at most 24 significant bits and
  exponents within +-150; products of two operands of at most 24 bits are exact (48 bits).
* ``s = x + y`` with its TwoSum error ``e`` (Knuth) gives the exact sum ``s + e`` with
  ``|e| <= ulp(s) / 2``, barring overflow or underflow of float64, which these ranges exclude.
* Rounding ``s + e`` to a format with ``m`` mantissa bits and ``r`` random bits: with ``u`` the
  result's ulp, ``Q = |s| / u`` is exact (power-of-two scaling), and so are ``floor(Q)`` and
  ``frac(Q)``. ``e`` only matters as a signed sticky: it moves the true ``t = frac(|x| / u)`` by
  less than half an ulp of ``Q``'s float64 significand, so it can only change a decision where
  ``frac(Q) * 2**r`` is an integer (for ``r <= 52 - m``, every multiple of float64's ulp of ``Q``
  times ``2**r`` is at most 1 apart from the next integer) and then only by the direction of
  ``e``. When ``|s|`` is a power of two and ``e`` pulls ``|x|`` below it, ``|x|`` lies in the
  binade below: the ulp is taken there.

Only ``m + r <= 52`` is handled here (:func:`supported`); other configurations use the integer
path.

What :func:`round_pair` needs of ``(s, e)`` is weaker than TwoSum's output (this is what the
multi-term steps below rely on): with ``X`` the exact value, (i) ``s`` is non-zero unless
``X = 0`` (then ``e = 0``), (ii) ``e`` has the sign of ``X - s`` (zero iff ``X = s``; only its sign
is read), and (iii) ``|X - s| < ulp64(B)``, float64's ulp in the binade ``B`` of ``|X|``, where
``B`` is the binade of ``|s|`` or, when ``|s|`` is a power of two and ``|X| < |s|``, the one below.
Then ``X`` lies in ``B`` (the binade the code picks), ``Q = |s| / u`` is a multiple of
``g = ulp64(B) / u`` and ``T = |X| / u`` differs from ``Q`` by less than ``g``, while the
granularity of every decision (``2**-r``, or ``1/2`` for nearest) is a multiple of ``g`` when
``m + r <= 52``: so ``floor(T * 2**r)`` is ``floor(Q * 2**r)``, minus one exactly when ``Q * 2**r``
is an integer and ``X`` lies below ``s``, which is what the code computes; ties (``frac = 1/2``)
are exact only when ``e = 0``.

**Multi-term steps** (``acc + p_1 + ... + p_d``, one rounding; ``dot`` > 1 in
:func:`~fp8mac.model.gemm.mac_gemm`), :func:`dot_plan`, :func:`split`, :func:`dot_pair`:

* Every term is an integer multiple of ``2**Q`` and below ``2**M`` in magnitude: for the
  products of ``in_fmt`` (``Q_p = 2 (emin - m)``, ``M_p = 2 (emax + 1)``; for products of two
  formats, mixed operand streams, the sums of the two formats' ``emin - m`` and ``emax + 1``),
  for the accumulator (``Q_a = emin - m``, ``M_a = emax + 1``). For any format here every sum and error below is a
  multiple of ``2**-600`` and below ``2**600``: float64 neither overflows nor underflows.
* :func:`split` cuts ``x`` into ``hi``, ``x`` rounded to a multiple of ``2**S`` (``(x + C) - C``
  with ``C = 1.5 * 2**(S + 52)``, exact for ``|x| <= 2**(S + 51)``), and ``lo = x - hi``, exact,
  with ``|lo| <= 2**(S - 1)``. For ``n`` terms and ``G = ceil(log2 n)``, choose
  ``S = Q + 54 - G``: every partial sum of the ``lo`` parts is a multiple of ``2**Q`` of at most
  ``n 2**(S - 1) <= 2**(Q + 53)``, and every partial sum of the ``hi`` parts a multiple of
  ``2**S`` below ``n (2**M + 2**(S - 1)) <= 2**(S + 53)`` as long as ``M - Q + 2 G <= 106``. So
  both sums ``H`` and ``L`` are exact in float64, in **any** order of addition (NumPy's pairwise
  sums included), and ``X = H + L``; TwoSum of ``(H, L)`` gives ``s = fl(X)`` and ``e = X - s``.
* *Accumulator on the grid* (``acc_on_grid``): when ``Q = min(Q_p, Q_a)``, ``M = max(M_p, M_a)``
  and ``n = d + 1`` satisfy the bound (fp8 operands into fp16_ibm: ``M - Q = 71``, any d <= 64),
  ``acc`` is split like the products and ``(s, e) = TwoSum(H, L)``.
* *Wide accumulator* (fp32, bf16: ``M_a - Q_a`` is 277 or 261): only the products share the
  grid (``n = d``; fp16 operands: ``M_p - Q_p = 80``), giving ``P = s1 + r1`` exactly with
  ``s1 = fl(P)``, ``|r1| <= ulp(s1) / 2``. Then ``u, v = TwoSum(acc, s1)``,
  ``w, dw = TwoSum(v, r1)``, ``s, t = TwoSum(u, w)``, ``e = fl(t + dw)``; so
  ``X = s + t + dw`` exactly and ``e`` has the sign of ``X - s`` (rounding keeps signs and zeros).
  If ``acc + s1`` is exact (Sterbenz: opposite signs within a factor 2, or ``acc = 0``), ``v = 0``,
  ``dw = 0`` and ``(s, t)`` is the exact TwoSum of ``X = u + r1``. Otherwise
  ``|u| >= max(|acc|, |s1|) (1 - 2**-53) / 2``, so ``|w| <= 3 * 2**-53 |u| (1 + 2**-52)``: ``w`` lies
  far below ``u``, ``s`` is within a factor ``1 +- 2**-50`` of ``u``, and ``u``, ``w``, ``s`` and hence
  ``t`` are multiples of ``ulp64(w)``, as is the half-spacing ``h`` of float64 next to ``s`` on the side
  of ``t``. If ``|t| < h`` then ``|t| <= h - ulp64(w)`` and ``|dw| <= ulp64(w) / 2`` give
  ``|X - s| < h``; if ``|t| = h``, ``|X - s| <= h + ulp64(w) / 2 < 2 h``, the float64 spacing on that
  side, which is ``ulp64(B)``. Either way (i)-(iii) hold.
* Signed zeros: ``hi`` is never -0 and ``lo`` is -0 exactly when ``x`` is, so ``L`` (the sum of
  the ``lo`` parts, in IEEE arithmetic: NumPy's ``sum`` starts from +0, so it is given
  ``initial=-0.0``) is -0 exactly when every split term is -0, and ``s`` is then set to -0 (an
  exact zero sum is +0 unless every term is -0); no other path produces -0. Specials: a NaN or
  infinite term makes ``s`` non-finite (``lo`` of an infinity is NaN), and the caller substitutes
  float64's own sum of the terms, which is IEEE's NaN / signed infinity.

:func:`dot_plan` returns ``None`` when neither bound holds (e.g. bf16 or fp32 operands); the
integer path is used then.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .formats import FloatFormat

__all__ = ["supported", "two_sum", "round_pair", "DotPlan", "dot_plan", "split", "dot_pair", "dot_sum"]


def supported(fmt: FloatFormat, rbits: int | None) -> bool:
    """Whether :func:`round_pair` is exact for ``fmt`` with ``rbits`` random bits."""
    return fmt.width <= 32 and fmt.man_bits + (rbits or 0) <= 52


class DotPlan(NamedTuple):
    """How :func:`dot_pair` forms ``acc + p_1 + ... + p_d`` exactly (module docstring)."""

    split: int  # S: hi parts are multiples of 2**S
    acc_on_grid: bool  # the accumulator is split too (else added by TwoSums)


def dot_plan(acc_fmt: FloatFormat, in_fmt: FloatFormat, d: int, b_fmt: FloatFormat | None = None) -> DotPlan | None:
    """The exact float64 scheme for d-term steps of ``in_fmt`` products (``in_fmt`` times
    ``b_fmt`` when given: mixed operand formats) into ``acc_fmt``, or ``None`` if the module
    docstring's bounds exclude one."""
    b_fmt = in_fmt if b_fmt is None else b_fmt
    qp = (in_fmt.emin - in_fmt.man_bits) + (b_fmt.emin - b_fmt.man_bits)
    mp = (in_fmt.emax + 1) + (b_fmt.emax + 1)
    qa, ma = acc_fmt.emin - acc_fmt.man_bits, acc_fmt.emax + 1
    g = d.bit_length()  # ceil(log2(d + 1)): d products and the accumulator
    q, m = min(qp, qa), max(mp, ma)
    if m - q + 2 * g <= 106:
        return DotPlan(q + 54 - g, True)
    g = (d - 1).bit_length()  # ceil(log2(d))
    if mp - qp + 2 * g <= 106:
        return DotPlan(qp + 54 - g, False)
    return None


def split(x, S: int):
    """``(hi, lo)``: ``x`` rounded to a multiple of ``2**S`` and the exact rest (|x| <= 2**(S + 51))."""
    c = 1.5 * 2.0 ** (S + 52)
    hi = (x + c) - c
    return hi, x - hi


def dot_pair(plan: DotPlan, acc, H, L):
    """``(s, e)`` for ``round_pair``: the exact ``acc + sum(p)`` given ``H`` and ``L``, the sums of
    the products' :func:`split` parts (module docstring; ``L`` summed from ``initial=-0.0``, so
    that it is -0 exactly when every product is). ``s`` is non-finite exactly where a term is;
    the caller substitutes the IEEE sum there."""
    with np.errstate(invalid="ignore"):
        if plan.acc_on_grid:
            hi, lo = split(acc, plan.split)
            H = H + hi
            L = L + lo
            s, e = two_sum(H, L)
            neg_zero = (L == 0) & np.signbit(L)
        else:
            s1, r1 = two_sum(H, L)
            u, v = two_sum(acc, s1)
            w, dw = two_sum(v, r1)
            s, t = two_sum(u, w)
            e = t + dw
            neg_zero = (acc == 0) & np.signbit(acc) & (L == 0) & np.signbit(L)
    if neg_zero.any():
        s = np.where(neg_zero, -0.0, s)
    return s, e


def dot_sum(plan: DotPlan, acc, prods, axis: int = -1):
    """``(s, e)`` for ``round_pair``: ``acc + sum(prods along axis)``, the products exact float64
    values (NaN and infinities included: ``s`` is then IEEE's sum, a NaN or an infinity)."""
    with np.errstate(invalid="ignore"):
        hi, lo = split(prods, plan.split)
        s, e = dot_pair(plan, acc, hi.sum(axis=axis), lo.sum(axis=axis, initial=-0.0))
        bad = ~np.isfinite(s)
        if bad.any():
            s = np.where(bad, acc + prods.sum(axis=axis), s)
    return s, e


def two_sum(x, y):
    """``(s, e)`` with ``s = fl(x + y)`` and ``s + e = x + y`` exactly (finite s)."""
    s = x + y
    yv = s - x
    xv = s - yv
    return s, (x - xv) + (y - yv)


def round_pair(fmt: FloatFormat, s, e, rounding, rand=None, rbits=None):
    """``round(s + e)`` in ``fmt`` as float64 values (exactly representable in ``fmt``).

    ``s + e`` is an exact value as :func:`two_sum` returns it; NaN and infinities in ``s`` pass
    through (an infinity becomes NaN or the largest value in a format without infinities).
    """
    m = fmt.man_bits
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.abs(s)
        # > 0: |x| above |s|. NaN where s is not finite: every comparison below is then False,
        # and those results are replaced at the end.
        e_mag = np.copysign(1.0, s) * e
        bits = a.view(np.int64)
        # binade of |s| (every non-zero value here is a normal float64); 0 reads as -1023
        top = (bits >> 52) - 1023
        below = ((bits & _MANTISSA) == 0) & (e_mag < 0)  # |x| just below a power of two
        ue = np.maximum(top - below, fmt.emin) - m
        q_full = a * _pow2(-ue)
        fl = np.floor(q_full)
        fr = q_full - fl
        borrow = (fr == 0) & (e_mag < 0)  # t is just below 1 of the previous ulp
        fl = fl - borrow
        fr = fr + borrow
        if rounding == "nearest":
            odd = (fl.astype(np.int64) & 1) == 1
            up = (fr > 0.5) | ((fr == 0.5) & ((e_mag > 0) | ((e_mag == 0) & odd)))
        elif rounding == "stochastic":
            t = fr * float(1 << rbits)
            ft = np.floor(t)
            q = ft - ((ft == t) & (e_mag < 0))
            up = (q + rand) >= (1 << rbits)
        else:
            up = False
        mag = (fl + up) * _pow2(ue)
        over = mag > fmt.max_value
        if fmt.overflow == "inf" and rounding != "zero":
            mag = np.where(over, np.inf, mag)
        else:
            mag = np.where(over, fmt.max_value, mag)
        if not fmt.subnormals:
            mag = np.where(mag < fmt.min_normal, 0.0, mag)
        out = np.copysign(mag, s)
        finite = np.isfinite(s)
        if finite.all():
            return out
        special = s
        if not fmt.has_inf:
            special = np.where(np.isinf(s), np.nan if fmt.has_nan else np.copysign(fmt.max_value, s), s)
        return np.where(finite, out, special)


_MANTISSA = (1 << 52) - 1


def _pow2(k):
    """``2.0**k`` for integer arrays ``k`` in float64's normal range, built from its bits.

    Out-of-range ``k`` (only for NaN and infinite operands, whose results are replaced) gives
    some finite or infinite value, never an exception."""
    # np.minimum / np.maximum: np.clip's wrapper costs more than the work on small arrays
    return ((np.minimum(np.maximum(k, -1022), 1023) + 1023) << 52).view(np.float64)
