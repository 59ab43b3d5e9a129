"""cocotb self-test of the stream infrastructure on :class:`~fp8mac.sim.selftest_dut.RegisterSlice`.

Run by ``tests/test_sim_infra.py`` on Icarus and Verilator. The register slice carries 64-bit
beats seen as four ``fp16_ibm`` codes; a "tile" is 2 beats (2 rows of 4 codes), ``tlast`` on its
second beat.

- ``roundtrip``: every beat arrives once, in order, with its ``tlast``, under every combination
  of driver and sink pause patterns.
- ``fault_*``: faults injected between the sink and the scoreboard (a flipped bit, a lost beat,
  a duplicated beat, a wrong ``tlast``) must make the scoreboard raise, with a message naming
  the beat, tile and element. These prove the checks can fail.
- ``lost_beat_timeout``: waiting for a beat that never comes ends with an error, not a hang.
- ``port_access``: :func:`~fp8mac.sim.axis.port_access` writes and reads 64-bit values exactly
  (top bit, bottom bit, zero), the driver rejects a ``tdata`` wider than its port, and which
  access path the simulator got is recorded (the pytest side expects the direct one on
  Verilator).
- ``rate``: beats per CPU second with no pauses, recorded as a metric.
- ``deliberate_failure``: fails on purpose (a scoreboard expecting other data); run alone by the
  pytest side to prove that a failing cocotb test fails the pytest test.
"""

from __future__ import annotations

import time

import cocotb
import numpy as np

from cocotb.triggers import ClockCycles

from fp8mac.sim import axis
from fp8mac.sim.axis import StreamDriver, StreamSink, port_access, reset, start_clock
from fp8mac.sim.pause import PAUSES, pause_generator
from fp8mac.sim.runner import record_metric, test_seed
from fp8mac.sim.scoreboard import Scoreboard, ScoreboardMismatch

FMT = "fp16_ibm"
LANES = 4
TILE = (2, 4)  # rows, cols: one row per beat


class SliceTb:
    """Clock, reset, a driver on ``s_axis``, a sink on ``m_axis`` and the stimulus."""

    def __init__(self, dut, *, tiles: int, pause_in: str = "none", pause_out: str = "none",
                 salt: str = ""):
        self.dut = dut
        self.seed = test_seed()
        rng = np.random.default_rng([self.seed, tiles, len(salt)])
        self.codes = rng.integers(0, 1 << 16, size=(tiles, *TILE), dtype=np.int64)
        beats = self.codes.reshape(-1, LANES)
        self.tdata = [sum(int(c) << (16 * lane) for lane, c in enumerate(row)) for row in beats]
        self.tlast = [int(i % TILE[0] == TILE[0] - 1) for i in range(len(self.tdata))]
        self.scoreboard = Scoreboard(self.codes, FMT, lanes=LANES, tlast=self.tlast,
                                     seed=self.seed, name="m_axis")
        start_clock(dut)
        self.driver = StreamDriver(dut, "s_axis",
                                   pause=pause_generator(pause_in, self.seed, "s_axis" + salt))
        self.sink = StreamSink(dut, "m_axis", callback=self.scoreboard,
                               pause=pause_generator(pause_out, self.seed, "m_axis" + salt))

    async def run(self, timeout_cycles: int | None = None):
        """Reset, send every beat, wait for as many beats out; returns the CPU time taken (this
        process runs the simulator and Python, so other load on the machine does not count)."""
        await reset(self.dut)
        n = len(self.tdata)
        start = time.process_time()
        self.driver.send_nowait(self.tdata, self.tlast)
        await self.sink.wait_for(n, timeout_cycles or 200 * n + 1000)
        await self.driver.wait()
        return time.process_time() - start


@cocotb.test()
@cocotb.parametrize(pause_in=PAUSES, pause_out=PAUSES)
async def roundtrip(dut, pause_in, pause_out):
    """Every beat arrives once and in order under these pause patterns."""
    tb = SliceTb(dut, tiles=100, pause_in=pause_in, pause_out=pause_out,
                 salt=f"{pause_in}/{pause_out}")
    await tb.run()
    tb.scoreboard.check_complete()
    assert tb.driver.sent == len(tb.tdata), (tb.driver.sent, len(tb.tdata))


