"""The block stage of a block-scaled PE (issue 19): OCP MX (MXFP8 / MXFP6 / MXFP4), NVFP4 and
unscaled 4-bit blocks (radix-4 FP4, INT4, UINT4), one rounding per block.

The model's step (:func:`fp8mac.model.blockscale.block_dot`) is::

    acc' = round(acc + (sa * sb) * (a_0*b_0 + ... + a_(B-1)*b_(B-1)))

A PE of dot width ``d`` takes a block in ``B / d`` beats. :class:`BlockSum` forms, beat by beat,
the exact sum of the block's products in a fixed-point register (no rounding: the elements'
products span a few dozen bits), and on the block's last beat multiplies it by the two scales,
exactly (E8M0 scales are powers of two: an exponent add; NVFP4's E4M3 scales multiply two 4-bit
significands), into a register: the exact addend of one step of the PE's accumulation loop. The
PE's :class:`~fp8mac.hw.adder.MacUnit` then adds it to the accumulator with the one rounding, and
everything after it (chunks, outer sums, random draws: one per block) is the plain PE's.

Lanes: each beat carries, per lane, ``d`` element codes in bits ``[j*W, (j+1)*W)`` and the block's
scale code in the ``S`` bits above them (:func:`block_lane_width`). The scale is read on the
block's last beat; on the other beats its bits are ignored. Scale codes are non-negative: an E4M3
scale's sign bit is ignored (the model refuses negative scales). A dot product's length must be
whole blocks (the host completes K with code 0 elements, as the model does).

Elements: a :class:`~fp8mac.model.formats.FloatFormat` (E2M1, E3M2, E2M3, E4M3, E5M2) is unpacked
as the operand formats are (:func:`~fp8mac.hw.formats.unpack`); a
:class:`~fp8mac.model.elements.GridFormat` (INT4, UINT4, E1M2, radix-4 FP4) by a table of its codes'
exact values, each an odd significand times a power of two, so that a radix-4 code is a
significand of 1 and its products are shifts.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.config import MacConfig
from fp8mac.model.formats import FloatFormat

from .dot import product_frame, signed_sum
from .formats import _exp_range, signed_width, unpack, unpacked_layout

__all__ = ["BlockSum", "block_lane_width", "element_frame", "element_unpack", "scale_width"]


def scale_width(block) -> int:
    """Bits of one block's scale code in a lane (0 for a block format without a scale)."""
    return 0 if block.scale is None else block.scale.width


def block_lane_width(block, dot: int) -> int:
    """Bits of one lane of a block-scaled stream: ``dot`` element codes and the scale code."""
    return dot * block.element.width + scale_width(block)


def _table(fmt):
    """``(sign, sig, exp)`` integer lists, one entry per code, of the values the hardware forms
    for an element format: a FloatFormat's unpacked values as :func:`unpack` gives them; a grid
    format's as an odd significand times a power of two (zero: significand 0)."""
    u = fmt.unpack(np.arange(1 << fmt.width))
    sign, sig, exp = (list(map(int, x)) for x in (u.sign, u.sig, u.exp))
    if not isinstance(fmt, FloatFormat):
        for c in range(len(sig)):
            while sig[c] and sig[c] % 2 == 0:
                sig[c] //= 2
                exp[c] += 1
    return sign, sig, exp


def _magnitude_range(fmt) -> tuple[int, int]:
    """``(lsb, largest)``: the smallest lsb weight of a non-zero value, and the largest magnitude
    in units of it."""
    _, sig, exp = _table(fmt)
    live = [(s, e) for s, e in zip(sig, exp) if s]
    lsb = min(e for _, e in live)
    return lsb, max(s << (e - lsb) for s, e in live)


def element_frame(fa, fb) -> tuple[int, int]:
    """``(lsb, width)`` of the fixed-point frame holding every product of an ``fa`` element and an
    ``fb`` element exactly: :func:`~fp8mac.hw.dot.product_frame` for two FloatFormats, else from
    the formats' values."""
    if isinstance(fa, FloatFormat) and isinstance(fb, FloatFormat):
        return product_frame(fa, fb)
    (la, ma), (lb, mb) = _magnitude_range(fa), _magnitude_range(fb)
    return la + lb, (ma * mb).bit_length()


