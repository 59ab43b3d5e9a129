"""The fast float64 kernel (model/fastpath.py) equals the integer definition, bit for bit.

The integer path (model/rounding.py) is itself checked against an exact Fraction reference in
test_model_rounding.py; here every rounding of the fast path is compared with it on inputs built
to hit the fast path's delicate spots: sums just below a power of two (the binade edge), exact
ties, tiny addends that only reach the sticky or the random bits, cancellation, subnormals,
overflow, and NaN / infinity.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fp8mac.model import FORMATS, MacConfig, fp_fma, mac_gemm
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
