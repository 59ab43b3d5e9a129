"""model/arith.py's ``fp_dot`` and model/rounding.py's ``sum_exact``: the multi-term fused MAC step.

``fp_dot(acc_fmt, in_fmt, acc, a, b)`` rounds ``acc + a_0*b_0 + ... + a_(d-1)*b_(d-1)`` once
(ARCHITECTURE.md §3b). Checked against the exact Fraction reference (tests/fraction_ref.py's
``dot``, written from ARCHITECTURE.md alone) on random cases built for cancellation, tiny terms,
subnormals, overflow and specials, in every rounding mode (stochastic draws half on the decision
boundary, so a q that is off by one is caught), on hand-computed corner cases, and against
``fp_fma`` for d = 1, bit for bit.

``FP8MAC_TIER=full`` runs >= 10**5 random cases per rounding mode for each d in (2, 4, 8); the
quick tier runs a few thousand.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import pytest

import fraction_ref as ref
from test_model_rounding import (E5M2_FTZ, FMA_PAIRS, FP16_FTZ, FP16_SAT, E8M2,
                                 corner_codes, fma_stimulus, near_codes, pair_id, run_modes, unbiased_exp)
from fp8mac.model import FORMATS, fp_dot, fp_fma

F = FORMATS
FULL = os.environ.get("FP8MAC_TIER") == "full"
BF16_SAT = dataclasses.replace(F["bf16"], overflow="saturate", name="bf16_sat")

# (acc_format, in_format): every preset pair, flush-to-zero, saturation, fp16 operands into fp32
# (the FP16 baseline), and the 3-bit e8m2 accumulator (ties and far tiny terms meet)
DOT_PAIRS = [(F[a], F[i]) for a in ("fp16_ibm", "fp16", "bf16", "fp32") for i in ("fp8_e5m2", "fp8_e4m3")]
DOT_PAIRS += [(F["fp32"], F["fp16"]), (FP16_FTZ, E5M2_FTZ), (FP16_SAT, F["fp8_e5m2"]), (E8M2, F["fp8_e5m2"]),
              (BF16_SAT, F["fp8_e4m3"])]
N_RANDOM = 8000 if FULL else 200  # per pair, d and mode: 13 pairs -> 104,000 (full) / 2,600 (quick)


# ---- stimulus ------------------------------------------------------------------------------------

def dot_stimulus(rng, acc_fmt, in_fmt, n, d):
    """``(acc, a, b)`` with ``a, b`` of shape (n, d), rows of several kinds:

    * operands near 1 with random signs, accumulator near the products' scale (carries, borrows);
    * pairs of products that cancel exactly (``a_1 = -a_0``, ``b_1 = b_0``) with large magnitudes,
      and a tiny last product (subnormal operands): the window-breaking case;
    * accumulator minus the products' sum, rounded and nudged by a few codes (massive cancellation);
    * a product that is a power of two and a tiny one of the other sign (the sum lies just inside
      the binade below: truncation and stochastic rounding must see the borrow);
    * signed zeros only (all -0 rows included), and uniform and corner codes (infinities, NaNs,
      extremes).
    """
    sign = 1 << (in_fmt.width - 1)
    a = near_codes(rng, in_fmt, np.zeros(n * d, np.int64), 3).reshape(n, d)
    b = near_codes(rng, in_fmt, np.zeros(n * d, np.int64), 3).reshape(n, d)
    kind = rng.random(n)
    big = near_codes(rng, in_fmt, np.full(n * d, in_fmt.emax - 2), 3).reshape(n, d)
    tiny = near_codes(rng, in_fmt, np.full(n * d, in_fmt.emin - 1), 3).reshape(n, d)
    cancel = kind < 0.3
    for i in range(0, d - 3, 2):  # products (0, 1), (2, 3), ... cancel; the last two are tiny
        a[cancel, i] = big[cancel, i]
        b[cancel, i] = big[cancel, i + 1]
        a[cancel, i + 1] = a[cancel, i] ^ sign
        b[cancel, i + 1] = b[cancel, i]
    if d == 2:  # (0, 1) cancel, the accumulator is the tiny term
        a[cancel, 0] = big[cancel, 0]
        b[cancel] = big[cancel, 1:2]
        a[cancel, 1] = a[cancel, 0] ^ sign
    else:
        for i in (d - 2, d - 1):
            a[cancel, i] = tiny[cancel, i]
            b[cancel, i] = np.where(rng.random(cancel.sum()) < 0.75, tiny[cancel, 0], b[cancel, i])
    edge = (kind >= 0.65) & (kind < 0.8)  # +-2**k and a tiny product of the other sign, the rest zeros
    ne = edge.sum()
    pow2 = (rng.integers(in_fmt.emin, in_fmt.emax + 1, ne) + in_fmt.bias) << in_fmt.man_bits
    s0 = rng.integers(0, 2, ne) * sign
    a[edge] = 0
    b[edge] = 0
    a[edge, 0], b[edge, 0] = pow2 | s0, pow2
    a[edge, -1], b[edge, -1] = tiny[edge, 0] | (s0 ^ sign), tiny[edge, 1] & ~sign
    uniform = (kind >= 0.9)  # uniform codes, a fifth of them corner codes (zeros, extremes, inf, NaN)
    corners = np.array(corner_codes(in_fmt))
    for x in (a, b):
        u = rng.integers(0, 1 << in_fmt.width, (uniform.sum(), d))
        x[uniform] = np.where(rng.random(u.shape) < 0.2, rng.choice(corners, u.shape), u)
    zeros = (kind >= 0.8) & (kind < 0.9)
    a[zeros] = rng.integers(0, 2, (zeros.sum(), d)) * sign
    b[zeros] = rng.integers(0, 2, (zeros.sum(), d)) * sign
    with np.errstate(all="ignore"):
        prod = (in_fmt.decode(a) * in_fmt.decode(b)).sum(axis=1)
    pexp = np.floor(np.log2(np.where(np.isfinite(prod) & (prod != 0), np.abs(prod), 1.0))).astype(np.int64)
    if d == 2:
        pexp = np.where(cancel, 2 * in_fmt.emin, pexp)
    acc = near_codes(rng, acc_fmt, pexp, acc_fmt.precision + 4)
    acc = np.where(kind >= 0.9, rng.integers(0, 1 << acc_fmt.width, n), acc)
    acc = np.where(zeros, rng.integers(0, 2, n) << (acc_fmt.width - 1), acc)
    with np.errstate(all="ignore"):
        neg = acc_fmt.encode(np.where(np.isfinite(prod), -prod, 0.0)).astype(np.int64)
    nudged = neg + rng.integers(-2, 3, n)
    ok = (nudged >= 0) & (nudged < 1 << acc_fmt.width) & ((nudged ^ neg) >> (acc_fmt.width - 1) == 0)
    acc = np.where((kind >= 0.3) & (kind < 0.5) & ok, nudged, acc)
    acc_pow2 = acc & ~((1 << acc_fmt.man_bits) - 1)  # the accumulator too, a power of two (or zero)
    acc = np.where(edge & (rng.random(n) < 0.5), acc_pow2, acc)
    acc = np.where(edge & (rng.random(n) < 0.3), 0, acc)
    return acc, a, b


@functools.lru_cache(maxsize=None)
def _decode(fmt, code):
    return ref.decode(fmt, code)


@functools.lru_cache(maxsize=None)
def _product(fmt, x, y):
    return ref.mul(_decode(fmt, x), _decode(fmt, y))


def exact_dot(acc_fmt, in_fmt, acc, a, b):
    """The exact sums (fraction_ref Values), one per row."""
    return [ref.sum_values([_decode(acc_fmt, c)] + [_product(in_fmt, x, y) for x, y in zip(ra, rb)])
            for c, ra, rb in zip(acc.tolist(), a.tolist(), b.tolist())]


def check_rows(acc_fmt, in_fmt, acc, a, b, rng, what):
    """fp_dot on every row, every mode, against the reference (run_modes: stochastic over r = 1, 4,
    8, 32 with half of the draws on the decision boundary)."""
    exact = exact_dot(acc_fmt, in_fmt, acc, a, b)

    def compute(mode, rand, rbits, part=slice(None)):
        return fp_dot(acc_fmt, in_fmt, acc[part], a[part], b[part], mode, rand, rbits)

    run_modes(acc_fmt, exact, compute, rng, what)
    return exact


# ---- against the Fraction reference ----------------------------------------------------------------

@pytest.mark.parametrize("d", [2, 4, 8])
@pytest.mark.parametrize("pair", DOT_PAIRS, ids=pair_id)
def test_dot_random_against_fractions(pair, d, rng):
    acc_fmt, in_fmt = pair
    acc, a, b = dot_stimulus(rng, acc_fmt, in_fmt, N_RANDOM, d)
    exact = check_rows(acc_fmt, in_fmt, acc, a, b, rng, f"{pair_id(pair)} d={d}")
    kinds = {v.kind for v in exact}
    if N_RANDOM >= 1000:  # the full tier: specials occur too
        assert kinds == ({"num", "inf", "nan"} if in_fmt.has_inf else {"num", "nan"}), kinds


def test_stimulus_reaches_the_hard_cases(rng):
    """The cancelling rows really leave only the tiny product (so a 60-bit window would lose it),
    and zeros of both signs, infinities and NaN all occur."""
    acc_fmt, in_fmt = F["fp16_ibm"], F["fp8_e5m2"]
    acc, a, b = dot_stimulus(rng, acc_fmt, in_fmt, 4000, 4)
    prods = [[_product(in_fmt, x, y) for x, y in zip(ra, rb)] for ra, rb in zip(a.tolist(), b.tolist())]
    cancelling = [p for p in prods if all(t.kind == "num" for t in p) and p[0].mag > 2**20
                  and ref.sum_values(p[:2]).mag == 0 and 0 < ref.sum_values(p).mag < p[0].mag * 2**-50]
    assert len(cancelling) > 400  # of about 1200 cancelling rows (some tiny operands are zeros)
    exact = exact_dot(acc_fmt, in_fmt, acc, a, b)
    assert {(v.kind, v.sign) for v in exact if v.kind != "num" or v.mag == 0} >= {
        ("num", 0), ("num", 1), ("inf", 0), ("inf", 1), ("nan", 0)}


@pytest.mark.parametrize("d", [33, 100, 300])
def test_long_dot_against_fractions(d, rng):
    """More terms than sum_exact adds between two carry propagations (32), same-sign large products
    (the limbs fill up) and mixed ones."""
    acc_fmt, in_fmt = F["fp32"], F["fp8_e5m2"]
    n = 60
    acc, a, b = dot_stimulus(rng, acc_fmt, in_fmt, n, d)
    a[: n // 3] = 0x7B  # 57344 = the largest e5m2 value: d products of 2**31.6, all positive
    b[: n // 3] = 0x7B
    check_rows(acc_fmt, in_fmt, acc, a, b, rng, f"d={d}")


@pytest.mark.parametrize("d", [31, 32, 33, 64, 300])
def test_many_terms_fill_a_limb(d, rng):
    """The largest e5m2 product (57344**2 = 49 * 2**26) placed 50 bits above the grid's unit (set by
    a 2**-20 = 16 * 2**-24 product): each adds 49 * 2**50 to one 56-bit limb, so more than about
    170 of them overflow int64 unless carries are propagated on the way."""
    f32 = F["fp32"]
    n = 16
    a = np.full((n, d + 1), 0x7B)
    b = np.full((n, d + 1), 0x7B)
    a[:, -1] = b[:, -1] = e5(-10)
    a[: n // 2, : d // 2] |= 0x80  # half the rows: half the products negative
    acc = np.where(np.arange(n) % 2 == 0, 0x00000000, 0x80000000)
    check_rows(f32, E5, acc, a, b, rng, f"d={d + 1}")
    want = ref.dot(f32, E5, 0, [0x7B] * d + [e5(-10)], [0x7B] * d + [e5(-10)])
    assert want == int(fp_dot(f32, E5, 0, a[-1], b[-1]))


@pytest.mark.parametrize("pair", FMA_PAIRS, ids=pair_id)
def test_d1_equals_fp_fma(pair, rng):
    """One term: fp_dot is fp_fma, bit for bit (a different exact sum: sum_exact vs add_exact)."""
    acc_fmt, in_fmt = pair
    acc, a, b = fma_stimulus(rng, acc_fmt, in_fmt, 20_000)
    ci = np.array(corner_codes(in_fmt))
    ca = np.array(corner_codes(acc_fmt))
    g = np.meshgrid(ca, ci, ci, indexing="ij")
    acc, a, b = (np.concatenate([x, y.ravel()]) for x, y in zip((acc, a, b), g))
    n = len(acc)
    for mode, rbits in [("nearest", None), ("zero", None), ("stochastic", 1), ("stochastic", 8), ("stochastic", 32)]:
        rand = rng.integers(0, 1 << rbits, n) if rbits else None
        want = fp_fma(acc_fmt, in_fmt, acc, a, b, mode, rand, rbits)
        got = fp_dot(acc_fmt, in_fmt, acc, a[:, None], b[:, None], mode, rand, rbits)
        bad = np.flatnonzero(got != want)
        assert not bad.size, (f"{mode} r={rbits}: {bad.size} differ, first acc={acc[bad[0]]:#x} "
                              f"a={a[bad[0]]:#x} b={b[bad[0]]:#x}: {got[bad[0]]:#x} vs fp_fma {want[bad[0]]:#x}")


# ---- corner cases, expected codes written out ------------------------------------------------------
# fp16: +0 0x0000, -0 0x8000, 1.0 0x3C00, max 0x7BFF, +inf 0x7C00, -inf 0xFC00, NaN 0x7E00, 2**-24 0x0001
# fp16_ibm (1,6,9), bias 31: 1.0 0x3E00 (next 0x3E01), 2**-32 = 2**7 * 2**-39 (subnormal) 0x0080
# fp8_e5m2: 2**k = (k + 15) << 2 for normal k; 2**-16 = 0x01 (the smallest subnormal); +inf 0x7C, -inf 0xFC

E5 = F["fp8_e5m2"]


def e5(k, neg=False):
    """The e5m2 code of +-2**k (normal or subnormal)."""
    code = (k + 15) << 2 if k >= -14 else 1 << (k + 16)
    return code | (0x80 if neg else 0)


def dot1(acc_fmt, acc, terms, rounding="nearest", rand=None, rbits=None, in_fmt=E5):
    """fp_dot of one row ``terms = [(a, b), ...]``, checked against the reference too."""
    a, b = (np.array(x) for x in zip(*terms))
    got = int(fp_dot(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits))
    want = ref.dot(acc_fmt, in_fmt, acc, a.tolist(), b.tolist(), rounding, rand, rbits)
    assert got == want, (got, want)
    return got


def test_cancellation_leaves_a_tiny_third_product():
    """2**30 - 2**30 + 2**-32: the two large products cancel exactly and the tiny one, 62 bits
    below them (outside any 60-bit window), is the whole result."""
    ibm = F["fp16_ibm"]
    big, neg_big, tiny = (e5(15), e5(15)), (e5(15, True), e5(15)), (e5(-16), e5(-16))
    assert dot1(ibm, 0x0000, [big, neg_big, tiny]) == 0x0080  # 2**-32, a subnormal of fp16_ibm
    assert dot1(ibm, 0x0000, [tiny, big, neg_big]) == 0x0080  # order does not matter
    # 1 + 2**30 - 2**30 + 2**-32: nearest and truncation give 1.0; stochastic rounding with r = 32
    # sees t = 2**-32 / 2**-9 = 2**-23, q = 2**9: up iff R >= 2**32 - 512
    assert dot1(ibm, 0x3E00, [big, neg_big, tiny]) == 0x3E00
    assert dot1(ibm, 0x3E00, [big, neg_big, tiny], "zero") == 0x3E00
    assert dot1(ibm, 0x3E00, [big, neg_big, tiny], "stochastic", 2**32 - 512, 32) == 0x3E01
    assert dot1(ibm, 0x3E00, [big, neg_big, tiny], "stochastic", 2**32 - 513, 32) == 0x3E00
    # the tiny product negative: 1 - 2**-32 lies in the binade below (ulp 2**-10), t = 1 - 2**-22
    neg_tiny = (e5(-16, True), e5(-16))
    assert dot1(ibm, 0x3E00, [big, neg_big, neg_tiny], "zero") == 0x3DFF
    assert dot1(ibm, 0x3E00, [big, neg_big, neg_tiny], "stochastic", 0, 8) == 0x3DFF  # q = 255: only R = 0 stays down
    assert dot1(ibm, 0x3E00, [big, neg_big, neg_tiny], "stochastic", 1, 8) == 0x3E00


def test_subnormal_products_and_accumulators():
    h = F["fp16"]
    quarter = (e5(-13), e5(-13))  # 2**-26: a quarter of fp16's smallest subnormal 2**-24
    # four of them make exactly 2**-24; each MAC step on its own would round it away
    assert dot1(h, 0x0000, [quarter] * 4) == 0x0001
    acc = 0x0000
    for _ in range(4):
        acc = int(fp_fma(h, E5, acc, *quarter))
    assert acc == 0x0000
    assert dot1(h, 0x0001, [quarter] * 4) == 0x0002  # subnormal accumulator + subnormal sum
    assert dot1(h, 0x0001, [quarter] * 2) == 0x0002  # 1.5 * 2**-24: a tie, to even (2 * 2**-24)
    assert dot1(h, 0x0001, [quarter] * 2, "zero") == 0x0001
    assert dot1(h, 0x0003, [(e5(-13, True), e5(-13))] * 2) == 0x0002  # 2.5 * 2**-24 -> even 2
    assert dot1(h, 0x03FF, [(e5(-12), e5(-12))]) == 0x0400  # the largest subnormal + 2**-24: the smallest normal
    assert dot1(FP16_FTZ, 0x0000, [quarter] * 4) == 0x0000  # a subnormal result flushes (keeping its sign)
    assert dot1(FP16_FTZ, 0x0000, [(e5(-13, True), e5(-13))] * 4) == 0x8000
    assert dot1(FP16_FTZ, 0x0400, [(e5(-12), e5(-12))]) == 0x0401  # normal + 2**-24: no flush


def test_overflow():
    h = F["fp16"]
    two15 = (e5(8), e5(7))  # 2**15; fp16's largest value is 65504 = 2**16 - 32
    assert dot1(h, 0x0000, [two15, two15]) == 0x7C00  # 2**16 overflows to +inf
    assert dot1(h, 0x0000, [two15, two15], "zero") == 0x7BFF  # truncation saturates (IEEE)
    assert dot1(FP16_SAT, 0x0000, [two15, two15]) == 0x7BFF
    assert dot1(h, 0x8000, [(e5(8, True), e5(7))] * 2) == 0xFC00
    assert dot1(FP16_SAT, 0x8000, [(e5(8, True), e5(7))] * 2) == 0xFBFF
    # 2**30 - 2**30 + 1: the products exceed the format, the exact sum does not
    assert dot1(h, 0x0000, [(e5(15), e5(15)), (e5(15, True), e5(15)), (e5(0), e5(0))]) == 0x3C00
    # 65504 + 16 - 2**-24: just below the rounding boundary (65520) to infinity
    assert dot1(h, 0x7BFF, [(e5(2), e5(2)), (e5(-12, True), e5(-12))]) == 0x7BFF
    assert dot1(h, 0x7BFF, [(e5(2), e5(2))]) == 0x7C00  # 65520: a tie, to even: inf


def test_infinities_and_nan():
    h = F["fp16"]
    one, inf, ninf, zero = e5(0), 0x7C, 0xFC, 0x00
    assert dot1(h, 0x0000, [(inf, one), (ninf, one)]) == 0x7E00  # +inf and -inf: NaN
    assert dot1(h, 0x0000, [(inf, one), (inf, one)]) == 0x7C00
    assert dot1(h, 0x3C00, [(ninf, one), (one, one)]) == 0xFC00
    assert dot1(h, 0x0000, [(inf, ninf), (one, one)]) == 0xFC00  # inf * -inf = -inf
    assert dot1(h, 0x0000, [(one, one), (inf, zero)]) == 0x7E00  # 0 * inf: NaN
    assert dot1(h, 0x7E01, [(one, one), (one, one)]) == 0x7E00  # a NaN accumulator (any payload)
    assert dot1(h, 0x7C00, [(ninf, one), (one, one)]) == 0x7E00  # +inf accumulator, -inf product
    assert dot1(h, 0x7C00, [(inf, ninf)]) == 0x7E00
    assert dot1(h, 0xFC00, [(e5(15), e5(15)), (one, one)]) == 0xFC00  # -inf accumulator, finite products
    assert dot1(h, 0x0000, [(0x7F, one), (inf, one)]) == 0x7E00  # a NaN operand
    assert dot1(h, 0x0000, [(e5(15), e5(15)), (inf, one), (e5(15, True), e5(15))]) == 0x7C00
    f32 = F["fp32"]
    e4 = F["fp8_e4m3"]
    assert dot1(f32, 0x00000000, [(0x7F, 0x38), (0x38, 0x38)], in_fmt=e4) == 0x7FC00000  # E4M3's NaN
    assert dot1(f32, 0x7F800000, [(0x38, 0xB8)], in_fmt=e4) == 0x7F800000  # e4m3 has no inf: inf - 1 = inf


def test_signed_zeros():
    h = F["fp16"]
    pz, nz = 0x00, 0x80  # e5m2 +0, -0
    all_neg = [(nz, pz), (pz, nz), (nz, pz), (pz, nz)]  # four -0 products
    assert dot1(h, 0x8000, all_neg) == 0x8000  # every term -0: -0
    assert dot1(h, 0x0000, all_neg) == 0x0000  # the accumulator is +0
    assert dot1(h, 0x8000, all_neg[:3] + [(nz, nz)]) == 0x0000  # one product is +0
    assert dot1(h, 0x8000, [(e5(0), e5(0)), (e5(0, True), e5(0))]) == 0x0000  # x - x = +0
    assert dot1(h, 0x8000, [(e5(0), e5(0)), (e5(0, True), e5(0))], "zero") == 0x0000
    # a non-zero sum that rounds to zero keeps its sign, whatever the other terms' zeros
    assert dot1(h, 0x0000, [(e5(-13, True), e5(-13)), (pz, pz)]) == 0x8000  # -2**-26 -> -0
    assert dot1(h, 0x8000, [(e5(-13), e5(-13)), (nz, pz)]) == 0x0000  # +2**-26 -> +0
    assert dot1(h, 0x8000, [(e5(-13, True), e5(-13)), (nz, pz)], "stochastic", 191, 8) == 0x8000  # q = 64
    assert dot1(h, 0x8000, [(e5(-13, True), e5(-13)), (nz, pz)], "stochastic", 192, 8) == 0x8001


def test_ties_and_a_tiny_tie_breaker():
    """1 + 2**30 - 2**30 + 2**-10 is exactly half an ulp above 1.0 in fp16_ibm: to even. A fourth
    product of +-2**-32 (62 bits below the cancelling pair) breaks the tie either way."""
    ibm = F["fp16_ibm"]
    pair = [(e5(15), e5(15)), (e5(15, True), e5(15))]
    half = (e5(-5), e5(-5))  # 2**-10
    assert dot1(ibm, 0x3E00, pair + [half]) == 0x3E00  # even stays
    assert dot1(ibm, 0x3E01, pair + [half]) == 0x3E02  # odd goes up to even
    up, down = (e5(-16), e5(-16)), (e5(-16, True), e5(-16))
    assert dot1(ibm, 0x3E00, pair + [half, up]) == 0x3E01
    assert dot1(ibm, 0x3E00, pair + [half, down]) == 0x3E00
    assert dot1(ibm, 0x3E01, pair + [half, down]) == 0x3E01
    # stochastic, r = 8: the tie is q = 128 (up iff R >= 128); +tiny q = 128; -tiny q = 127
    for rand, want in ((127, 0x3E00), (128, 0x3E01)):
        assert dot1(ibm, 0x3E00, pair + [half], "stochastic", rand, 8) == want
        assert dot1(ibm, 0x3E00, pair + [half, up], "stochastic", rand, 8) == want
    for rand, want in ((128, 0x3E00), (129, 0x3E01)):
        assert dot1(ibm, 0x3E00, pair + [half, down], "stochastic", rand, 8) == want
    # r = 32: -tiny is t = 1/2 - 2**-23, q = 2**31 - 2**9
    for rand, want in ((2**31 + 2**9 - 1, 0x3E00), (2**31 + 2**9, 0x3E01)):
        assert dot1(ibm, 0x3E00, pair + [half, down], "stochastic", rand, 32) == want


def test_tie_broken_far_below_the_sum():
    """bf16 operands into fp32: 1 + 2**-24 is a tie (half of fp32's ulp 2**-23); a product of
    +-2**-200 breaks it from 176 bits further down (more than two 56-bit limbs below the sum's
    top, where only a sticky bit carries it)."""
    f32, bf = F["fp32"], F["bf16"]

    def b16(k, neg=False):
        return ((k + 127) << 7) | (0x8000 if neg else 0)

    half, big = (b16(-12), b16(-12)), [(b16(100), b16(20)), (b16(100, True), b16(20))]
    assert dot1(f32, 0x3F800000, [half], in_fmt=bf) == 0x3F800000  # the tie: to even
    assert dot1(f32, 0x3F800000, [half, (b16(-100), b16(-100))], in_fmt=bf) == 0x3F800001
    assert dot1(f32, 0x3F800000, [half, (b16(-100, True), b16(-100))], in_fmt=bf) == 0x3F800000
    assert dot1(f32, 0x3F800001, [half, (b16(-100, True), b16(-100))], in_fmt=bf) == 0x3F800001
    assert dot1(f32, 0x3F800000, big + [half, (b16(-100), b16(-100))], in_fmt=bf) == 0x3F800001
    # stochastic, r = 32, the tie minus 2**-200: q = 2**31 - 1
    for rand, want in ((2**31, 0x3F800000), (2**31 + 1, 0x3F800001)):
        assert dot1(f32, 0x3F800000, [half, (b16(-100, True), b16(-100))], "stochastic", rand, 32, in_fmt=bf) == want


def test_corner_operands_every_mode(rng):
    """Every pair of corner operands in two product slots, around a third product, against corner
    accumulators: all roundings against the reference."""
    for acc_fmt, in_fmt in [(F["fp16"], F["fp8_e5m2"]), (F["fp32"], F["fp8_e4m3"]), (FP16_FTZ, E5M2_FTZ)]:
        ci = np.array(corner_codes(in_fmt))
        m, sign = acc_fmt.man_bits, 1 << (acc_fmt.width - 1)
        acc_c = [0, 1, 1 << m, acc_fmt.bias << m, acc_fmt.max_code] + ([acc_fmt.inf_code] if acc_fmt.has_inf else [])
        acc_c = np.array(sorted(set(acc_c) | {x | sign for x in acc_c}) + [acc_fmt.nan_code])
        g = np.meshgrid(acc_c, ci, ci, indexing="ij")
        acc, a0, a1 = (x.ravel() for x in g)
        third = rng.choice(ci, len(acc))
        a = np.stack([a0, a1, third], axis=1)
        b = np.stack([a1, a0, rng.choice(ci, len(acc))], axis=1)
        check_rows(acc_fmt, in_fmt, acc, a, b, rng, pair_id((acc_fmt, in_fmt)))


# ---- shapes and bad input ------------------------------------------------------------------------

def test_shapes_broadcast(rng):
    acc_fmt, in_fmt = F["fp16_ibm"], F["fp8_e5m2"]
    a = rng.integers(0, 256, (5, 4))
    b = rng.integers(0, 256, (5, 4))
    acc = rng.integers(0, 1 << 16, 5)
    rows = fp_dot(acc_fmt, in_fmt, acc, a, b)
    assert rows.shape == (5,) and rows.dtype == np.uint16
    for i in range(5):
        assert fp_dot(acc_fmt, in_fmt, acc[i], a[i], b[i]).shape == ()
        assert fp_dot(acc_fmt, in_fmt, acc[i], a[i], b[i]) == rows[i]
    # a shared b vector, a scalar accumulator, and rand broadcasting to a batch of draws
    np.testing.assert_array_equal(fp_dot(acc_fmt, in_fmt, 0, a, b[0]), [fp_dot(acc_fmt, in_fmt, 0, x, b[0]) for x in a])
    r = fp_dot(acc_fmt, in_fmt, acc[0], a[0], b[0], "stochastic", np.arange(256)[:, None], 8)
    assert r.shape == (256, 1) and len(np.unique(r)) <= 2


@pytest.mark.parametrize("call,match", [
    (lambda: fp_dot("fp16", "fp8_e5m2", 0, 0, 0), r"a and b must have a last axis of d terms"),
    (lambda: fp_dot("fp16", "fp8_e5m2", 0, np.zeros((2, 0), int), np.zeros((2, 0), int)), r"at least one term"),
    (lambda: fp_dot("fp16", "fp8_e5m2", 0, np.zeros((2, 3), int), np.zeros((2, 4), int)),
     r"operand shapes do not broadcast: a \(2, 3\), b \(2, 4\)"),
    (lambda: fp_dot("fp16", "fp8_e5m2", np.zeros(3, int), np.zeros((2, 4), int), np.zeros((2, 4), int)),
     r"acc \(3,\) with the other axes of a and b \(2,\)"),
    (lambda: fp_dot("fp16", "fp8_e5m2", 0, [256], [0]), r"a: codes must be in 0\.\.255"),
    (lambda: fp_dot("fp16", "fp8_e5m2", 1 << 16, [0], [0]), r"acc: codes must be in 0\.\.65535"),
    (lambda: fp_dot("fp16", "fp8_e5m2", 0, [0], [0], "up"), r"rounding must be one of"),
    (lambda: fp_dot("fp16", "fp8_e5m2", [0, 0], [[0], [0]], [0], "stochastic", [0, 0, 0], 8),
     r"rand shape \(3,\) does not broadcast"),
    (lambda: fp_dot("fp8_e4m3", "fp8_e5m2", 0, [0], [0]), r"acc_format .* has no infinities"),
    (lambda: fp_dot("fp16", "e5m2", 0, [0], [0]), r"in_fmt: unknown format 'e5m2'"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unbiased_exp_helper_is_the_one_imported():
    # the stimulus helpers come from test_model_rounding (one copy); keep the import honest
    assert unbiased_exp(F["fp16"], np.array([0x3C00]))[0] == 0
