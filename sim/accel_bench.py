"""Testbench of the generated accelerator, and :func:`run_gemm_on_simulator` that drives it.

Two halves, in the shape of cocotb's ``examples/matrix_multiplier``:

* **cocotb side** (runs inside the simulator, used by :mod:`fp8mac.sim.tb_accelerator`):
  :class:`AccelBench` wires one :class:`~fp8mac.sim.axis.StreamDriver` per operand stream
  (``s_axis_a``, ``s_axis_b``), a :class:`~fp8mac.sim.axis.StreamSink` on ``m_axis_c`` (its
  monitor hands every result beat to the checker), the model (:func:`expected_tiles`: the codes of
  :func:`fp8mac.model.gemm.mac_gemm`) and an in-order :class:`~fp8mac.sim.scoreboard.Scoreboard`,
  and owns the clock and reset. Everything about the design (array shape, formats, chunk,
  rounding, seeds) comes from its ``manifest.json`` (path in ``FP8MAC_MANIFEST``); the DUT's port
  widths are checked against it.
* **host side**: :func:`ensure_design` generates a configuration's Verilog once (cached under
  ``build/designs/``); :func:`run_gemm_on_simulator` streams one GEMM through it on Icarus or
  Verilator and returns the result codes with timing statistics (for ``make demo``), and
  :func:`simulator_throughput` measures simulated MACs per second on each simulator (for
  ``make bench``).

The per-cycle Python path is kept lean, since it bounds the simulation rate: the clock toggles in
the simulator, not in Python; one :class:`~fp8mac.sim.axis.Lockstep` coroutine wakes once per
cycle for all three streams; every beat is an integer packed before the run starts.

A GEMM is cut into tiles by :func:`fp8mac.sim.tiler.tiles` in the model's order; every tile's K
operand beats are queued up front (pre-packed integers), and every result code, padding lanes
included, is compared with the model as it arrives. The scoreboard's message on a mismatch names
the GEMM, the tile, the element (tile row/column and C[i][j]), both codes decoded, and the seed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer

from fp8mac.model.blockscale import block_gemm
from fp8mac.model.config import MacConfig
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.axis import Lockstep, StreamDriver, StreamSink
from fp8mac.sim.pause import PAUSES, pause_generator
from fp8mac.sim.scoreboard import Scoreboard, ScoreboardMismatch
from fp8mac.sim.tiler import assemble, pack_lanes, tiles

__all__ = ["MANIFEST_ENV", "STREAMS", "PAUSE_SETS", "STATS", "load_manifest", "expected_tiles",
           "GemmRun", "AccelBench", "GemmInFlight", "design_name", "ensure_design",
           "run_gemm_on_simulator", "simulator_throughput", "build_args", "HIERARCHICAL_PES"]

MANIFEST_ENV = "FP8MAC_MANIFEST"
"""Environment variable holding the path of the design's ``manifest.json``."""


HIERARCHICAL_PES = 64
"""Arrays with more PEs than this are built hierarchically by Verilator (:func:`build_args`)."""


def build_args(sim: str, config: MacConfig) -> tuple[str, ...]:
    """Simulator build options for ``config``'s generated design. Verilator builds an array of
    more than :data:`HIERARCHICAL_PES` PEs hierarchically (``--hierarchical``): its row module is
    a ``hier_block`` (:data:`fp8mac.hw.emit.VERILATOR_HIER_BLOCK`), compiled once with its PEs
    and called for every row, where a flat build compiles every PE again. Measured on two
    shared cores (BENCHMARKS.md, ``scale``): an 8 x 8 array builds in about 2 minutes flat and 25
    s hierarchically but simulates about twice as fast flat, so up to 8 x 8 the build is flat;
    a flat 16 x 16 takes 15 minutes to build, a hierarchical one 44 s (32 x 32: 72 s)."""
    if sim != "verilator" or config.rows * config.cols <= HIERARCHICAL_PES:
        return ()
    return ("--hierarchical",)

