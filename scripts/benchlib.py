"""Helpers for the benchmark scripts: timing medians and BENCHMARKS.md sections.

BENCHMARKS.md is written by several scripts; each owns the sections between its markers
``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` and replaces only those.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"

HEADER = """# fp8mac benchmarks

Written by `make bench` (scripts in `scripts/`), never by hand. Every figure is a median of
repeated runs, and every comparison is measured side by side in the same run on the same machine;
absolute times vary between machines, ratios much less.
"""


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
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
