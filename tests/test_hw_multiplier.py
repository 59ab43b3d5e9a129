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


@pytest.mark.parametrize("fmt", ["fp8_e5m2", "fp8_e4m3"])
def test_every_product(fmt):
    """All 65,536 products, every field bit for bit (stricter than comparing values)."""
    f = FORMATS[fmt]
    dut = FloatMultiplier(fmt)
    a, b = (x.ravel() for x in np.meshgrid(np.arange(1 << f.width), np.arange(1 << f.width),
                                          indexing="ij"))
    got = split_unpacked(FloatMultiplier.product_layout(fmt),
                         simulate(dut, {"a": a, "b": b}, ["product"])["product"])
    want = fp_mul_exact(f, a, b)
    for name in ("sig", "exp", "sign", "nan", "inf"):
        bad = np.flatnonzero(got[name] != np.asarray(getattr(want, name), dtype=np.int64))
        assert bad.size == 0, (f"{fmt} product.{name}: {bad.size} mismatches, first a={a[bad[0]]:#x} "
                               f"b={b[bad[0]]:#x}: got {got[name][bad[0]]}, "
                               f"model {getattr(want, name)[bad[0]]}")


@pytest.mark.parametrize("fmt,sig,exp", [("fp8_e5m2", 6, 6), ("fp8_e4m3", 8, 6),
                                         ("fp16_ibm", 20, 8), ("fp32", 48, 10)])
def test_product_layout_widths(fmt, sig, exp):
    """The product layout is just wide enough: 2p significand bits, the exponent sum's range."""
    layout = FloatMultiplier.product_layout(fmt)
    assert layout["sig"].width == sig
    assert layout["exp"].width == exp and layout["exp"].shape.signed


def test_bad_format():
    with pytest.raises(ValueError, match="in_format"):
        FloatMultiplier("fp9")
