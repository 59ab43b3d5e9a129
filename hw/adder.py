"""The fused adder: ``MacUnit`` computes ``round(acc + addend)`` with one rounding; ``FloatAdder``
is the same circuit with an ``acc_format`` code as the addend.

Both are bit-exact against the golden model (:func:`fp8mac.model.arith.fp_fma` and
:func:`~fp8mac.model.arith.fp_add`) for every input, in every rounding mode.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.arith import check_format_pair
from fp8mac.model.formats import FloatFormat, format_by_name
from fp8mac.model.rounding import MAX_RBITS, ROUNDINGS

from .formats import code_layout, format_unpacked_layout, is_unpacked_layout, unpack
from .multiplier import FloatMultiplier, operand_formats

__all__ = ["MacUnit", "FloatAdder", "alignment_window", "count_leading_zeros"]


def count_leading_zeros(value) -> Value:
    """The number of leading zeros of ``value`` (``len(value)`` when it is 0), as an expression: a
    balanced tree of 2-way merges, log2(width) levels."""
    value = Value.cast(value)
    width = len(value)
    if width == 1:
        return ~value
    size = 1 << (width - 1).bit_length()  # next power of two >= width
    # Ones below the value stop the count at `width` when the value is 0 (unless width == size).
    padded = Cat(Const((1 << (size - width)) - 1, size - width), value)

    def tree(bits):  # (all zero, leading-zero count) of a power-of-two wide slice
        if len(bits) == 2:
            return ~bits.any(), ~bits[1]
        half = len(bits) // 2
        lo_zero, lo_count = tree(bits[:half])
        hi_zero, hi_count = tree(bits[half:])
        return lo_zero & hi_zero, Cat(Mux(hi_zero, lo_count, hi_count), hi_zero)

    zero, count = tree(padded)
    return Mux(zero, width, count) if size == width else count


def alignment_window(precision: int, addend_width: int, rounding: str, rbits=None) -> int:
    """The bits a :class:`MacUnit` keeps below the larger operand's top: ``max(p + 1 + k, max(p,
    n) + 1)`` for accumulator precision ``p``, addend significand width ``n`` and ``k`` exact bits
    below the ulp (1 for ``nearest``, ``rbits`` for ``stochastic``, 0 for ``zero``); the argument
    is in :class:`MacUnit`'s docstring."""
    k = {"nearest": 1, "zero": 0, "stochastic": rbits}[rounding]
    return max(precision + 1 + k, max(precision, addend_width) + 1)


def _check_rounding(rounding, rbits):
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")
    if rounding != "stochastic":
        return None
    if isinstance(rbits, bool) or not isinstance(rbits, int) or not 1 <= rbits <= MAX_RBITS:
        raise ValueError(f"rbits must be an integer in 1..{MAX_RBITS} for stochastic rounding, "
                         f"not {rbits!r}")
    return rbits


