"""The generated accelerator's Verilog on Icarus and Verilator, bit for bit against mac_gemm.

Each case generates a design with :func:`fp8mac.hw.generate.generate` into ``build/designs/``
(cached), builds it (cached) and runs the cocotb tests of :mod:`fp8mac.sim.tb_accelerator`:
layer workloads of the digits MLP (forward, backward, weight gradient), an im2col convolution,
random and corner-value GEMMs with ragged shapes, under seeded valid/ready pause patterns; faults
that the checks must catch; a reset in the middle of a tile. Each case prints its error table
(the hardware's FP8/FP16 results against FP32); run pytest with ``-s`` to see it.

Tiers: the quick one (``make test``) runs two small designs with a few small workloads on both
simulators. ``FP8MAC_TIER=full`` (``make regress``) runs more shapes, PE variants and rounding
modes, every workload (at the larger ``full`` size on Verilator; Icarus, about 100 times slower
on these designs, keeps the ``quick`` size), ``FP8MAC_SEEDS`` seeds per case (default 3), and the
throughput measurement on an 8 x 8 array. Each case also writes its table to
``build/sim/tables/``.

Replay: every run prints ``FP8MAC_SEED=<n>  (<sim>, ...)``; ``FP8MAC_SEED=<n>`` replays it (seed
number r of a case uses ``FP8MAC_SEED + r``, so select ``-k seed0`` to replay any of them with its
printed seed). ``WAVES=1`` records FST waves and prints their path; ``SIM=icarus`` or
``SIM=verilator`` runs one simulator only.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fp8mac.model.config import MacConfig
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.accel_bench import (MANIFEST_ENV, build_args, design_name, ensure_design,
                                    run_gemm_on_simulator, simulator_throughput)
from fp8mac.sim.runner import SIMULATORS, SimulationFailed, build_and_test, build_root
from fp8mac.sim.workloads import HFP8_STEP, QUICK_WORKLOADS, WORKLOADS, error_table

TIER = os.environ.get("FP8MAC_TIER", "quick").strip().lower() or "quick"
if TIER not in ("quick", "full"):
    raise ValueError(f"FP8MAC_TIER must be quick or full, not {TIER!r}")
SIMS = (os.environ["SIM"].strip().lower(),) if os.environ.get("SIM", "").strip() else SIMULATORS
N_SEEDS = int(os.environ.get("FP8MAC_SEEDS", "3")) if TIER == "full" else 1

# (id, MacConfig fields). Small arrays keep the Verilator builds short; between them the designs
# cover both PE variants, both outer roundings, inner stochastic rounding, chunking off, dot
# widths 1 to 8 (both step structures), the row outer adder, pipeline depths 1-3, several array
# shapes and chunk sizes, and mixed operand formats (HFP8's backward GEMM: E5M2 x E4M3).
HFP8 = ("fp8_e4m3", "fp8_e5m2")
QUICK_DESIGNS = [
    ("2x4-dot4-chunk16-row-outer-sr", dict(rows=2, cols=4, dot=4, chunk=16, outer_adder="row")),
    ("3x2-two-adder-pe-outer-chunk8-inner-sr-outer-nearest-pipeline1",
     dict(rows=3, cols=2, chunk=8, inner_rounding="stochastic", outer_rounding="nearest", rbits=4,
          seed=7, outer_adder="pe", pipeline=1)),
    # HFP8 on one array: both streams select E4M3 or E5M2 per tile (tuser); the MLP workloads
    # run as a training step, each GEMM in its HFP8 formats (sim/workloads.HFP8_FORMATS).
    ("2x3-hfp8-runtime-dot2-chunk8", dict(rows=2, cols=3, dot=2, chunk=8, a_formats=HFP8,
                                          b_formats=HFP8, inner_rounding="stochastic")),
]
# Block-scaled designs (issue 19): the digits MLP's training-step GEMMs (forward, backward,
# weight gradient; one layer's in the quick tier), block-quantized, against block_gemm.
BLOCK_DESIGNS = [
    ("2x2-mxfp4-dot8-chunk64-inner-sr", dict(rows=2, cols=2, a_block="mxfp4", dot=8, chunk=64,
                                             inner_rounding="stochastic")),
    ("2x2-mxfp8-e4m3-x-e5m2-dot8-chunk32", dict(rows=2, cols=2, a_block="mxfp8_e4m3", b_block="mxfp8_e5m2",
                                                dot=8, chunk=32)),
]
FULL_BLOCK_DESIGNS = BLOCK_DESIGNS + [
    ("2x3-nvfp4-dot16-chunk32-shared", dict(rows=2, cols=3, a_block="nvfp4", dot=16, chunk=32,
                                            pe="shared-adder", inner_rounding="stochastic")),
]
FULL_DESIGNS = QUICK_DESIGNS + [
    ("2x3-e5m2-x-e4m3-dot2-chunk8", dict(rows=2, cols=3, dot=2, chunk=8, a_format="fp8_e5m2",
                                         b_format="fp8_e4m3", inner_rounding="stochastic")),
    ("3x3-hfp8-runtime-a-only-row-outer", dict(rows=3, cols=3, chunk=16, a_formats=HFP8,
                                               b_format="fp8_e4m3", outer_adder="row")),
    ("4x4-two-adder-chunk64-outer-sr", dict(rows=4, cols=4, chunk=64)),
    ("4x4-two-adder-pe-outer-chunk64-outer-sr", dict(rows=4, cols=4, chunk=64, outer_adder="pe")),
    ("4x2-two-adder-chunk4-nearest", dict(rows=4, cols=2, chunk=4, outer_rounding="nearest")),
    ("3x5-two-adder-chunk8-both-sr", dict(rows=3, cols=5, chunk=8, inner_rounding="stochastic",
                                          seed=11)),
    ("2x2-two-adder-chunk-off", dict(rows=2, cols=2, chunk=None)),
    ("2x4-two-adder-chunk16-outer-sr", dict(rows=2, cols=4, chunk=16)),
    ("2x4-two-adder-dot4-chunk16-outer-sr", dict(rows=2, cols=4, dot=4, chunk=16)),
    ("4x4-row-outer-chunk8-both-sr", dict(rows=4, cols=4, chunk=8, outer_adder="row",
                                          inner_rounding="stochastic")),
    ("3x3-two-adder-dot8-chunk64-both-sr", dict(rows=3, cols=3, dot=8, chunk=64,
                                                inner_rounding="stochastic", seed=5)),
    ("2x3-shared-adder-dot2-chunk8", dict(rows=2, cols=3, dot=2, chunk=8, pe="shared-adder")),
    ("2x2-two-adder-dot4-chunk-off-fp32", dict(rows=2, cols=2, dot=4, chunk=None, acc_format="fp32")),
    ("2x3-pipeline2-chunk8-outer-sr", dict(rows=2, cols=3, chunk=8, pipeline=2)),
    ("3x3-pipeline3-dot4-chunk16-shared", dict(rows=3, cols=3, dot=4, chunk=16, pipeline=3,
                                               pe="shared-adder")),
]
DESIGNS = (QUICK_DESIGNS + BLOCK_DESIGNS) if TIER == "quick" else (FULL_DESIGNS + FULL_BLOCK_DESIGNS)

# Hardware bugs found by these tests and not fixed yet: (design id, workload) pairs left out of
# test_accelerator, each with a strict xfail in test_known_hardware_bugs that fails once fixed.
KNOWN_HW_BUGS: dict[tuple[str, str], str] = {}
# Fixed: ("4x2-two-adder-chunk4-nearest", "k1"), a deadlock of arrays with rows >= cols + 2 on
# three or more tiles with K <= cols (fp8mac.hw.top.tile_spacing; tests/test_hw_array.py).


COCOTB_TESTS = ["workloads", "fault_flipped_bit", "fault_dropped_beat", "reset_mid_tile"]
"""The cocotb tests of fp8mac.sim.tb_accelerator that every case runs (in one simulation)."""


def _write_table(name, text):
    path = build_root() / "sim" / "tables" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def run_cocotb(sim, config, testcase, seed, **env):
    """Generate (cached) and build (cached) ``config``'s design and run cocotb tests on it."""
    design = ensure_design(config)
    return build_and_test([design / f"{config.top}.v"], config.top, "fp8mac.sim.tb_accelerator",
                          sim=sim, name=design_name(config), testcase=testcase, seed=seed,
                          build_args=build_args(sim, config),
                          extra_env={MANIFEST_ENV: str(design / "manifest.json"), **env},
                          expect_tests=len(testcase) if isinstance(testcase, list) else 1)


