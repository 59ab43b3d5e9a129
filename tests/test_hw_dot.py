# amaranth: UnusedElaboratable=no
"""The two dot-width-d MAC step structures against the golden model's fp_dot, bit for bit:
ProductSum + MacUnit (the general one) and DotMacUnit (one fixed-point frame).

Case families per configuration: uniformly random codes; exact cancellation (term 1 = -term 0,
so the sum is decided by the other terms, which may lie far below them: the case a windowed
adder gets wrong); near-cancellation of the accumulator against the products; products around
the accumulator's subnormal range; specials and signed zeros (every term -0, inf - inf); and, for
stochastic rounding, random bits at each case's rounding boundary. FP8MAC_SEED (printed) replays
a run; FP8MAC_TIER=full runs more formats and an exhaustive sweep.
"""

import numpy as np
import pytest
from amaranth.hdl import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.hw.dot import (DotMacUnit, ProductSum, dot_frame, normalize_top, place_signed,
                           product_frame, use_dot_frame)
from fp8mac.model.arith import fp_dot
from fp8mac.model.formats import FORMATS
from fp8mac.sim.arith_harness import DotStep  # ProductSum + MacUnit, as a PE wires them

from test_hw_adder import (FULL, SCALE, SEED, boundary_rand, corner_codes, finite_codes, fmt_of,
                           rand_bits, report, simulate)


def pack_terms(codes, width):
    """(n, d) codes -> n words, term j in bits [j*width, (j+1)*width)."""
    words = np.zeros(len(codes), dtype=object)
    for j in range(codes.shape[1]):
        words = words + (codes[:, j].astype(object) << (j * width))
    return words


