"""cocotb tests of the generated accelerator: real layer workloads, bit for bit against mac_gemm.

Run by ``tests/test_sim_accelerator.py`` (and :func:`fp8mac.sim.accel_bench.run_gemm_on_simulator`)
through :func:`fp8mac.sim.runner.build_and_test`, on Icarus and Verilator. The design is described
by its ``manifest.json`` (``FP8MAC_MANIFEST``); the seed is ``FP8MAC_SEED``.

- ``workloads``: each workload named in ``FP8MAC_WORKLOADS`` (:mod:`fp8mac.sim.workloads`, size
  ``FP8MAC_SIZE``; on a design with run-time formats each in its
  :func:`~fp8mac.sim.workloads.workload_formats`, so the MLP's GEMMs make an HFP8 training step)
  after a reset, with the next pause set of
  :data:`~fp8mac.sim.accel_bench.PAUSE_SETS` (or ``FP8MAC_PAUSES=a,b,c`` for all), every result
  code checked; records, per workload, the errors against FP32 and the rate.
- ``gemm``: the operands in ``FP8MAC_GEMM_IN`` (an ``.npz`` with ``a`` and ``b``), checked, results
  to ``FP8MAC_GEMM_OUT``, with the simulator-alone measurement.
- ``fault_flipped_bit``, ``fault_dropped_beat``: a fault injected between the monitor and the
  scoreboard must be caught, with a message naming the tile, element and seed.
- ``reset_mid_tile``: reset in the middle of a tile, then a new GEMM: exact, as a fresh mac_gemm.
- ``tuser_mid_tile`` (designs with run-time formats): a tuser change within a tile sets
  ``err_tuser``, a reset clears it.
- ``throughput``: a GEMM at full rate, then the simulator alone for as many cycles; records
  simulated MAC/s and the share of time spent in Python.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from fp8mac.sim.accel_bench import PAUSE_SETS, AccelBench, GemmRun
from fp8mac.sim.runner import record_metric, test_seed
from fp8mac.sim.scoreboard import ScoreboardMismatch
from fp8mac.sim.workloads import QUICK_WORKLOADS, build_workload, errors, workload_formats

def _pauses_from_env():
    text = os.environ.get("FP8MAC_PAUSES", "").strip()
    return tuple(p.strip() for p in text.split(",")) if text else None


async def _bench(dut) -> AccelBench:
    tb = AccelBench(dut, seed=test_seed())
    forced = _pauses_from_env()
    if forced:
        tb.set_pauses(*forced)
    await tb.reset()
    return tb


def _stats(run, sim_only=None) -> dict:
    """A run's statistics; with ``sim_only`` (wall, CPU seconds of the simulator alone for as many
    cycles), Python's share of the run's time."""
    stats = dict(mkn=list(run.shape), tiles=run.tiles, cycles=run.cycles, macs=run.macs,
                 seconds=run.seconds, cpu_seconds=run.cpu_seconds,
                 macs_per_second=run.macs / run.seconds,
                 macs_per_cpu_second=run.macs / run.cpu_seconds if run.cpu_seconds else None,
                 cycles_per_second=run.cycles / run.seconds, pauses=list(run.pauses))
    if sim_only is not None:
        wall, cpu = sim_only
        stats.update(sim_only_seconds=wall, sim_only_cpu_seconds=cpu,
                     python_share=min(1.0, max(0.0, 1.0 - wall / run.seconds)),
                     python_share_cpu=min(1.0, max(0.0, 1.0 - cpu / run.cpu_seconds))
                     if run.cpu_seconds else None)
    return stats


@cocotb.test()
async def workloads(dut):
    """Every workload of ``FP8MAC_WORKLOADS``, each after a reset, bit for bit."""
    tb = await _bench(dut)
    names = os.environ.get("FP8MAC_WORKLOADS", ",".join(QUICK_WORKLOADS)).split(",")
    names = [name.strip() for name in names if name.strip()]
    size = os.environ.get("FP8MAC_SIZE", "quick")
    forced = _pauses_from_env()
    rows = []
    for i, name in enumerate(names):
        formats = workload_formats(name, tb.config, tb.seed)  # run-time formats: this GEMM's
        layer = build_workload(name, tb.config, tb.seed, size, formats)
        if formats is not None:
            layer.name += f" [{formats[0].label} x {formats[1].label}]"
        if not forced:
            tb.set_pauses(*PAUSE_SETS[i % len(PAUSE_SETS)])
        await tb.reset()
        run = await tb.run_gemm(layer.a_codes, layer.b_codes, name=layer.name, formats=formats,
                                scales=layer.scales)
        exact = bool(np.array_equal(run.codes, layer.codes))  # the scoreboard already checked
        assert exact, f"{layer.name}: results differ from LayerGemm.codes (FP8MAC_SEED={tb.seed})"
        row = dict(workload=layer.name, shape="x".join(map(str, layer.shape)), exact=exact,
                   **errors(layer, run.codes, tb.gemm_config(formats)), **_stats(run))
        rows.append(row)
        dut._log.info("%-30s %-9s exact; %5d cycles in %.2f s (%.2f s CPU), pauses %s; error "
                      "vs FP32 (same FP8 operands) %.2e, plain FP16 %.2e", layer.name, row["shape"],
                      run.cycles, run.seconds, run.cpu_seconds, "/".join(run.pauses),
                      row["vs_fp32_quantized"], row["plain_vs_fp32_quantized"])
    record_metric("workloads", rows)


@cocotb.test()
async def gemm(dut):
    """The GEMM in ``FP8MAC_GEMM_IN``, checked; codes to ``FP8MAC_GEMM_OUT``; statistics."""
    tb = await _bench(dut)
    with np.load(os.environ["FP8MAC_GEMM_IN"]) as operands:
        a, b = operands["a"], operands["b"]
    run = await tb.run_gemm(a, b, name="gemm")
    sim_only = await tb.simulator_alone(run.cycles)
    np.savez(os.environ["FP8MAC_GEMM_OUT"], codes=run.codes)
    record_metric("gemm", _stats(run, sim_only))


@cocotb.test()
async def throughput(dut):
    """A workload at full rate (no pauses), repeated (after a reset each time) until
    ``FP8MAC_RATE_SECONDS`` (default 2) of wall time have passed, then the simulator alone for as
    many cycles; records the rates and Python's share of the time."""
    tb = await _bench(dut)
    tb.set_pauses("none", "none", "none")
    layer = build_workload(os.environ.get("FP8MAC_RATE_WORKLOAD", "mlp.fc1.forward"), tb.config,
                           tb.seed, os.environ.get("FP8MAC_SIZE", "quick"))
    min_seconds = float(os.environ.get("FP8MAC_RATE_SECONDS", "2"))
    runs = []
    while not runs or sum(r.seconds for r in runs) < min_seconds:
        await tb.reset()
        runs.append(await tb.run_gemm(layer.a_codes, layer.b_codes, name=layer.name))
    m, k, n = runs[0].shape
    run = GemmRun(layer.name, runs[0].codes, (m * len(runs), k, n), runs[0].tiles * len(runs),
                  sum(r.cycles for r in runs), sum(r.seconds for r in runs),
                  sum(r.cpu_seconds for r in runs), runs[0].pauses)  # all repeats as one GEMM
    sim_only = await tb.simulator_alone(run.cycles)
    stats = _stats(run, sim_only)
    dut._log.info("%s x %d: %d cycles in %.2f s (%.2f s CPU): %.0f cycles/s, %.3g MAC/s; "
                  "simulator alone %.2f s (%.2f s CPU): Python share %.0f%% (%.0f%% of CPU)",
                  layer.name, len(runs), run.cycles, run.seconds, run.cpu_seconds,
                  stats["cycles_per_second"], stats["macs_per_second"], *sim_only,
                  100 * stats["python_share"], 100 * (stats["python_share_cpu"] or 0))
    record_metric("throughput", dict(workload=layer.name, repeats=len(runs), **stats))


