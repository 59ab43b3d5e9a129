"""model/elements.py and model/blockscale.py (issue 19, items 1-2): the 4-bit, 6-bit and scale
formats, the block dot product, block_gemm and the block quantizers.

Expected values come from references written here from the formats' definitions (bit fields read
with integer arithmetic, values as ``fractions.Fraction``, the rounding rule applied to the exact
value) and from tests/fraction_ref.py, and, where they have the format, from ml_dtypes
(``float4_e2m1fn``, ``float6_e2m3fn``, ``float6_e3m2fn``, ``float8_e8m0fnu``, ``int4``) and Graphcore's
gfloat (OCP E2M1 / E2M3 / E3M2 / E8M0, ``compute_scale_amax``, ``quantize_block``). The model is
never asked for an expected value, except where a test says it compares two parts of the model
(``round_to_format`` with ``FloatFormat.encode``, ``block_gemm`` with ``mac_gemm``).
"""

from __future__ import annotations

import bisect
import functools
import json
import math
from fractions import Fraction

import gfloat
import gfloat.formats as gf
import ml_dtypes
import numpy as np
import pytest

import fraction_ref as ref
from test_model_formats import assert_same_floats  # equal as float64, NaN = NaN, signed zeros
from test_model_gemm import BitSerialLfsr, reference_stream_seed
from fp8mac.model import FORMATS, FloatFormat, MacConfig, mac_gemm
from fp8mac.model.blockscale import (BLOCK_FORMATS, BlockConfig, BlockFormat, block_dot, block_format, block_gemm,
                                     dequantize_blocks, mx_scale_codes, nvfp4_scale_codes, quantize_blocks,
                                     quantize_tiles, tile_block_scales)
from fp8mac.model.elements import (E8M0, ELEMENT_FORMATS, SCALE_FORMATS, GridFormat, element_format, round_to_format,
                                   scale_format, two_phase_round)

EF = ELEMENT_FORMATS
F16I = FORMATS["fp16_ibm"]
E4M3 = FORMATS["fp8_e4m3"]

# ---- references: decoding from bit fields ---------------------------------------------------------

def _pow2(k: int) -> Fraction:
    return Fraction(2) ** k


@functools.lru_cache(maxsize=None)
def ref_decode(fmt, code: int) -> ref.Value:
    """A code's exact value from the format's definition (FloatFormats: fraction_ref)."""
    code = int(code)
    if isinstance(fmt, FloatFormat):
        return ref.decode(fmt, code)
    w = fmt.width
    assert 0 <= code < 1 << w
    if fmt.kind == "int":  # two's complement
        v = code - (1 << w) if code >> (w - 1) else code
        return ref.Value("num", int(v < 0), abs(Fraction(v)) * _pow2(-fmt.frac_bits))
    if fmt.kind == "uint":
        return ref.Value("num", 0, Fraction(code) * _pow2(-fmt.frac_bits))
    if fmt.kind == "e8m0":
        return ref.NAN if code == 0xFF else ref.Value("num", 0, _pow2(code - 127))
    sign = code >> (w - 1)
    if fmt.kind == "radix4":
        f = code & ((1 << (w - 1)) - 1)
        return ref.Value("num", sign, Fraction(0) if f == 0 else Fraction(4) ** (f - fmt.bias) * 2 ** fmt.phase)
    assert fmt.kind == "sign_magnitude"
    if fmt.name == "fp4_e1m2":  # read as E1M2 fields: s.e.mm, bias 1, subnormals at e = 0
        e, mm = (code >> 2) & 1, code & 3
        mag = Fraction(4 + mm if e else mm, 4) * _pow2(max(e, 1) - 1)
        return ref.Value("num", sign, mag)
    return ref.Value("num", sign, Fraction(code & ((1 << (w - 1)) - 1)) * _pow2(-fmt.frac_bits))


def as_float(v: ref.Value) -> float:
    if v.kind == "nan":
        return math.nan
    mag = math.inf if v.kind == "inf" else float(v.mag)
    return -mag if v.sign else mag


def all_codes(fmt):
    return np.arange(1 << fmt.width)


def ref_values(fmt) -> np.ndarray:
    return np.array([as_float(ref_decode(fmt, c)) for c in range(1 << fmt.width)])


# ---- references: the rounding rule ------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def ref_grid(fmt, sign: int):
    """[(magnitude, code)] of one sign, ascending, one code per magnitude (the smallest); for a
    two's complement format the negative side includes 0 (code 0)."""
    best = {}
    for c in range(1 << fmt.width):
        v = ref_decode(fmt, c)
        if v.kind != "num":
            continue
        s = v.sign if v.mag != 0 or not (isinstance(fmt, GridFormat) and fmt.kind == "int") else sign
        if s == sign and (v.mag not in best or c < best[v.mag]):
            best[v.mag] = c
    return sorted(best.items())


def ref_round(fmt, x: Fraction, negative: bool, rounding: str, rand=None, rbits=None, scale=Fraction(1)) -> int:
    """The rounding rule of model/elements.py on the exact value ``x / scale`` (``x`` >= 0 the
    magnitude, ``negative`` its sign), written out with Fractions over the list of values."""
    if negative and isinstance(fmt, GridFormat) and fmt.kind == "uint":
        return 0  # unsigned integers: every negative value (and -0) goes to 0, its nearest value
    grid = ref_grid(fmt, int(negative))
    mags = [m for m, _ in grid]
    codes = [c for _, c in grid]
    q = x / scale
    if q >= mags[-1]:
        return codes[-1]
    if q < mags[0]:
        return codes[0]
    k = bisect.bisect_right(mags, q) - 1
    lo, hi = mags[k], mags[k + 1]
    t = (q - lo) / (hi - lo)
    if rounding == "nearest":
        up = t > Fraction(1, 2) or (t == Fraction(1, 2) and codes[k] % 2 == 1)
    elif rounding == "zero":
        up = False
    elif rounding == "up":
        up = t > 0
    else:
        up = math.floor(t * (1 << rbits)) + rand >= 1 << rbits
    return codes[k + up]


def float32_only(x):
    """The values of ``x`` that float32 holds exactly (libraries convert through float32)."""
    with np.errstate(over="ignore"):
        y = x.astype(np.float32).astype(np.float64)
    return y[np.isfinite(y)]


def stimulus(rng, fmt, n, scale=1.0):
    """float64 values for ``fmt`` (times ``scale``): its values, the midpoints between them, points
    just off the midpoints, random values from below the smallest to beyond the largest
    magnitude, values beyond the largest, zeros of both signs; both signs throughout."""
    v = np.unique(np.abs(ref_values(fmt)[np.isfinite(ref_values(fmt))]))
    mids = (v[:-1] + v[1:]) / 2
    near = np.concatenate([np.nextafter(mids, 0), np.nextafter(mids, np.inf)])
    lo, hi = np.log2(v[v > 0][0]) - 3, np.log2(v[-1]) + 2
    rnd = 2.0 ** rng.uniform(lo, hi, n)
    with np.errstate(over="ignore"):
        f32 = rnd.astype(np.float32).astype(np.float64)
    rnd = np.where(np.isfinite(f32), f32, rnd)  # libraries convert through float32
    beyond = v[-1] * np.array([1.25, 2.0, 3.5])  # always some: random ones may all fall in range
    x = np.concatenate([v, mids, near, rnd, beyond, [0.0]]) * scale
    return np.concatenate([x, -x])


# ---- the format table --------------------------------------------------------------------------------

