"""The fast float64 kernel (model/fastpath.py) equals the integer definition, bit for bit.

The integer path (model/rounding.py) is itself checked against an exact Fraction reference in
test_model_rounding.py and test_model_dot.py; here every rounding of the fast path is compared
with it on inputs built to hit the fast path's delicate spots: sums just below a power of two (the
binade edge), exact ties, tiny addends that only reach the sticky or the random bits,
cancellation, subnormals, overflow, and NaN / infinity. For multi-term steps (dot = 2, 4, 8, 16)
both schemes of fastpath.dot_plan are covered (the accumulator on the products' grid, and the wide
fp32 / bf16 accumulator added by TwoSums), on cancellation-heavy, tie, signed-zero and
special-value cases, one step at a time and through mac_gemm.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from test_model_dot import dot_stimulus, exact_dot
from test_model_rounding import boundary_rand
from fp8mac.model import FORMATS, MacConfig, fp_dot, fp_fma, mac_gemm
from fp8mac.model import fastpath

ACC = ["fp16_ibm", "fp16", "bf16", "fp32"]


def acc_variants():
    out = [FORMATS[n] for n in ACC]
    out.append(dataclasses.replace(FORMATS["fp16_ibm"], subnormals=False, name="fp16_ibm_ftz"))
    out.append(dataclasses.replace(FORMATS["fp16"], overflow="saturate", name="fp16_sat"))
    return out


def tricky_operands(rng, acc_fmt, in_fmt, n):
    """Accumulator and operand codes concentrated on the fast path's delicate cases."""
    w = acc_fmt.width
    acc = rng.integers(0, 1 << w, n)
    # a third: accumulators that are exact powers of two (mantissa field 0)
    pow2 = rng.random(n) < 0.33
    acc = np.where(pow2, acc & ~((1 << acc_fmt.man_bits) - 1), acc)
    a = rng.integers(0, 1 << in_fmt.width, n)
    b = rng.integers(0, 1 << in_fmt.width, n)
    # a third: products of the opposite sign near the accumulator's scale or far below it
    acc_v = np.abs(acc_fmt.decode(acc))
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(np.isfinite(acc_v) & (acc_v > 0), acc_v, 1.0) * np.exp2(-rng.integers(0, 40, n))
    near = in_fmt.encode(np.sqrt(np.minimum(target, in_fmt.max_value**2 / 2)))
    pick = rng.random(n) < 0.33
    sign_a = np.where(acc_fmt.decode(acc) > 0, 1 << (in_fmt.width - 1), 0)
    a = np.where(pick, near | sign_a, a)
    b = np.where(pick, near, b)
    return acc, a, b


@pytest.mark.parametrize("acc_fmt", acc_variants(), ids=lambda f: f.label)
@pytest.mark.parametrize("in_name", ["fp8_e5m2", "fp8_e4m3"])
def test_round_pair_equals_integer_path(acc_fmt, in_name, seed):
    in_fmt = FORMATS[in_name]
    rng = np.random.default_rng(seed)
    n = 40_000
    acc, a, b = tricky_operands(rng, acc_fmt, in_fmt, n)
    with np.errstate(invalid="ignore"):
        s, e = fastpath.two_sum(acc_fmt.decode(acc), in_fmt.decode(a) * in_fmt.decode(b))
    modes = [("nearest", None), ("zero", None)]
    modes += [("stochastic", r) for r in (1, 2, 8, 13) if fastpath.supported(acc_fmt, r)]
    modes.append(("stochastic", min(32, 52 - acc_fmt.man_bits)))  # the widest r the fast path takes
    for rounding, rbits in modes:
        rand = rng.integers(0, 1 << rbits, n) if rbits else None
        want = fp_fma(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits)
        got = acc_fmt.encode(fastpath.round_pair(acc_fmt, s, e, rounding, rand, rbits))
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (
            f"{acc_fmt.label} {rounding} r={rbits} (FP8MAC_SEED={seed}): {bad.size} mismatches, first "
            f"acc={acc[bad[0]]:#x} a={a[bad[0]]:#x} b={b[bad[0]]:#x}: fast {got[bad[0]]:#x}, "
            f"integer {want[bad[0]]:#x}")