STREAMS = ("s_axis_a", "s_axis_b", "m_axis_c")
"""The accelerator's streams, in the order pause patterns are given."""

PAUSE_SETS = (
    ("random", "random", "random"),
    ("none", "none", "none"),         # back-to-back beats, result always taken
    ("stalls", "random", "stalls"),   # long stalls on A and on the result stream
    ("alternate", "stalls", "random"),
    ("random", "alternate", "alternate"),
    ("none", "none", "stalls"),       # full-rate operands against a stalling consumer
)
"""Pause patterns ``(A, B, C)`` the workload runs cycle through (:mod:`fp8mac.sim.pause`)."""


STATS = {
    "mkn": "[M, K, N] of the GEMM",
    "tiles": "tiles streamed",
    "cycles": "clock cycles from the first operand beat queued to the last result beat",
    "macs": "useful multiply-accumulates, M * K * N",
    "seconds": "wall time of those cycles",
    "cpu_seconds": "CPU time of those cycles (simulator and Python run in one thread)",
    "macs_per_second": "simulated MACs per wall second",
    "macs_per_cpu_second": "simulated MACs per CPU second (steadier on a loaded machine)",
    "cycles_per_second": "simulated cycles per wall second",
    "pauses": "pause patterns of A, B, C",
    "sim_only_seconds": "wall time of the simulator alone for as many cycles",
    "sim_only_cpu_seconds": "CPU time of the simulator alone for as many cycles",
    "python_share": "1 - sim_only_seconds / seconds: the share of cocotb and Python",
    "python_share_cpu": "the same from CPU times",
}
"""The statistics of a measured run (:func:`run_gemm_on_simulator`, :func:`simulator_throughput`)
and what each means. Python's share is an estimate (see :meth:`AccelBench.simulator_alone`)."""


def load_manifest(path=None) -> dict:
    """The manifest at ``path``, default ``$FP8MAC_MANIFEST``.

    Raises
    ------
    RuntimeError
        If no path is given and ``FP8MAC_MANIFEST`` is not set.
    """
    if path is None:
        path = os.environ.get(MANIFEST_ENV)
        if not path:
            raise RuntimeError(f"{MANIFEST_ENV} is not set: it must name the manifest.json")
    return json.loads(Path(path).read_text())


def check_ports(dut, manifest: dict):
    """AssertionError unless every port of the manifest exists on the DUT with its width."""
    for port in manifest["ports"]:
        handle = getattr(dut, port["name"], None)
        if handle is None:
            raise AssertionError(f"DUT has no port {port['name']} (manifest.json lists it)")
        if len(handle) != port["width"]:
            raise AssertionError(f"DUT port {port['name']} is {len(handle)} bits wide, "
                                 f"manifest.json says {port['width']}")