# name, width, largest value, smallest non-zero magnitude, emax (floor log2 of the largest), code of
# 1.0 (None: not representable), NaN codes
ELEMENT_TABLE = [
    ("fp4_e2m1", 4, 6.0, 0.5, 2, 0x2, 0),
    ("fp6_e3m2", 6, 28.0, 0.0625, 4, 0x0C, 0),
    ("fp6_e2m3", 6, 7.5, 0.125, 2, 0x08, 0),
    ("fp4_e1m2", 4, 1.75, 0.25, 0, 0x4, 0),
    ("int4", 4, 7.0, 1.0, 2, 0x1, 0),
    ("uint4", 4, 15.0, 1.0, 3, 0x1, 0),
    ("fp4_r4", 4, 256.0, 1 / 16, 8, 0x3, 0),
    ("fp4_r4_odd", 4, 512.0, 1 / 8, 9, None, 0),
    ("fp8_e4m3", 8, 448.0, 2.0 ** -9, 8, 0x38, 2),
    ("fp8_e5m2", 8, 57344.0, 2.0 ** -16, 15, 0x3C, 6),
]


@pytest.mark.parametrize("name,width,vmax,vmin,emax,one,nans", ELEMENT_TABLE, ids=[r[0] for r in ELEMENT_TABLE])
def test_element_table(name, width, vmax, vmin, emax, one, nans):
    f = element_format(name)
    assert f is EF[name] and f.width == width
    v = f.decode(all_codes(f))
    assert np.nanmax(v[np.isfinite(v)]) == vmax == f.max_value
    assert np.min(np.abs(v[np.isfinite(v) & (v != 0)])) == vmin
    assert np.isnan(v).sum() == nans
    assert int(np.floor(np.log2(vmax))) == emax and (f.emax == emax)
    if one is None:
        assert not np.any(v == 1.0)
    else:
        assert v[one] == 1.0 and int(f.encode(1.0)) == one


def test_format_registries():
    assert list(EF) == [r[0] for r in ELEMENT_TABLE]
    assert set(SCALE_FORMATS) == {"e8m0", "fp8_e4m3"} and scale_format("e8m0") is E8M0
    # the new element formats are not operand presets of the generator: FORMATS is unchanged
    assert not {"fp4_e2m1", "fp6_e3m2", "fp6_e2m3", "fp4_e1m2", "int4", "uint4", "fp4_r4", "e8m0"} & set(FORMATS)
    assert E8M0.decode(127) == 1.0 and E8M0.max_value == 2.0 ** 127 and E8M0.min_value == 2.0 ** -127
    assert np.isnan(E8M0.decode(255)) and E8M0.emax == 127
    assert element_format("fp8_e4m3_b11") is FORMATS["fp8_e4m3_b11"]  # every 8-bit preset is an element
    for f in list(EF.values()) + [E8M0]:
        assert element_format(f.to_dict(), "x") == f if f is not E8M0 else scale_format(f.to_dict()) == f


CUSTOM_GRIDS = [
    GridFormat("radix4", 5, bias=0, phase=1),
    GridFormat("radix4", 3),
    GridFormat("int", 3, frac_bits=1),
    GridFormat("int", 8, frac_bits=-2),
    GridFormat("uint", 3, frac_bits=2),
    GridFormat("sign_magnitude", 6, frac_bits=-3),
]
ALL_FORMATS = list(EF.values()) + [E8M0] + CUSTOM_GRIDS


# ---- decode --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.label)
def test_decode_every_code_against_fraction_reference(fmt):
    assert_same_floats(fmt.decode(all_codes(fmt)), ref_values(fmt), fmt.label)
    if isinstance(fmt, GridFormat):  # unpack: the exact value, field by field
        u = fmt.unpack(all_codes(fmt))
        for c in range(1 << fmt.width):
            want = ref_decode(fmt, c)
            if want.kind == "nan":
                assert u.nan[c]
            else:
                assert not u.nan[c] and u.sign[c] == want.sign and Fraction(int(u.sig[c])) * _pow2(int(u.exp[c])) == want.mag


ML_DTYPES = [("fp4_e2m1", ml_dtypes.float4_e2m1fn), ("fp6_e2m3", ml_dtypes.float6_e2m3fn),
             ("fp6_e3m2", ml_dtypes.float6_e3m2fn), ("e8m0", ml_dtypes.float8_e8m0fnu), ("int4", ml_dtypes.int4),
             ("uint4", ml_dtypes.uint4)]


@pytest.mark.parametrize("name,dtype", ML_DTYPES, ids=[m[0] for m in ML_DTYPES])
def test_decode_every_code_against_ml_dtypes(name, dtype):
    fmt = E8M0 if name == "e8m0" else EF[name]
    codes = np.arange(1 << fmt.width, dtype=np.uint8)
    want = codes.view(dtype).astype(np.float64)
    assert_same_floats(fmt.decode(codes), want, name)
    assert_same_floats(ref_values(fmt), want, f"{name} (the test's reference)")


GFLOAT = [("fp4_e2m1", gf.format_info_ocp_e2m1), ("fp6_e2m3", gf.format_info_ocp_e2m3),
          ("fp6_e3m2", gf.format_info_ocp_e3m2), ("e8m0", gf.format_info_ocp_e8m0)]


@pytest.mark.parametrize("name,fi", GFLOAT, ids=[g[0] for g in GFLOAT])
def test_decode_every_code_against_gfloat(name, fi):
    fmt = E8M0 if name == "e8m0" else EF[name]
    codes = np.arange(1 << fmt.width)
    assert_same_floats(fmt.decode(codes), gfloat.decode_ndarray(fi, codes), name)
    assert fmt.max_value == fi.max


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.label)
def test_encode_decode_round_trip(fmt):
    codes = all_codes(fmt)
    v = fmt.decode(codes)
    keep = ~np.isnan(v)
    np.testing.assert_array_equal(fmt.encode(v[keep]), codes[keep])


# ---- encode: the rounding rule --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nearest", "zero", "stochastic"])
@pytest.mark.parametrize("fmt", [f for f in ALL_FORMATS if isinstance(f, GridFormat) or f.width < 8],
                         ids=lambda f: f.label)
def test_encode_against_fraction_reference(fmt, mode, rng):
    x = stimulus(rng, fmt, 600)
    if fmt is E8M0:
        x = x[x > 0]  # no zero, no sign (test_e8m0_specials)
    rbits = int(rng.choice([1, 3, 8, 16])) if mode == "stochastic" else None
    rand = rng.integers(0, 1 << rbits, x.shape) if rbits else None
    got = fmt.encode(x, mode, rand, rbits)
    want = [ref_round(fmt, abs(Fraction(float(v))), bool(np.signbit(v)), mode,
                      None if rand is None else int(rand[i]), rbits) for i, v in enumerate(x)]
    bad = np.flatnonzero(got != np.array(want))
    assert not bad.size, f"{fmt.label} {mode}: {bad.size} mismatches, e.g. x={x[bad[:3]]} got {got[bad[:3]]} want {np.array(want)[bad[:3]]}"
    vals = np.abs(fmt.decode(got))
    assert np.any(vals == fmt.max_value) and np.any(np.abs(x) > fmt.max_value)  # saturation reached
    if isinstance(fmt, GridFormat) and fmt.kind == "uint":
        assert np.all(got[np.signbit(x)] == 0) and np.signbit(x).sum() > 100


def test_encode_ties_go_to_the_even_code():
    r4, i4, e1m2 = EF["fp4_r4"], EF["int4"], EF["fp4_e1m2"]
    # radix-4: 2.5 is midway between 1 (code 3) and 4 (code 4); 10 between 4 and 16 (codes 4, 5)
    assert list(r4.encode([2.5, 10.0, 40.0, -2.5, 1 / 32])) == [4, 4, 6, 12, 0]
    assert list(i4.encode([0.5, 1.5, 2.5, -0.5, -1.5, -7.5])) == [0, 2, 2, 0, 14, 8]
    assert list(e1m2.encode([0.125, 0.375, 1.625, -0.125])) == [0, 2, 6, 8]
    assert list(E8M0.encode([1.5, 3.0, 6.0, 0.75])) == [128, 128, 130, 126]  # even exponent codes


def test_e8m0_specials():
    # no zero and no sign: zeros, negatives, infinities and NaN become NaN (as ml_dtypes does);
    # below the smallest value the smallest, above the largest the largest (saturation)
    got = E8M0.encode([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 2.0 ** -140, 2.0 ** 200])
    assert list(got) == [255, 255, 255, 255, 255, 255, 0, 254]


