"""The PE, the array and the AXI4-Stream top in Amaranth's simulator, bit for bit against mac_gemm.

Each scenario streams a whole GEMM through :class:`fp8mac.hw.top.Accelerator` with separate
producer testbenches for the A and B streams and a consumer for the result stream, each with its
own seeded random pauses (valid/ready), and compares every result code with
:func:`fp8mac.model.gemm.mac_gemm`.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8mac.hw.top import Accelerator, port_list, tile_spacing
from fp8mac.model.config import MacConfig
from fp8mac.model.formats import FloatFormat
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.tiler import assemble, tiles


def random_operands(rng, config, m, k, n, specials=False):
    """Random operand codes; finite unless ``specials``."""
    fmt = config.in_format
    a = rng.integers(0, 1 << fmt.width, (m, k))
    b = rng.integers(0, 1 << fmt.width, (k, n))
    if not specials:
        finite = lambda c: np.where(np.isfinite(fmt.decode(c)), c, 0)  # noqa: E731
        a, b = finite(a), finite(b)
    return a, b


def run_accelerator(config, a, b, seed, p_idle=(0.3, 0.3, 0.3), max_cycles=200_000, tile_users=None,
                    scales=(None, None), **options):
    """Stream ``a @ b`` through the Accelerator; returns ``(result codes, cycles)``.

    ``p_idle`` is the probability, per stream (A, B, C), of an idle cycle before each beat (A, B:
    tvalid low; C: tready low); bursts of idle cycles are drawn too. ``tile_users`` gives each
    tile's ``(A tuser, B tuser)`` (run-time formats); ``scales`` the block scale codes of
    block-scaled operands. ``options`` go to the Accelerator (e.g. ``seed_ports=True``).
    """
    dut = Accelerator(config, **options)
    ts = tiles(a, b, config, *scales)
    n_results = len(ts) * config.rows
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**32, 3)
    got, cycles = [], [0]

    def pauses(stream_seed, p):
        r = np.random.default_rng(stream_seed)
        while True:
            if r.random() < p:
                yield int(r.integers(1, 4 if r.random() < 0.9 else 30))
            else:
                yield 0

    def producer(name, beats_of, stream_seed, p):
        valid, data, last, ready = (getattr(dut, f"s_axis_{name}_{s}") for s in ("tvalid", "tdata", "tlast", "tready"))
        user = getattr(dut, f"s_axis_{name}_tuser", None)

        async def tb(ctx):
            idle = pauses(stream_seed, p)
            for t in ts:
                beats = beats_of(t)
                for k, beat in enumerate(beats):
                    for _ in range(next(idle)):
                        ctx.set(valid, 0)
                        await ctx.tick()
                    ctx.set(valid, 1)
                    ctx.set(data, beat)
                    if user is not None:
                        ctx.set(user, tile_users[t.index]["ab".index(name)])
                    ctx.set(last, k == len(beats) - 1)
                    await ctx.tick().until(ready)
                ctx.set(valid, 0)
            ctx.set(valid, 0)
        return tb

    async def consumer(ctx):
        idle = pauses(seeds[2], p_idle[2])
        wait = next(idle)
        while len(got) < n_results:
            ctx.set(dut.m_axis_c_tready, wait == 0)
            _, _, valid, ready, data, last = await ctx.tick().sample(
                dut.m_axis_c_tvalid, dut.m_axis_c_tready, dut.m_axis_c_tdata, dut.m_axis_c_tlast)
            cycles[0] += 1
            assert cycles[0] < max_cycles, f"timeout after {max_cycles} cycles (seed {seed})"
            if valid and ready:
                assert bool(last) == (len(got) % config.rows == config.rows - 1), \
                    f"tlast wrong on result beat {len(got)} (seed {seed})"
                got.append(data)
                wait = next(idle)
            elif wait:
                wait -= 1
        assert not ctx.get(dut.err_tlast)
        if hasattr(dut, "err_tuser"):
            assert not ctx.get(dut.err_tuser)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer("a", lambda t: t.a_beats, seeds[0], p_idle[0]))
    sim.add_testbench(producer("b", lambda t: t.b_beats, seeds[1], p_idle[1]))
    sim.add_testbench(consumer)
    sim.run()
    return assemble(got, a.shape[0], b.shape[1], config), cycles[0]


def check(config, m, k, n, seed, p_idle=(0.3, 0.3, 0.3), specials=False, max_cycles=200_000,
          **options):
    rng = np.random.default_rng(seed)
    a, b = random_operands(rng, config, m, k, n, specials)
    got, _ = run_accelerator(config, a, b, seed, p_idle, max_cycles, **options)
    want = mac_gemm(a, b, config)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (
        f"{len(bad)} mismatches (FP8MAC_SEED={seed}); first at {tuple(bad[0])}: "
        f"got {int(got[tuple(bad[0])]):#x}, want {int(want[tuple(bad[0])]):#x}")


CASES = [
    # (id, config fields, (M, K, N))
    ("1x1-default", dict(rows=1, cols=1), (2, 70, 1)),
    ("2x3-chunk4-two-adder-pe-outer", dict(rows=2, cols=3, chunk=4, outer_adder="pe"), (3, 10, 5)),
    ("2x3-chunk4-shared", dict(rows=2, cols=3, chunk=4, pe="shared-adder"), (3, 10, 5)),
    ("2x3-inner-stochastic", dict(rows=2, cols=3, chunk=3, inner_rounding="stochastic", rbits=4), (4, 7, 4)),
    ("2x3-shared-both-stochastic", dict(rows=2, cols=3, chunk=3, inner_rounding="stochastic",
                                        pe="shared-adder"), (2, 8, 3)),
    ("4x4-chunk-off", dict(rows=4, cols=4, chunk=None), (4, 9, 4)),
    ("4x4-nearest", dict(rows=4, cols=4, chunk=5, outer_rounding="nearest"), (5, 11, 6)),
    ("2x3-k1", dict(rows=2, cols=3, chunk=2), (5, 1, 7)),
    ("3x2-e4m3-fp32", dict(rows=3, cols=2, chunk=2, in_format="fp8_e4m3", acc_format="fp32"), (3, 5, 2)),
    # Dot widths: K not a multiple of dot (padded with +0 products), chunks of several steps,
    # both step structures (one frame for fp16_ibm, ProductSum + MacUnit for fp32 and the
    # shared adder), stochastic inner and outer rounding.
    ("2x3-dot4-chunk8", dict(rows=2, cols=3, dot=4, chunk=8), (3, 21, 4)),
    ("2x2-dot2-shared", dict(rows=2, cols=2, dot=2, chunk=4, pe="shared-adder"), (3, 11, 3)),
    ("2x3-dot8-both-stochastic", dict(rows=2, cols=3, dot=8, chunk=16, inner_rounding="stochastic"), (2, 37, 3)),
    ("3x2-dot4-chunk-off", dict(rows=3, cols=2, dot=4, chunk=None), (4, 13, 2)),
    ("2x2-dot2-e5m2-fp32", dict(rows=2, cols=2, dot=2, chunk=4, acc_format="fp32"), (2, 9, 3)),
    # One outer adder (and LFSR) per row: short last chunks (K = 13, chunk 4 on 3 columns) and
    # short tiles (K = 2) make the top hold chunk ends apart.
    ("2x3-row-outer-chunk4", dict(rows=2, cols=3, chunk=4, outer_adder="row"), (3, 13, 5)),
    ("3x2-row-outer-k2", dict(rows=3, cols=2, chunk=2, outer_adder="row"), (5, 3, 4)),
    ("2x2-row-outer-dot4-inner-sr", dict(rows=2, cols=2, chunk=8, dot=4, outer_adder="row",
                                         inner_rounding="stochastic"), (3, 21, 3)),
    # Pipeline stages: results unchanged whatever the depth, every PE variant.
    ("2x3-pipeline1", dict(rows=2, cols=3, chunk=4, pipeline=1), (3, 10, 5)),
    ("2x2-pipeline2-shared", dict(rows=2, cols=2, chunk=3, pipeline=2, pe="shared-adder",
                                  inner_rounding="stochastic"), (3, 8, 3)),
    ("3x2-pipeline3-dot4-row", dict(rows=3, cols=2, chunk=8, dot=4, pipeline=3, outer_adder="row"), (4, 19, 3)),
    ("2x2-pipeline1-chunk-off-dot2", dict(rows=2, cols=2, chunk=None, dot=2, pipeline=1), (3, 7, 2)),
]


@pytest.mark.parametrize("name,fields,shape", CASES, ids=[c[0] for c in CASES])
def test_accelerator_matches_model(name, fields, shape, seed):
    check(MacConfig(**fields), *shape, seed=seed)


def test_accelerator_specials(seed):
    """Inf and NaN operands, both PE variants, one product and four per step."""
    for pe in ("two-adder", "shared-adder"):
        check(MacConfig(rows=2, cols=2, chunk=3, pe=pe), 2, 7, 2, seed=seed, specials=True)
        check(MacConfig(rows=2, cols=2, chunk=8, dot=4, pe=pe), 2, 13, 2, seed=seed, specials=True)


def test_accelerator_back_to_back(seed):
    """No pauses at all: full throughput, tiles back to back."""
    check(MacConfig(rows=2, cols=2, chunk=2), 4, 6, 4, seed=seed, p_idle=(0, 0, 0))
    check(MacConfig(rows=2, cols=3, chunk=3, outer_adder="row"), 4, 7, 6, seed=seed, p_idle=(0, 0, 0))


@pytest.mark.parametrize("pe", ["two-adder", "shared-adder"])
def test_result_backpressure_heavy(pe, seed):
    """A slow result consumer stalls the whole array mid-tile; nothing is lost and the LFSRs do
    not draw on stalled cycles (both roundings stochastic, so a stray draw changes results)."""
    cfg = MacConfig(rows=2, cols=3, chunk=2, inner_rounding="stochastic", rbits=4, pe=pe)
    check(cfg, 6, 3, 6, seed=seed, p_idle=(0, 0, 0.9))


@pytest.mark.parametrize("rows,cols,k,chunk,p_idle", [
    (4, 1, 1, None, (0, 0, 0)),        # the smallest array that used to deadlock
    (6, 2, 1, 2, (0, 0, 0)),
    (7, 3, 2, 4, (0, 0, 0)),
    (5, 2, 2, 1, (0.2, 0.2, 0.5)),     # backpressure: the drain falls behind
    (8, 1, 1, 2, (0, 0, 0.7)),
])
def test_tall_array_short_tiles(rows, cols, k, chunk, p_idle, seed):
    """Arrays taller than wide (rows >= cols + 2) with tiles shorter than the array: the tile
    spacing must cover the drain of the tile before last (hw.top.tile_spacing), or a stall
    freezes a row the drain is waiting for and the array deadlocks (a timeout here)."""
    cfg = MacConfig(rows=rows, cols=cols, chunk=chunk)
    check(cfg, 4 * rows, k, 3 * cols, seed=seed, p_idle=p_idle, max_cycles=3_000)


def test_tile_spacing_values():
    assert [tile_spacing(r, 4) for r in (1, 4, 5, 6, 7, 8)] == [4, 4, 4, 5, 5, 6]
    assert tile_spacing(4, 1) == 2 and tile_spacing(16, 16) == 16


@pytest.mark.parametrize("pipeline", [0, 1, 3])
def test_cycles_close_to_ideal(seed, pipeline):
    """Without pauses, a run of T tiles of length K takes about T*K cycles plus one fill and
    drain; pipeline stages add their latency once, not per tile (throughput stays one step per
    cycle)."""
    cfg = MacConfig(rows=2, cols=2, chunk=4, pipeline=pipeline)
    rng = np.random.default_rng(seed)
    a, b = random_operands(rng, cfg, 4, 16, 4)
    _, cycles = run_accelerator(cfg, a, b, seed, (0, 0, 0))
    ideal = 4 * 16 + cfg.rows + cfg.cols + 2 + cfg.rows + pipeline
    assert cycles <= ideal + 2, f"{cycles} cycles, ideal {ideal}"
    # Exactly: one step per cycle (T K), then the last tile's first result cols + 3 + pipeline
    # cycles after its last beat, + 1 with the row's two-stage outer adder (the default here;
    # test_first_result_latency), and its rows result beats.
    assert cfg.outer_placement == "row"
    assert cycles == 4 * 16 + (cfg.cols + 3 + pipeline + 1) + cfg.rows - 1, cycles


@pytest.mark.parametrize("chunk,pipeline,outer", [(None, 0, "auto"), (4, 0, "row"), (4, 0, "pe"),
                                                  (None, 2, "auto"), (4, 3, "row")])
def test_first_result_latency(chunk, pipeline, outer):
    """Row 0's result beat is valid cols + 3 + pipeline cycles after the last operand beat, with
    chunks (in the PE) or without, + 1 with the row's outer adder (two stages): the documented
    latency (``fp8mac.hw.top.first_result_latency``)."""
    from fp8mac.hw.top import first_result_latency

    cfg = MacConfig(rows=3, cols=4, chunk=chunk, pipeline=pipeline, outer_adder=outer)
    dut = Accelerator(cfg)
    (t,) = tiles(np.zeros((3, 5), int), np.zeros((5, 4), int), cfg)
    seen = {}

    async def tb(ctx):
        ctx.set(dut.m_axis_c_tready, 0)
        for k, (a, b) in enumerate(zip(t.a_beats, t.b_beats)):
            ctx.set(dut.s_axis_a_tvalid, 1)
            ctx.set(dut.s_axis_b_tvalid, 1)
            ctx.set(dut.s_axis_a_tdata, a)
            ctx.set(dut.s_axis_b_tdata, b)
            ctx.set(dut.s_axis_a_tlast, k == t.k - 1)
            ctx.set(dut.s_axis_b_tlast, k == t.k - 1)
            await ctx.tick().until(dut.s_axis_a_tready)
        ctx.set(dut.s_axis_a_tvalid, 0)
        ctx.set(dut.s_axis_b_tvalid, 0)
        for cycle in range(1, 20):
            if ctx.get(dut.m_axis_c_tvalid):
                seen["latency"] = cycle
                return
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    assert seen["latency"] == cfg.cols + 3 + pipeline + (cfg.outer_placement == "row")
    assert first_result_latency(cfg) == seen["latency"]


# ---- run-time formats (issue 16) -------------------------------------------------------------------

HFP8 = ("fp8_e4m3", "fp8_e5m2")


@pytest.mark.parametrize("fields", [
    dict(rows=2, cols=3, chunk=4, a_formats=HFP8, b_formats=HFP8, inner_rounding="stochastic"),
    dict(rows=3, cols=2, dot=2, chunk=4, a_formats=HFP8, b_format="fp8_e4m3", outer_adder="row"),
], ids=["2x3-both-streams", "3x2-dot2-a-only-row-outer"])
def test_tile_formats(fields, seed):
    """Every tile in formats of its own (random per tile, both streams), under random pauses,
    back to back without a reset: each tile's results are the model's in its formats
    (``mac_gemm_tile_formats``), specials included."""
    from fp8mac.model.gemm import mac_gemm_tile_formats

    config = MacConfig(**fields)
    rng = np.random.default_rng(seed)
    m, k, n = 2 * config.rows + 1, 9, 3 * config.cols - 1
    a = rng.integers(0, 256, (m, k))
    b = rng.integers(0, 256, (k, n))
    n_tiles = -(-m // config.rows) * -(-n // config.cols)
    users = [tuple(int(rng.integers(len(config.stream_formats(s)))) for s in "ab") for _ in range(n_tiles)]
    assert len(set(users)) > 1, "the draw must switch formats"
    pairs = [(config.stream_formats("a")[i], config.stream_formats("b")[j]) for i, j in users]
    got, _ = run_accelerator(config, a, b, seed, tile_users=users)
    want = mac_gemm_tile_formats(a, b, config, pairs)
    bad = np.argwhere(got != want)
    assert bad.size == 0, (f"{len(bad)} mismatches (FP8MAC_SEED={seed}); first at {tuple(bad[0])}: "
                           f"got {int(got[tuple(bad[0])]):#x}, want {int(want[tuple(bad[0])]):#x}")


E3M4 = FloatFormat(3, 4, 3, "ieee", name="e3m4")


def run_tuser_beats(config, beats):
    """Single beats ``(a_user, b_user, last)`` into a 1 x 1 Accelerator, one at a time; returns
    err_tuser after each."""
    dut = Accelerator(config)
    seen = []

    async def tb(ctx):
        ctx.set(dut.m_axis_c_tready, 1)
        for a_user, b_user, last in beats:
            for s, user in (("a", a_user), ("b", b_user)):
                ctx.set(getattr(dut, f"s_axis_{s}_tvalid"), 1)
                ctx.set(getattr(dut, f"s_axis_{s}_tlast"), last)
                if user is not None:
                    ctx.set(getattr(dut, f"s_axis_{s}_tuser"), user)
            await ctx.tick().until(dut.s_axis_a_tready)
            ctx.set(dut.s_axis_a_tvalid, 0)
            ctx.set(dut.s_axis_b_tvalid, 0)
            for _ in range(tile_spacing(1, 1)):
                await ctx.tick()
            seen.append(ctx.get(dut.err_tuser))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return seen


def test_tuser_change_within_a_tile_sets_err_tuser():
    """Formats may change from tile to tile; a tuser change within a tile (here B's, at the
    second beat) raises err_tuser, which stays set."""
    config = MacConfig(rows=1, cols=1, chunk=None, a_formats=HFP8, b_formats=HFP8)
    beats = [(1, 0, 0), (1, 0, 1),            # a clean tile: (1, 0) throughout
             (0, 1, 0), (0, 1, 1),            # the next tile in other formats
             (1, 1, 0), (1, 0, 1), (0, 0, 1)]  # B changes within the tile; sticky
    assert run_tuser_beats(config, beats) == [0, 0, 0, 0, 0, 1, 1]


def test_tuser_beyond_the_set_sets_err_tuser():
    """Three formats on A's 2-bit tuser: index 3 names none (a one-beat tile); B has one format
    and no tuser."""
    config = MacConfig(rows=1, cols=1, chunk=None, a_formats=("fp8_e4m3", "fp8_e5m2", E3M4),
                       b_format="fp8_e4m3")
    widths = {p["name"]: p["width"] for p in port_list(config)}
    assert widths["s_axis_a_tuser"] == 2 and "s_axis_b_tuser" not in widths
    assert run_tuser_beats(config, [(2, None, 1), (3, None, 1), (0, None, 1)]) == [0, 1, 1]