def element_unpack(m, fmt, code, name: str):
    """The exact value of an element code as an :func:`~fp8mac.hw.formats.unpacked_layout` view:
    :func:`~fp8mac.hw.formats.unpack` for a FloatFormat, a table of the codes for a grid format."""
    if isinstance(fmt, FloatFormat):
        return unpack(fmt, code)
    sign, sig, exp = _table(fmt)
    lo = min(e for s, e in zip(sig, exp) if s)
    exp = [e if s else lo for s, e in zip(sig, exp)]
    u = fmt.unpack(np.arange(1 << fmt.width))
    sw, ew = max(max(sig).bit_length(), 1), max(signed_width(min(exp), max(exp)), 2)
    value = Signal(unpacked_layout(sw, ew), name=name)
    with m.Switch(code):
        for c in range(1 << fmt.width):
            with m.Case(c):
                m.d.comb += value.eq(Cat(Const(sig[c], sw), Const(exp[c], ew), Const(sign[c], 1),
                                         Const(int(u.nan[c]), 1), Const(int(u.inf[c]), 1)))
    return value


def _scale(fmt, code):
    """``(sig, exp, nan)`` of a scale code: E8M0 is ``2**(code - 127)`` (NaN 0xFF), E4M3 as
    :func:`unpack` reads it (its sign ignored); no scale format: 1."""
    if fmt is None:
        return Const(1, 1), Const(0, 2), Const(0, 1)
    if isinstance(fmt, FloatFormat):
        v = unpack(fmt, code)
        return v.sig, v.exp, v.nan
    return Const(1, 1), code - fmt.bias, code == (1 << fmt.width) - 1


