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
* ``engine``: the layer engine's MAC/s under cocotb on Verilator (loads, compute, READ) next to
  the streaming top's, the same GEMM size on the 8 x 8 array, and the engine around a dot-4 8 x 8
  array; with the simulator-alone rates and Python's share.

``make bench`` then runs ``make synth``'s sweep (the ``synth`` section, written by
:mod:`fp8mac.hw.area_report`). Run a subset with ``python scripts/bench.py model array sim``.
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


def bench_engine(repeat=3):
    """The layer engine's cocotb MAC/s on Verilator next to the streaming top's, the same GEMM
    size on the same 8 x 8 array (and the engine around a dot-4 array), medians of ``repeat``
    runs interleaved; loads, compute and READ (the streaming top: every beat) included."""
    import statistics

    from fp8mac.hw.engine import EngineConfig
    from fp8mac.model import MacConfig
    from fp8mac.sim.accel_bench import ensure_design, run_gemm_on_simulator
    from fp8mac.sim.engine_bench import engine_throughput, throughput_shape

    config, config4 = MacConfig(), MacConfig(dot=4)
    engine = EngineConfig(a_words=4096, b_words=4096, c_words=4096)
    depths = (engine.a_words, engine.b_words, engine.c_words)
    m, k, n = throughput_shape(config, depths)
    rng = np.random.default_rng(0)
    fmt = config.in_format
    codes = np.arange(1 << fmt.width)
    values = np.abs(fmt.decode(codes))
    pool = codes[np.isfinite(values) & (values < 4)]
    a, b = rng.choice(pool, (m, k)), rng.choice(pool, (k, n))
    design = ensure_design(config)
    names = ("streaming top", "engine", "engine, dot 4")
    runs = {name: [] for name in names}
    for i in range(repeat):  # interleaved, so all three see the same machine load
        _, st = run_gemm_on_simulator(config, a, b, "verilator", design=design, seed=i, quiet=True)
        st["sim_only_macs_per_second"] = st["macs"] / st["sim_only_seconds"]
        st["sim_only_macs_per_cpu_second"] = st["macs"] / st["sim_only_cpu_seconds"]
        runs["streaming top"].append(st)
        runs["engine"].append(engine_throughput(config, engine, seed=i, quiet=True))
        runs["engine, dot 4"].append(engine_throughput(config4, engine, seed=i, quiet=True))

    def med(name, key):
        return statistics.median(r[key] for r in runs[name])

    stream = med("streaming top", "macs_per_second")
    body = ["## Layer engine throughput", "",
            f"cocotb 2.1 on Verilator, the default array (8 x 8, chunk 64, stochastic outer "
            f"rounding), medians of {repeat} runs interleaved ({machine()}). The same GEMM size "
            f"on both tops, {m} x {k} x {n} (the engine's with dot 4: {m} x {4 * k} x {n}), "
            "random finite codes, every result code checked against the golden model. Streaming "
            "top (`sim/accel_bench.py`): Python drives every operand beat and takes every result "
            "beat. Engine (`sim/engine_bench.py`, buffers of 4096 words): Python loads the A and "
            "B buffers (each operand beat once, a beat per cycle), writes the registers, sleeps "
            "on `done` while the engine computes, then READs C; MAC/s counts all of it. "
            "Simulator alone: the streaming top's is the simulator clocked for as many cycles "
            "with Python asleep; the engine's is its compute phase (START to DONE, Python "
            "asleep). Goal: >= 5 M MAC/s for the 8 x 8 array on Verilator.", "",
            "| top | GEMM | M MAC/s | M MAC per CPU s | simulator alone, M MAC/s (per CPU s) | "
            "Python share | load / compute / READ, s | array busy | vs streaming top |",
            "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for name in names:
        rate = med(name, "macs_per_second")
        mkn = runs[name][0]["mkn"]
        if name == "streaming top":
            phases, busy = "-", "-"
        else:
            phases = " / ".join(f"{med(name, key):.2f}" for key in
                                ("load_seconds", "compute_seconds", "read_seconds"))
            busy = f"{med(name, 'array_utilization'):.1%}"
        body.append(f"| {name} | {' x '.join(map(str, mkn))} | {rate / 1e6:.2f} | "
                    f"{med(name, 'macs_per_cpu_second') / 1e6:.2f} | "
                    f"{med(name, 'sim_only_macs_per_second') / 1e6:.2f} "
                    f"({med(name, 'sim_only_macs_per_cpu_second') / 1e6:.2f}) | "
                    f"{med(name, 'python_share'):.0%} | {phases} | {busy} | {rate / stream:.1f}x |")
    e_rate, e_cpu = med("engine", "macs_per_second"), med("engine", "macs_per_cpu_second")
    e_sim, e_share = med("engine", "sim_only_macs_per_second"), med("engine", "python_share")
    d4_rate = med("engine, dot 4", "macs_per_second")
    verdict = (("met" if e_rate >= 5e6 else f"missed by {1 - e_rate / 5e6:.0%}") + " in wall time, "
               + ("met" if e_cpu >= 5e6 else f"missed by {1 - e_cpu / 5e6:.0%}") + " per CPU second")
    tm, tn = m // config.rows, n // config.cols
    io_cycles = (tm + tn) * (k // config.dot) + tm * tn * config.rows  # loads + READ, a word each
    per_cycle = med("engine", "sim_only_cycles_per_second") / med("engine, dot 4",
                                                                   "sim_only_cycles_per_second")
    gemm_cycles = statistics.median(r["cycles"] / r["repeats"] for r in runs["engine"])
    body += ["", f"The 8 x 8 engine: {e_rate / 1e6:.2f} M MAC/s, {e_rate / stream:.1f} times the "
             f"streaming top; the goal of 5 M MAC/s is {verdict}. Python's share is down to "
             f"{e_share:.0%}: it drives only the loads and the READ, {io_cycles} of a GEMM's "
             f"{round(gemm_cycles)} cycles; the limit is now Verilator itself, "
             f"{e_sim / 1e6:.2f} M MAC/s with Python asleep. CPU time is the steadier measure on "
             f"this shared machine (wall-time rates move with its load from run to run): "
             f"{e_cpu / 1e6:.2f} M MAC per CPU second for the whole run, "
             f"{med('engine', 'sim_only_macs_per_cpu_second') / 1e6:.2f} with Python asleep. "
             f"A dot-4 array's cycle "
             f"costs the simulator {per_cycle:.1f} times a dot-1 array's for four times the MACs: "
             f"{d4_rate / 1e6:.2f} M MAC/s. The two simulator-alone figures are not one "
             "measure: the streaming top's holds one operand beat on its inputs for the whole span "
             "(no tile ends, no results), the engine's is the GEMM itself (operands changing "
             "every cycle, tiles ending, result rows written)."]
    update_section("engine", "\n".join(body))


SECTIONS = {"model": bench_model, "array": bench_array, "sim": bench_sim, "engine": bench_engine}


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
