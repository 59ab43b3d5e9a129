"""``python scripts/bench_scale.py``: what arrays of growing size cost to generate, build and
simulate (issue 14); writes the ``scale`` section of BENCHMARKS.md (scripts/benchlib.py).

* Generation: ``fp8mac generate`` (the command, a fresh process each time) of N x N arrays, N = 4,
  8, 16, 32, 64, the default configuration otherwise: wall and CPU seconds (the process and its
  Yosys; medians of ``--repeat`` runs), lines and bytes of ``<top>.v``. Beside it, once each for 4 x
  4 and 8 x 8, the form ``fp8mac generate`` wrote before: every PE elaborated and written out
  again (``emit_verilog`` of the Accelerator's direct form, still what Amaranth's simulator runs).
* Verilator, N = 8, 16, 32: a fresh hierarchical build of the generated design
  (``--hierarchical``: the row module compiled once with its PEs; medians of ``--builds``
  builds, each in an empty folder; Verilator's runtime library is compiled once for all, as in
  every fp8mac build), and simulated cycles per second of a GEMM of 16 tiles (M = N_cols = 4 N,
  K = 256, no pauses, every result checked against the model; medians of ``--repeat`` runs) with
  cocotb driving the streams and for the simulator alone. ``--flat`` adds one flat build (every
  PE compiled again) of the 8 x 8 and 16 x 16 arrays, for comparison: the accelerator harness
  builds flat up to ``HIERARCHICAL_PES`` PEs (:func:`fp8mac.sim.accel_bench.build_args`).

The machine's load average is recorded with the figures: other jobs share the two cores, so wall
times are upper bounds and CPU seconds the steadier figure. The measurements are kept in
``build/bench_scale.json``; ``--render`` rewrites the section from them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, machine, update_section  # noqa: E402

RESULTS = ROOT / "build" / "bench_scale.json"
GEN_SIZES = (4, 8, 16, 32, 64)
OLD_SIZES = (4, 8)
SIM_SIZES = (8, 16, 32)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed_process(cmd) -> tuple[float, float]:
    """Wall and CPU seconds (the process and everything it waited for) of ``cmd``."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - t0, _children_cpu() - cpu0


def bench_generate(n: int, repeat: int) -> dict:
    walls, cpus = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            out = Path(tmp) / "gen"
            shutil.rmtree(out, ignore_errors=True)
            wall, cpu = _timed_process([sys.executable, "-m", "fp8mac.hw", "generate",
                                        "--rows", str(n), "--cols", str(n), "--out", str(out)])
            walls.append(wall)
            cpus.append(cpu)
        text = (out / "fp8mac_array.v").read_text()
    return dict(n=n, wall=statistics.median(walls), cpu=statistics.median(cpus),
                lines=text.count("\n"), bytes=len(text.encode()), runs=repeat)


_OLD_FORM = """
import sys
from fp8mac.hw.emit import emit_verilog
from fp8mac.hw.top import Accelerator
from fp8mac.model.config import MacConfig
n = int(sys.argv[1])
config = MacConfig(rows=n, cols=n)
open(sys.argv[2], "w").write(emit_verilog(Accelerator(config), config.top))
"""


