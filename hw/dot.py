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
from .formats import (code_layout, format_unpacked_layout, signed_width, unpack,
                      unpacked_layout)
from .multiplier import FloatMultiplier, operand_formats

__all__ = ["ProductSum", "DotMacUnit", "product_frame", "dot_frame", "use_dot_frame",
           "biased_exponent", "place_signed", "normalize_top", "signed_sum"]


def product_frame(in_format, b_format=None) -> tuple[int, int]:
    """``(lsb, width)`` of the fixed-point frame that holds every finite product of an
    ``in_format`` value and a ``b_format`` value (default ``in_format``) exactly: ``lsb`` is the
    exponent of its last bit (the sum of the formats' smallest ulp exponents) and ``width`` the
    bits up to, not including, ``(emax_a + 1) + (emax_b + 1)``."""
    fa, fb = operand_formats(in_format, b_format)
    lsb = (fa.emin - fa.man_bits) + (fb.emin - fb.man_bits)
    return lsb, (fa.emax + 1) + (fb.emax + 1) - lsb


def multipliers(m, in_format, dot, a, b, b_format=None) -> list:
    """``dot`` :class:`~fp8mac.hw.multiplier.FloatMultiplier` submodules ``mul0`` ..
    ``mul<dot-1>`` of ``m`` on the terms of ``a`` and ``b`` (term ``j`` in bits ``[j*W,
    (j+1)*W)``, ``W`` each operand's format width); returns their exact products."""
    fa, fb = operand_formats(in_format, b_format)
    wa, wb = fa.width, fb.width
    prods = []
    for j in range(dot):
        mul = FloatMultiplier(fa, fb)
        m.submodules[f"mul{j}"] = mul
        m.d.comb += [mul.a.eq(a[j * wa:(j + 1) * wa]), mul.b.eq(b[j * wb:(j + 1) * wb])]
        prods.append(mul.product)
    return prods


class ProductSum(wiring.Component):
    """Exact ``S = a_0*b_0 + ... + a_(d-1)*b_(d-1)`` of ``d`` pairs of codes (``a`` in
    ``in_format``, ``b`` in ``b_format``).

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
        Format of the ``a`` operands.
    dot : int
        Number of products, a power of two, 2..64.
    b_format : FloatFormat or str, optional
        Format of the ``b`` operands; default ``in_format``.

    Members
    -------
    a : In(dot * in_format.width)
    b : In(dot * b_format.width)
        Operand codes, term ``j`` in bits ``[j*W, (j+1)*W)`` (``W`` the operand's format width).
    sum : Out(ProductSum.sum_layout(in_format, dot, b_format))
        The exact sum.

    Raises
    ------
    ValueError
        On an unknown format or a ``dot`` that is not a power of two in 2..64.
    """

    def __init__(self, in_format, dot: int, b_format=None):
        try:
            self._in_format, self._b_format = operand_formats(in_format, b_format)
            self._dot = self._check_dot(dot)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        d = self._dot
        super().__init__({"a": In(d * self._in_format.width), "b": In(d * self._b_format.width),
                          "sum": Out(self.sum_layout(self._in_format, d, self._b_format))})

    @staticmethod
    def _check_dot(dot) -> int:
        if isinstance(dot, bool) or not isinstance(dot, int) or not 2 <= dot <= 64 or dot & (dot - 1):
            raise ValueError(f"dot must be a power of two in 2..64, not {dot!r}")
        return dot

    @staticmethod
    def sum_layout(in_format, dot: int, b_format=None):
        """The ``sum`` member's :func:`~fp8mac.hw.formats.unpacked_layout`: frame width plus
        ``log2(dot)`` significand bits; the exponent field holds the frame's lsb."""
        lsb, width = product_frame(in_format, b_format)
        return unpacked_layout(width + (dot - 1).bit_length(), signed_width(lsb, lsb))

    @property
    def in_format(self) -> FloatFormat:
        """The format of the ``a`` operands."""
        return self._in_format

    @property
    def b_format(self) -> FloatFormat:
        """The format of the ``b`` operands."""
        return self._b_format

    @property
    def dot(self) -> int:
        return self._dot

    def elaborate(self, platform):
        m = Module()
        d = self._dot
        lsb, frame = product_frame(self._in_format, self._b_format)
        total = frame + (d - 1).bit_length() + 1  # two's complement width of the sum

        prods = multipliers(m, self._in_format, d, self.a, self.b, self._b_format)
        s, flags = signed_sum(m, prods, lsb, frame, total)
        neg = s[-1]
        mag = Mux(neg, -s, s)[:total - 1]
        nan, inf, neg_inf, all_neg_zero = flags
        sign = Mux(inf, neg_inf, Mux(s.any(), neg, all_neg_zero))
        m.d.comb += [self.sum.sig.eq(Mux(nan | inf, 0, mag)), self.sum.exp.eq(lsb),
                     self.sum.sign.eq(sign), self.sum.nan.eq(nan), self.sum.inf.eq(inf)]
        return m


