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
"""

from __future__ import annotations

import numpy as np

from .formats import FloatFormat

__all__ = ["supported", "two_sum", "round_pair"]


def supported(fmt: FloatFormat, rbits: int | None) -> bool:
    """Whether :func:`round_pair` is exact for ``fmt`` with ``rbits`` random bits."""
    return fmt.width <= 32 and fmt.man_bits + (rbits or 0) <= 52


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
