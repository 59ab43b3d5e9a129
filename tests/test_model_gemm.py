"""model/gemm.py, model/config.py and model/layers.py: ``mac_gemm``, ``MacConfig`` and the layer GEMMs.

``mac_gemm`` is compared bit for bit with a slow reference written here from the rules in
model/gemm.py's docstring: Python loops over tiles and processing elements, each MAC step (one
product, or d products for ``dot = d``: fraction_ref.dot's exact sum, K completed with +0
products) and each outer add rounded by tests/fraction_ref.py (exact Fractions), and one
bit-serial LFSR per (PE, stream) written from model/lfsr.py's docstring, seeded by that
docstring's seed formula, drawing once per step.
Only the tap table (data, proven maximal in test_model_lfsr.py) is taken from the model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re

import numpy as np
import pytest

import fraction_ref as ref
from test_model_lfsr import reference_stream_seed  # the documented seed function, written out
from fp8mac.model import FORMATS, FloatFormat, MacConfig, fp_add, fp_dot, fp_fma, mac_gemm
from fp8mac.model import layers
from fp8mac.model.lfsr import TAPS

F = FORMATS


# ---- the slow reference --------------------------------------------------------------------------

class BitSerialLfsr:
    """model/lfsr.py's definition: shift left, feed the parity of the tapped bits into bit 0; a draw
    of r bits is r steps, then the low r bits of the state."""

    def __init__(self, seed, width):
        self.state, self.width = seed, width

    def draw(self, rbits):
        for _ in range(rbits):
            fb = sum((self.state >> (t - 1)) & 1 for t in TAPS[self.width]) & 1
            self.state = ((self.state << 1) | fb) & ((1 << self.width) - 1)
        return self.state & ((1 << rbits) - 1)


@functools.lru_cache(maxsize=None)
def _decode(fmt, code):
    return ref.decode(fmt, code)


def _fma(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits):
    exact = ref.add(_decode(acc_fmt, acc), ref.mul(_decode(in_fmt, a), _decode(in_fmt, b)))
    return ref.round_value(acc_fmt, exact, rounding, rand, rbits)


def _dot(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits):
    terms = [_decode(acc_fmt, acc)] + [ref.mul(_decode(in_fmt, x), _decode(in_fmt, y)) for x, y in zip(a, b)]
    return ref.round_value(acc_fmt, ref.sum_values(terms), rounding, rand, rbits)


def _model_dot(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits):
    return int(fp_dot(acc_fmt, in_fmt, acc, a, b, rounding, rand, rbits))


def _model_add(fmt, x, y, rounding, rand, rbits):
    return int(fp_add(fmt, x, y, rounding, rand, rbits))


def reference_gemm(a, b, cfg: MacConfig, padding_draws=True, draws_per_step=1, arith="fractions"):
    """The docstring's rules, literally. ``padding_draws=False`` (padding lanes idle) and
    ``draws_per_step=d`` (an inner draw per product instead of per step) are deliberately wrong
    variants used to show that the comparison can tell the difference. ``arith="model"`` rounds
    each step with the model's ``fp_dot`` / ``fp_fma`` and each outer add with ``fp_add`` (one
    call per step) instead of the Fraction reference."""
    step_fma, step_dot = (_fma, _dot) if arith == "fractions" else (
        lambda f, i, acc, x, y, *r: int(fp_fma(f, i, acc, x, y, *r)), _model_dot)
    fin, facc, rb = cfg.in_format, cfg.acc_format, cfg.rbits
    (M, K), N = a.shape, b.shape[1]
    R, C = cfg.rows, cfg.cols
    d = cfg.dot
    Kp = -(-K // d) * d  # completed with +0 products
    inner_sr = cfg.inner_rounding == "stochastic"
    outer_sr = cfg.chunk is not None and cfg.outer_rounding == "stochastic"
    lfsr = {(r, c, s): BitSerialLfsr(reference_stream_seed(cfg.seed, r, c, s, cfg.lfsr_width), cfg.lfsr_width)
            for r in range(R) for c in range(C) for s in (0, 1)}
    chunk = Kp if cfg.chunk is None else cfg.chunk
    out = np.zeros((M, N), dtype=np.int64)
    tn = -(-N // C)
    n_chunks = -(-Kp // chunk)
    row_draws = None
    if cfg.outer_placement == "row" and outer_sr:
        # One stream per row (stream 2, col 0), its draws taken in (tile, chunk, column) order.
        n_tiles = -(-M // R) * tn
        row_draws = []
        for r in range(R):
            src = BitSerialLfsr(reference_stream_seed(cfg.seed, r, 0, 2, cfg.lfsr_width), cfg.lfsr_width)
            row_draws.append([src.draw(rb) for _ in range(n_tiles * n_chunks * C)])
    for tile_row in range(-(-M // R)):  # tiles in row-major order
        for tile_col in range(tn):
            t = tile_row * tn + tile_col
            for r in range(R):
                for c in range(C):
                    i, j = tile_row * R + r, tile_col * C + c
                    pad = i >= M or j >= N
                    if pad and not padding_draws:
                        continue
                    arow = ([int(x) for x in a[i]] if i < M else [0] * K) + [0] * (Kp - K)  # padding: +0 operands
                    bcol = ([int(x) for x in b[:, j]] if j < N else [0] * K) + [0] * (Kp - K)
                    outer = 0  # +0
                    for c0 in range(0, Kp, chunk):
                        inner = 0
                        for k in range(c0, min(c0 + chunk, Kp), d):  # one step: d products
                            rand = [lfsr[r, c, 0].draw(rb) for _ in range(draws_per_step)][0] if inner_sr else None
                            if d == 1:
                                inner = step_fma(facc, fin, inner, arow[k], bcol[k], cfg.inner_rounding, rand, rb)
                            else:
                                inner = step_dot(facc, fin, inner, arow[k:k + d], bcol[k:k + d],
                                                 cfg.inner_rounding, rand, rb)
                        if cfg.chunk is None:
                            outer = inner
                        else:
                            if row_draws is not None:
                                rand = row_draws[r][(t * n_chunks + c0 // chunk) * C + c]
                            else:
                                rand = lfsr[r, c, 1].draw(rb) if outer_sr else None
                            if arith == "fractions":
                                exact = ref.add(_decode(facc, outer), _decode(facc, inner))
                                outer = ref.round_value(facc, exact, cfg.outer_rounding, rand, rb)
                            else:
                                outer = _model_add(facc, outer, inner, cfg.outer_rounding, rand, rb)
                    if not pad:
                        out[i, j] = outer
    return out


def operands(rng, fmt, shape, specials=0.0):
    """Codes of moderate magnitude (exponent within +-4 of 1.0), random signs and mantissas, so
    that sums are mostly inexact; a fraction ``specials`` replaced by uniform codes (zeros,
    subnormals, extremes, infinities and NaNs)."""
    n = math.prod(shape)
    ef = fmt.bias + rng.integers(-4, 5, n)
    code = (rng.integers(0, 2, n) << (fmt.width - 1)) | (ef << fmt.man_bits) | rng.integers(0, 1 << fmt.man_bits, n)
    code = np.where(rng.random(n) < specials, rng.integers(0, 1 << fmt.width, n), code)
    return code.reshape(shape)


def kernels(cfg):
    """mac_gemm kernels to check: the default choice, the integer definition, and the float64 fast
    path when it applies (acc man_bits + rbits <= 52; for dot > 1, fp8 or fp16 operands)."""
    ks = [None, "int"]
    if cfg.acc_format.man_bits + (cfg.rbits if cfg.stochastic_streams else 0) <= 52 and (
            cfg.dot == 1 or cfg.in_format.exp_bits <= 5):
        ks.append("float")
    return ks


def check_gemm(a, b, cfg):
    want = reference_gemm(a, b, cfg)
    for kernel in kernels(cfg):
        got = mac_gemm(a, b, cfg, kernel=kernel)
        assert got.shape == want.shape and got.dtype == cfg.acc_format.code_dtype
        bad = np.argwhere(got != want)
        assert not bad.size, (f"kernel={kernel}: {len(bad)} outputs differ, first at {tuple(bad[0])}: "
                              f"got {got[tuple(bad[0])]:#x} want {want[tuple(bad[0])]:#x}")
    return want


# ---- mac_gemm against the reference --------------------------------------------------------------

E5M2_SAT = FloatFormat(5, 2, overflow="saturate", name="e5m2_sat")
FP16_FTZ = dataclasses.replace(F["fp16"], subnormals=False, name="fp16_ftz")

# M, K, N, config fields
CASES = [
    (3, 5, 3, dict(rows=2, cols=2, chunk=2)),  # the default roundings: nearest inner, stochastic outer
    (5, 7, 3, dict(rows=2, cols=4, chunk=3, inner_rounding="stochastic", rbits=4)),
    (1, 1, 1, dict()),  # K = 1 on the default 8 x 8 array
    (4, 1, 5, dict(rows=3, cols=2, chunk=None, inner_rounding="stochastic")),
    (7, 10, 2, dict(rows=4, cols=4, chunk=4, inner_rounding="zero", outer_rounding="nearest")),
    (2, 9, 3, dict(rows=1, cols=1, chunk=9, inner_rounding="stochastic", lfsr_width=16, rbits=16)),
    (3, 6, 4, dict(rows=2, cols=3, chunk=1, inner_rounding="stochastic", rbits=1)),
    (5, 11, 5, dict(rows=3, cols=3, chunk=4, in_format="fp8_e4m3", acc_format="fp32",
                    inner_rounding="stochastic", rbits=32, lfsr_width=64)),
    (4, 8, 3, dict(rows=2, cols=2, chunk=3, acc_format="bf16", inner_rounding="stochastic", rbits=12,
                   lfsr_width=13)),
    (3, 7, 3, dict(rows=2, cols=2, chunk=2, in_format="fp16", acc_format="fp32", inner_rounding="stochastic")),
    (3, 12, 4, dict(rows=2, cols=2, chunk=5, acc_format=FP16_FTZ, inner_rounding="stochastic")),
    (4, 6, 3, dict(rows=4, cols=1, chunk=None, acc_format="fp16", inner_rounding="nearest")),
]


@pytest.mark.parametrize("base_seed", ["fixture", 0, 2**64 - 1])
@pytest.mark.parametrize("M,K,N,fields", CASES, ids=[f"{m}x{k}x{n}-{i}" for i, (m, k, n, _) in enumerate(CASES)])
def test_mac_gemm_against_reference(M, K, N, fields, base_seed, seed, rng):
    cfg = MacConfig(**fields, seed=seed if base_seed == "fixture" else base_seed)
    a = operands(rng, cfg.in_format, (M, K), specials=0.05)
    b = operands(rng, cfg.in_format, (K, N), specials=0.05)
    check_gemm(a, b, cfg)


# Multi-term steps (ARCHITECTURE.md §3b): K not a multiple of d, chunk off, chunk = d, stochastic
# inner and outer, ragged M and N (padding lanes), every accumulator path of the float kernel
# (on-grid fp16_ibm / fp16, wide fp32 / bf16) and the integer kernel alone (bf16 operands; r = 32).
DOT_CASES = [
    (3, 10, 3, dict(rows=2, cols=2, dot=4, chunk=8)),
    (5, 7, 3, dict(rows=2, cols=4, dot=2, chunk=4, inner_rounding="stochastic", rbits=4)),
    (4, 9, 5, dict(rows=3, cols=2, dot=8, chunk=None, inner_rounding="stochastic")),
    (2, 3, 2, dict(rows=1, cols=1, dot=8, chunk=8, inner_rounding="stochastic")),  # K < d
    (3, 17, 3, dict(rows=2, cols=2, dot=4, chunk=4, inner_rounding="stochastic", rbits=8)),  # a step per chunk
    (3, 13, 2, dict(rows=2, cols=2, dot=2, chunk=6, in_format="fp16", acc_format="fp32",
                    inner_rounding="stochastic", rbits=29)),
    (3, 11, 3, dict(rows=2, cols=3, dot=4, chunk=8, in_format="fp8_e4m3", acc_format="bf16",
                    inner_rounding="stochastic", rbits=12, lfsr_width=13)),
    (3, 12, 4, dict(rows=2, cols=2, dot=4, chunk=4, acc_format=FP16_FTZ, inner_rounding="zero")),
    (2, 37, 3, dict(rows=2, cols=2, dot=16, chunk=32, acc_format="fp16", inner_rounding="stochastic")),
    (3, 9, 3, dict(rows=2, cols=2, dot=2, chunk=4, in_format="fp8_e4m3", acc_format="fp32",
                   inner_rounding="stochastic", rbits=32, lfsr_width=64)),
    (2, 70, 2, dict(rows=1, cols=2, dot=64, chunk=64, inner_rounding="stochastic", outer_rounding="nearest")),
    (2, 6, 2, dict(rows=1, cols=1, dot=2, chunk=None, in_format="bf16", acc_format="fp32")),
]


@pytest.mark.parametrize("base_seed", ["fixture", 2**64 - 1])
@pytest.mark.parametrize("M,K,N,fields", DOT_CASES, ids=[f"{m}x{k}x{n}-dot{f['dot']}-{i}"
                                                         for i, (m, k, n, f) in enumerate(DOT_CASES)])
def test_mac_gemm_dot_against_reference(M, K, N, fields, base_seed, seed, rng):
    cfg = MacConfig(**fields, seed=seed if base_seed == "fixture" else base_seed)
    a = operands(rng, cfg.in_format, (M, K), specials=0.05)
    b = operands(rng, cfg.in_format, (K, N), specials=0.05)
    check_gemm(a, b, cfg)


@pytest.mark.parametrize("M,K,N,fields", DOT_CASES[:6], ids=[f"{m}x{k}x{n}-dot{f['dot']}-{i}"
                                                             for i, (m, k, n, f) in enumerate(DOT_CASES[:6])])
def test_mac_gemm_dot_equals_a_loop_of_fp_dot_and_fp_add(M, K, N, fields, seed, rng):
    """The same per-output loop, each step one fp_dot call and each chunk one fp_add call."""
    cfg = MacConfig(**fields, seed=seed, outer_rounding="stochastic")
    a = operands(rng, cfg.in_format, (M, K), specials=0.05)
    b = operands(rng, cfg.in_format, (K, N), specials=0.05)
    want = reference_gemm(a, b, cfg, arith="model")
    for kernel in kernels(cfg):
        np.testing.assert_array_equal(mac_gemm(a, b, cfg, kernel=kernel), want)


def test_dot_draws_once_per_step():
    """Tile t, step s uses inner draw t * S + s (S = Kp / d steps per output): a reference that
    draws once per product instead gets different results (fixed operands: cannot flake)."""
    cfg = MacConfig(rows=2, cols=2, dot=4, chunk=8, inner_rounding="stochastic", outer_rounding="stochastic")
    fixed = np.random.default_rng(20190930)
    a = operands(fixed, cfg.in_format, (3, 14))
    b = operands(fixed, cfg.in_format, (14, 3))
    right = reference_gemm(a, b, cfg)
    np.testing.assert_array_equal(mac_gemm(a, b, cfg), right)
    np.testing.assert_array_equal(mac_gemm(a, b, cfg, kernel="int"), right)
    wrong = reference_gemm(a, b, cfg, draws_per_step=4)
    assert np.any(right != wrong)


def test_dot_completes_k_with_positive_zeros():
    """Chunking off, fp16: step 1 rounds -2**-26 to -0; step 2 holds one -0 product. With K = 5
    and d = 4 the other three products of step 2 are +0 padding, so the sum is +0; with K = 8 and
    four -0 products it stays -0 (every term -0). With d = 1 there is no padding: -0."""
    cfg = MacConfig(rows=1, cols=1, acc_format="fp16", chunk=None, dot=4)
    neg_tiny, neg_zero = (0x88, 0x08), (0x80, 0x00)  # -2**-13 * 2**-13, -0 * +0
    for k, dot, want in ((5, 4, 0x0000), (8, 4, 0x8000), (5, 1, 0x8000)):
        pairs = [neg_tiny] + [neg_zero] * (k - 1)
        a = np.array([[x for x, _ in pairs]])
        b = np.array([[y for _, y in pairs]]).T
        c = cfg.replace(dot=dot)
        for kernel in kernels(c):
            assert mac_gemm(a, b, c, kernel=kernel)[0, 0] == want, (k, dot, kernel)
        assert reference_gemm(a, b, c)[0, 0] == want


def test_dot_widths_agree_when_every_sum_is_exact(rng):
    """Operands of 2 significant bits in a narrow range: every partial sum is exact in fp16_ibm,
    so every dot width (and chunk) gives the exact dot product; padding included (K = 37)."""
    fin = F["fp8_e5m2"]
    a = fin.encode(rng.choice([0.0, 0.5, 1.0, 1.5, -0.5, -1.0, -1.5, 2.0, -3.0], size=(5, 37)))
    b = fin.encode(rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, -0.25, -0.5, -1.0], size=(37, 6)))
    exact = fin.decode(a) @ fin.decode(b)
    for dot in (1, 2, 4, 8, 16, 32, 64):
        for chunk in (None, 64):
            cfg = MacConfig(rows=2, cols=4, dot=dot, chunk=chunk, inner_rounding="stochastic")
            np.testing.assert_array_equal(F["fp16_ibm"].decode(mac_gemm(a, b, cfg)), exact)


def test_mac_gemm_overflow_and_specials_against_reference(rng):
    """Large operands into a small accumulator: saturation, infinities, NaN (0 * inf, inf - inf)."""
    cfg = MacConfig(rows=2, cols=3, chunk=3, in_format="fp8_e5m2", acc_format="fp16",
                    inner_rounding="stochastic", outer_rounding="stochastic")
    a = rng.integers(0, 256, (4, 8))
    b = rng.integers(0, 256, (8, 4))
    a[0, 0] = 0x7D  # a NaN: row 0 is NaN
    a[1] = np.minimum(a[1] & 0x7F, 0x7B)  # row 1 positive and finite ...
    a[1, 0] = 0x7C  # ... but for one +inf
    b[:, 0] = np.minimum(b[:, 0] & 0x7F, 0x7B)  # column 0 positive and finite
    b[0, 0] = 0x3C  # 1.0
    want = check_gemm(a, b, cfg)
    assert np.all(want[0] == 0x7E00) and want[1, 0] == 0x7C00
    cfg = MacConfig(rows=2, cols=3, chunk=3, in_format=E5M2_SAT, acc_format=dataclasses.replace(F["fp16"], overflow="saturate"),
                    inner_rounding="stochastic")
    big = (rng.integers(0, 2, (4, 8)) << 7) | (28 << 2) | rng.integers(0, 4, (4, 8))  # about +-2**13
    want = check_gemm(big, big.T.copy(), cfg)
    assert np.any((want & 0x7FFF) == 0x7BFF)  # saturated


def test_padding_lanes_draw(rng):
    """A 3 x 3 output on a 2 x 2 array: four tiles in row-major order, with padding lanes in column
    3 and row 3. PE (0, 1) computes (0, 1), padding (0, 3), then (2, 1): by the rule "tile t, step
    k uses draw t*K + k", output (2, 1) uses that PE's draws 2K..3K-1 because the padding lane
    consumed K..2K-1. A reference whose padding lanes stay idle gets a different (2, 1)."""
    cfg = MacConfig(rows=2, cols=2, chunk=8, inner_rounding="stochastic", outer_rounding="stochastic")
    a = operands(rng, cfg.in_format, (3, 32))
    b = operands(rng, cfg.in_format, (32, 3))
    check_gemm(a, b, cfg)
    # the sensitivity check uses fixed operands, so that it cannot flake
    fixed = np.random.default_rng(20181203)
    a = operands(fixed, cfg.in_format, (3, 32))
    b = operands(fixed, cfg.in_format, (32, 3))
    right = reference_gemm(a, b, cfg)
    wrong = reference_gemm(a, b, cfg, padding_draws=False)
    np.testing.assert_array_equal(mac_gemm(a, b, cfg), right)
    # PE (0, 0): (0,0) (0,2) (2,0) (2,2), no padding. PE (0, 1): (0,1) pad (2,1) pad. PE (1, 0):
    # (1,0) (1,2) pad pad. PE (1, 1): (1,1) pad pad pad. Only (2, 1) follows a padding lane.
    assert np.argwhere(right != wrong).tolist() == [[2, 1]]


def test_nearest_results_do_not_depend_on_array_or_seed(rng):
    """Without stochastic rounding nothing draws: tiling, array shape and seed cannot matter."""
    a = operands(rng, F["fp8_e5m2"], (9, 70), specials=0.02)
    b = operands(rng, F["fp8_e5m2"], (70, 6), specials=0.02)
    base = MacConfig(rows=8, cols=8, chunk=16, outer_rounding="nearest")
    want = mac_gemm(a, b, base)
    for fields in (dict(rows=1, cols=1, seed=7), dict(rows=3, cols=5, seed=2**64 - 1), dict(rows=64, cols=2)):
        np.testing.assert_array_equal(mac_gemm(a, b, base.replace(**fields)), want)
    # and the reference agrees on a slice (the full reference is slow)
    np.testing.assert_array_equal(reference_gemm(a[:3], b, base.replace(rows=2, cols=4)), want[:3])


def test_results_do_not_depend_on_pe_variant_or_top(rng):
    a = operands(rng, F["fp8_e5m2"], (5, 40))
    b = operands(rng, F["fp8_e5m2"], (40, 7))
    # With the outer adder placed explicitly (auto would move it out of a two-adder PE, and its
    # draws with it: test_row_outer_adder_draws_in_chunk_then_column_order).
    cfg = MacConfig(rows=2, cols=3, chunk=6, inner_rounding="stochastic", outer_adder="pe")
    want = mac_gemm(a, b, cfg)
    np.testing.assert_array_equal(mac_gemm(a, b, cfg.replace(pe="shared-adder", top="other_name")), want)


@pytest.mark.parametrize("fields,shape", [
    (dict(rows=2, cols=3, chunk=4, outer_adder="row"), (5, 13, 7)),
    (dict(rows=3, cols=2, chunk=8, dot=4, outer_adder="row", inner_rounding="stochastic"), (4, 30, 5)),
])
def test_row_outer_adder_draws_in_chunk_then_column_order(fields, shape, rng):
    """outer_adder="row": each row's outer sums draw from one stream in (tile, chunk, column)
    order (the reference draws them from a bit-serial LFSR in that order), which differs from
    the per-PE streams, while nearest outer rounding gives the same codes either way."""
    M, K, N = shape
    a = operands(rng, F["fp8_e5m2"], (M, K))
    b = operands(rng, F["fp8_e5m2"], (K, N))
    cfg = MacConfig(**fields)
    want = reference_gemm(a, b, cfg, arith="model")
    for kernel in kernels(cfg):
        np.testing.assert_array_equal(mac_gemm(a, b, cfg, kernel=kernel), want)
    assert not np.array_equal(mac_gemm(a, b, cfg.replace(outer_adder="pe")), want)
    assert cfg.replace(outer_adder="auto").outer_placement == "row"  # allowed here: auto takes it
    nearest = cfg.replace(outer_rounding="nearest")
    np.testing.assert_array_equal(mac_gemm(a, b, nearest), mac_gemm(a, b, nearest.replace(outer_adder="pe")))


@pytest.mark.parametrize("fields,message", [
    (dict(outer_adder="column"), "outer_adder must be one of auto, pe, row, not 'column'"),
    (dict(outer_adder="row", chunk=None), "outer_adder 'row' needs chunking: chunk is off"),
    (dict(outer_adder="row", pe="shared-adder"), "outer_adder 'row' goes with pe two-adder"),
    (dict(outer_adder="row", cols=8, chunk=32, dot=8), r"chunk / dot \(32 / 8\) must be at least max\(cols, 2\) = 8"),
    # one column, chunk ends every step: the row adder's two stages need two
    (dict(outer_adder="row", cols=1, chunk=4, dot=4), r"chunk / dot \(4 / 4\) must be at least max\(cols, 2\) = 2"),
])
def test_row_outer_adder_constraints(fields, message):
    with pytest.raises(ValueError, match=message):
        MacConfig(**fields)


def test_draws_do_not_depend_on_operand_values(rng):
    """Every stochastic step draws, exact or not: making tile 0's operands zero (every step exact)
    leaves the second tile row's results, computed by the same PEs afterwards, unchanged."""
    cfg = MacConfig(rows=2, cols=2, chunk=4, inner_rounding="stochastic")
    a = operands(rng, cfg.in_format, (4, 12))
    b = operands(rng, cfg.in_format, (12, 2))
    got = mac_gemm(a, b, cfg)
    a0 = a.copy()
    a0[:2] = 0
    got0 = mac_gemm(a0, b, cfg)
    np.testing.assert_array_equal(got0[2:], got[2:])
    np.testing.assert_array_equal(got0[:2], 0)
    np.testing.assert_array_equal(got0, reference_gemm(a0, b, cfg))


