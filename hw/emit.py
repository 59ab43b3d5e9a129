"""Verilog of Amaranth components, and ``fp8mac emit``: one arithmetic block to a ``.v`` file.

:func:`emit_verilog` is the one way fp8mac turns a component into Verilog: every port of the
component's signature becomes a module port (``amaranth.cli.main`` would drop them), and no
``src`` attributes are written, so the text does not depend on where the checkout lives.
"""

from __future__ import annotations

import re

__all__ = ["emit_verilog", "build_block", "BLOCKS", "register"]

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

    return verilog.convert(component, name=_check_name(name), emit_src=emit_src)


def _check_name(name):
    if not isinstance(name, str) or not _VERILOG_ID.match(name):
        raise ValueError(f"name must be a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*), not {name!r}")
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

    top = _check_name(args.top or f"fp8mac_{args.block}")
    component = build_block(args.block, in_format=args.in_format, acc_format=args.acc_format,
                            rounding=args.rounding, rbits=args.rbits,
                            lfsr_width=args.lfsr_width, seed=args.seed)
    text = emit_verilog(component, top)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"fp8mac emit: wrote {out} (module {top})")
    return 0
