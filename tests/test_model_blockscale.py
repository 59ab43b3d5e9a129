"""model/elements.py (issue 19, item 1): the 4-bit, 6-bit and scale formats and their rounding
rule (model/blockscale.py, block scaling, comes next).

Expected values come from references written here from the formats' definitions (bit fields read
with integer arithmetic, values as ``fractions.Fraction``, the rounding rule applied to the exact
value) and from tests/fraction_ref.py, and, where they have the format, from ml_dtypes
(``float4_e2m1fn``, ``float6_e2m3fn``, ``float6_e3m2fn``, ``float8_e8m0fnu``, ``int4``) and Graphcore's
gfloat (OCP E2M1 / E2M3 / E3M2 / E8M0, ``compute_scale_amax``, ``quantize_block``). The model is
never asked for an expected value, except where a test says it compares two parts of the model
(``round_to_format`` with ``FloatFormat.encode``).
"""

from __future__ import annotations

import bisect
import functools
import math
from fractions import Fraction

import gfloat
import gfloat.formats as gf
import ml_dtypes
import numpy as np
import pytest

import fraction_ref as ref
from fp8mac.model import FORMATS, FloatFormat
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


def assert_same_floats(got, want, what=""):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    gn, wn = np.isnan(got), np.isnan(want)
    bad = (gn != wn) | (~gn & ~wn & ((got != want) | (np.signbit(got) != np.signbit(want))))
    if bad.any():
        i = np.flatnonzero(bad)[:5]
        raise AssertionError(f"{what}: {bad.sum()} mismatches, e.g. got {got.ravel()[i]} want {want.ravel()[i]}")


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
    magnitude, zeros of both signs; both signs throughout."""
    v = np.unique(np.abs(ref_values(fmt)[np.isfinite(ref_values(fmt))]))
    mids = (v[:-1] + v[1:]) / 2
    near = np.concatenate([np.nextafter(mids, 0), np.nextafter(mids, np.inf)])
    lo, hi = np.log2(v[v > 0][0]) - 3, np.log2(v[-1]) + 2
    rnd = 2.0 ** rng.uniform(lo, hi, n)
    with np.errstate(over="ignore"):
        f32 = rnd.astype(np.float32).astype(np.float64)
    rnd = np.where(np.isfinite(f32), f32, rnd)  # libraries convert through float32
    x = np.concatenate([v, mids, near, rnd, [0.0]]) * scale
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
    assert not {"fp4_e2m1", "fp6_e3m2", "fp6_e2m3", "fp4_e1m2", "int4", "fp4_r4", "e8m0"} & set(FORMATS)
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
             ("fp6_e3m2", ml_dtypes.float6_e3m2fn), ("e8m0", ml_dtypes.float8_e8m0fnu), ("int4", ml_dtypes.int4)]


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
