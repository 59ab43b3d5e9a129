"""The simulation infrastructure (sim/runner, axis, pause, scoreboard) proves itself.

The simulated part runs ``fp8mac.sim.tb_stream_selftest`` on the register slice of
``fp8mac.sim.selftest_dut`` on Icarus and Verilator: beats survive every pause pattern, injected
faults are caught, and a failing cocotb test fails here. The rest checks the pure-Python parts.
"""

import itertools

import numpy as np
import pytest

from fp8mac.hw.emit import emit_verilog
from fp8mac.sim import runner
from fp8mac.sim.pause import PAUSES, pause_generator
from fp8mac.sim.runner import (SIMULATORS, SimulationFailed, build_and_test, build_root,
                               write_verilog)
from fp8mac.sim.scoreboard import Scoreboard, ScoreboardMismatch, describe_code
from fp8mac.sim.selftest_dut import RegisterSlice
from fp8mac.sim.tools import ToolMissing

MODULE = "fp8mac.sim.tb_stream_selftest"
TOP = "register_slice"


@pytest.fixture(scope="module")
def slice_verilog():
    return write_verilog(emit_verilog(RegisterSlice(64), TOP),
                         build_root() / "sim" / "selftest" / f"{TOP}.v")


@pytest.mark.parametrize("sim", SIMULATORS)
def test_stream_selftest(sim, slice_verilog):
    # 16 pause combinations + 6 faults + the timeout + port access + the rate measure
    results = build_and_test([slice_verilog], TOP, MODULE, sim=sim, name="selftest",
                             testcase=["roundtrip", "fault", "lost_beat_timeout",
                                       "port_access_exact", "rate"],
                             expect_tests=len(PAUSES) ** 2 + 6 + 1 + 1 + 1)
    # Verilator (cocotb trusts its inertial writes) gets the direct path; Icarus the public API.
    # If a cocotb release renames the internals the direct path uses, this says so.
    assert results.metrics["direct_port_access"] == (sim == "verilator"), results.metrics
    rate = results.metrics["beats_per_second"]
    print(f"{sim}: {rate:.0f} beats per CPU second through the register slice")
    assert rate > 100


@pytest.mark.parametrize("sim", SIMULATORS)
def test_failing_cocotb_test_fails(sim, slice_verilog):
    expected = r"1 of 1 cocotb tests failed.*\n  deliberate_failure: m_axis: beat 0 of 10 differs"
    with pytest.raises(SimulationFailed, match=expected):
        build_and_test([slice_verilog], TOP, MODULE, sim=sim, name="selftest",
                       testcase="deliberate_failure")


@pytest.mark.parametrize("sim", SIMULATORS)
def test_waves_are_written_and_named(sim, slice_verilog, tmp_path, capsys):
    """WAVES=1 (here waves=True): an FST file (VCD on Verilator without liblz4) that holds the
    top's ports, and its path printed; quiet=True logs to files instead and names no path."""
    results = build_and_test([slice_verilog], TOP, MODULE, sim=sim, name="selftest-waves",
                             build_dir=tmp_path / sim, testcase="lost_beat_timeout", waves=True)
    wave = results.waves
    assert wave is not None and wave.is_file() and wave.stat().st_size > 100
    if wave.suffix == ".fst":
        assert wave.read_bytes()[0] == 0  # FST header block type
    else:
        assert sim == "verilator" and b"s_axis_tvalid" in wave.read_bytes()
    assert f"waves: {wave}" in capsys.readouterr().out


def test_quiet_run_logs_to_files(slice_verilog, tmp_path, capsys):
    build_and_test([slice_verilog], TOP, MODULE, sim="icarus", name="selftest-quiet",
                   build_dir=tmp_path, testcase="lost_beat_timeout", quiet=True)
    assert "FP8MAC_SEED" not in capsys.readouterr().out
    (log,) = tmp_path.glob("run/*/sim.log")
    assert "lost_beat_timeout" in log.read_text()


def test_wrong_test_count_fails(slice_verilog):
    with pytest.raises(SimulationFailed, match="1 cocotb tests ran .* expected 2"):
        build_and_test([slice_verilog], TOP, MODULE, sim="icarus", name="selftest",
                       testcase="lost_beat_timeout", expect_tests=2)


def test_missing_simulator_fails_with_install_hint(monkeypatch, slice_verilog):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissing, match=r"iverilog not found; apt-get install iverilog"):
        build_and_test([slice_verilog], TOP, MODULE, sim="icarus", name="selftest")


def test_seed_from_environment(monkeypatch):
    monkeypatch.setenv("FP8MAC_SEED", "1234")
    assert runner.test_seed() == 1234
    monkeypatch.setenv("FP8MAC_SEED", "twelve")
    with pytest.raises(ValueError, match="FP8MAC_SEED must be an integer"):
        runner.test_seed()
    monkeypatch.delenv("FP8MAC_SEED")
    with pytest.raises(RuntimeError, match="FP8MAC_SEED is not set"):
        runner.test_seed()


