"""Run-time operand formats (issue 16): the common internal format of a stream's format set and
the exact code converter in front of the array, every code against the model's decoded values."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.hw.formats import common_format, convert_exact, holds_exactly
from fp8mac.model.formats import FORMATS, FloatFormat

from test_hw_multiplier import simulate


class Converter(wiring.Component):
    def __init__(self, src, dst):
        self._src, self._dst = src, dst
        super().__init__({"code": In(src.width), "out": Out(dst.width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(convert_exact(self._src, self._dst, self.code))
        return m


def same_values(src, dst, codes, got):
    """Each converted code has the value of its source code: equal numbers with equal signs
    (zeros and infinities included), NaN for NaN."""
    want = src.decode(codes)
    have = dst.decode(np.asarray(got))
    both_nan = np.isnan(want) & np.isnan(have)
    equal = (want == have) & (np.signbit(want) == np.signbit(have))
    bad = np.flatnonzero(~(both_nan | equal))
    assert bad.size == 0, (f"{src.label} -> {dst.label}: {bad.size} codes wrong, first "
                           f"{int(codes[bad[0]]):#x} ({want[bad[0]]}) -> {int(got[bad[0]]):#x} "
                           f"({have[bad[0]]})")


FTZ_E4M3 = FloatFormat(4, 3, 7, "fn", subnormals=False, name="e4m3_ftz")
PLAIN_E3M2 = FloatFormat(3, 2, 3, "none", name="e3m2_none")
SETS = [
    ("fp8_e4m3", "fp8_e5m2"),
    (FTZ_E4M3, "fp8_e5m2"),
    (PLAIN_E3M2, FloatFormat(2, 3, 1, "none", name="e2m3_none")),
    ("fp8_e4m3", FloatFormat(5, 2, 15, "fn", name="e5m2_fn")),
    ("fp8_e4m3_b11", "fp8_e5m2"),  # HFP8 with the bias-11 forward format
]


@pytest.mark.parametrize("formats", SETS, ids=lambda s: "-".join(getattr(f, "name", f) for f in s))
def test_every_code_converts_exactly(formats):
    formats = [FORMATS[f] if isinstance(f, str) else f for f in formats]
    common = common_format(formats)
    for src in formats:
        assert holds_exactly(common, src)
        codes = np.arange(1 << src.width)
        got = simulate(Converter(src, common), {"code": codes}, ["out"])["out"]
        same_values(src, common, codes, got)


def test_sixteen_bit_sets_sampled():
    fp16, bf16 = FORMATS["fp16"], FORMATS["bf16"]
    common = common_format([fp16, bf16])
    assert (common.exp_bits, common.man_bits, common.bias) == (8, 10, 127)
    rng = np.random.default_rng(16)
    for src in (fp16, bf16):
        codes = np.concatenate([np.arange(0, 1 << 11), rng.integers(0, 1 << 16, 4000)])  # zeros, subnormals
        got = simulate(Converter(src, common), {"code": codes}, ["out"])["out"]
        same_values(src, common, codes, got)


def test_common_format_of_hfp8():
    """E4M3 (emin -6, emax 8, 3 mantissa bits) and E5M2 (emin -14, emax 15, infinities): the
    smallest holder has 3 mantissa bits, emin -14 (bias 15), emax 15 with the top field kept for
    specials (5 exponent bits), IEEE specials: 9 bits; one format is its own."""
    common = common_format(["fp8_e4m3", "fp8_e5m2"])
    assert (common.exp_bits, common.man_bits, common.bias, common.specials, common.width) == (5, 3, 15, "ieee", 9)
    assert common_format(["fp8_e4m3"]) is FORMATS["fp8_e4m3"]
    assert not holds_exactly(FORMATS["fp8_e5m2"], FORMATS["fp8_e4m3"])  # a mantissa bit short
    assert not holds_exactly(FORMATS["fp8_e4m3"], FORMATS["fp8_e5m2"])  # range and infinities


def test_convert_refuses_a_narrower_target():
    with pytest.raises(ValueError, match="does not hold every value of fp8_e4m3"):
        convert_exact("fp8_e4m3", "fp8_e5m2", Signal(8))
