"""Mixed operand formats in the golden model (issue 16): the A stream in ``a_format``, the B stream
in ``b_format`` (HFP8's backward and weight-gradient GEMMs multiply E4M3 by E5M2).

The expected values come from tests/fraction_ref.py (codes decoded from their bit fields, exact
``Fraction`` products and sums, textbook rounding), whose FP8 decoding is first checked against
ml_dtypes' ``float8_e4m3fn`` / ``float8_e5m2``: the model is never asked for an expected value.
Checked here:

* every (E4M3, E5M2) and every (E5M2, E4M3) code pair: the exact product (``fp_mul_exact``), and
  one ``fp_fma`` step into fp16_ibm with nearest rounding from +0, -0, +inf and a few non-zero
  accumulators (NaN, infinities and signed zeros included);
* random d-term steps (``fp_dot``) and stochastic ``fp_fma`` steps of mixed operands;
* ``mac_gemm`` with mixed formats against a Fraction GEMM (nearest / zero rounding, chunking,
  dot widths, operands of different widths), and its two kernels against each other;
* ``MacConfig``: validation, ``to_dict`` / ``from_dict``, ``replace``, and that a configuration
  whose two streams are given the same format computes what the single-format one does, against
  test_model_gemm.py's reference (LFSR draws included).
"""

from __future__ import annotations

import functools
import json
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

import fraction_ref as ref
from test_model_gemm import operands, reference_gemm
from fp8mac.model import FORMATS, FloatFormat, MacConfig, fp_dot, fp_fma, fp_mul_exact, mac_gemm

E4M3, E5M2, F16I = FORMATS["fp8_e4m3"], FORMATS["fp8_e5m2"], FORMATS["fp16_ibm"]
ORDERS = [(E4M3, E5M2), (E5M2, E4M3)]
ORDER_IDS = ["e4m3xe5m2", "e5m2xe4m3"]
ML_DTYPES = {"fp8_e4m3": ml_dtypes.float8_e4m3fn, "fp8_e5m2": ml_dtypes.float8_e5m2}


@functools.lru_cache(maxsize=None)
def _decode(fmt, code):
    return ref.decode(fmt, code)


@functools.lru_cache(maxsize=None)
def reference_products(fa, fb):
    """The exact product of every code pair, indexed ``a * 2**fb.width + b`` (fraction_ref)."""
    return [ref.mul(_decode(fa, a), _decode(fb, b)) for a in range(1 << fa.width) for b in range(1 << fb.width)]


def all_pairs(fa, fb):
    """Every code pair, A major: ``a[i] * 2**fb.width + b[i] == i``."""
    a, b = np.meshgrid(np.arange(1 << fa.width), np.arange(1 << fb.width), indexing="ij")
    return a.ravel(), b.ravel()


def model_values(u):
    """The model's Unpacked products as fraction_ref Values (read field by field)."""
    out = []
    for sign, sig, exp, nan, inf in zip(*(np.asarray(x).tolist() for x in u)):
        if nan:
            out.append(ref.NAN)
        elif inf:
            out.append(ref.Value("inf", sign, Fraction(0)))
        else:
            out.append(ref.Value("num", sign, Fraction(sig) * (Fraction(2) ** exp)))
    return out


# ---- the reference's decoding against an outside one ------------------------------------------------

@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2"])
def test_reference_decodes_fp8_like_ml_dtypes(name):
    """fraction_ref.decode of every code equals ml_dtypes' value (so the references below rest on
    the OCP definitions, not on the model's decoder)."""
    fmt = FORMATS[name]
    values = np.arange(256, dtype=np.uint8).view(ML_DTYPES[name]).astype(np.float64)
    for code, x in enumerate(values.tolist()):
        assert _decode(fmt, code) == ref.from_float(x), (name, hex(code))


# ---- exhaustive products and MAC steps ----------------------------------------------------------------

