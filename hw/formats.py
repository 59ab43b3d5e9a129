"""The hardware view of :mod:`fp8mac.model.formats`: code fields, classification, unpacked values.

The formats themselves are never redefined here: every function takes a
:class:`~fp8mac.model.formats.FloatFormat` (or a preset name) from the model's table.

Two shapes carry floating-point values through the hardware:

* :class:`CodeLayout`, the fields of a code, least significant first (``mantissa``, ``exponent``,
  ``sign``). A view of it (:class:`CodeView`) classifies the code: exactly one of
  :meth:`~CodeView.is_zero`, :meth:`~CodeView.is_subnormal`, :meth:`~CodeView.is_normal`,
  :meth:`~CodeView.is_inf` and :meth:`~CodeView.is_nan` holds. In a format without subnormals a
  subnormal code reads as a (signed) zero: inputs are flushed here, once.
* :func:`unpacked_layout`, an exact value as the model's :class:`~fp8mac.model.formats.Unpacked`:
  ``value = (-1)**sign * sig * 2**exp`` with ``sig = 0`` for zeros, NaNs and infinities.

:func:`unpack` and :func:`pack` convert between the two, combinationally (no logic is added to a
module: they return expressions, usable inside any ``elaborate``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Shape, Value, signed, unsigned
from amaranth.lib import data

from fp8mac.model.formats import FloatFormat, format_by_name

__all__ = ["CodeLayout", "CodeView", "code_layout", "unpacked_layout", "format_unpacked_layout",
           "is_unpacked_layout", "signed_width", "unpack", "pack", "common_format", "holds_exactly",
           "convert_exact"]


def signed_width(lo: int, hi: int) -> int:
    """The narrowest two's complement width holding every integer of ``lo .. hi``."""
    width = 1
    while not -(1 << (width - 1)) <= lo <= hi < (1 << (width - 1)):
        width += 1
    return width


