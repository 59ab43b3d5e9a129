"""The area report of ``make synth`` (fp8mac.hw.area_report) and its grid (fp8mac/hw/grids/synth.toml).

``tests/data/area_68cf1be/`` holds what the last run of the old ``scripts/synth_compare.py`` (at
68cf1be, 14.8 min) wrote and what it ran: ``designs.json`` (its design lists: key, label, kind,
targets, MacConfig or block arguments), ``results.json`` (each design's synthesis report,
trimmed to the figures), ``area.md`` and ``benchmarks_synth.md`` (its report and its section of
BENCHMARKS.md). The shipped grid must hold exactly those designs, and the report code, fed those
results, must write that report again, figure for figure. No Yosys run here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fp8mac.hw.area_report import Designs, write_report
from fp8mac.hw.design_point import block_args
from fp8mac.hw.sweep import load_grid

DATA = Path(__file__).resolve().parent / "data" / "area_68cf1be"
#: build_block's defaults (fp8mac.hw.emit), what the old design list left unsaid.
BLOCK_DEFAULTS = dict(in_format="fp8_e5m2", acc_format="fp16_ibm", rounding="nearest", rbits=8,
                      lfsr_width=32, seed=1)
#: Which build_block arguments each block takes.
BLOCK_TAKES = {"multiplier": ("in_format",), "mac": ("acc_format", "in_format", "rounding", "rbits"),
               "adder": ("acc_format", "rounding", "rbits"), "lfsr": ("lfsr_width", "rbits", "seed")}


@pytest.fixture(scope="module")
def designs():
    return Designs(load_grid("synth").points)


def test_synth_grid_holds_the_designs_of_the_old_lists():
    """Every design of scripts/synth_compare.py's lists at 68cf1be (the script the grid
    replaced), unchanged: the same name, label, kind, targets, and MacConfig (or block and its
    arguments, engine depth); and besides them only the block-scaled section added since."""
    old = json.loads((DATA / "designs.json").read_text())
    points = {p.name: p for p in load_grid("synth").points}
    # ... and the block-scaled section added since (issue 19), nothing else
    new = sorted(set(points) - {d["key"] for d in old})
    assert new == sorted(p.name for p in points.values() if p.section == "blockscaled")
    assert all(points[n].config.blocks or n == "dot8_fp8_e4m3" for n in new)
    for d in old:
        p = points[d["key"]]
        assert p.label == d["label"], d["key"]
        assert list(p.targets) == d["targets"], d["key"]
        kind = {"hier_array": "array"}.get(d["kind"], d["kind"])
        assert (p.kind, p.hierarchical) == (kind, d["kind"] == "hier_array"), d["key"]
        if d["kind"] == "block":
            assert p.block == d["block"]
            want = {k: v for k, v in {**BLOCK_DEFAULTS, **d["block_args"]}.items()
                    if k in BLOCK_TAKES[d["block"]]}
            assert block_args(p) == want, d["key"]
        else:
            assert json.loads(json.dumps(p.config.to_dict())) == d["config"], d["key"]
        assert p.depth == d.get("depth"), d["key"]


def _section(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:begin -->\n", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def test_report_of_the_68cf1be_results_is_the_68cf1be_report(tmp_path, designs):
    """Fed the per-design results of the 68cf1be run, the report code writes that run's
    area.md line for line (all but the two lines that name the tool and the run) and its
    BENCHMARKS.md section exactly."""
    last = json.loads((DATA / "results.json").read_text())
    meta = dict(last["meta"], run="the 68cf1be run")
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# benchmarks\n\n<!-- model:begin -->\nkeep me\n<!-- model:end -->\n")
    paths = write_report(designs, last["results"], meta, {}, tmp_path, bench)
    assert paths == [tmp_path / "area.md", tmp_path / "area.png", bench]
    got = (tmp_path / "area.md").read_text().splitlines()
    want = (DATA / "area.md").read_text().splitlines()
    assert len(got) == len(want)
    differ = [(w, g) for w, g in zip(want, got) if w != g]
    assert [w.split(" ")[:2] for w, _ in differ] == [["Written", "by"], ["-", "Machine:"]], differ
    assert "fp8mac sweep --grid synth" in differ[0][1]
    assert differ[1][1].startswith("- Machine: x86_64, 2 cores; total time 14.8 min (the 68cf1be run)")
    assert _section(bench.read_text(), "synth") == (DATA / "benchmarks_synth.md").read_text()
    assert "<!-- model:begin -->\nkeep me\n<!-- model:end -->" in bench.read_text()
    assert (tmp_path / "area.png").read_bytes()[:4] == b"\x89PNG"


def _fake_results(ds, fp16_area, fp32_area):
    """Results as the sweep gathers them, with made-up areas (transistors = area / 5)."""
    def rep(area, seq=0.0, fmax=100.0):
        return {"asic": {"area": {"value": area}, "sequential_area": {"value": seq}, "fmax": {"value": fmax}},
                "generic": {"transistors": {"value": area / 5}}, "times": {"generate": 1, "synthesize": 2}}

    res = {d.name: rep(1000.0, 200.0) for d in ds.pes}
    res.update({d.name: rep(100.0) for d in ds.section("block")})
    res["lfsr32"] = rep(100.0, 50.0)
    # Throughput per area, FP8 / baseline: (100 / 1000) / (50 / fp16_area), (100 / 1000) / (20 / fp32_area).
    res["fp16_fp32"], res["fp32_fp32"] = rep(fp16_area, 200.0, 50.0), rep(fp32_area, 200.0, 20.0)
    res["array4x4"] = rep(16 * 1000.0 + 800.0, 400.0, 90.0)  # hierarchical: one PE and row module
    res["array4x4"]["asic"]["modules"] = {"fp8mac_array4x4_pe": {"value": 950.0},
                                          "fp8mac_array4x4_row": {"value": 400.0},
                                          "fp8mac_array4x4": {"value": 1000.0}}
    res["array4x4_flat"] = rep(16 * 1000.0 + 500.0, 16 * 200.0, 95.0)
    return res


@pytest.mark.parametrize("fp16_area, fp32_area, met", [(5000.0, 11000.0, True), (1500.0, 11000.0, False)])
def test_report_states_the_ratios_against_the_goals(tmp_path, designs, fp16_area, fp32_area, met):
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# benchmarks\n\n<!-- model:begin -->\nkeep me\n<!-- model:end -->\n")
    meta = {"yosys": "Yosys 0.70 (fake)", "yowasp": "0", "machine": "test", "minutes": 1.0,
            "run": "made up", "source": "abc1234"}
    failures = {"dot2_fp32": "SynthError: timed out"}
    write_report(designs, _fake_results(designs, fp16_area, fp32_area), meta, failures, tmp_path, bench)
    md = (tmp_path / "area.md").read_text()
    assert f"| {fp16_area / 1000:.2f}x | >= 4x | {'yes' if met else 'no'} |" in md
    assert "| 11.00x | >= 10x | yes |" in md
    # (100 / 1000) / (20 / 11000) = 55x against FP32; against FP16 10x or 3x.
    assert "| throughput per area (FP8 / baseline, each at its Fmax) | 55.00x | >= 25x | yes |" in md
    assert f"| throughput per area (FP8 / baseline, each at its Fmax) | {fp16_area / 500:.2f}x | >= 6x |" in md
    assert ("Every goal is met." in md) == met
    assert ("What would close the gap" in md) == (not met)
    # 16,800 um^2 = 16 PEs of 1,000 um^2 + 5%; flat 16,500 = + 3.1%
    assert "| 4 x 4 | 950 | 400 | 1,000 | 16,800 | 1,050 | +5.0% | 90.0 | 16,500 | +3.1% | 95.0 |" in md
    assert "**Failed designs:** dot2_fp32: SynthError: timed out" in md
    assert "- Designs generated from fp8mac commit abc1234" in md
    # every lever of the grid in the levers table, in grid order, all of the default's area (0.0%)
    levers = re.findall(r"^\| (.+) \| 1,000 \| 0\.0% \|$", md, re.M)
    assert levers == [p.title.removeprefix("... ") for p in designs.levers] and len(levers) == 8
    text = bench.read_text()
    assert "<!-- model:begin -->\nkeep me\n<!-- model:end -->" in text   # other sections untouched
    assert text.count("<!-- synth:begin -->") == 1 and text.count("<!-- synth:end -->") == 1
    write_report(designs, _fake_results(designs, fp16_area, fp32_area), meta, failures, tmp_path, bench)
    assert bench.read_text() == text  # rewritten in place, not appended


def test_a_pe_added_to_the_grid_joins_the_pe_tables(tmp_path):
    """The README's one-entry addition of a PE to the synth grid: it appears in the PE table,
    BENCHMARKS.md's table and (lever = true) the levers table, with its own figures."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("Adding a PE to the comparison is one entry"):]
    entry = section[section.index("```toml\n") + 8:]
    grid = tmp_path / "synth.toml"
    grid.write_text(load_grid("synth").path.read_text() + "\n" + entry[:entry.index("```")])
    ds = Designs(load_grid(grid).points)
    added = ds.points["fp8_chunk32"]
    assert added.config.chunk == 32 and added.targets == ("generic", "asic", "ice40")
    res = _fake_results(ds, 5000.0, 11000.0)
    res["fp8_chunk32"]["asic"]["area"]["value"] = 900.0
    bench = tmp_path / "B.md"
    meta = {"yosys": "Yosys 0.70 (fake)", "yowasp": "0", "machine": "test", "minutes": 1.0,
            "run": "made up", "source": "abc1234"}
    write_report(ds, res, meta, {}, tmp_path, bench)
    md = (tmp_path / "area.md").read_text()
    assert re.search(r"^\| \.\.\. chunk 32 \| 900 \| ", md, re.M)
    assert "| chunk 32 | 900 | -10.0% |" in md
    assert "| ... chunk 32 | 900 | 200 | 0.90x |" in bench.read_text()  # transistors unchanged