def padded_expected(a_codes, b_codes, config: MacConfig, scales=None) -> np.ndarray:
    """The model's codes of the whole padded result, ``ceil(M/rows)*rows x ceil(N/cols)*cols``:
    the hardware computes the padding lanes too (on +0 operands, and the scale 1 for
    block-scaled ones: ``scales`` are block_gemm's), and they are checked."""
    a = np.asarray(a_codes, dtype=np.int64)
    b = np.asarray(b_codes, dtype=np.int64)
    R, C = config.rows, config.cols
    tm, tn = -(-a.shape[0] // R), -(-b.shape[1] // C)
    ap = np.zeros((tm * R, a.shape[1]), np.int64)
    ap[:a.shape[0]] = a
    bp = np.zeros((b.shape[0], tn * C), np.int64)
    bp[:, :b.shape[1]] = b
    if config.blocks:
        sa, sb = scales if scales is not None else (None, None)
        if sa is not None:
            sa = np.vstack([sa, np.full((tm * R - a.shape[0], sa.shape[1]), config.a_block.scale_one())])
        if sb is not None:
            sb = np.hstack([sb, np.full((sb.shape[0], tn * C - b.shape[1]), config.b_block.scale_one())])
        return block_gemm(ap, sa, bp, sb, config.block_config()).astype(np.int64)
    return mac_gemm(ap, bp, config).astype(np.int64)


def expected_tiles(a_codes, b_codes, config: MacConfig, scales=None) -> np.ndarray:
    """The model's result codes in stream order, ``(tiles, rows, cols)``: tile t's row r is result
    beat ``t * rows + r``. Padding lanes hold the model's results on the +0 padding operands that
    :func:`~fp8mac.sim.tiler.tiles` sends."""
    out = padded_expected(a_codes, b_codes, config, scales)
    R, C = config.rows, config.cols
    tm, tn = out.shape[0] // R, out.shape[1] // C
    return out.reshape(tm, R, tn, C).transpose(0, 2, 1, 3).reshape(tm * tn, R, C)


@dataclass
class GemmRun:
    """One GEMM streamed through the DUT.

    Attributes
    ----------
    name : str
    codes : ndarray
        The DUT's ``M x N`` result codes (checked against the model when the run returned).
    shape : (int, int, int)
        ``(M, K, N)``.
    tiles : int
    cycles : int
        Clock cycles from the first operand beat queued to the last result beat taken.
    seconds, cpu_seconds : float
        Wall and CPU time of those cycles (this process runs both the simulator and Python; the
        model's expected codes are computed before and not counted).
    pauses : (str, str, str)
        The pause patterns of A, B and C.
    """

    name: str
    codes: np.ndarray
    shape: tuple
    tiles: int
    cycles: int
    seconds: float
    cpu_seconds: float
    pauses: tuple = field(default=("none", "none", "none"))

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates, ``M * K * N`` (padding lanes not counted)."""
        m, k, n = self.shape
        return m * k * n

    @property
    def macs_per_second(self) -> float:
        return self.macs / self.seconds if self.seconds else float("inf")


class AccelBench:
    """The testbench of one generated accelerator: streams, model, scoreboard, clock and reset.

    Parameters
    ----------
    dut : cocotb handle
        The accelerator top.
    manifest : dict, optional
        The design's manifest; default :func:`load_manifest` (``$FP8MAC_MANIFEST``).
    seed : int
        The run's seed: pause patterns derive from it (quoted in every failure).
    period_ns : int
        Clock period.

    Attributes
    ----------
    config : MacConfig
        The design's configuration, read from the manifest.
    a, b : StreamDriver
        Operand stream drivers (rebuilt by :meth:`reset`).
    c : StreamSink
        The result stream's sink and monitor (rebuilt by :meth:`reset`).
    fault : callable or None
        Fault injection between the monitor and the scoreboard: ``fault(index, tdata, tlast)``
        returns the beats to check instead, a list of ``(tdata, tlast)``. For tests that prove
        the checks can fail.
    """

    def __init__(self, dut, manifest: dict | None = None, *, seed: int, period_ns: int = 10):
        self.dut = dut
        self.manifest = load_manifest() if manifest is None else manifest
        self.config = MacConfig.from_dict(self.manifest["config"])
        self.seed = int(seed)
        self.period_ns = period_ns
        self._check_ports()
        self._has_err_tuser = any(p["name"] == "err_tuser" for p in self.manifest["ports"])
        self.fault = None
        self._epoch = 0  # reset count: salts the pause streams of each reset's new drivers
        self._pauses = PAUSE_SETS[0]
        self.a = self.b = self.c = None
        self._lockstep = None
        # The clock toggles in the simulator (GPI), not in a Python coroutine: two fewer Python
        # wake-ups per cycle (about 1.7 times the cycle rate on Verilator).
        self.clock = Clock(dut.clk, period_ns, unit="ns", impl="gpi")
        self.clock.start(start_high=False)
        dut.rst.value = 1

    def _check_ports(self):
        check_ports(self.dut, self.manifest)

    # ---- streams and reset ------------------------------------------------------------------
    def _pause(self, kind: str, stream: str):
        return pause_generator(kind, self.seed, f"{stream}#{self._epoch}")

    def set_pauses(self, a: str, b: str, c: str):
        """Pause patterns (names in :data:`~fp8mac.sim.pause.PAUSES`) for A, B and C, from the
        next cycle on."""
        for kind in (a, b, c):
            if kind not in PAUSES:
                raise ValueError(f"pause kind must be one of {', '.join(PAUSES)}, not {kind!r}")
        self._pauses = (a, b, c)
        if self.a is not None:
            for stream, kind, name in zip((self.a, self.b, self.c), self._pauses, STREAMS):
                stream.set_pause_generator(self._pause(kind, name))

    async def reset(self, cycles: int = 2):
        """Stop the streams (dropping whatever they still hold), hold ``rst`` for ``cycles``
        clock edges, then start fresh streams, stepped together by one
        :class:`~fp8mac.sim.axis.Lockstep` (one coroutine resumed per clock cycle). After it
        the DUT computes as a fresh :func:`~fp8mac.model.gemm.mac_gemm` (LFSRs reseeded)."""
        if self._lockstep is not None:
            self._lockstep.stop()
        self._epoch += 1
        self.dut.rst.value = 1
        self.a = StreamDriver(self.dut, "s_axis_a", pause=self._pause(self._pauses[0], STREAMS[0]))
        self.b = StreamDriver(self.dut, "s_axis_b", pause=self._pause(self._pauses[1], STREAMS[1]))
        self.c = StreamSink(self.dut, "m_axis_c", pause=self._pause(self._pauses[2], STREAMS[2]))
        self._lockstep = Lockstep(self.dut.clk, self.a, self.b, self.c)
        await ClockCycles(self.dut.clk, cycles)
        self.dut.rst.value = 0

    async def simulator_alone(self, cycles: int) -> tuple[float, float]:
        """Wall and CPU seconds the simulator alone takes for ``cycles`` clock cycles.

        The streams stop; both operand streams hold one valid beat of random finite codes without
        ``tlast`` (a dot product that never ends, so every PE keeps computing), the result stream
        is ready, and Python waits on one Timer for the whole span (the clock runs in the
        simulator). Compared with a run of as many cycles, it estimates Python's share of that
        run. The estimate is fair for Verilator, which evaluates the design every cycle whatever
        the data; Icarus, event-driven, does less work on unchanging operands, so there it
        overstates Python's share. Ends with a :meth:`reset`.
        """
        if self._lockstep is not None:
            self._lockstep.stop()
        dut, cfg = self.dut, self.config
        rng = np.random.default_rng(self.seed)
        for stream, lanes, fmt in ((STREAMS[0], cfg.rows, cfg.a_format), (STREAMS[1], cfg.cols, cfg.b_format)):
            codes = np.arange(1 << fmt.width)
            values = np.abs(fmt.decode(codes))
            pool = codes[(values >= 0.5) & (values < 2)]
            getattr(dut, f"{stream}_tdata").value = pack_lanes(rng.choice(pool, (1, lanes * cfg.dot)),
                                                               fmt.width)[0]
            getattr(dut, f"{stream}_tlast").value = 0
            getattr(dut, f"{stream}_tvalid").value = 1
        dut.m_axis_c_tready.value = 1
        await ClockCycles(dut.clk, 1)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await Timer(cycles * self.period_ns, unit="ns")
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        for stream in STREAMS[:2]:
            getattr(dut, f"{stream}_tvalid").value = 0
        await self.reset()
        return wall, cpu

    # ---- one GEMM -----------------------------------------------------------------------------
    def _scoreboard(self, name, expected, m, n):

        R, C = self.config.rows, self.config.cols
        tn = expected.shape[0] // -(-m // R)

        def locate(k):
            t, rest = divmod(k, R * C)
            r, c = divmod(rest, C)
            ti, tj = divmod(t, tn)
            i, j = ti * R + r, tj * C + c
            pad = " (padding lane)" if i >= m or j >= n else ""
            return (f"GEMM {name!r}, tile {t} (tile row {ti}, tile col {tj}), element (row {r}, "
                    f"col {c}) = C[{i}][{j}]{pad}")

        tlast = np.tile((np.arange(R) == R - 1).astype(int), expected.shape[0])
        return Scoreboard(expected, self.config.acc_format, lanes=C, tlast=tlast, seed=self.seed,
                          name="m_axis_c", locate=locate)

    def gemm_config(self, formats=None) -> MacConfig:
        """The configuration the model computes a GEMM sent in ``formats`` with: ``(a_format,
        b_format)`` from the streams' run-time sets (None: the design's ``a_format`` /
        ``b_format``)."""
        return self.config if formats is None else self.config.with_formats(*formats)

    def start_gemm(self, a_codes, b_codes, name: str = "gemm", formats=None, scales=None) -> "GemmInFlight":
        """Queue every operand beat of ``A @ B`` (all tiles, pre-packed) and check the result
        beats as they arrive; returns at once. :meth:`run_gemm` waits for the end. ``formats``:
        as :meth:`gemm_config`; each stream's ``tuser`` carries its format's index. ``scales``:
        a block-scaled design's ``(A's, B's)`` scale codes (as block_gemm takes them)."""
        if self.a is None:
            raise RuntimeError("call reset() before the first GEMM")
        config = self.gemm_config(formats)
        users = [self.config.stream_formats(s).index(getattr(config, f"{s}_format")) for s in "ab"]
        a = np.asarray(a_codes, dtype=np.int64)
        b = np.asarray(b_codes, dtype=np.int64)
        ts = tiles(a, b, config, *(scales or (None, None)))
        gemm = GemmInFlight(name, a.shape, b.shape, len(ts),
                            self._scoreboard(name, expected_tiles(a, b, config, scales), a.shape[0],
                                             b.shape[1]))
        self.c.set_callback(gemm.check if self.fault is None else gemm.checker(self.fault))
        beats = len(ts[0].a_beats)  # per tile: ceil(K / dot)
        last = [0] * (beats - 1) + [1]
        a_beats = [beat for t in ts for beat in t.a_beats]
        b_beats = [beat for t in ts for beat in t.b_beats]
        gemm.cycle0, gemm.wall0, gemm.cpu0 = self.c.cycles, time.perf_counter(), time.process_time()
        self.a.send_nowait(a_beats, last * len(ts), users[0])
        self.b.send_nowait(b_beats, last * len(ts), users[1])
        return gemm

    async def run_gemm(self, a_codes, b_codes, name: str = "gemm",
                       timeout_cycles: int | None = None, formats=None, scales=None) -> GemmRun:
        """Stream ``A (M x K) @ B (K x N)`` (codes of the streams' formats, or of ``formats``:
        :meth:`gemm_config`; block-scaled: with ``scales``) through the DUT and check every
        result code against the model; returns the :class:`GemmRun`.

        Raises
        ------
        fp8mac.sim.scoreboard.ScoreboardMismatch
            On the first wrong result code or ``tlast``, an extra beat, or a missing one.
        AssertionError
            If the results do not all arrive within ``timeout_cycles`` (default: generous for
            the stall patterns), or ``err_tlast`` (``err_tuser``) is set.
        """
        gemm = self.start_gemm(a_codes, b_codes, name, formats, scales)
        if timeout_cycles is None:
            timeout_cycles = 60 * gemm.tiles * (gemm.k + self.config.rows) + 20_000
        await self.c.wait_for(gemm.scoreboard.expected_beats, timeout_cycles)
        await self.a.wait()
        await self.b.wait()
        wall, cpu = time.perf_counter() - gemm.wall0, time.process_time() - gemm.cpu0
        if gemm.mismatch is not None:
            raise gemm.mismatch
        gemm.scoreboard.check_complete()
        if int(self.dut.err_tlast.value):
            raise AssertionError(f"err_tlast is set after GEMM {name!r}: A and B tlast disagreed "
                                 f"(rerun with FP8MAC_SEED={self.seed})")
        if self._has_err_tuser and int(self.dut.err_tuser.value):
            raise AssertionError(f"err_tuser is set after GEMM {name!r}: a tuser changed within a "
                                 f"tile (rerun with FP8MAC_SEED={self.seed})")
        codes = assemble(gemm.beats, gemm.m, gemm.n, self.config)
        return GemmRun(name, codes, (gemm.m, gemm.k, gemm.n), gemm.tiles,
                       self.c.cycles - gemm.cycle0, wall, cpu, self._pauses)


