"""model/rounding.py and model/arith.py: ``fp_add`` and the fused MAC step ``fp_fma``.

Checked three ways: against correctly rounded library arithmetic (NumPy float16/float32,
ml_dtypes bfloat16), against Graphcore's gfloat rounding of exact float64 sums, and against the
exact Fraction reference (tests/fraction_ref.py) on corner cases and on >= 10**4 random cases per
operation and rounding mode.
"""

from __future__ import annotations

import dataclasses
import functools

import gfloat
import ml_dtypes
import numpy as np
import pytest

import fraction_ref as ref
from fp8mac.model import FORMATS, FloatFormat, Lfsr, fp_add, fp_fma

F = FORMATS
FP16_FTZ = dataclasses.replace(F["fp16"], subnormals=False, name="fp16_ftz")
E5M2_FTZ = dataclasses.replace(F["fp8_e5m2"], subnormals=False, name="e5m2_ftz")
FP16_SAT = dataclasses.replace(F["fp16"], overflow="saturate", name="fp16_sat")
MODES = ("nearest", "zero", "stochastic")
RBITS = (1, 4, 8, 32)  # stochastic cases are split over these r

# (acc_format, in_format) pairs of the MAC step; the last two: flush-to-zero and saturation.
FMA_PAIRS = [(F[a], F[i]) for a in ("fp16_ibm", "fp16", "bf16", "fp32") for i in ("fp8_e5m2", "fp8_e4m3")]
FMA_PAIRS += [(FP16_FTZ, E5M2_FTZ), (FP16_SAT, F["fp8_e5m2"])]
# A wide-range, 3-bit accumulator: products (6 bits) exceed its precision and an accumulator far
# below a product is truncated into a sticky bit, so ties and sticky bits meet (no preset reaches this).
E8M2 = FloatFormat(8, 2, name="e8m2")
FMA_PAIRS += [(E8M2, F["fp8_e5m2"])]
ADD_FORMATS = [F[n] for n in ("fp16_ibm", "fp16", "bf16", "fp32", "fp8_e5m2", "fp8_e4m3")] + [FP16_FTZ, FP16_SAT]


def pair_id(p):
    return f"{p[0].label}+{p[1].label}"


# ---- stimulus ------------------------------------------------------------------------------------

def fields(fmt, codes):
    """(sign, exponent field, mantissa field) of codes, by bit slicing."""
    c = np.asarray(codes, np.int64)
    return c >> (fmt.width - 1), (c >> fmt.man_bits) & ((1 << fmt.exp_bits) - 1), c & ((1 << fmt.man_bits) - 1)


def make_codes(fmt, sign, ef, mf):
    return (np.asarray(sign, np.int64) << (fmt.width - 1)) | (np.asarray(ef, np.int64) << fmt.man_bits) | mf


def near_codes(rng, fmt, target_exp, spread):
    """Random codes whose unbiased exponent is within ``spread`` of ``target_exp`` (clipped to the
    finite range, exponent field 0 = subnormals), random sign and mantissa."""
    n = len(target_exp)
    top = fmt.exp_field_max - (1 if fmt.specials == "ieee" else 0)
    ef = np.clip(target_exp + fmt.bias + rng.integers(-spread, spread + 1, n), 0, top)
    mf = rng.integers(0, 1 << fmt.man_bits, n)
    if fmt.specials == "fn":
        mf = np.where(ef == fmt.exp_field_max, np.minimum(mf, (1 << fmt.man_bits) - 2), mf)
    return make_codes(fmt, rng.integers(0, 2, n), ef, mf)


def unbiased_exp(fmt, codes):
    _, ef, _ = fields(fmt, codes)
    return np.maximum(ef, 1) - fmt.bias


def fma_stimulus(rng, acc_fmt, in_fmt, n):
    """``(acc, a, b)``: a, b uniform codes (specials included); acc mostly near the product's
    magnitude (cancellation, carries, every alignment), sometimes uniform, zero, or minus the
    product rounded and nudged by a few codes (massive cancellation)."""
    a = rng.integers(0, 1 << in_fmt.width, n)
    b = rng.integers(0, 1 << in_fmt.width, n)
    pexp = unbiased_exp(in_fmt, a) + unbiased_exp(in_fmt, b)
    acc = near_codes(rng, acc_fmt, pexp, acc_fmt.precision + 4)
    kind = rng.random(n)
    acc = np.where(kind < 0.15, rng.integers(0, 1 << acc_fmt.width, n), acc)
    acc = np.where((kind >= 0.15) & (kind < 0.2), rng.integers(0, 2, n) << (acc_fmt.width - 1), acc)
    with np.errstate(all="ignore"):
        prod = in_fmt.decode(a) * in_fmt.decode(b)
        neg = acc_fmt.encode(np.where(np.isfinite(prod), -prod, 0.0)).astype(np.int64)
    nudged = neg + rng.integers(-2, 3, n)
    ok = (nudged >= 0) & (nudged < 1 << acc_fmt.width) & ((nudged ^ neg) >> (acc_fmt.width - 1) == 0)
    acc = np.where((kind >= 0.2) & (kind < 0.35) & ok, nudged, acc)
    return acc, a, b


