"""Testbench of the generated layer engine (:mod:`fp8mac.hw.engine`), and its host side.

The engine holds A, B and C buffers, tiles a whole GEMM by itself and is programmed over
AXI4-Lite, so a bench only loads buffers, writes registers and reads results; while the engine
computes, Python sleeps on one trigger (``done`` rising, or a timeout), which is the point of the
engine: the per-cycle Python cost that bounds the streaming top's cocotb benches
(:mod:`fp8mac.sim.accel_bench`) is paid only for the loads and the READ.

* **cocotb side** (used by :mod:`fp8mac.sim.tb_engine`): :class:`EngineBench` owns the clock
  (toggled in the simulator), the reset, an AXI4-Lite master of our own
  (:class:`AxiLiteMaster`: seeded random delays on ``*valid`` / ``*ready``, BRESP / RRESP
  checked), the loads (one :class:`~fp8mac.sim.axis.StreamDriver` per operand stream, stepped
  together by a :class:`~fp8mac.sim.axis.Lockstep` that stops when the load is done), the READ (a
  :class:`~fp8mac.sim.axis.StreamSink` under seeded ``tready`` pauses, :mod:`fp8mac.sim.pause`)
  and :meth:`EngineBench.gemm`, which does all of it and compares every code of C, padding lanes
  included, with :func:`fp8mac.model.gemm.mac_gemm` (every START restarts the array, so each GEMM
  is a fresh ``mac_gemm``). Everything about the design comes from its ``manifest.json``
  (``FP8MAC_MANIFEST``): the configuration, the buffer depths and the register map.
* **host side**: :func:`ensure_engine_design` generates an engine design once (cached under
  ``build/designs/``), :func:`run_engine_tests` builds and runs cocotb tests of
  :mod:`fp8mac.sim.tb_engine` on it, :func:`engine_throughput` measures its MAC/s (``make
  bench``).

A buffer word is one operand beat of the streaming top (:mod:`fp8mac.sim.tiler`): the A words of
a GEMM are each tile row's beats once, the B words each tile column's beats once
(:func:`operand_words`); C word ``C_BASE + t * rows + r`` is row r of tile t.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cocotb.clock import Clock
from cocotb.triggers import First, RisingEdge, Timer
from cocotb.utils import get_sim_time

from fp8mac.model.config import MacConfig
from fp8mac.sim.accel_bench import (MANIFEST_ENV, _source_digest, check_ports, design_name, load_manifest,
                                    padded_expected)
from fp8mac.sim.axis import Lockstep, StreamDriver, StreamSink
from fp8mac.sim.pause import PAUSES, pause_generator, stream_rng
from fp8mac.sim.scoreboard import ScoreboardMismatch, describe_code
from fp8mac.sim.tiler import assemble, tiles, unpack_lanes

__all__ = ["OKAY", "SLVERR", "EngineMismatch", "AxiLiteError", "EngineStatus", "EngineRun",
           "AxiLiteMaster", "EngineBench", "operand_words", "result_rows", "padded_expected",
           "compare_words", "decode_status", "engine_design_name", "ensure_engine_design",
           "run_engine_tests", "engine_throughput", "throughput_shape", "ENGINE_STATS"]

OKAY, SLVERR = 0, 2
"""AXI4-Lite responses the engine gives (BRESP / RRESP)."""


class EngineMismatch(ScoreboardMismatch):
    """A result code read back from the engine differs from the model's (or a READ is wrong)."""


class AxiLiteError(AssertionError):
    """An AXI4-Lite transaction answered with the wrong response, or not at all."""


# ---- pure helpers (no simulator) ----------------------------------------------------------------