def test_stochastic_results_depend_on_seed():
    a = operands(np.random.default_rng(1), F["fp8_e5m2"], (8, 64))
    b = operands(np.random.default_rng(2), F["fp8_e5m2"], (64, 8))
    cfg = MacConfig(inner_rounding="stochastic", seed=1)
    assert np.any(mac_gemm(a, b, cfg) != mac_gemm(a, b, cfg.replace(seed=2)))


# ---- chunk-based accumulation: the paper's point ------------------------------------------------------

def test_chunking_keeps_long_dot_products_close_to_fp32(rng):
    """K = 4096, FP8 (1,5,2) operands drawn uniformly from [0, 1) and rounded to nearest: all
    products are positive (mean about 1/4), so plain FP16 (1,6,9) accumulation swamps: once the
    sum passes 2**9 products below half an ulp are lost. Errors are relative to the FP32
    (sequential) accumulation of the same FP8 products (the paper's reference), which is itself
    within 1e-5 of the exact sum (math.fsum).

    Stated bounds (mean relative error over 64 dot products; u = 2**-10, fp16_ibm's unit roundoff):
    chunk 64 with nearest rounding and the default (chunk 64, stochastic outer, r = 8) stay within
    8u; plain accumulation is off by more than 10% and at least 10x the chunked error; observed
    on this machine: plain ~0.22, chunked ~0.0013 (nearest) and ~0.0024 (stochastic outer).
    """
    fin, facc = F["fp8_e5m2"], F["fp16_ibm"]
    K, M, N = 4096, 8, 8
    a = fin.encode(rng.random((M, K)))
    b = fin.encode(rng.random((K, N)))
    av, bv = fin.decode(a), fin.decode(b)
    exact = np.array([[math.fsum(av[i] * bv[:, j]) for j in range(N)] for i in range(M)])
    fp32 = np.zeros((M, N), np.float32)
    for k in range(K):
        fp32 = fp32 + np.multiply.outer(av[:, k], bv[k]).astype(np.float32)  # exact products
    assert np.max(np.abs(fp32 - exact) / exact) < 1e-5

    def err(cfg):
        got = facc.decode(mac_gemm(a, b, cfg))
        return float(np.mean(np.abs(got - fp32) / fp32))

    u = 2.0**-10
    plain = err(MacConfig(chunk=None, inner_rounding="nearest"))
    chunked = err(MacConfig(chunk=64, inner_rounding="nearest", outer_rounding="nearest"))
    default = err(MacConfig())
    print(f"mean relative error vs FP32: plain {plain:.4g}, chunk 64 nearest {chunked:.4g}, "
          f"chunk 64 stochastic outer {default:.4g} (u = {u:.4g})")
    assert chunked <= 8 * u and default <= 8 * u
    assert plain > 0.1
    assert plain >= 10 * max(chunked, default)