@pytest.mark.parametrize("rep", range(N_SEEDS), ids=[f"seed{r}" for r in range(N_SEEDS)])
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("name,fields", DESIGNS, ids=[d[0] for d in DESIGNS])
def test_accelerator(name, fields, sim, rep, seed):
    """Workloads bit for bit, faults caught, reset mid-tile exact; prints the error table."""
    workloads = QUICK_WORKLOADS if TIER == "quick" else tuple(WORKLOADS)
    workloads = tuple(w for w in workloads if (name, w) not in KNOWN_HW_BUGS)
    size = "full" if TIER == "full" and sim == "verilator" else "quick"
    config = MacConfig(**fields)
    tests = COCOTB_TESTS + (["tuser_mid_tile"] if config.runtime_formats else [])
    if config.blocks:  # a training step's GEMMs, block-quantized (the other tests send plain codes)
        # The quick tier runs one layer's training step (its forward, backward and weight-gradient
        # GEMMs), the full tier both layers'.
        workloads = tuple(w for w in HFP8_STEP if "fc2" in w) if TIER == "quick" else HFP8_STEP
        tests = ["workloads"]
    results = run_cocotb(sim, config, tests, (seed + rep) % 2**32,
                         FP8MAC_WORKLOADS=",".join(workloads), FP8MAC_SIZE=size)
    rows = results.metrics["workloads"]
    assert [r["exact"] for r in rows] == [True] * len(workloads)
    table = (f"{sim}, {name}, {size} workloads (FP8MAC_SEED={results.seed}; build "
             f"{results.build_seconds:.1f} s, run {results.test_seconds:.1f} s):\n\n"
             f"{error_table(rows)}\n")
    _write_table(f"{name}-{sim}-seed{rep}", table)
    print("\n" + table)