def test_encode_nan_into_a_format_without_nan():
    with pytest.raises(ValueError, match="values: NaN"):
        EF["int4"].encode([1.0, np.nan])


@pytest.mark.parametrize("name", ["fp4_e2m1", "fp6_e2m3", "fp6_e3m2", "e8m0"])
@pytest.mark.parametrize("mode", ["nearest", "zero", "stochastic"])
def test_encode_against_gfloat(name, mode, rng):
    # gfloat's StochasticFastest rounds up iff delta + R * 2**-r >= 1: our rule (test_model_formats)
    fmt = E8M0 if name == "e8m0" else EF[name]
    fi = dict(GFLOAT)[name]
    # float32 inputs: gfloat's stochastic rounding adds delta + R * 2**-r in float64, exact only for
    # short significands (0.49999999999999994 + 0.5 rounds to 1.0)
    x = float32_only(stimulus(rng, fmt, 3000))
    if fmt is E8M0:
        x = x[(x >= E8M0.min_value) & (x <= E8M0.max_value)]  # gfloat keeps precision below: not E8M0
    modes = {"nearest": gfloat.RoundMode.TiesToEven, "zero": gfloat.RoundMode.TowardZero,
             "stochastic": gfloat.RoundMode.StochasticFastest}
    rbits = int(rng.choice([1, 3, 8])) if mode == "stochastic" else None
    rand = rng.integers(0, 1 << rbits, x.shape) if rbits else None
    want = gfloat.round_ndarray(fi, x, modes[mode], sat=True, srbits=rand, srnumbits=rbits or 0)
    assert_same_floats(fmt.decode(fmt.encode(x, mode, rand, rbits)), want, f"{name} {mode}")


@pytest.mark.parametrize("name,dtype", ML_DTYPES[:3], ids=[m[0] for m in ML_DTYPES[:3]])
def test_encode_nearest_against_ml_dtypes(name, dtype, rng):
    fmt = EF[name]
    x = float32_only(stimulus(rng, fmt, 20_000))  # ml_dtypes converts through float32
    want = x.astype(np.float32).astype(dtype).astype(np.float64)
    assert_same_floats(fmt.decode(fmt.encode(x)), want, name)  # both saturate (no inf, no NaN)


def test_e8m0_against_ml_dtypes_rounds_ties_differently(rng):
    """ml_dtypes rounds float32 to E8M0 to nearest with ties always up (1.5 -> 2, 3 -> 4); here a
    tie goes to the even code, as gfloat's TiesToEven does (3 -> 2). Everything else agrees."""
    x = float32_only(stimulus(rng, E8M0, 20_000))
    # from 2**-126 on: ml_dtypes rounds float32 subnormals up (1.1 * 2**-127 -> 2**-126, not 2**-127)
    x = x[(x >= 2.0 ** -126) & (x <= E8M0.max_value)]
    got = E8M0.encode(x)
    want = x.astype(np.float32).astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)
    f, e = np.frexp(x)
    tie = f == 0.75  # 1.5 * 2**k: midway between 2**k and 2**(k+1)
    lower = e - 1 + 127
    assert tie.sum() > 100 and np.all(want[tie] == lower[tie] + 1) and np.all(got[tie] % 2 == 0)
    assert np.any(got[tie] != want[tie]) and np.any(got[tie] == want[tie])
    np.testing.assert_array_equal(got[~tie], want[~tie])


def test_int4_against_ml_dtypes_and_numpy(rng):
    i4 = EF["int4"]
    x = rng.uniform(-8.99, 7.99, 50_000).astype(np.float32).astype(np.float64)
    x = np.concatenate([x, np.arange(-8, 8) + 0.5, np.arange(-8, 8) - 0.5])
    x = x[(x > -9) & (x < 8)]
    trunc = x.astype(np.float32).astype(ml_dtypes.int4).astype(np.int64)  # a C cast: truncation
    np.testing.assert_array_equal(i4.decode(i4.encode(x, "zero")), trunc)
    np.testing.assert_array_equal(i4.decode(i4.encode(x)), np.clip(np.round(x), -8, 7))  # ties to even


def test_uint4_against_ml_dtypes_and_numpy(rng):
    u4 = EF["uint4"]
    x = rng.uniform(0, 15.99, 50_000).astype(np.float32).astype(np.float64)
    x = np.concatenate([x, np.arange(0, 16) + 0.5])
    trunc = x.astype(np.float32).astype(ml_dtypes.uint4).astype(np.int64)  # a C cast: truncation
    np.testing.assert_array_equal(u4.decode(u4.encode(x, "zero")), trunc)
    np.testing.assert_array_equal(u4.decode(u4.encode(x)), np.clip(np.round(x), 0, 15))  # ties to even
    assert list(u4.encode([-0.0, -3.0, -np.inf, np.inf, 0.49])) == [0, 0, 0, 15, 0]  # negatives: 0


# ---- round_to_format: the same rule as FloatFormat.encode, and with scales --------------------------------

EIGHT_BIT_FLOATS = [f for f in list(FORMATS.values()) + [EF["fp4_e2m1"], EF["fp6_e3m2"], EF["fp6_e2m3"]]
                    if f.width <= 8]


@pytest.mark.parametrize("mode", ["nearest", "zero", "stochastic"])
@pytest.mark.parametrize("fmt", EIGHT_BIT_FLOATS, ids=lambda f: f.label)
def test_round_to_format_is_floatformat_encode(fmt, mode, rng):
    """For FloatFormats (with subnormals) the generalized rule is ARCHITECTURE.md §2's: the same
    codes as FloatFormat.encode, except that it clamps where an 'ieee' format overflows to inf."""
    x = stimulus(rng, fmt, 20_000)
    rbits = int(rng.choice([1, 5, 8, 20])) if mode == "stochastic" else None
    rand = rng.integers(0, 1 << rbits, x.shape) if rbits else None
    got = round_to_format(fmt, x, 1.0, mode, rand, rbits)
    want = fmt.encode(x, mode, rand, rbits)
    inf = np.isinf(fmt.decode(want))
    assert np.all(fmt.decode(got[inf]) == np.sign(x[inf]) * fmt.max_value)
    assert inf.any() == (fmt.has_inf and mode != "zero")
    np.testing.assert_array_equal(got[~inf], want[~inf])


@pytest.mark.parametrize("name", ["fp4_e2m1", "int4", "fp4_r4", "fp4_e1m2", "fp8_e5m2"])
@pytest.mark.parametrize("mode", ["nearest", "stochastic", "up"])
def test_round_to_format_with_scales_against_fraction_reference(name, mode, rng):
    """``x / scale`` rounded exactly, for E4M3 scales (not powers of two) and E8M0 scales."""
    fmt = EF[name]
    e4m3_scales = E4M3.decode(rng.integers(1, 0x7F, 40))
    e8m0_scales = E8M0.decode(rng.integers(100, 160, 40))
    scale = np.concatenate([e4m3_scales, e8m0_scales])
    x = np.concatenate([stimulus(rng, fmt, 30, s)[::7] for s in scale])
    s = np.concatenate([np.full(len(stimulus(rng, fmt, 30, 1.0)[::7]), v) for v in scale])
    rbits = 6 if mode == "stochastic" else None
    rand = rng.integers(0, 64, x.shape) if rbits else None
    got = round_to_format(fmt, x, s, mode, rand, rbits)
    want = [ref_round(fmt, abs(Fraction(float(v))), bool(np.signbit(v)), mode,
                      None if rand is None else int(rand[i]), rbits, Fraction(float(s[i])))
            for i, v in enumerate(x)]
    np.testing.assert_array_equal(got, want)