# ---- MacConfig ---------------------------------------------------------------------------------

def test_config_defaults_are_the_architecture():
    c = MacConfig()  # ARCHITECTURE.md §3: the defaults
    assert (c.rows, c.cols, c.in_format, c.acc_format, c.chunk) == (8, 8, F["fp8_e5m2"], F["fp16_ibm"], 64)
    assert (c.inner_rounding, c.outer_rounding, c.rbits, c.lfsr_width) == ("nearest", "stochastic", 8, 32)
    assert (c.dot, c.pe, c.outer_adder, c.pipeline) == (1, "two-adder", "auto", 0)
    # auto: the row outer adder (chunk / dot = 64 >= 8 columns): the PE has no outer stream, each
    # row has one.
    assert (c.outer_placement, c.stochastic_streams, c.row_streams) == ("row", (), (2,))
    assert MacConfig(cols=65 - 1, chunk=32).outer_placement == "pe"  # 32 < 64 columns
    assert MacConfig(pe="shared-adder").outer_placement == "pe"
    pe = MacConfig(outer_adder="pe")
    assert (pe.stochastic_streams, pe.row_streams) == ((1,), ())
    assert pe.replace(inner_rounding="stochastic").stochastic_streams == (0, 1)
    assert MacConfig(chunk=None).stochastic_streams == ()  # no outer sum, no outer stream
    assert MacConfig(chunk=None).row_streams == ()
    assert MacConfig(chunk=None, inner_rounding="stochastic").stochastic_streams == (0,)


