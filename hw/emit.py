"""Verilog of Amaranth components, and ``fp8mac emit``: one arithmetic block to a ``.v`` file.

:func:`emit_verilog` is the one way fp8mac turns a component into Verilog: every port of the
component's signature becomes a module port (``amaranth.cli.main`` would drop them), and no
``src`` attributes are written, so the text does not depend on where the checkout lives.

:func:`accelerator_verilog` writes a whole accelerator with one processing-element module
instantiated ``rows x cols`` times (Amaranth 0.5 writes every elaboration out again, so a PE per
position would make the text, and the time to write it, grow with the array).
"""

from __future__ import annotations

import re

__all__ = ["emit_verilog", "accelerator_verilog", "engine_verilog", "check_verilog_name", "build_block",
           "BLOCKS", "register"]

BLOCKS = ("multiplier", "mac", "adder", "lfsr")
_VERILOG_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def emit_verilog(component, name: str, *, emit_src: bool = False) -> str:
    """The Verilog text of ``component`` as module ``name``, its signature's members as ports.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
    name : str
        Verilog module name of the top (a plain identifier).
    emit_src : bool
        Keep Amaranth's ``(* src = "file:line" *)`` attributes (absolute paths; off by default).

    Raises
    ------
    ValueError
        If ``name`` is not a Verilog identifier.
    """
    from amaranth.back import verilog

    return _start_trigger(verilog.convert(component, name=check_verilog_name(name), emit_src=emit_src))


# Yosys' Verilog backend makes every `always @*` block read a reg declared `= 0`, so that
# simulators evaluate the block once at time 0. Under IEEE 1800 semantics (Icarus -g2012, the
# flag cocotb's runner passes; any SystemVerilog simulator) a declaration's initializer makes no
# event, the blocks wait for their first input change, and outputs such as m_axis_c_tvalid stay X
# after reset. One change of that reg at #0 (after every process has started) runs them all.
_START_REG = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;\n", re.M)


def _start_trigger(text: str) -> str:
    """``text`` with each Yosys start-trigger reg also changed at ``#0`` (simulation only)."""
    return _START_REG.sub(lambda m: (f"{m.group(0)}{m.group(1)}`ifndef SYNTHESIS\n{m.group(1)}`ifndef VERILATOR\n"
                                     f"{m.group(1)}initial #0 {m.group(2)}= 1'h1;\n"
                                     f"{m.group(1)}`endif\n{m.group(1)}`endif\n"), text)


def accelerator_verilog(config, top: str | None = None) -> str:
    """The Verilog of :class:`~fp8mac.hw.top.Accelerator` ``(config)`` as module ``top``
    (default ``config.top``), with one processing-element module and one array-row module.

    The file holds the top (the accelerator and its array, whose row r is the instance
    ``row_r<r>`` of module ``<top>_row`` with its LFSR seeds' start states as constant ports),
    the module ``<top>_row`` (a seed-port :class:`~fp8mac.hw.array.ArrayRow`: ``cols`` instances
    ``pe_c<c>`` of ``<top>_pe`` and the row's outer adder), and the module ``<top>_pe`` (a
    seed-port :class:`~fp8mac.hw.pe.ProcessingElement`). So PE (r, c) is
    ``array.row_r<r>.pe_c<c>``, and the text is about one PE plus a few lines per row and
    column. The row module carries :data:`VERILATOR_HIER_BLOCK`. The results are those of the
    one-module-per-PE form that :func:`emit_verilog` of the accelerator gives.
    """
    from .array import ArrayRow, pe_module_name, row_module_name
    from .pe import ProcessingElement
    from .top import Accelerator

    top = check_verilog_name(config.top if top is None else top, "top")
    row, pe = row_module_name(top), pe_module_name(top)
    return "\n".join([
        emit_verilog(Accelerator(config, module_prefix=top), top),
        _submodule(emit_verilog(ArrayRow(config, module_prefix=top), row), row, VERILATOR_HIER_BLOCK),
        _submodule(emit_verilog(ProcessingElement(config, seed_ports=True), pe))])


def engine_verilog(config, engine, top: str | None = None) -> str:
    """The Verilog of :class:`~fp8mac.hw.engine.Engine` ``(config, engine)`` as module ``top``,
    with the array's row and PE modules as :func:`accelerator_verilog` writes them."""
    from .array import ArrayRow, pe_module_name, row_module_name
    from .engine import Engine
    from .pe import ProcessingElement

    top = check_verilog_name(config.top if top is None else top, "top")
    row, pe = row_module_name(top), pe_module_name(top)
    return "\n".join([
        emit_verilog(Engine(config, engine, module_prefix=top), top),
        _submodule(emit_verilog(ArrayRow(config, module_prefix=top), row), row, VERILATOR_HIER_BLOCK),
        _submodule(emit_verilog(ProcessingElement(config, seed_ports=True), pe))])


