"""The top's contract as the README's interface section states it, one test per promise.

In Amaranth's simulator, cycle by cycle, a host that only follows the port table:

* the top enforces the tile spacing itself: on a tile's last beat it holds ``tready`` low until
  :func:`~fp8mac.hw.top.tile_spacing` *array* cycles (clock cycles in which the array is not
  stalled) have passed since the previous tile's last beat, and takes it in the first such cycle;
  under result backpressure that is more clock cycles than the spacing; tiles whose K equals the
  spacing do not stall at all;
* A's ``tlast`` ends the dot product when A's and B's disagree; ``err_tlast`` rises on such a beat
  and stays high through later tiles until reset, which clears it;
* a one-cycle reset in the middle of tiles and pending results drops them and restarts the
  design: outputs idle from that edge, and the next GEMM (stochastic rounding, so the LFSRs must be
  reseeded) equals a fresh ``mac_gemm``;
* every NaN result is the accumulator format's canonical NaN (``FloatFormat.nan_code``), whatever
  the NaN operands' codes and signs.

The array's stall is read from inside (``MacArray.stall``); everything else is at the ports.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from fp8mac.hw.top import Accelerator, tile_spacing
from fp8mac.model.config import MacConfig
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.tiler import assemble, tiles


class Host:
    """The top in a simulation with one host process that sets the ports for each cycle.

    ``await host.cycle(ctx, ...)`` drives one clock cycle and returns what the edge saw: the
    handshakes, the result beat, ``err_tlast`` and the array's ``stall``.
    """

    def __init__(self, config: MacConfig):
        self.config = config
        self.dut = dut = Accelerator(config)
        body = dut.elaborate(None)
        dut._MustUse__silence = True  # elaborated here, simulated through `body`
        array = body._named_submodules["array"]  # white box: the array's stall
        self.stall = (array[0] if isinstance(array, tuple) else array).stall
        self.top = Module()
        self.top.domains.sync = self.domain = ClockDomain("sync")
        self.top.submodules.acc = body

    async def cycle(self, ctx, a=None, b=None, c_ready=True, rst=False) -> dict:
        """One cycle. ``a``, ``b``: ``(tdata, tlast)`` offered, or None (tvalid low)."""
        d = self.dut
        ctx.set(self.domain.rst, rst)
        for stream, beat in (("a", a), ("b", b)):
            ctx.set(getattr(d, f"s_axis_{stream}_tvalid"), beat is not None)
            if beat is not None:
                ctx.set(getattr(d, f"s_axis_{stream}_tdata"), beat[0])
                ctx.set(getattr(d, f"s_axis_{stream}_tlast"), beat[1])
        ctx.set(d.m_axis_c_tready, c_ready)
        *_, a_ready, b_ready, stall, c_valid, c_data, c_last, err = await ctx.tick().sample(
            d.s_axis_a_tready, d.s_axis_b_tready, self.stall, d.m_axis_c_tvalid,
            d.m_axis_c_tdata, d.m_axis_c_tlast, d.err_tlast)
        return dict(taken=a is not None and b is not None and bool(a_ready) and not rst,
                    a_ready=bool(a_ready), b_ready=bool(b_ready), stall=bool(stall),
                    result=(c_data, bool(c_last)) if c_valid and c_ready and not rst else None,
                    c_valid=bool(c_valid), err=bool(err))

    def run(self, script):
        sim = Simulator(self.top)
        sim.add_clock(1e-8)
        sim.add_testbench(script)
        sim.run()


def operands(rng, config, m, k, n):
    fmt = config.in_format
    finite = lambda c: np.where(np.isfinite(fmt.decode(c)), c, 0)  # noqa: E731
    return (finite(rng.integers(0, 1 << fmt.width, (m, k))),
            finite(rng.integers(0, 1 << fmt.width, (k, n))))


async def stream(host, ctx, a, b, c_ready=lambda t: True, max_cycles=5000, log=None):
    """Offer the tiles of ``a @ b`` back to back (tvalid always high) and collect the results;
    returns the result matrix. ``log`` gets each cycle's record (with the beat offered)."""
    cfg = host.config
    ts = tiles(a, b, cfg)
    beats = [(ab, k == len(t.a_beats) - 1) for t in ts for k, ab in enumerate(zip(t.a_beats, t.b_beats))]
    want_rows = len(ts) * cfg.rows
    got, i = [], 0
    for t in range(max_cycles):
        offer = beats[i] if i < len(beats) else None
        rec = await host.cycle(ctx, a=offer and (offer[0][0], offer[1]),
                               b=offer and (offer[0][1], offer[1]), c_ready=c_ready(t))
        rec["offer"] = None if offer is None else (i, offer[1])
        if log is not None:
            log.append(rec)
        if rec["taken"]:
            i += 1
        if rec["result"] is not None:
            got.append(rec["result"])
        if len(got) == want_rows:
            break
    assert len(got) == want_rows, f"{len(got)} of {want_rows} result rows in {max_cycles} cycles"
    for r, (_, last) in enumerate(got):
        assert last == (r % cfg.rows == cfg.rows - 1), f"tlast on result row {r}"
    return assemble([data for data, _ in got], a.shape[0], b.shape[1], cfg)