class GemmInFlight:
    """A GEMM whose beats are queued: the result beats received so far and their checker.

    Attributes
    ----------
    name : str
    m, k, n, tiles : int
    scoreboard : Scoreboard
    beats : list of int
        Result beats received (``tdata``), in order.
    mismatch : ScoreboardMismatch or None
        With fault injection, the first mismatch (kept for :meth:`AccelBench.run_gemm` to raise
        after the stream ends, instead of failing in the cycle it happens).
    """

    def __init__(self, name, a_shape, b_shape, n_tiles, scoreboard):
        self.name = name
        (self.m, self.k), self.n = a_shape, b_shape[1]
        self.tiles = n_tiles
        self.scoreboard = scoreboard
        self.beats: list[int] = []
        self.mismatch: ScoreboardMismatch | None = None
        self.cycle0, self.wall0, self.cpu0 = 0, 0.0, 0.0  # when the first beat was queued

    def check(self, tdata: int, tlast: int):
        """The monitor's callback: keep the beat and check it (raises on a mismatch)."""
        self.beats.append(tdata)
        self.scoreboard.add_beat(tdata, tlast)

    def checker(self, fault):
        """A monitor callback that passes each beat through ``fault(index, tdata, tlast)`` (which
        returns the beats to check instead) and keeps the first mismatch."""
        seen = 0

        def check(tdata, tlast):
            nonlocal seen
            for data, last in fault(seen, tdata, tlast):
                self.beats.append(data)
                if self.mismatch is None:
                    try:
                        self.scoreboard.add_beat(data, last)
                    except ScoreboardMismatch as exc:
                        self.mismatch = exc
            seen += 1
        return check