class MacUnit(wiring.Component):
    """The fused adder of a MAC step: ``result = round(acc + addend)``, one rounding.

    ``acc`` is an ``acc_format`` code, ``addend`` an exact unpacked value (the product from a
    :class:`~fp8mac.hw.multiplier.FloatMultiplier`, or an unpacked ``acc_format`` value); the exact
    sum is rounded once to ``acc_format`` (ARCHITECTURE.md §2): ``nearest`` (ties to even),
    ``zero`` (truncation), or ``stochastic`` (round the magnitude up iff ``q + rand >= 2**rbits``,
    ``q`` the top ``rbits`` bits of the part below the ulp). Then overflow (``acc_format.overflow``;
    truncation saturates), flush-to-zero of subnormal results if the format has none, and IEEE
    specials (canonical NaN, inf - inf = NaN, exact zero sums +0 except -0 + -0). Bit for bit the
    model's :func:`~fp8mac.model.arith.fp_fma` (``add_exact`` + ``round_unpacked`` + ``pack``).

    Combinational: latency 0 cycles.

    Datapath: the addend's significand is normalized (leading-zero count, left shift; not needed
    for a ``canonical_addend``); the
    operand with the larger top bit, X, is placed at the top of a window of ``window`` bits; the
    other, Y, is shifted right into it, bits falling out of the window ORed into a sticky bit,
    which borrows from the window's last bit in a subtraction (so the window holds the floor of
    the exact magnitude and the sticky says whether anything lies below); a negative difference
    is negated; the magnitude is normalized (clamped at the subnormal exponent) and rounded, the
    increment being added to the code's ``exponent, mantissa`` bits so that a carry out of the
    significand renormalizes by itself.

    Width argument: rounding needs ``k`` exact bits below the result's ulp (``k = 1`` for
    ``nearest``, a guard bit, the rest being the sticky; ``k = rbits`` for ``stochastic``; ``k =
    0`` for ``zero``), and a sticky borrow keeps those floors exact. With ``p`` the accumulator's
    precision, ``window = max(p + 1 + k, max(p, n) + 1)`` bits below X's top (plus a carry bit)
    suffice, ``n`` being the addend's significand width:

    * If Y is shifted by ``d <= 1``, nothing falls out (``window >= max(p, n) + 1``): exact.
    * If ``d >= 2`` and X is normalized (top bit T - 1), ``|sum| > 2**(T-1) - 2**(T-2)``, so the
      result's top is at least T - 2 and its ulp at least ``T - 2 - (p - 1)``; the window reaches
      ``T - window <= T - p - 1 - k``: ``k`` bits below the lowest possible ulp.
    * An accumulator (or canonical addend) that is zero or subnormal, so not normalized, has its
      top at ``emin + 1`` and its last bit on the smallest ulp ``emin - (p - 1)``; the window
      reaches ``k + 1`` bits lower, and no result ulp is smaller.

    For the default (fp16_ibm, p = 10) that is 12 bits for ``nearest`` and 19 for ``stochastic``
    with 8 random bits: not the model's 60-bit software window.

    Parameters
    ----------
    acc_format : FloatFormat or str
        Accumulator (and result) format.
    addend_layout : StructLayout
        An :func:`~fp8mac.hw.formats.unpacked_layout` (any widths).
    rounding : {"nearest", "stochastic", "zero"} or (str, str)
        One rounding, or a pair ``(mode 0, mode 1)`` chosen per cycle by the ``mode`` input (the
        shared-adder PE: inner rounding for MAC steps, outer for chunk sums). A pair costs the
        widest of the two windows and a multiplexer on the increment.
    rbits : int, optional
        Random bits per stochastic rounding, 1..32; required for (and only used by) ``stochastic``.
    canonical_addend : bool, optional
        The addend is always an ``acc_format`` value as :func:`~fp8mac.hw.formats.unpack` gives it
        (``addend_layout`` must be ``format_unpacked_layout(acc_format)``): its significand has
        leading zeros only on the smallest ulp, so the addend normalizer is left out. Any other
        addend would then give wrong results. Default False.

    Members
    -------
    acc : In(acc_format.width)
        The accumulator code.
    addend : In(addend_layout)
        The exact addend.
    mode : In(1)
        Only with a pair of roundings: 0 rounds with the first, 1 with the second.
    rand : In(rbits)
        Random bits (if a rounding is ``stochastic``), e.g. an :class:`~fp8mac.hw.lfsr.Lfsr`'s
        ``value``.
    result : Out(acc_format.width)
        The rounded sum's code.

    Raises
    ------
    ValueError
        On an unknown format, an addend layout that is not an unpacked layout (or not the
        format's, with ``canonical_addend``), an unknown rounding, or a missing or out-of-range
        ``rbits``; the message names the parameter.
    """

    def __init__(self, acc_format, addend_layout, rounding="nearest", rbits=None, *,
                 canonical_addend=False):
        try:
            self._acc_format = format_by_name(acc_format, "acc_format")
            if not is_unpacked_layout(addend_layout):
                raise ValueError("addend_layout must be an unpacked_layout(sig_width, exp_width) "
                                 f"from fp8mac.hw.formats, not {addend_layout!r}")
            if isinstance(rounding, tuple):
                if len(rounding) != 2:
                    raise ValueError("rounding must be one rounding or a pair (mode 0, mode 1) of "
                                     f"roundings, not {rounding!r}")
                modes = rounding
            else:
                modes = (rounding,)
            checked = [_check_rounding(mode, rbits) for mode in modes]
            self._rbits = next((r for r in checked if r is not None), None)
            if not isinstance(canonical_addend, bool):
                raise ValueError(f"canonical_addend must be True or False, not {canonical_addend!r}")
            if canonical_addend and addend_layout != format_unpacked_layout(self._acc_format):
                raise ValueError("canonical_addend=True needs addend_layout = "
                                 f"format_unpacked_layout({self._acc_format.label}), "
                                 f"not {addend_layout!r}")
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        self._addend_layout = addend_layout
        self._rounding = rounding
        self._modes = modes
        self._canonical_addend = bool(canonical_addend)
        self._window = max(alignment_window(self._acc_format.precision, addend_layout["sig"].width,
                                            mode, self._rbits) for mode in modes)
        width = self._acc_format.width
        members = {"acc": In(width), "addend": In(addend_layout)}
        if len(modes) == 2:
            members["mode"] = In(1)
        if "stochastic" in modes:
            members["rand"] = In(self._rbits)
        members["result"] = Out(width)
        super().__init__(members)

    @classmethod
    def for_product(cls, acc_format, in_format, rounding="nearest", rbits=None, b_format=None):
        """A MacUnit whose addend is a :class:`~fp8mac.hw.multiplier.FloatMultiplier`'s product
        of an ``in_format`` and a ``b_format`` operand (default ``in_format``); ValueError if
        ``acc_format`` cannot hold their specials (:func:`~fp8mac.model.arith.check_format_pair`)."""
        acc_fmt = format_by_name(acc_format, "acc_format")
        fa, fb = operand_formats(in_format, b_format)
        check_format_pair(acc_fmt, fa, fb, names=("in_format", "b_format"))
        return cls(acc_fmt, FloatMultiplier.product_layout(fa, fb), rounding, rbits)

    @property
    def acc_format(self) -> FloatFormat:
        return self._acc_format

    @property
    def addend_layout(self):
        return self._addend_layout

    @property
    def rounding(self) -> str | tuple[str, str]:
        """The rounding, or the pair (mode 0, mode 1) selected by ``mode``."""
        return self._rounding

    @property
    def rbits(self) -> int | None:
        return self._rbits

    @property
    def canonical_addend(self) -> bool:
        return self._canonical_addend

    @property
    def window(self) -> int:
        """Alignment window: bits kept below the larger operand's top (see the class docstring)."""
        return self._window

    def elaborate(self, platform):
        m = Module()
        fmt = self._acc_format
        p, man = fmt.precision, fmt.man_bits
        n = self._addend_layout["sig"].width
        wy = max(p, n)  # operand field width: both significands, top-aligned
        win = self._window

        def node(name, expr):
            """A named signal for a value used several times (keeps the simulator from evaluating
            its expression once per use)."""
            expr = Value.cast(expr)
            sig = Signal(expr.shape(), name=name)
            m.d.comb += sig.eq(expr)
            return sig

        # Operands. "top" is the biased exponent (acc_format's bias) of the position just above a
        # significand's leading bit: acc codes have theirs at exponent field + 1 (field 0: 2).
        acc = code_layout(fmt)(self.acc)
        a_nan, a_inf, a_sig = acc.is_nan(), acc.is_inf(), acc.significand()
        a_top = Mux(acc.exponent == 0, 2, acc.exponent + 1)
        b = self.addend
        if self._canonical_addend:  # an acc_format value: unnormalized only on the smallest ulp
            b_sig = b.sig
            b_top = b.exp + (n + fmt.bias)
        else:
            b_lz = count_leading_zeros(b.sig)
            b_sig = (b.sig << b_lz)[:n]  # normalized; 0 stays 0
            b_top = b.exp + (n + fmt.bias) - b_lz

        # X: the operand with the larger top (acc on a tie or when the addend is 0); Y: the other,
        # d places lower. A zero or subnormal acc sits at top 2, on the smallest ulp.
        diff = node("diff", a_top - b_top)
        b_big = node("b_big", b.sig.any() & diff[-1])
        top = node("top", Mux(b_big, b_top, a_top))
        d = Mux(b_big, -diff, diff)  # < 0 only if Y is a zero addend
        x_field = Mux(b_big, b_sig << (wy - n), a_sig << (wy - p))
        y_field = Mux(b_big, a_sig << (wy - p), b_sig << (wy - n))
        x_sign = Mux(b_big, b.sign, acc.sign)

        # Align Y: window bits on top, the wy bits below them only feed the sticky bit.
        far = d >= win
        y_shifted = node("y_shifted", Cat(Const(0, win), y_field) >> d[:(win - 1).bit_length()])
        y_window = Mux(far, 0, y_shifted[wy:])
        sticky = node("sticky", Mux(far, y_field.any(), y_shifted[:wy].any()))

        # X +- Y. A subtraction borrows the sticky: s = X - Y_window - sticky = floor(X - Y).
        # Negative (|Y| > |X|): floor(|X - Y|) = -s, or ~s when the sticky is set.
        sub = acc.sign ^ b.sign
        x_ext = Cat(Const(0, win - wy), x_field, Const(0, 2))
        y_ext = Cat(y_window, Const(0, 2))
        s = node("s", (x_ext + Mux(sub, ~y_ext, y_ext) + (sub & ~sticky))[:win + 2])
        neg = s[win + 1]
        mag = node("mag", ((s[:win + 1] ^ neg.replicate(win + 1)) + (neg & ~sticky))[:win + 1])
        mag_zero = ~mag.any()

        # Normalize: leading one to bit `win`, but no further than the subnormal exponent
        # (biased top 1). `e_top` is then the biased exponent of bit `win`.
        lz = count_leading_zeros(mag)
        norm_shift = node("norm_shift", Mux(top <= lz, top - 1, lz)[:len(lz)])
        norm = node("norm", (mag << norm_shift)[:win + 1])
        e_top = top - norm_shift
        below = win - man  # window bits below the ulp
        kept = norm[below:]  # p bits, the result's significand before rounding

        def increment(rounding):
            if rounding == "nearest":
                guard = norm[below - 1]
                rest = norm[:below - 1].any() | sticky
                return guard & (rest | kept[0])
            if rounding == "stochastic":
                r = self._rbits
                return (norm[below - r:below] + self.rand)[r]
            return Const(0, 1)

        def select(per_mode):  # one value per rounding mode -> the selected mode's
            if len(per_mode) == 1:
                return per_mode[0]
            return Mux(self.mode, per_mode[1], per_mode[0])

        inc = select([increment(mode) for mode in self._modes])

        # Code magnitude = exponent field, significand + inc: the field is e_top for a normal
        # significand and 0 for a subnormal or zero one; a rounding carry out of the significand
        # carries into the field, which is exactly renormalization (and subnormal to normal).
        top_max = max(fmt.exp_field_max + 1, (1 << (len(b.exp) - 1)) - 1 + n + fmt.bias)
        e_field = Mux(kept[man], e_top[:top_max.bit_length()], 0)  # e_top is in 1..top_max
        magnitude = node("magnitude", Cat(kept[:man], e_field) + inc)
        overflow = magnitude > fmt.max_code
        if not fmt.subnormals:
            magnitude = Mux(magnitude[man:].any(), magnitude, 0)
        sign = Mux(sub & mag_zero & ~sticky, 0, x_sign ^ neg)  # exact 0: +0 (-0 + -0 = -0)

        w = fmt.width
        bigs = [fmt.inf_code if fmt.overflow == "inf" and mode != "zero" else fmt.max_code
                for mode in self._modes]  # overflow code (truncation saturates)
        big = select([Const(code, w - 1) for code in bigs]) if len(set(bigs)) > 1 \
            else Const(bigs[0], w - 1)
        result = Mux(overflow, Cat(big, sign), Cat(magnitude[:w - 1], sign))

        # Specials: NaN wins, then infinite operands.
        nan = a_nan | b.nan | (a_inf & b.inf & sub)
        inf = (a_inf | b.inf) & ~nan
        inf_sign = Mux(a_inf, acc.sign, b.sign)
        if fmt.has_inf:
            result = Mux(inf, Cat(Const(fmt.inf_code, w - 1), inf_sign), result)
        elif fmt.has_nan:
            nan = nan | inf
        else:
            result = Mux(inf, Cat(Const(fmt.max_code, w - 1), inf_sign), result)
        if fmt.has_nan:
            result = Mux(nan, fmt.nan_code, result)
        m.d.comb += self.result.eq(result)
        return m


