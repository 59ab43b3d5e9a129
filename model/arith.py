"""Rounded arithmetic on codes: ``fp_add``, the fused MAC step ``fp_fma`` and the multi-term
fused step ``fp_dot`` (ARCHITECTURE.md §2, §3, §3b).

Each forms the exact result with :func:`~fp8mac.model.rounding.add_exact` /
:func:`~fp8mac.model.rounding.sum_exact` and :func:`~fp8mac.model.rounding.mul_exact`, and
rounds it once with :func:`~fp8mac.model.rounding.round_unpacked`. They broadcast like NumPy.
"""

from __future__ import annotations

import numpy as np

from .formats import FloatFormat, Unpacked, check_codes, format_by_name
from .rounding import add_exact, check_rounding, mul_exact, pack, round_unpacked, sum_exact

__all__ = ["fp_add", "fp_mul_exact", "fp_fma", "fp_dot", "check_format_pair", "broadcast_operands"]


def broadcast_operands(**operands):
    """The broadcast shape of named arrays; ValueError naming each operand's shape if none."""
    try:
        return np.broadcast_shapes(*(np.shape(v) for v in operands.values()))
    except ValueError:
        shapes = ", ".join(f"{name} {np.shape(v)}" for name, v in operands.items())
        raise ValueError(f"operand shapes do not broadcast: {shapes}") from None


def check_format_pair(acc_fmt: FloatFormat, in_fmt: FloatFormat, b_fmt: FloatFormat | None = None, *,
                      names=("in_format", "in_format")):
    """ValueError unless products of ``in_fmt`` operands (times ``b_fmt`` operands, when given:
    the two streams of a mixed configuration) can be accumulated in ``acc_fmt``.

    The accumulator must be able to hold the specials the operands can produce (a product of
    infinities needs an infinity; any NaN operand needs a NaN). A product of two formats has an
    infinity exactly when one of them has (a finite non-zero times an infinity), and can be NaN
    when one has a NaN or an infinity (0 * inf), so each operand format is checked on its own;
    ``names`` (A's, B's) are the parameters the message names. Nothing else is required: the
    product is never held in ``acc_fmt`` (it is exact and rounded once with the sum), so the
    accumulator's range and precision need not cover it.
    """
    for fmt, name in ((in_fmt, names[0]), (in_fmt if b_fmt is None else b_fmt, names[1])):
        if fmt.has_inf and not acc_fmt.has_inf:
            raise ValueError(f"acc_format {acc_fmt.label} has no infinities but {name} {fmt.label} "
                             "has them; use an 'ieee' accumulation format")
        if fmt.has_nan and not acc_fmt.has_nan:
            raise ValueError(f"acc_format {acc_fmt.label} has no NaN but {name} {fmt.label} has one")


def fp_add(fmt, a, b, rounding="nearest", rand=None, rbits=None) -> np.ndarray:
    """``round(a + b)`` in ``fmt``, one rounding of the exact sum; returns codes."""
    fmt = format_by_name(fmt, "fmt")
    a = check_codes(fmt, a, "a")
    b = check_codes(fmt, b, "b")
    shape = broadcast_operands(a=a, b=b)
    rounding, rand, rbits = check_rounding(rounding, rand, rbits, shape)
    a, b = np.broadcast_arrays(a, b)
    exact, sticky = add_exact(fmt.unpack(a), fmt.unpack(b))
    out = pack(fmt, round_unpacked(fmt, exact, sticky, rounding, rand, rbits, checked=True))
    if rand is not None:
        shape = np.broadcast_shapes(shape, rand.shape)
    return np.broadcast_to(out, shape).copy() if out.shape != shape else out


def fp_mul_exact(in_fmt, a, b, b_fmt=None):
    """The exact (unrounded) product of two codes, as an :class:`~fp8mac.model.formats.Unpacked`:
    ``a`` in ``in_fmt``, ``b`` in ``b_fmt`` (default ``in_fmt``)."""
    in_fmt = format_by_name(in_fmt, "in_fmt")
    b_fmt = in_fmt if b_fmt is None else format_by_name(b_fmt, "b_fmt")
    a, b = check_codes(in_fmt, a, "a"), check_codes(b_fmt, b, "b")
    broadcast_operands(a=a, b=b)
    a, b = np.broadcast_arrays(a, b)
    return mul_exact(in_fmt.unpack(a), b_fmt.unpack(b))


def _mac_operands(acc_fmt, in_fmt, acc, a, b, b_fmt=None):
    """The formats (by name or value: accumulator, A's, B's; B's defaults to ``in_fmt``) and the
    checked code arrays of a MAC step's operands."""
    acc_fmt = format_by_name(acc_fmt, "acc_fmt")
    in_fmt = format_by_name(in_fmt, "in_fmt")
    b_fmt = in_fmt if b_fmt is None else format_by_name(b_fmt, "b_fmt")
    if b_fmt is in_fmt:
        check_format_pair(acc_fmt, in_fmt)
    else:
        check_format_pair(acc_fmt, in_fmt, b_fmt, names=("in_fmt", "b_fmt"))
    return (acc_fmt, in_fmt, b_fmt, check_codes(acc_fmt, acc, "acc"), check_codes(in_fmt, a, "a"),
            check_codes(b_fmt, b, "b"))