def add_stimulus(rng, fmt, n):
    """``(a, b)``: a uniform; b near a's exponent, sometimes uniform, or -a nudged by a few codes."""
    a = rng.integers(0, 1 << fmt.width, n)
    b = near_codes(rng, fmt, unbiased_exp(fmt, a), fmt.precision + 4)
    kind = rng.random(n)
    b = np.where(kind < 0.15, rng.integers(0, 1 << fmt.width, n), b)
    negated = (a ^ (1 << (fmt.width - 1))) + rng.integers(-2, 3, n)
    ok = (negated >= 0) & (negated < 1 << fmt.width) & ((negated ^ a) >> (fmt.width - 1) == 1)
    b = np.where((kind >= 0.15) & (kind < 0.3) & ok, negated, b)
    return a, b


def corner_codes(fmt):
    """Zeros, subnormal and normal edges, one, max, infinities and NaNs (several payloads), both signs."""
    m, sign = fmt.man_bits, 1 << (fmt.width - 1)
    one = fmt.bias << m
    pos = [0, 1, (1 << m) - 1, 1 << m, (1 << m) + 1, one, one + 1, fmt.max_code - 1, fmt.max_code]
    if fmt.specials == "ieee":
        top = fmt.exp_field_max << m
        pos += [top, top | 1, top | (1 << (m - 1)), top | ((1 << m) - 1)]
    elif fmt.specials == "fn":
        pos += [sign - 1]
    return sorted(set(pos) | {c | sign for c in pos})


# ---- reference evaluation ----------------------------------------------------------------------

decode_cached = functools.lru_cache(maxsize=None)(ref.decode)


def exact_fma(acc_fmt, in_fmt, acc, a, b):
    return [ref.add(decode_cached(acc_fmt, x), ref.mul(decode_cached(in_fmt, y), decode_cached(in_fmt, z)))
            for x, y, z in zip(acc.tolist(), a.tolist(), b.tolist())]


def exact_add(fmt, a, b):
    return [ref.add(decode_cached(fmt, x), decode_cached(fmt, y)) for x, y in zip(a.tolist(), b.tolist())]


def boundary_rand(rng, fmt, exact, rbits):
    """Random draws, half of them on the decision boundary ``2**r - q`` or just below it."""
    n = len(exact)
    q = np.array([ref.stochastic_q(fmt, v, rbits) for v in exact], dtype=np.int64)
    top = 1 << rbits
    edge = np.clip(top - q - rng.integers(0, 2, n), 0, top - 1)
    return np.where(rng.random(n) < 0.5, rng.integers(0, top, n, dtype=np.int64), edge)


def check_against_reference(fmt, exact, got, rounding, rand=None, rbits=None, what=""):
    want = np.array([ref.round_value(fmt, v, rounding, None if rand is None else int(r), rbits)
                     for v, r in zip(exact, rand if rand is not None else [None] * len(exact))])
    bad = np.flatnonzero(want != got)
    if bad.size:
        i = bad[:5]
        raise AssertionError(f"{what} {rounding} rbits={rbits}: {bad.size}/{len(exact)} mismatches; "
                             f"exact {[exact[k] for k in i]} rand {None if rand is None else rand[i]} "
                             f"got {[hex(g) for g in got[i]]} want {[hex(w) for w in want[i]]}")


def run_modes(fmt, exact, compute, rng, what):
    """Run ``compute(rounding, rand, rbits, part)`` (the model, vectorized over the cases ``part``)
    in every mode and compare with the reference; stochastic cases are split over ``RBITS``."""
    n = len(exact)
    for mode in MODES:
        if mode != "stochastic":
            check_against_reference(fmt, exact, compute(mode, None, None), mode, what=what)
            continue
        for part, rbits in zip(np.array_split(np.arange(n), len(RBITS)), RBITS):
            sub = [exact[k] for k in part]
            rand = boundary_rand(rng, fmt, sub, rbits)
            got = compute(mode, rand, rbits, part)
            check_against_reference(fmt, sub, got, mode, rand, rbits, what)


# ---- Fraction reference: random cases (>= 10**4 per operation and mode) -------------------------

