"""``make bench``: measure and write BENCHMARKS.md.

Sections (each replaced in place, see scripts/benchlib.py):

* ``model``: the golden model's ``mac_gemm`` (256 x 256 x 256, 8 x 8 array, stochastic outer
  rounding; one product per step, and dot 4 and 8) in million MACs per second, next to NumPy's
  float32 matmul in the same run.
* ``array``: cycles per tile of the Accelerator in Amaranth's simulator, against the ideal, for
  both PE variants.
* ``sim``: simulated MACs per second of the default 8 x 8 array driven by cocotb, on Verilator
  and on Icarus, the same workload in one run, with the share of time spent in Python; and the
  rate of one simulated MAC step (the arithmetic testbench) on both simulators.

``make bench`` then runs ``scripts/synth_compare.py`` (the ``synth`` section). Run a subset with
``python scripts/bench.py model array sim``.
"""

from __future__ import annotations

import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from benchlib import machine, median_time, update_section  # noqa: E402


def bench_model(repeat=3):
    from fp8mac.model import FORMATS, MacConfig, mac_gemm

    n = 256
    rng = np.random.default_rng(0)
    fmt = FORMATS["fp8_e5m2"]
    x = rng.standard_normal((n, n))
    a = fmt.encode(x * 4)
    b = fmt.encode(rng.standard_normal((n, n)) * 4)
    cfg = MacConfig(rows=8, cols=8, chunk=64, inner_rounding="nearest", outer_rounding="stochastic")
    af, bf = fmt.decode(a).astype(np.float32), fmt.decode(b).astype(np.float32)
    rows = []
    macs = n ** 3
    t_model = median_time(lambda: mac_gemm(a, b, cfg), repeat=repeat)
    t_inner = median_time(lambda: mac_gemm(a, b, cfg.replace(inner_rounding="stochastic")), repeat=repeat)
    t_dot = {d: median_time(lambda: mac_gemm(a, b, cfg.replace(dot=d)), repeat=repeat) for d in (4, 8)}
    t_np = median_time(lambda: af @ bf, repeat=max(repeat, 20))
    rows.append(("mac_gemm, inner nearest, outer stochastic (the default)", macs / t_model / 1e6))
    rows.append(("mac_gemm, inner and outer stochastic", macs / t_inner / 1e6))
    for d, t in t_dot.items():
        rows.append((f"mac_gemm, dot {d} ({d} products per step, one rounding), inner nearest, outer stochastic",
                     macs / t / 1e6))
    rows.append(("NumPy float32 matmul (not bit-exact to anything here)", macs / t_np / 1e6))
    body = ["## Golden model throughput", "",
            f"`mac_gemm` on 256 x 256 x 256 FP8 (e5m2) operands, 8 x 8 array, chunk 64, fp16_ibm "
            f"accumulation; medians of {repeat} runs ({machine()}). Goal: >= 20 M MAC/s (dot 1). "
            "Dot d: d products per fused step, K = 256 in 256 / d steps (the float64 kernel, "
            "model/fastpath.py's exact multi-term sums).", "",
            "| what | M MAC/s | vs NumPy float32 |", "|---|---:|---:|"]
    np_rate = rows[-1][1]
    for what, rate in rows:
        body.append(f"| {what} | {rate:.1f} | {rate / np_rate:.4f}x |")
    update_section("model", "\n".join(body))
    return rows


