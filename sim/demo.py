"""``make demo``: generate the default array, run a real layer on a simulator, check it, report area.

1. ``fp8mac generate`` the default configuration (8 x 8, FP8 e5m2 -> fp16_ibm, chunk 64, nearest
   inner and stochastic outer rounding) into ``build/demo/design/``.
2. Train the digits MLP in FP32 (NumPy, seconds) and take one training step's GEMMs: forward
   ``Y = X W``, backward ``dX = dY W^T`` and weight gradient ``dW = X^T dY`` (K = the batch),
   quantized to FP8.
3. Stream each GEMM through the generated Verilog on Verilator (or Icarus) under cocotb, with
   random pauses on every stream, and compare every result code with the golden model.
4. Report, per GEMM: shape, cycles, simulated MAC/s, the bit-exact verdict, and the error against
   FP32 of the chunked result and of plain (unchunked, nearest) fp16_ibm accumulation.
5. Run one whole training step on the layer engine (``--top-kind engine``): the five GEMMs from
   its buffers, chained through the host's element-wise work, and the stochastic-rounding FP16
   weight update of both weight matrices in RTL, every code against the golden model
   (:mod:`fp8mac.sim.engine_step`); report the engine's cycles per phase.
6. Synthesize one processing element with Yosys onto the OSU 0.18 um cells and report its area
   next to an FP16 x FP16 -> FP32 PE's (``make synth`` compares every design point).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fp8mac.model.config import MacConfig
from fp8mac.model.layers import gemm_layer
from fp8mac.model.workloads import digits_mlp_gemms, train_digits_mlp
from fp8mac.sim.runner import SIMULATORS, SimulationFailed
from fp8mac.sim.workloads import errors

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["run_demo"]


def _pe_area(config: MacConfig, out_dir: Path):
    """``(asic report, None)`` for one PE of ``config``, or ``(None, reason)``."""
    from fp8mac.hw.synth import SynthError, synthesize_block
    from fp8mac.sim.tools import ToolMissing

    try:
        report = synthesize_block(config, "pe", out_dir, targets=("asic",))
    except (SynthError, ToolMissing, OSError) as exc:
        return None, str(exc).strip().splitlines()[0]
    return report["asic"], None


ENGINE_BATCH = 256
"""The engine step's batch at most (its buffers grow with it)."""


def _engine_step(config, mlp, x, y, batch, seed, sim, out) -> bool:
    """Step 4: a training step on the layer engine; True when every code was exact."""
    from fp8mac.sim.engine_step import plan_step, run_step_on_simulator, step_engine_config

    plan = plan_step(mlp, x[:batch], y[:batch], config, seed=seed)
    eng = step_engine_config(plan)
    out(f"4. one training step (batch {batch}) on the layer engine (--top-kind engine, buffers of "
        f"{eng.a_words} / {eng.b_words} / {eng.c_words} words):")
    out("   the GEMMs from its buffers, the FP16 master weights updated in RTL (stochastic rounding),")
    out("   every code against the model:")
    try:
        rows = run_step_on_simulator(config, plan, sim, seed=seed)
    except SimulationFailed as exc:
        out(f"   FAILED: {exc}")
        return False
    out(f"   {'phase':<16} {'shape':>15} {'cycles':>8}  bit-exact")
    for r in rows:
        out(f"   {r['phase']:<16} {r['shape']:>15} {r['cycles']:>8}  {'yes' if r['exact'] else 'NO'}")
    total = sum(r["cycles"] for r in rows)
    out(f"   {total} engine cycles in all ({total / 100e6 * 1e6:.0f} us at 100 MHz); the host only "
        "loaded buffers and did the element-wise work")
    return all(r["exact"] for r in rows)


def _rate(per_second: float) -> str:
    return f"{per_second / 1e6:.2f}M" if per_second >= 1e5 else f"{per_second / 1e3:.1f}k"


