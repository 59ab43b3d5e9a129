"""Reading a liberty file: a cell's area and the file's time and capacitance units."""

from __future__ import annotations

import re
from pathlib import Path

from .yosys import SynthError
from .yosys_stat import NUMBER

__all__ = ["OSU018_LIBERTY", "OSU018_INSTALL", "liberty_cell_area", "liberty_time_unit_ns",
           "liberty_load_unit_pf"]

#: Where Debian's ``qflow-tech-osu018`` installs the OSU 0.18 um standard-cell library.
OSU018_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")
OSU018_INSTALL = "apt-get install qflow-tech-osu018 (Debian; `make install` does it as root)"


def liberty_cell_area(liberty: Path, cell: str) -> float:
    """The ``area`` of ``cell`` in a liberty file (um^2 for osu018)."""
    text = Path(liberty).read_text(errors="replace")
    m = re.search(rf"\bcell\s*\(\s*\"?{re.escape(cell)}\"?\s*\)\s*\{{[^}}]*?\barea\s*:\s*({NUMBER})", text)
    if m is None:
        raise SynthError(f"cell {cell} has no area in {liberty}")
    return float(m.group(1))


def liberty_time_unit_ns(liberty: Path) -> float:
    """How many ns the liberty file's time unit is."""
    m = re.search(r'time_unit\s*:\s*"?\s*(\d+)\s*(ps|ns)', Path(liberty).read_text(errors="replace"))
    if m is None:
        raise SynthError(f"{liberty} declares no time_unit")
    return int(m.group(1)) * (1e-3 if m.group(2) == "ps" else 1.0)


def liberty_load_unit_pf(liberty: Path) -> float:
    """How many pF the liberty file's capacitive load unit is."""
    m = re.search(r"capacitive_load_unit\s*\(\s*([\d.]+)\s*,\s*(ff|pf)\s*\)",
                  Path(liberty).read_text(errors="replace"), re.I)
    if m is None:
        raise SynthError(f"{liberty} declares no capacitive_load_unit")
    return float(m.group(1)) * (1e-3 if m.group(2).lower() == "ff" else 1.0)