def test_binade_edge_is_exercised_and_exact():
    """2**k minus a tiny amount: the fast path must use the binade below, as the definition does."""
    f = FORMATS["fp16_ibm"]
    s = np.full(256, 1.0)
    e = np.full(256, -(2.0**-60))
    rand = np.arange(256)
    got = f.decode(f.encode(fastpath.round_pair(f, s, e, "stochastic", rand, 8)))
    # t = 1 - tiny in the binade below (ulp 2**-10): q = 255, so only R = 0 rounds down.
    assert got[0] == 1.0 - 2.0**-10 and np.all(got[1:] == 1.0)
    assert fastpath.round_pair(f, s[:1], e[:1], "zero")[0] == 1.0 - 2.0**-10
    assert fastpath.round_pair(f, s[:1], e[:1], "nearest")[0] == 1.0


def test_supported_limits():
    assert fastpath.supported(FORMATS["fp16_ibm"], 32)
    assert fastpath.supported(FORMATS["fp32"], 29)
    assert not fastpath.supported(FORMATS["fp32"], 30)


def test_mac_gemm_kernels_agree(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        cfg = MacConfig(rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 5)),
                        in_format=str(rng.choice(["fp8_e5m2", "fp8_e4m3"])),
                        acc_format=str(rng.choice(ACC)),
                        chunk=[None, 1, 3, 8][int(rng.integers(4))],
                        inner_rounding=str(rng.choice(["nearest", "stochastic", "zero"])),
                        outer_rounding=str(rng.choice(["nearest", "stochastic", "zero"])),
                        rbits=int(rng.integers(1, 17)), seed=int(rng.integers(1 << 32)))
        m, k, n = (int(x) for x in rng.integers(1, 24, 3))
        w = cfg.in_format.width
        a = rng.integers(0, 1 << w, (m, k))
        b = rng.integers(0, 1 << w, (k, n))
        want = mac_gemm(a, b, cfg, kernel="int")
        got = mac_gemm(a, b, cfg, kernel="float")
        assert np.array_equal(got, want), f"{cfg} {m}x{k}x{n} (FP8MAC_SEED={seed})"


def test_kernel_argument_checked():
    a = np.zeros((1, 1), int)
    with pytest.raises(ValueError, match="kernel must be 'int', 'float' or None"):
        mac_gemm(a, a, MacConfig(), kernel="gpu")
    with pytest.raises(ValueError, match="kernel='float' needs"):
        mac_gemm(a, a, MacConfig(acc_format="fp32", rbits=32, inner_rounding="stochastic"), kernel="float")


# ---- multi-term steps (dot > 1): fastpath.dot_plan / dot_sum against fp_dot ------------------------

# (acc, operands) pairs the float kernel must take: fp8 into every accumulator (and its variants),
# fp16 into fp32 (the FP16 baseline), bf16 and fp16_ibm
DOT_PAIRS = [(acc, FORMATS[i]) for acc in acc_variants() for i in ("fp8_e5m2", "fp8_e4m3")]
DOT_PAIRS += [(FORMATS[a], FORMATS["fp16"]) for a in ("fp32", "bf16", "fp16_ibm")]


def dot_pair_id(p):
    return f"{p[0].label}+{p[1].label}"


def modes_for(acc_fmt):
    modes = [("nearest", None), ("zero", None)]
    modes += [("stochastic", r) for r in (1, 8, 13) if fastpath.supported(acc_fmt, r)]
    modes.append(("stochastic", min(32, 52 - acc_fmt.man_bits)))  # the widest r the fast path takes
    return modes


def fast_dot(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits):
    """One d-term step by the float64 kernel's arithmetic."""
    plan = fastpath.dot_plan(acc_fmt, in_fmt, a.shape[-1])
    with np.errstate(invalid="ignore"):
        prods = in_fmt.decode(a) * in_fmt.decode(b)
    s, e = fastpath.dot_sum(plan, acc_fmt.decode(acc), prods)
    return acc_fmt.encode(fastpath.round_pair(acc_fmt, s, e, rounding, rand, rbits))


