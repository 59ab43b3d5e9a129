"""hw.formats against the golden model: unpack, classification and pack on every code."""

import os
import secrets

import numpy as np
import pytest
from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from fp8mac.hw.formats import code_layout, format_unpacked_layout, pack, unpack, unpacked_layout
from fp8mac.model.formats import FORMATS, FloatFormat
from fp8mac.model.rounding import pack as model_pack

SEED = int(os.environ.get("FP8MAC_SEED", secrets.randbits(32)))

CLASSES = ("is_zero", "is_subnormal", "is_normal", "is_inf", "is_nan")


class Probe(wiring.Component):
    """unpack(code), the five classification bits and pack(unpack(code)), side by side."""

    def __init__(self, fmt):
        self.fmt = fmt
        super().__init__({"code": In(fmt.width), "value": Out(format_unpacked_layout(fmt)),
                          "classes": Out(len(CLASSES)), "repacked": Out(fmt.width)})

    def elaborate(self, platform):
        m = Module()
        view = code_layout(self.fmt)(self.code)
        value = unpack(self.fmt, self.code)
        m.d.comb += [
            self.value.eq(value),
            self.classes.eq(Cat(*(getattr(view, c)() for c in CLASSES))),
            self.repacked.eq(pack(self.fmt, value)),
        ]
        return m


FTZ = FloatFormat(5, 2, 15, "ieee", subnormals=False, name="e5m2_ftz")
PLAIN = FloatFormat(4, 3, 7, "none", subnormals=False, name="e4m3_none_ftz")


@pytest.mark.parametrize("fmt", [FORMATS["fp8_e5m2"], FORMATS["fp8_e4m3"], FTZ, PLAIN,
                                 FORMATS["fp16_ibm"], FORMATS["bf16"], FORMATS["fp32"]],
                         ids=lambda f: f.label)
def test_unpack_classify_pack(fmt):
    """Every code of 8-bit formats, 3000 random codes (plus the specials) of wider ones."""
    print(f"FP8MAC_SEED={SEED}")
    if fmt.width <= 8:
        codes = np.arange(1 << fmt.width)
    else:
        rng = np.random.default_rng([SEED, fmt.width])
        special = [0, 1, fmt.max_code, fmt.nan_code, fmt.inf_code, 1 << (fmt.width - 1)]
        codes = np.concatenate([special, rng.integers(0, 1 << fmt.width, 3000)])
    dut = Probe(fmt)
    got = {"value": [], "classes": [], "repacked": []}

    async def testbench(ctx):
        for c in codes:
            ctx.set(dut.code, int(c))
            for name in got:
                port = getattr(dut, name)
                got[name].append(int(ctx.get(port.as_value() if hasattr(port, "as_value") else port)))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()

    want = fmt.unpack(codes)
    layout = format_unpacked_layout(fmt)
    for name, field in layout:
        raw = np.array([(v >> field.offset) & ((1 << field.width) - 1) for v in got["value"]])
        if field.shape.signed:
            raw = np.where(raw >= 1 << (field.width - 1), raw - (1 << field.width), raw)
        assert np.array_equal(raw, np.asarray(getattr(want, name), dtype=np.int64)), name
    zero = (want.sig == 0) & ~want.nan & ~want.inf
    subnormal = (want.sig > 0) & (want.sig < 1 << fmt.man_bits)
    normal = want.sig >= 1 << fmt.man_bits
    for i, (name, expect) in enumerate(zip(CLASSES, (zero, subnormal, normal, want.inf, want.nan))):
        bits = (np.array(got["classes"]) >> i) & 1
        bad = np.flatnonzero(bits != expect)
        assert bad.size == 0, f"{fmt.label} {name}: code {int(codes[bad[0]]):#x}"
    assert np.array_equal(np.array(got["repacked"]), model_pack(fmt, want).astype(np.int64))


def test_layouts():
    assert list(dict(code_layout("fp8_e5m2").members)) == ["mantissa", "exponent", "sign"]
    assert format_unpacked_layout("fp8_e5m2") == unpacked_layout(3, 5)
    with pytest.raises(ValueError, match="sig_width"):
        unpacked_layout(0, 4)
    with pytest.raises(ValueError, match="exp_width"):
        unpacked_layout(4, 1)
    with pytest.raises(ValueError, match="fmt"):
        code_layout("fp7")