def bench_array():
    """Cycles per tile in Amaranth's simulator (no pauses) against the ideal, both PE variants."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "tests"))
    from test_hw_array import random_operands, run_accelerator

    from fp8mac.hw.top import first_result_latency
    from fp8mac.model import MacConfig

    body = ["## Array cycles per tile", "",
            "Amaranth simulation of the Accelerator with no stalls on any stream, a 4 x 4 array, "
            "4 tiles (M = N = 8) streamed back to back. Ideal: one step per cycle (K cycles per "
            "tile), plus the last tile's latency: its first result `first_result_latency` cycles "
            "after its last beat (`cols + 3`, + 1 with the row's outer adder: the two-adder PE "
            "here) and its `rows` result beats, `T K + first_result_latency + rows - 1` cycles "
            "for T tiles. The shared-adder PE adds one bubble per chunk.", "",
            "| PE | K | chunk | cycles | ideal | cycles per tile | overhead per tile |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(1)
    for pe in ("two-adder", "shared-adder"):
        for k, chunk in ((64, 64), (64, 16), (256, 64)):
            cfg = MacConfig(rows=4, cols=4, chunk=chunk, pe=pe)
            a, b = random_operands(rng, cfg, 8, k, 8)
            _, cycles = run_accelerator(cfg, a, b, 1, (0, 0, 0))
            n_tiles = 4
            ideal = n_tiles * k + first_result_latency(cfg) + cfg.rows - 1
            body.append(f"| {pe} | {k} | {chunk} | {cycles} | {ideal} | {cycles / n_tiles:.1f} | "
                        f"{(cycles - ideal) / n_tiles:+.1f} |")
    update_section("array", "\n".join(body))


def bench_sim(repeat=5):
    """Accelerator throughput under cocotb on both simulators (``simulator_throughput``, medians
    of ``repeat`` runs, side by side), and the MAC-step testbench's rate on both."""
    import statistics

    from fp8mac.model import MacConfig
    from fp8mac.sim.accel_bench import ensure_design, simulator_throughput
    from fp8mac.sim.arith_harness import measure_mac_rate

    config = MacConfig()
    design = ensure_design(config)
    sims = ("verilator", "icarus")
    runs = {sim: [] for sim in sims}
    for i in range(repeat):  # interleaved, so both simulators see the same machine load
        for row in simulator_throughput(config, sims=sims, seed=i, design=design):
            runs[row["sim"]].append(row)

    def med(sim, key):
        return statistics.median(r[key] for r in runs[sim])

    first = runs["verilator"][0]
    body = ["## Simulation throughput", "",
            f"The default array ({first['array']}, chunk 64, stochastic outer rounding) driven by "
            f"cocotb 2.1 at full rate (no pauses), workload `{first['workload']}` "
            f"({' x '.join(map(str, first['mkn']))}, every result checked against the golden "
            f"model), medians of {repeat} runs interleaved on both simulators ({machine()}). "
            "Python's share: the run's time minus the time the simulator alone takes for as many "
            "cycles (measured in the same process), over the run's time. Goal: >= 1 M MAC/s on "
            "Verilator.", "",
            "| simulator | M MAC/s | k cycles/s | M MAC per CPU s | Python share | vs Icarus |",
            "|---|---:|---:|---:|---:|---:|"]
    icarus = med("icarus", "macs_per_second")
    for sim in sims:
        rate = med(sim, "macs_per_second")
        body.append(f"| {sim} | {rate / 1e6:.4f} | {med(sim, 'cycles_per_second') / 1e3:.3f} | "
                    f"{med(sim, 'macs_per_cpu_second') / 1e6:.4f} | "
                    f"{med(sim, 'python_share'):.0%} | {rate / icarus:.1f}x |")
    v_share = med("verilator", "python_share")
    v_rate = med("verilator", "macs_per_second")
    verdict = ("goal met" if v_rate >= 1e6 else
               f"the goal is missed by {1 - v_rate / 1e6:.0%}")
    body += ["", f"On Verilator {v_rate / 1e6:.2f} M MAC/s: {verdict}. {v_share:.0%} of the time "
             "is cocotb and Python: with the simulator alone the same cycles would run at "
             f"{v_rate / max(1 - v_share, 1e-9) / 1e6:.1f} M MAC/s, so the per-cycle Python cost "
             "(cocotb's scheduler and the stream drivers) is the limit."]
    steps = {sim: statistics.median(measure_mac_rate(sim, 20000, "stochastic") for _ in range(repeat))
             for sim in sims}
    body += ["", "One MAC step (FP8 x FP8 + fp16_ibm, stochastic rounding, `sim/tb_arith.py`), "
             "cases per CPU second, every case checked: "
             + ", ".join(f"{sim} {steps[sim] / 1e3:.1f} k" for sim in sims)
             + f" ({steps['verilator'] / steps['icarus']:.1f}x)."]
    update_section("sim", "\n".join(body))


SECTIONS = {"model": bench_model, "array": bench_array, "sim": bench_sim}


def main(argv):
    names = argv or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"bench: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}",
              file=sys.stderr)
        return 2
    for name in names:
        print(f"bench: {name} ...", flush=True)
        SECTIONS[name]()
    print("bench: wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
