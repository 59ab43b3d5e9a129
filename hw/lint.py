"""``lint``: Verilator's ``--lint-only -Wall`` on generated Verilog, with fp8mac's waivers.

The waivers live in ``hw/verilator.vlt`` (:data:`WAIVERS`), each justified there; anything else
Verilator reports makes :func:`lint` raise :class:`LintError` with Verilator's messages.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from fp8mac.sim.tools import require, tool_env

__all__ = ["lint", "LintError", "WAIVERS"]

WAIVERS = Path(__file__).with_name("verilator.vlt")
"""Verilator configuration file with fp8mac's lint waivers."""


class LintError(RuntimeError):
    """Verilator reported warnings or errors; the message holds them."""


def lint(verilog_path, top: str) -> None:
    """Run ``verilator --lint-only -Wall`` on ``verilog_path`` with module ``top`` as the top.

    Raises
    ------
    LintError
        If Verilator prints any warning or error (its messages are in the exception).
    fp8mac.sim.tools.ToolMissing
        If Verilator is not installed (the message says how to install it).
    """
    verilator = require("verilator")
    cmd = [verilator, "--lint-only", "-Wall", "--top-module", top, str(WAIVERS), str(verilog_path)]
    proc = subprocess.run(cmd, env=tool_env(), capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    messages = [line for line in output.splitlines() if line.startswith("%")]
    if proc.returncode != 0 or messages:
        raise LintError(f"verilator --lint-only -Wall {verilog_path} (top {top}) failed:\n"
                        + "\n".join(messages or output.splitlines()))