# ---- host side ----------------------------------------------------------------------------------

def _source_digest() -> str:
    """What the generated Verilog depends on: the hardware sources, the model modules they
    import, and Amaranth's version."""
    import amaranth

    import fp8mac.hw
    import fp8mac.model

    model = Path(fp8mac.model.__file__).parent
    digest = hashlib.sha256(amaranth.__version__.encode())
    paths = sorted(Path(fp8mac.hw.__file__).parent.glob("*.py"))
    paths += [model / f"{name}.py" for name in ("arith", "config", "formats", "lfsr", "rounding")]
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def design_name(config: MacConfig) -> str:
    """A short name for ``config``'s design, one per configuration: ``4x4-two-adder-1a2b3c4d``."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    return f"{config.rows}x{config.cols}-{config.pe}-{digest[:8]}"


def ensure_design(config: MacConfig, out_dir=None) -> Path:
    """Generate ``config``'s Verilog, manifest and core into ``out_dir`` unless they are there and
    current (same configuration, same hardware sources); returns the folder.

    ``out_dir`` defaults to ``build/designs/<design_name(config)>``. Concurrent callers
    (pytest-xdist workers) wait for each other.
    """
    from fp8mac.hw.generate import generate, manifest
    from fp8mac.sim.runner import build_root

    out = Path(out_dir) if out_dir is not None else build_root() / "designs" / design_name(config)
    out.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256((json.dumps(manifest(config), sort_keys=True) + _source_digest()).encode()
                         ).hexdigest()
    stamp = out / "fp8mac-design.key"
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.is_file() and stamp.read_text() == key
                and (out / f"{config.top}.v").is_file() and (out / "manifest.json").is_file()):
            generate(config, out)
            stamp.write_text(key)
    return out


def _design(config: MacConfig, design) -> Path:
    """The folder of ``config``'s generated design: ``design`` (a folder or a
    :class:`~fp8mac.hw.generate.Generated`), checked to hold that configuration, or by default
    :func:`ensure_design`'s."""
    if design is None:
        return ensure_design(config)
    manifest = design.manifest if hasattr(design, "manifest") else Path(design) / "manifest.json"
    folder = Path(manifest).parent.resolve()  # the simulator runs in another folder
    found = MacConfig.from_dict(load_manifest(folder / "manifest.json")["config"])
    if found != config:
        raise ValueError(f"design: {folder} holds a different configuration ({found}) than "
                         f"config ({config})")
    return folder