@pytest.mark.parametrize("fa,fb", ORDERS, ids=ORDER_IDS)
def test_every_product_is_exact(fa, fb):
    a, b = all_pairs(fa, fb)
    got = model_values(fp_mul_exact(fa, a, b, b_fmt=fb))
    want = reference_products(fa, fb)
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, (f"{len(bad)} of {len(want)} products differ, first a={a[bad[0]]:#x} b={b[bad[0]]:#x}: "
                     f"got {got[bad[0]]}, want {want[bad[0]]}")
    # the pairs include every kind of special result
    kinds = {(w.kind, w.sign, w.mag == 0) for w in want}
    assert {("nan", 0, True), ("inf", 0, True), ("inf", 1, True), ("num", 0, True), ("num", 1, True)} <= kinds


def _acc_codes():
    """fp16_ibm accumulators, encoded by fraction_ref: signed zeros, +inf and a few numbers (one
    with all mantissa bits set, so that most sums round)."""
    big = ref.max_finite(F16I)
    return {"+0": 0, "-0": 1 << 15, "+inf": ref.round_value(F16I, ref.Value("inf", 0, Fraction(0)), "nearest"),
            "1.0": ref.encode_exact(F16I, 0, Fraction(1)),
            "-1.998": ref.encode_exact(F16I, 1, Fraction(1023, 512)),
            "3*2^-30": ref.encode_exact(F16I, 0, Fraction(3, 2**30)),
            "-2^-39": ref.encode_exact(F16I, 1, Fraction(1, 2**39)),  # the smallest subnormal
            "-max": ref.encode_exact(F16I, 1, big)}


ACCS = _acc_codes()


@pytest.mark.parametrize("acc_name", list(ACCS))
@pytest.mark.parametrize("fa,fb", ORDERS, ids=ORDER_IDS)
def test_every_fma_step_into_fp16_ibm(fa, fb, acc_name):
    acc = ACCS[acc_name]
    a, b = all_pairs(fa, fb)
    got = fp_fma(F16I, fa, acc, a, b, "nearest", b_fmt=fb)
    assert got.shape == a.shape
    acc_v = _decode(F16I, acc)
    want = np.array([ref.round_value(F16I, ref.add(acc_v, p), "nearest") for p in reference_products(fa, fb)])
    bad = np.flatnonzero(got != want)
    assert not bad.size, (f"{bad.size} steps differ, first acc={acc:#x} a={a[bad[0]]:#x} b={b[bad[0]]:#x}: "
                          f"got {got[bad[0]]:#x}, want {want[bad[0]]:#x}")
    if acc_name in ("+0", "-0"):  # zero-sign rules: -0 only from (-0) + (-0)
        neg_zero = sum(1 for p in reference_products(fa, fb) if p.kind == "num" and p.mag == 0 and p.sign)
        assert np.count_nonzero(got == 1 << 15) == (neg_zero if acc_name == "-0" else 0)


@pytest.mark.parametrize("fa,fb", ORDERS, ids=ORDER_IDS)
def test_stochastic_fma_steps(fa, fb, rng):
    n, rbits = 4000, 8
    acc = rng.integers(0, 1 << 16, n)
    a, b = rng.integers(0, 256, n), rng.integers(0, 256, n)
    rand = rng.integers(0, 1 << rbits, n)
    got = fp_fma(F16I, fa, acc, a, b, "stochastic", rand, rbits, b_fmt=fb)
    for i in range(n):
        exact = ref.add(_decode(F16I, int(acc[i])), ref.mul(_decode(fa, int(a[i])), _decode(fb, int(b[i]))))
        want = ref.round_value(F16I, exact, "stochastic", int(rand[i]), rbits)
        assert got[i] == want, (hex(acc[i]), hex(a[i]), hex(b[i]), int(rand[i]))


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "zero"])
@pytest.mark.parametrize("d", [2, 4])
@pytest.mark.parametrize("fa,fb", ORDERS, ids=ORDER_IDS)
def test_dot_steps(fa, fb, d, rounding, rng):
    n, rbits = 1500, 6
    acc = rng.integers(0, 1 << 16, n)
    a, b = rng.integers(0, 256, (n, d)), rng.integers(0, 256, (n, d))
    # a third of the rows: products cancelling exactly in pairs (b negated, a repeated)
    pairs = rng.random(n) < 0.33
    a[pairs, 1] = a[pairs, 0]
    b[pairs, 1] = b[pairs, 0] ^ 0x80
    rand = rng.integers(0, 1 << rbits, n) if rounding == "stochastic" else None
    got = fp_dot(F16I, fa, acc, a, b, rounding, rand, rbits if rand is not None else None, b_fmt=fb)
    for i in range(n):
        terms = [_decode(F16I, int(acc[i]))] + [ref.mul(_decode(fa, int(x)), _decode(fb, int(y)))
                                                for x, y in zip(a[i], b[i])]
        r = None if rand is None else int(rand[i])
        want = ref.round_value(F16I, ref.sum_values(terms), rounding, r, rbits)
        assert got[i] == want, (hex(acc[i]), a[i], b[i], r)