class BlockSum(wiring.Component):
    """The exact, scaled value of a block, ``(sa * sb) * sum(a_i * b_i)``, formed over the
    block's ``block / dot`` beats and registered: the addend of one accumulation step.

    Each beat taken (``en & valid_in``) adds the exact sum of its ``dot`` products to a
    fixed-point register (two's complement, :func:`element_frame` plus the bits the block's
    ``block`` products need), the specials alongside. On the block's last beat (the
    ``block / dot``-th since the last one, or ``last_in``) the block's sum, this beat's products
    included, is multiplied by the beat's scales and written to ``addend``, with ``valid_out``
    and ``last_out`` (= ``last_in``) set for one cycle of ``en``; everything holds while ``en``
    is low. Latency: one cycle (``addend`` is a register).

    Specials as the model's :func:`~fp8mac.model.blockscale.block_dot`: NaN for a NaN element or
    scale (E8M0 0xFF, E4M3 0x7F / 0xFF), 0 * inf, infinities of both signs, or an infinite sum
    times a zero scale; an infinite sum otherwise gives an infinite addend. A zero sum is -0
    only if every product of the block is -0; a zero scale gives a zero with the sum's sign.

    Parameters
    ----------
    config : MacConfig
        A configuration with block-scaled operands (``a_block``, ``b_block``) and its ``dot``.

    Members
    -------
    en, valid_in, last_in : In(1)
    a, b : In(block_lane_width(a_block, dot)), In(block_lane_width(b_block, dot))
        One lane of each stream: ``dot`` element codes and, above them, the block's scale code.
    addend : Out(BlockSum.addend_layout(config))
    valid_out, last_out : Out(1)
    """

    def __init__(self, config: MacConfig):
        try:
            if not isinstance(config, MacConfig) or not config.blocks:
                raise ValueError("config must be a MacConfig with block-scaled operands (a_block / b_block)")
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        self._config = config
        super().__init__({
            "en": In(1), "valid_in": In(1), "last_in": In(1),
            "a": In(block_lane_width(config.a_block, config.dot)),
            "b": In(block_lane_width(config.b_block, config.dot)),
            "addend": Out(self.addend_layout(config)), "valid_out": Out(1), "last_out": Out(1)})

    @staticmethod
    def sum_bits(config: MacConfig) -> tuple[int, int]:
        """``(lsb, bits)``: the two's complement register of a block's exact sum, ``bits`` wide
        from weight ``lsb`` (sign bit included)."""
        lsb, frame = element_frame(config.a_block.element, config.b_block.element)
        return lsb, frame + (config.block_size - 1).bit_length() + 1

    @staticmethod
    def addend_layout(config: MacConfig):
        """The ``addend``'s :func:`~fp8mac.hw.formats.unpacked_layout`: the block sum's magnitude
        times the scales' significands; its exponent the frame's lsb plus the scales'."""
        lsb, bits = BlockSum.sum_bits(config)
        sig, lo, hi = bits - 1, lsb, lsb
        for blk in (config.a_block, config.b_block):
            if blk.scale is not None:
                fmt = blk.scale
                if isinstance(fmt, FloatFormat):
                    sig += fmt.precision
                    elo, ehi = _exp_range(fmt)
                else:
                    elo, ehi = -fmt.bias, (1 << fmt.width) - 1 - fmt.bias
                lo, hi = lo + elo, hi + ehi
        return unpacked_layout(sig, max(signed_width(lo, hi), 2))

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        d, blk_a, blk_b = cfg.dot, cfg.a_block, cfg.b_block
        fa, fb = blk_a.element, blk_b.element
        wa, wb = fa.width, fb.width
        beats = cfg.block_size // d
        lsb, frame = element_frame(fa, fb)
        _, bits = self.sum_bits(cfg)

        prods = []
        for j in range(d):
            x = element_unpack(m, fa, self.a[j * wa:(j + 1) * wa], f"a{j}")
            y = element_unpack(m, fb, self.b[j * wb:(j + 1) * wb], f"b{j}")
            x_zero = (x.sig == 0) & ~x.inf & ~x.nan
            y_zero = (y.sig == 0) & ~y.inf & ~y.nan
            p = Signal(unpacked_layout(len(x.sig) + len(y.sig), max(len(x.exp), len(y.exp)) + 1),
                       name=f"prod{j}")
            nan = x.nan | y.nan | (x.inf & y_zero) | (y.inf & x_zero)
            m.d.comb += [p.sig.eq(x.sig * y.sig), p.exp.eq(x.exp + y.exp), p.sign.eq(x.sign ^ y.sign),
                         p.nan.eq(nan), p.inf.eq((x.inf | y.inf) & ~nan)]
            prods.append(p)
        part, (nan, inf, neg_inf, all_neg_zero) = signed_sum(m, prods, lsb, frame, bits)
        pos_inf, neg_inf = inf & ~neg_inf, inf & neg_inf

        step = Signal()
        m.d.comb += step.eq(self.en & self.valid_in)
        if beats == 1:
            total, end = part, Const(1, 1)
        else:
            # The block so far (registers, read from the block's second beat on).
            count = Signal(range(beats))
            first = count == 0
            end = self.last_in | (count == beats - 1)
            acc = Signal(bits, name="block_acc", reset_less=True)
            acc_nan, acc_pos, acc_neg = Signal(), Signal(), Signal()
            acc_nz = Signal()  # every product so far -0
            total = Signal(bits, name="block_total")
            m.d.comb += total.eq(Mux(first, 0, acc) + part)
            nan = nan | (~first & acc_nan)
            pos_inf = pos_inf | (~first & acc_pos)
            neg_inf = neg_inf | (~first & acc_neg)
            all_neg_zero = all_neg_zero & (first | acc_nz)
            with m.If(step):
                m.d.sync += [count.eq(Mux(end, 0, count + 1)), acc.eq(total), acc_nan.eq(nan),
                             acc_pos.eq(pos_inf), acc_neg.eq(neg_inf), acc_nz.eq(all_neg_zero)]
            nan = nan | (pos_inf & neg_inf)
            inf = (pos_inf | neg_inf) & ~nan

        neg = total[-1]
        mag = Mux(neg, -total, total)[:bits - 1]
        sign = Mux(inf, neg_inf, Mux(total.any(), neg, all_neg_zero))
        ssig_a, sexp_a, snan_a = _scale(blk_a.scale, self.a[d * wa:])
        ssig_b, sexp_b, snan_b = _scale(blk_b.scale, self.b[d * wb:])
        ssig = ssig_a * ssig_b
        s_nan = snan_a | snan_b
        v_nan = nan | s_nan | (inf & (ssig == 0))
        layout = self.addend_layout(cfg)
        value = Signal(layout, name="block_value")
        m.d.comb += [value.sig.eq(Mux(v_nan | inf, 0, mag * ssig)), value.exp.eq(lsb + sexp_a + sexp_b),
                     value.sign.eq(sign), value.nan.eq(v_nan), value.inf.eq(inf & ~v_nan)]

        addend = Signal(layout, reset_less=True)  # read only with valid_out
        m.d.comb += self.addend.eq(addend)
        with m.If(self.en):
            m.d.sync += [self.valid_out.eq(step & end), self.last_out.eq(self.last_in)]
            with m.If(step & end):
                m.d.sync += addend.eq(value)
        return m