def signed_sum(m, prods, lsb: int, frame: int, total: int):
    """The exact sum of the unpacked ``prods`` (each with ``sig`` and ``exp`` such that it lies in
    the fixed-point frame of ``frame`` bits from weight ``lsb``) as a ``total``-bit two's
    complement signal ``s`` of ``m``, and the specials ``(nan, inf, neg_inf, all_neg_zero)``:
    NaN for a NaN product or infinities of both signs, infinite (``neg_inf``: negative)
    otherwise if one is, and whether every product is -0 (a zero sum's sign)."""
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
    nan = Cat(p.nan for p in prods).any()
    pos_inf = Cat(p.inf & ~p.sign for p in prods).any()
    neg_inf = Cat(p.inf & p.sign for p in prods).any()
    nan = nan | (pos_inf & neg_inf)
    inf = (pos_inf | neg_inf) & ~nan
    all_neg_zero = Cat(p.sign & ~p.sig.any() & ~p.nan & ~p.inf for p in prods).all()
    return s, (nan, inf, neg_inf, all_neg_zero)


def biased_exponent(fmt, code) -> Value:
    """The exponent field of a ``fmt`` code with 0 read as 1 (subnormals share the smallest normal
    binade), unsigned: the code's ulp exponent plus ``bias + man_bits``. So the lsb of the product
    of ``a`` and ``b`` lies ``biased_exponent(a) + biased_exponent(b) - 2`` bits above
    :func:`product_frame`'s lsb."""
    exponent = code_layout(fmt)(code).exponent
    return Cat(exponent[0] | (exponent == 0), exponent[1:])


def _node(m, name, expr) -> Signal:
    """A named signal driven by ``expr`` (so that an expression used twice is built once)."""
    expr = Value.cast(expr)
    sig = Signal(expr.shape(), name=name)
    m.d.comb += sig.eq(expr)
    return sig


def place_signed(m, name, sig, amount, sign, width: int) -> Signal:
    """``(sig << amount) ^ sign`` over ``width`` bits: the value placed in its window, and its one's
    complement if ``sign`` is set (every bit the significand does not cover is then 1).

    A logarithmic shifter, smallest step first, whose vacated positions take ``sign`` instead of 0
    (the steps are signals ``{name}_{i}`` of ``m``). Inverting while shifting is cheaper than
    shifting in zeros and inverting ``width`` bits after: after the step of ``2**i`` the
    significand covers at most ``len(sig) + 2**(i+1) - 1`` bits and every other position is the
    sign bit. An ``amount`` that moves the significand out of the window leaves only what stays in
    it (a zero significand gives ``sign`` everywhere).
    """
    sig, sign = Value.cast(sig), Value.cast(sign)
    v = Cat(sig ^ sign.replicate(len(sig)), sign.replicate(width - len(sig)))
    for i, bit in enumerate(Value.cast(amount)):
        step = min(1 << i, width)
        v = _node(m, f"{name}_{i}", Mux(bit, Cat(sign.replicate(step), v[:width - step]), v))
    return v