def test_dot_section_divides_by_the_products_per_cycle(designs):
    """Area per MAC/cycle is area / dot and throughput per area dot x Fmax / area, each FP8 row
    set against the baseline with the same dot (figures made up here, ratios worked by hand)."""
    from fp8mac.hw.area_report import _dot_section

    def rep(area, fmax):
        return {"asic": {"area": {"value": area}, "fmax": {"value": fmax}}}

    res = {"fp8": rep(1000.0, 100.0), "fp16_fp32": rep(2000.0, 50.0),
           "dot2_fp8": rep(1500.0, 80.0), "dot2_fp16": rep(3800.0, 40.0)}
    md = "\n".join(_dot_section(res, designs))
    # dot 1: 2000 / 1000 = 2.00x area per MAC; (100 / 1000) / (50 / 2000) = 4.00x per area.
    label = "FP8 e5m2 -> fp16_ibm (default: row outer adder)"
    assert f"| {label} | 1 | 1,000 | 1,000 | 100.0 | 100.00 | 2.00x |  | 4.00x |" in md
    # dot 2: 1900 / 750 = 2.53x; (2 * 80 / 1500) / (2 * 40 / 3800) = 5.07x.
    assert f"| {label} | 2 | 1,500 | 750 | 80.0 | 106.67 | 2.53x |  | 5.07x |" in md
    assert "at dot 2 needs 2.67x less area per MAC/cycle" in md
    # The previous default, its own outer adder in every PE: 2000 / 800 = 2.50x and
    # (100 / 800) / (50 / 2000) = 5.00x.
    res["fp8_pe_outer"] = rep(800.0, 100.0)
    md = "\n".join(_dot_section(res, designs))
    assert "| ... outer adder in every PE | 1 | 800 | 800 | 100.0 | 125.00 | 2.50x |  | 5.00x |" in md