def test_round_to_format_bad_arguments():
    with pytest.raises(ValueError, match="scale values must have at most 8 significant bits"):
        round_to_format(EF["fp4_e2m1"], [1.0], 1 / 3)
    with pytest.raises(ValueError, match="scale must hold finite positive"):
        round_to_format(EF["fp4_e2m1"], [1.0], 0.0)
    with pytest.raises(ValueError, match="rounding"):
        round_to_format(EF["fp4_e2m1"], [1.0], 1.0, "down")
    with pytest.raises(ValueError, match="8 bits or fewer"):
        round_to_format(FORMATS["fp16"], [1.0])
    with pytest.raises(ValueError, match="unsigned"):
        round_to_format(E8M0, [-1.0])


def test_two_phase_round(rng):
    """The even phase rounds to +-4**k, the odd phase to +-2 * 4**k (both by the one rule)."""
    x = np.concatenate([stimulus(rng, EF["fp4_r4_odd"], 2000), stimulus(rng, EF["fp4_r4"], 2000)])
    even, odd = two_phase_round(x)
    for fmt, got in ((EF["fp4_r4"], even), (EF["fp4_r4_odd"], odd)):
        want = [ref_round(fmt, abs(Fraction(float(v))), bool(np.signbit(v)), "nearest") for v in x]
        np.testing.assert_array_equal(got, want)
    ve, vo = EF["fp4_r4"].decode(even), EF["fp4_r4_odd"].decode(odd)
    assert set(np.log2(np.abs(ve[ve != 0])).astype(int) % 2) == {0}
    assert set(np.log2(np.abs(vo[vo != 0])).astype(int) % 2) == {1}
    # 3 lies between 2 (odd) and 4 (even): the phases round it in opposite directions
    assert (EF["fp4_r4"].decode(two_phase_round([3.0])[0]), EF["fp4_r4_odd"].decode(two_phase_round([3.0])[1])) == (4.0, 2.0)
    # bias 0: the even grid 4, 16, .., the odd grid 8, 32, ..: 6 rounds to 4 and to 8
    even0, odd0 = two_phase_round([6.0], bias=0)
    assert (GridFormat("radix4", 4, bias=0).decode(even0)[0], GridFormat("radix4", 4, bias=0, phase=1).decode(odd0)[0]) == (4.0, 8.0)


# ---- block quantization --------------------------------------------------------------------------------

