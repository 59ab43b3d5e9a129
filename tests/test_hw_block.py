# amaranth: UnusedElaboratable=no
"""Block-scaled PEs (issue 19) in Amaranth's simulator, bit for bit against the model's block_gemm.

Each case streams a GEMM of block-scaled operands (element codes and one scale code per block and
stream) through :class:`fp8mac.hw.top.Accelerator` under random valid/ready pauses and compares
every result code with :func:`fp8mac.model.blockscale.block_gemm` of the configuration's
:meth:`~fp8mac.model.config.MacConfig.block_config`. The stimulus is the hard kind, not quantized
data: uniformly random element codes (NaN and infinity codes included where the element format
has them, in some cases), scales drawn from the middle of their range and from its edges (E8M0
2**-127 and 2**127, its NaN; E4M3 zero, subnormal, 448 and NaN), and directed families, one per
row (:func:`block_operands`): an infinite block under a zero scale, a block's -0 reaching the
result, a NaN scale, a block of -0 products, products that cancel exactly. FP8MAC_SEED (printed) replays a run.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8mac.hw.block import BlockSum, block_lane_width, element_frame
from fp8mac.hw.pe import ProcessingElement
from fp8mac.hw.top import first_result_latency
from fp8mac.model.blockscale import block_gemm
from fp8mac.model.config import MacConfig
from fp8mac.model.gemm import mac_gemm
from fp8mac.model.elements import E8M0, format_values

from test_hw_adder import FULL
from test_hw_array import run_accelerator


def scale_codes(rng, fmt, shape, specials):
    """Scale codes: mostly near 1, some at the edges of the format (and its NaN if ``specials``)."""
    if fmt is None:
        return None
    if fmt == E8M0:
        mid = 127 + rng.integers(-6, 7, shape)
        edge = rng.choice([0, 1, 2, 126, 128, 200, 252, 253, 254] + ([255] if specials else []), shape)
    else:  # E4M3, non-negative: zero, subnormals, the normal range, 448, NaN
        mid = rng.integers(0x30, 0x48, shape)
        edge = rng.choice([0, 1, 7, 8, 0x7E] + ([0x7F] if specials else []), shape)
    return np.where(rng.random(shape) < 0.25, edge, mid)


def element_codes(rng, fmt, shape, specials):
    """Uniformly random codes; finite unless ``specials``."""
    codes = rng.integers(0, 1 << fmt.width, shape)
    if not specials:
        codes = np.where(np.isfinite(format_values(fmt)[codes]), codes, 0)
    return codes


def block_operands(rng, config, m, k, n, specials=False):
    """``(a, a_scales, b, b_scales)`` for ``A (m x k) @ B (k x n)``: the module docstring's mix."""
    fa, fb, B = config.a_block, config.b_block, config.block_size
    kb = -(-k // B)
    a = element_codes(rng, fa.element, (m, k), specials)
    b = element_codes(rng, fb.element, (k, n), specials)
    sa = scale_codes(rng, fa.scale, (m, kb), specials)
    sb = scale_codes(rng, fb.scale, (kb, n), specials)
    neg_zero = 1 << (fa.element.width - 1)  # the sign bit alone: -0 where the format has it
    # Blocks 0 and 1 of B non-negative, so that A alone sets the sign of their products.
    b[:2 * B] &= ~(1 << (fb.element.width - 1))
    values = format_values(fa.element)
    # The directed families, the most specific first, one per row in turn (row 0 gets the first
    # that applies to the formats, so a small GEMM has it every time).
    families = [f for f, ok in (
        ("inf-times-zero-scale", fa.element.has_inf and fa.scale is not None and fa.scale != E8M0),
        ("underflow-then-neg-zero", kb == 2 and fa.scale == E8M0),
        ("nan-scale", fa.scale is not None and fa.scale.has_nan),
        ("neg-zero-block", True), ("cancelling", True)) if ok]
    for i in range(m):
        family = families[i % len(families)]
        j = rng.integers(0, kb)
        blk = np.s_[j * B:min((j + 1) * B, k)]
        if family == "neg-zero-block":  # a block of -0 products
            a[i, :B] = neg_zero
        elif family == "cancelling":  # products cancelling in pairs: a[2i+1] = -a[2i], b[2i+1] = b[2i]
            lo, hi = blk.start, blk.stop - (blk.stop - blk.start) % 2
            neg = values == -values[a[i, lo:hi:2]][:, None]
            if neg.any(axis=1).all():
                a[i, lo + 1:hi:2] = neg.argmax(axis=1)
                b[lo + 1:hi:2] = b[lo:hi:2]
        elif family == "underflow-then-neg-zero":
            # Two blocks: a negative one far below the accumulator's range (it rounds to -0), then
            # one of -0 products: -0 + -0 stays -0, the one way a block's zero sign reaches a
            # result (chunking off; a chunk's outer sum starts from +0).
            sa[i, 0] = 0
            a[i, :B] = np.where(values[a[i, :B]] > 0, a[i, :B] | neg_zero, a[i, :B])
            a[i, B:] = neg_zero
        elif family == "nan-scale":
            sa[i, j] = fa.scale.nan_code
        elif family == "inf-times-zero-scale":  # an infinite block sum under a zero scale
            a[i, blk] = np.where(np.isfinite(values[a[i, blk]]), a[i, blk], 0)
            a[i, blk.start] = fa.element.inf_code
            sa[i, j] = 0
    return a, sa, b, sb


def check(config, m, k, n, seed, specials=False, **options):
    rng = np.random.default_rng(seed)
    a, sa, b, sb = block_operands(rng, config, m, k, n, specials)
    want = block_gemm(a, sa, b, sb, config.block_config())
    got, _ = run_accelerator(config, a, b, seed, scales=(sa, sb), **options)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (
        f"{len(bad)} of {got.size} mismatch (FP8MAC_SEED={seed}); first at {tuple(bad[0])}: "
        f"got {int(got[tuple(bad[0])]):#x}, want {int(want[tuple(bad[0])]):#x}")


R4 = dict(element="fp4_r4", block=32, scale=None)
FULL_ONLY = pytest.mark.skipif(not FULL, reason="more block configurations: FP8MAC_TIER=full (make regress)")
CASES = [
    # (id, config fields, (M, K, N), specials)
    pytest.param("2x3-mxfp4-dot8-row", dict(rows=2, cols=3, a_block="mxfp4", dot=8, chunk=64), (3, 70, 4), False,
                 marks=FULL_ONLY),
    ("2x2-mxfp8-dot8-chunk-off", dict(rows=2, cols=2, a_block="mxfp8_e5m2", dot=8, chunk=None),
     (2, 64, 2), False),
    # E5M2 elements (infinities) under E4M3 scales (zero): inf * 0 in a block.
    ("2x2-e5m2-e4m3-scales-dot8", dict(rows=2, cols=2, dot=8, chunk=32,
                                        a_block=dict(element="fp8_e5m2", block=16, scale="fp8_e4m3")),
     (2, 32, 2), False),
    ("2x2-r4-int4-dot8", dict(rows=2, cols=2, a_block=R4, b_block=dict(R4, element="int4"), dot=8, chunk=64,
                              inner_rounding="stochastic", outer_adder="pe"), (2, 64, 3), False),
    pytest.param("2x2-int4-unscaled-dot4", dict(rows=2, cols=2, a_block=dict(R4, element="int4"), dot=4, chunk=32),
                 (2, 40, 2), False, marks=FULL_ONLY),
    pytest.param("2x2-nvfp4-dot16-inner-sr", dict(rows=2, cols=2, a_block="nvfp4", dot=16, chunk=32,
                                                  inner_rounding="stochastic"), (3, 40, 3), False,
                 marks=FULL_ONLY),
    pytest.param("2x2-mxfp8-e4m3-e5m2-dot4-shared",
                 dict(rows=2, cols=2, a_block="mxfp8_e4m3", b_block="mxfp8_e5m2", dot=4, chunk=64,
                      pe="shared-adder"), (2, 70, 3), True, marks=FULL_ONLY),
    pytest.param("3x2-mxfp6-dot32-fp32", dict(rows=3, cols=2, a_block="mxfp6_e2m3", dot=32, chunk=32,
                                              acc_format="fp32", outer_adder="pe"), (3, 64, 2), False,
                 marks=FULL_ONLY),
    pytest.param("2x2-nvfp4-dot1-pipe2", dict(rows=2, cols=2, a_block="nvfp4", dot=1, chunk=32, pipeline=2),
                 (2, 20, 2), False, marks=FULL_ONLY),
]


@pytest.mark.parametrize("name,fields,shape,specials", CASES,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in CASES])
def test_block_array_matches_model(name, fields, shape, specials, seed):
    check(MacConfig(**fields), *shape, seed=seed, specials=specials)