def test_b_fmt_none_is_in_fmt(rng):
    """b_fmt=None and b_fmt=in_fmt are the same step; every earlier call stays valid."""
    acc, a, b = rng.integers(0, 1 << 16, 500), rng.integers(0, 256, 500), rng.integers(0, 256, 500)
    want = np.array([ref.fma(F16I, E4M3, int(x), int(y), int(z)) for x, y, z in zip(acc, a, b)])
    assert np.array_equal(fp_fma(F16I, E4M3, acc, a, b), want)
    assert np.array_equal(fp_fma(F16I, "fp8_e4m3", acc, a, b, b_fmt="fp8_e4m3"), want)


@pytest.mark.parametrize("call,match", [
    (lambda: fp_fma(F16I, E4M3, 0, 0, 256, b_fmt=E5M2), r"b: codes must be in 0\.\.255"),
    (lambda: fp_fma(F16I, E4M3, 0, 0, 0, b_fmt="fp9"), r"b_fmt: unknown format 'fp9'; choose one of fp8_e5m2"),
    (lambda: fp_fma(E4M3, E4M3, 0, 0, 0, b_fmt=E5M2), r"acc_format fp8_e4m3 has no infinities but b_fmt fp8_e5m2"),
    (lambda: fp_dot(E4M3, E5M2, 0, [0], [0], b_fmt=E4M3), r"acc_format fp8_e4m3 has no infinities but in_fmt fp8_e5m2"),
    (lambda: fp_mul_exact(E4M3, 255, 1 << 16, b_fmt="fp16"), r"b: codes must be in 0\.\.65535"),
    (lambda: fp_mul_exact(E4M3, 256, 0, b_fmt="fp16"), r"a: codes must be in 0\.\.255"),
])
def test_arith_bad_mixed_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fp16_b_operand_product(rng):
    """Operands of different widths: an E4M3 code times an fp16 code, exact."""
    a, b = rng.integers(0, 256, 3000), rng.integers(0, 1 << 16, 3000)
    got = model_values(fp_mul_exact(E4M3, a, b, b_fmt="fp16"))
    for g, x, y in zip(got, a.tolist(), b.tolist()):
        assert g == ref.mul(_decode(E4M3, x), _decode(FORMATS["fp16"], y)), (hex(x), hex(y))


# ---- mac_gemm ------------------------------------------------------------------------------------------