def dot_cases(acc_fmt, in_fmt, d, rng):
    """(acc, a, b) arrays, a and b of shape (n, d): the families of the module docstring."""
    w = in_fmt.width
    accs, As, Bs = [], [], []

    def add(acc, a, b):
        accs.append(np.asarray(acc, dtype=np.int64))
        As.append(np.asarray(a, dtype=np.int64))
        Bs.append(np.asarray(b, dtype=np.int64))

    n = 300 * SCALE if FULL else 150  # per family; the quick tier halves it (CI time), the full one x 8
    # Uniformly random codes.
    add(rng.integers(0, 1 << acc_fmt.width, n), rng.integers(0, 1 << w, (n, d)),
        rng.integers(0, 1 << w, (n, d)))
    # Exact cancellation of terms 0 and 1; the others random (tiny ones included), acc random or 0.
    a = np.stack([finite_codes(in_fmt, rng, n) for _ in range(d)], axis=1)
    b = np.stack([finite_codes(in_fmt, rng, n) for _ in range(d)], axis=1)
    a[:, 1] = a[:, 0] ^ (1 << (w - 1))
    b[:, 1] = b[:, 0]
    acc = np.where(rng.integers(0, 2, n) == 1, 0, rng.integers(0, 1 << acc_fmt.width, n))
    add(acc, a, b)
    # Every term cancelled but one small one: pairs (2i, 2i+1) opposite, the last term tiny.
    if d >= 4:
        a = np.stack([finite_codes(in_fmt, rng, n) for _ in range(d)], axis=1)
        b = np.stack([finite_codes(in_fmt, rng, n) for _ in range(d)], axis=1)
        a[:, 1:d - 1:2] = a[:, 0:d - 2:2] ^ (1 << (w - 1))
        b[:, 1:d - 1:2] = b[:, 0:d - 2:2]
        a[:, d - 1] = rng.integers(0, 1 << (in_fmt.man_bits + 2), n)  # subnormal or small
        add(np.zeros(n, dtype=np.int64), a, b)
    # The accumulator near -(sum of products), so that it cancels.
    a = np.stack([finite_codes(in_fmt, rng, n) for _ in range(d)], axis=1)
    b = np.stack([finite_codes(in_fmt, rng, n) for _ in range(d)], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        s = (in_fmt.decode(a) * in_fmt.decode(b)).sum(axis=1)
        target = acc_fmt.encode(-s).astype(np.int64)
    code = np.clip(target + rng.integers(-3, 4, n), 0, (1 << acc_fmt.width) - 1)
    add(code, a, b)
    # Products around the accumulator's smallest ulps, with subnormal accumulators.
    small = np.flatnonzero(in_fmt.unpack(np.arange(1 << w)).exp <= in_fmt.emin - in_fmt.man_bits + 1)
    a = rng.choice(small, (n, d))
    b = rng.choice(small, (n, d))
    acc = rng.integers(0, 1 << acc_fmt.man_bits, n) | (rng.integers(0, 2, n) << (acc_fmt.width - 1))
    add(acc, a, b)
    # Negative sums that are powers of two (DotMacUnit's ~s + 1 carries through every bit of ~s,
    # so ~s has one leading zero more than the magnitude) and their neighbours: acc -2**e, the
    # products +-0 or, in half the cases, one of them tiny.
    am = acc_fmt.man_bits
    acc = (rng.integers(1, acc_fmt.max_code >> am, n // 4) << am) | (1 << (acc_fmt.width - 1))
    a = np.zeros((n // 4, d), dtype=np.int64)
    a[:, 0] = np.where(rng.integers(0, 2, n // 4) == 1, 0, rng.integers(0, 1 << w, n // 4))
    a[:, 0] &= (1 << (in_fmt.man_bits + 2)) - 1 | (1 << (w - 1))  # tiny, either sign
    add(acc, a, np.stack([finite_codes(in_fmt, rng, n // 4) for _ in range(d)], axis=1))
    # Specials and signed zeros: corner codes everywhere, and every term -0.
    ci, ca = corner_codes(in_fmt), corner_codes(acc_fmt)
    add(rng.choice(ca, n), rng.choice(ci, (n, d)), rng.choice(ci, (n, d)))
    neg0 = 1 << (w - 1)
    a = np.full((8, d), neg0)
    b = np.full((8, d), 0x3C if w == 8 else 1)
    add([0, 1 << (acc_fmt.width - 1)] * 4, a, b)
    return np.concatenate(accs), np.concatenate(As), np.concatenate(Bs)


ROUNDINGS = [("nearest", None), ("stochastic", 8), ("zero", None)]
# Quick tier: every dot width and rounding once on e5m2 -> fp16_ibm, e4m3, and the wide
# accumulators; the full tier crosses them all.
QUICK = [("fp16_ibm", "fp8_e5m2", 2, "nearest", None), ("fp16_ibm", "fp8_e5m2", 4, "stochastic", 8),
         ("fp16_ibm", "fp8_e5m2", 8, "nearest", None), ("fp16_ibm", "fp8_e5m2", 8, "stochastic", 8),
         ("fp16_ibm", "fp8_e5m2", 4, "zero", None), ("fp16_ibm", "fp8_e4m3", 8, "stochastic", 8),
         ("fp32", "fp8_e5m2", 4, "nearest", None), ("fp32", "fp16", 2, "nearest", None)]
CONFIGS = [("fp16_ibm", "fp8_e5m2", d, r, rb) for d in (2, 4, 8) for r, rb in ROUNDINGS]
CONFIGS += [("fp16_ibm", "fp8_e4m3", 4, "nearest", None), ("fp16_ibm", "fp8_e4m3", 8, "stochastic", 8),
            ("fp32", "fp8_e5m2", 4, "nearest", None), ("fp32", "fp16", 2, "nearest", None)]
if FULL:
    CONFIGS += [("fp16_ibm", "fp8_e5m2", 16, r, rb) for r, rb in ROUNDINGS]
    CONFIGS += [("fp16_ibm", "fp8_e4m3", d, r, rb) for d in (2, 16) for r, rb in ROUNDINGS]
    CONFIGS += [("bf16", "fp8_e5m2", 8, "stochastic", 16), ("fp32", "fp16", 4, "stochastic", 8)]
else:
    CONFIGS = QUICK


def config_id(config):
    acc, inp, d, r, rb = config
    return "-".join([fmt_of(acc).label, fmt_of(inp).label, f"dot{d}", r] + ([str(rb)] if rb else []))


def build(structure, acc_fmt, in_fmt, d, rounding, rbits):
    if structure == "frame":
        return DotMacUnit(acc_fmt, in_fmt, d, rounding, rbits)
    return DotStep(acc_fmt, in_fmt, d, rounding, rbits)


@pytest.mark.parametrize("structure", ["sum+mac", "frame"])
@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_dot_step(config, structure):
    acc_fmt, in_fmt = fmt_of(config[0]), fmt_of(config[1])
    d, rounding, rbits = config[2:]
    print(f"FP8MAC_SEED={SEED}")
    rng = np.random.default_rng([SEED, CONFIGS.index(config)])
    acc, a, b = dot_cases(acc_fmt, in_fmt, d, rng)
    cases = {"acc": acc, "a": pack_terms(a, in_fmt.width), "b": pack_terms(b, in_fmt.width)}
    if rounding == "stochastic":
        rand = rand_bits(rng, len(acc), rbits)
        edge = boundary_rand(lambda r: fp_dot(acc_fmt, in_fmt, acc, a, b, rounding, r, rbits),
                             len(acc), rbits, rng)
        cases["rand"] = np.where(rng.integers(0, 2, len(acc)) == 1, edge, rand)
    want = fp_dot(acc_fmt, in_fmt, acc, a, b, rounding, cases.get("rand"), rbits).astype(np.int64)
    got = simulate(build(structure, acc_fmt, in_fmt, d, rounding, rbits), cases, "result")
    report(f"{structure} {config_id(config)}", cases, got, want, acc_fmt)


@pytest.mark.skipif(not FULL, reason="exhaustive sweep: FP8MAC_TIER=full (make regress)")
@pytest.mark.parametrize("structure", ["sum+mac", "frame"])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_dot2_every_product_pair(rounding, structure):
    """Every pair of e5m2 products (a0 * b0 + a1 * b1 over all 2**16 (a0, a1) for a set of b's)
    against a set of accumulators, two-term dot step, bit for bit."""
    acc_fmt, in_fmt = FORMATS["fp16_ibm"], FORMATS["fp8_e5m2"]
    rng = np.random.default_rng([SEED, 7])
    a0, a1 = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    a = np.stack([a0.ravel(), a1.ravel()], axis=1)
    for b_pair, acc_code in (((0x3C, 0xBC), 0), ((0x3C, 0x3C), 0x3E00), ((0x01, 0x7B), 0x8001)):
        b = np.broadcast_to(np.array(b_pair), a.shape)
        acc = np.full(len(a), acc_code)
        cases = {"acc": acc, "a": pack_terms(a, 8), "b": pack_terms(b, 8)}
        if rounding == "stochastic":
            cases["rand"] = rng.integers(0, 256, len(a))
        want = fp_dot(acc_fmt, in_fmt, acc, a, b, rounding, cases.get("rand"),
                      8 if rounding == "stochastic" else None).astype(np.int64)
        got = simulate(build(structure, acc_fmt, in_fmt, 2, rounding,
                             8 if rounding == "stochastic" else None), cases, "result")
        report(f"dot2 b={b_pair} acc={acc_code:#x}", cases, got, want, acc_fmt)


def test_product_frame():
    """The frame is the exact span of the format's products (written out from the format table)."""
    # fp8_e5m2: products from 2**-32 (smallest subnormal squared) to below 2**32 (57344**2 < 2**32).
    assert product_frame("fp8_e5m2") == (-32, 64)
    # fp8_e4m3: 2**-18 .. below 2**18 (448**2 < 2**18).
    assert product_frame("fp8_e4m3") == (-18, 36)
    # fp16: 2**-48 .. below 2**32.
    assert product_frame("fp16") == (-48, 80)


def test_dot_frame():
    """The single frame spans the accumulator's smallest ulp to one bit above the largest sum."""
    # e5m2 into fp16_ibm: lsb 2**-39 (fp16_ibm's smallest subnormal); |sum| < 8 * 2**32 + 2**33
    # = 2**35 + 2**33 < 2**36: 75 bits of magnitude (2**-39 .. 2**35), plus a sign bit.
    assert dot_frame("fp16_ibm", "fp8_e5m2", 8) == (-39, 76)
    assert use_dot_frame("fp16_ibm", "fp8_e5m2", 8)
    assert not use_dot_frame("fp32", "fp8_e5m2", 8)  # fp32's range: ~280 bits


@pytest.mark.parametrize("dot", [0, 1, 3, 128, True, 2.0])
def test_bad_dot(dot):
    with pytest.raises(ValueError, match="dot must be a power of two in 2..64"):
        ProductSum("fp8_e5m2", dot)
    with pytest.raises(ValueError, match="dot must be a power of two in 2..64"):
        DotMacUnit("fp16_ibm", "fp8_e5m2", dot)


class Helper(wiring.Component):
    """One of DotMacUnit's datapath helpers on ports: ``place`` (place_signed) or ``normalize``
    (normalize_top, ``out`` = sticky above the top bits)."""

    def __init__(self, kind, width, amount_width, keep=None, max_shift=None):
        self._args = (kind, width, keep, max_shift)
        if kind == "place":
            members = {"sig": In(3), "amount": In(amount_width), "sign": In(1), "out": Out(width)}
        else:
            members = {"value": In(width), "shift": In(amount_width), "out": Out(keep + 1)}
        super().__init__(members)

    def elaborate(self, platform):
        kind, width, keep, max_shift = self._args
        m = Module()
        if kind == "place":
            m.d.comb += self.out.eq(place_signed(m, "p", self.sig, self.amount, self.sign, width))
        else:
            top, sticky = normalize_top(m, "n", self.value, self.shift, keep, max_shift)
            m.d.comb += self.out.eq(Cat(top, sticky))
        return m


def test_place_signed():
    """(sig << amount) ^ sign over the window, every input; amounts past the window included."""
    width = 9
    sig, amount, sign = (g.ravel() for g in np.meshgrid(np.arange(8), np.arange(16), np.arange(2)))
    mask = (1 << width) - 1
    want = np.array([((int(x) << int(k)) & mask) ^ (mask if s else 0)
                     for x, k, s in zip(sig, amount, sign)])
    got = simulate(Helper("place", width, 4), {"sig": sig, "amount": amount, "sign": sign}, "out")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("keep, max_shift", [(4, 9), (3, 5), (5, 12)])
def test_normalize_top(keep, max_shift):
    """The top bits of value << shift and the OR of the rest, every 12-bit value with every shift
    up to min(its leading zeros, max_shift)."""
    width = 12
    cases = [(v, k) for v in range(1 << width)
             for k in range(min(width - v.bit_length(), max_shift) + 1)]
    value, shift = np.array(cases).T
    full = [int(v) << int(k) for v, k in cases]
    low = width - keep
    want = np.array([(f >> low) | (int(f & ((1 << low) - 1) != 0) << keep) for f in full])
    got = simulate(Helper("normalize", width, max_shift.bit_length(), keep, max_shift),
                   {"value": value, "shift": shift}, "out")
    np.testing.assert_array_equal(got, want)