class _Fault:
    """Damages result beat ``index`` on its way from the monitor to the scoreboard."""

    def __init__(self, index: int, kind: str, bit: int = 0):
        self.index, self.kind, self.bit = index, kind, bit

    def __call__(self, i, tdata, tlast):
        if i != self.index:
            return [(tdata, tlast)]
        return [] if self.kind == "drop" else [(tdata ^ (1 << self.bit), tlast)]


async def _faulty_run(tb, fault, layer):
    tb.fault = fault
    try:
        await tb.run_gemm(layer.a_codes, layer.b_codes, name=layer.name)
    except ScoreboardMismatch as exc:
        return str(exc)
    finally:
        tb.fault = None
    return None


@cocotb.test()
async def fault_flipped_bit(dut):
    """One flipped bit in one result beat fails the scoreboard, naming tile, element and seed."""
    tb = await _bench(dut)
    layer = build_workload("random", tb.config, tb.seed)
    cfg = tb.config
    rng = np.random.default_rng(tb.seed)
    n_beats = -(-layer.shape[0] // cfg.rows) * -(-layer.shape[2] // cfg.cols) * cfg.rows
    beat = int(rng.integers(n_beats))
    lane = int(rng.integers(cfg.cols))
    bit = lane * cfg.acc_format.width + int(rng.integers(cfg.acc_format.width))
    message = await _faulty_run(tb, _Fault(beat, "flip", bit), layer)
    assert message is not None, f"bit {bit} of result beat {beat} flipped and nobody noticed"
    dut._log.info("caught as expected: %s", message)
    tile, row = divmod(beat, cfg.rows)
    assert f"beat {beat} of {n_beats} differs" in message, message
    assert f"tile {tile} " in message and f"element (row {row}, col {lane})" in message, message
    assert f"lane {lane}: got 0x" in message and "expected 0x" in message, message
    assert f"FP8MAC_SEED={tb.seed}" in message, message


@cocotb.test()
async def fault_dropped_beat(dut):
    """A result beat lost on the way to the scoreboard: the last one is caught by the beat count,
    one in the middle by the next comparison."""
    tb = await _bench(dut)
    layer = build_workload("random", tb.config, tb.seed)
    cfg = tb.config
    n_beats = -(-layer.shape[0] // cfg.rows) * -(-layer.shape[2] // cfg.cols) * cfg.rows
    message = await _faulty_run(tb, _Fault(n_beats - 1, "drop"), layer)
    assert message is not None, "the last result beat was dropped and nobody noticed"
    dut._log.info("caught as expected: %s", message)
    assert f"received {n_beats - 1} beats, expected {n_beats}" in message, message
    assert f"FP8MAC_SEED={tb.seed}" in message, message
    # The DUT itself is fine: the same GEMM passes right after a reset.
    await tb.reset()
    await tb.run_gemm(layer.a_codes, layer.b_codes, name=layer.name)
    if n_beats > 1:
        await tb.reset()
        message = await _faulty_run(tb, _Fault(0, "drop"), layer)
        assert message is not None, "the first result beat was dropped and nobody noticed"
        assert "beat 0 of" in message, message


@cocotb.test()
async def reset_mid_tile(dut):
    """Reset while a GEMM is in the middle of a tile (operands half in, results pending), then a
    new GEMM: its results are a fresh mac_gemm's (LFSRs reseeded, nothing left over)."""
    tb = await _bench(dut)
    first = build_workload("random", tb.config, tb.seed)
    second = build_workload("mlp.fc2.backward", tb.config, tb.seed)
    tb.set_pauses("random", "random", "random")
    await tb.reset()
    tb.start_gemm(first.a_codes, first.b_codes, name="aborted")
    k = -(-first.shape[1] // tb.config.dot)  # beats per tile
    rng = np.random.default_rng(tb.seed)
    # Into the second tile: the first tile's results may be pending, the second tile half in.
    target = k + 1 + int(rng.integers(max(k // 2, 1)))
    for _ in range(1000 * k):
        if tb.a.sent >= target:
            break
        await ClockCycles(dut.clk, 1)
    sent = tb.a.sent
    assert sent == target, f"only {sent} of {target} A beats went in before the timeout"
    dut._log.info("reset after %d of the aborted GEMM's A beats (%d per tile)", sent, k)
    await tb.reset()
    run = await tb.run_gemm(second.a_codes, second.b_codes, name=second.name)
    assert np.array_equal(run.codes, second.codes)


@cocotb.test()
async def tuser_mid_tile(dut):
    """Run-time formats only: a tile whose second beat carries another tuser on a stream sets
    the sticky ``err_tuser`` (and not ``err_tlast``); a reset clears it, and the next GEMM, in
    formats other than the design's default, is exact."""
    tb = await _bench(dut)
    cfg = tb.config
    stream = "a" if len(cfg.stream_formats("a")) > 1 else "b"
    assert len(cfg.stream_formats(stream)) > 1, "tuser_mid_tile needs a design with run-time formats"
    users = {"a": [0, 0], "b": [0, 0]}
    users[stream] = [0, 1]
    await tb.reset()
    tb.c.set_callback(lambda tdata, tlast: None)  # the bad tile's results are not checked
    tb.a.send_nowait([0, 0], [0, 1], users["a"])
    tb.b.send_nowait([0, 0], [0, 1], users["b"])
    await tb.a.wait()
    await tb.b.wait()
    await ClockCycles(dut.clk, 2)
    assert int(dut.err_tuser.value) == 1, f"err_tuser stayed low after a tuser change within a tile on {stream}"
    assert int(dut.err_tlast.value) == 0
    await tb.reset()
    assert int(dut.err_tuser.value) == 0, "reset did not clear err_tuser"
    formats = tuple(cfg.stream_formats(s)[-1] for s in "ab")
    layer = build_workload("random", cfg, tb.seed, formats=formats)
    run = await tb.run_gemm(layer.a_codes, layer.b_codes, name="after err_tuser", formats=formats)
    assert np.array_equal(run.codes, layer.codes)