def random_blocks(rng, n, B):
    """n blocks of B float64 values: magnitudes spread over ~2**+-40 between blocks, zeros, blocks of
    zeros, single large values, values near powers of two."""
    mag = 2.0 ** rng.uniform(-40, 40, (n, 1)) * 2.0 ** rng.uniform(-6, 0, (n, B))
    x = np.where(rng.random((n, B)) < 0.5, -mag, mag)
    x[rng.random((n, B)) < 0.1] = 0.0
    x[: n // 20] = 0.0
    x[n // 20: n // 10, 0] *= 1e6
    p2 = 2.0 ** rng.integers(-20, 20, (n // 10, 1))
    x[n // 10: n // 5] = p2 * np.where(rng.random((n // 10, B)) < 0.5, 1.0, np.nextafter(1.0, 0))
    return x


@pytest.mark.parametrize("name", ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4"])
def test_mx_quantization_against_gfloat(name, rng):
    """Scales against gfloat's compute_scale_amax (floor(log2(amax)) - emax, clipped to +-127,
    2**-127 for an all-zero block) and the dequantized blocks against gfloat's quantize_block
    (round to nearest even, saturating)."""
    fmt = BLOCK_FORMATS[name]
    fi = {"mxfp8_e4m3": gf.format_info_mxfp8_e4m3, "mxfp8_e5m2": gf.format_info_mxfp8_e5m2,
          "mxfp6_e3m2": gf.format_info_mxfp6_e3m2, "mxfp6_e2m3": gf.format_info_mxfp6_e2m3,
          "mxfp4": gf.format_info_mxfp4_e2m1}[name]
    x = random_blocks(rng, 300, 32)
    x[-1] = 2.0 ** -140  # a scale clipped at 2**-127
    codes, scales = quantize_blocks(x, fmt)
    assert codes.shape == x.shape and scales.shape == (300, 1)
    got = dequantize_blocks(codes, scales, fmt)
    for i in range(len(x)):
        assert E8M0.decode(scales[i, 0]) == gfloat.compute_scale_amax(fi.etype.emax, x[i]), i
        want = gfloat.quantize_block(fi, x[i], gfloat.compute_scale_amax)
        assert_same_floats(got[i], want, f"{name} block {i}")
    assert np.any(np.abs(got) == E8M0.decode(scales) * fmt.element.max_value)  # elements reach their largest


@functools.lru_cache(maxsize=None)
def e4m3_scale_values():
    return sorted((ref_decode(E4M3, c).mag, c) for c in range(0x7F))  # 0 .. 448, non-negative codes


def nvfp4_scale_reference(amax: float, rounding: str) -> int:
    """The E4M3 code of amax / 6 rounded up or to nearest (ties to the even code), clamped to 448."""
    vals = e4m3_scale_values()
    q = Fraction(amax) / 6
    if q >= vals[-1][0]:
        return vals[-1][1]
    k = max(i for i, (v, _) in enumerate(vals) if v <= q)
    (lo, clo), (hi, chi) = vals[k], vals[k + 1]
    if q == lo:
        return clo
    if rounding == "up":
        return chi
    t = (q - lo) / (hi - lo)
    return chi if t > Fraction(1, 2) or (t == Fraction(1, 2) and clo % 2) else clo


@pytest.mark.parametrize("scale_rounding", ["up", "nearest"])
def test_nvfp4_scales_against_fraction_reference(scale_rounding, rng):
    amax = np.concatenate([6.0 * 2.0 ** rng.uniform(-12, 10, 3000), [0.0, 6.0 * 2.0 ** -9, 6 * 448.0, 1e9],
                           6.0 * E4M3.decode(rng.integers(1, 0x7F, 200)),
                           6.0 * (E4M3.decode(np.arange(8, 0x7E)) + E4M3.decode(np.arange(9, 0x7F))) / 2])
    got = nvfp4_scale_codes(amax, rounding=scale_rounding)
    want = [nvfp4_scale_reference(float(a), scale_rounding) for a in amax]
    np.testing.assert_array_equal(got, want)
    assert list(nvfp4_scale_codes([np.nan, np.inf])) == [0x7F, 0x7F]
    if scale_rounding == "up":  # no element exceeds E2M1's range
        assert np.all(E4M3.decode(got[amax <= 6 * 448]) * 6 >= amax[amax <= 6 * 448])


@pytest.mark.parametrize("gain", [1.0, 0.75])
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("name", ["nvfp4", "mxfp4"])
def test_block_quantization_elements_against_fraction_reference(name, rounding, gain, rng):
    """Each element is gain * x / scale rounded exactly (an E4M3 scale is not a power of two: the
    quotient is never rounded first), by the rounding rule, the scale chosen from x alone;
    stochastic bits from the caller. With gain 3/4 (Tseng et al.'s MXFP4 gradients) no MX element
    reaches E2M1's clamp."""
    fmt = BLOCK_FORMATS[name]
    B = fmt.block
    x = random_blocks(rng, 60, 2 * B).reshape(120, B)
    x = x.T  # blocks along axis 0 (B's layout): 120 columns of one block each
    rbits = 8 if rounding == "stochastic" else None
    rand = rng.integers(0, 256, x.shape) if rbits else None
    codes, scales = quantize_blocks(x, fmt, axis=0, rounding=rounding, rand=rand, rbits=rbits, gain=gain)
    if gain == 1.0:
        assert np.array_equal(scales, quantize_blocks(x, fmt, axis=0)[1])
    else:
        assert np.array_equal(scales, quantize_blocks(x, fmt, axis=0, gain=1.0)[1])  # from x, not 3x/4
    if gain != 1.0 and name == "mxfp4":  # (NVFP4's scales clamp at 448 on some of these blocks)
        sv = fmt.scale.decode(scales[0])
        ok = sv > 0
        assert np.all(np.abs(x[:, ok]) * 0.75 / sv[ok] <= 6.0)
    assert codes.shape == x.shape and scales.shape == (1, 120)
    for j in range(120):
        s = ref_decode(fmt.scale, int(scales[0, j]))
        if s.mag == 0:  # an all-zero block
            assert not np.any(x[:, j]) and not np.any(E2M1_values(codes[:, j]))
            continue
        for i in range(B):
            v = x[i, j]
            want = ref_round(fmt.element, abs(Fraction(float(v))) * Fraction(gain), bool(np.signbit(v)), rounding,
                             None if rand is None else int(rand[i, j]), rbits, s.mag)
            assert codes[i, j] == want, (i, j, v, s)
    if name == "nvfp4":
        amax = np.abs(x).max(axis=0)
        np.testing.assert_array_equal(scales[0], [nvfp4_scale_reference(float(a), "up") for a in amax])


def E2M1_values(codes):
    return EF["fp4_e2m1"].decode(codes)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_tile_quantization_against_fraction_reference(rounding, rng):
    """NVFP4's 2-D weight scaling: one E4M3 scale per 16 x 16 tile (amax / 6 rounded up), each
    element rounded exactly by the tile's scale; edge tiles completed with zeros; the transpose
    gives the transposed codes and scales (W and W^T are one set of codes)."""
    x = random_blocks(rng, 40, 24)  # 3 x 2 tiles, the last row and column of tiles partial
    x[:16, :16] = 0.0  # an all-zero tile: scale 0, elements rounded unscaled (zeros)
    rbits = 8 if rounding == "stochastic" else None
    rand = rng.integers(0, 256, x.shape) if rbits else None
    codes, ts = quantize_tiles(x, "nvfp4", rounding, rand, rbits)
    assert codes.shape == x.shape and ts.shape == (3, 2)
    for ti in range(3):
        for tj in range(2):
            tile = x[16 * ti:16 * ti + 16, 16 * tj:16 * tj + 16]
            assert ts[ti, tj] == nvfp4_scale_reference(float(np.abs(tile).max()), "up")
    sv = E4M3.decode(ts)
    for i in range(40):
        for j in range(24):
            s = Fraction(float(sv[i // 16, j // 16])) or Fraction(1)
            want = ref_round(EF["fp4_e2m1"], abs(Fraction(float(x[i, j]))), bool(np.signbit(x[i, j])), rounding,
                             None if rand is None else int(rand[i, j]), rbits, s)
            assert codes[i, j] == want, (i, j)
    ct, tst = quantize_tiles(x.T, "nvfp4", rounding, None if rand is None else rand.T, rbits)
    assert np.array_equal(ct, codes.T) and np.array_equal(tst, ts.T)
    with pytest.raises(ValueError, match="tiles need a scale"):
        quantize_tiles(x, BlockFormat("int4", 16, None))


def test_tile_scales_serve_both_orientations(rng):
    """A tiled W as the B operand of X W (K = W's rows) and its transpose as the B operand of
    dY W^T (K = W's columns): block_gemm with tile_block_scales computes the exact products of
    the dequantized operands (checked against Fractions; an fp32 accumulator rounds these sums
    exactly: every product is a multiple of 2**-30 below 2**12)."""
    w = rng.standard_normal((40, 24))
    wc, ts = quantize_tiles(w, "nvfp4")
    wv = E2M1_values(wc) * np.repeat(np.repeat(E4M3.decode(ts), 16, 0), 16, 1)[:40, :24]
    cfg = BlockConfig(MacConfig(rows=2, cols=2, acc_format="fp32", chunk=None), "nvfp4")
    for a, b, bs in (((5, 40), wc, tile_block_scales(ts, 16, 24, 0)),
                     ((5, 24), wc.T, tile_block_scales(ts, 16, 40, 1))):
        x = rng.standard_normal(a)
        xc, xs = quantize_blocks(x, "nvfp4", axis=-1)
        got = FORMATS["fp32"].decode(block_gemm(xc, xs, b, bs, cfg))
        xv = dequantize_blocks(xc, xs, "nvfp4")
        wb = wv if b is wc else wv.T
        exact = [[sum(Fraction(float(xv[i, k])) * Fraction(float(wb[k, j])) for k in range(a[1]))
                  for j in range(wb.shape[1])] for i in range(a[0])]
        np.testing.assert_array_equal(got, np.array(exact, dtype=np.float64))


def test_quantization_of_ragged_axes_and_specials(rng):
    x = rng.standard_normal((3, 40))
    x[1, 35] = np.nan
    x[2, 3] = -np.inf
    codes, scales = quantize_blocks(x, "mxfp4")
    assert scales.shape == (3, 2) and codes.shape == (3, 40)
    assert list(scales[:, 0]) != [255] * 3 and scales[1, 1] == 255 and scales[2, 0] == 255 and scales[1, 0] != 255
    y = dequantize_blocks(codes, scales, "mxfp4")
    assert np.all(np.isnan(y[1, 32:])) and np.all(np.isnan(y[2, :32])) and not np.isnan(y[0]).any()
    codes16, s16 = quantize_blocks(x, "nvfp4")
    assert s16.shape == (3, 3) and s16[1, 2] == 0x7F and s16[2, 0] == 0x7F
    # the padded tail does not change the last block's scale: the same block alone
    c2, s2 = quantize_blocks(x[0, 32:], "mxfp4")
    assert s2[0] == scales[0, 1] and np.array_equal(c2, codes[0, 32:])


def test_unscaled_blocks_are_plain_rounding(rng):
    fmt = BlockFormat("int4", 16, None)
    x = rng.uniform(-10, 10, (5, 20))
    codes, scales = quantize_blocks(x, fmt)
    assert scales is None
    np.testing.assert_array_equal(codes, EF["int4"].encode(x))
    np.testing.assert_array_equal(dequantize_blocks(codes, None, fmt), EF["int4"].decode(codes))


# ---- the block dot product -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def ref_product(fa, fb, x: int, y: int) -> ref.Value:
    return ref.mul(ref_decode(fa, x), ref_decode(fb, y))


def ref_block_dot(facc, fa, fb, acc, a, sa, b, sb, rounding="nearest", rand=None, rbits=None) -> int:
    """round(acc + (sa * sb) * sum(a_i * b_i)), the sum first, with Fractions."""
    prods = [ref_product(fa.element, fb.element, int(x), int(y)) for x, y in zip(a, b)]
    total = ref.sum_values(prods)
    one = ref.Value("num", 0, Fraction(1))
    s = ref.mul(ref_decode(fa.scale, sa) if fa.scale is not None else one,
                ref_decode(fb.scale, sb) if fb.scale is not None else one)
    exact = ref.sum_values([ref.decode(facc, acc), ref.mul(s, total)])
    return ref.round_value(facc, exact, rounding, rand, rbits)


PAIR_CASES = {  # 4-bit element pairs, every pair of codes
    "mxfp4": ("mxfp4", "mxfp4", [(127, 127), (110, 140), (0, 254), (255, 127)]),
    "nvfp4": ("nvfp4", "nvfp4", [(0x38, 0x38), (0x01, 0x7E), (0x00, 0x45), (0x7F, 0x38)]),
    "e1m2": (BlockFormat("fp4_e1m2", 32), BlockFormat("fp4_e1m2", 32), [(127, 127), (120, 131)]),
    "int4": (BlockFormat("int4", 16, None), BlockFormat("int4", 16, None), [(None, None)]),
    "r4xint4": (BlockFormat("fp4_r4", 32, None), BlockFormat("int4", 32, None), [(None, None)]),
    "int4xr4odd": (BlockFormat("int4", 32, "e8m0"), BlockFormat("fp4_r4_odd", 32, "e8m0"), [(127, 127), (100, 150)]),
}
ACCS = [0x0000, 0x8000, 0x3E00, 0xC060, 0x5A00, 0x0013, 0x7E00, 0x7F00]  # +0 -0 1 -x big tiny +inf NaN


@pytest.mark.parametrize("case", list(PAIR_CASES))
def test_block_dot_every_element_pair(case, rng):
    """Every code pair of two 4-bit element formats as one product of a block (the others +0 or -0
    products), for several accumulators (signed zeros, infinities, NaN) and scale pairs (extremes,
    zero, NaN), rounded to nearest into fp16_ibm, against the Fraction reference."""
    a_fmt, b_fmt, scale_pairs = PAIR_CASES[case]
    fa, fb = block_format(a_fmt), block_format(b_fmt)
    B = fa.block
    pa, pb = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    pa, pb = pa.ravel(), pb.ravel()
    rows = []
    for n_acc, acc in enumerate(ACCS):
        for n_scale, (sa, sb) in enumerate(scale_pairs):
            for neg_zero in ((False, True) if len(scale_pairs) == 1 else ((n_acc + n_scale) % 2 == 1,)):
                a = np.zeros((256, B), np.int64)
                b = np.zeros((256, B), np.int64)
                if neg_zero:  # the other products -0: -0 elements where the format has them
                    a[:] = int(fa.element.encode(-0.0))
                    b[:] = int(fb.element.encode(0.0))
                pos = rng.integers(0, B, 256)
                a[np.arange(256), pos] = pa
                b[np.arange(256), pos] = pb
                rows.append((acc, sa, sb, a, b))
    acc = np.concatenate([np.full(256, r[0]) for r in rows])
    sa = None if fa.scale is None else np.concatenate([np.full(256, r[1]) for r in rows])
    sb = None if fb.scale is None else np.concatenate([np.full(256, r[2]) for r in rows])
    a = np.concatenate([r[3] for r in rows])
    b = np.concatenate([r[4] for r in rows])
    got = block_dot(F16I, fa, acc, a, sa, b, sb, b_block=fb)
    want = [ref_block_dot(F16I, fa, fb, int(acc[i]), a[i], None if sa is None else int(sa[i]), b[i],
                          None if sb is None else int(sb[i])) for i in range(len(acc))]
    bad = np.flatnonzero(got != np.array(want))
    assert not bad.size, f"{case}: {bad.size} mismatches, e.g. row {bad[0]}: got {got[bad[0]]:#x} want {want[bad[0]]:#x}"
    assert len(set(want)) > 100 and F16I.nan_code in want


RANDOM_CASES = [  # (a, b, blocks, accumulator, specials fraction)
    ("mxfp4", "mxfp4", 25_000, F16I, 0.0),
    ("nvfp4", "nvfp4", 20_000, F16I, 0.0),
    ("mxfp8_e4m3", "mxfp8_e4m3", 12_000, F16I, 0.002),
    ("mxfp8_e5m2", "mxfp8_e4m3", 12_000, F16I, 0.002),
    ("mxfp6_e3m2", "mxfp6_e2m3", 12_000, FORMATS["fp32"], 0.0),
    (BlockFormat("int4", 32, None), BlockFormat("fp4_r4", 32, None), 10_000, FORMATS["fp16"], 0.0),
    (BlockFormat("fp4_e1m2", 16, "fp8_e4m3"), "nvfp4", 10_000, F16I, 0.0),
]


def _exact_ints(fmt):
    """Each code's value as an integer times ``2**-D`` (one D for the format), and per code: special
    (NaN or inf), zero, sign: the reference's vectorized form of the element values."""
    vals = [ref_decode(fmt, c) for c in range(1 << fmt.width)]
    D = max([v.mag.denominator.bit_length() - 1 for v in vals if v.kind == "num"] + [0])
    ints = np.array([(-1 if v.sign else 1) * int(v.mag * 2 ** D) if v.kind == "num" else 0 for v in vals],
                    dtype=object)
    special = np.array([v.kind != "num" for v in vals])
    zero = np.array([v.kind == "num" and v.mag == 0 for v in vals])
    sign = np.array([v.sign == 1 for v in vals])
    return ints, D, special, zero, sign


@pytest.mark.parametrize("case", range(len(RANDOM_CASES)))
def test_block_dot_random_blocks(case, rng):
    """>= 10**5 random blocks in all (every case, both roundings) against the Fraction reference:
    the element sums in exact integers (Python ints, vectorized), each block's scaling, addition
    and rounding with Fractions (fraction_ref.round_value)."""
    a_fmt, b_fmt, n, facc, specials = RANDOM_CASES[case]
    fa, fb = block_format(a_fmt), block_format(b_fmt)
    B = fa.block
    a = rng.integers(0, 1 << fa.element.width, (n, B))
    b = rng.integers(0, 1 << fb.element.width, (n, B))
    for x, f in ((a, fa), (b, fb)):  # specials (E5M2 inf / NaN, E4M3 NaN) only at the given rate
        v = f.element.decode(x)
        bad = ~np.isfinite(v)
        x[bad & (rng.random(x.shape) >= specials * 50)] = 0
    sa = None if fa.scale is None else scale_codes(rng, fa.scale, n)
    sb = None if fb.scale is None else scale_codes(rng, fb.scale, n)
    acc = F_acc_codes(rng, facc, n)
    rounding = "nearest" if case % 2 == 0 else "stochastic"
    rbits = 10 if rounding == "stochastic" else None
    rand = rng.integers(0, 1 << 10, n) if rbits else None
    got = block_dot(facc, fa, acc, a, sa, b, sb, rounding, rand, rbits, b_block=fb)

    ia, Da, spa, za, sga = _exact_ints(fa.element)
    ib, Db, spb, zb, sgb = _exact_ints(fb.element)
    sums = (ia[a] * ib[b]).sum(axis=1)  # exact Python ints: the sum times 2**(Da + Db)
    special = (spa[a] | spb[b]).any(axis=1)
    all_negzero = ((za[a] | zb[b]) & (sga[a] ^ sgb[b])).all(axis=1)  # every product -0
    one = ref.Value("num", 0, Fraction(1))
    mismatches = []
    for i in range(n):
        r = None if rand is None else int(rand[i])
        if special[i]:
            want = ref_block_dot(facc, fa, fb, int(acc[i]), a[i], None if sa is None else int(sa[i]), b[i],
                                 None if sb is None else int(sb[i]), rounding, r, rbits)
        else:
            s_int = int(sums[i])
            total = ref.Value("num", int(s_int < 0 or (s_int == 0 and all_negzero[i])), Fraction(abs(s_int), 1 << (Da + Db)))
            s = ref.mul(ref_decode(fa.scale, int(sa[i])) if sa is not None else one,
                        ref_decode(fb.scale, int(sb[i])) if sb is not None else one)
            exact = ref.sum_values([ref.decode(facc, int(acc[i])), ref.mul(s, total)])
            want = ref.round_value(facc, exact, rounding, r, rbits)
        if got[i] != want:
            mismatches.append((i, int(got[i]), want))
    assert not mismatches, f"{len(mismatches)} of {n} blocks differ, e.g. (block, got, want) {mismatches[:3]}"
    assert special.any() == (specials > 0)


def scale_codes(rng, fmt, n):
    """Scale codes: mostly near 1 (so that block values and accumulators meet), 2 % anything
    (E8M0: 2**-127 .. 2**127 and NaN; E4M3: zero, subnormals, 448 and NaN)."""
    c = 127 + rng.integers(-6, 7, n) if fmt is E8M0 else rng.integers(0x28, 0x48, n)
    ext = rng.random(n) < 0.02
    c[ext] = rng.integers(0, 256 if fmt is E8M0 else 0x80, ext.sum())
    return c


def F_acc_codes(rng, facc, n):
    """Accumulator codes of moderate magnitude (exponent within +-6 of 1.0), random signs, some
    zeros and extremes."""
    ef = facc.bias + rng.integers(-6, 7, n)
    c = (rng.integers(0, 2, n) << (facc.width - 1)) | (ef << facc.man_bits) | rng.integers(0, 1 << facc.man_bits, n)
    ext = rng.random(n) < 0.03
    c[ext] = rng.integers(0, 1 << facc.width, ext.sum())
    return c


def test_zero_scale_keeps_the_element_sum_sign():
    """With an E4M3 zero scale the block's value is a zero carrying the element sum's sign
    ("sum, then scale"): -0 + (+0 * (-3 + 1)) = -0, where scaling each product first would give
    -0 + (-0) + (+0) = +0."""
    fmt = BLOCK_FORMATS["nvfp4"]
    e2m1 = EF["fp4_e2m1"]
    a = np.zeros(16, np.int64)
    b = np.zeros(16, np.int64)
    a[:2] = e2m1.encode([-3.0, 1.0])
    b[:2] = e2m1.encode([1.0, 1.0])
    got = block_dot(F16I, fmt, 0x8000, a, 0x00, b, 0x38)
    assert got == 0x8000 == ref_block_dot(F16I, fmt, fmt, 0x8000, a, 0x00, b, 0x38)
    a[:2] = e2m1.encode([3.0, -1.0])  # element sum +2: the block is +0, the sum +0
    assert block_dot(F16I, fmt, 0x8000, a, 0x00, b, 0x38) == 0x0000


# ---- block_gemm ------------------------------------------------------------------------------------------

def reference_block_gemm(a, sa, b, sb, cfg: BlockConfig, draws_per_element=False):
    """The module docstring's schedule, literally (``draws_per_element``: a deliberately wrong
    variant, an inner draw per element, to show that the comparison can tell)."""
    mac, fa, fb = cfg.mac, cfg.a, cfg.b
    facc, rb, B = mac.acc_format, mac.rbits, cfg.block
    (M, K), N = a.shape, b.shape[1]
    R, C = mac.rows, mac.cols
    Kb = -(-K // B)
    Kp = Kb * B
    inner_sr = mac.inner_rounding == "stochastic"
    outer_sr = mac.chunk is not None and mac.outer_rounding == "stochastic"
    lfsr = {(r, c, s): BitSerialLfsr(reference_stream_seed(mac.seed, r, c, s, mac.lfsr_width), mac.lfsr_width)
            for r in range(R) for c in range(C) for s in (0, 1)}
    chunk = Kp if mac.chunk is None else mac.chunk
    nch = -(-Kp // chunk)
    tm, tn = -(-M // R), -(-N // C)
    row_draws = None
    if mac.outer_placement == "row" and outer_sr:
        row_draws = []
        for r in range(R):
            src = BitSerialLfsr(reference_stream_seed(mac.seed, r, 0, 2, mac.lfsr_width), mac.lfsr_width)
            row_draws.append([src.draw(rb) for _ in range(tm * tn * nch * C)])
    one_a, one_b = fa.scale_one(), fb.scale_one()
    out = np.zeros((M, N), np.int64)
    for tr in range(tm):
        for tc in range(tn):
            t = tr * tn + tc
            for r in range(R):
                for c in range(C):
                    i, j = tr * R + r, tc * C + c
                    pad = i >= M or j >= N
                    arow = ([int(x) for x in a[i]] if i < M else [0] * K) + [0] * (Kp - K)
                    bcol = ([int(x) for x in b[:, j]] if j < N else [0] * K) + [0] * (Kp - K)
                    outer = 0
                    for c0 in range(0, Kp, chunk):
                        inner = 0
                        for k in range(c0, min(c0 + chunk, Kp), B):
                            rand = None
                            if inner_sr:
                                rand = [lfsr[r, c, 0].draw(rb) for _ in range(B if draws_per_element else 1)][-1]
                            s_a = one_a if sa is None or i >= M else int(sa[i, k // B])
                            s_b = one_b if sb is None or j >= N else int(sb[k // B, j])
                            inner = ref_block_dot(facc, fa, fb, inner, arow[k:k + B], s_a, bcol[k:k + B], s_b,
                                                  mac.inner_rounding, rand, rb)
                        if mac.chunk is None:
                            outer = inner
                        else:
                            if row_draws is not None:
                                rand = row_draws[r][(t * nch + c0 // chunk) * C + c]
                            else:
                                rand = lfsr[r, c, 1].draw(rb) if outer_sr else None
                            exact = ref.add(ref.decode(facc, outer), ref.decode(facc, inner))
                            outer = ref.round_value(facc, exact, mac.outer_rounding, rand, rb)
                    if not pad:
                        out[i, j] = outer
    return out


def gemm_operands(rng, cfg: BlockConfig, M, K, N):
    B = cfg.block
    Kb = -(-K // B)
    x = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-8, 8, (M, 1))
    y = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-8, 8, (1, N))
    a, sa = quantize_blocks(x, cfg.a, axis=1)
    b, sb = quantize_blocks(y, cfg.b, axis=0)
    assert (sa is None or sa.shape == (M, Kb)) and (sb is None or sb.shape == (Kb, N))
    return a, sa, b, sb


GEMM_CASES = [
    dict(a="nvfp4", rows=2, cols=2, chunk=32, inner="stochastic", outer="stochastic", adder="pe", K=50),
    dict(a="mxfp4", rows=3, cols=1, chunk=64, inner="nearest", outer="stochastic", adder="row", K=97),
    dict(a="mxfp8_e4m3", b="mxfp4", rows=2, cols=3, chunk=None, inner="stochastic", outer="nearest", adder="pe", K=33),
    dict(a=BlockFormat("fp4_r4", 16, None), b=BlockFormat("int4", 16, None), rows=2, cols=2, chunk=32,
         inner="stochastic", outer="stochastic", adder="row", K=40),
    dict(a="mxfp6_e2m3", rows=1, cols=2, chunk=32, inner="nearest", outer="nearest", adder="pe", K=5),
]


@pytest.mark.parametrize("case", range(len(GEMM_CASES)))
def test_block_gemm_against_reference_schedule(case, seed, rng):
    p = GEMM_CASES[case]
    mac = MacConfig(rows=p["rows"], cols=p["cols"], chunk=p["chunk"], inner_rounding=p["inner"],
                    outer_rounding=p["outer"], outer_adder=p["adder"], rbits=6, lfsr_width=16,
                    seed=seed % (1 << 64), acc_format="fp16_ibm", pe="two-adder")
    if p["adder"] == "row" and mac.outer_placement != "row":
        pytest.fail("the case meant to use the row outer adder does not")
    cfg = BlockConfig(mac, p["a"], p.get("b"))
    M, N, K = 5, 3, p["K"]
    a, sa, b, sb = gemm_operands(rng, cfg, M, K, N)
    got = block_gemm(a, sa, b, sb, cfg)
    want = reference_block_gemm(a, sa, b, sb, cfg)
    np.testing.assert_array_equal(got, want)
    if p["inner"] == "stochastic" and case == 0:  # the comparison sees the draw schedule
        assert not np.array_equal(got, reference_block_gemm(a, sa, b, sb, cfg, draws_per_element=True))


def moderate_codes(rng, fmt, shape, specials=0.0):
    """Codes of zero or magnitude 2**-6 .. 2**6, uniformly; a fraction ``specials`` of uniform codes
    (extremes, infinities, NaN)."""
    v = fmt.decode(all_codes(fmt))
    with np.errstate(invalid="ignore"):
        ok = np.flatnonzero((v == 0) | ((np.abs(v) >= 2.0 ** -6) & (np.abs(v) <= 64)))
    c = rng.choice(ok, shape)
    wild = rng.random(shape) < specials
    c[wild] = rng.integers(0, 1 << fmt.width, wild.sum())
    return c


@pytest.mark.parametrize("element,block", [("fp4_e2m1", 32), ("fp6_e3m2", 16), ("fp8_e5m2", 32)])
def test_block_gemm_with_unit_scales_is_mac_gemm(element, block, seed, rng):
    """With every scale 1 a block step is mac_gemm's d-term step with d = B (model against model:
    the LFSR draws, tiling and chunking of the two agree)."""
    fe = EF[element]
    mac = MacConfig(rows=3, cols=2, chunk=2 * block, dot=block, in_format=fe, acc_format="fp16_ibm",
                    inner_rounding="stochastic", outer_rounding="stochastic", seed=seed % (1 << 64))
    cfg = BlockConfig(mac, BlockFormat(element, block, "e8m0"), BlockFormat("fp8_e4m3", block, "fp8_e4m3"))
    M, K, N = 7, 3 * block + 5, 5
    a = moderate_codes(rng, fe, (M, K), specials=0.02)
    b = moderate_codes(rng, E4M3, (K, N), specials=0.02)
    Kb = -(-K // block)
    got = block_gemm(a, np.full((M, Kb), 127), b, np.full((Kb, N), 0x38), cfg)
    want = mac_gemm(a, b, mac.replace(a_format=fe, b_format=E4M3, in_format=fe), kernel="int")
    np.testing.assert_array_equal(got, want)
    # the scales are read: another one changes the results
    got2 = block_gemm(a, np.full((M, Kb), 128), b, np.full((Kb, N), 0x38), cfg)
    assert not np.array_equal(got, got2)


def test_block_config_round_trip():
    mac = MacConfig(rows=2, cols=2, chunk=64, acc_format="fp16_ibm")
    for a, b in (("mxfp4", None), ("nvfp4", BlockFormat("fp4_e1m2", 16, "e8m0")),
                 (BlockFormat("fp4_r4", 32, None), BlockFormat("int4", 32, None))):
        cfg = BlockConfig(mac, a, b)
        assert BlockConfig.from_dict(cfg.to_dict()) == cfg
        assert BlockConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert BlockConfig(mac, "mxfp4").to_dict()["a"]["element"] == "fp4_e2m1"


# ---- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(element="fp4_e2m1", block=8), "block must be one of 16, 32"),
    (dict(element="fp4_e2m1", block=64), "block"),
    (dict(element="fp4_e2m1", block=0), "block"),
    (dict(element="fp4_e2m1", block="32"), "block"),
    (dict(element="fp4_e2m1", block=True), "block"),
    (dict(element="fp4_e2m1", block=16.0), "block"),
    (dict(element="fp4_e2m1", scale="fp16"), "scale: unknown scale format"),
    (dict(element="fp4_e2m1", scale="fp8_e5m2"), "scale"),
    (dict(element="fp4_e2m1", scale=FORMATS["bf16"]), "scale"),
    (dict(element="fp4_e2m1", scale="e8m1"), "scale"),
    (dict(element="fp16"), "element: element formats have 8 bits or fewer"),
    (dict(element="bf16"), "element"),
    (dict(element="e8m0"), "element: unknown element format"),
    (dict(element=E8M0), "element: .*scale format"),
    (dict(element="fp3"), "element: unknown element format"),
    (dict(element={"kind": "radix4", "width": 9}), "element: width"),
    (dict(element={"exp_bits": 9, "man_bits": 2}), "element: exp_bits"),
])
def test_bad_block_formats(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockFormat(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kind="float", width=4), "kind"),
    (dict(kind="int", width=9), "width"),
    (dict(kind="int", width=1), "width"),
    (dict(kind="radix4", width=2), "width"),
    (dict(kind="e8m0", width=4), "width"),
    (dict(kind="int", width=4, frac_bits=40), "frac_bits"),
    (dict(kind="radix4", width=4, frac_bits=1), "frac_bits"),
    (dict(kind="int", width=4, bias=1), "bias"),
    (dict(kind="radix4", width=4, bias=8), "bias"),
    (dict(kind="radix4", width=4, phase=2), "phase"),
    (dict(kind="int", width=4, phase=1), "phase"),
    (dict(kind="e8m0", width=8, bias=100), "bias"),
])
def test_bad_grid_formats(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GridFormat(**kwargs)


def test_bad_block_configs():
    mac = MacConfig(chunk=64, acc_format="fp16_ibm")
    with pytest.raises(ValueError, match="b: the two streams' block sizes"):
        BlockConfig(mac, "mxfp4", "nvfp4")
    with pytest.raises(ValueError, match="chunk must be a multiple of the block size"):
        BlockConfig(mac.replace(chunk=48), "mxfp4")
    with pytest.raises(ValueError, match=r"dot \(64\) must divide"):
        BlockConfig(mac.replace(dot=64), "mxfp4")
    with pytest.raises(ValueError, match="a.scale e8m0 has one"):
        no_nan = FloatFormat(5, 10, 15, "none", name="fp16_none")
        BlockConfig(MacConfig(chunk=64, acc_format=no_nan, in_format=FloatFormat(4, 3, 7, "none")), "mxfp4")
    with pytest.raises(ValueError, match="a.element fp8_e5m2"):
        BlockConfig(MacConfig(chunk=64, acc_format=FloatFormat(5, 10, 15, "fn"), in_format="fp8_e4m3"), "mxfp8_e5m2")
    with pytest.raises(ValueError, match="mac: run-time format sets"):
        BlockConfig(mac.replace(a_formats="fp8_e4m3,fp8_e5m2", in_format="fp8_e4m3"), "mxfp4")
    with pytest.raises(ValueError, match="mac must be a MacConfig"):
        BlockConfig("mac", "mxfp4")
    with pytest.raises(ValueError, match="a: unknown block format"):
        BlockConfig(mac, "mxfp5")
    with pytest.raises(ValueError, match="unknown block config field"):
        BlockConfig.from_dict({"mac": mac.to_dict(), "c": "mxfp4"})


def test_bad_gemm_and_dot_operands():
    cfg = BlockConfig(MacConfig(rows=2, cols=2, chunk=64, acc_format="fp16_ibm"), "nvfp4")
    a = np.zeros((3, 20), np.int64)
    b = np.zeros((20, 2), np.int64)
    sa, sb = np.full((3, 2), 0x38), np.full((2, 2), 0x38)
    assert block_gemm(a, sa, b, sb, cfg).shape == (3, 2)
    with pytest.raises(ValueError, match=r"a_scales must be M x ceil\(K / 16\) = 3 x 2"):
        block_gemm(a, sa[:, :1], b, sb, cfg)
    with pytest.raises(ValueError, match="b_scales must be"):
        block_gemm(a, sa, b, sb.T[:1], cfg)
    with pytest.raises(ValueError, match="a_scales: scale codes must be non-negative"):
        block_gemm(a, sa | 0x80, b, sb, cfg)
    with pytest.raises(ValueError, match="b_scales: the block format .* needs scale codes"):
        block_gemm(a, sa, b, None, cfg)
    with pytest.raises(ValueError, match="a_codes: codes must be in 0..15"):
        block_gemm(a + 16, sa, b, sb, cfg)
    with pytest.raises(ValueError, match="b_scales: codes must be in 0..255"):
        block_gemm(a, sa, b, sb + 256, cfg)
    with pytest.raises(ValueError, match="K must agree"):
        block_gemm(a, sa, b[:19], sb, cfg)
    with pytest.raises(ValueError, match="config must be a BlockConfig"):
        block_gemm(a, sa, b, sb, cfg.mac)
    unscaled = BlockConfig(cfg.mac, BlockFormat("int4", 16, None))
    with pytest.raises(ValueError, match="a_scales: the block format .* has no scale"):
        block_gemm(a, sa, b, None, unscaled)
    with pytest.raises(ValueError, match="a: the last axis must be one block of 16"):
        block_dot(F16I, "nvfp4", 0, a, 0x38, b.T, 0x38)
    with pytest.raises(ValueError, match="scale_rounding"):
        quantize_blocks(np.ones(16), "nvfp4", scale_rounding="down")
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        quantize_blocks(np.ones((2, 16)), "nvfp4", axis=2)
    with pytest.raises(ValueError, match="fmt: unknown block format"):
        quantize_blocks(np.ones(16), "mxfp3")
    with pytest.raises(ValueError, match="scales must have ceil"):
        dequantize_blocks(np.zeros((2, 40), np.int64), np.zeros((2, 1), np.int64), "mxfp4")
    with pytest.raises(ValueError, match="myarg: unknown element format"):
        element_format("fp9", "myarg")
    with pytest.raises(ValueError, match="myarg: unknown scale format"):
        scale_format("ue8m0", "myarg")
    assert mx_scale_codes(0.0, "fp4_e2m1") == 0 and mx_scale_codes(6.0, "fp4_e2m1") == 127