def normalize_top(m, name, value, shift, keep: int, max_shift: int) -> tuple[Signal, Signal]:
    """``(top, sticky)``: the top ``keep`` bits of ``value << shift`` (zeros shifted in) and the OR
    of every bit below them, for a ``shift`` of at most ``max_shift`` that moves no one out of the
    top (at most the leading zeros of ``value``); signals ``{name}_{i}`` of ``m``.

    A logarithmic shifter taking its largest step first and narrowing as it goes: after the step
    of ``2**i`` the rest of the shift is below ``2**i``, so only the top ``keep + 2**i - 1`` bits
    can still reach ``top``; the bits under them go straight into the sticky OR. (A shifter as wide
    as ``value`` at every step, as ``value << shift`` builds, is about twice the size when the
    sticky needs every bit: 7 x 75 multiplexers against 261 for DotMacUnit's fp16_ibm frame.)
    """
    v = Value.cast(value)
    assert len(v) >= keep
    dropped = []
    for i in reversed(range(len(shift))):
        step, width = 1 << i, len(v)
        shifted = _node(m, f"{name}_{i}",
                        Mux(shift[i], Cat(Const(0, min(step, width)), v[:max(0, width - step)]), v))
        drop = width - min(width, keep + min(step - 1, max_shift))
        if drop:
            dropped.append(shifted[:drop].any())
        v = shifted[drop:]
    return v, _node(m, f"{name}_sticky", Cat(*dropped).any())


def dot_frame(acc_format, in_format, dot: int, b_format=None) -> tuple[int, int]:
    """``(lsb, width)`` of the two's complement frame in which :class:`DotMacUnit` adds an
    ``acc_format`` value and ``dot`` products exactly: the lsb is the smaller of the two formats'
    smallest weights, the top one bit above the largest possible magnitude (sign bit included)."""
    acc = format_by_name(acc_format, "acc_format")
    p_lsb, p_width = product_frame(in_format, b_format)
    lsb = min(p_lsb, acc.emin - acc.man_bits)
    biggest = dot * (1 << (p_lsb + p_width - lsb)) + (1 << (acc.emax + 1 - lsb))
    return lsb, biggest.bit_length() + 1


def use_dot_frame(acc_format, in_format, dot: int, b_format=None) -> bool:
    """Whether a dot-width step is built as one :class:`DotMacUnit` (True) or as a
    :class:`ProductSum` feeding a :class:`~fp8mac.hw.adder.MacUnit` (False): the single frame wins
    while it is at most the accumulator's precision (plus 2) wider than the product sum. Measured
    on osu018 (dot 8, e5m2, nearest): fp16_ibm (a 76-bit frame) 212,157 um^2 against 317,337
    (ProductSum 194,164 + MacUnit 123,173); bf16 (263 bits) 330,321 against 319,217; fp32 (279
    bits) 339,635 against 316,498. The crossover lies between 76 and 263 frame bits, where no
    preset format falls, so this conservative rule picks the smaller one for every preset."""
    acc = format_by_name(acc_format, "acc_format")
    frame = dot_frame(acc, in_format, dot, b_format)[1]
    return frame <= ProductSum.sum_layout(in_format, dot, b_format)["sig"].width + acc.precision + 2


