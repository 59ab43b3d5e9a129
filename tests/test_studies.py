"""The paper studies (fp8mac.model.studies): their machinery, their qualitative results at the
``--quick`` size, and bad input through the CLI.

Exactness checks draw their operands from the printed ``seed`` fixture. The study-level checks
run the studies at their ``--quick`` size with the studies' own fixed seeds (the seeds of the
committed reports), so their thresholds are reproducible; each threshold is stated where it is
asserted.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from fp8mac.hw.cli import main
from fp8mac.model import MacConfig, mac_gemm
from fp8mac.model.studies import accumulation as acc
from fp8mac.model.studies import bitwidth as bw
from fp8mac.model.studies import train as tr
from fp8mac.model.studies.cli import parse_int, parse_ints
from fp8mac.model.studies.report import markdown_table

import fraction_ref as ref
from test_model_blockscale import ref_decode, ref_round

PNG = b"\x89PNG\r\n\x1a\n"


# ---- machinery ---------------------------------------------------------------------------------

def test_fp32_baseline_is_mac_gemm_with_an_fp32_accumulator(seed):
    """The fast FP32 baseline (float32 cumsum) equals the golden model with an fp32 accumulator."""
    groups = acc.draw_operands([16, 100, 640], 4, "normal", "fp8_e5m2", seed)
    fast = acc.fp32_dot_products(groups, "fp8_e5m2")
    cfg = MacConfig(rows=8, cols=1, acc_format="fp32", chunk=None, inner_rounding="nearest")
    golden = acc.dot_products(groups, cfg)
    for n in (16, 100, 640):
        assert np.array_equal(fast[n], golden[n]), n


@pytest.mark.parametrize("chunk, dot", [(None, 1), (16, 1), (64, 1), (64, 4), (64, 16)])
def test_padded_rows_equal_unpadded_dot_products(seed, chunk, dot):
    """Zero padding and window offsets change nothing: each row equals its own mac_gemm (also
    with multi-term steps, whose +0 products fill the same steps either way)."""
    groups = acc.draw_operands([16, 48, 256], 3, "halfnormal", "fp8_e5m2", seed, align=64)
    cfg = MacConfig(rows=8, cols=1, chunk=chunk, inner_rounding="nearest", outer_rounding="nearest",
                    dot=dot)
    got = acc.dot_products(groups, cfg)
    fmt = cfg.acc_format
    for g in groups:
        for n, a, bwin in zip(g.lengths, g.a_parts, g.b_windows()):
            for t in range(a.shape[0]):
                alone = mac_gemm(a[t][None, :], bwin[t][:, None], cfg)[0, 0]
                assert got[n][t] == fmt.decode(alone), (n, t)
    assert len({tuple(o) for o in groups[0].offsets}) > 1  # short rows use their own windows


def test_markdown_table_and_list_parsing():
    assert markdown_table(["a", "b"], [[1, 2]]).splitlines() == ["| a | b |", "|:---|---:|", "| 1 | 2 |"]
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        markdown_table(["a", "b"], [[1]])
    assert parse_ints("--lengths", "16..100", 1, 1000, doubling=True) == [16, 32, 64]
    assert parse_ints("--man-bits", "4..6", 1, 23) == [4, 5, 6]
    with pytest.raises(ValueError, match="--man-bits must be in 1..23"):
        parse_ints("--man-bits", "4,30", 1, 23)


# ---- accumulation ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_accumulation():
    return acc.run_accumulation(**acc.QUICK, seed=0, jobs=2, log=lambda *a: None)


def test_accumulation_quick_shows_swamping_and_chunking(quick_accumulation, tmp_path):
    r = quick_accumulation
    n = 1 << 14
    fp32, plain, chunked = r.error["FP32"][n], r.error["fp16_ibm plain RNE"][n], r.error["fp16_ibm chunk 64 RNE"][n]
    # FP32 accumulation of FP8 products is nearly exact at 2^14 (24-bit significand).
    assert fp32 < 1e-5
    # Chunked FP16 tracks FP32: its dot products are within 1 % of FP32's (FP32 is within 1e-5 of
    # exact), while the fp16_ibm format itself cannot do better than about 2^-11.
    assert chunked < 0.01
    assert chunked < 30 * r.floor[n]
    # Plain FP16 is swamped: at least 10x the chunked error there (and over 20 % lost).
    assert plain > 10 * chunked
    assert plain > 0.2
    assert r.mean_sum["fp16_ibm plain RNE"][n] < 0.8 * r.mean_sum["exact"][n]
    # ... and it was fine for short dot products: swamping sets in between 2^9 and 2^14.
    assert r.error["fp16_ibm plain RNE"][64] < 0.01
    assert r.swamping_length is not None and 1 << 9 <= r.swamping_length <= n
    md, png = acc.write_accumulation(r, tmp_path)
    assert png.read_bytes()[:8] == PNG
    text = md.read_text()
    assert "| 16384 |" in text and "Swamping" in text


def test_accumulation_methods_add_the_dot_widths_of_the_array_default():
    """dot 4 and 16 are the array default's config (chunk 64, nearest inner, stochastic outer,
    same seed) with only the dot width changed; the default study runs them, --quick does not."""
    assert acc.DEFAULT["dots"] == (4, 16)
    methods = {m.label: m.config for m in acc.accumulation_methods(dots=(16, 4), seed=7)}
    default = methods["fp16_ibm chunk 64 RNE+SR"]
    assert list(methods)[-3:] == ["fp16_ibm chunk 64 RNE+SR", "fp16_ibm chunk 64 RNE+SR dot 4",
                                  "fp16_ibm chunk 64 RNE+SR dot 16"]
    for d in (4, 16):
        cfg = methods[f"fp16_ibm chunk 64 RNE+SR dot {d}"]
        assert (cfg.dot, cfg.chunk, cfg.inner_rounding, cfg.outer_rounding, cfg.seed) == \
            (d, 64, "nearest", "stochastic", 7)
        assert cfg.replace(dot=1) == default
    assert default.dot == 1
    assert not any(m.config and m.config.dot > 1
                   for m in acc.accumulation_methods(stochastic=False, dots=(4, 16)))
    assert not any(m.config and m.config.dot > 1 for m in acc.accumulation_methods())


@pytest.mark.parametrize("dots", [1, (3,), (128,), (4, "x"), "16", None])
def test_accumulation_bad_dots(dots):
    with pytest.raises(ValueError, match="dots"):
        acc.run_accumulation(lengths=(16,), trials=1, dots=dots, log=lambda *a: None)


def test_accumulation_dot_widths_cut_the_inner_error_only(tmp_path):
    """Fewer inner roundings: at n = 64 (one chunk, so inner roundings are all the error
    there is) dot 16 and dot 4 are well below dot 1; at n = 2048 (32 chunks) the outer sum's
    stochastic roundings dominate and the dot width no longer matters. Margins, measured
    with 16 trials over seeds 0..9 (seed 0 here): dot 16 / dot 1 at n = 64 is 0.34 (at most
    0.52 over the seeds), dot 4 / dot 1 is 0.55 (at most 0.79), dot 16 < dot 4 at every
    seed; at n = 2048 both ratios lie in 0.70..1.20 (asserted: within 1.5x either way).
    At n = 16 dot 16 is one step: exactly the exact sum rounded once (the floor)."""
    r = acc.run_accumulation(lengths=(16, 64, 2048), trials=16, chunks=(64,), seed=0, jobs=1,
                             log=lambda *a: None)
    e, base = r.error, "fp16_ibm chunk 64 RNE+SR"
    d1, d4, d16 = e[base], e[base + " dot 4"], e[base + " dot 16"]
    assert d16[16] == r.floor[16]
    assert d16[64] < 0.6 * d1[64]
    assert d4[64] < d1[64]
    assert d16[64] < d4[64]
    for d in (d4, d16):
        assert d1[2048] / 1.5 < d[2048] < 1.5 * d1[2048]
    assert r.params["dots"] == [4, 16]
    md, png = acc.write_accumulation(r, tmp_path)
    assert png.read_bytes()[:8] == PNG
    text = md.read_text()
    assert f"| {base} | {base} dot 4 | {base} dot 16 | floor |" in text
    assert "- Multi-term steps (dot 4 and dot 16" in text
    assert "dot 16 at n = 16 is exactly the floor" in text
    assert "`outer_adder` 'auto' (the array's default), here the row outer adder" in text


# ---- train -------------------------------------------------------------------------------------

def test_every_training_gemm_goes_through_mac_gemm(monkeypatch):
    """Forward, backward and weight-gradient GEMMs all run on the golden model, with 16-bit
    operands in the first and last layers and FP8 in the middle one."""
    import fp8mac.model.layers as layers

    calls = []
    real = layers.mac_gemm

    def counting(a, b, config, *args, **kw):
        calls.append((a.shape[0], a.shape[1], b.shape[1], config.in_format.name, config.chunk))
        return real(a, b, config, *args, **kw)

    monkeypatch.setattr(layers, "mac_gemm", counting)
    run = tr.train_mlp("fp8", seed=1, hidden=4, epochs=1, batch=100, lr=0.5, chunk=64,
                       train_limit=200)
    # 2 batches x (3 forward + 2 backward + 3 weight-gradient) + 3 test-set forward GEMMs.
    assert len(calls) == 2 * 8 + 3
    formats = {(m, k, n): f for m, k, n, f, _ in calls}
    assert formats[(100, 64, 4)] == "fp16_ibm"  # first layer forward
    assert formats[(100, 4, 10)] == "fp16_ibm"  # last layer forward
    assert formats[(100, 4, 4)] == "fp8_e5m2"  # middle layer forward
    assert formats[(100, 10, 4)] == "fp16_ibm"  # last layer backward, dY W3^T
    assert formats[(4, 100, 4)] == "fp8_e5m2"  # middle layer weight gradient, K = batch
    assert formats[(64, 100, 4)] == "fp16_ibm"  # first layer weight gradient
    assert {c for *_, c in calls} == {64}
    assert 0 <= run.final <= 1


def test_train_quick_fp8_within_margin_of_fp32(tmp_path):
    r = tr.run_train(**tr.QUICK, jobs=2, log=lambda *a: None)
    fp32, fp8 = r.summary("fp32")[0], r.summary("fp8")[0]
    # Both learn (10 classes: chance is 0.1), and FP8 is within 8 points of FP32 after two
    # epochs of one seed (the default run's margin, over three seeds, is in reports/train.md).
    assert fp32 > 0.6 and fp8 > 0.6
    assert fp8 > fp32 - 0.08
    md, png = tr.write_train(r, tmp_path)
    assert png.read_bytes()[:8] == PNG
    assert "FP32 baseline" in md.read_text()


def _record_gemms(monkeypatch):
    """Wrap the study's gemm_layer: every call's shape (M, K, N), A and B formats, chunk and operand
    codes, in call order."""
    calls = []
    real = tr.gemm_layer

    def recording(name, a, b, config):
        g = real(name, a, b, config)
        calls.append(dict(shape=g.shape, a=config.a_format.name, b=config.b_format.name,
                          chunk=config.chunk, a_codes=g.a_codes, b_codes=g.b_codes))
        return g

    monkeypatch.setattr(tr, "gemm_layer", recording)
    return calls


@pytest.mark.parametrize("variant, e4m3", [("hfp8", "fp8_e4m3"), ("hfp8-b11", "fp8_e4m3_b11")])
def test_hfp8_gemms_take_e4m3_forward_and_e5m2_errors(monkeypatch, variant, e4m3):
    """HFP8 (Sun et al. 2019): weights and activations in (1,4,3), errors dY in (1,5,2), so the
    middle layer's forward X W is E4M3 x E4M3, its backward dY W^T E5M2 x E4M3 and its weight
    gradient X^T dY E4M3 x E5M2; the first and last layers stay fp16_ibm. One step of 100 images,
    hidden 4, in the step's call order (forward 1-3, then per layer from the top: weight gradient,
    backward), then the test set's forward pass."""
    calls = _record_gemms(monkeypatch)
    tr.train_mlp(variant, seed=1, hidden=4, epochs=1, batch=100, train_limit=100)
    e5, f16 = "fp8_e5m2", "fp16_ibm"
    want = [((100, 64, 4), f16, f16),   # layer 1 forward
            ((100, 4, 4), e4m3, e4m3),  # layer 2 forward: activations x weights
            ((100, 4, 10), f16, f16),   # layer 3 forward
            ((4, 100, 10), f16, f16),   # layer 3 weight gradient
            ((100, 10, 4), f16, f16),   # layer 3 backward
            ((4, 100, 4), e4m3, e5),    # layer 2 weight gradient: activations^T x errors
            ((100, 4, 4), e5, e4m3),    # layer 2 backward: errors x weights^T
            ((64, 100, 4), f16, f16),   # layer 1 weight gradient
            ((359, 64, 4), f16, f16), ((359, 4, 4), e4m3, e4m3), ((359, 4, 10), f16, f16)]
    assert [(c["shape"], c["a"], c["b"]) for c in calls] == want
    assert {c["chunk"] for c in calls} == {64}


