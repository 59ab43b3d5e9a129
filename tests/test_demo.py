"""``fp8mac demo`` (``make demo``'s main job): a small run on Icarus, and its bad input."""

import subprocess
import sys

import pytest

from fp8mac.hw.cli import main


def test_demo_small_batch_on_icarus(tmp_path, seed):
    """The whole chain on a small array (the default 8 x 8 takes half a minute to generate and is
    what ``make demo`` runs): generate, train, five GEMMs through the Verilog, checked, reported,
    then the training step on the layer engine, GEMMs and weight updates checked."""
    from fp8mac.model.config import MacConfig
    from fp8mac.sim.demo import run_demo

    lines = []
    status = run_demo(batch=4, seed=seed % 1000, sim="icarus", synth=False, out=lines.append,
                      work_dir=tmp_path, config=MacConfig(rows=2, cols=4, chunk=8))
    text = "\n".join(lines)
    assert status == 0, text
    rows = [line.split() for line in lines if line.strip().startswith(("fc1.", "fc2.", "update"))]
    gemms = ["fc1.forward", "fc2.forward", "fc2.backward", "fc1.weight_grad", "fc2.weight_grad"]
    # the streaming array's five GEMMs, then the engine's training step: the same five and the
    # two weight updates
    assert [r[0] for r in rows] == gemms + gemms + ["update", "update"], text
    assert all("yes" in r and "NO" not in r for r in rows), text
    assert "layer engine" in text and "engine cycles in all" in text
    assert "x 4 x" in text  # the weight gradients' K is the batch
    assert (tmp_path / "design" / "manifest.json").is_file()
    assert text.splitlines()[-1].startswith("all results bit-exact")


@pytest.mark.parametrize("args,name", [(["--batch", "0"], "--batch"), (["--batch", "x"], "--batch"),
                                       (["--sim", "xsim"], "--sim"), (["--seed", "-1"], "--seed")])
def test_demo_bad_arguments(args, name):
    r = subprocess.run([sys.executable, "-m", "fp8mac.hw", "demo", *args], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert name in r.stderr and "Traceback" not in r.stderr


def test_demo_bad_batch_names_what_is_allowed():
    r = subprocess.run([sys.executable, "-m", "fp8mac.hw", "demo", "--batch", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == "fp8mac: error: --batch must be at least 1, not 0\n"


def test_run_demo_rejects_bad_values():
    from fp8mac.sim.demo import run_demo

    with pytest.raises(ValueError, match="batch"):
        run_demo(batch=0)
    with pytest.raises(ValueError, match="sim"):
        run_demo(sim="questa")


def test_demo_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(o in out for o in ("--sim", "--batch", "--seed", "--no-synth"))