def test_sim_from_environment(monkeypatch):
    monkeypatch.setenv("SIM", "icarus")
    assert runner.default_sim() == "icarus"
    monkeypatch.setenv("SIM", "questa")
    with pytest.raises(ValueError, match="SIM must be one of icarus, verilator"):
        runner.default_sim()


# ---- scoreboard -------------------------------------------------------------------------------

def _pack(row, width=16):
    return sum(int(c) << (width * lane) for lane, c in enumerate(row))


def test_scoreboard_accepts_the_expected_stream():
    codes = np.arange(2 * 2 * 4).reshape(2, 2, 4) * 0x101
    sb = Scoreboard(codes, "fp16_ibm", lanes=4, tlast=[0, 1, 0, 1])
    for i, row in enumerate(codes.reshape(-1, 4)):
        sb.add_beat(_pack(row), i % 2)
    sb.check_complete()
    assert sb.done and sb.received == 4


def test_scoreboard_names_tile_element_codes_and_seed():
    codes = np.zeros((3, 2, 4), dtype=np.int64)
    codes[2, 1, 3] = 0x3E00  # fp16_ibm +1.0: exponent field 31 = bias
    sb = Scoreboard(codes, "fp16_ibm", lanes=4, seed=77, name="m_axis_c")
    beats = [_pack(row) for row in codes.reshape(-1, 4)]
    for beat in beats[:5]:
        sb.add_beat(beat)
    with pytest.raises(ScoreboardMismatch) as info:
        sb.add_beat(beats[5] ^ (0x3E00 << 48) ^ (0x3C00 << 48))
    message = str(info.value)
    assert "m_axis_c: beat 5 of 6 differs (format fp16_ibm); rerun with FP8MAC_SEED=77" in message
    assert ("tile 2, element (row 1, col 3), lane 3: got 0x3c00 (+0.5 = 0|011110|000000000), "
            "expected 0x3e00 (+1 = 0|011111|000000000)") in message


def test_scoreboard_counts_beats():
    sb = Scoreboard([1, 2, 3], "fp8_e5m2")
    sb.add_beat(1)
    sb.add_beat(2)
    with pytest.raises(ScoreboardMismatch, match="received 2 beats, expected 3"):
        sb.check_complete()
    sb.add_beat(3)
    with pytest.raises(ScoreboardMismatch, match="beat 3 is beyond the 3 expected"):
        sb.add_beat(3)


def test_scoreboard_checks_tlast():
    sb = Scoreboard([1, 2], "fp8_e5m2", tlast=[0, 1])
    sb.add_beat(1, 0)
    with pytest.raises(ScoreboardMismatch, match="beat 1 of 2 has tlast=0, expected 1"):
        sb.add_beat(2, 0)


def test_describe_code_specials():
    assert describe_code("fp8_e5m2", 0x7C) == "0x7c (+inf = 0|11111|00)"
    assert describe_code("fp8_e5m2", 0xFE) == "0xfe (+nan = 1|11111|10)"


# ---- pause generators -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", PAUSES)
def test_pause_generators_are_reproducible(kind):
    a = list(itertools.islice(pause_generator(kind, 5, "s_axis_a"), 5000))
    b = list(itertools.islice(pause_generator(kind, 5, "s_axis_a"), 5000))
    assert a == b and all(isinstance(x, bool) for x in a)


def test_pause_statistics():
    take = lambda gen: np.array(list(itertools.islice(gen, 20000)))  # noqa: E731
    assert not take(pause_generator("none", 1, "x")).any()
    assert abs(take(pause_generator("random", 1, "x", p=0.3)).mean() - 0.3) < 0.02
    assert take(pause_generator("alternate", 1, "x")).mean() == 0.5
    stalls = take(pause_generator("stalls", 1, "x", p=0.02, length=(10, 80)))
    edges = np.flatnonzero(np.diff(stalls.astype(int)))
    runs = np.diff(edges)[(stalls[edges + 1])[:-1]]  # lengths of the paused runs
    assert runs.min() >= 10 and runs.max() <= 80
    a = take(pause_generator("random", 1, "s_axis_a"))
    b = take(pause_generator("random", 1, "s_axis_b"))
    assert (a != b).any()  # streams sharing a seed do not share draws


def test_a_relative_design_folder_is_resolved(tmp_path, monkeypatch):
    """run_gemm_on_simulator(design="design") from another working directory: the design is
    found by an absolute path (the simulator runs in its own folder), and a design of another
    configuration is refused."""
    from fp8mac.hw.generate import generate
    from fp8mac.model.config import MacConfig
    from fp8mac.sim.accel_bench import _design

    config = MacConfig(rows=1, cols=1, chunk=None, outer_rounding="nearest")
    generate(config, tmp_path / "design")
    monkeypatch.chdir(tmp_path)
    folder = _design(config, "design")
    assert folder.is_absolute() and folder == (tmp_path / "design").resolve()
    with pytest.raises(ValueError, match="holds a different configuration"):
        _design(config.replace(rows=2), "design")
