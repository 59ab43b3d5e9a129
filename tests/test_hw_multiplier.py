"""FloatMultiplier against the golden model's exact product, on every pair of FP8 codes."""

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator

from fp8mac.hw.multiplier import FloatMultiplier
from fp8mac.model.arith import fp_mul_exact
from fp8mac.model.formats import FORMATS


def simulate(dut, inputs, outputs):
    """Drive a combinational component with ``inputs`` (port name -> sequence of ints), one case
    per step, and return ``outputs`` (port names) as lists of raw ints."""
    names = list(inputs)
    cases = list(zip(*(inputs[n] for n in names)))
    ports_in = [Value.cast(getattr(dut, n)) for n in names]
    ports_out = [Value.cast(getattr(dut, n)) for n in outputs]
    got = {n: [] for n in outputs}

    async def testbench(ctx):
        for case in cases:
            for port, value in zip(ports_in, case):
                ctx.set(port, int(value))
            for name, port in zip(outputs, ports_out):
                got[name].append(ctx.get(port))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    return got


def split_unpacked(layout, raw):
    """Raw bits of an unpacked_layout value -> dict of int64 arrays (exp sign-extended)."""
    raw = np.array([int(r) for r in raw], dtype=object)
    out = {}
    for name, field in layout:
        width = field.width
        v = np.array([(int(r) >> field.offset) & ((1 << width) - 1) for r in raw], dtype=np.int64)
        if field.shape.signed:
            v = np.where(v >= 1 << (width - 1), v - (1 << width), v)
        out[name] = v
    return out


@pytest.mark.parametrize("fmt, b_fmt", [("fp8_e5m2", None), ("fp8_e4m3", None),
                                         ("fp8_e4m3", "fp8_e5m2"), ("fp8_e5m2", "fp8_e4m3")])
def test_every_product(fmt, b_fmt):
    """All 65,536 products, every field bit for bit (stricter than comparing values); the mixed
    pairs are HFP8's (issue 16), the model's products of them checked against Fractions in
    test_model_mixed.py."""
    fa, fb = FORMATS[fmt], FORMATS[b_fmt or fmt]
    dut = FloatMultiplier(fmt, b_fmt)
    a, b = (x.ravel() for x in np.meshgrid(np.arange(1 << fa.width), np.arange(1 << fb.width),
                                          indexing="ij"))
    got = split_unpacked(FloatMultiplier.product_layout(fmt, b_fmt),
                         simulate(dut, {"a": a, "b": b}, ["product"])["product"])
    want = fp_mul_exact(fa, a, b, fb)
    for name in ("sig", "exp", "sign", "nan", "inf"):
        bad = np.flatnonzero(got[name] != np.asarray(getattr(want, name), dtype=np.int64))
        assert bad.size == 0, (f"{fmt} x {fb.name} product.{name}: {bad.size} mismatches, first "
                               f"a={a[bad[0]]:#x} b={b[bad[0]]:#x}: got {got[name][bad[0]]}, "
                               f"model {getattr(want, name)[bad[0]]}")


@pytest.mark.parametrize("fmt,b_fmt,sig,exp", [("fp8_e5m2", None, 6, 6), ("fp8_e4m3", None, 8, 6),
                                               ("fp16_ibm", None, 20, 8), ("fp32", None, 48, 10),
                                               ("fp8_e4m3", "fp8_e5m2", 7, 6), ("fp8_e5m2", "fp32", 27, 9)])
def test_product_layout_widths(fmt, b_fmt, sig, exp):
    """The product layout is just wide enough: p + q significand bits, the exponent sum's range
    (e4m3 x e5m2: ulp exponents -9..5 and -16..14 sum to -25..19, 6 bits signed; e5m2 x fp32:
    -16..14 and -149..105 to -165..119, 9 bits)."""
    layout = FloatMultiplier.product_layout(fmt, b_fmt)
    assert layout["sig"].width == sig
    assert layout["exp"].width == exp and layout["exp"].shape.signed


def test_bad_format():
    with pytest.raises(ValueError, match="in_format"):
        FloatMultiplier("fp9")
    with pytest.raises(ValueError, match="b_format"):
        FloatMultiplier("fp8_e4m3", "fp9")