VERILATOR_HIER_BLOCK = "/* verilator hier_block */"
"""The metacomment :func:`accelerator_verilog` puts into the row module: with ``--hierarchical``
Verilator compiles one row (its PEs inlined) once and calls it for every row, where a flat build
compiles every PE again (C++ growing with rows x cols: a flat 16 x 16 took 15 minutes to build,
a hierarchical one 44 s; BENCHMARKS.md, ``scale``); without the option Verilator ignores it.
:func:`fp8mac.sim.accel_bench.build_args` says when fp8mac's benches use it."""


def _submodule(text: str, name: str | None = None, comment: str | None = None) -> str:
    """A module's Verilog without its generator banner and its ``top`` attribute (it is
    instantiated; one banner per file is enough), and ``comment`` as the first line of module
    ``name``'s body."""
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("/* Generated by"):
        lines = lines[1:]
    if comment is not None:
        header = next(i for i, line in enumerate(lines) if line.startswith(f"module {name}("))
        while not lines[header].rstrip().endswith(");"):
            header += 1
        lines.insert(header + 1, f"  {comment}\n")
    return "".join(lines).replace("(* top =  1  *)\n", "", 1).lstrip("\n")


def check_verilog_name(name, what: str = "name") -> str:
    """``name`` if it is a plain Verilog identifier, else ValueError naming ``what``."""
    if not isinstance(name, str) or not _VERILOG_ID.match(name):
        raise ValueError(f"{what} must be a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*), not {name!r}")
    return name


def build_block(block: str, *, in_format="fp8_e5m2", acc_format="fp16_ibm", rounding="nearest",
                rbits=8, lfsr_width=32, seed=1):
    """One arithmetic block as a component.

    ``multiplier``: FloatMultiplier(in_format). ``mac``: MacUnit.for_product(acc_format,
    in_format, rounding, rbits). ``adder``: FloatAdder(acc_format, rounding, rbits). ``lfsr``:
    Lfsr(lfsr_width, rbits, seed). ``rbits`` only matters for stochastic rounding and the LFSR.

    Raises
    ------
    ValueError
        On an unknown block or a bad parameter (the message names it).
    """
    from .adder import FloatAdder, MacUnit
    from .lfsr import Lfsr
    from .multiplier import FloatMultiplier

    if block == "multiplier":
        return FloatMultiplier(in_format)
    if block == "mac":
        return MacUnit.for_product(acc_format, in_format, rounding, rbits)
    if block == "adder":
        return FloatAdder(acc_format, rounding, rbits)
    if block == "lfsr":
        return Lfsr(lfsr_width, rbits, seed)
    raise ValueError(f"block must be one of {', '.join(BLOCKS)}, not {block!r}")


def register(sub):
    p = sub.add_parser(
        "emit", help="write the Verilog of one arithmetic block",
        description="Write the Verilog of one arithmetic block (combinational multiplier, fused "
                    "MAC adder, adder; or the LFSR) for inspection, linting or synthesis.")
    p.add_argument("--block", required=True, choices=BLOCKS, help="which block")
    p.add_argument("--in-format", default="fp8_e5m2", metavar="NAME",
                   help="operand format of the multiplier and mac (default fp8_e5m2)")
    p.add_argument("--acc-format", default="fp16_ibm", metavar="NAME",
                   help="accumulator format of the mac and adder (default fp16_ibm)")
    p.add_argument("--rounding", default="nearest", metavar="MODE",
                   help="nearest, stochastic or zero (mac and adder; default nearest)")
    p.add_argument("--rbits", type=int, default=8, metavar="N",
                   help="random bits per stochastic rounding, or per LFSR draw (default 8)")
    p.add_argument("--lfsr-width", type=int, default=32, metavar="N", help="LFSR width (default 32)")
    p.add_argument("--seed", type=int, default=1, metavar="N", help="LFSR seed (default 1)")
    p.add_argument("--top", metavar="NAME", help="Verilog module name (default fp8mac_<block>)")
    p.add_argument("--out", required=True, metavar="FILE.v", help="output file")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    top = check_verilog_name(args.top or f"fp8mac_{args.block}")
    component = build_block(args.block, in_format=args.in_format, acc_format=args.acc_format,
                            rounding=args.rounding, rbits=args.rbits,
                            lfsr_width=args.lfsr_width, seed=args.seed)
    text = emit_verilog(component, top)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"fp8mac emit: wrote {out} (module {top})")
    return 0