N_FMA = 1024  # per pair and mode: 11 pairs -> 11,264 cases per mode
N_ADD = 1280  # per format and mode: 8 formats -> 10,240 cases per mode


@pytest.mark.parametrize("pair", FMA_PAIRS, ids=pair_id)
def test_fma_random_against_fractions(pair, rng):
    acc_fmt, in_fmt = pair
    acc, a, b = fma_stimulus(rng, acc_fmt, in_fmt, N_FMA)
    exact = exact_fma(acc_fmt, in_fmt, acc, a, b)

    def compute(mode, rand, rbits, part=slice(None)):
        return fp_fma(acc_fmt, in_fmt, acc[part], a[part], b[part], mode, rand, rbits)

    run_modes(acc_fmt, exact, compute, rng, pair_id(pair))


@pytest.mark.parametrize("fmt", ADD_FORMATS, ids=lambda f: f.label)
def test_add_random_against_fractions(fmt, rng):
    a, b = add_stimulus(rng, fmt, N_ADD)
    exact = exact_add(fmt, a, b)

    def compute(mode, rand, rbits, part=slice(None)):
        return fp_add(fmt, a[part], b[part], mode, rand, rbits)

    run_modes(fmt, exact, compute, rng, fmt.label)


# ---- Fraction reference: corner cases ----------------------------------------------------------

@pytest.mark.parametrize("fmt", ADD_FORMATS, ids=lambda f: f.label)
def test_add_corner_cases(fmt, rng):
    c = np.array(corner_codes(fmt))
    a, b = (x.ravel() for x in np.meshgrid(c, c, indexing="ij"))
    exact = exact_add(fmt, a, b)

    def compute(mode, rand, rbits, part=slice(None)):
        return fp_add(fmt, a[part], b[part], mode, rand, rbits)

    run_modes(fmt, exact, compute, rng, fmt.label)


@pytest.mark.parametrize("pair", FMA_PAIRS, ids=pair_id)
def test_fma_corner_cases(pair, rng):
    acc_fmt, in_fmt = pair
    ci = corner_codes(in_fmt)
    m, sign = acc_fmt.man_bits, 1 << (acc_fmt.width - 1)
    acc_c = [0, 1, 1 << m, acc_fmt.bias << m, acc_fmt.max_code] + ([acc_fmt.inf_code] if acc_fmt.has_inf else [])
    acc_c = sorted(set(acc_c) | {x | sign for x in acc_c}) + [acc_fmt.nan_code]
    acc, a, b = (x.ravel() for x in np.meshgrid(acc_c, ci, ci, indexing="ij"))
    exact = exact_fma(acc_fmt, in_fmt, acc, a, b)

    def compute(mode, rand, rbits, part=slice(None)):
        return fp_fma(acc_fmt, in_fmt, acc[part], a[part], b[part], mode, rand, rbits)

    run_modes(acc_fmt, exact, compute, rng, pair_id(pair))


def test_special_results_by_hand():
    """IEEE 754 special cases, expected codes written out (ARCHITECTURE.md §2)."""
    h = F["fp16"]  # +0 0x0000, -0 0x8000, +inf 0x7C00, -inf 0xFC00, 1.0 0x3C00, canonical NaN 0x7E00
    assert fp_add(h, 0x8000, 0x8000) == 0x8000  # (-0) + (-0) = -0
    assert fp_add(h, 0x0000, 0x8000) == 0x0000  # (+0) + (-0) = +0
    assert fp_add(h, 0x3C00, 0xBC00) == 0x0000  # 1 - 1 = +0
    assert fp_add(h, 0x3C00, 0xBC00, "zero") == 0x0000
    assert fp_add(h, 0x7C00, 0xFC00) == 0x7E00  # inf - inf = NaN
    assert fp_add(h, 0xFC00, 0x3C00) == 0xFC00
    assert fp_add(h, 0xFE01, 0x3C00) == 0x7E00  # any NaN: the canonical NaN
    assert fp_add(h, 0x7BFF, 0x7BFF) == 0x7C00  # overflow to inf
    assert fp_add(h, 0x7BFF, 0x7BFF, "zero") == 0x7BFF  # truncation saturates (IEEE)
    assert fp_add(FP16_SAT, 0xFBFF, 0xFBFF) == 0xFBFF
    assert fp_add(FP16_FTZ, 0x0400, 0x8001) == 0x0400  # the subnormal input is flushed to -0
    assert fp_add(FP16_FTZ, 0x0401, 0x8400) == 0x0000  # 2**-24 is flushed, keeping its sign
    assert fp_add(FP16_FTZ, 0x8401, 0x0400) == 0x8000
    e5 = F["fp8_e5m2"]  # 0x7C inf, 0x00 zero
    assert fp_fma(h, e5, 0x0000, 0x7C, 0x00) == 0x7E00  # 0 * inf = NaN
    assert fp_fma(h, e5, 0x8000, 0x80, 0x00) == 0x8000  # -0 + (-0 * +0) = -0
    assert fp_fma(h, e5, 0x8000, 0x80, 0x80) == 0x0000  # -0 + (+0) = +0
    assert fp_fma(h, e5, 0x7C00, 0xFC, 0x3C) == 0x7E00  # inf + (-inf) = NaN
    assert fp_fma(h, F["fp8_e4m3"], 0x3C00, 0x7F, 0x38) == 0x7E00  # E4M3 NaN operand


