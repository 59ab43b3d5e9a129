"""The emitted Verilog of every arithmetic block passes `verilator --lint-only -Wall` with the
waivers of hw/verilator.vlt; `fp8mac emit` writes it and rejects bad input with exit status 2.

Verilator missing is a failure (fp8mac.sim.tools.require says how to install it), not a skip.
"""

import pytest

from fp8mac.hw.cli import main
from fp8mac.hw.emit import build_block, emit_verilog
from fp8mac.hw.lint import LintError, lint

BLOCKS = [
    ("multiplier", {}),
    ("multiplier", {"in_format": "fp8_e4m3"}),
    ("mac", {}),
    ("mac", {"rounding": "stochastic"}),
    ("mac", {"rounding": "zero", "in_format": "fp8_e4m3"}),
    ("mac", {"acc_format": "fp32"}),
    ("mac", {"acc_format": "fp32", "rounding": "stochastic", "rbits": 32}),
    ("adder", {}),
    ("adder", {"acc_format": "fp32", "rounding": "stochastic"}),
    ("lfsr", {}),
    ("lfsr", {"lfsr_width": 64, "rbits": 32, "seed": 12345}),
]


@pytest.mark.parametrize("block,params", BLOCKS,
                         ids=[b + "".join(f"-{v}" for v in p.values()) for b, p in BLOCKS])
def test_block_lints_clean(block, params, tmp_path):
    path = tmp_path / f"{block}.v"
    path.write_text(emit_verilog(build_block(block, **params), f"fp8mac_{block}"))
    lint(path, f"fp8mac_{block}")


def test_lint_reports_warnings(tmp_path):
    """lint can fail: an undriven wire is reported with Verilator's message."""
    path = tmp_path / "bad.v"
    path.write_text("module bad(output wire [1:0] y);\n  wire [1:0] x;\n  assign y = x;\nendmodule\n")
    with pytest.raises(LintError, match="UNDRIVEN"):
        lint(path, "bad")


def test_emit_command(tmp_path, capsys):
    out = tmp_path / "mac.v"
    assert main(["emit", "--block", "mac", "--rounding", "stochastic", "--rbits", "4",
                 "--top", "my_mac", "--out", str(out)]) == 0
    text = out.read_text()
    assert "module my_mac(" in text and "rand" in text
    lint(out, "my_mac")


@pytest.mark.parametrize("args,name", [
    (["--block", "mac", "--rounding", "up"], "rounding"),
    (["--block", "mac", "--acc-format", "fp8_e4m3"], "acc_format"),
    (["--block", "mac", "--in-format", "fp7"], "in_format"),
    (["--block", "mac", "--rounding", "stochastic", "--rbits", "0"], "rbits"),
    (["--block", "lfsr", "--lfsr-width", "2"], "width"),
    (["--block", "lfsr", "--lfsr-width", "8", "--rbits", "9"], "rbits"),
    (["--block", "lfsr", "--seed", "0"], "seed"),
    (["--block", "adder", "--top", "9lives"], "name"),
])
def test_emit_bad_input(args, name, tmp_path, capsys):
    assert main(["emit", *args, "--out", str(tmp_path / "x.v")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fp8mac: error: {name}"), err
    assert not (tmp_path / "x.v").exists()


def test_start_trigger_changes_at_time_zero():
    """Every ``always @*`` start-trigger reg Yosys declares ``= 0`` is also set at ``#0`` (so IEEE
    1800 simulators run the blocks at time 0), outside synthesis and Verilator, and nothing else."""
    import re

    from fp8mac.hw.emit import accelerator_verilog
    from fp8mac.model.config import MacConfig

    text = accelerator_verilog(MacConfig(rows=2, cols=2))
    decls = re.findall(r"^(\s*)reg (\\\$auto\$verilog_backend\S+)  = 0;\n", text, re.M)
    assert len(decls) >= 3  # the top, the row and the PE each have combinational processes
    for indent, name in decls:
        block = (f"{indent}reg {name}  = 0;\n{indent}`ifndef SYNTHESIS\n{indent}`ifndef VERILATOR\n"
                 f"{indent}initial #0 {name} = 1'h1;\n{indent}`endif\n{indent}`endif\n")
        assert block in text, name
    assert text.count("initial") == len(decls)