SPACING_CONFIGS = [MacConfig(rows=4, cols=4, chunk=None), MacConfig(rows=5, cols=2, chunk=None)]


@pytest.mark.parametrize("config,backpressure", [(SPACING_CONFIGS[0], False), (SPACING_CONFIGS[1], True)],
                         ids=["4x4-free", "5x2-backpressure"])
def test_top_enforces_tile_spacing_in_array_cycles(config, backpressure, seed):
    """K = 1 tiles offered back to back: each last beat is held (tready low) until exactly
    ``tile_spacing`` non-stalled cycles have passed since the previous one was taken."""
    G = tile_spacing(config.rows, config.cols)
    rng = np.random.default_rng(seed)
    a, b = operands(rng, config, 3 * config.rows, 1, 3 * config.cols)  # 9 tiles of K = 1
    # Backpressure: the result stream blocked for long stretches, so the array stalls.
    ready = (rng.random(5000) < 0.25) if backpressure else np.ones(5000, bool)
    host, log = Host(config), []

    async def script(ctx):
        got = await stream(host, ctx, a, b, c_ready=lambda t: bool(ready[t]), log=log)
        np.testing.assert_array_equal(got, mac_gemm(a, b, config))

    host.run(script)
    taken = [t for t, rec in enumerate(log) if rec["taken"]]
    assert len(taken) == 9
    for rec in log:
        assert rec["a_ready"] == rec["b_ready"]  # both streams offered: taken together
        if rec["stall"]:
            assert not rec["taken"], "a beat entered a stalled array"
        elif rec["offer"] is not None and not rec["taken"]:
            assert rec["offer"][1], "a non-last beat was refused while the array could step"
    assert taken[0] == 0  # the first tile after reset waits for nothing
    clock_gaps = []
    for t0, t1 in zip(taken, taken[1:]):
        array_cycles = sum(not log[t]["stall"] for t in range(t0 + 1, t1 + 1))
        assert array_cycles == G, f"tile ends at {t0}, {t1}: {array_cycles} array cycles, spacing {G}"
        clock_gaps.append(t1 - t0)
    if backpressure:  # a host counting clock cycles would have been held longer than G
        assert max(clock_gaps) > G, clock_gaps


@pytest.mark.parametrize("config", [MacConfig(rows=4, cols=4, chunk=None), MacConfig(rows=2, cols=2, chunk=4),
                                    MacConfig(rows=3, cols=5, chunk=8)], ids=["4x4", "2x2-chunk4", "3x5-chunk8"])
def test_tiles_of_k_equal_to_the_spacing_do_not_stall(config, seed):
    """Tiles whose K is the spacing, results taken at once: no stall at all, a beat every cycle
    (a PE's result register drained in the cycle it is written again takes the new result)."""
    G = tile_spacing(config.rows, config.cols)
    rng = np.random.default_rng(seed)
    a, b = operands(rng, config, 3 * config.rows, G, 3 * config.cols)
    host, log = Host(config), []

    async def script(ctx):
        got = await stream(host, ctx, a, b, log=log)
        np.testing.assert_array_equal(got, mac_gemm(a, b, config))

    host.run(script)
    taken = [t for t, rec in enumerate(log) if rec["taken"]]
    stalled = sum(rec["stall"] for rec in log[:taken[-1] + 1])
    assert stalled == 0 and taken == list(range(len(taken))), f"{stalled} stalled cycles"