def unpacked_layout(sig_width: int, exp_width: int) -> data.StructLayout:
    """An exact value ``(-1)**sign * sig * 2**exp`` with NaN and infinity flags.

    Same meaning as the model's :class:`~fp8mac.model.formats.Unpacked`: ``exp`` is the weight of
    ``sig``'s least significant bit, ``sig`` is not necessarily normalized and is 0 for zeros, NaNs
    and infinities; ``sign`` is kept for signed zeros and infinities.

    Parameters
    ----------
    sig_width : int
        Significand width in bits, at least 1.
    exp_width : int
        Exponent width in bits (two's complement), at least 2.
    """
    for name, value, low in (("sig_width", sig_width, 1), ("exp_width", exp_width, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    return data.StructLayout({"sig": unsigned(sig_width), "exp": signed(exp_width),
                              "sign": unsigned(1), "nan": unsigned(1), "inf": unsigned(1)})


def is_unpacked_layout(layout) -> bool:
    """Whether ``layout`` is an :func:`unpacked_layout` (of any widths)."""
    if not isinstance(layout, data.StructLayout):
        return False
    fields = dict(layout.members)
    if list(fields) != ["sig", "exp", "sign", "nan", "inf"]:
        return False
    sig, exp = Shape.cast(fields["sig"]), Shape.cast(fields["exp"])
    return (not sig.signed and sig.width >= 1 and exp.signed and exp.width >= 2 and
            all(Shape.cast(fields[k]) == unsigned(1) for k in ("sign", "nan", "inf")))


def _exp_range(fmt: FloatFormat) -> tuple[int, int]:
    """The ``exp`` values :func:`unpack` produces for ``fmt`` (ulp exponents, specials included)."""
    return fmt.emin - fmt.man_bits, fmt.exp_field_max - fmt.bias - fmt.man_bits


def format_unpacked_layout(fmt) -> data.StructLayout:
    """The :func:`unpacked_layout` of one format's values: ``fmt.precision`` significand bits and an
    exponent just wide enough for every code (what :func:`unpack` returns)."""
    fmt = format_by_name(fmt, "fmt")
    return unpacked_layout(fmt.precision, signed_width(*_exp_range(fmt)))


class CodeLayout(data.StructLayout):
    """The fields of a code of ``fmt``, least significant first: ``mantissa``, ``exponent``, ``sign``.

    Views of this layout are :class:`CodeView`\\ s, which classify the code.

    Parameters
    ----------
    fmt : FloatFormat or str
        The format (a :data:`~fp8mac.model.formats.FORMATS` name or a FloatFormat).

    Attributes
    ----------
    format : FloatFormat
    """

    def __init__(self, fmt):
        self._format = format_by_name(fmt, "fmt")
        super().__init__({"mantissa": unsigned(self._format.man_bits),
                          "exponent": unsigned(self._format.exp_bits),
                          "sign": unsigned(1)})

    @property
    def format(self) -> FloatFormat:
        return self._format

    def __call__(self, target):
        return CodeView(self, target)

    def __repr__(self):
        return f"CodeLayout({self._format.label})"


def code_layout(fmt) -> CodeLayout:
    """The :class:`CodeLayout` of ``fmt``."""
    return CodeLayout(fmt)


class CodeView(data.View):
    """A code seen through its :class:`CodeLayout`, with classification.

    Exactly one of ``is_zero``, ``is_subnormal``, ``is_normal``, ``is_inf``, ``is_nan`` is 1 for
    any code. Which codes are infinities and NaNs follows the format's ``specials``; in a format
    without subnormals, subnormal codes are zeros (flush-to-zero of inputs).
    """

    @property
    def _fmt(self) -> FloatFormat:
        return self.shape().format

    def _top_exponent(self):
        return self.exponent == self._fmt.exp_field_max

    def _zero_exponent(self):
        return self.exponent == 0

    def is_nan(self):
        """1 for a NaN code (``ieee``: top exponent, mantissa != 0; ``fn``: S.1...1.1...1)."""
        fmt = self._fmt
        if fmt.specials == "ieee":
            return self._top_exponent() & (self.mantissa != 0)
        if fmt.specials == "fn":
            return self._top_exponent() & (self.mantissa == (1 << fmt.man_bits) - 1)
        return Const(0, 1)

    def is_inf(self):
        """1 for an infinity (``ieee`` formats only: top exponent, mantissa 0)."""
        if self._fmt.specials == "ieee":
            return self._top_exponent() & (self.mantissa == 0)
        return Const(0, 1)

    def is_zero(self):
        """1 for a zero; in a format without subnormals, also for a subnormal code (flushed)."""
        if self._fmt.subnormals:
            return self._zero_exponent() & (self.mantissa == 0)
        return self._zero_exponent()

    def is_subnormal(self):
        """1 for a subnormal value (never in a format without subnormals: those read as zero)."""
        if self._fmt.subnormals:
            return self._zero_exponent() & (self.mantissa != 0)
        return Const(0, 1)

    def is_normal(self):
        """1 for a finite, normal value."""
        return ~self._zero_exponent() & ~self.is_nan() & ~self.is_inf()

    def significand(self):
        """The significand with its hidden bit (``fmt.precision`` bits), as the model's
        ``Unpacked.sig``: 0 for zeros (flushed subnormals included), NaNs and infinities."""
        fmt = self._fmt
        live = ~self.is_nan() & ~self.is_inf()
        if not fmt.subnormals:
            live = live & ~self._zero_exponent()
        sig = Cat(self.mantissa, ~self._zero_exponent())
        return Mux(live, sig, 0)

    def ulp_exponent(self):
        """The weight of the significand's least significant bit (signed), as the model's
        ``Unpacked.exp``: ``exponent - bias - man_bits``, or ``emin - man_bits`` when the exponent
        field is 0."""
        fmt = self._fmt
        lo, hi = _exp_range(fmt)
        biased = Mux(self._zero_exponent(), 1, self.exponent)
        return (biased - (fmt.bias + fmt.man_bits)).as_signed()[:signed_width(lo, hi)].as_signed()


def unpack(fmt, code) -> data.View:
    """The exact value of a code of ``fmt``, as a view of :func:`format_unpacked_layout` (``fmt``).

    Bit for bit the model's ``fmt.unpack``: subnormals are flushed when the format has none, NaNs
    and infinities have ``sig = 0``.

    Parameters
    ----------
    fmt : FloatFormat or str
    code : value-like
        ``fmt.width`` bits, or a :class:`CodeView`.
    """
    layout = code_layout(fmt)
    code = Value.cast(code)
    if len(code) != layout.size:
        raise ValueError(f"code must be {layout.size} bits wide for format {layout.format.label}, "
                         f"not {len(code)}")
    view = layout(code)
    out = format_unpacked_layout(layout.format)
    return out(Cat(view.significand(), view.ulp_exponent(), view.sign, view.is_nan(),
                   view.is_inf()))


def pack(fmt, value) -> Value:
    """The code of a canonical unpacked value of ``fmt`` (as the model's ``rounding.pack``).

    Canonical means what rounding produces: ``sig < 2**precision`` and, when
    ``sig >= 2**man_bits``, ``exp`` is the value's ulp exponent; a smaller ``sig`` (a subnormal or
    zero) is packed with exponent field 0. NaN becomes the format's one canonical NaN; an infinity
    keeps its sign. Returns ``fmt.width`` bits.

    Parameters
    ----------
    fmt : FloatFormat or str
    value : View
        A view of an :func:`unpacked_layout`.
    """
    fmt = format_by_name(fmt, "fmt")
    m = fmt.man_bits
    if not isinstance(value, data.View) or not is_unpacked_layout(value.shape()):
        raise ValueError(f"value must be a view of an unpacked_layout, not {value!r}")
    normal = value.sig[m] if len(value.sig) > m else Const(0, 1)
    field = Mux(normal, value.exp + (m + fmt.bias), 0)[:fmt.exp_bits]
    code = Cat(value.sig[:m], field, value.sign)
    if fmt.has_inf:
        code = Mux(value.inf, Cat(Const(0, m), Const(fmt.exp_field_max, fmt.exp_bits), value.sign),
                   code)
    if fmt.has_nan:
        code = Mux(value.nan, Const(fmt.nan_code, fmt.width), code)
    return code


# ---- run-time format selection ---------------------------------------------------------------------

def holds_exactly(dst: FloatFormat, src: FloatFormat) -> bool:
    """Whether every value of ``src`` (its specials and signed zeros included) is a value of
    ``dst``: as many mantissa bits or more, an ulp as small or smaller at the bottom, a top binade
    as high or higher, and ``src``'s specials."""
    return (dst.man_bits >= src.man_bits and dst.emin - dst.man_bits <= src.emin - src.man_bits
            and dst.emax >= src.emax and (dst.has_inf or not src.has_inf)
            and (dst.has_nan or not src.has_nan) and (dst.subnormals or dst.emin <= src.emin - src.man_bits))


def common_format(formats, name: str = "formats") -> FloatFormat:
    """The smallest format that holds every value of each of ``formats`` exactly: the internal
    code of an operand stream whose format is chosen at run time.

    One format is its own common format. Otherwise: the most mantissa bits of any, the lowest
    ``emin`` of any (so every subnormal of each is a normal or subnormal of it), the highest
    ``emax``, infinities if any has them (else a NaN if any has one), subnormals, and the fewest
    exponent bits that reach that ``emax`` with its top exponent field reserved for specials.
    For fp8_e4m3 and fp8_e5m2 it is (1, 5, 3) with bias 15 and IEEE specials: 9 bits.
    ValueError (naming ``name``) if no format of at most 8 exponent bits does."""
    formats = [format_by_name(f, name) for f in formats]
    if not formats:
        raise ValueError(f"{name}: no format given")
    if len(set(formats)) == 1:
        return formats[0]
    man = max(f.man_bits for f in formats)
    emin, emax = min(f.emin for f in formats), max(f.emax for f in formats)
    specials = ("ieee" if any(f.has_inf for f in formats)
                else "fn" if any(f.has_nan for f in formats) else "none")
    for exp_bits in range(2, 9):
        bias = 1 - emin
        if not 0 <= bias <= (1 << exp_bits) - 1:
            continue
        top = (1 << exp_bits) - 1 - (specials != "none")  # fn: the top binade loses its last code
        if top - bias >= emax:
            label = "|".join(f.label for f in formats)
            return FloatFormat(exp_bits, man, bias, specials, name=f"common({label})")
    raise ValueError(f"{name}: no format of at most 8 exponent bits holds every value of "
                     + ", ".join(f.label for f in formats))


def convert_exact(src, dst, code) -> Value:
    """The ``dst`` code of the value of a ``src`` code, exactly (``dst`` must hold every ``src``
    value: :func:`holds_exactly`); combinational, a few gates: a constant exponent offset for
    normal values, a shift chosen by the leading one for subnormals, the specials' codes.

    NaN becomes ``dst``'s canonical NaN, infinities and zeros keep their sign, a flushed
    subnormal (``src`` without subnormals) becomes a zero of its sign."""
    src, dst = format_by_name(src, "src"), format_by_name(dst, "dst")
    if not holds_exactly(dst, src):
        raise ValueError(f"format {dst.label} does not hold every value of {src.label}")
    view = code_layout(src)(Value.cast(code))
    ms, md = src.man_bits, dst.man_bits
    mant, field = view.mantissa, view.exponent
    w = dst.exp_bits
    # Normal: the same binade, the mantissa padded below.
    out = Cat(Const(0, md - ms), mant, (field + (dst.bias - src.bias))[:w])
    # Subnormal: the leading one (bit j) decides; the highest set bit wins.
    sub = Const(0, md + w)
    for j in range(ms):
        e = src.emin - ms + j  # the leading one's exponent
        if e >= dst.emin:      # a normal of dst: drop the leading one, align the rest
            cand = Cat(Const(0, md - j), mant[:j], Const(e + dst.bias, w)) if j else \
                Cat(Const(0, md), Const(e + dst.bias, w))
        else:                  # still subnormal in dst: the same bits, at dst's smaller ulp
            shift = (src.emin - ms) - (dst.emin - md)
            cand = Cat(Const(0, shift), mant, Const(0, md + w - ms - shift))[:md + w]
        sub = Mux(mant[j], cand, sub)
    out = Mux(view.is_subnormal(), sub, out)
    out = Mux(view.is_zero(), 0, out)
    if src.has_inf:
        out = Mux(view.is_inf(), Const(dst.inf_code, md + w), out)
    code_out = Cat(out, view.sign)
    if src.has_nan:
        code_out = Mux(view.is_nan(), Const(dst.nan_code, dst.width), code_out)
    return code_out
