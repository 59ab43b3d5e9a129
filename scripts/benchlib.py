"""Helpers for the benchmark scripts: timing medians and BENCHMARKS.md sections.

BENCHMARKS.md is written by several scripts; each owns the sections between its markers
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` and replaces only those
(:func:`fp8mac.hw.benchmarks.update_section`).
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

from fp8mac.hw.benchmarks import update_section as _update_section

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def median_time(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def update_section(name: str, body: str, path: Path = BENCHMARKS):
    """Replace (or append) the section between ``name``'s markers in BENCHMARKS.md."""
    _update_section(name, body, path)