class DotMacUnit(wiring.Component):
    """A whole dot-width-``d`` MAC step in one fixed-point frame:
    ``result = round(acc + a_0*b_0 + ... + a_(d-1)*b_(d-1))``, one rounding of the exact sum.

    The accumulator and the ``d`` exact products (:class:`~fp8mac.hw.multiplier.FloatMultiplier`)
    are added as two's complement integers in the frame of :func:`dot_frame`, which holds every
    finite value of both formats and their sum exactly (one carry-save tree). The exact sum is
    then normalized (leading-zero count; the shift stops at the subnormal exponent) and rounded as
    :class:`~fp8mac.hw.adder.MacUnit` rounds (ARCHITECTURE.md §2): every bit of the exact value is
    in the frame, so no sticky approximation is involved. Then overflow, flush-to-zero and
    specials as in ``MacUnit``; an exact zero sum is -0 only when the accumulator and every product
    are -0. Bit for bit the model's :func:`~fp8mac.model.arith.fp_dot`.

    Datapath, and why each step is exact:

    * **Terms in their own windows.** A product has no bit below the product frame's lsb and none
      at or above its top (:func:`product_frame`, 64 bits for ``fp8_e5m2``), an accumulator none
      outside ``[emin - man_bits, emax + 1)`` (71 bits for fp16_ibm); only the sum needs the whole
      frame (76 bits). Each term is shifted within its window (:func:`place_signed`; the shift
      amount is the sum of the operands' exponent fields, or the accumulator's field, with no
      exponent arithmetic) and negated there as ``(x ^ s) + s``, the ``+ s`` added at the window's
      lsb. Over the frame, a negative term's
      two's complement is that plus ones from the window's top ``t`` up, ``s * (2**W - 2**t)``,
      which is ``(1 - s) * 2**t - 2**t`` modulo ``2**W``: each term brings the one bit ``~s`` at
      ``t`` and a single constant ``-sum(2**t)`` stands for every sign extension. The tree adds
      ``d`` window-wide rows and one accumulator row instead of ``d + 1`` frame-wide ones.
    * **No negation of the sum.** For a negative sum ``s``, ``|s| = ~s + 1``. The leading-zero
      count is taken on the one's complement ``~s`` (it can only be one too large, when ``~s + 1``
      is a power of two: the rounding increment then carries into the exponent, which is the
      right result) with a stopper bit at the smallest normal exponent instead of a clamp. The
      two's complement ``s`` itself is shifted (:func:`normalize_top`: only the kept bits, the
      rounding bits and a sticky OR come out), and the rounding reads the magnitude's bits as
      MacUnit reads a sticky borrow: the kept bits are ``~kept(s)``; below them ``-s`` has the
      sticky of ``s``, its first bit is ``s``'s bit XOR that sticky (nearest), its top ``r``
      bits are ``~q(s) + (sticky == 0)`` (stochastic, one carry-in to the ``q + rand`` adder).
      When the whole tail of ``s`` is zero, ``-s`` has a zero tail too and the ``+ 1`` carries
      into the kept bits; that is the one case with a carry, and it has no rounding increment, so
      the two merge into the single ``+ inc`` on the code's ``exponent, mantissa`` bits.

    Measured on osu018 (Yosys + abc, OpenSTA; ``DotMacUnit("fp16_ibm", "fp8_e5m2", 8,
    "nearest")``), each step on top of the ones above it, area / critical path:

    ======================================================  ==============  =======
    one 76-bit frame for every term, ``Mux(neg, -s, s)``      261,320 um^2  24.1 ns
    products and accumulator in their own windows             252,101       23.4 ns
    ... inverted while shifting (:func:`place_signed`)        236,856       24.6 ns
    ... stopper bit, narrowing normalizer with sticky         220,908       21.6 ns
    ... shift amounts from the exponent fields                219,518       21.5 ns
    ... no negation of the sum (this block)                   212,157       21.1 ns
    ======================================================  ==============  =======

    Each alone on the first row: own windows 252,101; stopper 261,003; narrowing normalizer
    246,655.
    Tried and dropped: ``(s ^ neg) + neg`` for the magnitude (263,157 um^2, 34.6 ns: abc builds a
    slow adder); a two-level product shifter (by ``amount % 16``, then a one-hot choice among
    16-bit steps: 223,805 against 220,908); an explicit Dadda tree instead of Yosys' ``$macc``
    tree (2.6 % larger). What remains is about half carry-save tree and 76-bit adder, a fifth
    shifters, an eighth multipliers and a seventh normalizer and rounding; the ``d`` rows of 64
    bits are what exactness costs (any product can land anywhere in its window).

    The other configurations, before (first row above) and after, fp16_ibm accumulator:

    ===========================  =====================  =====================
    fp8_e5m2, dot 8, nearest     261,320 um^2, 24.1 ns  212,157 um^2, 21.1 ns
    fp8_e5m2, dot 8, stochastic  253,248, 24.5 ns       214,919, 21.5 ns
    fp8_e5m2, dot 8, zero        253,303, 21.1 ns       215,209, 20.2 ns
    fp8_e5m2, dot 4, nearest     165,853, 27.7 ns       131,338, 21.5 ns
    fp8_e5m2, dot 4, stochastic  160,310, 24.5 ns       132,018, 22.0 ns
    fp8_e4m3, dot 8, nearest     229,228, 29.5 ns       165,653, 17.1 ns
    fp8_e4m3, dot 8, stochastic  215,811, 26.1 ns       168,988, 18.1 ns
    fp8_e4m3, dot 4, nearest     145,901, 27.9 ns       102,323, 17.7 ns
    ===========================  =====================  =====================

    (stochastic is here 8 random bits, and now a little larger than nearest: its negated tail
    needs the sticky OR too.)

    Against :class:`ProductSum` + ``MacUnit`` (the general structure) this saves the second
    alignment: one frame, one normalizer. It needs a frame that covers the accumulator's range too,
    so it suits accumulators whose range is close to the products' (fp16_ibm for FP8 operands:
    76 bits); for wide accumulators (fp32) the general structure is smaller.

    Combinational: latency 0 cycles.

    Parameters
    ----------
    acc_format, in_format : FloatFormat or str
        Accumulator format and the ``a`` operands' format.
    dot : int
        Products per step, a power of two, 2..64.
    rounding : {"nearest", "stochastic", "zero"}
    rbits : int, optional
        Random bits per stochastic rounding (``stochastic`` only).
    b_format : FloatFormat or str, optional
        The ``b`` operands' format; default ``in_format``.

    Members
    -------
    acc : In(acc_format.width)
    a : In(dot * in_format.width)
    b : In(dot * b_format.width)
        Operand codes, term ``j`` in bits ``[j*W, (j+1)*W)`` (``W`` the operand's format width).
    rand : In(rbits)
        Random bits (``stochastic`` only).
    result : Out(acc_format.width)
    """

    def __init__(self, acc_format, in_format, dot: int, rounding="nearest", rbits=None, b_format=None):
        try:
            self._acc_format = format_by_name(acc_format, "acc_format")
            self._in_format, self._b_format = operand_formats(in_format, b_format)
            check_format_pair(self._acc_format, self._in_format, self._b_format,
                              names=("in_format", "b_format"))
            self._dot = ProductSum._check_dot(dot)
            self._rbits = _check_rounding(rounding, rbits)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        self._rounding = rounding
        members = {"acc": In(self._acc_format.width), "a": In(self._dot * self._in_format.width),
                   "b": In(self._dot * self._b_format.width)}
        if rounding == "stochastic":
            members["rand"] = In(self._rbits)
        members["result"] = Out(self._acc_format.width)
        super().__init__(members)

    @property
    def frame(self) -> tuple[int, int]:
        return dot_frame(self._acc_format, self._in_format, self._dot, self._b_format)

    def elaborate(self, platform):
        m = Module()
        fmt, fa, fb, d = self._acc_format, self._in_format, self._b_format, self._dot
        p, man = fmt.precision, fmt.man_bits
        wa, wb = fa.width, fb.width
        lsb, width = self.frame
        p_lsb, p_width = product_frame(fa, fb)
        acc_lsb = fmt.emin - man

        def node(name, expr):
            return _node(m, name, expr)

        # Each term: value, shift amount, window (lsb, width) and `skip`: the amount counts from
        # `skip` bits below the window's lsb (a product's lsb lies the sum of the exponent fields
        # - 2 above product_frame's lsb, the accumulator's its exponent field - 1 above its
        # smallest ulp), so the shifter is `skip` bits wider and drops them.
        prods = multipliers(m, fa, d, self.a, self.b, fb)
        terms = [(prod, biased_exponent(fa, self.a[j * wa:(j + 1) * wa])
                  + biased_exponent(fb, self.b[j * wb:(j + 1) * wb]), p_lsb, p_width, 2)
                 for j, prod in enumerate(prods)]
        acc = Signal(format_unpacked_layout(fmt), name="acc_value")
        m.d.comb += acc.eq(unpack(fmt, self.acc))
        terms.append((acc, biased_exponent(fmt, self.acc), acc_lsb, fmt.emax + 1 - acc_lsb, 1))

        addends, correction = [], 0
        for j, (value, amount, lo, size, skip) in enumerate(terms):
            placed = place_signed(m, f"placed{j}", value.sig, amount, value.sign,
                                  size + skip)[skip:]
            off = lo - lsb
            end = off + size
            assert off >= 0 and end < width
            # (x ^ s) in the window, + s at its lsb, ~s just above it: the sign extension is in
            # `correction` (class docstring).
            addends += [Cat(Const(0, off), placed, ~value.sign), value.sign << off]
            correction -= 1 << end
        addends.append(Const(correction % (1 << width), width))
        s = node("s", sum(addends)[:width])
        neg = s[-1]
        mw = width - 1
        ones = node("ones", (s ^ neg.replicate(width))[:mw])  # |s| - neg

        # Normalize: leading one to the top, but no further than the subnormal exponent. A leading
        # one at bit i has biased exponent lsb + i + bias; bit `stop` has exponent field 1.
        top_field = lsb + mw - 1 + fmt.bias
        stop = mw - top_field
        assert 0 <= stop < mw
        shift = node("shift", count_leading_zeros(Cat(Const(1, 1), ones[stop + 1:])))
        keep = p + {"nearest": 1, "stochastic": self._rbits, "zero": 0}[self._rounding]
        top, sticky = normalize_top(m, "norm", s[:mw], shift, keep, top_field - 1)
        # The magnitude's bits (class docstring): kept bits inverted when negative; below them
        # -s has s's sticky; a zero tail carries the + 1 into the kept bits.
        kept = node("kept", top[keep - p:] ^ neg.replicate(p))
        tail = top[:keep - p]
        if self._rounding == "nearest":
            guard = tail[-1] ^ (neg & sticky)
            carry = neg & ~tail[-1] & ~sticky
            inc = carry | (guard & (sticky | kept[0]))
        elif self._rounding == "stochastic":
            r = self._rbits
            inc = ((tail ^ neg.replicate(r)) + self.rand + (neg & ~sticky))[r]
        else:
            inc = neg & ~sticky
        e_field = Mux(kept[man], top_field - shift, 0)[:top_field.bit_length()]
        magnitude = node("magnitude", Cat(kept[:man], e_field) + inc)
        overflow = magnitude > fmt.max_code
        if not fmt.subnormals:
            magnitude = Mux(magnitude[man:].any(), magnitude, 0)
        values = prods + [acc]
        all_neg_zero = Cat(v.sign & ~v.sig.any() & ~v.nan & ~v.inf for v in values).all()
        sign = Mux(s.any(), neg, all_neg_zero)

        rw = fmt.width
        big = fmt.inf_code if fmt.overflow == "inf" and self._rounding != "zero" else fmt.max_code
        result = Mux(overflow, Cat(Const(big, rw - 1), sign), Cat(magnitude[:rw - 1], sign))

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
