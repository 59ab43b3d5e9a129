"""Reading Yosys' ``stat``: cell counts, cell area, sequential area and transistor estimate from
a log, checked to be complete (a truncated log is a :class:`~fp8mac.hw.yosys.SynthError`, never
a zero)."""

from __future__ import annotations

import re

from .yosys import SynthError

__all__ = ["STAT_MARKER", "NUMBER", "parse_stat"]

#: Logged by every flow right before its final ``stat`` (see :func:`parse_stat`).
STAT_MARKER = "fp8mac: final statistics"

#: A number as Yosys and liberty files write it.
NUMBER = r"[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?"
_ROW_NEW = re.compile(rf"^\s*(\d+)\s+(?:(?:{NUMBER}|-)\s+)?(\S+)\s*$")   # Yosys 0.70: "  34   816   NAND2X1"
_ROW_OLD = re.compile(r"^\s+(\S+)\s+(\d+)\s*$")                         # older: "     NAND2X1     34"


def parse_stat(log_text: str, require: tuple[str, ...] = ()) -> dict:
    """The figures of the ``stat`` that follows the last :data:`STAT_MARKER` in a Yosys log.

    The flows log the marker (``log <marker>``, a line of its own) right before their final
    ``stat``: ``synth``
    runs a ``stat`` of its own, and a log cut after it (Yosys stopped in ABC) must not pass for
    the final figures. Understands both layouts of ``stat`` (the table of recent Yosys, e.g. 0.70, and the older
    ``Number of cells:`` list) and checks that the cells listed by type add up to the total.

    Parameters
    ----------
    log_text : str
        A Yosys log.
    require : tuple of {"area", "transistors"}
        Figures that must be present (``stat -liberty`` area, ``stat -tech cmos`` estimate).

    Returns
    -------
    dict
        ``cells`` (type -> count), ``num_cells``, ``area`` and ``sequential_area`` (um^2 or None;
        for a design whose submodules were kept, the whole design's, from ``stat``'s ``design
        hierarchy`` section), ``modules`` (module -> its own area in um^2, ``stat -liberty``),
        ``transistors`` (int or None) and ``transistors_complete`` (False when Yosys printed
        ``N+``: some cells had no known transistor count).

    Raises
    ------
    SynthError
        No statistics, cell counts that do not add up, or a required figure missing.
    """
    lines = list(re.finditer(rf"^{re.escape(STAT_MARKER)}\s*$", log_text, re.M))  # not the script's echo
    begin = lines[-1].end() if lines else -1
    marker = log_text.find("Printing statistics.", begin) if begin >= 0 else -1
    if marker < 0:
        raise SynthError(f"the Yosys log holds no statistics (no {STAT_MARKER!r} followed by "
                         "'Printing statistics.'): Yosys stopped before the final `stat`")
    modules = {name: float(v) for name, v in re.findall(
        rf"Chip area for module '\\?([^']+)':\s*({NUMBER})", log_text[marker:])}
    hier = log_text.find("=== design hierarchy ===", marker)
    if hier >= 0:  # a design with kept submodules: the totals include them
        marker = hier
    section = log_text[marker:].splitlines()
    total, cells = None, {}
    for i, line in enumerate(section):
        new = re.match(rf"^\s*(\d+)\s+(?:(?:{NUMBER}|-)\s+)?cells\s*$", line)
        old = re.match(r"^\s*Number of cells:\s+(\d+)\s*$", line)
        if not (new or old):
            continue
        total = int((new or old).group(1))
        row = _ROW_NEW if new else _ROW_OLD
        for body in section[i + 1:]:
            m = row.match(body)
            if not m or (new and m.group(2) == "submodules"):  # then the submodules by name
                break
            kind, count = (m.group(2), m.group(1)) if new else (m.group(1), m.group(2))
            cells[kind] = cells.get(kind, 0) + int(count)
        break
    if total is None:
        raise SynthError("the Yosys log's statistics have no cell count: the log is truncated")
    if sum(cells.values()) != total:
        raise SynthError(f"the cell counts do not add up: the Yosys log lists {sum(cells.values())} cells by "
                         f"type but {total} in total (the log is truncated or in an unknown format)")
    text = "\n".join(section)
    area = re.search(rf"Chip area for (?:top )?module [^:]*:\s*({NUMBER})", text)
    seq = re.search(rf"of which used for sequential elements:\s*({NUMBER})", text)
    trans = re.search(r"Estimated number of transistors:\s*(\d+)(\+?)", text)
    out = {
        "cells": dict(sorted(cells.items())),
        "num_cells": total,
        "area": float(area.group(1)) if area else None,
        "sequential_area": float(seq.group(1)) if seq else None,
        "transistors": int(trans.group(1)) if trans else None,
        "transistors_complete": bool(trans) and not trans.group(2),
        "modules": modules,  # each module's own area (without its submodules), um^2
    }
    for key in require:
        if out[key] is None:
            raise SynthError(f"the Yosys log's statistics lack the {key} figure: the log is truncated")
    return out