# ---- Fraction reference: every exponent difference, exact ties, tiny operands -----------------------

@pytest.mark.parametrize("fmt", ADD_FORMATS, ids=lambda f: f.label)
def test_add_every_exponent_difference(fmt, rng):
    top = fmt.exp_field_max - (1 if fmt.specials == "ieee" else 0)
    ef = np.repeat(np.arange(top + 1), 4)
    n = len(ef)
    mf = rng.integers(0, 1 << fmt.man_bits, n)
    if fmt.specials == "fn":
        mf = np.where(ef == fmt.exp_field_max, np.minimum(mf, (1 << fmt.man_bits) - 2), mf)
    b = make_codes(fmt, rng.integers(0, 2, n), ef, mf)
    a = make_codes(fmt, rng.integers(0, 2, n), fmt.bias, rng.integers(0, 1 << fmt.man_bits, n))  # |a| in [1, 2)
    a, b = np.concatenate([a, b]), np.concatenate([b, a])  # both orders
    exact = exact_add(fmt, a, b)

    def compute(mode, rand, rbits, part=slice(None)):
        return fp_add(fmt, a[part], b[part], mode, rand, rbits)

    run_modes(fmt, exact, compute, rng, fmt.label)


@pytest.mark.parametrize("pair", FMA_PAIRS, ids=pair_id)
def test_fma_every_exponent_difference(pair, rng):
    """A fixed product against an accumulator in every binade of the accumulator format."""
    acc_fmt, in_fmt = pair
    top = acc_fmt.exp_field_max - 1
    ef = np.repeat(np.arange(top + 1), 4)
    n = len(ef)
    acc = make_codes(acc_fmt, rng.integers(0, 2, n), ef, rng.integers(0, 1 << acc_fmt.man_bits, n))
    a = make_codes(in_fmt, rng.integers(0, 2, n), in_fmt.bias + rng.integers(-1, 2, n), rng.integers(0, 1 << in_fmt.man_bits, n))
    b = make_codes(in_fmt, 0, in_fmt.bias, rng.integers(0, 1 << in_fmt.man_bits, n))  # products near 1
    exact = exact_fma(acc_fmt, in_fmt, acc, a, b)

    def compute(mode, rand, rbits, part=slice(None)):
        return fp_fma(acc_fmt, in_fmt, acc[part], a[part], b[part], mode, rand, rbits)

    run_modes(acc_fmt, exact, compute, rng, pair_id(pair))


def pow2_product(in_fmt, k):
    """Codes (a, b) of in_fmt powers of two with a * b = 2**k, or None."""
    lo = in_fmt.emin  # normal powers of two only
    for ea in range(max(lo, k - in_fmt.emax), in_fmt.emax + 1):
        eb = k - ea
        if lo <= eb <= in_fmt.emax:
            return (ea + in_fmt.bias) << in_fmt.man_bits, (eb + in_fmt.bias) << in_fmt.man_bits
    return None


@pytest.mark.parametrize("pair", FMA_PAIRS, ids=pair_id)
def test_fma_exact_ties_round_to_even(pair, rng):
    """acc + a*b exactly halfway between two accumulator values, in every reachable binade: the
    result is the even neighbour (and equals the reference), and stochastic rounding with r bits
    sees q = 2**(r-1)."""
    acc_fmt, in_fmt = pair
    rows = []
    for ef in range(1, acc_fmt.exp_field_max - 1):
        ulp_exp = ef - acc_fmt.bias - acc_fmt.man_bits
        p = pow2_product(in_fmt, ulp_exp - 1)  # a * b = half an ulp
        if p is None:
            continue
        for parity in (0, 1):
            sign = int(rng.integers(0, 2))
            mant = 2 * int(rng.integers(0, 1 << (acc_fmt.man_bits - 1))) + parity
            acc = make_codes(acc_fmt, sign, ef, mant)
            rows.append((int(acc), p[0] | (sign << (in_fmt.width - 1)), p[1]))  # same sign: |sum| grows
    assert len(rows) >= 8
    acc, a, b = (np.array(x) for x in zip(*rows))
    got = fp_fma(acc_fmt, in_fmt, acc, a, b)
    # even acc stays, odd acc goes up to the next (even) code
    np.testing.assert_array_equal(got, acc + (acc & 1), "ties must round to the even neighbour")
    exact = exact_fma(acc_fmt, in_fmt, acc, a, b)
    check_against_reference(acc_fmt, exact, got, "nearest", what=pair_id(pair))
    assert all(ref.stochastic_q(acc_fmt, v, 8) == 128 for v in exact)
    for rand in (127, 128):  # q + R >= 256 iff R >= 128
        got = fp_fma(acc_fmt, in_fmt, acc, a, b, "stochastic", np.full(len(acc), rand), 8)
        np.testing.assert_array_equal(got, acc + (rand >= 128))