@FULL_ONLY
def test_block_array_seed_ports(seed):
    """The generator's structure (one PE module, seeds on ports) computes the same (the quick
    tier runs it as Verilog: tests/test_sim_accelerator.py's block designs)."""
    check(MacConfig(rows=2, cols=2, a_block="mxfp4", dot=8, chunk=32, inner_rounding="stochastic"),
          2, 64, 2, seed, seed_ports=True)


def test_lane_layout_and_frames():
    """The lane and frame sizes the README and the manifest state, from first principles."""
    cfg = MacConfig(rows=1, cols=1, a_block="mxfp4", dot=8, chunk=64)
    assert block_lane_width(cfg.a_block, 8) == 8 * 4 + 8
    # E2M1 values 0.5 .. 6 are 1..12 halves: products 1..144 quarter units, 8 bits from 2**-2.
    assert element_frame(cfg.a_block.element, cfg.b_block.element)[0] == -2
    # fp4_r4 (+-4**(f-3), f = 1..7: 2**-4 .. 2**8) times INT4 (odd part up to 7, 2**3 for -8).
    r4 = MacConfig(rows=1, cols=1, a_block=R4, b_block=dict(R4, element="int4"), dot=8, chunk=64)
    lsb, width = element_frame(r4.a_block.element, r4.b_block.element)
    assert lsb == -4 and 2 ** (lsb + width) > 2 ** 8 * 8 >= 2 ** (lsb + width - 1)
    # A block of 32: 5 more bits and a sign bit.
    assert BlockSum.sum_bits(cfg)[1] == element_frame(cfg.a_block.element, cfg.b_block.element)[1] + 6


