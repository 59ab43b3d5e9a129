"""``fp8mac generate``: the three files, the manifest round trip, and every bad-input case."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from fp8mac.hw.cli import main
from fp8mac.model.config import MacConfig


def run_cli(*args):
    """The CLI in a subprocess (as a user runs it): ``(exit status, stdout, stderr)``."""
    p = subprocess.run([sys.executable, "-m", "fp8mac.hw", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def test_generate_writes_three_files_and_manifest_round_trips(tmp_path):
    out = tmp_path / "gen"
    status = main(["generate", "--out", str(out), "--rows", "2", "--cols", "3", "--chunk", "16",
                   "--inner-rounding", "stochastic", "--rbits", "6", "--seed", "42",
                   "--pe", "shared-adder", "--top", "my_array"])
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "my_array.core", "my_array.v",
                                                     "my_array.vlt"]
    verilog = (out / "my_array.v").read_text()
    assert re.search(r"^module my_array\(", verilog, re.M)
    for port in ("s_axis_a_tdata", "s_axis_b_tready", "m_axis_c_tlast", "clk", "rst"):
        assert re.search(rf"\b(input|output)\s.*\b{port};", verilog), port
    man = json.loads((out / "manifest.json").read_text())
    want = MacConfig(rows=2, cols=3, chunk=16, inner_rounding="stochastic", rbits=6, seed=42,
                     pe="shared-adder", top="my_array")
    assert MacConfig.from_dict(man["config"]) == want
    widths = {p["name"]: p["width"] for p in man["ports"]}
    assert widths["s_axis_a_tdata"] == 2 * 8 and widths["s_axis_b_tdata"] == 3 * 8
    assert widths["m_axis_c_tdata"] == 3 * 16
    assert len(man["lfsr"]["stream_seeds"]["inner"]) == 2
    assert len(man["lfsr"]["stream_seeds"]["outer"][0]) == 3
    core = (out / "my_array.core").read_text()
    assert core.startswith("CAPI=2:") and "- my_array.v" in core and "toplevel: my_array" in core
    # The manifest is itself a valid --config: regenerating gives the same Verilog.
    out2 = tmp_path / "again"
    assert main(["generate", "--out", str(out2), "--config", str(out / "manifest.json")]) == 0
    assert (out2 / "my_array.v").read_text() == verilog


def test_generate_row_outer_adder(tmp_path):
    """--outer-adder row: one adder and one seeded LFSR per row in the Verilog and the manifest
    (the seeds written out: the model's documented function); a chunk that cannot serve every
    column exits 2 naming the parameters."""
    from fp8mac.model.lfsr import stream_seed

    out = tmp_path / "gen"
    assert main(["generate", "--out", str(out), "--rows", "3", "--cols", "4", "--chunk", "8",
                 "--dot", "2", "--outer-adder", "row", "--seed", "9"]) == 0
    piped = tmp_path / "piped"
    assert main(["generate", "--out", str(piped), "--rows", "2", "--cols", "2", "--chunk", "off",
                 "--pipeline", "3"]) == 0
    # cols + 3 + 3 stages (no outer add, but the write from the accumulator takes its place).
    assert json.loads((piped / "manifest.json").read_text())["timing"]["first_result_latency"] == 2 + 3 + 3
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["outer_adder"] == "row" and man["config"]["dot"] == 2
    # Latency: cols + 3 (the last step reaches the row's last PE, its outer add, the output
    # buffer), + 1 for the row adder's two stages, + 0 pipeline stages.
    assert man["timing"]["first_result_latency"] == 4 + 3 + 1
    assert man["timing"]["macs_per_cycle_per_pe"] == 2
    assert "outer" not in man["lfsr"]["stream_seeds"]  # no per-PE outer stream
    assert man["outer_placement"] == "row"
    assert man["lfsr"]["stream_seeds"]["row_outer"] == [stream_seed(9, r, 0, 2, 32) for r in range(3)]
    verilog = (out / "fp8mac_array.v").read_text()
    # One row module (with the row's adder) instantiated per row, each with its row's seed.
    assert len(re.findall(r"^module \\fp8mac_array_row\.outer_add \(", verilog, re.M)) == 1
    assert len(re.findall(r"^  fp8mac_array_row row_r\d \(", verilog, re.M)) == 3
    widths = {p["name"]: p["width"] for p in man["ports"]}
    assert widths["s_axis_a_tdata"] == 3 * 2 * 8 and widths["s_axis_b_tdata"] == 4 * 2 * 8


def test_generate_from_toml_with_flag_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('rows = 3\ncols = 2\nchunk = "off"\nacc_format = "fp32"\n')
    assert main(["generate", "--out", str(tmp_path / "o"), "--config", str(cfg), "--cols", "1"]) == 0
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert MacConfig.from_dict(man["config"]) == MacConfig(rows=3, cols=1, chunk=None, acc_format="fp32")


BAD = [
    (["--rows", "0"], r"rows must be in 1\.\.64"),
    (["--rows", "65"], r"rows must be in 1\.\.64"),
    (["--cols", "0"], r"cols must be in 1\.\.64"),
    (["--in-format", "fp7"], r"in_format: unknown format 'fp7'; choose one of fp8_e5m2"),
    (["--acc-format", "half"], r"acc_format: unknown format 'half'"),
    (["--chunk", "0"], r"chunk must be in 1\.\."),
    (["--chunk", "lots"], r"chunk must be an integer >= 1 or 'off'"),
    (["--rbits", "33"], r"rbits must be in 1\.\.32"),
    (["--rbits", "9", "--lfsr-width", "8"], r"rbits must be in 1\.\.8"),
    (["--lfsr-width", "2"], r"lfsr_width must be an integer in 3\.\.64"),
    (["--inner-rounding", "up"], r"inner_rounding must be one of nearest, zero, stochastic"),
    (["--pe", "three-adder"], r"pe must be one of two-adder, shared-adder"),
    (["--top", "9lives"], r"top must be a Verilog identifier"),
    (["--rows", "two"], r"argument --rows: invalid int value"),
    (["--top", "module"], r"top must not be a Verilog/SystemVerilog keyword, not 'module'"),
    (["--dot", "3"], r"dot must be a power of two in 1\.\.64, not 3"),
    (["--pipeline", "9"], r"pipeline must be in 0\.\.8, not 9"),
    (["--pipeline", "-1"], r"pipeline must be in 0\.\.8, not -1"),
    (["--outer-adder", "column"], r"outer_adder must be one of auto, pe, row, not 'column'"),
    (["--outer-adder", "row", "--chunk", "16", "--dot", "4"], r"outer_adder 'row': chunk / dot \(16 / 4\) must be at least max\(cols, 2\) = 8"),
    (["--dot", "128"], r"dot must be a power of two in 1\.\.64, not 128"),
    (["--dot", "0"], r"dot must be a power of two in 1\.\.64, not 0"),
    (["--dot", "8", "--chunk", "12"], r"chunk must be a multiple of dot \(8\), not 12"),
    (["--dot", "4", "--chunk", "2"], r"chunk must be a multiple of dot \(4\), not 2"),
    (["--dot", "four"], r"argument --dot: invalid int value"),
    (["--a-block", "mxfp5"], r"a_block: unknown block format 'mxfp5'; choose one of mxfp8_e4m3"),
    (["--a-block", "mxfp4", "--dot", "8", "--chunk", "48"], r"chunk must be a multiple of the block size \(32\)"),
    (["--a-block", "nvfp4", "--dot", "32"], r"dot \(32\) must divide the block size \(16\)"),
    (["--a-block", "mxfp4", "--dot", "8", "--top-kind", "engine"], r"a_block: the layer engine's buffers hold plain"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exit_2_one_line_no_partial_files(tmp_path, args, message):
    out = tmp_path / "o"
    status, stdout, stderr = run_cli("generate", "--out", str(out), *args)
    assert status == 2, stderr
    assert re.search(message, stderr), stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 3
    assert not out.exists() or not any(out.iterdir())


def test_mixed_operand_formats_generate(tmp_path):
    """--a-format / --b-format (issue 16): each stream's port is as wide as its own codes, the
    manifest lists both formats (and no single "in" format), the FuseSoC core says which."""
    out = tmp_path / "o"
    status, stdout, stderr = run_cli("generate", "--out", str(out), "--rows", "3", "--cols", "2",
                                     "--dot", "2", "--a-format", "fp8_e4m3", "--b-format", "fp16")
    assert status == 0, stderr
    assert "fp8_e4m3 x fp16 -> fp16_ibm" in stdout
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["a_format"] == "fp8_e4m3" and man["config"]["b_format"] == "fp16"
    assert (man["formats"]["a"]["exp_bits"], man["formats"]["b"]["exp_bits"]) == (4, 5)
    assert "in" not in man["formats"]
    widths = {p["name"]: p["width"] for p in man["ports"]}
    assert widths["s_axis_a_tdata"] == 3 * 2 * 8 and widths["s_axis_b_tdata"] == 2 * 2 * 16
    verilog = (out / "fp8mac_array.v").read_text()
    assert re.search(r"input \[47:0\] s_axis_a_tdata", verilog)
    assert re.search(r"input \[63:0\] s_axis_b_tdata", verilog)
    assert "fp8_e4m3 x fp16 -> fp16_ibm" in next(out.glob("*.core")).read_text()
    assert MacConfig.from_dict(man["config"]) == MacConfig(rows=3, cols=2, dot=2, a_format="fp8_e4m3",
                                                           b_format="fp16")


@pytest.mark.parametrize("args, message", [
    (["--a-format", "fp8_e3m4"], r"^fp8mac: error: a_format: unknown format 'fp8_e3m4'; choose one of .*fp8_e4m3"),
    (["--b-format", "e5m2"], r"^fp8mac: error: b_format: unknown format 'e5m2'; choose one of "),
    # an accumulator without infinities cannot hold E5M2's: the B stream's format is named
    (["--acc-format", "fp8_e4m3", "--a-format", "fp8_e4m3", "--b-format", "fp8_e5m2"], r"b_format"),
])
def test_bad_operand_format_is_one_line(tmp_path, args, message):
    out = tmp_path / "o"
    status, stdout, stderr = run_cli("generate", "--out", str(out), *args)
    assert (status, stdout) == (2, "")
    assert len(stderr.strip().splitlines()) == 1 and re.search(message, stderr.strip()), stderr
    assert not out.exists()


def test_bad_dot_is_one_line_naming_dot(tmp_path):
    status, stdout, stderr = run_cli("generate", "--out", str(tmp_path / "o"), "--dot", "3")
    assert (status, stdout) == (2, "")
    assert stderr == "fp8mac: error: dot must be a power of two in 1..64, not 3\n"


def test_generate_dot_flag_reaches_the_manifest(tmp_path):
    out = tmp_path / "dot"
    assert main(["generate", "--out", str(out), "--rows", "2", "--cols", "2", "--chunk", "16", "--dot", "4"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert MacConfig.from_dict(man["config"]) == MacConfig(rows=2, cols=2, chunk=16, dot=4)


def test_bad_config_files(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("rows = = 3\n")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"rows": 2, "colums": 3}))
    for path, message in ((broken, r"not valid TOML"), (unknown, r"unknown config field\(s\) colums"),
                          (tmp_path / "missing.toml", r"cannot read")):
        status, _, stderr = run_cli("generate", "--out", str(tmp_path / "o"), "--config", str(path))
        assert status == 2 and re.search(message, stderr), stderr
        assert "Traceback" not in stderr


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status, _, stderr = run_cli("generate", "--out", str(blocker / "sub"))
    assert status == 2 and "--out: cannot write to" in stderr and "Traceback" not in stderr


def test_help_lists_every_option_with_default():
    status, stdout, _ = run_cli("generate", "--help")
    assert status == 0
    for flag in ("--rows", "--cols", "--in-format", "--acc-format", "--chunk", "--dot", "--inner-rounding",
                 "--outer-rounding", "--rbits", "--lfsr-width", "--seed", "--pe", "--top", "--config"):
        assert flag in stdout
    assert stdout.count("default") >= 13
    assert "products per step, a power of two 1..64; chunk must be a multiple (default 1)" in " ".join(stdout.split())


@pytest.mark.parametrize("fields", [
    {},  # the default configuration (8 x 8, chunk 64, outer stochastic): the README's design
    dict(rows=2, cols=3, chunk=5, pe="shared-adder", inner_rounding="stochastic", rbits=6),
    dict(rows=3, cols=1, chunk=None, in_format="fp8_e4m3", acc_format="fp32"),
], ids=["default", "shared-adder-both-stochastic", "chunk-off-e4m3-fp32"])
def test_generated_verilog_lints_clean(fields):
    """``verilator --lint-only -Wall`` with only the justified waivers of hw/verilator.vlt."""
    from fp8mac.hw.lint import lint
    from fp8mac.sim.accel_bench import ensure_design

    config = MacConfig(**fields)
    design = ensure_design(config)  # generated once per source version (build/designs/)
    lint(design / f"{config.top}.v", config.top)


def test_engine_top_generates(tmp_path):
    """--top-kind engine: the engine's ports (AXI4-Lite, load streams, C read stream, done), the
    buffer depths and the register map in the manifest, the array's own ports listed apart."""
    from fp8mac.hw.engine import ERRORS, REGISTERS

    out = tmp_path / "e"
    status, stdout, stderr = run_cli("generate", "--out", str(out), "--rows", "2", "--cols", "3",
                                     "--top-kind", "engine", "--c-words", "64")
    assert status == 0, stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["top_kind"] == "engine"
    eng = man["engine"]
    assert (eng["a_words"], eng["b_words"], eng["c_words"]) == (1024, 1024, 64)
    assert {r["name"]: r["offset"] for r in eng["registers"]} == {k: v[0] for k, v in REGISTERS.items()}
    assert {e["name"] for e in eng["errors"]} == set(ERRORS)
    widths = {p["name"]: p["width"] for p in man["ports"]}
    assert widths["s_axil_awaddr"] == 8 and widths["s_axil_rdata"] == 32 and widths["done"] == 1
    assert widths["s_axis_a_tdata"] == 16 and widths["m_axis_c_tdata"] == 3 * 16
    assert "s_axis_a_tready" in {p["name"] for p in eng["array_ports"]}
    verilog = (out / "fp8mac_array.v").read_text()
    assert re.search(r"^module fp8mac_array\(", verilog, re.M) and "fp8mac_array_row row_r1" in verilog


@pytest.mark.parametrize("args, message", [
    (["--top-kind", "engin"], "top_kind must be stream or engine, not 'engin'"),
    (["--a-words", "64"], "--a-words sizes the engine's buffers: it needs --top-kind engine"),
    (["--top-kind", "engine", "--b-words", "100"], "b_words must be a power of two in 2..65536, not 100"),
])
def test_bad_engine_arguments(tmp_path, args, message):
    out = tmp_path / "o"
    status, stdout, stderr = run_cli("generate", "--out", str(out), *args)
    assert (status, stdout, stderr) == (2, "", f"fp8mac: error: {message}\n")
    assert not out.exists()


def test_engine_register_header_compiles(tmp_path):
    """<top>_regs.h: a C driver including it compiles (gcc -Wall -Werror), and its offsets and
    bits are those of hw/engine.py's map, which the engine's simulations exercise."""
    import shutil as _shutil

    from fp8mac.hw.engine import CTRL_BITS, ERRORS, REGISTERS

    out = tmp_path / "e"
    status, _, stderr = run_cli("generate", "--out", str(out), "--rows", "2", "--cols", "2",
                                "--top", "npu", "--top-kind", "engine")
    assert status == 0, stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["files"]["header"] == "npu_regs.h"
    checks = [f"_Static_assert(NPU_{k} == {o}, \"{k}\");" for k, (o, _, _) in REGISTERS.items()]
    checks += [f"_Static_assert(NPU_CTRL_{k} == (1u << {b}), \"{k}\");" for k, b in CTRL_BITS.items()]
    checks += [f"_Static_assert(NPU_STATUS_{k} == (1u << {b}), \"{k}\");" for k, (b, _) in ERRORS.items()]
    src = tmp_path / "driver.c"
    src.write_text('#include "npu_regs.h"\n' + "\n".join(checks) + "\nint main(void) { return 0; }\n")
    gcc = _shutil.which("gcc") or _shutil.which("cc")
    assert gcc, "no C compiler on this machine (Verilator needs one too)"
    r = subprocess.run([gcc, "-std=c11", "-Wall", "-Werror", "-I", str(out), "-fsyntax-only", str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_block_scaled_generate(tmp_path):
    """--a-block (issue 19): each lane is dot element codes plus the block's scale code, the
    manifest says where each sits and how many beats a block takes, the config round-trips."""
    out = tmp_path / "o"
    assert main(["generate", "--out", str(out), "--rows", "1", "--cols", "2", "--dot", "8",
                 "--a-block", "mxfp8_e4m3", "--b-block", "mxfp8_e5m2"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    widths = {p["name"]: p["width"] for p in man["ports"]}
    assert widths["s_axis_a_tdata"] == 1 * (8 * 8 + 8) and widths["s_axis_b_tdata"] == 2 * (8 * 8 + 8)
    blk = man["formats"]["a_block"]
    assert (blk["lane_bits"], blk["element_bits"], blk["scale_bits"], blk["beats_per_block"]) == (72, [0, 64], [64, 8], 4)
    assert man["formats"]["b_block"]["element"]["name"] == "fp8_e5m2" and "in" not in man["formats"]
    assert MacConfig.from_dict(man["config"]) == MacConfig(rows=1, cols=2, dot=8, a_block="mxfp8_e4m3",
                                                           b_block="mxfp8_e5m2")
    assert "module fp8mac_array" in (out / "fp8mac_array.v").read_text()
