"""``FloatMultiplier``: the exact product of two operands (the first half of a MAC step)."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.formats import FloatFormat, format_by_name

from .formats import _exp_range, signed_width, unpack, unpacked_layout

__all__ = ["FloatMultiplier", "operand_formats"]


def operand_formats(in_format, b_format=None) -> tuple[FloatFormat, FloatFormat]:
    """``(a_format, b_format)`` as FloatFormat values: ``in_format`` for the A operand and
    ``b_format`` (default: ``in_format``) for the B operand; ValueError naming the parameter."""
    fa = format_by_name(in_format, "in_format")
    return fa, fa if b_format is None else format_by_name(b_format, "b_format")


class FloatMultiplier(wiring.Component):
    """Exact product of an ``in_format`` code and a ``b_format`` code, unrounded.

    ``product = a * b`` as the model's :func:`~fp8mac.model.rounding.mul_exact` of the two
    unpacked operands, bit for bit: ``sig`` is the integer product of the significands (hidden
    bits included, subnormals as they are, so not necessarily normalized), ``exp`` the sum of the
    ulp exponents, ``sign`` the XOR of the signs; ``nan`` is set for a NaN operand or 0 * inf,
    ``inf`` for any other product with an infinite operand (``sig`` is then 0).

    No rounding happens: the product of a p-bit and a q-bit significand needs p + q bits (6 for
    fp8_e5m2, 8 for fp8_e4m3, 7 for one of each).

    Combinational: latency 0 cycles.

    Parameters
    ----------
    in_format : FloatFormat or str
        Format of ``a`` (a :data:`~fp8mac.model.formats.FORMATS` name or a FloatFormat).
    b_format : FloatFormat or str, optional
        Format of ``b``; default ``in_format`` (HFP8 multiplies E4M3 by E5M2, issue 16).

    Members
    -------
    a : In(in_format.width)
    b : In(b_format.width)
        Operand codes.
    product : Out(FloatMultiplier.product_layout(in_format, b_format))
        The exact product, an :func:`~fp8mac.hw.formats.unpacked_layout`.

    Raises
    ------
    ValueError
        If ``in_format`` or ``b_format`` is not a FloatFormat or a preset name.
    """

    def __init__(self, in_format, b_format=None):
        try:
            self._in_format, self._b_format = operand_formats(in_format, b_format)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        super().__init__({"a": In(self._in_format.width), "b": In(self._b_format.width),
                          "product": Out(self.product_layout(self._in_format, self._b_format))})

    @property
    def in_format(self) -> FloatFormat:
        """The format of ``a``."""
        return self._in_format

    @property
    def b_format(self) -> FloatFormat:
        """The format of ``b``."""
        return self._b_format

    @staticmethod
    def product_layout(in_format, b_format=None):
        """The product's :func:`~fp8mac.hw.formats.unpacked_layout`: the sum of the two
        precisions in significand bits and an exponent wide enough for the sum of any two operand
        exponents."""
        fa, fb = operand_formats(in_format, b_format)
        (lo_a, hi_a), (lo_b, hi_b) = _exp_range(fa), _exp_range(fb)
        return unpacked_layout(fa.precision + fb.precision, signed_width(lo_a + lo_b, hi_a + hi_b))

    def elaborate(self, platform):
        m = Module()
        x = unpack(self._in_format, self.a)
        y = unpack(self._b_format, self.b)
        x_zero = (x.sig == 0) & ~x.inf & ~x.nan
        y_zero = (y.sig == 0) & ~y.inf & ~y.nan
        nan = x.nan | y.nan | (x.inf & y_zero) | (y.inf & x_zero)
        m.d.comb += [
            self.product.sig.eq(x.sig * y.sig),
            self.product.exp.eq(x.exp + y.exp),
            self.product.sign.eq(x.sign ^ y.sign),
            self.product.nan.eq(nan),
            self.product.inf.eq((x.inf | y.inf) & ~nan),
        ]
        return m