@pytest.mark.parametrize("fmt", ADD_FORMATS, ids=lambda f: f.label)
def test_add_exact_ties_round_to_even(fmt, rng):
    rows = []
    for ef in range(1, fmt.exp_field_max - 1):
        half_exp = ef - fmt.bias - fmt.man_bits - 1
        if half_exp < fmt.emin - (fmt.man_bits if fmt.subnormals else 0):
            continue  # half an ulp is below the smallest (subnormal, unless flushed) value
        hf = max(half_exp + fmt.bias, 0)
        half = make_codes(fmt, 0, hf, 0 if hf else 1 << (half_exp - (fmt.emin - fmt.man_bits)))
        for parity in (0, 1):
            sign = int(rng.integers(0, 2))
            a = make_codes(fmt, sign, ef, 2 * int(rng.integers(0, 1 << (fmt.man_bits - 1))) + parity)
            rows.append((int(a), int(half) | (sign << (fmt.width - 1))))
    a, b = (np.array(x) for x in zip(*rows))
    got = fp_add(fmt, a, b)
    np.testing.assert_array_equal(got, a + (a & 1), "ties must round to the even neighbour")
    check_against_reference(fmt, exact_add(fmt, a, b), got, "nearest", what=fmt.label)


@pytest.mark.parametrize("pair", FMA_PAIRS, ids=pair_id)
@pytest.mark.parametrize("rbits", [4, 8])
def test_fma_tiny_product_only_reaches_the_random_bits(pair, rbits):
    """acc = 1.5 * 2**E and a*b = 2**(ulp - j): with R = 2**r - 1, stochastic rounding rounds up
    iff the product lies within the top r bits below the ulp (j <= r); below them it is ignored
    (ARCHITECTURE.md §2: 'tail bits below the top r are ignored'), while nearest and zero
    rounding leave acc unchanged. The opposite sign is checked against the reference."""
    acc_fmt, in_fmt = pair
    # the binade 2**E nearest 2**10 whose ulp - 1 .. ulp - r - 3 are all products of powers of two
    E = min((e for e in range(acc_fmt.emin, acc_fmt.emax)
             if pow2_product(in_fmt, e - acc_fmt.man_bits - rbits - 3) and pow2_product(in_fmt, e - acc_fmt.man_bits - 1)),
            key=lambda e: abs(e - 10))
    acc = int(make_codes(acc_fmt, 0, E + acc_fmt.bias, 1 << (acc_fmt.man_bits - 1)))
    ulp_exp = E - acc_fmt.man_bits
    js = [j for j in range(1, rbits + 4) if pow2_product(in_fmt, ulp_exp - j) is not None]
    assert js == list(range(1, rbits + 4))
    a, b = (np.array(x) for x in zip(*(pow2_product(in_fmt, ulp_exp - j) for j in js)))
    sgn = 1 << (in_fmt.width - 1)
    for aa, up_expected in ((a, np.array(js) <= rbits), (a | sgn, None)):
        accs = np.full(len(js), acc)
        hi = fp_fma(acc_fmt, in_fmt, accs, aa, b, "stochastic", np.full(len(js), (1 << rbits) - 1), rbits)
        if up_expected is not None:
            np.testing.assert_array_equal(hi, acc + up_expected)
            np.testing.assert_array_equal(fp_fma(acc_fmt, in_fmt, accs, aa, b), accs)  # nearest: below half
            lo = fp_fma(acc_fmt, in_fmt, accs, aa, b, "stochastic", np.full(len(js), (1 << rbits) - 2), rbits)
            np.testing.assert_array_equal(lo, acc + (np.array(js) <= rbits - 1))  # q = 2**(r-j) >= 2
        exact = exact_fma(acc_fmt, in_fmt, accs, aa, b)
        check_against_reference(acc_fmt, exact, hi, "stochastic", np.full(len(js), (1 << rbits) - 1), rbits)
        for mode in ("nearest", "zero"):
            check_against_reference(acc_fmt, exact, fp_fma(acc_fmt, in_fmt, accs, aa, b, mode), mode)