def test_e4m3_b11_is_ml_dtypes_e4m3b11fnuz_without_its_nan(seed):
    """The bias-11 (1,4,3) format against ml_dtypes' float8_e4m3b11fnuz (written by others): the
    same value for every code but 0x80 (their NaN, our -0), the same round-to-nearest-even encoding
    (values compared, so ml_dtypes' unsigned zero matches our -0) of random float32 values across
    its range, and the range the StableHLO RFC tabulates: normals 2**-10 .. 1.875 * 2**4 = 30,
    smallest subnormal 2**-13."""
    import ml_dtypes

    f = tr.E4M3_B11
    assert (f.exp_bits, f.man_bits, f.bias, f.has_inf, f.has_nan) == (4, 3, 11, False, False)
    assert (f.min_normal, f.max_value, f.min_subnormal) == (2.0**-10, 30.0, 2.0**-13)
    codes = np.arange(256, dtype=np.uint8)
    theirs = codes.view(ml_dtypes.float8_e4m3b11fnuz).astype(np.float64)
    ours = f.decode(codes)
    assert np.isnan(theirs[0x80]) and ours[0x80] == 0 and np.signbit(ours[0x80])
    keep = codes != 0x80
    assert np.array_equal(ours[keep], theirs[keep])
    rng = np.random.default_rng(seed)
    x = np.ldexp(rng.random(20000) + 0.5, rng.integers(-15, 5, 20000)) * rng.choice([-1, 1], 20000)
    x = x.astype(np.float32)
    x = x[np.abs(x) < 30]
    assert np.array_equal(f.decode(f.encode(x)), x.astype(ml_dtypes.float8_e4m3b11fnuz).astype(np.float64))