class Fault:
    """Sits between the sink and the scoreboard, damages beat ``index`` and keeps what the
    scoreboard raised."""

    def __init__(self, scoreboard, index: int, kind: str):
        self.scoreboard, self.index, self.kind = scoreboard, index, kind
        self.raised: ScoreboardMismatch | None = None
        self.seen = 0

    def __call__(self, tdata, tlast):
        i = self.seen
        self.seen += 1
        beats = [(tdata, tlast)]
        if i == self.index:
            if self.kind == "flip":
                beats = [(tdata ^ (1 << 21), tlast)]  # lane 1, bit 5
            elif self.kind == "drop":
                beats = []
            elif self.kind == "duplicate":
                beats = [(tdata, tlast), (tdata, tlast)]
            elif self.kind == "tlast":
                beats = [(tdata, tlast ^ 1)]
        for beat in beats:
            if self.raised is None:
                try:
                    self.scoreboard.add_beat(*beat)
                except ScoreboardMismatch as exc:
                    self.raised = exc


@cocotb.test()
@cocotb.parametrize(kind=["flip", "drop_last", "drop", "duplicate", "duplicate_last", "tlast"])
async def fault(dut, kind):
    """An injected fault makes the scoreboard raise, saying where."""
    tb = SliceTb(dut, tiles=20, pause_in="random", pause_out="random", salt=kind)
    n = len(tb.tdata)
    index = {"flip": 13, "drop": 13, "duplicate": 13, "tlast": 13,
             "drop_last": n - 1, "duplicate_last": n - 1}[kind]
    fault = Fault(tb.scoreboard, index, kind.removesuffix("_last"))
    tb.sink.set_callback(fault)
    await tb.run()
    if fault.raised is None:
        try:
            tb.scoreboard.check_complete()
        except ScoreboardMismatch as exc:
            fault.raised = exc
    assert fault.raised is not None, f"fault {kind} at beat {index} went unnoticed"
    message = str(fault.raised)
    dut._log.info("fault %s caught as expected: %s", kind, message)
    assert f"FP8MAC_SEED={tb.seed}" in message, message
    expected_text = {
        "flip": "beat 13 of 40 differs",
        "drop": "beat 13 of 40 differs",
        "duplicate": "beat 14 of 40 differs",
        "tlast": "beat 13 of 40 has tlast=",
        "drop_last": "received 39 beats, expected 40",
        "duplicate_last": "beat 40 is beyond the 40 expected",
    }[kind]
    assert expected_text in message, message
    if kind == "flip":  # beat 13 is row 1 of tile 6; bit 21 is lane 1 (col 1), bit 5
        assert "tile 6, element (row 1, col 1), lane 1" in message, message
        assert message.count("lane ") == 1, message


@cocotb.test()
async def lost_beat_timeout(dut):
    """Waiting for more beats than were sent raises after the timeout."""
    tb = SliceTb(dut, tiles=5)
    try:
        await tb.run(timeout_cycles=100)  # waits for 10 beats: all arrive
        await tb.sink.wait_for(11, timeout_cycles=100)
    except AssertionError as exc:
        assert "m_axis: 10 of 11 beats after 100 cycles" in str(exc), str(exc)
    else:
        raise AssertionError("wait_for(11) returned with only 10 beats sent")


@cocotb.test()
async def port_access_exact(dut):
    """port_access round-trips 64-bit values; send_nowait rejects values wider than tdata."""
    start_clock(dut)
    port = dut.s_axis_tdata
    get, put = port_access(port)
    record_metric("direct_port_access", axis._direct_gpi(port) is not None)
    for value in (0, 1, 1 << 63, (1 << 64) - 1, 0x8000_0001_F00D_0002):
        put(value)
        await ClockCycles(dut.clk, 1)
        assert int(get(), 2) == value, (get(), value)
        assert port.value.to_unsigned() == value, (str(port.value), value)
    driver = StreamDriver(dut, "s_axis")
    for bad in (1 << 64, -1):
        try:
            driver.send_nowait([5, bad])
        except ValueError as exc:
            assert f"s_axis: tdata {bad} does not fit the port's 64 bits" in str(exc), str(exc)
        else:
            raise AssertionError(f"send_nowait accepted tdata {bad} on a 64-bit port")
    assert driver.pending == 0, driver.pending  # nothing of a rejected call was queued
    driver.stop()


@cocotb.test()
async def deliberate_failure(dut):
    """Fails on purpose: the scoreboard expects each code plus one."""
    tb = SliceTb(dut, tiles=5)
    tb.sink.set_callback(Scoreboard((tb.codes + 1) & 0xFFFF, FMT, lanes=LANES, seed=tb.seed,
                                    name="m_axis"))
    await tb.run()


@cocotb.test()
async def rate(dut):
    """Beats per CPU second through the slice with no pauses (a speed measure, not a check)."""
    tb = SliceTb(dut, tiles=5000)
    seconds = await tb.run()
    tb.scoreboard.check_complete()
    beats_per_second = len(tb.tdata) / seconds
    dut._log.info("%d beats in %.2f s CPU: %.0f beats/s", len(tb.tdata), seconds,
                  beats_per_second)
    record_metric("beats_per_second", beats_per_second)