def bench_old_form(n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "old.v"
        wall, cpu = _timed_process([sys.executable, "-c", _OLD_FORM, str(n), str(path)])
        text = path.read_text()
    return dict(n=n, wall=wall, cpu=cpu, lines=text.count("\n"), bytes=len(text.encode()),
                modules=text.count("\nmodule "))


def _operands(config, n):
    fin = config.in_format
    codes = np.arange(1 << fin.width)
    values = np.abs(fin.decode(codes))
    pool = codes[np.isfinite(values) & (values < 64)]
    rng = np.random.default_rng(n)
    return rng.choice(pool, (4 * n, 256)), rng.choice(pool, (256, 4 * n))


def bench_verilator(n: int, builds: int, repeat: int, *, flat: bool = False) -> dict:
    """Fresh builds (each in an empty folder) and runs of the generated n x n design, built
    hierarchically or ``flat``."""
    import fp8mac.sim.accel_bench as accel_bench
    from fp8mac.model.config import MacConfig

    config = MacConfig(rows=n, cols=n)
    design = accel_bench.ensure_design(config)
    a, b = _operands(config, n)
    build_times, runs = [], []
    saved = accel_bench.build_args  # the harness's choice, replaced by the mode measured here
    accel_bench.build_args = lambda sim, config: () if flat else ("--hierarchical",)
    try:
        for i in range(builds):
            with tempfile.TemporaryDirectory(dir=ROOT / "build") as tmp:
                for j in range(repeat if i == 0 else 1):
                    _, stats = accel_bench.run_gemm_on_simulator(
                        config, a, b, sim="verilator", design=design, out_dir=tmp, seed=j,
                        quiet=True)
                    if j == 0:
                        build_times.append(stats["build_seconds"])
                    if i == 0:
                        runs.append(stats)
    finally:
        accel_bench.build_args = saved

    def med(key):
        return statistics.median(s[key] for s in runs)

    harness = "flat" if saved("verilator", config) == () else "hierarchical"
    return dict(n=n, flat=flat, harness=harness, build=statistics.median(build_times),
                builds=len(build_times),
                runs=len(runs), cycles=int(med("cycles")), cycles_per_second=med("cycles_per_second"),
                sim_only=statistics.median(s["cycles"] / s["sim_only_seconds"] for s in runs),
                macs_per_second=med("macs_per_second"))


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def write_section(gen, old, sims, load):
    body = ["## Array size: generation, Verilator build, simulation", "",
            f"`fp8mac generate` writes one processing-element module, one array-row module (its "
            f"`cols` PE instances `pe_c<c>` and the row's outer adder) and the top with `rows` row "
            f"instances `row_r<r>`, each row's LFSR start states as constant ports. Default "
            f"configuration but the size ({machine()}; load average {load[0]:.1f} at the start, "
            f"{load[1]:.1f} at the end: other jobs shared the cores, so wall times are upper "
            f"bounds). `scripts/bench_scale.py`; medians of the runs counted.", "",
            "| array | generate (wall) | generate (CPU) | runs | Verilog lines | Verilog size |",
            "|---|---:|---:|---:|---:|---:|"]
    for g in gen:
        body.append(f"| {g['n']} x {g['n']} | {g['wall']:.1f} s | {g['cpu']:.1f} s | {g['runs']} | "
                    f"{g['lines']:,} | {_mb(g['bytes'])} |")
    by_n = {g["n"]: g for g in gen}
    if 32 in by_n and 64 in by_n:
        met = (by_n[32]["wall"] < 30 and by_n[32]["bytes"] < 2e6 and by_n[64]["wall"] < 60)
        body += ["", f"Goals (issue 14): 32 x 32 in under 30 s with under 2 MB of Verilog, 64 x 64 "
                 f"in under 60 s: {'met' if met else 'not met'} ({by_n[32]['wall']:.1f} s and "
                 f"{_mb(by_n[32]['bytes'])}, {by_n[64]['wall']:.1f} s)."]
    if old:
        body += ["", "The form written before (every PE elaborated and written out again; one run "
                 "each, same machine and session):", "",
                 "| array | generate (wall) | generate (CPU) | modules | Verilog lines | Verilog size |",
                 "|---|---:|---:|---:|---:|---:|"]
        for o in old:
            body.append(f"| {o['n']} x {o['n']} | {o['wall']:.1f} s | {o['cpu']:.1f} s | "
                        f"{o['modules']} | {o['lines']:,} | {_mb(o['bytes'])} |")
    if sims:
        body += ["", "Verilator (`-O3`, C++ `-O2`): hierarchical (`--hierarchical`, the row module "
                 "a `hier_block` compiled once with its PEs and called per row) or flat (every PE "
                 "compiled again); the accelerator harness builds flat up to 8 x 8 and "
                 "hierarchically above (marked *). Each build in an empty folder, median of the "
                 "builds counted; then a GEMM of 16 tiles (M = N = 4 x rows, K = 256, no pauses, "
                 "every result checked) with cocotb driving the streams, and the simulator alone "
                 "for as many cycles (medians of the runs counted).", "",
                 "| array | build | build (wall) | builds | cycles | runs | cycles/s (cocotb) | "
                 "cycles/s (simulator alone) | M MAC/s (cocotb) |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for s in sorted(sims, key=lambda s: (s["n"], not s["flat"])):
            mode = "flat" if s["flat"] else "hierarchical"
            mode += " *" if mode == s["harness"] else ""
            body.append(f"| {s['n']} x {s['n']} | {mode} | "
                        f"{s['build']:.0f} s | {s['builds']} | {s['cycles']:,} | {s['runs']} | "
                        f"{s['cycles_per_second']:,.0f} | {s['sim_only']:,.0f} | "
                        f"{s['macs_per_second'] / 1e6:.2f} |")
    update_section("scale", "\n".join(body))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="generations and GEMM runs per size (default 3)")
    p.add_argument("--builds", type=int, default=3, help="fresh Verilator builds per size (default 3)")
    p.add_argument("--sizes", type=int, nargs="*", default=GEN_SIZES, help="generation sizes")
    p.add_argument("--sim-sizes", type=int, nargs="*", default=SIM_SIZES, help="Verilator sizes")
    p.add_argument("--no-old", action="store_true", help="skip the previous form's generation")
    p.add_argument("--flat", action="store_true",
                   help="also one flat Verilator build of 8 x 8 and 16 x 16")
    p.add_argument("--render", action="store_true",
                   help=f"only rewrite the section from the last measurements ({RESULTS.name})")
    args = p.parse_args(argv)
    if args.render:
        write_section(**json.loads(RESULTS.read_text()))
        return
    load0 = os.getloadavg()[0]
    gen = []
    for n in args.sizes:
        gen.append(bench_generate(n, args.repeat))
        print(gen[-1], flush=True)
    old = [] if args.no_old else [bench_old_form(n) for n in OLD_SIZES]
    for o in old:
        print(o, flush=True)
    sims = []
    for n in args.sim_sizes:
        sims.append(bench_verilator(n, args.builds, args.repeat))
        print(sims[-1], flush=True)
    for n in (8, 16) if args.flat else ():
        sims.append(bench_verilator(n, 1, args.repeat, flat=True))
        print(sims[-1], flush=True)
    results = dict(gen=gen, old=old, sims=sims, load=(load0, os.getloadavg()[0]))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_section(**results)


if __name__ == "__main__":
    main()
