"""``FloatMultiplier``: the exact product of two operands (the first half of a MAC step)."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.formats import FloatFormat, format_by_name

from .formats import _exp_range, signed_width, unpack, unpacked_layout

__all__ = ["FloatMultiplier"]


class FloatMultiplier(wiring.Component):
    """Exact product of two ``in_format`` codes, unrounded.

    ``product = a * b`` as the model's :func:`~fp8mac.model.rounding.mul_exact` of the two
    unpacked operands, bit for bit: ``sig`` is the integer product of the significands (hidden
    bits included, subnormals as they are, so not necessarily normalized), ``exp`` the sum of the
    ulp exponents, ``sign`` the XOR of the signs; ``nan`` is set for a NaN operand or 0 * inf,
    ``inf`` for any other product with an infinite operand (``sig`` is then 0).

    No rounding happens: the significand product of two p-bit significands needs 2p bits (6 for
    fp8_e5m2, 8 for fp8_e4m3).

    Combinational: latency 0 cycles.

    Parameters
    ----------
    in_format : FloatFormat or str
        Operand format (a :data:`~fp8mac.model.formats.FORMATS` name or a FloatFormat).

    Members
    -------
    a, b : In(in_format.width)
        Operand codes.
    product : Out(FloatMultiplier.product_layout(in_format))
        The exact product, an :func:`~fp8mac.hw.formats.unpacked_layout`.

    Raises
    ------
    ValueError
        If ``in_format`` is not a FloatFormat or a preset name.
    """

    def __init__(self, in_format):
        try:
            self._in_format = format_by_name(in_format, "in_format")
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        width = self._in_format.width
        super().__init__({"a": In(width), "b": In(width),
                          "product": Out(self.product_layout(self._in_format))})

    @property
    def in_format(self) -> FloatFormat:
        return self._in_format

    @staticmethod
    def product_layout(in_format):
        """The product's :func:`~fp8mac.hw.formats.unpacked_layout`: ``2 * precision`` significand
        bits and an exponent wide enough for the sum of any two operand exponents."""
        fmt = format_by_name(in_format, "in_format")
        lo, hi = _exp_range(fmt)
        return unpacked_layout(2 * fmt.precision, signed_width(2 * lo, 2 * hi))

    def elaborate(self, platform):
        m = Module()
        x = unpack(self._in_format, self.a)
        y = unpack(self._in_format, self.b)
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