@pytest.mark.parametrize("acc_sign", [0, 1])
def test_fma_tie_with_a_far_operand_below(acc_sign):
    """a*b = 2.25 = 10.01b is a tie at 3 bits (between 2 and 2.5); acc = +-2**-100 lies 100 bits
    below, beyond any alignment window, and must still break the tie: +tiny rounds up to 2.5,
    -tiny down to 2 (IEEE), and stochastic rounding sees t = 1/2 + tiny (q = 2**(r-1)) or
    t = 1/2 - tiny (q = 2**(r-1) - 1)."""
    acc_fmt, in_fmt = E8M2, F["fp8_e5m2"]
    acc = (acc_sign << 10) | ((127 - 100) << 2)  # +-2**-100
    a = b = 0x3E  # 1.5
    two, two_half = (127 + 1) << 2, ((127 + 1) << 2) | 1
    assert fp_fma(acc_fmt, in_fmt, acc, a, b) == (two if acc_sign else two_half)
    assert fp_fma(acc_fmt, in_fmt, acc, a, b, "zero") == two
    q = 128 - acc_sign
    for rand in (255 - q, 256 - q):  # up iff q + R >= 256
        want = two_half if rand + q >= 256 else two
        assert fp_fma(acc_fmt, in_fmt, acc, a, b, "stochastic", rand, 8) == want
        assert ref.fma(acc_fmt, in_fmt, acc, a, b, "stochastic", rand, 8) == want
    assert ref.fma(acc_fmt, in_fmt, acc, a, b) == (two if acc_sign else two_half)


# ---- library cross-checks: correctly rounded addition ---------------------------------------------
# NumPy adds float16 (and ml_dtypes adds bfloat16) by converting to float32, adding and rounding
# back. That double rounding is innocuous: float32's 24-bit significand is at least 2p + 2 bits for
# p = 11 (float16) and p = 8 (bfloat16), so the result is the correctly rounded sum (Figueroa,
# "When is double rounding innocuous?", SIGNUM 1995). float32 addition itself is IEEE hardware.

LIB_ADD = {"fp16": (np.float16, np.uint16), "bf16": (ml_dtypes.bfloat16, np.uint16), "fp32": (np.float32, np.uint32)}


@pytest.mark.parametrize("name", list(LIB_ADD))
def test_add_nearest_against_library(name, rng):
    f = F[name]
    dtype, utype = LIB_ADD[name]
    a1, b1 = add_stimulus(rng, f, 200_000)
    c = np.array(corner_codes(f))
    a2, b2 = (x.ravel() for x in np.meshgrid(c, c, indexing="ij"))
    a3 = rng.integers(0, 1 << f.width, 100_000)
    b3 = rng.integers(0, 1 << f.width, 100_000)
    a = np.concatenate([a1, a2, a3]).astype(utype)
    b = np.concatenate([b1, b2, b3]).astype(utype)
    with np.errstate(all="ignore"):
        want = (a.view(dtype) + b.view(dtype)).view(utype)
    got = fp_add(f, a, b)
    nan = np.isnan(want.view(dtype).astype(np.float32))
    assert nan.sum() > 100  # NaN operands and inf - inf are in the stimulus
    np.testing.assert_array_equal(got[nan], f.nan_code)
    np.testing.assert_array_equal(got[~nan], want[~nan])


# ---- gfloat: every rounding mode, on sums that are exact in float64 ----------------------------------
# gfloat rounds float64 values. When acc + a*b is exact in float64 (TwoSum error zero), rounding
# it with gfloat is a second, independent implementation of §2. RoundMode.StochasticFastest
# (delta + R * 2**-r >= 1) is our rule; see test_model_formats.py for the modes that differ.

GF_IBM = gfloat.FormatInfo("fp16_ibm", k=16, precision=10, bias=31, is_signed=True,
                           domain=gfloat.Domain.Extended, has_nz=True, num_high_nans=2**9 - 1,
                           has_subnormals=True, is_twos_complement=False)
GF_MODES = {"nearest": gfloat.RoundMode.TiesToEven, "zero": gfloat.RoundMode.TowardZero,
            "stochastic": gfloat.RoundMode.StochasticFastest}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_name", ["fp8_e5m2", "fp8_e4m3"])