def test_long_k_weight_gradients_lose_more_without_chunking(monkeypatch, tmp_path):
    """The --long case's point on one full-batch step (K = 1438), hidden 8, the study's seed 0:
    every GEMM before the weight gradients has K <= 64 (one chunk, the same sums chunked or not),
    so both variants' weight gradients take the same operand codes, and only their accumulation
    differs. Plain fp16_ibm accumulation then loses more: for zero-mean products the partial sums
    random-walk and their rounding error grows like sqrt(K), so plain over chunk-64 should be about
    sqrt(1438 / 64) = 4.7x; measured at seeds 0..9 it is 3.1x at least in layers 1 and 2 (3.7x,
    6.2x here) and 18x at least in layer 3 (ReLU outputs times softmax minus one-hot: many small
    products of one sign against a few large ones of the other). Asserted: 2x, and layer 3 above 1 % plain (3.2 % at least) and below 0.5 %
    chunked (0.24 % at most). The report's gradient-error and sampling-noise sections come out."""
    calls = _record_gemms(monkeypatch)
    r = tr.run_train(variants=("fp32", "fp8", "no-chunk"), seeds=(0,), hidden=8, epochs=1,
                     batch=tr.TRAIN_IMAGES, noise_batch=128, jobs=1, log=lambda *a: None)
    fp8, plain = calls[:8], calls[11:19]  # each run: one step (8 GEMMs), then 3 test-set forwards
    assert [c["chunk"] for c in fp8] == [64] * 8 and [c["chunk"] for c in plain] == [None] * 8
    for c, d in zip(fp8, plain):
        assert c["shape"] == d["shape"]
        assert np.array_equal(c["a_codes"], d["a_codes"]) and np.array_equal(c["b_codes"], d["b_codes"])
    assert [c["shape"][1] for i, c in enumerate(fp8) if i in (3, 5, 7)] == [tr.TRAIN_IMAGES] * 3
    e8 = {x.variant: np.array(x.wgrad_error[0]) for x in r.runs if x.wgrad_error}
    assert np.all(e8["no-chunk"] > 2 * e8["fp8"]), e8
    assert e8["no-chunk"][2] > 0.01 and e8["fp8"][2] < 0.005, e8
    noise = [x.sampling_noise for x in r.runs if x.variant == "fp32"][0]
    assert len(noise) == 1 and all(0 < n < 10 for n in noise[0])
    md, png = tr.write_train(r, tmp_path, name="train_long")
    assert md.name == "train_long.md" and png.read_bytes()[:8] == PNG
    text = md.read_text()
    assert "full-batch steps" in text and "## Weight-gradient accumulation error" in text
    assert "## Sampling noise of a batch-128 gradient" in text
    assert "where both see the same operands" in text


