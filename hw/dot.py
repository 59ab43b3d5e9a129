"""``ProductSum``: the exact sum of ``d`` products, the front half of a multi-term fused MAC step.

A dot-width-``d`` MAC step (ARCHITECTURE.md §3b) is ``round(acc + a_0*b_0 + ... + a_(d-1)*b_(d-1))``
with ONE rounding of the exact sum. It is built as two blocks:

* :class:`ProductSum` forms ``S = sum of the d products`` exactly, as a fixed-point integer;
* a :class:`~fp8mac.hw.adder.MacUnit` adds ``S`` to the accumulator and rounds once (its argument
  holds for any exact addend, here one ``ProductSum.sum_layout`` wide).

Why a fixed-point sum and not an alignment window with a sticky bit: with three or more terms a
window anchored at the largest exponent is not exact. Two large products can cancel exactly and
leave a third one that lay entirely below the window, so the sticky bit would stand for the whole
result. A two-term adder (:class:`~fp8mac.hw.adder.MacUnit`) escapes this because two terms can
only cancel heavily when their exponents are within one of each other. The products of small
formats span a short range of weights, so the exact sum is cheap enough: 64 bits for
``fp8_e5m2`` (products from ``2**-32`` to below ``2**32``), 36 for ``fp8_e4m3``, 80 for ``fp16``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.arith import check_format_pair
from fp8mac.model.formats import FloatFormat, format_by_name

from .adder import _check_rounding, count_leading_zeros
from .formats import signed_width, unpack, unpacked_layout
from .multiplier import FloatMultiplier

__all__ = ["ProductSum", "DotMacUnit", "product_frame", "dot_frame", "use_dot_frame"]


def product_frame(in_format) -> tuple[int, int]:
    """``(lsb, width)`` of the fixed-point frame that holds every finite product of two
    ``in_format`` values exactly: ``lsb`` is the exponent of its last bit (twice the format's
    smallest ulp exponent) and ``width`` the bits up to, not including, ``2 * (emax + 1)``."""
    fmt = format_by_name(in_format, "in_format")
    lsb = 2 * (fmt.emin - fmt.man_bits)
    return lsb, 2 * (fmt.emax + 1) - lsb


class ProductSum(wiring.Component):
    """Exact ``S = a_0*b_0 + ... + a_(d-1)*b_(d-1)`` of ``d`` pairs of ``in_format`` codes.

    Each product (a :class:`~fp8mac.hw.multiplier.FloatMultiplier`, exact) is shifted to its place
    in the frame of :func:`product_frame`, negated if negative, and the ``d`` terms are added as
    two's complement integers ``ceil(log2 d) + 1`` bits wider than the frame (Yosys builds one
    carry-save tree from the sum). ``sum`` is the magnitude and sign of the result, its ``exp`` the
    frame's constant lsb: an exact :func:`~fp8mac.hw.formats.unpacked_layout` value, not
    normalized.

    Specials: ``nan`` if an operand is NaN, a product is 0 * inf, or products of both infinite
    signs meet; else ``inf`` (with that sign) if a product is infinite. A zero sum is -0 only if
    every product is -0 (the model's rule for exact zero sums), else +0.

    Combinational: latency 0 cycles.

    Parameters
    ----------
    in_format : FloatFormat or str
        Operand format.
    dot : int
        Number of products, a power of two, 2..64.

    Members
    -------
    a, b : In(dot * in_format.width)
        Operand codes, term ``j`` in bits ``[j*W, (j+1)*W)``.
    sum : Out(ProductSum.sum_layout(in_format, dot))
        The exact sum.

    Raises
    ------
    ValueError
        On an unknown format or a ``dot`` that is not a power of two in 2..64.
    """

    def __init__(self, in_format, dot: int):
        try:
            self._in_format = format_by_name(in_format, "in_format")
            self._dot = self._check_dot(dot)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        width = self._dot * self._in_format.width
        super().__init__({"a": In(width), "b": In(width),
                          "sum": Out(self.sum_layout(self._in_format, self._dot))})

    @staticmethod
    def _check_dot(dot) -> int:
        if isinstance(dot, bool) or not isinstance(dot, int) or not 2 <= dot <= 64 or dot & (dot - 1):
            raise ValueError(f"dot must be a power of two in 2..64, not {dot!r}")
        return dot

    @staticmethod
    def sum_layout(in_format, dot: int):
        """The ``sum`` member's :func:`~fp8mac.hw.formats.unpacked_layout`: frame width plus
        ``log2(dot)`` significand bits; the exponent field holds the frame's lsb."""
        lsb, width = product_frame(in_format)
        return unpacked_layout(width + (dot - 1).bit_length(), signed_width(lsb, lsb))

    @property
    def in_format(self) -> FloatFormat:
        return self._in_format

    @property
    def dot(self) -> int:
        return self._dot

    def elaborate(self, platform):
        m = Module()
        fmt, d = self._in_format, self._dot
        w = fmt.width
        lsb, frame = product_frame(fmt)
        total = frame + (d - 1).bit_length() + 1  # two's complement width of the sum

        prods = []
        for j in range(d):
            mul = FloatMultiplier(fmt)
            m.submodules[f"mul{j}"] = mul
            m.d.comb += [mul.a.eq(self.a[j * w:(j + 1) * w]), mul.b.eq(self.b[j * w:(j + 1) * w])]
            prods.append(mul.product)

        # Place each product: its lsb weight exp sits (exp - lsb) bits above the frame's lsb. The
        # shift is taken modulo the amount's width, which only specials (sig = 0) can exceed.
        amount_width = (frame - 1).bit_length()
        terms, signs = [], []
        for j, p in enumerate(prods):
            placed = Signal(frame, name=f"placed{j}")
            m.d.comb += placed.eq((p.sig << (p.exp - lsb).as_unsigned()[:amount_width])[:frame])
            # Two's complement negation as (x ^ s) + s, the "+ s" folded into the sum below.
            terms.append(Cat(placed, Const(0, total - frame)) ^ p.sign.replicate(total))
            signs.append(p.sign)
        s = Signal(total)
        m.d.comb += s.eq(sum(terms) + sum(signs))
        neg = s[-1]
        mag = Mux(neg, -s, s)[:total - 1]

        nan = Cat(p.nan for p in prods).any()
        pos_inf = Cat(p.inf & ~p.sign for p in prods).any()
        neg_inf = Cat(p.inf & p.sign for p in prods).any()
        nan = nan | (pos_inf & neg_inf)
        inf = (pos_inf | neg_inf) & ~nan
        all_neg_zero = Cat(p.sign & ~p.sig.any() & ~p.nan & ~p.inf for p in prods).all()
        sign = Mux(inf, neg_inf, Mux(s.any(), neg, all_neg_zero))
        m.d.comb += [self.sum.sig.eq(Mux(nan | inf, 0, mag)), self.sum.exp.eq(lsb),
                     self.sum.sign.eq(sign), self.sum.nan.eq(nan), self.sum.inf.eq(inf)]
        return m


def dot_frame(acc_format, in_format, dot: int) -> tuple[int, int]:
    """``(lsb, width)`` of the two's complement frame in which :class:`DotMacUnit` adds an
    ``acc_format`` value and ``dot`` products exactly: the lsb is the smaller of the two formats'
    smallest weights, the top one bit above the largest possible magnitude (sign bit included)."""
    acc = format_by_name(acc_format, "acc_format")
    p_lsb, p_width = product_frame(in_format)
    lsb = min(p_lsb, acc.emin - acc.man_bits)
    biggest = dot * (1 << (p_lsb + p_width - lsb)) + (1 << (acc.emax + 1 - lsb))
    return lsb, biggest.bit_length() + 1


def use_dot_frame(acc_format, in_format, dot: int) -> bool:
    """Whether a dot-width step is built as one :class:`DotMacUnit` (True) or as a
    :class:`ProductSum` feeding a :class:`~fp8mac.hw.adder.MacUnit` (False): the single frame wins
    while it is at most the accumulator's precision (plus 2) wider than the product sum. Measured
    on osu018 (dot 8, e5m2 -> fp16_ibm, nearest): 261,320 um^2 against 317,337 (ProductSum 194,164
    + MacUnit 123,173); with an fp32 accumulator the single frame would be about 280 bits wide."""
    acc = format_by_name(acc_format, "acc_format")
    frame = dot_frame(acc, in_format, dot)[1]
    return frame <= ProductSum.sum_layout(in_format, dot)["sig"].width + acc.precision + 2


class DotMacUnit(wiring.Component):
    """A whole dot-width-``d`` MAC step in one fixed-point frame:
    ``result = round(acc + a_0*b_0 + ... + a_(d-1)*b_(d-1))``, one rounding of the exact sum.

    The accumulator and the ``d`` exact products (:class:`~fp8mac.hw.multiplier.FloatMultiplier`)
    are shifted to their places in the frame of :func:`dot_frame`, which holds every finite value
    of both formats exactly, and added as two's complement integers (one carry-save tree). The
    magnitude of the exact sum is then normalized (leading-zero count; the shift stops at the
    subnormal exponent) and rounded as :class:`~fp8mac.hw.adder.MacUnit` rounds (ARCHITECTURE.md
    §2): every bit of the exact value is in the frame, so no sticky approximation is involved.
    Then overflow, flush-to-zero and specials as in ``MacUnit``; an exact zero sum is -0 only when
    the accumulator and every product are -0. Bit for bit the model's
    :func:`~fp8mac.model.arith.fp_dot`.

    Against :class:`ProductSum` + ``MacUnit`` (the general structure) this saves the second
    alignment: one frame, one normalizer. It needs a frame that covers the accumulator's range too,
    so it suits accumulators whose range is close to the products' (fp16_ibm for FP8 operands:
    76 bits); for wide accumulators (fp32) the general structure is smaller.

    Combinational: latency 0 cycles.

    Parameters
    ----------
    acc_format, in_format : FloatFormat or str
    dot : int
        Products per step, a power of two, 2..64.
    rounding : {"nearest", "stochastic", "zero"}
    rbits : int, optional
        Random bits per stochastic rounding (``stochastic`` only).

    Members
    -------
    acc : In(acc_format.width)
    a, b : In(dot * in_format.width)
        Operand codes, term ``j`` in bits ``[j*W, (j+1)*W)``.
    rand : In(rbits)
        Random bits (``stochastic`` only).
    result : Out(acc_format.width)
    """

    def __init__(self, acc_format, in_format, dot: int, rounding="nearest", rbits=None):
        try:
            self._acc_format = format_by_name(acc_format, "acc_format")
            self._in_format = format_by_name(in_format, "in_format")
            check_format_pair(self._acc_format, self._in_format)
            self._dot = ProductSum._check_dot(dot)
            self._rbits = _check_rounding(rounding, rbits)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        self._rounding = rounding
        wi = self._dot * self._in_format.width
        members = {"acc": In(self._acc_format.width), "a": In(wi), "b": In(wi)}
        if rounding == "stochastic":
            members["rand"] = In(self._rbits)
        members["result"] = Out(self._acc_format.width)
        super().__init__(members)

    @property
    def frame(self) -> tuple[int, int]:
        return dot_frame(self._acc_format, self._in_format, self._dot)

    def elaborate(self, platform):
        m = Module()
        fmt, fin, d = self._acc_format, self._in_format, self._dot
        p, man = fmt.precision, fmt.man_bits
        w = fin.width
        lsb, width = self.frame
        p_lsb, p_width = product_frame(fin)

        def node(name, expr):
            expr = Value.cast(expr)
            sig = Signal(expr.shape(), name=name)
            m.d.comb += sig.eq(expr)
            return sig

        def place(name, value, lo):
            """An unpacked value at its place in the frame, negated if negative, as the
            (x ^ s) + s of a two's complement negation (the + s is added by the caller)."""
            amount = (value.exp - lo).as_unsigned()[:(width - 1).bit_length()]
            placed = node(name, (value.sig << amount)[:width - 1])
            return Cat(placed, Const(0, 1)) ^ value.sign.replicate(width)

        terms = []
        prods = []
        for j in range(d):
            mul = FloatMultiplier(fin)
            m.submodules[f"mul{j}"] = mul
            m.d.comb += [mul.a.eq(self.a[j * w:(j + 1) * w]), mul.b.eq(self.b[j * w:(j + 1) * w])]
            prods.append(mul.product)
            terms.append(place(f"placed{j}", mul.product, lsb))
        acc = unpack(fmt, self.acc)
        terms.append(place("placed_acc", acc, lsb))
        signs = [v.sign for v in prods + [acc]]
        s = node("s", (sum(terms) + sum(signs))[:width])
        neg = s[-1]
        mag = node("mag", Mux(neg, -s, s)[:width - 1])
        mw = width - 1

        # Normalize: leading one to bit mw-1, but no further than the subnormal exponent. A
        # leading one at bit i has biased exponent lsb + i + bias.
        top_field = lsb + mw - 1 + fmt.bias
        assert top_field >= 1
        lz = count_leading_zeros(mag)
        shift = node("shift", Mux(lz >= top_field, top_field - 1, lz)[:len(lz)])
        pad = (self._rbits or 1) + 1  # zero bits below the frame: the exact value has none there
        norm = node("norm", Cat(Const(0, pad), (mag << shift)[:mw]))
        nw = mw + pad
        below = nw - p  # bits of norm below the result's ulp
        kept = norm[below:]
        if self._rounding == "nearest":
            inc = norm[below - 1] & (norm[:below - 1].any() | kept[0])
        elif self._rounding == "stochastic":
            r = self._rbits
            inc = (norm[below - r:below] + self.rand)[r]
        else:
            inc = Const(0, 1)
        e_field = Mux(kept[man], top_field - shift, 0)[:top_field.bit_length()]
        magnitude = node("magnitude", Cat(kept[:man], e_field) + inc)
        overflow = magnitude > fmt.max_code
        if not fmt.subnormals:
            magnitude = Mux(magnitude[man:].any(), magnitude, 0)
        all_neg_zero = Cat(v.sign & ~v.sig.any() & ~v.nan & ~v.inf for v in prods + [acc]).all()
        sign = Mux(s.any(), neg, all_neg_zero)

        rw = fmt.width
        big = fmt.inf_code if fmt.overflow == "inf" and self._rounding != "zero" else fmt.max_code
        result = Mux(overflow, Cat(Const(big, rw - 1), sign), Cat(magnitude[:rw - 1], sign))

        values = prods + [acc]
        pos_inf = Cat(v.inf & ~v.sign for v in values).any()
        neg_inf = Cat(v.inf & v.sign for v in values).any()
        nan = Cat(v.nan for v in values).any() | (pos_inf & neg_inf)
        inf = (pos_inf | neg_inf) & ~nan
        if fmt.has_inf:
            result = Mux(inf, Cat(Const(fmt.inf_code, rw - 1), neg_inf), result)
        elif fmt.has_nan:
            nan = nan | inf
        else:
            result = Mux(inf, Cat(Const(fmt.max_code, rw - 1), neg_inf), result)
        if fmt.has_nan:
            result = Mux(nan, fmt.nan_code, result)
        m.d.comb += self.result.eq(result)
        return m