def run_gemm_on_simulator(config: MacConfig, a_codes, b_codes, sim: str = "verilator", *,
                          design=None, out_dir=None, seed: int | None = None,
                          pauses=("none", "none", "none"), waves: bool | None = None,
                          quiet: bool = False):
    """Run ``A @ B`` on the generated array in a simulator, checked against the golden model.

    Builds the design for ``sim`` (cached) and runs the cocotb test ``gemm`` of
    :mod:`fp8mac.sim.tb_accelerator`, which streams every tile, compares every result code with
    :func:`~fp8mac.model.gemm.mac_gemm` and then, in the same simulation, runs the simulator alone
    for as many cycles to split the time between the simulator and Python.

    Parameters
    ----------
    config : MacConfig
    a_codes, b_codes : array_like of int
        ``M x K`` and ``K x N`` input-format codes.
    sim : {"icarus", "verilator"}
    design : path-like or fp8mac.hw.generate.Generated, optional
        An already generated design of ``config`` (its folder, or what
        :func:`~fp8mac.hw.generate.generate` returned); by default it is generated (cached) under
        ``build/designs/`` by :func:`ensure_design`.
    out_dir : path-like, optional
        Where the simulator build and run go (``<out_dir>/<sim>``); default
        ``build/sim/<design folder name>/<sim>``. A build is reused while its sources and
        options are unchanged.
    seed : int, optional
        Seed of the pause patterns (default: ``FP8MAC_SEED`` or a fresh one, printed).
    pauses : (str, str, str)
        Pause patterns of A, B and C (:data:`fp8mac.sim.pause.PAUSES`); default ``"none"``
        (full rate, for speed); ``("random",) * 3`` or ``"stalls"`` exercise backpressure.
    waves : bool, optional
        Record FST waves (default: the ``WAVES`` environment variable); the path is printed and
        returned in the statistics.
    quiet : bool
        Simulator output to log files instead of the terminal (see
        :func:`fp8mac.sim.runner.build_and_test`).

    Returns
    -------
    codes : ndarray
        The simulator's ``M x N`` result codes (equal to ``mac_gemm(a_codes, b_codes, config)``:
        a difference raises).
    stats : dict
        :data:`STATS` (``cycles``, ``seconds``, ``macs_per_second``, ``python_share``, ...), and
        ``sim``, ``seed``, ``build_seconds`` (0 when the build was cached), ``run_seconds`` (the
        whole simulator process), ``waves`` (path or None).

    Raises
    ------
    fp8mac.sim.runner.SimulationFailed
        If a result differs from the model (the message names the tile, element, codes and
        seed), a beat is lost, or the simulation fails.
    fp8mac.sim.tools.ToolMissing
        If the simulator is not installed.
    ValueError
        On malformed operands or pauses, or a ``design`` of another configuration.
    """
    from fp8mac.sim.runner import build_and_test, build_root

    a = np.asarray(a_codes, dtype=np.int64)
    b = np.asarray(b_codes, dtype=np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a_codes and b_codes must be M x K and K x N, got shapes {a.shape} "
                         f"and {b.shape}")
    if len(pauses) != 3 or any(p not in PAUSES for p in pauses):
        raise ValueError(f"pauses must be three of {', '.join(PAUSES)} (A, B, C), not {pauses!r}")
    folder = _design(config, design)
    jobs = build_root() / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=jobs))
    try:
        np.savez(job / "operands.npz", a=a, b=b)
        env = {MANIFEST_ENV: str(folder / "manifest.json"), "FP8MAC_PAUSES": ",".join(pauses),
               "FP8MAC_GEMM_IN": str(job / "operands.npz"),
               "FP8MAC_GEMM_OUT": str(job / "result.npz")}
        results = build_and_test([folder / f"{config.top}.v"], config.top,
                                 "fp8mac.sim.tb_accelerator", sim=sim, name=folder.name,
                                 build_dir=None if out_dir is None else Path(out_dir) / sim,
                                 testcase="gemm", extra_env=env, waves=waves, seed=seed,
                                 expect_tests=1, quiet=quiet, build_args=build_args(sim, config))
        with np.load(job / "result.npz") as out:
            codes = out["codes"]
    finally:
        shutil.rmtree(job, ignore_errors=True)
    stats = dict(results.metrics["gemm"])
    stats.update(sim=sim, seed=results.seed, build_seconds=results.build_seconds,
                 run_seconds=results.test_seconds,
                 waves=None if results.waves is None else str(results.waves))
    return codes, stats


