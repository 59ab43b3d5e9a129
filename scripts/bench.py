"""``make bench``: measure and write BENCHMARKS.md.

Sections (each replaced in place, see scripts/benchlib.py):

* ``model``: the golden model's ``mac_gemm`` (256 x 256 x 256, 8 x 8 array, stochastic outer
  rounding) in million MACs per second, next to NumPy's float32 matmul in the same run.
* ``array``: cycles per tile of the Accelerator in Amaranth's simulator, against the ideal, for
  both PE variants.
* further sections from the simulation and synthesis scripts, when present.

Run a subset with ``python scripts/bench.py model array``.
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
    t_np = median_time(lambda: af @ bf, repeat=max(repeat, 20))
    rows.append(("mac_gemm, inner nearest, outer stochastic (the default)", macs / t_model / 1e6))
    rows.append(("mac_gemm, inner and outer stochastic", macs / t_inner / 1e6))
    rows.append(("NumPy float32 matmul (not bit-exact to anything here)", macs / t_np / 1e6))
    body = ["## Golden model throughput", "",
            f"`mac_gemm` on 256 x 256 x 256 FP8 (e5m2) operands, 8 x 8 array, chunk 64, fp16_ibm "
            f"accumulation; medians of {repeat} runs ({machine()}). Goal: >= 20 M MAC/s.", "",
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

    from fp8mac.model import MacConfig

    body = ["## Array cycles per tile", "",
            "Amaranth simulation of the Accelerator with no stalls on any stream, a 4 x 4 array, "
            "4 tiles (M = N = 8) streamed back to back. Ideal: K cycles per tile (one step per "
            "cycle) plus one fill and drain, `rows + cols + 3 + rows` cycles, for the whole run.", "",
            "| PE | K | chunk | cycles | ideal | cycles per tile | overhead per tile |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(1)
    for pe in ("two-adder", "shared-adder"):
        for k, chunk in ((64, 64), (64, 16), (256, 64)):
            cfg = MacConfig(rows=4, cols=4, chunk=chunk, pe=pe)
            a, b = random_operands(rng, cfg, 8, k, 8)
            _, cycles = run_accelerator(cfg, a, b, 1, (0, 0, 0))
            n_tiles = 4
            ideal = n_tiles * k + cfg.rows + cfg.cols + 3 + cfg.rows
            body.append(f"| {pe} | {k} | {chunk} | {cycles} | {ideal} | {cycles / n_tiles:.1f} | "
                        f"{(cycles - ideal) / n_tiles:+.1f} |")
    update_section("array", "\n".join(body))


SECTIONS = {"model": bench_model, "array": bench_array}


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