def test_block_stage_adds_a_cycle():
    """The block stage is a register: a block PE's first result comes one cycle later than a plain
    PE's, and pipeline stages beyond the first are on top of it."""
    plain = MacConfig(rows=2, cols=2, dot=8, chunk=64)
    blk = plain.replace(a_block="mxfp4")
    assert first_result_latency(blk) == first_result_latency(plain) + 1
    assert first_result_latency(blk.replace(pipeline=1)) == first_result_latency(plain.replace(pipeline=1))
    assert first_result_latency(blk.replace(pipeline=3)) == first_result_latency(plain.replace(pipeline=3))


def test_mac_gemm_refuses_block_configs():
    """The plain GEMM has no scales: a block configuration is sent to block_gemm, by name."""
    with pytest.raises(ValueError, match="block_gemm"):
        mac_gemm(np.zeros((1, 32), int), np.zeros((32, 1), int), MacConfig(rows=1, cols=1, a_block="mxfp4"))


def test_block_pe_refuses_a_plain_config():
    with pytest.raises(ValueError, match="block-scaled operands"):
        BlockSum(MacConfig(rows=1, cols=1))


def test_block_config_errors():
    """Bad block fields name the field and what is allowed."""
    for fields, match in ((dict(a_block="mxfp5"), "a_block: unknown block format 'mxfp5'.*mxfp4"),
                          (dict(a_block="mxfp4", chunk=48), "chunk must be a multiple of the block size"),
                          (dict(a_block="mxfp4", dot=64), r"dot \(64\) must divide the block size \(32\)"),
                          (dict(a_block="nvfp4", b_block="mxfp4"), "b_block: .*block sizes must agree"),
                          (dict(a_block=dict(element="fp4_e2m1", block=24)), "block must be one of 16, 32"),
                          (dict(a_block="mxfp4", a_formats="fp8_e5m2,fp8_e4m3"), "run-time format sets"),
                          (dict(a_block=dict(element="fp3")), "a_block: element: unknown element format 'fp3'"),
                          (dict(a_block=dict(element="fp4_e2m1", block=8)), "a_block: block must be one of 16, 32"),
                          (dict(a_block=dict(element="fp4_e2m1", scale="fp16")),
                           "a_block: scale: unknown scale format 'fp16'; choose one of e8m0, fp8_e4m3"),
                          (dict(a_block="mxfp4", b_block=dict(element="e8m0")), "b_block: element: unknown"),
                          (dict(a_block=dict(element="fp16")), "a_block: element: element formats have 8 bits")):
        with pytest.raises(ValueError, match=match):
            MacConfig(**fields)


def test_block_pe_holds_while_disabled(seed):
    """``en`` low freezes the block stage mid-block: a PE fed one beat per two cycles, ``en``
    toggling, gives the result of an uninterrupted stream."""
    cfg = MacConfig(rows=1, cols=1, a_block="mxfp4", dot=8, chunk=64, outer_adder="pe",
                    inner_rounding="stochastic")
    rng = np.random.default_rng(seed)
    a, sa, b, sb = block_operands(rng, cfg, 1, 64, 1)
    want = int(block_gemm(a, sa, b, sb, cfg.block_config())[0, 0])
    from fp8mac.sim.tiler import tiles
    t = tiles(a, b, cfg, sa, sb)[0]
    dut = ProcessingElement(cfg)
    got = []

    async def tb(ctx):
        for k, (wa, wb) in enumerate(zip(t.a_beats, t.b_beats)):
            for en in (0, 1):  # a frozen cycle with the beat already present, then the step
                ctx.set(dut.en, en)
                ctx.set(dut.a_in, wa)
                ctx.set(dut.b_in, wb)
                ctx.set(dut.valid_in, 1)
                ctx.set(dut.last_in, k == len(t.a_beats) - 1)
                await ctx.tick()
        ctx.set(dut.valid_in, 0)
        ctx.set(dut.en, 1)
        for _ in range(6):
            await ctx.tick()
            if ctx.get(dut.full):
                got.append(ctx.get(dut.result))
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert got == [want], f"got {got}, want {want:#x} (FP8MAC_SEED={seed})"


def test_unscaled_block_spelled_in_a_config_file():
    """A TOML grid or config file has no null: ``scale = "none"`` is a block without a scale, and
    its lanes are the element codes alone."""
    cfg = MacConfig.from_dict(dict(rows=1, cols=1, dot=8, a_block=dict(element="int4", block=32, scale="none")))
    assert cfg.a_block.scale is None and cfg.b_block == cfg.a_block
    assert block_lane_width(cfg.a_block, 8) == 8 * 4
