"""model/formats.py: the preset table, decode and encode, checked against libraries written by others
(ml_dtypes, NumPy's float16/float32, Graphcore's gfloat) and against tests/fraction_ref.py.
"""

from __future__ import annotations

import dataclasses

import gfloat
import gfloat.formats
import ml_dtypes
import numpy as np
import pytest

import fraction_ref as ref
from fp8mac.model import FORMATS, FloatFormat
from fp8mac.model.formats import format_by_name

# ---- helpers -----------------------------------------------------------------------------------

def assert_same_floats(got, want, what=""):
    """Equal as float64 values, NaN matching NaN and the sign of zero included."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    gn, wn = np.isnan(got), np.isnan(want)
    bad = (gn != wn) | (~gn & ~wn & ((got != want) | (np.signbit(got) != np.signbit(want))))
    if bad.any():
        i = np.flatnonzero(bad)[:5]
        raise AssertionError(f"{what}: {bad.sum()} mismatches, e.g. got {got.ravel()[i]} want {want.ravel()[i]}")


def float32_doubles(rng, fmt, n):
    """n float64 values with float32 (24-bit) significands, both signs, exponents from four
    binades below the smallest subnormal to two above the largest binade (overflow included)."""
    lo = fmt.emin - fmt.man_bits - 4
    hi = min(fmt.emax + 2, 127)
    x = np.ldexp(1.0 + rng.integers(0, 1 << 23, n) / 2.0**23, rng.integers(lo, hi + 1, n))
    x = np.where(rng.random(n) < 0.5, -x, x)
    return x.astype(np.float32).astype(np.float64)  # float32 subnormals lose low bits: still float32


def midpoints(fmt):
    """Every exact midpoint between consecutive positive finite values (as float64), both signs."""
    codes = np.arange(1 << (fmt.width - 1))  # positive codes
    v = fmt.decode(codes)
    v = np.unique(v[np.isfinite(v)])
    mid = (v[:-1] + v[1:]) / 2  # exact: one more bit than the format
    return np.concatenate([mid, -mid])


# Graphcore gfloat descriptions of our presets; fp16_ibm (1,6,9) is not in gfloat's table, so it is
# described here with gfloat's own parameters (IEEE-style: inf and 2**9 - 1 NaNs at the top).
GFLOAT = {
    "fp8_e5m2": gfloat.formats.format_info_ocp_e5m2,
    "fp8_e4m3": gfloat.formats.format_info_ocp_e4m3,
    "fp16": gfloat.formats.format_info_binary16,
    "bf16": gfloat.formats.format_info_bfloat16,
    "fp32": gfloat.formats.format_info_binary32,
    "fp16_ibm": gfloat.FormatInfo("fp16_ibm", k=16, precision=10, bias=31, is_signed=True,
                                  domain=gfloat.Domain.Extended, has_nz=True, num_high_nans=2**9 - 1,
                                  has_subnormals=True, is_twos_complement=False),
}


# ---- the preset table (ARCHITECTURE.md §1) -------------------------------------------------------

# name, exp_bits, man_bits, bias, specials, overflow, code of 1.0, max finite, min subnormal
PRESETS = [
    ("fp8_e5m2", 5, 2, 15, "ieee", "inf", 0x3C, 57344.0, 2.0**-16),
    ("fp8_e4m3", 4, 3, 7, "fn", "saturate", 0x38, 448.0, 2.0**-9),
    ("fp8_e4m3_b11", 4, 3, 11, "none", "saturate", 0x58, 30.0, 2.0**-13),
    ("fp16_ibm", 6, 9, 31, "ieee", "inf", 0x3E00, (2 - 2.0**-9) * 2.0**31, 2.0**-39),
    ("fp16", 5, 10, 15, "ieee", "inf", 0x3C00, 65504.0, 2.0**-24),
    ("bf16", 8, 7, 127, "ieee", "inf", 0x3F80, (2 - 2.0**-7) * 2.0**127, 2.0**-133),
    ("fp32", 8, 23, 127, "ieee", "inf", 0x3F800000, (2 - 2.0**-23) * 2.0**127, 2.0**-149),
]


@pytest.mark.parametrize("name,e,m,bias,specials,overflow,one,vmax,vsub", PRESETS, ids=[p[0] for p in PRESETS])
def test_preset_table(name, e, m, bias, specials, overflow, one, vmax, vsub):
    f = FORMATS[name]
    assert (f.exp_bits, f.man_bits, f.bias, f.specials, f.overflow, f.subnormals) == \
        (e, m, bias, specials, overflow, True)
    assert f.width == 1 + e + m
    assert f.max_value == vmax
    assert f.min_subnormal == vsub
    assert f.min_normal == 2.0 ** (1 - bias)
    assert int(f.encode(1.0)) == one and f.decode(one) == 1.0
    assert f.decode(f.max_code) == vmax
    assert int(f.encode(-1.0)) == one | (1 << (f.width - 1))


def test_presets_are_exactly_the_table():
    assert sorted(FORMATS) == sorted(p[0] for p in PRESETS)
    assert all(format_by_name(n) is FORMATS[n] for n in FORMATS)


# ---- decode ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,dtype", [("fp8_e5m2", ml_dtypes.float8_e5m2),
                                        ("fp8_e4m3", ml_dtypes.float8_e4m3fn)])
def test_decode_all_fp8_codes_against_ml_dtypes(name, dtype):
    codes = np.arange(256, dtype=np.uint8)
    want = codes.view(dtype).astype(np.float64)
    assert_same_floats(FORMATS[name].decode(codes), want, name)
    # the table has the right number of NaNs: 6 for E5M2 (+-(4-1)), 2 for E4M3 (S.1111.111)
    assert np.isnan(want).sum() == {"fp8_e5m2": 6, "fp8_e4m3": 2}[name]


def test_e4m3_b11_against_ml_dtypes():
    """Every code of fp8_e4m3_b11 against ml_dtypes' float8_e4m3b11fnuz, except 0x80: NaN there
    (its one special), -0 here (every code finite)."""
    codes = np.arange(256, dtype=np.uint8)
    want = codes.view(ml_dtypes.float8_e4m3b11fnuz).astype(np.float64)
    got = FORMATS["fp8_e4m3_b11"].decode(codes)
    assert np.isnan(want[0x80]) and got[0x80] == 0 and np.signbit(got[0x80])
    keep = codes != 0x80
    assert_same_floats(got[keep], want[keep], "fp8_e4m3_b11")


def test_decode_all_fp16_codes_against_numpy():
    codes = np.arange(1 << 16, dtype=np.uint16)
    assert_same_floats(FORMATS["fp16"].decode(codes), codes.view(np.float16).astype(np.float64), "fp16")


def test_decode_all_bf16_codes_against_ml_dtypes():
    codes = np.arange(1 << 16, dtype=np.uint16)
    with np.errstate(invalid="ignore"):  # signalling NaNs
        want = codes.view(ml_dtypes.bfloat16).astype(np.float64)
    assert_same_floats(FORMATS["bf16"].decode(codes), want, "bf16")


def test_decode_fp32_codes_against_numpy(rng):
    codes = np.concatenate([rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32),
                            np.array([0, 1, 0x7FFFFF, 0x800000, 0x7F7FFFFF, 0x7F800000, 0x7FC00000,
                                      0x80000000, 0xFF800000, 0xFFFFFFFF], np.uint32)])
    with np.errstate(invalid="ignore"):  # signalling NaNs
        want = codes.view(np.float32).astype(np.float64)
    assert_same_floats(FORMATS["fp32"].decode(codes), want, "fp32")


def test_decode_all_fp16_ibm_codes_against_gfloat():
    codes = np.arange(1 << 16, dtype=np.int64)
    want = gfloat.decode_ndarray(GFLOAT["fp16_ibm"], codes)
    assert_same_floats(FORMATS["fp16_ibm"].decode(codes), want, "fp16_ibm")
    assert FORMATS["fp16_ibm"].max_value == GFLOAT["fp16_ibm"].max


CUSTOM = [
    FloatFormat(3, 2, specials="none"),
    FloatFormat(4, 3, bias=3, specials="fn"),
    FloatFormat(5, 2, subnormals=False),
    FloatFormat(2, 1, bias=0, specials="ieee"),
    dataclasses.replace(FORMATS["fp8_e5m2"], overflow="saturate", name=None),
    dataclasses.replace(FORMATS["fp16_ibm"], subnormals=False, name=None),
]


@pytest.mark.parametrize("fmt", list(FORMATS.values()) + CUSTOM, ids=lambda f: f.label)
def test_decode_against_fraction_reference(fmt, rng):
    n = 1 << fmt.width
    codes = np.arange(n) if n <= 1 << 16 else rng.integers(0, n, 1 << 16)
    want = []
    for c in codes.tolist():
        v = ref.decode(fmt, c)
        want.append(np.nan if v.kind == "nan" else (-1.0) ** v.sign * (np.inf if v.kind == "inf" else float(v.mag)))
    assert_same_floats(fmt.decode(codes), want, fmt.label)


def test_ftz_format_flushes_subnormal_inputs_keeping_the_sign():
    f = FloatFormat(5, 2, subnormals=False)
    assert_same_floats(f.decode([0x01, 0x03, 0x81, 0x83, 0x04]), [0.0, 0.0, -0.0, -0.0, 2.0**-14])


# ---- encode: round to nearest even against libraries -----------------------------------------------
# ml_dtypes converts float64 to float8/bfloat16 through float32 (double rounding: e.g.
# -0.02832031326133358 becomes E4M3 0x8e, not the nearest 0x8f), so its reference inputs here are
# float64 values with float32 significands, which it rounds correctly in one step.

@pytest.mark.parametrize("name,dtype", [("fp8_e5m2", ml_dtypes.float8_e5m2),
                                        ("fp8_e4m3", ml_dtypes.float8_e4m3fn),
                                        ("bf16", ml_dtypes.bfloat16)])
def test_encode_nearest_against_ml_dtypes(name, dtype, rng):
    f = FORMATS[name]
    x = np.concatenate([float32_doubles(rng, f, 200_000), midpoints(f),
                        [0.0, -0.0, np.inf, -np.inf, np.nan]])
    got = f.encode(x)
    want_codes = x.astype(np.float32).astype(dtype).view(got.dtype)
    want = want_codes.view(dtype).astype(np.float64)
    if name == "fp8_e4m3":
        # Our fp8_e4m3 SATURATES on overflow (ARCHITECTURE.md §1, overflow="saturate") while
        # ml_dtypes' float8_e4m3fn gives NaN: compare where ml_dtypes is in range, and check the
        # saturation on its own. (Infinite inputs become NaN in both: E4M3 has no infinity.)
        over = np.isfinite(x) & np.isnan(want)
        assert over.sum() > 1000  # the stimulus does reach the overflow range
        assert np.all(np.abs(x[over]) > 464)  # 464 = (448 + 480) / 2 rounds to even, 448
        sat = np.where(x[over] < 0, 0xFE, 0x7E)
        np.testing.assert_array_equal(got[over], sat)
        keep = ~over
        x, got, want, want_codes = x[keep], got[keep], want[keep], want_codes[keep]
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(f.decode(got)), nan)
    np.testing.assert_array_equal(got[~nan], want_codes[~nan])
    assert np.all(got[nan] == f.nan_code)


def test_encode_nearest_fp16_against_numpy(rng):
    # NumPy rounds float64 to float16 directly (npy_double_to_half), correctly rounded.
    f = FORMATS["fp16"]
    x = np.concatenate([float32_doubles(rng, f, 100_000),
                        np.ldexp(rng.random(100_000) + 1, rng.integers(-30, 18, 100_000)),
                        midpoints(f), [0.0, -0.0, np.inf, -np.inf]])
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(f.encode(x), want)


def test_encode_nearest_fp32_against_numpy(rng):
    f = FORMATS["fp32"]
    n = 200_000
    x = np.ldexp(rng.random(n) + 1, rng.integers(-155, 130, n)) * rng.choice([-1.0, 1.0], n)
    with np.errstate(over="ignore"):
        want = x.astype(np.float32).view(np.uint32)
    np.testing.assert_array_equal(f.encode(x), want)


@pytest.mark.parametrize("name", [n for n in sorted(FORMATS) if FORMATS[n].width <= 16])
def test_encode_ties_go_to_even(name):
    f = FORMATS[name]
    mid = midpoints(f)
    mid = mid[np.abs(mid) < f.max_value]
    got = f.encode(mid)
    assert np.all((got & 1) == 0)  # the even neighbour, by its last mantissa bit
    lo = f.encode(np.nextafter(mid, 0))
    hi = f.encode(np.nextafter(mid, np.copysign(np.inf, mid)))
    assert np.all(hi == lo + 1)  # just off the tie: the two neighbours


@pytest.mark.parametrize("fmt", list(FORMATS.values()) + CUSTOM, ids=lambda f: f.label)
def test_encode_decode_round_trip(fmt, rng):
    n = 1 << fmt.width
    codes = np.arange(n) if n <= 1 << 16 else rng.integers(0, n, 1 << 17)
    v = fmt.decode(codes)
    keep = ~np.isnan(v) & ((v != 0) | (codes & ((1 << (fmt.width - 1)) - 1) == 0))  # not flushed
    np.testing.assert_array_equal(fmt.encode(v[keep]), codes[keep])
    if fmt.has_nan:
        assert np.all(fmt.encode(v[np.isnan(v)]) == ref.nan_code(fmt))


def test_encode_specials():
    e5, e4, ibm = FORMATS["fp8_e5m2"], FORMATS["fp8_e4m3"], FORMATS["fp16_ibm"]
    assert list(e5.encode([np.inf, -np.inf, np.nan, -np.nan])) == [0x7C, 0xFC, 0x7E, 0x7E]
    assert list(e4.encode([np.inf, -np.inf, np.nan, 1e6, -1e6])) == [0x7F, 0x7F, 0x7F, 0x7E, 0xFE]
    assert list(ibm.encode([np.inf, np.nan, 2.0**32, 2.0**-40, 1.5 * 2.0**-40, -(2.0**-41)])) == [0x7E00, 0x7F00, 0x7E00, 0x0000, 0x0001, 0x8000]
    none = FloatFormat(3, 2, specials="none")
    assert list(none.encode([np.inf, -np.inf, 1e9])) == [0x1F, 0x3F, 0x1F]  # 6-bit codes


# ---- encode in every rounding mode against gfloat --------------------------------------------------
# gfloat's RoundMode.StochasticFastest rounds up iff delta + R * 2**-r >= 1, with delta the part
# below the ulp in ulps: for integer R that is floor(delta * 2**r) + R >= 2**r, exactly our §2
# rule (and exact in float64 for the 24-bit significands used here). gfloat's RoundMode.Stochastic
# differs: it first rounds delta to r bits to nearest even (P(up) = round(t * 2**r) / 2**r), and
# StochasticFast adds half an LSB; test_gfloat_stochastic_convention_differs pins that down.
# With sat=True gfloat also turns infinite inputs into the largest value, where ours keep them
# (overflow is about rounding finite values); the stimulus here is finite.
# gfloat's has_subnormals=False keeps full precision below the normal range instead of flushing,
# so flush-to-zero formats are checked against tests/fraction_ref.py only.

GF_MODES = {"nearest": gfloat.RoundMode.TiesToEven, "zero": gfloat.RoundMode.TowardZero,
            "stochastic": gfloat.RoundMode.StochasticFastest}


@pytest.mark.parametrize("mode", list(GF_MODES))
@pytest.mark.parametrize("name", ["fp16_ibm", "fp8_e5m2", "fp8_e4m3", "fp16", "bf16", "sat_e5m2"])
def test_encode_against_gfloat(name, mode, rng):
    if name == "sat_e5m2":
        f, fi = dataclasses.replace(FORMATS["fp8_e5m2"], overflow="saturate", name=None), GFLOAT["fp8_e5m2"]
    else:
        f, fi = FORMATS[name], GFLOAT[name]
    sat = f.overflow == "saturate"
    n = 50_000
    x = np.concatenate([float32_doubles(rng, f, n), midpoints(f) if f.width == 8 else [], [0.0, -0.0]])
    if mode != "stochastic":  # full 53-bit significands too (gfloat's float64 arithmetic is exact here)
        full = np.ldexp(rng.random(n) + 1.0, rng.integers(f.emin - f.man_bits - 3, f.emax + 2, n))
        x = np.concatenate([x, np.where(rng.random(n) < 0.5, -full, full)])
    rbits, rand = None, None
    if mode == "stochastic":
        rbits = int(rng.choice([1, 3, 8, 16]))
        rand = rng.integers(0, 1 << rbits, x.shape)
    want = gfloat.round_ndarray(fi, x, GF_MODES[mode], sat=sat, srbits=rand, srnumbits=rbits or 0)
    got = f.decode(f.encode(x, mode, rand, rbits))
    assert_same_floats(got, want, f"{f.label} {mode} rbits={rbits}")


def test_gfloat_stochastic_convention_differs():
    # x = 1 + 0.75 ulp in fp16_ibm, r = 1, R = 0: ours q = floor(0.75 * 2) = 1, 1 + 0 < 2, no
    # round-up (P(up) = 1/2); gfloat's Stochastic rounds 1.5 to 2 first and always rounds up.
    f, fi = FORMATS["fp16_ibm"], GFLOAT["fp16_ibm"]
    x = 1 + 0.75 * 2.0**-9
    assert f.decode(f.encode(x, "stochastic", 0, 1)) == 1.0
    assert gfloat.round_float(fi, x, gfloat.RoundMode.Stochastic, srbits=0, srnumbits=1) == 1 + 2.0**-9
    assert gfloat.round_float(fi, x, gfloat.RoundMode.StochasticFastest, srbits=0, srnumbits=1) == 1.0


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(exp_bits=1, man_bits=2), "exp_bits"),
    (dict(exp_bits=9, man_bits=2), "exp_bits"),
    (dict(exp_bits=2.0, man_bits=2), "exp_bits"),
    (dict(exp_bits=True, man_bits=2), "exp_bits"),
    (dict(exp_bits=5, man_bits=0), "man_bits"),
    (dict(exp_bits=5, man_bits=24), "man_bits"),
    (dict(exp_bits=5, man_bits=2, bias=-1), "bias"),
    (dict(exp_bits=5, man_bits=2, bias=32), "bias"),
    (dict(exp_bits=5, man_bits=2, bias=1.5), "bias"),
    (dict(exp_bits=5, man_bits=2, specials="ocp"), "specials"),
    (dict(exp_bits=5, man_bits=2, subnormals=1), "subnormals"),
    (dict(exp_bits=5, man_bits=2, overflow="wrap"), "overflow"),
    (dict(exp_bits=4, man_bits=3, specials="fn", overflow="inf"), "overflow"),
    (dict(exp_bits=2, man_bits=1, specials="none", overflow="inf"), "overflow"),
])
def test_bad_format_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FloatFormat(**kwargs)


@pytest.mark.parametrize("name", ["fp8", "FP16", "e5m2", "", None, 16])
def test_unknown_format_names(name):
    with pytest.raises(ValueError, match=r"myarg: unknown format .*fp8_e5m2"):
        format_by_name(name, "myarg")


def test_format_from_dict_with_unknown_field():
    with pytest.raises(ValueError, match="fmt.*mantissa"):
        format_by_name({"exp_bits": 5, "mantissa": 2}, "fmt")


@pytest.mark.parametrize("codes,match", [
    ([0, 256], r"codes: codes must be in 0\.\.255 .*got 256"),
    ([-1, 3], r"codes: .*got -1"),
    (np.array([1.5]), "codes: codes must be integers"),
    (np.array([True]), "codes: codes must be integers"),
])
def test_codes_out_of_range(codes, match):
    with pytest.raises(ValueError, match=match):
        FORMATS["fp8_e5m2"].decode(codes)


def test_codes_wider_than_16_bit_format():
    with pytest.raises(ValueError, match=r"codes must be in 0\.\.65535"):
        FORMATS["fp16_ibm"].decode(np.array([1 << 16], np.uint32))


def test_nan_into_format_without_nan():
    with pytest.raises(ValueError, match="values: NaN"):
        FloatFormat(3, 2, specials="none").encode([1.0, np.nan])


def test_format_to_dict_round_trip():
    for f in list(FORMATS.values()) + CUSTOM:
        assert format_by_name(f.to_dict()) == f


def test_encode_rand_shape_mismatch_names_rand():
    with pytest.raises(ValueError, match=r"\brand\b"):
        FORMATS["fp16"].encode([1.0, 2.0], "stochastic", [1, 2, 3], 8)