def compare_fast_dot(acc_fmt, in_fmt, acc, a, b, rng, exact=None, what=""):
    """fast_dot == fp_dot in every mode; with ``exact`` (fraction_ref Values) half of the stochastic
    draws lie on the decision boundary."""
    n = len(acc)
    for rounding, rbits in modes_for(acc_fmt):
        if rbits is None:
            rand = None
        elif exact is not None:
            rand = boundary_rand(rng, acc_fmt, exact, rbits)
        else:
            rand = rng.integers(0, 1 << rbits, n)
        want = fp_dot(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits)
        got = fast_dot(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (
            f"{what} {rounding} r={rbits}: {bad.size}/{n} mismatches, first acc={acc[bad[0]]:#x} "
            f"a={a[bad[0]].tolist()} b={b[bad[0]].tolist()}: fast {got[bad[0]]:#x}, integer {want[bad[0]]:#x}")


@pytest.mark.parametrize("d", [2, 4, 8])
@pytest.mark.parametrize("pair", DOT_PAIRS, ids=dot_pair_id)
def test_dot_sum_equals_integer_path(pair, d, seed):
    """Random, cancellation-heavy (exactly cancelling pairs leaving tiny products, accumulators
    cancelling the products' sum), signed-zero and special-value rows."""
    acc_fmt, in_fmt = pair
    assert fastpath.dot_plan(acc_fmt, in_fmt, d) is not None
    rng = np.random.default_rng(seed)
    acc, a, b = dot_stimulus(rng, acc_fmt, in_fmt, 4000, d)
    compare_fast_dot(acc_fmt, in_fmt, acc, a, b, rng, what=f"{dot_pair_id(pair)} d={d}")
    # and a smaller batch with stochastic draws on the decision boundary
    acc, a, b = dot_stimulus(rng, acc_fmt, in_fmt, 300, d)
    compare_fast_dot(acc_fmt, in_fmt, acc, a, b, rng, exact_dot(acc_fmt, in_fmt, acc, a, b),
                     what=f"{dot_pair_id(pair)} d={d} boundary")


def wide_stress(rng, n, d):
    """fp32 accumulators in 2**18 .. 2**23 and fp16 products whose exact sum with them needs more
    than float64's 53 bits (fp16's smallest product is 2**-48). Three kinds of rows:

    * random: a product near 2**12, tails of 2**-40, 2**-43, 2**-48, random signs and bits;
    * Sterbenz: the accumulator is minus the products' sum, rounded and nudged by a few codes;
    * ties: products 2**12 - 2**12 + (half of fp32's ulp of acc) + (+2**-48, -2**-48 or 0): the
      exact sum is a tie, or misses one by 2**-48 (only the sign of float64's error tells).
    """
    f16, f32 = FORMATS["fp16"], FORMATS["fp32"]

    def p2(k):  # fp16 code of 2**k, k in -24..15
        return (k + 15) << 10 if k >= -14 else 1 << (k + 24)

    pairs = [(p2(6), p2(6)), (p2(-20), p2(-20)), (p2(-19), p2(-24)), (p2(-24), p2(-24)),
             (p2(-2), p2(-2)), (p2(-12), p2(-12))]
    pick = rng.integers(0, len(pairs), (n, d))
    a = np.array([[pairs[k][0] for k in row] for row in pick]) | (rng.integers(0, 2, (n, d)) << 15)
    b = np.array([[pairs[k][1] for k in row] for row in pick]) | np.where(
        rng.random((n, d)) < 0.3, rng.integers(1, 4, (n, d)), 0)  # a few more bits
    a[:, 0] = p2(6) | (rng.integers(0, 2, n) << 15)  # always a large product
    b[:, 0] = p2(6) | rng.integers(0, 1 << 10, n)
    e = rng.integers(18, 24, n)
    acc = (rng.integers(0, 2, n) << 31) | ((e + 127) << 23) | rng.integers(0, 1 << 23, n)
    with np.errstate(all="ignore"):
        prod = (f16.decode(a) * f16.decode(b)).sum(axis=1)
        sterbenz = f32.encode(-prod).astype(np.int64) + rng.integers(-3, 4, n)
    kind = rng.random(n)
    acc = np.where(kind < 0.25, sterbenz, acc)
    tie = np.flatnonzero((kind >= 0.25) & (kind < 0.6))
    for i in tie:
        h = int(e[i]) - 24  # half of fp32's ulp in the binade 2**e
        sign = int(acc[i]) >> 31 << 15  # the half ulp pushes |acc| up
        row_a = [p2(6), p2(6) | 0x8000, p2(h // 2) | sign, p2(-24) | (int(rng.integers(0, 2)) << 15)]
        row_b = [p2(6), p2(6), p2(h - h // 2), [p2(-24), 0][int(rng.integers(0, 3)) // 2]]
        a[i], b[i] = 0, 0
        a[i, :4], b[i, :4] = row_a, row_b
    return acc, a, b, tie


@pytest.mark.parametrize("d", [4, 8])
def test_wide_accumulator_path_stress(d, seed):
    """The wide path (accumulator added by TwoSums) where float64 alone cannot hold the sum."""
    rng = np.random.default_rng(seed)
    acc_fmt, in_fmt = FORMATS["fp32"], FORMATS["fp16"]
    plan = fastpath.dot_plan(acc_fmt, in_fmt, d)
    assert plan is not None and not plan.acc_on_grid
    acc, a, b, tie = wide_stress(rng, 3000, d)
    exact = exact_dot(acc_fmt, in_fmt, acc, a, b)
    compare_fast_dot(acc_fmt, in_fmt, acc, a, b, rng, exact, what="wide")
    # the tie rows are ties, or miss one by 2**-48 either way
    side = []
    for i in tie:
        ulp = Fraction(2) ** (int(exact[i].mag).bit_length() - 1 - 23)
        t = exact[i].mag / ulp % 1
        side.append((t > Fraction(1, 2)) - (t < Fraction(1, 2)))
    assert min(side.count(-1), side.count(0), side.count(1)) > 100, side
    # the sums need more than 53 bits (float64 alone is inexact) in most rows
    f16 = FORMATS["fp16"]
    with np.errstate(all="ignore"):
        naive = acc_fmt.decode(acc) + (f16.decode(a) * f16.decode(b)).sum(axis=1)
    inexact = sum(Fraction(float(v)) != (-t.mag if t.sign else t.mag) for v, t in zip(naive, exact))
    assert inexact > 1000


def test_dot_plan_table():
    F = FORMATS
    for acc in ("fp16_ibm", "fp16"):
        for i in ("fp8_e5m2", "fp8_e4m3"):
            for d in (2, 4, 8, 16, 32, 64):
                plan = fastpath.dot_plan(F[acc], F[i], d)
                assert plan is not None and plan.acc_on_grid, (acc, i, d)
    for acc in ("fp32", "bf16"):
        for i in ("fp8_e5m2", "fp8_e4m3", "fp16"):
            for d in (2, 4, 8, 16, 32, 64):
                plan = fastpath.dot_plan(F[acc], F[i], d)
                assert plan is not None and not plan.acc_on_grid, (acc, i, d)
    # fp8_e5m2 into fp16_ibm: grid unit 2**-39 (the accumulator's subnormal ulp), 9 terms at d = 8
    assert fastpath.dot_plan(F["fp16_ibm"], F["fp8_e5m2"], 8) == fastpath.DotPlan(-39 + 54 - 4, True)
    for i in ("bf16", "fp32"):  # products spanning hundreds of bits: the integer path
        assert fastpath.dot_plan(F["fp32"], F[i], 2) is None


def test_split_is_exact_at_its_limits(rng):
    S = -20
    x = np.concatenate([np.ldexp(rng.integers(-2**52, 2**52, 5000).astype(float), rng.integers(-72, -20, 5000)),
                        [2.0 ** (S + 51), -(2.0 ** (S + 51)), 2.0 ** (S - 1), 3 * 2.0 ** (S - 1), -0.0, 0.0]])
    hi, lo = fastpath.split(x, S)
    assert all(Fraction(h) + Fraction(q) == Fraction(v) for h, q, v in zip(hi, lo, x))  # exact
    assert np.all(np.abs(lo) <= 2.0 ** (S - 1)) and np.all(np.mod(hi, 2.0 ** S) == 0)
    assert not np.any((hi == 0) & np.signbit(hi))  # hi is never -0, lo is -0 exactly when x is
    np.testing.assert_array_equal((lo == 0) & np.signbit(lo), (x == 0) & np.signbit(x))


def dot_operands(rng, fmt, shape, d):
    """GEMM operands for dot steps: moderate values, exactly cancelling neighbours within a step
    (a[:, k+1] = -a[:, k], b[k+1] = b[k]), zeros of both signs and tiny negatives (inner sums that
    round to -0), and a few uniform codes (specials)."""
    m, k = shape
    sign = 1 << (fmt.width - 1)
    ef = fmt.bias + rng.integers(-4, 5, shape)
    a = (rng.integers(0, 2, shape) << (fmt.width - 1)) | (ef << fmt.man_bits) | rng.integers(0, 1 << fmt.man_bits, shape)
    kind = rng.random(shape)
    a = np.where(kind < 0.15, rng.integers(0, 2, shape) * sign, a)  # +-0
    a = np.where((kind >= 0.15) & (kind < 0.25), sign | 1, a)  # the smallest negative subnormal
    a = np.where(kind > 0.97, rng.integers(0, 1 << fmt.width, shape), a)
    for j in range(0, k - 1, 2):  # half the rows: neighbours cancel
        rows = rng.random(m) < 0.5
        a[rows, j + 1] = a[rows, j] ^ sign
    return a


def test_mac_gemm_dot_kernels_agree(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        d = int(rng.choice([2, 4, 8, 16]))
        acc = str(rng.choice(ACC))
        fin = str(rng.choice(["fp8_e5m2", "fp8_e4m3"] + (["fp16"] if acc in ("fp32", "bf16") else [])))
        cfg = MacConfig(rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 5)), in_format=fin, acc_format=acc,
                        dot=d, chunk=[None, d, 2 * d, 4 * d][int(rng.integers(4))],
                        inner_rounding=str(rng.choice(["nearest", "stochastic", "zero"])),
                        outer_rounding=str(rng.choice(["nearest", "stochastic", "zero"])),
                        rbits=int(rng.integers(1, 17)), seed=int(rng.integers(1 << 32)))
        m, k, n = (int(x) for x in rng.integers(1, 40, 3))
        a = dot_operands(rng, cfg.in_format, (m, k), d)
        b = dot_operands(rng, cfg.in_format, (n, k), d).T.copy()
        b[1::2] = b[0:-1:2][: len(b[1::2])]  # b[k+1] = b[k]: with a's negated neighbours, exact cancellation
        want = mac_gemm(a, b, cfg, kernel="int")
        got = mac_gemm(a, b, cfg, kernel="float")
        assert np.array_equal(got, want), f"{cfg} {m}x{k}x{n} (FP8MAC_SEED={seed})"


def test_mac_gemm_dot_negative_zero_sums():
    """Inner sums that round to -0 followed by steps of -0 products only: -0 survives exactly when
    every term of a step is -0 (both kernels; K = 8 and d = 4: no padding)."""
    cfg = MacConfig(rows=1, cols=2, acc_format="fp16", chunk=None, dot=4)
    a = np.array([[0x81, 0x80, 0x80, 0x00, 0x80, 0x80, 0x00, 0x80]])  # -2**-16, -0, ..., +0 ...
    b = np.array([[0x01, 0x00, 0x00, 0x80, 0x00, 0x00, 0x80, 0x00],  # column 0: every product -0 after the first
                  [0x01, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00]]).T  # column 1: one +0 product
    for kernel in ("int", "float"):
        np.testing.assert_array_equal(mac_gemm(a, b, cfg, kernel=kernel), [[0x8000, 0x0000]])