@pytest.mark.parametrize("cfg", [
    MacConfig(),
    MacConfig(rows=3, cols=64, in_format="fp8_e4m3", acc_format="fp32", chunk=None, dot=8, inner_rounding="stochastic",
              outer_rounding="zero", rbits=32, lfsr_width=64, seed=2**64 - 1, pe="shared-adder", top="my_top"),
    MacConfig(in_format=FloatFormat(5, 2, subnormals=False), acc_format=FloatFormat(7, 9, bias=60, name="odd")),
    MacConfig(acc_format=dataclasses.replace(F["fp16"], overflow="saturate"), chunk=1, rbits=3, lfsr_width=3, seed=0),
], ids=["default", "every-field", "custom-formats", "saturate"])
def test_config_dict_round_trip(cfg):
    d = cfg.to_dict()
    assert MacConfig.from_dict(d) == cfg
    assert MacConfig.from_dict(json.loads(json.dumps(d))) == cfg  # what manifest.json holds
    # every field; a single-format configuration leaves out the two streams' formats (in_format),
    # the run-time format sets (none) and the block formats (none)
    assert set(d) == {f.name for f in dataclasses.fields(MacConfig)} - {"a_format", "b_format",
                                                                        "a_formats", "b_formats",
                                                                        "a_block", "b_block"}