def simulator_throughput(config: MacConfig | None = None, *, workload: str = "mlp.fc1.forward",
                         size: str = "full", sims=("icarus", "verilator"), seed: int | None = None,
                         design=None) -> list[dict]:
    """Simulated MACs per second of the same workload on each simulator (for ``make bench``).

    Runs the cocotb test ``throughput`` of :mod:`fp8mac.sim.tb_accelerator`: ``workload``
    (:mod:`fp8mac.sim.workloads`) at full rate (no pauses), checked bit for bit, then the
    simulator alone for the same number of cycles.

    Parameters
    ----------
    config : MacConfig, optional
        Default: ``MacConfig()`` (8 x 8, chunk 64, outer stochastic rounding).
    workload, size : str
        The workload and its size.
    sims : sequence of str
    seed : int, optional
    design : path-like or fp8mac.hw.generate.Generated, optional
        An already generated design of ``config`` (default: :func:`ensure_design`'s).

    Returns
    -------
    list of dict
        One per simulator: :data:`STATS` (of all repeats together), and ``sim``, ``workload``,
        ``repeats``, ``array`` (``"R x C"``), ``seed``, ``build_seconds``, ``run_seconds``.
    """
    from fp8mac.sim.runner import build_and_test

    config = MacConfig() if config is None else config
    folder = _design(config, design)
    env = {MANIFEST_ENV: str(folder / "manifest.json"), "FP8MAC_RATE_WORKLOAD": workload,
           "FP8MAC_SIZE": size}
    rows = []
    for sim in sims:
        results = build_and_test([folder / f"{config.top}.v"], config.top,
                                 "fp8mac.sim.tb_accelerator", sim=sim, name=folder.name,
                                 testcase="throughput", build_args=build_args(sim, config),
                                 extra_env=env, seed=seed, expect_tests=1)
        row = dict(results.metrics["throughput"])
        row.update(sim=sim, seed=results.seed, build_seconds=results.build_seconds,
                   run_seconds=results.test_seconds, array=f"{config.rows} x {config.cols}")
        rows.append(row)
    return rows
