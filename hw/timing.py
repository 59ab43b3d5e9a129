"""Frequency-directed pipelining: ``--target-mhz F`` picks the smallest ``pipeline`` depth whose
processing element meets F (as FloPoCo takes a target frequency and chooses its depth).

The clock of an array is its PE's: the array adds registers only (operand skew, result drain)
and one global stall, whose fan-out the report measures separately (``make synth``). A depth's
Fmax is the OpenSTA figure of the documented ASIC flow (:mod:`fp8mac.hw.synth`: Yosys + abc on
the OSU 0.18 um cells, ideal clock, no wire load), measured by synthesizing the PE; results are
cached under ``build/timing/`` by configuration and by the source of :mod:`fp8mac.hw` (the
hardware and the flow), so asking again costs nothing and a changed design is measured again.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable

from fp8mac.model.config import MAX_PIPELINE, MacConfig

__all__ = ["pe_fmax", "choose_pipeline", "SEARCH_DEPTHS", "check_target"]

SEARCH_DEPTHS = range(0, 4)
"""The depths ``--target-mhz`` tries, in order (the stages a PE can use; ``fp8mac.hw.pe``)."""


def check_target(mhz) -> float:
    """A clock target in MHz: a finite number above 0 (ValueError naming ``--target-mhz``)."""
    try:
        value = float(mhz)
    except (TypeError, ValueError):
        raise ValueError(f"--target-mhz must be a number of MHz above 0, not {mhz!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"--target-mhz must be a number of MHz above 0, not {mhz!r}")
    return value


def pe_fmax(config: MacConfig, cache_dir=None) -> float:
    """The OpenSTA Fmax (MHz) of ``config``'s processing element on osu018 (cached)."""
    from fp8mac.sim.runner import build_root

    from .synth import SynthError, synthesize_block

    key = json.dumps(config.replace(top="fp8mac_timing").to_dict(), sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode() + _hw_source_digest()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else build_root() / "timing"
    entry = root / f"{digest}.json"
    if entry.exists():
        return json.loads(entry.read_text())["fmax_mhz"]
    report = synthesize_block(config.replace(top="fp8mac_timing"), "pe", root / digest, ("asic",))
    fmax = report["asic"]["fmax"].get("value")
    if fmax is None:
        why = report["asic"]["fmax"].get("unavailable", "no timing")
        raise SynthError(f"--target-mhz needs OpenSTA's Fmax, which is unavailable: {why}")
    entry.write_text(json.dumps({"config": key, "fmax_mhz": fmax}) + "\n")
    return fmax


def _hw_source_digest() -> bytes:
    """A digest of every module of :mod:`fp8mac.hw` (the hardware and the synthesis flow)."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.digest()


def choose_pipeline(config: MacConfig, target_mhz, fmax: Callable[[MacConfig], float] = pe_fmax,
                    depths=SEARCH_DEPTHS, log=print) -> tuple[MacConfig, float]:
    """The configuration with the smallest depth in ``depths`` whose PE Fmax reaches
    ``target_mhz``, and that Fmax. Each depth tried is reported through ``log``.

    Raises
    ------
    ValueError
        If no depth reaches the target (the message names the best Fmax and its depth), or the
        target is not a positive number.
    """
    target = check_target(target_mhz)
    best = None
    for depth in depths:
        if depth > MAX_PIPELINE:
            break
        candidate = config.replace(pipeline=depth)
        f = fmax(candidate)
        log(f"fp8mac: pipeline {depth}: PE Fmax {f:.1f} MHz (osu018, OpenSTA)")
        if best is None or f > best[1]:
            best = (depth, f)
        if f >= target:
            return candidate, f
    raise ValueError(f"--target-mhz {target:g} is out of reach: the best PE Fmax is {best[1]:.1f} MHz, "
                     f"at pipeline {best[0]} (the accumulation loop limits it; see reports/area.md)")
