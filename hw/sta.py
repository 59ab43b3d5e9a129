"""Static timing with OpenSTA (``sta``, Debian's qflow brings it): the critical path of a
netlist mapped onto a liberty library, and the Fmax it allows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .liberty import liberty_load_unit_pf, liberty_time_unit_ns
from .synth_report import figure
from .yosys import SynthError, log_tail
from .yosys_stat import NUMBER

__all__ = ["ASIC_DRIVING_CELL", "ASIC_OUTPUT_LOAD_FF", "CLOCK", "STA_INSTALL", "critical_path"]

#: The cell that drives every input in the ``asic`` flow (ABC's ``set_driving_cell`` and OpenSTA's
#: ``set_driving_cell``): a flip-flop's output stage is about as strong.
ASIC_DRIVING_CELL = "BUFX2"
#: The load on every output in the ``asic`` flow, in fF: about one DFFPOSX1 D pin (8.8 fF).
ASIC_OUTPUT_LOAD_FF = 10
CLOCK = "clk"  # the clock port of Amaranth's default ("sync") domain
STA_INSTALL = "apt-get install qflow (Debian; brings OpenSTA's `sta`)"


def critical_path(netlist: Path, top: str, liberty: Path, work: Path, sta=None) -> dict:
    """OpenSTA's longest path through a mapped netlist, and the Fmax it allows.

    Ideal clock on ``clk`` (a virtual clock for a combinational design), no wire load, inputs
    driven by :data:`ASIC_DRIVING_CELL`, outputs loaded with :data:`ASIC_OUTPUT_LOAD_FF`, input
    and output delays 0 against the clock: the figure is the longest register-to-register,
    input-to-register, register-to-output or input-to-output path, setup included. Writes
    ``work/sta.tcl`` and ``work/sta.log``.

    Returns
    -------
    dict
        ``critical_path`` (ns) and ``fmax`` (MHz) figures; both unavailable (with the reason)
        when ``sta`` is not given and not on PATH.

    Raises
    ------
    SynthError
        OpenSTA fails or reports no slack.
    """
    from fp8mac.sim.tools import ToolMissing, require

    try:
        sta = sta or require("sta")
    except ToolMissing:
        why = f"OpenSTA (sta) not found; {STA_INSTALL}"
        return {"critical_path": figure(None, "ns", unavailable=why), "fmax": figure(None, "MHz", unavailable=why)}
    period = 1000.0  # ns; the delay is period - worst slack, whatever the period
    has_clock = re.search(rf"^\s*input\s+{CLOCK}\s*;", netlist.read_text(), re.M) is not None
    clock = (f"create_clock -name {CLOCK} -period {period} [get_ports {CLOCK}]" if has_clock
             else f"create_clock -name vclk -period {period}")
    clk = CLOCK if has_clock else "vclk"
    inputs = f"[delete_from_list [all_inputs] [get_ports {CLOCK}]]" if has_clock else "[all_inputs]"
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
        f"set_load {ASIC_OUTPUT_LOAD_FF * 1e-3 / liberty_load_unit_pf(liberty):g} [all_outputs]",
        "report_checks -path_delay max -digits 4",
        "exit",
    ]) + "\n")
    with open(report, "w") as fh:
        proc = subprocess.run([sta, "-no_init", "-exit", str(script)], cwd=work, stdin=subprocess.DEVNULL,
                              stdout=fh, stderr=subprocess.STDOUT)
    text = report.read_text(errors="replace")
    m = re.search(rf"^\s*(-?{NUMBER})\s+slack \((?:MET|VIOLATED)\)", text, re.M)
    if proc.returncode != 0 or m is None or re.search(r"^Error", text, re.M):
        raise SynthError(f"OpenSTA failed (status {proc.returncode}); log {report}:\n{log_tail(report)}")
    scale = liberty_time_unit_ns(liberty)
    delay = (period - float(m.group(1))) * scale
    start = re.search(r"^Startpoint:\s*(.*)$", text, re.M)
    end = re.search(r"^Endpoint:\s*(.*)$", text, re.M)
    return {
        "critical_path": figure(round(delay, 3), "ns", startpoint=start and start.group(1).strip(),
                                 endpoint=end and end.group(1).strip(),
                                 method=f"OpenSTA: ideal clock, no wire load, inputs driven by "
                                        f"{ASIC_DRIVING_CELL}, outputs {ASIC_OUTPUT_LOAD_FF} fF, "
                                        f"input/output delays 0, setup included"),
        "fmax": figure(round(1000.0 / delay, 1) if delay > 0 else None, "MHz"),
    }
