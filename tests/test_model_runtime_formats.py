"""Run-time operand formats in the model (issue 16): MacConfig's format sets and the per-tile
GEMM of :func:`fp8mac.model.gemm.mac_gemm_tile_formats`."""

import numpy as np
import pytest

from fp8mac.model.config import MacConfig
from fp8mac.model.formats import FORMATS, FloatFormat
from fp8mac.model.gemm import mac_gemm, mac_gemm_tile_formats

HFP8 = ("fp8_e4m3", "fp8_e5m2")
E4M3, E5M2 = FORMATS["fp8_e4m3"], FORMATS["fp8_e5m2"]


def test_sets_default_format_and_round_trip():
    c = MacConfig(a_formats="fp8_e5m2, fp8_e4m3", b_formats=list(HFP8))
    assert c.a_formats == (E5M2, E4M3) and c.b_formats == (E4M3, E5M2)
    assert (c.a_format, c.b_format) == (E5M2, E4M3)  # each set's first
    assert c.runtime_formats and c.stream_formats("a") == (E5M2, E4M3)
    assert c.operand_label == "fp8_e5m2|fp8_e4m3 x fp8_e4m3|fp8_e5m2"
    d = c.to_dict()
    assert d["a_formats"] == ["fp8_e5m2", "fp8_e4m3"] and MacConfig.from_dict(d) == c
    assert "a_formats" not in MacConfig().to_dict() and not MacConfig().runtime_formats
    w = c.with_formats("fp8_e4m3", "fp8_e5m2")
    assert (w.a_format, w.b_format, w.a_formats) == (E4M3, E5M2, c.a_formats)


@pytest.mark.parametrize("fields, message", [
    (dict(a_formats="fp8_e4m3,fp16"), r"a_formats: the formats of one stream must have one code width"),
    (dict(b_formats=[]), r"b_formats must list 1..4 formats"),
    (dict(a_formats="fp8_e4m3,fp8_e4m3"), r"a_formats lists a format twice"),
    (dict(a_formats=HFP8, a_format="fp8_e5m2", b_formats="fp8_e5m2", b_format="fp8_e4m3"),
     r"b_format \(fp8_e4m3\) must be one of b_formats: fp8_e5m2"),
    (dict(a_formats="fp8_e4m3,fp8_e9"), r"a_formats: unknown format 'fp8_e9'"),
    # an accumulator without infinities cannot take E5M2's: named as the set
    (dict(acc_format="fp8_e4m3", b_formats=HFP8, a_format="fp8_e4m3"), r"b_formats"),
])
def test_bad_sets(fields, message):
    with pytest.raises(ValueError, match=message):
        MacConfig(**fields)


def test_with_formats_refuses_a_format_outside_the_set():
    with pytest.raises(ValueError, match="a_format must be one of fp8_e4m3, fp8_e5m2, not fp16"):
        MacConfig(a_formats=HFP8).with_formats("fp16")


def reference_tiles(a, b, config, pairs):
    """Tile by tile from independent mac_gemm runs, each on the tile's own operands only, after
    every earlier tile has advanced the random streams (the same GEMM with the earlier tiles'
    operands zeroed: draws do not depend on data)."""
    R, C = config.rows, config.cols
    tn = -(-b.shape[1] // C)
    out = np.zeros((a.shape[0], b.shape[1]), np.int64)
    for t, (fa, fb) in enumerate(pairs):
        ti, tj = divmod(t, tn)
        cfg = config.replace(a_format=fa, b_format=fb)
        keep_a = np.zeros_like(a)
        keep_a[ti * R:(ti + 1) * R] = a[ti * R:(ti + 1) * R]
        keep_b = np.zeros_like(b)
        keep_b[:, tj * C:(tj + 1) * C] = b[:, tj * C:(tj + 1) * C]
        got = mac_gemm(keep_a, keep_b, cfg, kernel="int")
        out[ti * R:(ti + 1) * R, tj * C:(tj + 1) * C] = got[ti * R:(ti + 1) * R, tj * C:(tj + 1) * C]
    return out


@pytest.mark.parametrize("fields", [
    dict(rows=2, cols=3, chunk=4, inner_rounding="stochastic", rbits=5),
    dict(rows=3, cols=2, chunk=4, dot=2, outer_adder="row"),
])
def test_tile_formats_against_tile_by_tile_reference(fields, seed):
    config = MacConfig(a_formats=HFP8, b_formats=HFP8, **fields)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (2 * config.rows + 1, 11))
    b = rng.integers(0, 256, (11, 2 * config.cols + 1))
    n_tiles = 9
    pairs = [(HFP8[int(rng.integers(2))], HFP8[int(rng.integers(2))]) for _ in range(n_tiles)]
    got = mac_gemm_tile_formats(a, b, config, pairs)
    np.testing.assert_array_equal(got, reference_tiles(a, b, config, pairs),
                                  err_msg=f"FP8MAC_SEED={seed}")
    same = mac_gemm_tile_formats(a, b, config, [("fp8_e5m2", "fp8_e4m3")] * n_tiles)
    np.testing.assert_array_equal(same, mac_gemm(a, b, config.with_formats("fp8_e5m2", "fp8_e4m3")))


def test_tile_formats_bad_input():
    config = MacConfig(rows=2, cols=2, a_formats=HFP8, b_formats=HFP8)
    a, b = np.zeros((3, 4), np.int64), np.zeros((4, 3), np.int64)
    with pytest.raises(ValueError, match="one .a_format, b_format. pair per tile: 4 tiles"):
        mac_gemm_tile_formats(a, b, config, [HFP8] * 3)
    with pytest.raises(ValueError, match="b_format must be one of"):
        mac_gemm_tile_formats(a, b, config, [HFP8] * 3 + [("fp8_e4m3", FloatFormat(3, 4))])