class FloatAdder(wiring.Component):
    """``result = round(a + b)`` in one format: a :class:`MacUnit` whose addend is ``b`` unpacked
    (a canonical addend: no addend normalizer).

    Bit for bit the model's :func:`~fp8mac.model.arith.fp_add`. Combinational: latency 0 cycles.

    Parameters
    ----------
    fmt : FloatFormat or str
    rounding : {"nearest", "stochastic", "zero"}
    rbits : int, optional
        Random bits per stochastic rounding, 1..32 (``stochastic`` only).

    Members
    -------
    a, b : In(fmt.width)
        Operand codes.
    rand : In(rbits)
        Random bits (``stochastic`` only).
    result : Out(fmt.width)

    Raises
    ------
    ValueError
        As :class:`MacUnit`.
    """

    def __init__(self, fmt, rounding="nearest", rbits=None):
        try:
            self._format = format_by_name(fmt, "fmt")
            self._rbits = _check_rounding(rounding, rbits)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        self._rounding = rounding
        width = self._format.width
        members = {"a": In(width), "b": In(width)}
        if rounding == "stochastic":
            members["rand"] = In(self._rbits)
        members["result"] = Out(width)
        super().__init__(members)

    @property
    def format(self) -> FloatFormat:
        return self._format

    @property
    def rounding(self) -> str:
        return self._rounding

    @property
    def rbits(self) -> int | None:
        return self._rbits

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = MacUnit(self._format, format_unpacked_layout(self._format),
                                         self._rounding, self._rbits, canonical_addend=True)
        m.d.comb += [mac.acc.eq(self.a), mac.addend.eq(unpack(self._format, self.b)),
                     self.result.eq(mac.result)]
        if self._rounding == "stochastic":
            m.d.comb += mac.rand.eq(self.rand)
        return m