# ---- train: block-scaled and 4-bit variants ------------------------------------------------------

def _record_block_gemms(monkeypatch):
    """Wrap the study's block_layer and the GEMMs under it: each block_layer call's inputs and
    result, and how many GEMMs block_gemm and mac_gemm computed (with block_gemm's configs)."""
    import fp8mac.model.layers as layers
    from fp8mac.model.studies import lowbit

    rec = dict(layers=[], block=[], mac=0)
    real_layer, real_block, real_mac = lowbit.block_layer, lowbit.block_gemm, layers.mac_gemm

    def block_layer(name, a, b, *args, **kw):
        g = real_layer(name, a, b, *args, **kw)
        rec["layers"].append(dict(name=name, a=np.array(a), b=np.array(b), g=g))
        return g

    def block_gemm(ca, sa, cb, sb, cfg):
        rec["block"].append(cfg)
        return real_block(ca, sa, cb, sb, cfg)

    def mac_gemm(*args, **kw):
        rec["mac"] += 1
        return real_mac(*args, **kw)

    monkeypatch.setattr(lowbit, "block_layer", block_layer)
    monkeypatch.setattr(lowbit, "block_gemm", block_gemm)
    monkeypatch.setattr(layers, "mac_gemm", mac_gemm)
    return rec


@pytest.mark.parametrize("variant, blocks, macs, formats", [
    # one step of 100 images (layer 2: forward, weight gradient, backward), then the test set's forward
    ("mxfp4", 4, 7, [("mxfp8_e4m3", "mxfp8_e4m3", "fp32"), ("mxfp4", "mxfp4", "fp32"),
                     ("mxfp4", "mxfp4", "fp32"), ("mxfp8_e4m3", "mxfp8_e4m3", "fp32")]),
    ("nvfp4", 4, 7, [("nvfp4", "nvfp4", "fp32")] * 4),
    ("ibm4-all", 11, 0, [("int4/16", "int4/16", "fp16_ibm"), ("uint4/16", "int4/16", "fp16_ibm")]),
])
def test_block_variants_run_their_gemms_through_block_gemm(monkeypatch, variant, blocks, macs, formats):
    """Every GEMM of a quantized layer is one block_gemm call with the recipe's block formats and
    accumulator; the fp16_ibm first and last layers stay on mac_gemm (none with -all, where the
    first layer's signed input is INT4 and the later activations UINT4)."""
    rec = _record_block_gemms(monkeypatch)
    run = tr.train_mlp(variant, seed=1, hidden=4, epochs=1, batch=100, train_limit=100)
    assert len(rec["block"]) == len(rec["layers"]) == blocks and rec["mac"] == macs
    got = [(c.a.label, c.b.label, c.mac.acc_format.name) for c in rec["block"]]
    assert got[:len(formats)] == formats
    assert {c.mac.chunk for c in rec["block"]} == {64}
    assert 0 <= run.final <= 1 and len(run.gemm_error) == 1