def test_fma_against_gfloat(in_name, mode, rng):
    acc_fmt, in_fmt = F["fp16_ibm"], F[in_name]
    acc, a, b = fma_stimulus(rng, acc_fmt, in_fmt, 100_000)
    with np.errstate(all="ignore"):
        x, p = acc_fmt.decode(acc), in_fmt.decode(a) * in_fmt.decode(b)
        s = x + p
        bv = s - x
        err = (x - (s - bv)) + (p - bv)  # TwoSum: s + err == x + p exactly
    exact = ~np.isfinite(s) | (err == 0)
    assert exact.mean() > 0.9
    acc, a, b, s = acc[exact], a[exact], b[exact], s[exact]
    rbits = 13 if mode == "stochastic" else None
    rand = rng.integers(0, 1 << 13, len(s)) if rbits else None
    got = acc_fmt.decode(fp_fma(acc_fmt, in_fmt, acc, a, b, mode, rand, rbits))
    with np.errstate(all="ignore"):
        want = gfloat.round_ndarray(GF_IBM, s, GF_MODES[mode], srbits=rand, srnumbits=rbits or 0)
    # zero sums: IEEE's +0 for x + (-x) is what float64 gives too, so signs are compared as well
    gn, wn = np.isnan(got), np.isnan(want)
    np.testing.assert_array_equal(gn, wn)
    np.testing.assert_array_equal(got[~gn], want[~wn])
    np.testing.assert_array_equal(np.signbit(got[~gn]), np.signbit(want[~wn]))


# ---- stochastic rounding: exact probabilities and the LFSR stream ----------------------------------

@pytest.mark.parametrize("rbits", [1, 2, 5, 8, 10])
def test_stochastic_up_count_is_q_over_all_draws(rbits, rng):
    """x = (n + q / 2**r + tail) ulp in fp16_ibm: over all 2**r values of R, exactly q round up,
    namely R >= 2**r - q; the tail below the top r bits never matters."""
    f = F["fp16_ibm"]
    top = 1 << rbits
    q = np.repeat(np.arange(top), 3)
    tail = np.tile([0.0, 2.0 ** -(rbits + 1), (1 - 2.0**-12) * 2.0**-rbits], top)
    k = len(q)
    n_ulps = rng.integers(512, 1024, k)  # significand of the lower neighbour, in [1, 2) binade
    e = rng.integers(-20, 20, k)  # ulp = 2**(e - 9)
    x = np.ldexp(n_ulps + q / top + tail, e - 9)
    x = np.where(rng.random(k) < 0.5, -x, x)
    R = np.arange(top)[:, None]
    got = f.decode(f.encode(np.broadcast_to(x, (top, k)), "stochastic", R, rbits))
    up = np.abs(got) > np.abs(x)
    lower = np.ldexp(n_ulps.astype(float), e - 9)
    assert np.all(np.abs(got) == np.where(up, lower + np.ldexp(1.0, e - 9), lower))
    np.testing.assert_array_equal(up.sum(axis=0), q)
    np.testing.assert_array_equal(up, R >= top - q)


def test_stochastic_fma_up_count_matches_reference(rng):
    """The same over fp_fma results: for random MAC steps, the number of the 32 draws (r = 5)
    that round up is the reference's q, and the up-set is R >= 32 - q."""
    acc_fmt, in_fmt = F["fp16_ibm"], F["fp8_e5m2"]
    acc, a, b = fma_stimulus(rng, acc_fmt, in_fmt, 2000)
    with np.errstate(all="ignore"):
        size = np.abs(acc_fmt.decode(acc)) + np.abs(in_fmt.decode(a) * in_fmt.decode(b))
    keep = size < acc_fmt.max_value / 2  # finite, and far from overflow (which truncation saturates)
    acc, a, b = acc[keep], a[keep], b[keep]
    R = np.arange(32)[:, None]
    got = fp_fma(acc_fmt, in_fmt, acc, a, b, "stochastic", R, 5)
    down = fp_fma(acc_fmt, in_fmt, acc, a, b, "zero")
    up = got != down[None, :]
    q = np.array([ref.stochastic_q(acc_fmt, v, 5) for v in exact_fma(acc_fmt, in_fmt, acc, a, b)])
    assert len(set(q.tolist())) == 32  # every q occurs
    np.testing.assert_array_equal(up.sum(axis=0), q)
    np.testing.assert_array_equal(up, R >= 32 - q)