@pytest.mark.parametrize("blocks", [dict(a_block="mxfp4"), dict(a_block="mxfp8_e4m3", b_block="mxfp8_e5m2"),
                                    dict(a_block=dict(element="fp4_r4", block=16, scale=None),
                                         b_block=dict(element="int4", block=16, scale=None))],
                         ids=["mxfp4", "mxfp8-mixed", "r4-int4-custom"])
def test_block_config_dict_round_trip(blocks):
    """Block formats go into the dict (presets by name, others spelled out) and come back."""
    cfg = MacConfig(rows=2, cols=2, dot=8, chunk=64, **blocks)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert MacConfig.from_dict(d) == cfg
    assert {"a_block", "b_block"} <= set(d)
    if isinstance(blocks["a_block"], str):
        assert d["a_block"] == blocks["a_block"]
    assert cfg.block_config().a == cfg.a_block and cfg.block_config().mac.a_block is None


def test_plain_config_is_one_accumulator_rounding_to_nearest():
    cfg = MacConfig(rows=3, cols=5, in_format="fp8_e4m3", acc_format="bf16", chunk=16,
                    inner_rounding="stochastic", outer_rounding="stochastic", rbits=6, seed=9,
                    pe="shared-adder")
    plain = cfg.plain()
    assert (plain.chunk, plain.inner_rounding, plain.outer_rounding) == (None, "nearest", "nearest")
    assert (plain.rows, plain.cols, plain.in_format, plain.acc_format, plain.rbits, plain.seed,
            plain.pe) == (3, 5, FORMATS["fp8_e4m3"], FORMATS["bf16"], 6, 9, "shared-adder")
    assert plain.stochastic_streams == ()  # no random stream left


