"""``fp8mac sweep`` (fp8mac.hw.sweep, fp8mac.hw.sweep_report): grid files, Dask execution on a
LocalCluster and on a separately started scheduler + worker, the cache, failed points, the
reports, and sharding ``make regress`` with pytest-split.

The grids are tiny (2 to 6 points, short accumulation lengths, few trials): one test synthesizes
two small PEs, the others compute accuracy figures only. Every accuracy grid takes its operand
seed from the ``seed`` fixture (printed; FP8MAC_SEED replays it).
"""

from __future__ import annotations

import csv
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fp8mac.hw import cli
from fp8mac.hw.sweep import accuracy_figures, load_grid, point_key
from fp8mac.hw.sweep_report import pareto_front
from fp8mac.model import MacConfig
from fp8mac.model.studies.accumulation import run_accumulation

LENGTHS = (64, 512)
TRIALS = 4


def _grid(tmp_path, text, name="grid.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _accuracy_table(seed) -> str:
    return f"\n[accuracy]\nlengths = {list(LENGTHS)}\ntrials = {TRIALS}\nseed = {seed}\n"


def _sweep(capsys, *args) -> tuple[int, str, str]:
    status = cli.main(["sweep", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def _rows(out_dir) -> list[dict]:
    with open(Path(out_dir) / "results.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- grid files ----------------------------------------------------------------------------------

def test_grid_product_points_exclude_and_yaml(tmp_path):
    toml = _grid(tmp_path, """
chunk = [16, 64, "off"]
dot = [1, 4]
outer_rounding = "nearest"

[[points]]
chunk = 256
dot = 2

[[points]]        # the same configuration as a product point: listed once
chunk = 64
dot = 1

[[exclude]]
chunk = ["off", 16]
dot = 4
""")
    grid = load_grid(toml)
    got = [(c.chunk, c.dot, c.outer_rounding) for c in grid.configs]
    assert got == [(16, 1, "nearest"), (64, 1, "nearest"), (64, 4, "nearest"), (None, 1, "nearest"),
                   (256, 2, "nearest")]
    assert grid.varying == ("chunk", "dot")
    yaml = _grid(tmp_path, """
chunk: [16, 64, "off"]
dot: [1, 4]
outer_rounding: nearest
points:
  - {chunk: 256, dot: 2}
  - {chunk: 64, dot: 1}
exclude:
  - {chunk: ["off", 16], dot: 4}
""", "grid.yaml")
    assert load_grid(yaml).points == grid.points
    # the cache key follows the configuration, what and the settings, however spelled
    a, b = grid.points[0], MacConfig(chunk=16, outer_rounding="nearest")
    assert point_key(a, ("accuracy",), grid.settings) == point_key(b, ("accuracy",), grid.settings)
    assert point_key(a, ("accuracy",), grid.settings) != point_key(a, ("accuracy", "area"), grid.settings)
    other = dict(grid.settings, accuracy=dict(grid.settings["accuracy"], trials=3))
    assert point_key(a, ("accuracy",), grid.settings) != point_key(a, ("accuracy",), other)
    # a named design of the same configuration is another point; its report fields are not
    named = load_grid(_grid(tmp_path, 'report = "area"\n[[points]]\nname = "x"\nchunk = 16\n'
                                      'outer_rounding = "nearest"\nsection = "pe"\n', "named.toml"))
    relabeled = load_grid(_grid(tmp_path, '[[points]]\nname = "x"\nchunk = 16\nlabel = "X"\n'
                                          'outer_rounding = "nearest"\n', "relabeled.toml"))
    assert len(named.points) == 1 and named.points[0].config == b  # no product point
    key = point_key(named.points[0], ("area",), grid.settings)
    assert key != point_key(b, ("area",), grid.settings)
    assert key == point_key(relabeled.points[0], ("area",), grid.settings)
    # ... and the code the figures come from (a checkout's version does not change with it)
    from fp8mac.hw import sweep
    assert point_key(b, ("area",), grid.settings) == point_key(b, ("area",), grid.settings,
                                                               version=f"{sweep._version()}+{sweep.code_digest()}")
    assert point_key(b, ("area",), grid.settings) != point_key(b, ("area",), grid.settings,
                                                               version=f"{sweep._version()}+0000")
    hw = Path(sweep.__file__).parent
    assert all((hw / name).is_file() for name in sweep.REPORT_ONLY)  # none renamed away silently


def test_readme_grid_example_loads(tmp_path):
    """The README's grid file example is a valid grid: 4 x 2 x 2, minus two, plus one point."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Design-space sweeps"):]
    text = section[section.index("```toml\n") + 8:]
    grid = load_grid(_grid(tmp_path, text[:text.index("```")]))
    assert len(grid.points) == 15
    assert grid.configs[-1].chunk is None and grid.configs[-1].outer_rounding == "nearest"
    assert not any(c.chunk == 16 and c.dot == 4 for c in grid.configs)


BAD_GRIDS = [
    ("unknown field", "chunk = [16, 64]\nchunks = [1]\n", "unknown field 'chunks' (did you mean 'chunk'?)"),
    ("empty list", "chunk = [16, 64]\ndot = []\n", "dot: the list of values is empty"),
    ("rejected value", "chunk = [16, 64]\nrbits = [8, 40]\n", "rbits must be in 1..32, not 40"),
    ("rejected point", "chunk = [2, 64]\ndot = [1, 4]\n", "point chunk=2, dot=4"),
    ("unparsable TOML", "chunk = [16, 64\n", "not valid TOML"),
    ("unknown setting", "chunk = [16]\n[accuracy]\nlenghts = [64]\n", "[accuracy] unknown field 'lenghts'"),
    ("bad setting", "chunk = [16]\n[accuracy]\nlengths = [0]\n", "[accuracy] lengths must be integers"),
    ("exclusion off the axes", "chunk = [16, 64]\n[[exclude]]\ndot = 4\n", "dot is not an axis"),
    ("unknown point field", "chunk = [16]\n[[points]]\ndott = 4\n", "[[points]]: unknown field 'dott'"),
    ("everything excluded", "chunk = [16]\n[[exclude]]\nchunk = 16\n", "no points"),
    # named designs (fp8mac.hw.design_point)
    ("bad kind", '[[points]]\nkind = "chip"\n', "kind must be one of pe, array, engine, block, not 'chip'"),
    ("block without its block", '[[points]]\nkind = "block"\n',
     "block must be one of multiplier, mac, adder, lfsr, blocksum, not None"),
    ("block of a PE", '[[points]]\nblock = "mac"\n', "block is for kind block, not pe"),
    ("engine without depth", '[[points]]\nkind = "engine"\n', "depth (words per buffer) is needed for kind engine"),
    ("bad depth", '[[points]]\nkind = "engine"\ndepth = 12\n', "depth (words per buffer) must be a power of two"),
    ("hierarchical PE", '[[points]]\nhierarchical = true\n', "hierarchical is for kind array, not pe"),
    ("bad target", '[[points]]\ntargets = ["fpga"]\n', "targets must be a list of distinct generic, asic, ice40"),
    ("hierarchical on generic", '[[points]]\nkind = "array"\nhierarchical = true\ntargets = ["generic", "asic"]\n',
     'targets of a hierarchical array must be ["asic"]'),
    ("bad name", '[[points]]\nname = "a b"\n', "name must be an identifier"),
    ("name twice", '[[points]]\nname = "a"\n[[points]]\nname = "a"\ndot = 2\n', "name 'a' is given twice"),
    ("unknown report", 'report = "power"\n[[points]]\nname = "a"\n', "report must be one of area, not 'power'"),
    ("section without a report", '[[points]]\nsection = "pe"\n', "section is for a grid with a report"),
    ("unknown section", 'report = "area"\n[[points]]\nsection = "pes"\n', "section must be one of pe, dot,"),
    ("lever not a bool", '[[points]]\nlever = "yes"\n', "lever must be true or false, not 'yes'"),
]


@pytest.mark.parametrize("text, message", [b[1:] for b in BAD_GRIDS], ids=[b[0] for b in BAD_GRIDS])
def test_bad_grid_exits_2_naming_the_field(tmp_path, capsys, text, message):
    out_dir = tmp_path / "out"
    status, out, err = _sweep(capsys, "--grid", _grid(tmp_path, text), "--out", out_dir,
                              "--what", "accuracy")
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fp8mac: error: grid "), err
    assert message in lines[0]
    assert not out_dir.exists()  # nothing written


@pytest.mark.parametrize("name, text, message", [
    ("grid.yaml", "chunk: [16, 64\n", "not valid YAML: while parsing a flow sequence"),
    ("grid.yml", "- chunk\n", "must map MacConfig fields to values, not list"),
    ("grid.json", '{"chunk": [16]}', "unknown file type '.json'; a grid is .toml, .yaml or .yml"),
], ids=["yaml-unparsable", "yaml-not-a-mapping", "suffix"])
def test_bad_grid_file_kinds(tmp_path, capsys, name, text, message):
    status, _, err = _sweep(capsys, "--grid", _grid(tmp_path, text, name), "--out", tmp_path / "out")
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_bad_rejected_value_message_names_the_field(tmp_path, capsys):
    status, _, err = _sweep(capsys, "--grid", _grid(tmp_path, 'chunk = [16]\nouter_rounding = ["up"]\n'),
                            "--out", tmp_path / "out")
    assert status == 2
    assert "outer_rounding must be one of nearest, zero, stochastic, not 'up'" in err


@pytest.mark.parametrize("args, message", [
    (["--what", "accuracy,power"], "--what must be a comma-separated subset of accuracy, area, sim"),
    (["--workers", "0"], "--workers must be in 1..256"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers sizes the LocalCluster"),
    (["--out", "{tmp}/grid.toml/out"], "--out: {tmp}/grid.toml exists and is not a directory"),
    (["--grid", "{tmp}"], "--grid: {tmp} is not a file"),
    (["--grid", "{tmp}/grid.txt"], "--grid: {tmp}/grid.txt is not a file (shipped grids: synth)"),
    (["--report-dir", "{tmp}/r"], "--report-dir: grid {tmp}/grid.toml has no report (report = 'area')"),
    (["--benchmarks", "{tmp}/B.md"], "--benchmarks: grid {tmp}/grid.toml has no report"),
    (["--grid", "synth", "--benchmarks", "{tmp}/no/B.md"], "--benchmarks: {tmp}/no/B.md is not a file in an"),
    (["--grid", "synth", "--report-dir", "{tmp}/grid.toml"], "--report-dir: {tmp}/grid.toml exists and is not a"),
], ids=["what", "workers", "workers-with-scheduler", "out-under-a-file", "grid-a-folder", "grid-missing",
        "report-dir-without-report", "benchmarks-without-report", "benchmarks-nowhere", "report-dir-a-file"])
def test_bad_options_exit_2(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    status, _, err = _sweep(capsys, "--grid", _grid(tmp_path, "chunk = [16]\n"), "--out",
                            tmp_path / "out", *args)
    message = message.replace("{tmp}", str(tmp_path))
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_exits_2_naming_the_address(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"  # nobody listens there
    out_dir = tmp_path / "out"
    t0 = time.perf_counter()
    status, _, err = _sweep(capsys, "--grid", _grid(tmp_path, "chunk = [16]\n"), "--out", out_dir,
                            "--what", "accuracy", "--scheduler", address, "--connect-timeout", "1")
    assert status == 2
    assert err.count("\n") == 1 and err.startswith(f"fp8mac: error: --scheduler: no Dask scheduler "
                                                   f"answers at {address} within 1 s"), err
    assert time.perf_counter() - t0 < 60
    assert not out_dir.exists()


# --- runs on a LocalCluster ----------------------------------------------------------------------

def test_sweep_2x2_local_cluster_cache_and_growth(tmp_path, capsys, seed):
    """A 2 x 2 grid on a LocalCluster: the study's own figures, then a rerun that computes
    nothing (no cluster started), then a grown grid that computes only its new points."""
    axes = 'chunk = [64, 256]\nouter_rounding = ["nearest", "stochastic"]\n'
    grid = _grid(tmp_path, axes + _accuracy_table(seed))
    out_dir = tmp_path / "out"
    status, out, _ = _sweep(capsys, "--grid", grid, "--out", out_dir, "--what", "accuracy",
                            "--workers", "2")
    assert status == 0
    assert "sweep: 4 points (accuracy): 0 cached, 4 to compute" in out
    assert "LocalCluster of 2 worker process(es)" in out
    assert out.count(" ok ") == 4
    rows = _rows(out_dir)
    assert [(r["chunk"], r["outer_rounding"]) for r in rows] == [
        ("64", "nearest"), ("64", "stochastic"), ("256", "nearest"), ("256", "stochastic")]
    assert all(r["status"] == "ok" and r["cached"] == "0" for r in rows)
    assert {"rows", "cols", "in_format", "acc_format", "rbits", "lfsr_width", "pe", "pipeline",
            "outer_placement", "err_n64_rel", "err_n512_rel", "point_s"} <= set(rows[0])
    for r in rows:
        config = MacConfig(chunk=int(r["chunk"]), outer_rounding=r["outer_rounding"])
        # what the workers computed is what the function computes here, bit for bit
        here = accuracy_figures(config, LENGTHS, TRIALS, seed=seed)
        assert {k: float(r[k]) for k in here} == here
        if r["outer_rounding"] == "nearest":
            # and, for the deterministic points, the accumulation study's own figure
            study = run_accumulation(LENGTHS, TRIALS, chunks=(config.chunk,), sr_chunk=config.chunk,
                                     stochastic=False, dots=(), seed=seed, log=lambda *_: None)
            label = f"fp16_ibm chunk {config.chunk} RNE"
            assert here == {f"err_n{n}_rel": study.error[label][n] for n in LENGTHS}
    assert len(list((out_dir / "points").glob("*.json"))) == 4
    md = (out_dir / "sweep.md").read_text()
    assert "4 computed, 0 from the cache, 0 failed" in md and "No Pareto front" in md
    assert not (out_dir / "pareto.png").exists()

    status, out, _ = _sweep(capsys, "--grid", grid, "--out", out_dir, "--what", "accuracy")
    assert status == 0
    assert "sweep: 4 points (accuracy): 4 cached, 0 to compute" in out
    assert "LocalCluster" not in out and " ok " not in out  # nothing computed, no cluster
    assert "0 computed, 4 cached, 0 failed" in out
    assert "Run: 0 computed, 4 from the cache, 0 failed" in (out_dir / "sweep.md").read_text()
    assert "(no cluster: nothing to compute)" in (out_dir / "sweep.md").read_text()
    again = _rows(out_dir)
    assert [r["cached"] for r in again] == ["1"] * 4
    assert [{k: v for k, v in r.items() if k != "cached"} for r in again] == \
        [{k: v for k, v in r.items() if k != "cached"} for r in rows]

    grown = _grid(tmp_path, axes.replace("[64, 256]", "[64, 256, 1024]") + _accuracy_table(seed))
    status, out, _ = _sweep(capsys, "--grid", grown, "--out", out_dir, "--what", "accuracy",
                            "--workers", "2")
    assert status == 0
    assert "sweep: 6 points (accuracy): 4 cached, 2 to compute" in out
    assert out.count(" ok ") == 2 and "chunk=1024" in out
    assert [r["cached"] for r in _rows(out_dir)] == ["1"] * 4 + ["0"] * 2


def test_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys, seed):
    """A mixed-format point: MacConfig takes it, the accumulation study (one operand format)
    refuses it. The error is recorded, the other point finishes, the exit status is 1, and the
    failed point is not cached (the next run tries it again)."""
    grid = _grid(tmp_path, 'b_format = ["fp8_e5m2", "fp8_e4m3"]\n' + _accuracy_table(seed))
    out_dir = tmp_path / "out"
    status, out, _ = _sweep(capsys, "--grid", grid, "--out", out_dir, "--what", "accuracy",
                            "--workers", "1")
    assert status == 1
    assert "FAILED b_format=fp8_e4m3: ValueError: accuracy: the accumulation study draws both" in out
    rows = _rows(out_dir)
    assert [r["status"] for r in rows] == ["ok", "error"]
    assert rows[0]["error_type"] == "" and float(rows[0]["err_n512_rel"]) > 0
    assert rows[1]["b_format"] == "fp8_e4m3" and rows[1]["error_type"] == "ValueError"
    assert "a_format is fp8_e5m2 and b_format fp8_e4m3" in rows[1]["error_message"]
    assert rows[1]["err_n512_rel"] == ""
    md = (out_dir / "sweep.md").read_text()
    assert "## Failed points" in md and "ValueError: accuracy:" in md
    assert len(list((out_dir / "points").glob("*.json"))) == 1
    status, out, _ = _sweep(capsys, "--grid", grid, "--out", out_dir, "--what", "accuracy",
                            "--workers", "1")
    assert status == 1 and "1 cached, 1 to compute" in out


def test_sweep_area_of_two_small_pes(tmp_path, capsys, seed):
    """Two small PEs (no chunking, nearest) synthesized by the sweep: figures consistent with
    each other and with `fp8mac synth` of the same PE, a Pareto front and its plot."""
    grid = _grid(tmp_path, 'in_format = ["fp8_e5m2", "fp8_e4m3"]\nchunk = "off"\n'
                           'outer_rounding = "nearest"\n' + _accuracy_table(seed))
    out_dir = tmp_path / "out"
    t0 = time.perf_counter()
    status, out, _ = _sweep(capsys, "--grid", grid, "--out", out_dir, "--workers", "2")
    print(f"sweep of two PEs: {time.perf_counter() - t0:.1f} s")
    assert status == 0
    rows = _rows(out_dir)
    assert [r["in_format"] for r in rows] == ["fp8_e5m2", "fp8_e4m3"]
    for r in rows:
        area, fmax = float(r["area_um2"]), float(r["fmax_mhz"])
        assert area > 1000 and fmax > 1
        assert float(r["area_per_mac_um2"]) == area  # dot 1
        assert float(r["gmacs_per_mm2"]) == pytest.approx(fmax / area * 1e3, rel=1e-12)
        assert float(r["fmax_mhz"]) == pytest.approx(1000 / float(r["critical_path_ns"]), abs=0.06)
    status = cli.main(["synth", "--block", "pe", "--target", "asic", "--in-format", "fp8_e4m3",
                       "--chunk", "off", "--outer-rounding", "nearest", "--out", str(tmp_path / "synth")])
    capsys.readouterr()
    assert status == 0
    import json
    direct = json.loads((tmp_path / "synth" / "area.json").read_text())["asic"]
    assert float(rows[1]["area_um2"]) == direct["area"]["value"]
    assert float(rows[1]["fmax_mhz"]) == direct["fmax"]["value"]
    md = (out_dir / "sweep.md").read_text()
    assert "## Pareto front: area per MAC against accumulation error" in md
    assert "## Pareto front: throughput per area against accumulation error" in md
    png = (out_dir / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_sweep_of_named_designs_writes_the_grid_report(tmp_path, capsys):
    """A grid of two named sub-blocks with report = "area" (the format of the synth grid): each
    synthesized on its own targets (its tools' work kept in work/<name>/), its whole report
    cached, results.csv naming them, and the area report (area.md, area.png, a BENCHMARKS.md
    section) written where asked. A rerun computes nothing and writes the report again from the
    cache; --recompute needs a cluster again."""
    import json

    from fp8mac.hw.emit import build_block, emit_verilog
    from fp8mac.hw.synth import synthesize

    grid = _grid(tmp_path, """report = "area"

[[points]]
name = "lfsr32"
label = "LFSR 32 bits"
kind = "block"
block = "lfsr"
section = "block"
targets = ["generic", "asic"]

[[points]]
name = "mul_e4m3"
kind = "block"
block = "multiplier"
section = "block"
in_format = "fp8_e4m3"
""")
    out_dir, reports, bench = tmp_path / "out", tmp_path / "reports", tmp_path / "B.md"
    bench.write_text("# b\n\n<!-- other:begin -->\nkeep\n<!-- other:end -->\n")
    args = ["--grid", grid, "--out", out_dir, "--what", "area", "--report-dir", reports,
            "--benchmarks", bench]
    status, out, _ = _sweep(capsys, *args, "--workers", "1")
    assert status == 0, out
    rows = _rows(out_dir)
    assert [(r["name"], r["kind"], r["in_format"]) for r in rows] == [
        ("lfsr32", "block", "fp8_e5m2"), ("mul_e4m3", "block", "fp8_e4m3")]
    assert rows[1]["area_per_mac_um2"] == "" and rows[1]["gmacs_per_mm2"] == ""  # a block: no MACs
    # the figures are those of the block built and synthesized here from its own arguments
    (tmp_path / "direct").mkdir()
    (tmp_path / "direct" / "mul_e4m3.v").write_text(
        emit_verilog(build_block("multiplier", in_format="fp8_e4m3"), "mul_e4m3"))
    direct = synthesize(tmp_path / "direct" / "mul_e4m3.v", "mul_e4m3", tmp_path / "direct", ("asic",))
    assert float(rows[1]["area_um2"]) == direct["asic"]["area"]["value"]
    entries = [json.loads((out_dir / "points" / f"{r['key']}.json").read_text()) for r in rows]
    assert sorted(entries[0]["report"]) == ["asic", "design", "generic", "times", "yosys"]
    assert "generic" not in entries[1]["report"] and entries[1]["design"]["block"] == "multiplier"
    assert (out_dir / "work" / "lfsr32" / "area.json").is_file()
    assert (out_dir / "work" / "mul_e4m3" / "asic").is_dir()
    md = (reports / "area.md").read_text()
    assert (reports / "area.png").read_bytes()[:4] == b"\x89PNG" and not (out_dir / "area.md").exists()
    assert "(2 designs computed on a LocalCluster of 1 workers; the designs' own times add up to" in md
    assert "- Designs generated from fp8mac " in md
    text = bench.read_text()
    assert "<!-- other:begin -->\nkeep\n<!-- other:end -->" in text
    assert "<!-- synth:begin -->\n## Area (Yosys, osu018)" in text
    assert "sweep.md" in out and "area.md" in out

    status, out, _ = _sweep(capsys, *args)
    assert status == 0 and "2 cached, 0 to compute" in out and "LocalCluster" not in out
    again = (reports / "area.md").read_text()
    assert "(no design computed, 2 from the cache of earlier runs; the designs' own times" in again
    assert "2 of 2 designs from the cache of earlier runs)." in bench.read_text()
    assert [a for a, b in zip(md.splitlines(), again.splitlines()) if a != b] == \
        [line for line in md.splitlines() if line.startswith("- Machine:")]
    # --recompute evaluates the cached points again: here on a scheduler nobody runs
    address = f"tcp://127.0.0.1:{_free_port()}"
    status, _, err = _sweep(capsys, *args, "--recompute", "--scheduler", address,
                            "--connect-timeout", "1")
    assert status == 2 and "--scheduler: no Dask scheduler answers" in err, err


def test_sweep_sim_check_bit_exact(tmp_path, capsys, seed):
    """--what sim: a random GEMM (seeded from the fixture, recorded as sim_seed) on two 2 x 2
    arrays on Icarus, every result code equal to mac_gemm's."""
    grid = _grid(tmp_path, f'rows = 2\ncols = 2\nchunk = [8, "off"]\n[sim]\nseed = {seed}\n')
    out_dir = tmp_path / "out"
    status, out, _ = _sweep(capsys, "--grid", grid, "--out", out_dir, "--what", "sim", "--workers", "2")
    assert status == 0, out
    rows = _rows(out_dir)
    assert [(r["chunk"], r["sim_shape"]) for r in rows] == [("8", "2x16x2"), ("off", "2x32x2")]
    for r in rows:
        assert (r["sim_bit_exact"], r["sim_mismatches"], r["sim_seed"]) == ("1", "0", str(seed))
        assert int(r["sim_cycles"]) >= 16


def test_pareto_front():
    pts = [dict(a=1, e=5), dict(a=2, e=3), dict(a=2, e=4), dict(a=3, e=3), dict(a=4, e=1),
           dict(a=5, e=None), dict(a=1, e=6)]
    assert pareto_front(pts, "a", "e") == [pts[0], pts[1], pts[4]]
    assert pareto_front(pts, "a", "e", x_lower=False) == [pts[4]]
    assert pareto_front([dict(a=1, e=1), dict(a=1, e=1)], "a", "e") == [dict(a=1, e=1)] * 2  # ties stay


# --- an existing cluster: `dask scheduler` + `dask worker` started here --------------------------

@pytest.fixture
def start_dask(tmp_path):
    """Starts a `dask scheduler` (and with ``worker=True`` one `dask worker`: one process, one
    thread) on a free local port as separate processes, returns the scheduler's address once
    they are up (fails the test with their logs otherwise), and stops them (terminate, then
    kill) when the test ends."""
    dask = str(Path(sys.executable).parent / "dask")  # the `dask` command of this environment
    procs, logs = [], []

    def start(worker: bool) -> str:
        port = _free_port()
        address = f"tcp://127.0.0.1:{port}"
        commands = {"scheduler": [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", "127.0.0.1:0"]}
        if worker:
            commands["worker"] = [dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                  "--dashboard-address", "127.0.0.1:0",
                                  "--local-directory", str(tmp_path / "worker")]
        ready = {"scheduler": "Scheduler at:", "worker": "Registered to:"}
        for name, command in commands.items():
            log = tmp_path / f"{name}.log"
            logs.append(open(log, "w"))
            procs.append(subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=logs[-1],
                                          stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 90
            while ready[name] not in log.read_text():
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    logs[-1].flush()
                    text = "\n".join(f"--- {p.name}:\n" + p.read_text()[-3000:]
                                     for p in sorted(tmp_path.glob("*.log")))
                    pytest.fail(f"dask {name} did not come up at {address} within 90 s (exit "
                                f"code {procs[-1].poll()}):\n{text}")
                time.sleep(0.3)
        return address

    yield start
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for fh in logs:
        fh.close()


def test_sweep_on_a_separately_started_scheduler(tmp_path, capsys, seed, start_dask):
    dask_pair = start_dask(worker=True)
    grid = _grid(tmp_path, 'chunk = [64, 256]\nouter_rounding = "nearest"\n' + _accuracy_table(seed))
    out_dir = tmp_path / "out"
    status, out, _ = _sweep(capsys, "--grid", grid, "--out", out_dir, "--what", "accuracy",
                            "--scheduler", dask_pair)
    assert status == 0
    assert f"sweep: Dask scheduler {dask_pair}, 1 worker(s)" in out
    assert "LocalCluster" not in out
    rows = _rows(out_dir)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for r in rows:
        here = accuracy_figures(MacConfig(chunk=int(r["chunk"]), outer_rounding="nearest"),
                                LENGTHS, TRIALS, seed=seed)
        assert {k: float(r[k]) for k in here} == here
    assert f"(scheduler {dask_pair})" in (out_dir / "sweep.md").read_text()


def test_scheduler_without_workers_exits_2(tmp_path, capsys, start_dask):
    address = start_dask(worker=False)
    status, _, err = _sweep(capsys, "--grid", _grid(tmp_path, "chunk = [16]\n"), "--out",
                            tmp_path / "out", "--what", "accuracy", "--scheduler", address,
                            "--connect-timeout", "1")
    assert status == 2
    assert err == (f"fp8mac: error: --scheduler: the Dask scheduler at {address} has no worker "
                   f"(waited 1 s); start one with `dask worker {address}`\n")
    assert not (tmp_path / "out").exists()


# --- make regress across machines: pytest-split shards -------------------------------------------

def test_pytest_split_shards_partition_a_suite(tmp_path):
    """`PYTEST_ADDOPTS="--splits N --group K" make regress` (README): the N shards run every test
    exactly once, also with pytest-xdist's workers inside a shard (make regress runs -n 2)."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_a.py").write_text("import pytest\n\n@pytest.mark.parametrize('i', range(7))\n"
                                     "def test_a(i):\n    print(f'RAN a{i}')\n")
    (suite / "test_b.py").write_text("def test_b():\n    print('RAN b')\n")
    (suite / "pytest.ini").write_text("[pytest]\n")
    seen = []
    for group in (1, 2, 3):
        xdist = ["-n", "2"] if group == 1 else []  # one shard with xdist's workers is enough
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *xdist, "-rA",
             "--splits", "3", "--group", str(group), "--durations-path", str(suite / ".test_durations"),
             str(suite)],
            cwd=suite, capture_output=True, text=True, timeout=120)
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        assert proc.returncode == 0
        ran = sorted(line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("PASSED "))
        assert ran, proc.stdout
        seen += ran
    assert sorted(seen) == sorted([f"test_a.py::test_a[{i}]" for i in range(7)] + ["test_b.py::test_b"])


def test_accuracy_of_block_scaled_points():
    """A block-scaled point's accuracy: its quantized operands through block_gemm against their
    exact sum. An fp32 accumulator holds every partial sum of MXFP4 products (at most 8
    significant bits, scales powers of two) exactly: no error at all; fp16_ibm (10 bits) loses
    some, more for the longer sums (the study's swamping), and far less than an FP8 ulp."""
    exact = accuracy_figures(MacConfig(a_block="mxfp4", dot=8, acc_format="fp32"), lengths=(64, 4096), trials=4)
    assert exact == {"err_n64_rel": 0.0, "err_n4096_rel": 0.0}
    fp16 = accuracy_figures(MacConfig(a_block="mxfp4", dot=8, chunk=None), lengths=(64, 4096), trials=4)
    assert 0 < fp16["err_n64_rel"] < fp16["err_n4096_rel"] < 2 ** -5