def test_stochastic_mean_error_over_lfsr_stream(seed):
    """Stochastic rounding driven by a 32-bit LFSR is unbiased to within the stated bound.

    For x = (n + t) ulp, an r-bit uniform R gives E[result] - x = (q / 2**r - t) ulp, in
    (-2**-r, 0] ulp. Over N = 2**16 LFSR draws the sample mean lies within 5 standard errors
    (sigma <= 0.5 ulp / sqrt(N) = 0.002 ulp) of that, so |mean error| <= 2**-r + 0.01 ulp
    = 0.0139 ulp for r = 8, against 0.5 - |t - 0.5| (up to half an ulp) for round to nearest.
    """
    f, rbits, N = F["fp16_ibm"], 8, 1 << 16
    rng = np.random.default_rng(seed)
    t = rng.random(16)
    x = np.ldexp(700 + t, -9)  # in [1, 2): ulp = 2**-9
    lfsr = Lfsr(32, seed % (2**32 - 1) + 1)
    draws = lfsr.draws(N * len(x), rbits).reshape(N, len(x))
    got = f.decode(f.encode(np.broadcast_to(x, draws.shape), "stochastic", draws, rbits))
    err = (got.mean(axis=0) - x) / 2.0**-9  # in ulps
    q = np.floor(t * 256)
    p_up = q / 256
    sigma = np.sqrt(p_up * (1 - p_up) / N)
    assert np.all(np.abs(err - (p_up - t)) <= 5 * sigma + 1e-12), (err, p_up - t, sigma)
    assert np.all(np.abs(err) <= 2.0**-rbits + 5 * 0.5 / np.sqrt(N))
    nearest = (f.decode(f.encode(x)) - x) / 2.0**-9
    big = np.abs(nearest) > 0.1
    assert np.all(np.abs(err[big]) < np.abs(nearest[big]) / 5)


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: fp_add("fp9", 0, 0), r"fmt: unknown format 'fp9'"),
    (lambda: fp_fma("fp16_ibm", "e5m2", 0, 0, 0), r"in_fmt: unknown format 'e5m2'"),
    (lambda: fp_fma("fp17", "fp8_e5m2", 0, 0, 0), r"acc_fmt: unknown format 'fp17'"),
    (lambda: fp_add("fp8_e5m2", 256, 0), r"a: codes must be in 0\.\.255"),
    (lambda: fp_add("fp8_e5m2", 0, [0, -1]), r"b: codes must be in 0\.\.255"),
    (lambda: fp_fma("fp16", "fp8_e5m2", 1 << 16, 0, 0), r"acc: codes must be in 0\.\.65535"),
    (lambda: fp_fma("fp16", "fp8_e5m2", 0, 300, 0), r"a: codes must be in 0\.\.255"),
    (lambda: fp_fma("fp16", "fp8_e4m3", 0, 0, 256), r"b: codes must be in 0\.\.255"),
    (lambda: fp_add("fp16", 0, 0, "up"), r"rounding must be one of nearest, zero, stochastic"),
    (lambda: fp_add("fp16", 0, 0, "stochastic", [0], None), r"rbits"),
    (lambda: fp_add("fp16", 0, 0, "stochastic", [0], 0), r"rbits must be in 1\.\.32"),
    (lambda: fp_add("fp16", 0, 0, "stochastic", [0], 33), r"rbits must be in 1\.\.32"),
    (lambda: fp_add("fp16", 0, 0, "stochastic", None, 8), r"rand: stochastic rounding needs"),
    (lambda: fp_add("fp16", 0, 0, "stochastic", [256], 8), r"rand values must be in 0\.\.255 for rbits=8, got 256"),
    (lambda: fp_add("fp16", 0, 0, "stochastic", [-1], 8), r"rand values must be in 0\.\.255 .*got -1"),
    (lambda: fp_add("fp16", 0, 0, "stochastic", [0.5], 8), r"rand must hold integers"),
    (lambda: fp_fma("fp16", "fp8_e5m2", 0, 0, 0, "stochastic", 1 << 32, 32), r"rand values must be in"),
    (lambda: fp_add("fp16", [0, 0], [0, 0], "stochastic", [0, 0, 0], 8), r"rand shape \(3,\) does not broadcast"),
    (lambda: fp_fma("fp8_e4m3", "fp8_e5m2", 0, 0, 0), r"acc_format .* has no infinities"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call", [
    lambda: fp_add("fp16", np.zeros(2, int), np.zeros(3, int)),
    lambda: fp_fma("fp16", "fp8_e5m2", 0, np.zeros(2, int), np.zeros(3, int)),
], ids=["fp_add", "fp_fma"])
def test_operand_shape_mismatch_names_the_arguments(call):
    with pytest.raises(ValueError, match=r"\ba\b[^.]*\(2,\)[^.]*\bb\b[^.]*\(3,\)|\bb\b[^.]*\(3,\)[^.]*\ba\b[^.]*\(2,\)"):
        call()