def test_config_dict_names_presets_and_spells_out_custom_formats():
    d = MacConfig(acc_format=dataclasses.replace(F["fp16"], overflow="saturate")).to_dict()
    assert d["in_format"] == "fp8_e5m2"
    assert d["acc_format"]["exp_bits"] == 5 and d["acc_format"]["overflow"] == "saturate"


@pytest.mark.parametrize("text", ["off", "none"])
def test_config_from_dict_chunk_off(text):
    assert MacConfig.from_dict({"chunk": text}).chunk is None


@pytest.mark.parametrize("fields,match", [
    (dict(rows=0), r"rows must be in 1\.\.64, not 0"),
    (dict(rows=65), r"rows must be in 1\.\.64"),
    (dict(cols=0), r"cols must be in 1\.\.64"),
    (dict(rows=2.0), r"rows must be an integer"),
    (dict(cols=True), r"cols must be an integer"),
    (dict(in_format="fp8"), r"in_format: unknown format 'fp8'"),
    (dict(acc_format="fp64"), r"acc_format: unknown format 'fp64'"),
    (dict(acc_format={"exp_bits": 5}), r"acc_format: .*man_bits"),
    (dict(acc_format="fp8_e4m3"), r"acc_format .* has no infinities"),
    (dict(in_format="fp8_e4m3", acc_format=FloatFormat(4, 3, specials="none")), r"acc_format .* has no NaN"),
    (dict(chunk=0), r"chunk must be in 1\.\."),
    (dict(chunk=-64), r"chunk must be in 1\.\."),
    (dict(chunk=1.5), r"chunk must be an integer"),
    (dict(inner_rounding="up"), r"inner_rounding must be one of nearest, zero, stochastic"),
    (dict(outer_rounding=None), r"outer_rounding must be one of"),
    (dict(rbits=0), r"rbits must be in 1\.\.32"),
    (dict(rbits=33), r"rbits must be in 1\.\.32"),
    (dict(rbits=9, lfsr_width=8), r"rbits must be in 1\.\.8, not 9"),
    (dict(lfsr_width=2), r"lfsr_width must be an integer in 3\.\.64"),
    (dict(lfsr_width=65), r"lfsr_width must be an integer in 3\.\.64"),
    (dict(seed=-1), r"seed must be in 0\.\.18446744073709551615"),
    (dict(seed=2**64), r"seed must be in 0\.\."),
    (dict(seed="1"), r"seed must be an integer"),
    (dict(pe="three-adder"), r"pe must be one of two-adder, shared-adder"),
    (dict(top="1top"), r"top must be a Verilog identifier"),
    (dict(top="a-b"), r"top must be a Verilog identifier"),
    (dict(top="module"), r"top must not be a Verilog/SystemVerilog keyword, not 'module'"),
    (dict(top="always_ff"), r"top must not be a Verilog/SystemVerilog keyword, not 'always_ff'"),
    (dict(dot=3), r"dot must be a power of two in 1\.\.64, not 3"),
    (dict(dot=0), r"dot must be a power of two in 1\.\.64, not 0"),
    (dict(dot=128), r"dot must be a power of two in 1\.\.64, not 128"),
    (dict(dot=-4), r"dot must be a power of two in 1\.\.64, not -4"),
    (dict(dot=2.0), r"dot must be a power of two in 1\.\.64, not 2\.0"),
    (dict(dot=True), r"dot must be a power of two in 1\.\.64, not True"),
    (dict(dot="4"), r"dot must be a power of two in 1\.\.64, not '4'"),
    (dict(chunk=12, dot=8), r"chunk must be a multiple of dot \(8\), not 12"),
    (dict(chunk=2, dot=4), r"chunk must be a multiple of dot \(4\), not 2"),
    (dict(dot=128, chunk=128), r"dot must be a power of two"),
])
def test_bad_config_fields(fields, match):
    with pytest.raises(ValueError, match=match):
        MacConfig(**fields)