def run_demo(batch: int = 1024, seed: int = 0, sim: str = "verilator", synth: bool = True,
             out=print, work_dir=None, config: MacConfig | None = None) -> int:
    """Run the demo; returns 0 when every result was bit-exact, 1 otherwise.

    ``work_dir`` (default ``build/demo``) receives the design, the simulator builds and the
    synthesis runs; ``config`` (default ``MacConfig()``, the default array) is the array.
    Raises ValueError on a bad ``batch`` or ``sim`` (before anything runs).
    """
    from fp8mac.hw.generate import generate
    from fp8mac.sim.accel_bench import run_gemm_on_simulator

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    t_start = time.perf_counter()
    work = ROOT / "build" / "demo" if work_dir is None else Path(work_dir).resolve()
    config = MacConfig() if config is None else config
    gen = generate(config, work / "design")
    out("== fp8mac demo ==")
    out(f"1. generated {'the default' if config == MacConfig() else 'an'} array: {config.rows} x {config.cols} PEs, "
        f"{config.a_format.label} x {config.b_format.label} -> {config.acc_format.label}, chunk "
        f"{config.chunk}, inner {config.inner_rounding}, outer {config.outer_rounding} rounding "
        f"({config.rbits} random bits, {config.lfsr_width}-bit LFSRs)")
    for p in (gen.verilog, gen.manifest, gen.core):
        out(f"   {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}")

    mlp, (xtr, ytr, xte, yte) = train_digits_mlp(seed=seed)
    batch = min(batch, len(xtr))
    out(f"2. digits MLP 64-32-10 trained in FP32 (seed {seed}): test accuracy "
        f"{mlp.accuracy(xte, yte):.3f}; one training step on a batch of {batch}, quantized to "
        f"{config.operand_label}")
    gemms = digits_mlp_gemms(mlp, xtr[:batch], ytr[:batch])
    out(f"3. each GEMM on {sim} (cocotb, random pauses on all three streams), every result code "
        "compared with the golden model:")
    out(f"   {'GEMM':<16} {'M x K x N':>15} {'cycles':>8} {'MAC/s':>8}  {'bit-exact':<9} "
        f"{'err plain':>9} {'err chunked':>11}")
    all_exact, waves = True, []
    for i, (name, (a, b)) in enumerate(gemms.items()):
        layer = gemm_layer(name, a, b, config)
        try:
            got, stats = run_gemm_on_simulator(config, layer.a_codes, layer.b_codes, sim=sim,
                                               design=gen, out_dir=work / "sim", seed=seed + i,
                                               pauses=("random",) * 3, quiet=True)
        except SimulationFailed as exc:  # reported, and the demo fails
            out(f"   {name}: FAILED: {exc}")
            all_exact = False
            continue
        exact = bool(np.array_equal(got, layer.codes))
        all_exact &= exact
        if stats.get("waves"):
            waves.append(stats["waves"])
        err = errors(layer, got, config)  # the simulator's codes, and plain accumulation's
        m, k, n = layer.shape
        out(f"   {name:<16} {f'{m} x {k} x {n}':>15} {stats['cycles']:>8} "
            f"{_rate(stats['macs_per_second']):>8}  {'yes' if exact else 'NO':<9} "
            f"{err['plain_vs_fp32_quantized']:>9.2e} {err['vs_fp32_quantized']:>11.2e}")
    out("   err: relative (Frobenius) error against FP32 accumulation of the same FP8 operands;")
    out(f"   'plain': all K products in one {config.acc_format.label} sum, nearest rounding; "
        f"'chunked': this array's results")
    out(f"   (chunks of {config.chunk}, {config.outer_rounding} rounding of the chunk sums).")
    out("   waves: " + (", ".join(waves) if waves else "rerun with WAVES=1 make demo"))
    all_exact &= _engine_step(config, mlp, xtr, ytr, min(batch, ENGINE_BATCH), seed, sim, out)
    if synth:
        out("5. area of one processing element (Yosys + OSU 0.18 um standard cells):")
        # the baseline of reports/area.md (the synth grid's "fp16_fp32", fp8mac/hw/grids/synth.toml)
        base = MacConfig(in_format="fp16", acc_format="fp32").plain()
        areas = {}
        for label, what, cfg in (("fp8_default", "this array's PE", config),
                                 ("fp16_fp32", "FP16 x FP16 -> FP32 PE", base)):
            asic, why = _pe_area(cfg, work / "area" / label)
            if asic is None:
                out(f"   {what}: not available ({why})")
                continue
            areas[label] = asic["area"]["value"]
            delay = (asic.get("critical_path") or {}).get("value")
            out(f"   {what:<24} {asic['area']['value']:>9,.0f} um^2 {asic['nand2_eq']['value']:>7,.0f} "
                "NAND2-eq" + (f", critical path {delay:.1f} ns" if delay else ""))
        if len(areas) == 2:
            out(f"   the FP16 PE is {areas['fp16_fp32'] / areas['fp8_default']:.2f}x this PE; "
                "reports/area.md (make synth) says where the area goes")
    out(f"{'all results bit-exact' if all_exact else 'MISMATCHES: see above'} "
        f"({time.perf_counter() - t_start:.0f} s)")
    return 0 if all_exact else 1
