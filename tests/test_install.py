"""The Makefile's sysdeps step (scripts/sysdeps.sh) against a fake apt-get: never the real one,
and no root needed (AS_ROOT=yes|no stands in for `id -u`)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def fake_apt(bin_dir, log_dir, creates=(), status=0):
    """A fake apt-get first on PATH: each call appends its arguments to log_dir/calls and writes
    its environment to log_dir/env-<first argument>; `install` creates the files `creates`."""
    touches = "".join(f'\n    touch "{path}"; chmod +x "{path}"' for path in creates)
    script = bin_dir / "apt-get"
    script.write_text(f"""#!/bin/sh
echo "$*" >> "{log_dir}/calls"
env > "{log_dir}/env-$1"
if [ "$1" = install ]; then :{touches}
fi
exit {status}
""")
    script.chmod(0o755)


def run_sysdeps(tmp_path, as_root, deps):
    """`make sysdeps` with the stamp in tmp_path and the checks `deps` (PACKAGE=CHECK), under
    PYTHONWARNINGS=error; returns (make's output, whether the stamp was written)."""
    stamp = tmp_path / "sysdeps-stamp"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "APT_GET", "AS_ROOT")}
    env["PATH"] = f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}"
    env["PYTHONWARNINGS"] = "error"
    result = subprocess.run(
        ["make", "--no-print-directory", "sysdeps", f"SYSSTAMP={stamp}", f"AS_ROOT={as_root}",
         f"SYSDEPS={' '.join(deps)}",
         # the stamp's order-only prerequisite: an existing Python, so make never creates a venv
         f"PY={sys.executable}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr, stamp.exists()


@pytest.fixture
def dirs(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "log").mkdir()
    (tmp_path / "usr").mkdir()
    return tmp_path / "bin", tmp_path / "log", tmp_path / "usr"


def deps_in(usr):
    """The three checks of the Makefile, kinds kept (a command on PATH, two files), in tmp_path."""
    return ["iverilog=fp8mac-fake-iverilog", f"qflow-tech-osu018={usr / 'osu018_stdcells.lib'}",
            f"liblz4-dev={usr / 'lz4.h'}"]


def calls(log_dir):
    path = log_dir / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_all_there_installs_nothing(tmp_path, dirs):
    bin_dir, log_dir, usr = dirs
    fake_apt(bin_dir, log_dir)
    for path in (bin_dir / "fp8mac-fake-iverilog", usr / "osu018_stdcells.lib", usr / "lz4.h"):
        path.touch()
        path.chmod(0o755)
    out, stamped = run_sysdeps(tmp_path, "yes", deps_in(usr))
    assert calls(log_dir) == []
    assert stamped, out


def test_installs_missing_without_pythonwarnings(tmp_path, dirs):
    bin_dir, log_dir, usr = dirs
    (usr / "lz4.h").touch()
    fake_apt(bin_dir, log_dir,
             creates=[bin_dir / "fp8mac-fake-iverilog", usr / "osu018_stdcells.lib"])
    out, stamped = run_sysdeps(tmp_path, "yes", deps_in(usr))
    made = calls(log_dir)
    assert made[0] == "update -qq"
    install = made[-1].split()
    assert install[0] == "install" and "--no-install-recommends" in install
    # only the missing packages
    assert [a for a in install if not a.startswith("-")][1:] == ["iverilog", "qflow-tech-osu018"]
    for name in ("env-update", "env-install"):
        seen = (log_dir / name).read_text().splitlines()
        assert not [line for line in seen if line.startswith("PYTHONWARNINGS=")], name
        assert "DEBIAN_FRONTEND=noninteractive" in seen
    assert stamped, out


@pytest.mark.parametrize("status", [0, 100], ids=["apt-succeeds", "apt-fails"])
def test_still_missing_named_and_no_stamp(tmp_path, dirs, status):
    bin_dir, log_dir, usr = dirs
    # apt-get "installs" everything but the standard cells
    fake_apt(bin_dir, log_dir, creates=[bin_dir / "fp8mac-fake-iverilog", usr / "lz4.h"],
             status=status)
    out, stamped = run_sysdeps(tmp_path, "yes", deps_in(usr))
    assert calls(log_dir), "the fake apt-get was not run"
    still = [line for line in out.splitlines() if "still missing" in line]
    if status == 0:
        assert len(still) == 1 and "qflow-tech-osu018" in still[0], out
        assert "iverilog" not in still[0] and "liblz4-dev" not in still[0], out
    else:
        assert "apt-get failed" in out
        assert len(still) == 1 and "qflow-tech-osu018" in still[0], out
    assert not stamped


def test_not_root_one_line_hint(tmp_path, dirs):
    bin_dir, log_dir, usr = dirs
    (usr / "lz4.h").touch()
    fake_apt(bin_dir, log_dir)
    out, stamped = run_sysdeps(tmp_path, "no", deps_in(usr))
    assert calls(log_dir) == []
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "sudo apt-get install" in lines[0]
    assert "iverilog" in lines[0] and "qflow-tech-osu018" in lines[0]
    assert "liblz4-dev" not in lines[0]
    assert not stamped


def test_makefile_checks_the_real_files(tmp_path):
    """The Makefile's own checks (make -n: nothing runs) name the three packages and their files,
    and the step runs without PYTHONWARNINGS."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "sysdeps", f"SYSSTAMP={tmp_path / 'stamp'}",
         f"PY={sys.executable}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.startswith("env -u PYTHONWARNINGS "), out
    for dep in ("iverilog=iverilog",
                "qflow-tech-osu018=/usr/share/qflow/tech/osu018/osu018_stdcells.lib",
                "liblz4-dev=/usr/include/lz4.h"):
        assert dep in out.split(), out