@pytest.mark.parametrize("dot", [1, 2, 4, 8, 16, 32, 64])
def test_config_dot_widths(dot):
    """Every power of two up to 64, with chunking off or any multiple of dot as the chunk."""
    for chunk in (None, dot, 3 * dot, 64 * dot):
        c = MacConfig(dot=dot, chunk=chunk)
        assert (c.dot, c.chunk, c.macs_per_cycle) == (dot, chunk, dot)
        assert MacConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert isinstance(MacConfig(dot=np.int64(dot)).dot, int)


def test_config_dot_is_declared_after_chunk_and_old_manifests_load():
    names = [f.name for f in dataclasses.fields(MacConfig)]
    assert names[names.index("chunk") + 1] == "dot"
    assert MacConfig().dot == 1 and MacConfig().macs_per_cycle == 1
    d = MacConfig().to_dict()
    del d["dot"]  # a manifest written before the field existed
    assert MacConfig.from_dict(d) == MacConfig()


def test_top_keywords():
    """Every Verilog-2005 and SystemVerilog-2017 keyword is refused; identifiers that merely
    contain one, or differ in case (Verilog is case-sensitive), are fine."""
    from fp8mac.model.config import VERILOG_KEYWORDS

    assert len(VERILOG_KEYWORDS) == len(set(VERILOG_KEYWORDS)) == 248  # IEEE 1800-2017 Annex B
    verilog_2005 = ("module", "endmodule", "always", "wire", "reg", "input", "output", "inout",
                    "begin", "end", "assign", "generate", "genvar", "localparam", "uwire", "cell",
                    "config", "design", "liblist", "incdir", "pulsestyle_ondetect", "specparam")
    sv_2017 = ("logic", "bit", "always_comb", "always_ff", "interface", "package", "class",
               "interconnect", "nettype", "soft", "implements", "unique0", "until_with")
    assert set(verilog_2005 + sv_2017) <= set(VERILOG_KEYWORDS)
    for word in VERILOG_KEYWORDS:  # each one is a well-formed identifier, refused for being a keyword
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", word), word
        with pytest.raises(ValueError, match=rf"top must not be a Verilog/SystemVerilog keyword, not '{word}'"):
            MacConfig(top=word)
    for fine in ("Module", "module_top", "my_wire", "logic0", "WIRE"):
        assert MacConfig(top=fine).top == fine


def test_config_from_dict_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown config field\(s\) colour, size; allowed: rows, cols"):
        MacConfig.from_dict({"rows": 2, "size": 3, "colour": "red"})
    with pytest.raises(ValueError, match=r"config must be a mapping"):
        MacConfig.from_dict([("rows", 2)])


# ---- mac_gemm bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("a,b,match", [
    (np.zeros((2, 3), int), np.zeros((4, 2), int), r"shape mismatch: a_codes is 2 x 3 but b_codes is 4 x 2"),
    (np.zeros(3, int), np.zeros((3, 2), int), r"a_codes and b_codes must be 2-D"),
    (np.zeros((2, 3), int), np.zeros((3, 2, 1), int), r"a_codes and b_codes must be 2-D"),
    (np.zeros((2, 0), int), np.zeros((0, 2), int), r"K \(the dot-product length\) must be at least 1"),
    (np.full((2, 3), 256), np.zeros((3, 2), int), r"a_codes: codes must be in 0\.\.255"),
    (np.zeros((2, 3), int), np.full((3, 2), -1), r"b_codes: codes must be in 0\.\.255"),
])
def test_mac_gemm_bad_operands(a, b, match):
    with pytest.raises(ValueError, match=match):
        mac_gemm(a, b, MacConfig())