def fp_fma(acc_fmt, in_fmt, acc, a, b, rounding="nearest", rand=None, rbits=None, b_fmt=None) -> np.ndarray:
    """The fused MAC step ``round(acc + a * b)``: ``acc`` in ``acc_fmt``, ``a`` in ``in_fmt``,
    ``b`` in ``b_fmt`` (default ``in_fmt``: both operands in one format).

    The product is exact and the sum is rounded once to ``acc_fmt``; returns ``acc_fmt`` codes.
    """
    acc_fmt, in_fmt, b_fmt, acc, a, b = _mac_operands(acc_fmt, in_fmt, acc, a, b, b_fmt)
    shape = broadcast_operands(acc=acc, a=a, b=b)
    rounding, rand, rbits = check_rounding(rounding, rand, rbits, shape)
    if rand is not None:
        shape = np.broadcast_shapes(shape, rand.shape)
    acc, a, b = np.broadcast_arrays(acc, a, b)
    prod = mul_exact(in_fmt.unpack(a), b_fmt.unpack(b))
    exact, sticky = add_exact(acc_fmt.unpack(acc), prod)
    out = pack(acc_fmt, round_unpacked(acc_fmt, exact, sticky, rounding, rand, rbits, checked=True))
    return np.broadcast_to(out, shape).copy() if out.shape != shape else out


def fp_dot(acc_fmt, in_fmt, acc, a, b, rounding="nearest", rand=None, rbits=None, b_fmt=None) -> np.ndarray:
    """The multi-term fused MAC step ``round(acc + a[..., 0]*b[..., 0] + ... + a[..., d-1]*b[..., d-1])``.

    ``a`` and ``b`` are ``in_fmt`` codes (``b`` in ``b_fmt`` when given) whose last axis holds
    the d terms (d >= 1; the two broadcast together, last axis included); ``acc`` is ``acc_fmt``
    codes broadcasting with their other axes. The result (``acc_fmt`` codes, shape of those
    other axes broadcast with ``acc`` and ``rand``) is the exact sum of ``acc`` and the d exact
    products rounded **once**, with the rounding definitions of ARCHITECTURE.md §2 (as
    :func:`fp_fma`, which is the case d = 1, bit for bit). ``rand`` holds one draw per result.

    The exact sum is formed by :func:`~fp8mac.model.rounding.sum_exact` on one integer grid
    (not with :func:`~fp8mac.model.rounding.add_exact`'s 60-bit window: two large products may
    cancel exactly and leave a tiny third one). Specials: NaN if ``acc`` or an operand is NaN,
    for any 0 * inf, or when +inf and -inf both occur among ``acc`` and the products; otherwise
    an infinity (its sign) if any term is infinite. An exact zero sum is +0 unless every term
    (``acc`` and every product) is -0; a non-zero sum that rounds to zero keeps its sign.

    Raises
    ------
    ValueError
        For an unknown format, codes out of range, shapes that do not broadcast, ``a`` or ``b``
        without a terms axis (0-d) or with no terms, or a bad rounding request.
    """
    acc_fmt, in_fmt, b_fmt, acc, a, b = _mac_operands(acc_fmt, in_fmt, acc, a, b, b_fmt)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"a and b must have a last axis of d terms, got shapes {a.shape} and {b.shape}")
    terms = broadcast_operands(a=a, b=b)
    if terms[-1] == 0:
        raise ValueError(f"a and b must hold at least one term (last axis), got shapes {a.shape} and {b.shape}")
    try:
        shape = np.broadcast_shapes(acc.shape, terms[:-1])
    except ValueError:
        raise ValueError(f"operand shapes do not broadcast: acc {acc.shape} with the other axes of "
                         f"a and b {terms[:-1]}") from None
    rounding, rand, rbits = check_rounding(rounding, rand, rbits, shape)
    a, b = np.broadcast_to(a, shape + terms[-1:]), np.broadcast_to(b, shape + terms[-1:])
    acc = np.broadcast_to(acc, shape)[..., None]
    prod = mul_exact(in_fmt.unpack(a), b_fmt.unpack(b))
    x = Unpacked(*(np.concatenate([np.broadcast_to(u, acc.shape), p], axis=-1)
                   for u, p in zip(acc_fmt.unpack(acc), prod)))
    exact, sticky = sum_exact(x)
    out = pack(acc_fmt, round_unpacked(acc_fmt, exact, sticky, rounding, rand, rbits, checked=True))
    if rand is not None:
        shape = np.broadcast_shapes(shape, rand.shape)
    return np.broadcast_to(out, shape).copy() if out.shape != shape else out
