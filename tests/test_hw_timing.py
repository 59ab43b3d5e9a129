"""``--target-mhz``: the smallest pipeline depth whose PE meets a clock target (fp8mac.hw.timing)."""

import json
import subprocess
import sys

import pytest

from fp8mac.hw.timing import check_target, choose_pipeline, pe_fmax
from fp8mac.model.config import MacConfig

FMAX = {0: 50.0, 1: 120.0, 2: 150.0, 3: 160.0}  # made-up Fmax per depth


def fake_fmax(config):
    return FMAX[config.pipeline]


@pytest.mark.parametrize("target,depth", [(40, 0), (50, 0), (100, 1), (150, 2), (155, 3)])
def test_the_smallest_depth_that_meets_the_target_is_chosen(target, depth):
    seen = []
    config, fmax = choose_pipeline(MacConfig(rows=2, cols=2), target, fake_fmax, log=seen.append)
    assert (config.pipeline, fmax) == (depth, FMAX[depth])
    assert config.replace(pipeline=0) == MacConfig(rows=2, cols=2)  # nothing else changed
    assert len(seen) == depth + 1 and seen[-1].startswith(f"fp8mac: pipeline {depth}: PE Fmax")


def test_an_unreachable_target_names_the_best_fmax():
    with pytest.raises(ValueError, match=r"--target-mhz 400 is out of reach: the best PE Fmax is "
                                         r"160\.0 MHz, at pipeline 3"):
        choose_pipeline(MacConfig(), 400, fake_fmax, log=lambda _: None)


@pytest.mark.parametrize("bad", ["fast", "0", "-5", "nan", "inf", None])
def test_bad_targets(bad):
    with pytest.raises(ValueError, match="--target-mhz must be a number of MHz above 0"):
        check_target(bad)


def run_cli(*args):
    p = subprocess.run([sys.executable, "-m", "fp8mac.hw", *args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.parametrize("args,message", [
    (["--target-mhz", "fast"], "fp8mac: error: --target-mhz must be a number of MHz above 0, not 'fast'\n"),
    (["--target-mhz", "100", "--pipeline", "1"],
     "fp8mac: error: --target-mhz chooses the pipeline depth: give it or --pipeline, not both\n"),
])
def test_cli_bad_target_is_one_line_exit_2(tmp_path, args, message):
    status, stdout, stderr = run_cli("generate", "--out", str(tmp_path / "o"), *args)
    assert (status, stdout, stderr) == (2, "", message)
    assert not (tmp_path / "o").exists()


def test_real_fmax_is_measured_and_cached(tmp_path):
    """One real synthesis (a small PE): OpenSTA's Fmax comes back, a second call reads the cache,
    and a target below it chooses depth 0 through the command line."""
    config = MacConfig(rows=1, cols=1, in_format="fp8_e4m3", chunk=None, outer_rounding="nearest")
    f = pe_fmax(config, cache_dir=tmp_path)
    assert 5.0 < f < 2000.0
    (entry,) = tmp_path.glob("*.json")
    assert json.loads(entry.read_text())["fmax_mhz"] == f
    entry.write_text(json.dumps({"fmax_mhz": 12345.0}))  # a second call must read the cache
    assert pe_fmax(config, cache_dir=tmp_path) == 12345.0


def test_cache_key_changes_with_the_hardware_source(tmp_path, monkeypatch):
    """A cached Fmax is only reused for the same fp8mac.hw source: an edited design (or flow)
    is measured again, not answered from an old entry."""
    from fp8mac.hw import timing

    config = MacConfig(rows=1, cols=1)
    calls = []
    monkeypatch.setattr("fp8mac.hw.synth.synthesize_block",
                        lambda cfg, block, out, targets: calls.append(out) or {"asic": {"fmax": {"value": 50.0}}})
    assert pe_fmax(config, cache_dir=tmp_path) == 50.0
    assert pe_fmax(config, cache_dir=tmp_path) == 50.0 and len(calls) == 1  # cached
    monkeypatch.setattr(timing, "_hw_source_digest", lambda: b"an edited pe.py")
    assert pe_fmax(config, cache_dir=tmp_path) == 50.0 and len(calls) == 2  # measured again
    assert len(set(calls)) == 2


def test_cli_target_chooses_and_records_the_depth(tmp_path):
    out = tmp_path / "gen"
    status, stdout, stderr = run_cli("generate", "--out", str(out), "--rows", "1", "--cols", "1",
                                     "--in-format", "fp8_e4m3", "--chunk", "off",
                                     "--outer-rounding", "nearest", "--target-mhz", "1")
    assert status == 0, stderr
    assert "fp8mac: --target-mhz 1: pipeline 0 (PE Fmax" in stdout
    assert json.loads((out / "manifest.json").read_text())["config"]["pipeline"] == 0