def test_mac_gemm_bad_config_and_kernel():
    with pytest.raises(ValueError, match=r"config must be a MacConfig, not dict"):
        mac_gemm(np.zeros((1, 1), int), np.zeros((1, 1), int), {"rows": 8})
    with pytest.raises(ValueError, match=r"kernel must be 'int', 'float' or None"):
        mac_gemm(np.zeros((1, 1), int), np.zeros((1, 1), int), MacConfig(), kernel="fast")
    with pytest.raises(ValueError, match=r"kernel='float' needs"):
        mac_gemm(np.zeros((1, 1), int), np.zeros((1, 1), int),
                 MacConfig(acc_format="fp32", inner_rounding="stochastic", rbits=32), kernel="float")
    with pytest.raises(ValueError, match=r"kernel='float' has no exact float64 scheme for dot=2 steps of bf16"):
        mac_gemm(np.zeros((1, 1), int), np.zeros((1, 1), int),
                 MacConfig(in_format="bf16", acc_format="fp32", dot=2), kernel="float")


# ---- layers ------------------------------------------------------------------------------------

def naive_conv2d(x, w, stride, padding):
    """Direct convolution (cross-correlation, as DNN frameworks define it), output (N, F, OH, OW)."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding))
    xp[:, :, padding:padding + h, padding:padding + wd] = x
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    for i in range(n):
        for o in range(f):
            for y in range(oh):
                for z in range(ow):
                    total = 0.0
                    for ch in range(c):
                        for p in range(kh):
                            for q in range(kw):
                                total += xp[i, ch, y * stride + p, z * stride + q] * w[o, ch, p, q]
                    out[i, o, y, z] = total
    return out


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_conv2d_forward_equals_direct_convolution(stride, padding, rng):
    """Inputs of at most 2 significant bits in a narrow range are exact in FP8 (1,5,2) after the
    power-of-two scaling, and their im2col dot products (<= 18 terms) are exact in FP16 (1,6,9):
    so even with stochastic outer rounding the result is the exact convolution."""
    x = rng.choice([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, -0.5, -1.0, -1.5, -3.0], size=(2, 2, 6, 5))
    w = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, -0.25, -0.5, -0.75, -1.0], size=(3, 2, 3, 3))
    x[0, 0, 0, 0], w[0, 0, 0, 0] = 3.0, -1.0  # fix the scales
    cfg = MacConfig(rows=4, cols=2, chunk=5)
    lg = layers.conv2d_forward(x, w, cfg, stride=stride, padding=padding)
    want = naive_conv2d(x, w, stride, padding)  # (N, F, OH, OW)
    n, f, oh, ow = want.shape
    flat = want.transpose(0, 2, 3, 1).reshape(n * oh * ow, f)  # rows (n, oh, ow), columns f
    assert lg.shape == (n * oh * ow, 2 * 3 * 3, f)
    np.testing.assert_array_equal(lg.values, flat)
    np.testing.assert_array_equal(lg.fp32, flat)
    np.testing.assert_array_equal(lg.fp32_quantized, flat)
    assert lg.rel_error() == 0.0


def test_linear_shapes_and_values(rng):
    B, I, O = 5, 7, 3
    vals = [0.0, 0.5, 1.0, 1.5, -0.5, -1.0, -1.5]
    x, w, dy = (rng.choice(vals, size=s) for s in ((B, I), (I, O), (B, O)))
    cfg = MacConfig(rows=2, cols=2, chunk=3)
    for lg, shape, want in [
        (layers.linear_forward(x, w, cfg), (B, I, O), x @ w),
        (layers.linear_backward(dy, w, cfg), (B, O, I), dy @ w.T),
        (layers.linear_weight_grad(x, dy, cfg), (I, B, O), x.T @ dy),
    ]:
        assert lg.shape == shape
        assert lg.codes.shape == lg.values.shape == lg.fp32.shape == want.shape
        assert lg.a_codes.shape == shape[:2] and lg.b_codes.shape == shape[1:]
        np.testing.assert_array_equal(lg.values, want)  # exact inputs, exact sums


@pytest.mark.parametrize("call,match", [
    (lambda: layers.gemm_layer("g", np.zeros((2, 3)), np.zeros((4, 2)), MacConfig()), r"g: operands must be M x K and K x N"),
    (lambda: layers.linear_forward(np.zeros(3), np.zeros((3, 2)), MacConfig()), r"operands must be M x K and K x N"),
    (lambda: layers.im2col(np.zeros((1, 2, 3)), 3, 3), r"x must be N x C x H x W"),
    (lambda: layers.im2col(np.zeros((1, 1, 2, 2)), 3, 3), r"kernel 3x3 does not fit the 2x2 input"),
    (lambda: layers.conv2d_forward(np.zeros((1, 2, 4, 4)), np.zeros((1, 3, 3, 3)), MacConfig()), r"w must be F x C x kh x kw"),
    (lambda: layers.quantize([1.0, np.inf], F["fp8_e5m2"]), r"x: values to quantize must be finite"),
])
def test_layer_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_im2col_stride_zero():
    with pytest.raises(ValueError, match=r"stride"):
        layers.im2col(np.zeros((1, 1, 4, 4)), 2, 2, stride=0)


def test_auto_outer_adder_needs_two_steps_per_chunk():
    """``auto`` puts the outer adder in the row only where a PE's chunk ends are at least two
    steps apart (the row adder's two stages) and cols apart."""
    assert MacConfig(cols=1, chunk=2).outer_placement == "row"
    assert MacConfig(cols=1, chunk=1).outer_placement == "pe"
    assert MacConfig(cols=1, chunk=8, dot=8).outer_placement == "pe"
    assert MacConfig(cols=4, chunk=4).outer_placement == "row"
    assert MacConfig(cols=4, chunk=2).outer_placement == "pe"