def operand_words(a_codes, b_codes, config: MacConfig) -> tuple[list[int], list[int]]:
    """The A and B buffer words of ``A @ B``: each tile row's A beats once, then the next tile
    row's (``ceil(M / rows) * ceil(K / dot)`` words), and each tile column's B beats once
    (``ceil(N / cols) * ceil(K / dot)`` words), in :func:`~fp8mac.sim.tiler.tiles`' packing."""
    a = np.asarray(a_codes, dtype=np.int64)
    b = np.asarray(b_codes, dtype=np.int64)
    ts = tiles(a, b, config)
    tn = -(-b.shape[1] // config.cols)
    a_words = [w for t in ts if t.tile_col == 0 for w in t.a_beats]
    b_words = [w for t in ts[:tn] for w in t.b_beats]
    return a_words, b_words


def result_rows(m: int, n: int, config: MacConfig) -> int:
    """C words an ``m x n`` result takes: ``rows`` per tile."""
    return -(-m // config.rows) * -(-n // config.cols) * config.rows


def _words_to_padded(words, tm: int, tn: int, config: MacConfig) -> np.ndarray:
    R, C = config.rows, config.cols
    rows = unpack_lanes(words, config.acc_format.width, C)
    return rows.reshape(tm, tn, R, C).transpose(0, 2, 1, 3).reshape(tm * R, tn * C)


def compare_words(words, expected_padded, m: int, n: int, config: MacConfig, *, name: str,
                  seed: int | None, context: str = "", c_base: int = 0, limit: int = 8):
    """Compare the C words read back with the model's padded result, code by code.

    Raises
    ------
    EngineMismatch
        Naming the GEMM, the number of differing codes, each of the first ``limit`` as
        ``C[i][j]`` with its tile, C word and lane (padding lanes marked), both codes decoded,
        and the seed.
    """
    R, C = config.rows, config.cols
    tm, tn = -(-m // R), -(-n // C)
    rerun = "" if seed is None else f"; rerun with FP8MAC_SEED={seed}"
    if len(words) != tm * tn * R:
        raise EngineMismatch(f"GEMM {name!r}{context}: {len(words)} C words read, expected "
                             f"{tm * tn * R}{rerun}")
    limit_bits = 1 << (C * config.acc_format.width)
    extra = [i for i, w in enumerate(words) if not 0 <= w < limit_bits]
    got = _words_to_padded([w % limit_bits for w in words], tm, tn, config)
    want = np.asarray(expected_padded, dtype=np.int64)
    bad = np.argwhere(got != want)
    if not len(bad) and not extra:
        return
    lines = [f"GEMM {name!r}{context}: {len(bad)} of {got.size} result codes differ "
             f"(format {config.acc_format.label}){rerun}"]
    for i, j in bad[:limit]:
        ti, r, tj, c = i // R, i % R, j // C, j % C
        t = ti * tn + tj
        pad = " (padding lane)" if i >= m or j >= n else ""
        lines.append(f"  C[{i}][{j}]{pad}: tile {t} (tile row {ti}, tile col {tj}), element "
                     f"(row {r}, col {c}), C word {c_base + t * R + r} lane {c}: got "
                     f"{describe_code(config.acc_format, got[i, j])}, expected "
                     f"{describe_code(config.acc_format, want[i, j])}")
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    for i in extra:
        lines.append(f"  C word {c_base + i} has bits above its {C} lanes: 0x{words[i]:x}")
    raise EngineMismatch("\n".join(lines))


class EngineStatus(NamedTuple):
    """A decoded ``STATUS`` value."""

    raw: int
    busy: bool
    done: bool
    reading: bool
    errors: frozenset

    def __str__(self):
        names = [n for n, on in (("BUSY", self.busy), ("DONE", self.done), ("READING", self.reading))
                 if on] + sorted(self.errors)
        return f"0x{self.raw:04x} ({', '.join(names) or 'idle'})"


def decode_status(raw: int, register_map: dict) -> EngineStatus:
    """``STATUS`` decoded with the manifest's register map (``status_bits``, ``errors``);
    unknown set bits are reported as ``bit<n>``."""
    bits = register_map["status_bits"]
    errors = {e["name"] for e in register_map["errors"] if raw >> e["bit"] & 1}
    known = sum(1 << b for b in bits.values()) | sum(1 << e["bit"] for e in register_map["errors"])
    errors |= {f"bit{i}" for i in range(32) if (raw & ~known) >> i & 1}
    return EngineStatus(raw, bool(raw >> bits["BUSY"] & 1), bool(raw >> bits["DONE"] & 1),
                        bool(raw >> bits["READING"] & 1), frozenset(errors))


def throughput_shape(config: MacConfig, depths: tuple[int, int, int], steps: int = 256
                     ) -> tuple[int, int, int]:
    """``(M, K, N)`` of the throughput GEMM: square in tiles, ``steps`` beats per tile (fewer if
    the buffers are small), as many tiles as the A, B and C buffers hold."""
    a_words, b_words, c_words = depths
    s = max(1, min(steps, min(a_words, b_words) // 2))
    t = max(1, min(a_words // s, b_words // s, int((c_words // config.rows) ** 0.5)))
    while t * t * config.rows > c_words:
        t -= 1
    return t * config.rows, s * config.dot, t * config.cols


# ---- cocotb side --------------------------------------------------------------------------------

class AxiLiteMaster:
    """An AXI4-Lite master on ``s_axil_*``: one transaction at a time.

    A write raises ``AWVALID`` and ``WVALID`` each after its own delay and holds each until its
    handshake, then raises ``BREADY`` after a delay; a read raises ``ARVALID``, then ``RREADY``,
    likewise. Delays are 0 with probability 1/2, else uniform in ``1..max_delay`` cycles, drawn
    from ``rng`` (seeded by the bench); ``max_delay=0`` is full speed. Handshakes are sampled at
    the rising edge (values from before it, as :mod:`fp8mac.sim.axis` does).

    Parameters
    ----------
    dut : cocotb handle
    rng : numpy.random.Generator, optional
    max_delay : int
    timeout_cycles : int
        Cycles a handshake may take before :class:`AxiLiteError`.
    seed : int, optional
        Quoted in errors.

    Attributes
    ----------
    last_write_ns : float
        Simulation time (ns) of the last write's AW / W handshake edge.
    """

    def __init__(self, dut, *, rng=None, max_delay: int = 0, timeout_cycles: int = 1000,
                 seed: int | None = None):
        self.dut = dut
        self.rng = np.random.default_rng(0) if rng is None else rng
        self.max_delay = int(max_delay)
        self.timeout_cycles = timeout_cycles
        self.seed = seed
        self.last_write_ns = 0.0
        self.idle()

    def idle(self):
        """Every master output low (valid, ready, addresses, data, ``*PROT``), ``WSTRB`` all
        ones."""
        dut = self.dut
        for name in ("awvalid", "wvalid", "bready", "arvalid", "rready", "awprot", "arprot",
                     "awaddr", "araddr", "wdata"):
            getattr(dut, f"s_axil_{name}").value = 0
        dut.s_axil_wstrb.value = 0xF

    def _delays(self, n: int) -> list[int]:
        if self.max_delay <= 0:
            return [0] * n
        d = self.rng.integers(1, self.max_delay + 1, n)
        return np.where(self.rng.random(n) < 0.5, 0, d).tolist()

    def _fail(self, text: str):
        rerun = "" if self.seed is None else f"; rerun with FP8MAC_SEED={self.seed}"
        raise AxiLiteError(text + rerun)

    async def write(self, addr: int, value: int, *, what: str = "", resp: int = OKAY) -> int:
        """Write ``value`` to byte address ``addr``; returns BRESP, which must equal ``resp``."""
        dut = self.dut
        clk = dut.clk.rising_edge
        what = what or f"0x{addr:02x}"
        d_aw, d_w, d_b = self._delays(3)
        dut.s_axil_awaddr.value = addr
        dut.s_axil_wdata.value = value & 0xFFFF_FFFF
        on = {"aw": False, "w": False}
        done = {"aw": False, "w": False}
        delay = {"aw": d_aw, "w": d_w}
        cycle = 0
        while True:
            for ch in ("aw", "w"):
                if not done[ch] and not on[ch] and cycle >= delay[ch]:
                    getattr(dut, f"s_axil_{ch}valid").value = 1
                    on[ch] = True
            await clk
            cycle += 1
            for ch in ("aw", "w"):
                if on[ch] and int(getattr(dut, f"s_axil_{ch}ready").value):
                    getattr(dut, f"s_axil_{ch}valid").value = 0
                    on[ch], done[ch] = False, True
                    if ch == "aw":
                        self.last_write_ns = get_sim_time("ns")
            if done["aw"] and done["w"]:
                break
            if cycle > self.timeout_cycles:
                self._fail(f"AXI4-Lite write to {what}: AWREADY/WREADY missing after {cycle} cycles")
        cycle = 0
        while True:
            if cycle == d_b:
                dut.s_axil_bready.value = 1
            await clk
            cycle += 1
            if cycle > d_b and int(dut.s_axil_bvalid.value):
                got = int(dut.s_axil_bresp.value)
                dut.s_axil_bready.value = 0
                break
            if cycle > self.timeout_cycles:
                self._fail(f"AXI4-Lite write to {what}: BVALID missing after {cycle} cycles")
        if got != resp:
            self._fail(f"AXI4-Lite write of 0x{value:x} to {what} answered BRESP={got}, "
                       f"expected {resp}")
        return got

    async def read(self, addr: int, *, what: str = "", resp: int = OKAY) -> int:
        """Read byte address ``addr``; returns RDATA (RRESP must equal ``resp``)."""
        dut = self.dut
        clk = dut.clk.rising_edge
        what = what or f"0x{addr:02x}"
        d_ar, d_r = self._delays(2)
        dut.s_axil_araddr.value = addr
        cycle = 0
        while True:
            if cycle == d_ar:
                dut.s_axil_arvalid.value = 1
            await clk
            cycle += 1
            if cycle > d_ar and int(dut.s_axil_arready.value):
                dut.s_axil_arvalid.value = 0
                break
            if cycle > self.timeout_cycles:
                self._fail(f"AXI4-Lite read of {what}: ARREADY missing after {cycle} cycles")
        cycle = 0
        while True:
            if cycle == d_r:
                dut.s_axil_rready.value = 1
            await clk
            cycle += 1
            if cycle > d_r and int(dut.s_axil_rvalid.value):
                data, got = int(dut.s_axil_rdata.value), int(dut.s_axil_rresp.value)
                dut.s_axil_rready.value = 0
                break
            if cycle > self.timeout_cycles:
                self._fail(f"AXI4-Lite read of {what}: RVALID missing after {cycle} cycles")
        if got != resp:
            self._fail(f"AXI4-Lite read of {what} answered RRESP={got}, expected {resp}")
        return data


ENGINE_STATS = {
    "mkn": "[M, K, N] of the GEMM",
    "macs": "useful multiply-accumulates, M * K * N (all repeats)",
    "repeats": "GEMMs run (each loaded, computed and read)",
    "cycles": "clock cycles from the first load to the last C word, all repeats",
    "seconds": "wall time of those cycles (loads, register accesses, compute, READ)",
    "cpu_seconds": "CPU time of those cycles",
    "macs_per_second": "M * K * N / seconds: the bench's rate, loads and READ included",
    "macs_per_cpu_second": "the same per CPU second",
    "cycles_per_second": "simulated cycles per wall second over the whole run",
    "load_seconds": "wall time of the loads (Python drives a beat per cycle)",
    "compute_seconds": "wall time from START to DONE (Python asleep: the simulator alone)",
    "read_seconds": "wall time of the READ (Python takes a word per cycle)",
    "compute_cycles": "cycles from START's handshake to DONE",
    "engine_cycles": "the CYCLES register (summed over the repeats)",
    "ideal_cycles": "tiles x beats per tile: one operand beat per cycle (summed)",
    "array_utilization": "ideal_cycles / engine_cycles",
    "compute_cpu_seconds": "CPU time from START to DONE",
    "sim_only_macs_per_second": "M * K * N / compute_seconds: the simulator alone, array busy",
    "sim_only_macs_per_cpu_second": "M * K * N / compute_cpu_seconds",
    "sim_only_cycles_per_second": "compute_cycles / compute_seconds",
    "python_share": "1 - (cycles / sim_only_cycles_per_second) / seconds: cocotb and Python's "
                    "share of the run",
}
"""The statistics of :func:`engine_throughput` and what each means."""


@dataclass
class EngineRun:
    """One GEMM on the engine: loaded, computed, read back and checked.

    Attributes
    ----------
    name : str
    codes : ndarray
        The engine's ``M x N`` result codes (equal to the model's: a difference raised).
    shape : (int, int, int)
        ``(M, K, N)``.
    formats : (str, str)
        Labels of the A and B formats it ran in.
    engine_cycles : int
        The ``CYCLES`` register after DONE.
    compute_cycles : int
        Clock cycles from START's handshake to ``done`` rising.
    cycles : int
        Clock cycles from the first load to the last C word.
    seconds, cpu_seconds : float
        Wall and CPU time of those cycles (the model ran before, not counted).
    load_seconds, compute_seconds, read_seconds : float
        Wall time of the loads, of START to DONE, of the READ.
    compute_cpu_seconds : float
        CPU time of START to DONE.
    """

    name: str
    codes: np.ndarray
    shape: tuple
    formats: tuple
    engine_cycles: int
    compute_cycles: int
    cycles: int
    seconds: float
    cpu_seconds: float
    load_seconds: float
    compute_seconds: float
    read_seconds: float
    compute_cpu_seconds: float = 0.0

    @property
    def macs(self) -> int:
        m, k, n = self.shape
        return m * k * n


class EngineBench:
    """The testbench of one generated layer engine.

    Parameters
    ----------
    dut : cocotb handle
        The engine top.
    manifest : dict, optional
        The design's manifest (``top_kind`` "engine"); default :func:`load_manifest`.
    seed : int
        The run's seed: AXI delays and pauses derive from it (quoted in every failure).
    period_ns : int
    axil_delay : int
        Largest random AXI4-Lite valid / ready delay (0: none).
    load_pause, read_pause : str
        Pause patterns (:data:`fp8mac.sim.pause.PAUSES`) of the load streams' ``tvalid`` and
        the READ stream's ``tready``.

    Attributes
    ----------
    config : MacConfig
    depths : (int, int, int)
        A, B and C buffer words.
    regs : dict
        Register name -> byte offset, from the manifest.
    axil : AxiLiteMaster
    """

    def __init__(self, dut, manifest: dict | None = None, *, seed: int, period_ns: int = 10,
                 axil_delay: int = 0, load_pause: str = "none", read_pause: str = "none"):
        self.dut = dut
        self.manifest = load_manifest() if manifest is None else manifest
        if self.manifest.get("top_kind") != "engine":
            raise AssertionError(f"the manifest describes a {self.manifest.get('top_kind')!r} "
                                 "top, not an engine")
        self.config = MacConfig.from_dict(self.manifest["config"])
        eng = self.manifest["engine"]
        self.register_map = eng
        self.depths = (eng["a_words"], eng["b_words"], eng["c_words"])
        self.regs = {r["name"]: r["offset"] for r in eng["registers"]}
        self.ctrl = {k: 1 << v for k, v in eng["ctrl_bits"].items()}
        self.error_names = [e["name"] for e in eng["errors"]]
        self.seed = int(seed)
        self.period_ns = period_ns
        self._check_ports()
        for kind in (load_pause, read_pause):
            if kind not in PAUSES:
                raise ValueError(f"pause kind must be one of {', '.join(PAUSES)}, not {kind!r}")
        self.load_pause, self.read_pause = load_pause, read_pause
        self._streams = 0  # pause generators made: salts each one's draws
        self.axil = AxiLiteMaster(dut, rng=stream_rng(self.seed, "s_axil"), max_delay=axil_delay,
                                  seed=self.seed)
        self._active = []  # running stream components (stopped by reset)
        self._inputs = [p["name"] for p in self.manifest["ports"]
                        if p["direction"] == "input" and p["name"] not in ("clk", "rst")]
        self._idle_inputs()
        self.clock = Clock(dut.clk, period_ns, unit="ns", impl="gpi")
        self.clock.start(start_high=False)
        dut.rst.value = 1

    def _check_ports(self):
        check_ports(self.dut, self.manifest)

    def _idle_inputs(self):
        """Every input port of the manifest low (``WSTRB`` all ones)."""
        for name in self._inputs:
            getattr(self.dut, name).value = 0
        self.dut.s_axil_wstrb.value = 0xF

    def _rerun(self) -> str:
        return f"rerun with FP8MAC_SEED={self.seed}"

    def _pause(self, kind: str, stream: str):
        self._streams += 1
        return pause_generator(kind, self.seed, f"{stream}#{self._streams}")

    def _stop_streams(self):
        for component in self._active:
            component.stop()
        self._active = []

    async def cycles(self, n: int):
        """Sleep ``n`` clock cycles (one timer, Python not woken per cycle), ending just after
        a rising edge (the timer ends mid-cycle, never at an edge's time)."""
        if n > 1:
            await Timer((n - 1) * self.period_ns + self.period_ns / 2, unit="ns")
        await self.dut.clk.rising_edge

    async def reset(self, cycles: int = 2):
        """Hold ``rst`` for ``cycles`` edges with every input idle (streams stopped): the engine
        is idle, its registers and flags cleared; the buffers keep their words. Then checks that
        ``DEPTHS`` agrees with the manifest."""
        self._stop_streams()
        dut = self.dut
        dut.rst.value = 1
        self._idle_inputs()
        for _ in range(cycles):
            await dut.clk.rising_edge
        dut.rst.value = 0
        await dut.clk.rising_edge
        depths = await self.read("DEPTHS")
        want = sum((d.bit_length() - 1) << (8 * i) for i, d in enumerate(self.depths))
        if depths != want:
            raise AssertionError(f"DEPTHS reads 0x{depths:06x}, the manifest's depths "
                                 f"{self.depths} make 0x{want:06x}")

    # ---- registers -----------------------------------------------------------------------
    def _addr(self, reg) -> tuple[int, str]:
        if isinstance(reg, str):
            return self.regs[reg], reg
        return int(reg), f"0x{int(reg):02x}"

    async def write(self, reg, value: int, *, resp: int = OKAY) -> int:
        """Write register ``reg`` (a name or a byte address); BRESP must be ``resp``."""
        addr, what = self._addr(reg)
        return await self.axil.write(addr, value, what=what, resp=resp)

    async def read(self, reg, *, resp: int = OKAY) -> int:
        """Read register ``reg`` (a name or a byte address); RRESP must be ``resp``."""
        addr, what = self._addr(reg)
        return await self.axil.read(addr, what=what, resp=resp)

    async def command(self, *names: str):
        """Write ``CTRL`` with the named bits (``START``, ``READ``, ``CLEAR``)."""
        await self.write("CTRL", sum(self.ctrl[n] for n in names))

    async def status(self) -> EngineStatus:
        """``STATUS``, decoded (:func:`decode_status`)."""
        return decode_status(await self.read("STATUS"), self.register_map)

    async def settled_status(self, limit: int = 100) -> EngineStatus:
        """``STATUS`` once ``BUSY`` is low (a START's checks take a few cycles)."""
        for _ in range(limit):
            status = await self.status()
            if not status.busy:
                return status
        raise AssertionError(f"STATUS still BUSY after {limit} reads: {status}; {self._rerun()}")

    async def clear(self):
        """``CLEAR`` the error flags and check that they are clear."""
        await self.command("CLEAR")
        status = await self.status()
        if status.errors:
            raise AssertionError(f"CLEAR left STATUS {status}; {self._rerun()}")

    # ---- loads, GEMM, READ -----------------------------------------------------------------
    LOAD_POINTERS = {"a": "A_LOAD", "b": "B_LOAD", "w": "C_LOAD"}
    """The load pointer register of each load stream (``s_axis_w`` loads the C buffer)."""

    async def load(self, a_words=(), a_at: int = 0, b_words=(), b_at: int = 0, *, w_words=(),
                   w_at: int = 0, check: bool = True):
        """Load ``a_words`` into the A buffer from word ``a_at``, ``b_words`` into B from ``b_at``
        and ``w_words`` into C from ``w_at`` (``s_axis_w``, designs that have it), the load
        pointers written first, the streams at once under the load pause pattern; with
        ``check``, each pointer must have advanced by one per word."""
        jobs = [(s, list(words), at) for s, words, at in
                (("a", a_words, a_at), ("b", b_words, b_at), ("w", w_words, w_at)) if len(words)]
        for s, _, at in jobs:
            await self.write(self.LOAD_POINTERS[s], at)
        drivers = []
        for s, words, _ in jobs:
            port = f"s_axis_{s}"
            driver = StreamDriver(self.dut, port, pause=self._pause(self.load_pause, port))
            driver.send_nowait(words)
            drivers.append(driver)
        if drivers:
            self._active = [Lockstep(self.dut.clk, *drivers)]
            for driver in drivers:
                await driver.wait()
            self._stop_streams()
        if check:
            for s, words, at in jobs:
                ptr = await self.read(self.LOAD_POINTERS[s])
                if ptr != at + len(words):
                    raise AssertionError(f"{self.LOAD_POINTERS[s]} reads {ptr} after {len(words)} "
                                         f"words loaded from {at}; {self._rerun()}")

    def gemm_config(self, formats=None) -> MacConfig:
        """The configuration a GEMM in ``formats`` (an ``(a_format, b_format)`` pair from the
        streams' run-time sets; None: the design's defaults) is computed with."""
        return self.config if formats is None else self.config.with_formats(*formats)

    def formats_value(self, formats=None) -> int:
        """The ``FORMATS`` register for ``formats``: A's index in bits [1:0], B's in [3:2]."""
        cfg = self.gemm_config(formats)
        ia = self.config.stream_formats("a").index(cfg.a_format)
        ib = self.config.stream_formats("b").index(cfg.b_format)
        return ia | ib << 2

    async def program(self, m: int, n: int, k: int, a_base: int = 0, b_base: int = 0,
                      c_base: int = 0, formats: int = 0):
        """Write the GEMM registers (``FORMATS`` as a register value)."""
        for name, value in (("M", m), ("N", n), ("K", k), ("A_BASE", a_base),
                            ("B_BASE", b_base), ("C_BASE", c_base), ("FORMATS", formats)):
            await self.write(name, value)

    async def start(self) -> float:
        """``START``; returns the simulation time (ns) of its handshake."""
        await self.command("START")
        return self.axil.last_write_ns

    async def wait_done(self, timeout_cycles: int, what: str = "the GEMM") -> float:
        """Sleep until ``done`` rises (one trigger, with a timeout); returns the simulation time
        (ns) it rose at. AssertionError (with STATUS) if it does not within ``timeout_cycles``.

        Returns in step with the clock, just after the next rising edge: a timer ends at a
        clock edge's time, before or after the simulator processes that edge, and a write made
        between would meet the edge unseen by the next read of a combinational output."""
        if int(self.dut.done.value):
            return get_sim_time("ns")
        timer = Timer(timeout_cycles * self.period_ns, unit="ns")
        fired = await First(RisingEdge(self.dut.done), timer)
        when = get_sim_time("ns")
        await self.dut.clk.rising_edge
        if fired is timer and not int(self.dut.done.value):
            status = await self.status()
            raise AssertionError(f"{what}: done did not rise within {timeout_cycles} cycles of "
                                 f"START; STATUS {status}; {self._rerun()}")
        return when

    async def read_c(self, base: int, count: int, *, pause: str | None = None,
                     timeout_cycles: int | None = None) -> list[int]:
        """``READ`` ``count`` C words from ``base`` under ``tready`` pauses (``pause``, default
        the bench's read pattern); checks ``tlast`` (on the last word only), that no word
        follows and that ``READING`` ends."""
        await self.write("C_BASE", base)
        await self.write("C_COUNT", count)
        await self.command("READ")
        sink = StreamSink(self.dut, "m_axis_c",
                          pause=self._pause(pause or self.read_pause, "m_axis_c"))
        self._active = [sink]
        if timeout_cycles is None:
            timeout_cycles = 100 * count + 1000
        try:
            await sink.wait_for(count, timeout_cycles)
        except AssertionError as exc:
            raise AssertionError(f"READ of {count} C words from {base}: {exc}; "
                                 f"{self._rerun()}") from None
        for _ in range(4):  # nothing more may come
            await self.dut.clk.rising_edge
        self._stop_streams()
        self.dut.m_axis_c_tready.value = 0
        beats = sink.take()
        if len(beats) != count:
            raise EngineMismatch(f"READ of {count} C words from {base} sent {len(beats)}; "
                                 f"{self._rerun()}")
        lasts = [i for i, (_, last) in enumerate(beats) if last]
        if lasts != [count - 1]:
            raise EngineMismatch(f"READ of {count} C words from {base}: tlast on words {lasts}, "
                                 f"expected on word {count - 1} only; {self._rerun()}")
        status = await self.status()
        if status.reading:
            raise AssertionError(f"READING still set after the READ's last word: STATUS "
                                 f"{status}; {self._rerun()}")
        return [data for data, _ in beats]

    async def gemm(self, a_codes, b_codes, formats=None, a_base: int = 0, b_base: int = 0,
                   c_base: int = 0, *, name: str = "gemm", expected=None, load: bool = True,
                   read_pieces: int = 1, timeout_cycles: int | None = None) -> EngineRun:
        """Run ``A (M x K) @ B (K x N)`` on the engine and check every code of C.

        Loads the operands (unless ``load`` is False: they are in the buffers already), writes
        M, N, K, the bases and ``FORMATS``, STARTs, sleeps until ``done``, reads ``CYCLES`` and
        ``STATUS`` (no error, DONE), READs the C words (in ``read_pieces`` READs) and compares
        every code, padding lanes included, with ``mac_gemm`` in ``formats``.

        Parameters
        ----------
        formats : (a_format, b_format), optional
            Run-time formats (:meth:`gemm_config`); default the design's.
        expected : array_like, optional
            ``M x N`` codes to compare with instead of the model's (a test of the check itself:
            the padding lanes keep the model's codes).

        Raises
        ------
        EngineMismatch
            A code differs (the message names the GEMM, the element and the seed), or the READ
            is malformed.
        AssertionError
            DONE does not come, STATUS shows an error, or CYCLES is implausible.
        """
        cfg = self.gemm_config(formats)
        a = np.asarray(a_codes, dtype=np.int64)
        b = np.asarray(b_codes, dtype=np.int64)
        (m, k), n = a.shape, b.shape[1]
        R, C, d = cfg.rows, cfg.cols, cfg.dot
        tm, tn, steps = -(-m // R), -(-n // C), -(-k // d)
        rows = tm * tn * R
        want = padded_expected(a, b, cfg)  # before the clock starts: not timed
        if expected is not None:
            want[:m, :n] = np.asarray(expected, dtype=np.int64)
        context = (f" (M {m} x K {k} x N {n}, {cfg.a_format.label} x {cfg.b_format.label}, A_BASE "
                   f"{a_base}, B_BASE {b_base}, C_BASE {c_base})")
        if timeout_cycles is None:
            timeout_cycles = 4 * (tm * tn * (steps + 2 * R + C + 8)) + 2000
        a_words, b_words = operand_words(a, b, cfg) if load else ((), ())
        wall0, cpu0 = time.perf_counter(), time.process_time()
        ns0 = get_sim_time("ns")
        await self.load(a_words, a_base, b_words, b_base)
        await self.program(m, n, k, a_base, b_base, c_base, self.formats_value(formats))
        wall1, cpu1 = time.perf_counter(), time.process_time()
        start_ns = await self.start()
        done_ns = await self.wait_done(timeout_cycles, f"GEMM {name!r}{context}")
        wall2, cpu2 = time.perf_counter(), time.process_time()
        engine_cycles = await self.read("CYCLES")
        status = await self.status()
        if status.errors or not status.done or status.busy:
            raise AssertionError(f"GEMM {name!r}{context}: STATUS {status} after done; "
                                 f"{self._rerun()}")
        compute_cycles = round((done_ns - start_ns) / self.period_ns)
        if not tm * tn * steps <= engine_cycles <= compute_cycles:
            raise AssertionError(f"GEMM {name!r}{context}: CYCLES {engine_cycles}, expected from "
                                 f"{tm * tn * steps} (a beat per cycle) to {compute_cycles} (START "
                                 f"to done); {self._rerun()}")
        wall3 = time.perf_counter()
        bounds = np.linspace(0, rows, max(1, min(read_pieces, rows)) + 1).round().astype(int)
        words = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi > lo:
                words += await self.read_c(c_base + int(lo), int(hi - lo))
        wall4, cpu4 = time.perf_counter(), time.process_time()
        cycles = round((get_sim_time("ns") - ns0) / self.period_ns)
        compare_words(words, want, m, n, cfg, name=name, seed=self.seed, context=context,
                      c_base=c_base)
        return EngineRun(name, assemble(words, m, n, cfg), (m, k, n),
                         (cfg.a_format.label, cfg.b_format.label), engine_cycles, compute_cycles,
                         cycles, wall4 - wall0, cpu4 - cpu0, wall1 - wall0, wall2 - wall1,
                         wall4 - wall3, cpu2 - cpu1)


# ---- host side ----------------------------------------------------------------------------------

def engine_design_name(config: MacConfig, engine) -> str:
    """``engine-2x3-two-adder-1a2b3c4d-a64b64c64``: one name per configuration and depths."""
    return (f"engine-{design_name(config)}-a{engine.a_words}b{engine.b_words}c{engine.c_words}")


def ensure_engine_design(config: MacConfig, engine, out_dir=None) -> Path:
    """Generate the engine ``(config, engine)`` (an :class:`~fp8mac.hw.engine.EngineConfig`)
    into ``out_dir`` (default ``build/designs/<engine_design_name>``) unless it is there and
    current (same configuration, depths and hardware sources); returns the folder. Concurrent
    callers wait for each other."""
    from fp8mac.hw.generate import generate, manifest
    from fp8mac.sim.runner import build_root

    out = (Path(out_dir) if out_dir is not None
           else build_root() / "designs" / engine_design_name(config, engine))
    out.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256((json.dumps(manifest(config, engine), sort_keys=True)
                          + _source_digest()).encode()).hexdigest()
    stamp = out / "fp8mac-design.key"
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.is_file() and stamp.read_text() == key
                and (out / f"{config.top}.v").is_file() and (out / "manifest.json").is_file()):
            generate(config, out, engine)
            stamp.write_text(key)
    return out


def run_engine_tests(config: MacConfig, engine, sim: str, tests, *, seed: int | None = None,
                     build_args=(), name_suffix: str = "", design=None, quiet: bool = False,
                     **env):
    """Build (cached) the engine design and run the cocotb tests ``tests`` (names in
    :mod:`fp8mac.sim.tb_engine`) on ``sim``; ``env``: more ``FP8MAC_*`` variables; ``quiet``:
    simulator output to log files. Returns the :class:`~fp8mac.sim.runner.SimResults`; raises
    SimulationFailed on any failure."""
    from fp8mac.sim.accel_bench import build_args as array_build_args
    from fp8mac.sim.runner import build_and_test

    folder = Path(design) if design is not None else ensure_engine_design(config, engine)
    tests = [tests] if isinstance(tests, str) else list(tests)
    return build_and_test([folder / f"{config.top}.v"], config.top, "fp8mac.sim.tb_engine",
                          sim=sim, name=folder.name + name_suffix, testcase=tests, seed=seed,
                          build_args=tuple(array_build_args(sim, config)) + tuple(build_args),
                          extra_env={MANIFEST_ENV: str(folder / "manifest.json"),
                                     **{k: str(v) for k, v in env.items()}},
                          expect_tests=len(tests), quiet=quiet)


def engine_throughput(config: MacConfig | None = None, engine=None, *, sim: str = "verilator",
                      seed: int | None = None, min_seconds: float = 1.0, mkn=None,
                      build_args=(), name_suffix: str = "", quiet: bool = False) -> dict:
    """MAC/s of the engine on ``sim`` (for ``make bench``): the cocotb test ``throughput`` of
    :mod:`fp8mac.sim.tb_engine`, a GEMM (default :func:`throughput_shape`, or ``mkn`` =
    ``(M, K, N)``) loaded, computed and read back until ``min_seconds`` of wall time have passed,
    every code checked. Returns :data:`ENGINE_STATS` and ``sim``, ``seed``, ``array``,
    ``build_seconds``, ``run_seconds``. ``build_args``: extra simulator options (a separate
    build, named with ``name_suffix``)."""
    from fp8mac.hw.engine import EngineConfig

    config = MacConfig() if config is None else config
    engine = EngineConfig(4096, 4096, 4096) if engine is None else engine
    env = {"FP8MAC_RATE_SECONDS": min_seconds}
    if mkn is not None:
        env["FP8MAC_ENGINE_MKN"] = ",".join(str(int(x)) for x in mkn)
    results = run_engine_tests(config, engine, sim, "throughput", seed=seed,
                               build_args=build_args, name_suffix=name_suffix, quiet=quiet, **env)
    row = dict(results.metrics["throughput"])
    row.update(sim=sim, seed=results.seed, build_seconds=results.build_seconds,
               run_seconds=results.test_seconds, array=f"{config.rows} x {config.cols}")
    return row