_BUGS_HERE = [(d, w, why) for (d, w), why in KNOWN_HW_BUGS.items() if d in dict(DESIGNS)]
if _BUGS_HERE:
    @pytest.mark.parametrize("design,workload", [
        pytest.param(d, w, marks=pytest.mark.xfail(strict=True, raises=SimulationFailed,
                                                   reason=why), id=f"{d}-{w}")
        for d, w, why in _BUGS_HERE])
    def test_known_hardware_bugs(design, workload, seed):
        """Each known hardware bug, alone, at full rate (strict xfail: once the bug is fixed
        this fails; then drop the entry from KNOWN_HW_BUGS)."""
        run_cocotb(SIMS[-1], MacConfig(**dict(DESIGNS)[design]), ["workloads"], seed % 2**32,
                   FP8MAC_WORKLOADS=workload, FP8MAC_PAUSES="none,none,none")


def test_run_gemm_on_simulator(seed):
    """The host-side entry point: results equal mac_gemm's, statistics are filled in."""
    config = MacConfig(**QUICK_DESIGNS[0][1])
    fin = config.in_format
    codes = np.arange(1 << fin.width)
    values = np.abs(fin.decode(codes))
    pool = codes[np.isfinite(values) & (values < 64)]
    rng = np.random.default_rng(seed)
    a, b = rng.choice(pool, (5, 21)), rng.choice(pool, (21, 6))
    result, stats = run_gemm_on_simulator(config, a, b, sim=SIMS[-1], seed=seed % 2**32,
                                          design=ensure_design(config),
                                          pauses=("random", "stalls", "random"))
    np.testing.assert_array_equal(result, mac_gemm(a, b, config))
    beats = -(-21 // config.dot)  # operand beats per tile: dot codes per lane and beat
    assert stats["macs"] == 5 * 21 * 6 and stats["tiles"] == 6 and stats["cycles"] >= 6 * beats
    assert stats["seconds"] > 0 and stats["sim_only_seconds"] > 0
    assert 0 <= stats["python_share"] <= 1


def test_run_gemm_on_simulator_checks_the_design():
    """A given design must hold the given configuration."""
    config = MacConfig(**QUICK_DESIGNS[0][1])
    other = ensure_design(MacConfig(**QUICK_DESIGNS[1][1]))
    with pytest.raises(ValueError, match="design: .* holds a different configuration"):
        run_gemm_on_simulator(config, np.zeros((1, 1), int), np.zeros((1, 1), int), design=other)


def test_manifest_mismatch_fails(tmp_path):
    """A manifest that does not describe the Verilog it drives fails the run (port widths)."""
    config = MacConfig(**QUICK_DESIGNS[0][1])
    design = ensure_design(config)
    manifest = json.loads((design / "manifest.json").read_text())
    port = next(p for p in manifest["ports"] if p["name"] == "m_axis_c_tdata")
    port["width"] += config.acc_format.width
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SimulationFailed, match="m_axis_c_tdata is .* wide, manifest.json says"):
        build_and_test([design / f"{config.top}.v"], config.top, "fp8mac.sim.tb_accelerator",
                       sim=SIMS[0], name=design_name(config), testcase="reset_mid_tile",
                       build_args=build_args(SIMS[0], config),
                       extra_env={MANIFEST_ENV: str(tmp_path / "manifest.json")}, seed=1)


if TIER == "full":
    def test_throughput(seed):
        """Simulated MAC/s of one workload on each simulator, and Python's share of the time,
        on the default 8 x 8 array."""
        rows = simulator_throughput(MacConfig(), sims=SIMS, seed=seed % 2**32)
        lines = [f"Throughput, {rows[0]['workload']} on the default {rows[0]['array']} array, "
                 f"no stalls (FP8MAC_SEED={rows[0]['seed']}):", "",
                 "| simulator | cycles | M MAC/s (wall) | M MAC/s (CPU) | cycles/s | "
                 "simulator alone | Python share (wall, CPU) |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['sim']} | {r['cycles']} | {r['macs_per_second'] / 1e6:.3f} | "
                         f"{r['macs_per_cpu_second'] / 1e6:.3f} | {r['cycles_per_second']:.0f} | "
                         f"{r['sim_only_seconds']:.2f} s of {r['seconds']:.2f} s | "
                         f"{100 * r['python_share']:.0f}%, {100 * r['python_share_cpu']:.0f}% |")
            assert r["macs_per_second"] > 0
        _write_table("throughput", "\n".join(lines) + "\n")
        print("\n" + "\n".join(lines))