def fraction_gemm(a, b, cfg):
    """mac_gemm's schedule without random draws (nearest / zero roundings only): K completed with
    +0 products to a multiple of d, chunks of ``cfg.chunk`` products, each step one rounding of
    the exact sum, each chunk sum added to the outer sum with one rounding."""
    assert "stochastic" not in (cfg.inner_rounding, cfg.outer_rounding)
    fa, fb, facc, d = cfg.a_format, cfg.b_format, cfg.acc_format, cfg.dot
    (M, K), N = a.shape, b.shape[1]
    Kp = -(-K // d) * d
    chunk = Kp if cfg.chunk is None else cfg.chunk
    out = np.zeros((M, N), dtype=np.int64)
    for i in range(M):
        for j in range(N):
            prods = [ref.mul(_decode(fa, int(a[i, k])), _decode(fb, int(b[k, j]))) for k in range(K)]
            prods += [ref.Value("num", 0, Fraction(0))] * (Kp - K)
            outer = 0
            for c0 in range(0, Kp, chunk):
                inner = 0
                for k in range(c0, min(c0 + chunk, Kp), d):
                    terms = [_decode(facc, inner)] + prods[k:k + d]
                    inner = ref.round_value(facc, ref.sum_values(terms), cfg.inner_rounding)
                if cfg.chunk is None:
                    outer = inner
                else:
                    outer = ref.round_value(facc, ref.add(_decode(facc, outer), _decode(facc, inner)),
                                            cfg.outer_rounding)
            out[i, j] = outer
    return out


NEAREST = dict(inner_rounding="nearest", outer_rounding="nearest")
# M, K, N, config fields
GEMM_CASES = [
    (5, 13, 4, dict(rows=2, cols=3, a_format="fp8_e4m3", b_format="fp8_e5m2", chunk=4, **NEAREST)),
    (3, 9, 5, dict(rows=4, cols=2, a_format="fp8_e5m2", b_format="fp8_e4m3", chunk=None, **NEAREST)),
    (4, 11, 3, dict(rows=2, cols=2, in_format="fp8_e5m2", a_format="fp8_e4m3", chunk=4, dot=2, **NEAREST)),
    (3, 17, 3, dict(rows=3, cols=3, a_format="fp8_e4m3", b_format="fp8_e5m2", chunk=8, dot=4,
                    inner_rounding="zero", outer_rounding="nearest")),
    (4, 10, 3, dict(rows=2, cols=2, a_format="fp8_e4m3", b_format="fp8_e5m2", acc_format="fp16", chunk=3,
                    **NEAREST)),
    (3, 12, 4, dict(rows=2, cols=2, a_format="fp8_e5m2", b_format="fp8_e4m3", acc_format="fp32", chunk=4, dot=4,
                    **NEAREST)),
    (3, 8, 3, dict(rows=2, cols=2, a_format="fp8_e4m3", b_format="fp16", acc_format="fp32", chunk=2, **NEAREST)),
    (3, 8, 2, dict(rows=2, cols=2, a_format="fp16", b_format="fp8_e5m2", acc_format="bf16", chunk=4, dot=2,
                   **NEAREST)),
]


@pytest.mark.parametrize("M,K,N,fields", GEMM_CASES, ids=[f"{m}x{k}x{n}-{i}" for i, (m, k, n, _) in enumerate(GEMM_CASES)])
def test_mac_gemm_against_fractions(M, K, N, fields, rng):
    cfg = MacConfig(**fields)
    assert cfg.mixed_formats
    a = operands(rng, cfg.a_format, (M, K), specials=0.05)
    b = operands(rng, cfg.b_format, (K, N), specials=0.05)
    want = fraction_gemm(a, b, cfg)
    for kernel in (None, "int", "float"):
        got = mac_gemm(a, b, cfg, kernel=kernel)
        assert got.dtype == cfg.acc_format.code_dtype
        bad = np.argwhere(got != want)
        assert not bad.size, (f"kernel={kernel}: {len(bad)} outputs differ, first at {tuple(bad[0])}: "
                              f"got {got[tuple(bad[0])]:#x} want {want[tuple(bad[0])]:#x}")


def test_mac_gemm_takes_each_stream_in_its_format():
    """B codes of a 16-bit format are accepted with an 8-bit A, and each stream's range is checked."""
    cfg = MacConfig(rows=1, cols=1, a_format="fp8_e4m3", b_format="fp16", acc_format="fp32")
    one_a, one_b = ref.encode_exact(E4M3, 0, Fraction(1)), ref.encode_exact(FORMATS["fp16"], 0, Fraction(3, 4))
    got = mac_gemm(np.array([[one_a]]), np.array([[one_b]]), cfg)
    assert got[0, 0] == ref.encode_exact(FORMATS["fp32"], 0, Fraction(3, 4))
    with pytest.raises(ValueError, match=r"a_codes: codes must be in 0\.\.255"):
        mac_gemm(np.array([[one_b]]), np.array([[one_b]]), cfg)
    with pytest.raises(ValueError, match=r"b_codes: codes must be in 0\.\.65535"):
        mac_gemm(np.array([[one_a]]), np.array([[1 << 16]]), cfg)


def test_mac_gemm_mixed_kernels_agree(seed):
    """The float64 kernel equals the integer definition for mixed formats: random configurations
    (stochastic roundings, dot widths, every preset accumulator), operands drawn uniformly over
    the codes (specials included)."""
    rng = np.random.default_rng(seed)
    pairs = [("fp8_e4m3", "fp8_e5m2"), ("fp8_e5m2", "fp8_e4m3"), ("fp8_e4m3", "fp16"), ("fp16", "fp8_e5m2")]
    for _ in range(30):
        fa, fb = pairs[int(rng.integers(len(pairs)))]
        dot = int(rng.choice([1, 2, 4, 8]))
        cfg = MacConfig(rows=int(rng.integers(1, 4)), cols=int(rng.integers(1, 4)), a_format=fa, b_format=fb,
                        acc_format=str(rng.choice(["fp16_ibm", "fp16", "bf16", "fp32"])), dot=dot,
                        chunk=[None, dot, 3 * dot][int(rng.integers(3))],
                        inner_rounding=str(rng.choice(["nearest", "stochastic", "zero"])),
                        outer_rounding=str(rng.choice(["nearest", "stochastic", "zero"])),
                        rbits=int(rng.integers(1, 17)), seed=int(rng.integers(1 << 32)))
        m, k, n = (int(x) for x in rng.integers(1, 20, 3))
        a = rng.integers(0, 1 << cfg.a_format.width, (m, k))
        b = rng.integers(0, 1 << cfg.b_format.width, (k, n))
        want = mac_gemm(a, b, cfg, kernel="int")
        got = mac_gemm(a, b, cfg, kernel="float")
        assert np.array_equal(got, want), f"{cfg} {m}x{k}x{n} (FP8MAC_SEED={seed})"


# M, K, N, config fields: the single-format fields, given again as the two streams' formats
SAME_CASES = [
    (3, 7, 3, dict(rows=2, cols=2, in_format="fp8_e4m3", chunk=3, inner_rounding="stochastic", rbits=5)),
    (4, 9, 3, dict(rows=2, cols=3, in_format="fp8_e5m2", chunk=4, dot=2, outer_adder="pe")),
    (3, 6, 2, dict(rows=1, cols=2, in_format="fp8_e5m2", chunk=None, inner_rounding="stochastic")),
]


@pytest.mark.parametrize("M,K,N,fields", SAME_CASES, ids=[f"{m}x{k}x{n}" for m, k, n, _ in SAME_CASES])
def test_same_formats_compute_as_before(M, K, N, fields, seed, rng):
    """a_format == b_format == in_format: the configuration, its dict and its codes are the
    single-format one's; the codes are checked against test_model_gemm.py's Fraction reference
    (with its LFSR draws), which reads in_format. Given only as the two streams' formats (with a
    different in_format), in_format becomes theirs."""
    base = MacConfig(**fields, seed=seed)
    fmt = base.in_format
    variants = [base.replace(a_format=fmt, b_format=fmt),
                MacConfig(**fields, seed=seed, a_format=fmt.name, b_format=fmt.name),
                MacConfig(**{**fields, "in_format": "fp16"}, seed=seed, a_format=fmt, b_format=fmt)]
    a = operands(rng, fmt, (M, K), specials=0.05)
    b = operands(rng, fmt, (K, N), specials=0.05)
    want = reference_gemm(a, b, base)
    for cfg in [base] + variants:
        assert cfg == base and cfg.to_dict() == base.to_dict() and not cfg.mixed_formats
        assert (cfg.in_format, cfg.a_format, cfg.b_format) == (fmt, fmt, fmt)
        for kernel in (None, "int"):
            assert np.array_equal(mac_gemm(a, b, cfg, kernel=kernel), want), (cfg, kernel)


# ---- MacConfig -----------------------------------------------------------------------------------------

def test_config_stream_formats_default_to_in_format():
    c = MacConfig()
    assert (c.in_format, c.a_format, c.b_format, c.mixed_formats) == (E5M2, E5M2, E5M2, False)
    c = MacConfig(in_format="fp8_e4m3")
    assert (c.a_format, c.b_format) == (E4M3, E4M3)
    c = MacConfig(in_format="fp8_e4m3", b_format="fp8_e5m2")  # the explicit one wins
    assert (c.in_format, c.a_format, c.b_format, c.mixed_formats) == (E4M3, E4M3, E5M2, True)
    c = MacConfig(a_format="fp8_e4m3")
    assert (c.in_format, c.a_format, c.b_format) == (E5M2, E4M3, E5M2)
    assert isinstance(MacConfig(a_format={"exp_bits": 4, "man_bits": 3, "specials": "fn"}).a_format, FloatFormat)


def test_config_replace():
    mixed = MacConfig(a_format="fp8_e4m3", b_format="fp8_e5m2")
    # in_format is the shorthand for both streams, also in replace
    assert MacConfig().replace(in_format="fp8_e4m3").b_format == E4M3
    one = mixed.replace(in_format="fp8_e4m3")
    assert (one.in_format, one.a_format, one.b_format) == (E4M3, E4M3, E4M3)
    kept = mixed.replace(in_format="fp8_e4m3", b_format="fp8_e5m2")
    assert (kept.a_format, kept.b_format) == (E4M3, E5M2)
    # other changes keep both streams
    assert (mixed.replace(rows=2).a_format, mixed.replace(rows=2).b_format) == (E4M3, E5M2)
    assert mixed.plain().mixed_formats
    swapped = mixed.replace(a_format="fp8_e5m2", b_format="fp8_e4m3")
    assert (swapped.a_format, swapped.b_format) == (E5M2, E4M3) and swapped != mixed
    assert not mixed.replace(b_format="fp8_e4m3").mixed_formats
    assert mixed.replace(b_format="fp8_e4m3").in_format == E4M3


@pytest.mark.parametrize("cfg", [
    MacConfig(a_format="fp8_e4m3", b_format="fp8_e5m2"),
    MacConfig(a_format="fp8_e5m2", b_format="fp8_e4m3", acc_format="fp32", dot=4, chunk=16),
    MacConfig(in_format="fp8_e4m3", b_format="fp8_e5m2"),
    MacConfig(in_format="bf16", a_format="fp8_e4m3", b_format="fp16", acc_format="fp32"),
    MacConfig(a_format=FloatFormat(4, 3, bias=8, specials="fn", name="e4m3_b8"), b_format="fp8_e5m2"),
], ids=["e4m3xe5m2", "e5m2xe4m3-fp32", "in-and-b", "in-neither", "custom-a"])
def test_config_dict_round_trip_mixed(cfg):
    d = cfg.to_dict()
    assert MacConfig.from_dict(d) == cfg
    assert MacConfig.from_dict(json.loads(json.dumps(d))) == cfg  # what manifest.json holds
    for key in ("a_format", "b_format"):
        assert (key in d) == (getattr(cfg, key) != cfg.in_format)
    if "a_format" in d and isinstance(d["a_format"], dict):
        assert d["a_format"]["bias"] == 8  # a custom format is spelled out


def test_config_old_dicts_load():
    """A dict (manifest) written before the two fields existed is a single-format configuration,
    and a single-format configuration's dict still holds exactly the old keys."""
    old = {"rows": 4, "cols": 4, "in_format": "fp8_e4m3", "acc_format": "fp16_ibm", "chunk": 32,
           "dot": 1, "inner_rounding": "nearest", "outer_rounding": "stochastic", "rbits": 8,
           "lfsr_width": 32, "seed": 1, "pe": "two-adder", "outer_adder": "auto", "pipeline": 0,
           "top": "fp8mac_array"}
    c = MacConfig.from_dict(old)
    assert (c.a_format, c.b_format, c.mixed_formats) == (E4M3, E4M3, False)
    assert c.to_dict() == old
    assert MacConfig.from_dict({**old, "a_format": "fp8_e5m2"}).mixed_formats


@pytest.mark.parametrize("fields,match", [
    (dict(a_format="fp7"), r"a_format: unknown format 'fp7'; choose one of fp8_e5m2, fp8_e4m3"),
    (dict(b_format="e4m3"), r"b_format: unknown format 'e4m3'; choose one of fp8_e5m2"),
    (dict(a_format=8), r"a_format: unknown format 8"),
    (dict(b_format={"exp_bits": 4}), r"b_format: .*man_bits"),
    (dict(a_format={"exp_bits": 4, "man_bits": 3, "specials": "odd"}), r"specials must be one of ieee, fn, none"),
    (dict(in_format="fp9", a_format="fp8_e4m3"), r"in_format: unknown format 'fp9'"),
    # pairs the accumulator cannot hold (the parameter named is the stream's)
    (dict(acc_format="fp8_e4m3", in_format="fp8_e4m3", b_format="fp8_e5m2"),
     r"acc_format fp8_e4m3 has no infinities but b_format fp8_e5m2 has them"),
    (dict(acc_format="fp8_e4m3", a_format="fp8_e5m2", b_format="fp8_e4m3"),
     r"acc_format fp8_e4m3 has no infinities but a_format fp8_e5m2 has them"),
    (dict(acc_format=FloatFormat(5, 10, specials="none", name="fp16_plain"), a_format="fp8_e4m3",
          b_format=FloatFormat(4, 3, specials="none", name="e4m3_plain")),
     r"acc_format fp16_plain has no NaN but a_format fp8_e4m3 has one"),
    (dict(acc_format="fp8_e4m3", a_format="fp8_e5m2", b_format="fp8_e5m2"),
     r"acc_format fp8_e4m3 has no infinities but in_format fp8_e5m2"),
])
def test_bad_mixed_config(fields, match):
    with pytest.raises(ValueError, match=match):
        MacConfig(**fields)


def test_accumulator_without_specials_takes_operands_without_them():
    """The rule is about specials alone: an accumulator with neither infinities nor NaN holds the
    products of two formats without them, whatever their ranges."""
    plain = FloatFormat(5, 10, specials="none", name="fp16_plain")
    c = MacConfig(acc_format=plain, a_format=FloatFormat(4, 3, specials="none"),
                  b_format=FloatFormat(5, 2, specials="none"))
    assert c.mixed_formats
    a, b = np.array([[0x7F]]), np.array([[0x7F]])  # the largest finite values of both formats
    want = ref.round_value(plain, ref.mul(_decode(c.a_format, 0x7F), _decode(c.b_format, 0x7F)), "nearest")
    assert mac_gemm(a, b, c.replace(outer_rounding="nearest"))[0, 0] == want == plain.max_code  # saturates


def test_layer_gemm_quantizes_each_operand_in_its_format(rng):
    """model/layers.py: A is rounded to a_format and B to b_format (nearest, as ml_dtypes casts),
    and the result codes are the Fraction GEMM of those codes."""
    from fp8mac.model import layers

    cfg = MacConfig(rows=2, cols=2, a_format="fp8_e4m3", b_format="fp8_e5m2", chunk=8, **NEAREST)
    x, w = rng.standard_normal((4, 20)), rng.standard_normal((20, 3))
    g = layers.gemm_layer("mixed", x, w, cfg)
    for codes, vals, scale, name in ((g.a_codes, x, g.scale_a, "fp8_e4m3"), (g.b_codes, w, g.scale_b, "fp8_e5m2")):
        want = (vals * scale).astype(ML_DTYPES[name]).astype(np.float64)
        got = codes.astype(np.uint8).view(ML_DTYPES[name]).astype(np.float64)
        assert np.array_equal(got, want), name
    assert np.array_equal(g.codes, fraction_gemm(g.a_codes, g.b_codes, cfg))