def test_pipeline_section_lists_each_depth(designs):
    from fp8mac.hw.area_report import _pipeline_section

    def rep(area, fmax):
        return {"asic": {"area": {"value": area}, "fmax": {"value": fmax}}}

    res = {"fp8": rep(1000.0, 50.0), "fp16_fp32": rep(2000.0, 40.0), "pipe1_fp8": rep(1100.0, 100.0)}
    md = "\n".join(_pipeline_section(res, designs))
    # 50 MHz / 1000 um^2 = 50 GMAC/s per mm^2; 100 / 1100 = 90.91.
    assert "| 0 | 1,000 | 50.0 | 50.00 | 2,000 | 40.0 | 20.00 | n/a | n/a |" in md
    assert "| 1 | 1,100 | 100.0 | 90.91 | n/a | n/a | n/a | n/a | n/a |" in md
    assert "| 3 | n/a |" in md  # every depth of the grid's pipeline section
    assert _pipeline_section({"fp8": rep(1000.0, 50.0)}, designs) == []  # nothing pipelined: no section


def test_blockscaled_section_sets_each_pe_against_fp8_and_fp16(designs):
    """Area per MAC/cycle = area / dot, set against the dot-8 FP8 and FP16 PEs; each block stage
    against its PE (figures made up here, ratios worked by hand)."""
    from fp8mac.hw.area_report import _blockscaled_section

    def rep(area, fmax=50.0):
        return {"asic": {"area": {"value": area}, "fmax": {"value": fmax}}}

    res = {"dot8_fp8": rep(80_000.0), "dot8_fp16": rep(240_000.0), "mxfp4_dot32": rep(96_000.0, 100.0),
           "bs_mxfp4_dot8": rep(15_000.0), "mxfp4_dot8": rep(40_000.0),
           "r4_int4_dot8": rep(48_000.0), "e2m1_dot8": rep(32_000.0), "int4_dot8": rep(30_000.0)}
    md = "\n".join(_blockscaled_section(res, designs))
    # dot 32: 96,000 / 32 = 3,000 per MAC; FP8 10,000 per MAC (3.33x), FP16 30,000 (10.00x);
    # 32 x 100 MHz / 96,000 um^2 = 33.33 GMAC/s per mm^2
    assert "| MXFP4 -> fp16_ibm, dot 32 (a block per cycle) | 32 | 96,000 | 3,000 | 100.0 | 33.33 | 3.33x | 10.00x |" in md
    assert re.search(r"\| MXFP4 \(E2M1, E8M0 scale per 32\) -> fp16_ibm, dot 8 \| \d+ \| 15,000 \| 40,000 \| 38 % \|", md)
    assert "1.50x the E2M1 x E2M1 one and 1.60x the INT4 x INT4 one" in md
    assert "| NVFP4" not in md  # a design without results is left out
    assert _blockscaled_section({}, designs) == []
