"""The synthesis report's structure and Markdown: every figure a ``{"value", "unit", ...}``
mapping (:func:`figure`), and ``area.md`` (:func:`format_markdown`)."""

from __future__ import annotations

__all__ = ["figure", "show", "format_markdown"]


def figure(value, unit, **extra) -> dict:
    """A figure of a report: ``value`` (None: unavailable) in ``unit``, with ``extra`` keys."""
    return {"value": value, "unit": unit, **extra}


def show(fig: dict, digits: int = 0) -> str:
    """A figure as text: the value with thousands separators and ``digits`` decimals, its unit,
    ``+`` when incomplete, or why it is unavailable."""
    if fig.get("value") is None:
        return f"unavailable ({fig.get('unavailable', 'not measured')})"
    v = fig["value"]
    text = f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"
    """A figure as text: the value with thousands separators and ``digits`` decimals, its unit,
    ``+`` when incomplete, or why it is unavailable."""
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
        rows += [("generic", "cells", show(g["cell_count"])),
                 ("generic", "flip-flops", show(g["flip_flops"])),
                 ("generic", "transistor estimate", show(g["transistors"])),
                 ("generic", "NAND2 equivalents", show(g["nand2_eq"], 1))]
    if "asic" in report:
        a = report["asic"]
        rows += [("asic (osu018)", "cell area", show(a["area"], 1)),
                 ("asic (osu018)", "of which sequential", show(a["sequential_area"], 1)),
                 ("asic (osu018)", "NAND2 equivalents", show(a["nand2_eq"], 1)),
                 ("asic (osu018)", "critical path", show(a["critical_path"], 3)),
                 ("asic (osu018)", "Fmax", show(a["fmax"], 1))]
        rows += [("asic (osu018)", f"module `{name}` alone", show(fig, 1))
                 for name, fig in (a.get("modules") or {}).items()]
    if "ice40" in report:
        i = report["ice40"]
        rows += [("ice40", "LUT4", show(i["lut4"])), ("ice40", "SB_CARRY", show(i["carry"])),
                 ("ice40", "flip-flops", show(i["flip_flops"])), ("ice40", "Fmax", show(i["fmax"], 1))]
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
    from .synth import TARGETS

    for t in TARGETS:
        if t in report:
            cells = ", ".join(f"{k} {v}" for k, v in report[t]["cells"].items())
            lines += ["", f"{t} cells: {cells}"]
    return "\n".join(lines) + "\n"