def _exact_value(fmt, code, scale_fmt=None, scale_code=None) -> Fraction:
    """An element's exact value (times its block scale) from the formats' bit fields (the
    blockscale tests' reference decoder), as a Fraction."""
    v = ref_decode(fmt, int(code))
    assert v.kind == "num"
    x = -v.mag if v.sign else v.mag
    if scale_fmt is not None:
        s = ref_decode(scale_fmt, int(scale_code))
        assert s.kind == "num" and s.sign == 0
        x *= s.mag
    return x


@pytest.mark.parametrize("variant, name", [("mxfp4", "layer 2 wgrad"), ("nvfp4", "layer 2 bwd"),
                                           ("ibm4", "layer 2 bwd")])
def test_block_layer_is_the_exact_product_of_its_quantized_operands(monkeypatch, variant, name):
    """One GEMM of a training step against an independent reference: the exact (Fraction) products
    of its element codes times their block scales, decoded from the formats' bit fields, summed;
    the GEMM's accumulator result lies within its roundings' bound of that sum (one rounding per
    block and per chunk, each at most half an ulp of a partial sum: here 2**-(m+1) * (blocks +
    chunks) * sum |products| with m the accumulator's mantissa bits), and the study's values are
    those codes unscaled. A wrong operand, scale or unscale is off by far more."""
    rec = _record_block_gemms(monkeypatch)
    tr.train_mlp(variant, seed=1, hidden=4, epochs=1, batch=100, train_limit=100)
    g = next(r["g"] for r in rec["layers"] if r["name"] == name)
    cfg = g.config
    (M, K), N = g.a_codes.shape, g.b_codes.shape[1]
    B = cfg.block
    A = [[_exact_value(cfg.a.element, g.a_codes[i, k], cfg.a.scale,
                       None if g.a_scales is None else g.a_scales[i, k // B]) for k in range(K)] for i in range(M)]
    Bm = [[_exact_value(cfg.b.element, g.b_codes[k, j], cfg.b.scale,
                        None if g.b_scales is None else g.b_scales[k // B, j]) for j in range(N)] for k in range(K)]
    facc = cfg.mac.acc_format
    rounds = -(-K // B) + -(-K // cfg.mac.chunk)
    for i in range(M):
        for j in range(N):
            exact = sum(A[i][k] * Bm[k][j] for k in range(K))
            mag = sum(abs(A[i][k] * Bm[k][j]) for k in range(K))
            v = ref.decode(facc, int(g.codes[i, j]))
            got = -v.mag if v.sign else v.mag
            assert abs(got - exact) <= Fraction(rounds, 2 ** (facc.man_bits + 1)) * mag, (i, j)
    assert np.allclose(g.values, facc.decode(g.codes) / (g.scale_a * g.scale_b), rtol=1e-14, atol=0)
    assert np.any(g.codes)


def test_nvfp4_weights_are_one_set_of_codes_for_w_and_w_transposed(monkeypatch):
    """NVFP4's 2-D weight scaling: layer 2's forward takes W and its backward W^T as the same
    element codes and 16 x 16 tile scales (transposed), while the 1-D scaled activations of the
    forward and weight-gradient GEMMs have their scales along different axes."""
    rec = _record_block_gemms(monkeypatch)
    tr.train_mlp("nvfp4", seed=1, hidden=20, epochs=1, batch=100, train_limit=100)
    fwd = next(r["g"] for r in rec["layers"] if r["name"] == "layer 2 fwd")
    bwd = next(r["g"] for r in rec["layers"] if r["name"] == "layer 2 bwd")
    assert fwd.b_codes.shape == (20, 20) and np.array_equal(fwd.b_codes, bwd.b_codes.T)
    assert fwd.scale_b == bwd.scale_b
    tiles = fwd.b_scales[:, ::16]  # one scale per tile: 2 x 2 tiles of W (16 + 4 rows / columns)
    assert tiles.shape == (2, 2) and np.array_equal(bwd.b_scales[:, ::16], tiles.T)
    assert np.array_equal(fwd.b_scales, np.repeat(tiles, 16, axis=1)[:, :20])


def test_ibm4_two_phase_rounding_with_one_gradscale(monkeypatch):
    """Sun et al.'s errors as the study quantizes them: layer 2's dY goes to the backward GEMM on
    the odd radix-4 grid (2 * 4**k) and to the weight gradient on the even grid (4**k), both with
    one per-layer power-of-two scale that puts max |dY| in (128, 256]; each element is the
    nearest value of its grid (checked with Fractions); weights are INT4 within -7..7."""
    rec = _record_block_gemms(monkeypatch)
    tr.train_mlp("ibm4", seed=1, hidden=4, epochs=1, batch=100, train_limit=100)
    bwd = next(r for r in rec["layers"] if r["name"] == "layer 2 bwd")
    wgrad = next(r for r in rec["layers"] if r["name"] == "layer 2 wgrad")
    d2 = bwd["a"]
    assert np.array_equal(d2, wgrad["b"])  # one tensor, quantized twice
    t_odd, t_even = 1 / bwd["g"].scale_a, 1 / wgrad["g"].scale_b
    assert t_odd == t_even and math.log2(t_odd).is_integer()
    assert 128 < np.abs(d2).max() / t_odd <= 256
    from fp8mac.model.elements import ELEMENT_FORMATS as EF
    for codes, fmt in ((bwd["g"].a_codes, EF["fp4_r4_odd"]), (wgrad["g"].b_codes, EF["fp4_r4"])):
        want = [ref_round(fmt, abs(Fraction(float(x))), bool(np.signbit(x)), "nearest", scale=Fraction(t_odd))
                for x in d2.ravel()]
        assert np.array_equal(codes.ravel(), want)
    w = EF["int4"].decode(bwd["g"].b_codes)
    assert w.min() >= -7 and w.max() <= 7 and np.abs(w).max() == 7


def test_train_4bit_cli_report(tmp_path, capsys):
    """``--4bit`` writes train_4bit.md / .png with the recipes' sections (a tiny run)."""
    out = tmp_path / "r"
    assert main(["study", "train", "--4bit", "--variants", "fp32,ibm4,nvfp4-all", "--seeds", "0",
                 "--hidden", "4", "--epochs", "1", "--batch", "719", "--jobs", "1", "--out", str(out)]) == 0
    text = (out / "train_4bit.md").read_text()
    assert (out / "train_4bit.png").read_bytes()[:8] == PNG
    assert "--4bit" in text and "final training loss" in text
    for heading in ("## Block-scaled and 4-bit recipes", "## GEMM error against FP32"):
        assert heading in text
    assert "| `ibm4` | layer 2: forward, backward, weight gradient | fp16_ibm, chunk 64 |" in text
    assert "| `nvfp4-all` | layers 1-3: forward, backward, weight gradient | fp32, chunk 64 |" in text
    assert "Sun et al." in text and "2509.25149" in text


# ---- bitwidth ----------------------------------------------------------------------------------

def test_vrr_model_matches_a_simulation_of_its_assumptions(rng):
    """Monte Carlo of the swamping model itself: each product keeps its multiple of the ulp of
    the partial sum before the add (ties either way), retained = E[s_hat * s] / E[s^2]."""
    values, probs = bw.product_distribution("fp8_e5m2")
    n, m, trials = 1024, 3, 4000
    p = rng.choice(values, size=(trials, n), p=probs)
    s_hat = np.zeros(trials)
    for i in range(n):
        mag = np.abs(s_hat)
        e = np.floor(np.log2(np.where(mag > 0, mag, 1.0)))
        u = np.where(mag > 0, np.ldexp(1.0, (e - m).astype(int)), 0.0)
        r = np.divide(p[:, i], u, out=np.zeros(trials), where=u > 0)
        fl = np.floor(r)
        frac = r - fl
        up = (frac > 0.5) | ((frac == 0.5) & (rng.random(trials) < 0.5))
        first = bw._round_bits(p[:, i], m)
        s_hat = s_hat + np.where(u > 0, (fl + up) * u, first)
    s = p.sum(axis=1)
    retained = (s_hat * s).sum() / (s * s).sum()
    se = math.sqrt(np.var(s_hat * s - retained * s * s) / trials) / (s * s).mean()
    model = bw.vrr_model(n, m)
    assert 1 - model > 0.02  # a point where the model predicts a real loss
    # The closed form is an approximation of this process: over 30 seeds it overestimates the
    # simulated retention by 0.014 on average here (z = 1.9 +- 1.1; the bound used to be
    # 4 se + 0.002, which by that spread about one seed in 70 fails, e.g. FP8MAC_SEED=1529269896), so the
    # bound admits that bias and then four standard errors of noise.
    assert abs(model - retained) < 4 * se + 0.015, (model, retained, se)


def test_bitwidth_quick(tmp_path):
    r = bw.run_bitwidth(**bw.QUICK, seed=0, jobs=2, log=lambda *a: None)
    cell = {(x["label"], x["man_bits"]): x for x in r.rows}
    plain4, plain8 = cell[("plain RNE", 4)], cell[("plain RNE", 8)]
    chunk4, sr4 = cell[("chunk 64 RNE", 4)], cell[("plain SR", 4)]
    # Round to nearest loses variance at m_acc = 4, n = 1024: significantly, and more than the
    # swamping model predicts (the binade-boundary contraction the model leaves out).
    assert 1 - plain4["measured"] > 3 * plain4["se"]
    assert (1 - plain4["measured"]) - (1 - plain4["model"]) > 2 * plain4["se"]
    # More mantissa bits, or chunking, keep more; stochastic rounding loses far less.
    assert 1 - plain8["measured"] < 0.25 * (1 - plain4["measured"])
    assert 1 - chunk4["measured"] < 0.5 * (1 - plain4["measured"])
    assert abs(1 - sr4["measured"]) < 0.5 * (1 - plain4["measured"])
    # The model's minimum widths grow with n and shrink with chunking.
    t = {row["n"]: row for row in r.table}
    assert t[4096]["None"] > t[64]["None"]
    assert t[4096]["64"] < t[4096]["None"]
    md, png = bw.write_bitwidth(r, tmp_path)
    assert png.read_bytes()[:8] == PNG
    assert "Minimum accumulator mantissa bits" in md.read_text()


# ---- the CLI -----------------------------------------------------------------------------------

def test_cli_writes_reports(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["study", "accumulation", "--lengths", "16..64", "--trials", "2", "--chunks", "16",
                 "--seed", "3", "--jobs", "1", "--out", str(out)]) == 0
    text = (out / "accumulation.md").read_text()
    assert "--seed 3" in text and "| 64 |" in text
    assert (out / "accumulation.png").read_bytes()[:8] == PNG
    assert "seed 3" in capsys.readouterr().out


@pytest.mark.parametrize("argv, names", [
    (["accumulation", "--lengths", "0"], "--lengths"),
    (["accumulation", "--lengths", "16..x"], "--lengths"),
    (["accumulation", "--lengths", "64..16"], "--lengths"),
    (["accumulation", "--chunks", "0"], "--chunks"),
    (["accumulation", "--chunks", "sixteen"], "--chunks"),
    (["accumulation", "--acc-format", "fp99"], "acc_format"),
    (["accumulation", "--in-format", "fp16_ibm", "--acc-format", "fp8_e4m3"], "acc_format"),
    (["accumulation", "--distribution", "cauchy"], "distribution"),
    (["accumulation", "--seed", "-1"], "--seed"),
    (["accumulation", "--seed", "x"], "--seed"),
    (["accumulation", "--trials", "0"], "--trials"),
    (["accumulation", "--jobs", "0"], "--jobs"),
    (["train", "--seeds", "-1"], "--seeds"),
    (["train", "--variants", "fp4"], "variants"),
    (["train", "--lr", "0"], "--lr"),
    (["train", "--batch", "0"], "--batch"),
    (["train", "--batch", "1439"], "--batch"),
    (["train", "--noise-batch", "0"], "--noise-batch"),
    (["train", "--long", "--quick"], "--long"),
    (["train", "--variants", "fp32,hfp9"], "variants"),
    (["train", "--variants", "mxfp5"], "variants"),
    (["train", "--4bit", "--long"], "--4bit"),
    (["bitwidth", "--man-bits", "0"], "--man-bits"),
    (["bitwidth", "--man-bits", "4..30"], "--man-bits"),
    (["bitwidth", "--in-format", "fp16_ibm"], "in_format"),
    (["bitwidth", "--max-lost", "-1"], "--max-lost"),
    (["bitwidth", "--chunk", "0"], "--chunk"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, names, capsys, tmp_path):
    assert main(["study", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fp8mac: error: ") and err.count("\n") == 1, err
    assert names in err, err


def test_cli_out_must_be_a_directory(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert main(["study", "bitwidth", "--quick", "--out", str(f)]) == 2
    assert "out:" in capsys.readouterr().err


@pytest.mark.parametrize("lo,hi,text,message", [
    (1, 23, "0", "--n must be in 1..23, not 0"),
    (1, None, "0", "--n must be at least 1, not 0"),
    (None, 5, "6", "--n must be at most 5, not 6"),
    (0, None, "x", "--n must be an integer, not 'x'"),
])
def test_parse_int_names_the_allowed_range(lo, hi, text, message):
    with pytest.raises(ValueError) as exc:
        parse_int("--n", text, lo, hi)
    assert str(exc.value) == message
    assert parse_int("--n", "0x5", 0, 5) == 5  # any integer literal
