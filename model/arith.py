"""Rounded arithmetic on codes: ``fp_add`` and the fused MAC step ``fp_fma`` (ARCHITECTURE.md §2-3).

Both form the exact result with :func:`~fp8mac.model.rounding.add_exact` /
:func:`~fp8mac.model.rounding.mul_exact` and round it once with
:func:`~fp8mac.model.rounding.round_unpacked`. They broadcast like NumPy.
"""

from __future__ import annotations

import numpy as np

from .formats import FloatFormat, check_codes, format_by_name
from .rounding import add_exact, check_rounding, mul_exact, pack, round_unpacked

__all__ = ["fp_add", "fp_mul_exact", "fp_fma", "check_format_pair", "broadcast_operands"]


def broadcast_operands(**operands):
    """The broadcast shape of named arrays; ValueError naming each operand's shape if none."""
    try:
        return np.broadcast_shapes(*(np.shape(v) for v in operands.values()))
    except ValueError:
        shapes = ", ".join(f"{name} {np.shape(v)}" for name, v in operands.items())
        raise ValueError(f"operand shapes do not broadcast: {shapes}") from None


def check_format_pair(acc_fmt: FloatFormat, in_fmt: FloatFormat):
    """ValueError unless products of ``in_fmt`` operands can be accumulated in ``acc_fmt``.

    The accumulator must be able to hold the specials the operands can produce (a product of
    infinities needs an infinity; any NaN operand needs a NaN).
    """
    if in_fmt.has_inf and not acc_fmt.has_inf:
        raise ValueError(f"acc_format {acc_fmt.label} has no infinities but in_format {in_fmt.label} "
                         "has them; use an 'ieee' accumulation format")
    if in_fmt.has_nan and not acc_fmt.has_nan:
        raise ValueError(f"acc_format {acc_fmt.label} has no NaN but in_format {in_fmt.label} has one")


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


def fp_mul_exact(in_fmt, a, b):
    """The exact (unrounded) product of two codes, as an :class:`~fp8mac.model.formats.Unpacked`."""
    in_fmt = format_by_name(in_fmt, "in_fmt")
    a, b = check_codes(in_fmt, a, "a"), check_codes(in_fmt, b, "b")
    broadcast_operands(a=a, b=b)
    a, b = np.broadcast_arrays(a, b)
    return mul_exact(in_fmt.unpack(a), in_fmt.unpack(b))


def fp_fma(acc_fmt, in_fmt, acc, a, b, rounding="nearest", rand=None, rbits=None) -> np.ndarray:
    """The fused MAC step ``round(acc + a * b)``: ``acc`` in ``acc_fmt``, ``a, b`` in ``in_fmt``.

    The product is exact and the sum is rounded once to ``acc_fmt``; returns ``acc_fmt`` codes.
    """
    acc_fmt = format_by_name(acc_fmt, "acc_fmt")
    in_fmt = format_by_name(in_fmt, "in_fmt")
    check_format_pair(acc_fmt, in_fmt)
    acc = check_codes(acc_fmt, acc, "acc")
    a = check_codes(in_fmt, a, "a")
    b = check_codes(in_fmt, b, "b")
    shape = broadcast_operands(acc=acc, a=a, b=b)
    rounding, rand, rbits = check_rounding(rounding, rand, rbits, shape)
    if rand is not None:
        shape = np.broadcast_shapes(shape, rand.shape)
    acc, a, b = np.broadcast_arrays(acc, a, b)
    prod = mul_exact(in_fmt.unpack(a), in_fmt.unpack(b))
    exact, sticky = add_exact(acc_fmt.unpack(acc), prod)
    out = pack(acc_fmt, round_unpacked(acc_fmt, exact, sticky, rounding, rand, rbits, checked=True))
    return np.broadcast_to(out, shape).copy() if out.shape != shape else out