def test_a_tlast_ends_the_tile_err_tlast_sticky_until_reset(seed):
    """B's tlast on beat 1, A's on beat 3: the tile is K = 4 (A's); err_tlast rises on that beat,
    stays high through an agreeing tile, and a one-cycle reset clears it."""
    config = MacConfig(rows=2, cols=3, chunk=2, outer_rounding="nearest")
    rng = np.random.default_rng(seed)
    a1, b1 = operands(rng, config, 2, 4, 3)
    a2, b2 = operands(rng, config, 2, 3, 3)
    host, errs = Host(config), []

    async def script(ctx):
        await host.cycle(ctx, rst=True)
        (t1,), (t2,) = tiles(a1, b1, config), tiles(a2, b2, config)
        beats = ([(x, y, k == 3, k == 1) for k, (x, y) in enumerate(zip(t1.a_beats, t1.b_beats))]
                 + [(x, y, k == 2, k == 2) for k, (x, y) in enumerate(zip(t2.a_beats, t2.b_beats))])
        got, i = [], 0
        for _ in range(300):
            beat = beats[i] if i < len(beats) else None
            rec = await host.cycle(ctx, a=beat and (beat[0], beat[2]), b=beat and (beat[1], beat[3]))
            errs.append((i, rec["err"]))
            i += rec["taken"]
            if rec["result"] is not None:
                got.append(rec["result"][0])
            if len(got) == 4:
                break
        assert len(got) == 4
        np.testing.assert_array_equal(assemble(got[:2], 2, 3, config), mac_gemm(a1, b1, config))
        np.testing.assert_array_equal(assemble(got[2:], 2, 3, config), mac_gemm(a2, b2, config))
        for _ in range(5):
            assert (await host.cycle(ctx))["err"], "err_tlast fell without a reset"
        await host.cycle(ctx, rst=True)
        rec = await host.cycle(ctx)
        assert not rec["err"], "a one-cycle reset did not clear err_tlast"

    host.run(script)
    # err_tlast is low until the edge that takes beat 1 (the first disagreement), high after.
    first = next(n for n, (i, err) in enumerate(errs) if err)
    assert errs[first - 1][0] == 1 and errs[first][0] == 2
    assert all(err for _, err in errs[first:])


def test_one_cycle_reset_mid_tile_restarts_as_fresh(seed):
    """One tile taken and its results pending, the next half sent: rst for one cycle; the
    outputs are idle from that edge and a following GEMM equals a fresh mac_gemm (stochastic
    inner and outer rounding: the LFSRs were reseeded)."""
    config = MacConfig(rows=2, cols=2, chunk=4, inner_rounding="stochastic",
                       outer_rounding="stochastic", rbits=4)
    rng = np.random.default_rng(seed)
    a0, b0 = operands(rng, config, 4, 10, 2)
    a, b = operands(rng, config, 4, 10, 2)
    host = Host(config)

    async def script(ctx):
        ts = tiles(a0, b0, config)
        beats = [(x, y, k == len(t.a_beats) - 1) for t in ts
                 for k, (x, y) in enumerate(zip(t.a_beats, t.b_beats))][:15]
        i = 0
        while i < len(beats):  # results blocked: they stay pending in the array
            x, y, last = beats[i]
            i += (await host.cycle(ctx, a=(x, last), b=(y, last), c_ready=False))["taken"]
        assert (await host.cycle(ctx, c_ready=False))["c_valid"], "no result pending"
        await host.cycle(ctx, rst=True, c_ready=False)
        for _ in range(3):
            rec = await host.cycle(ctx, c_ready=True)
            assert not rec["c_valid"] and not rec["err"], "outputs not idle after reset"
        got = await stream(host, ctx, a, b)
        np.testing.assert_array_equal(got, mac_gemm(a, b, config))

    host.run(script)


NAN_CONFIGS = [MacConfig(rows=2, cols=2, chunk=3),  # fp8_e5m2 (ieee) -> fp16_ibm
               MacConfig(rows=2, cols=2, chunk=None, in_format="fp8_e4m3", acc_format="fp32",
                         outer_rounding="nearest")]


@pytest.mark.parametrize("config", NAN_CONFIGS, ids=lambda c: f"{c.in_format.name}-{c.acc_format.name}")
def test_nan_results_are_the_canonical_nan(config, seed):
    """NaN operands of every NaN code and sign, inf * 0 and inf - inf: each NaN result is
    acc_format.nan_code (and all results are the model's)."""
    fmt, acc = config.in_format, config.acc_format
    rng = np.random.default_rng(seed)
    codes = np.arange(1 << fmt.width)
    nans = codes[np.isnan(fmt.decode(codes))]
    assert (nans >> (fmt.width - 1)).any() and not (nans >> (fmt.width - 1)).all()  # both signs
    a, b = operands(rng, config, 6, 5, 4)
    a[0, 1] = nans[0]                     # a positive NaN
    a[2, 3] = nans[-1]                    # a negative NaN
    b[2, 0] = nans[len(nans) // 2]
    if fmt.specials == "ieee":            # inf * 0 and inf + (-inf)
        inf, one = (int(c) for c in fmt.encode([np.inf, 1.0]))
        sign = 1 << (fmt.width - 1)
        a[4, 0], b[0, 3] = inf, 0
        a[5, 0], b[0, 1], a[5, 1], b[1, 1] = inf, one, inf | sign, one
    host = Host(config)

    async def script(ctx):
        got = await stream(host, ctx, a, b)
        want = mac_gemm(a, b, config)
        np.testing.assert_array_equal(got, want)
        nan = np.isnan(acc.decode(got))
        assert nan.sum() >= 3, "the operands made too few NaN results"
        assert (got[nan] == acc.nan_code).all(), sorted({hex(int(c)) for c in got[nan]})

    host.run(script)
