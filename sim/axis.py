"""AXI4-Stream drivers and sinks for cocotb 2: one implementation every fp8mac bench reuses.

A stream is found by its prefix: ``StreamDriver(dut, "s_axis_a")`` drives ``s_axis_a_tdata``,
``s_axis_a_tvalid`` and ``s_axis_a_tlast`` (if the port exists) and watches
``s_axis_a_tready``; ``StreamSink(dut, "m_axis_c")`` drives ``m_axis_c_tready`` and takes
``m_axis_c_tdata`` / ``m_axis_c_tlast``.

Timing (the usual cocotb convention): each component runs one loop with one
``await clk.rising_edge`` per cycle. At the edge it reads the handshake signals, which still hold
their values from before the edge (the values the DUT's flip-flops sample), so a beat is
transferred exactly when ``tvalid`` and ``tready`` were both high before that edge; then it
writes its outputs for the next cycle. Signals are written only when they change.

:class:`Lockstep` runs the per-cycle work of several components from one coroutine (one
``await`` per clock edge for all of them instead of one each): a cocotb bench's cycle rate is
limited by Python's cost per cycle, much of it the cost of each coroutine resumed, so a bench
that drives several streams every cycle runs faster that way (the MAC array's A, B and result
streams on a 2 x 4 array in Verilator: 50k instead of 41k cycles per second).

Idle and backpressure cycles come from a pause generator (:mod:`fp8mac.sim.pause`). A driver
pauses only between beats: once ``tvalid`` is high it stays high with ``tdata`` stable until the
beat is taken, as AXI4-Stream requires.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event

__all__ = ["StreamDriver", "StreamMonitor", "StreamSink", "Lockstep", "start_clock", "reset"]


def start_clock(dut, period_ns: int = 10, clk: str = "clk"):
    """Start a free-running clock on ``dut.<clk>``; returns the :class:`cocotb.clock.Clock`."""
    clock = Clock(getattr(dut, clk), period_ns, unit="ns")
    clock.start()
    return clock


async def reset(dut, cycles: int = 2, clk: str = "clk", rst: str = "rst"):
    """Hold the synchronous active-high reset (Amaranth's ``rst``) for ``cycles`` clock edges."""
    signal = getattr(dut, rst)
    signal.value = 1
    await ClockCycles(getattr(dut, clk), cycles)
    signal.value = 0


def _port(dut, prefix: str, name: str, required: bool = True):
    full = f"{prefix}_{name}"
    try:
        return getattr(dut, full)
    except AttributeError:
        if required:
            raise AttributeError(f"{dut._name} has no port {full}") from None
        return None


class StreamDriver:
    """Drives beats into an AXI4-Stream slave port (``<prefix>_tdata/tvalid/tready/tlast``).

    Beats wait in a queue; the driver offers the head beat whenever its pause generator allows
    and holds it until ``tready`` takes it.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    prefix : str
        Port name prefix, e.g. ``"s_axis_a"``.
    clk : cocotb handle, optional
        The clock; default ``dut.clk``.
    pause : iterator of bool, optional
        Pause generator (default: never pause).

    Attributes
    ----------
    sent : int
        Beats the DUT has accepted.
    """

    def __init__(self, dut, prefix: str, clk=None, *, pause: Iterable[bool] | None = None):
        self.name = prefix
        self._clk = dut.clk if clk is None else clk
        self._tdata = _port(dut, prefix, "tdata")
        self._tvalid = _port(dut, prefix, "tvalid")
        self._tready = _port(dut, prefix, "tready")
        self._tlast = _port(dut, prefix, "tlast", required=False)
        self._queue: deque[tuple[int, int]] = deque()
        self._pause: Iterator[bool] = itertools.repeat(False) if pause is None else iter(pause)
        self._busy = False  # a beat is on the bus (tvalid high)
        self._valid_out = False  # what tvalid shows now
        self._last_out = 0  # what tlast shows now
        self._wake = Event()
        self._idle = Event()
        self._idle.set()
        self.sent = 0
        self._tvalid.value = 0
        self._tdata.value = 0
        if self._tlast is not None:
            self._tlast.value = 0
        self._task = cocotb.start_soon(self._run())

    def set_pause_generator(self, pause: Iterable[bool] | None):
        """Use ``pause`` from the next cycle on (``None``: never pause)."""
        self._pause = itertools.repeat(False) if pause is None else iter(pause)

    def send_nowait(self, tdata: Iterable[int], tlast: Iterable[int] | None = None):
        """Queue beats. ``tlast`` gives each beat's last flag; by default only the final beat of
        this call has it (one packet per call)."""
        data = [int(d) for d in tdata]
        if tlast is None:
            last = [0] * len(data)
            if data:
                last[-1] = 1
        else:
            last = [int(bool(x)) for x in tlast]
            if len(last) != len(data):
                raise ValueError(f"{self.name}: {len(data)} beats but {len(last)} tlast flags")
        if not data:
            return
        self._queue.extend(zip(data, last))
        self._idle.clear()
        self._wake.set()

    async def send(self, tdata: Iterable[int], tlast: Iterable[int] | None = None):
        """Queue beats (as :meth:`send_nowait`) and return when the DUT has taken all of them."""
        self.send_nowait(tdata, tlast)
        await self.wait()

    async def wait(self):
        """Return when the queue is empty and the last beat has been taken."""
        await self._idle.wait()

    @property
    def pending(self) -> int:
        """Beats queued or on the bus, not yet taken."""
        return len(self._queue) + self._busy

    def stop(self):
        """Stop driving (the bus keeps its last values)."""
        self._task.cancel()

    def _cycle(self):
        """At a clock edge: count the beat taken at it, then offer the next one."""
        if self._busy and self._tready.value:  # the beat on the bus was taken at this edge
            self.sent += 1
            self._busy = False
        paused = next(self._pause)
        queue = self._queue
        if not self._busy and queue and not paused:
            data, last = queue.popleft()
            self._tdata.value = data
            if self._tlast is not None and last != self._last_out:
                self._tlast.value = last
                self._last_out = last
            self._busy = True
        if self._busy != self._valid_out:
            self._tvalid.value = self._busy
            self._valid_out = self._busy
        if not self._busy and not queue:
            self._idle.set()

    async def _run(self):
        edge = self._clk.rising_edge
        while True:
            if not self._busy and not self._queue:  # nothing to do: sleep until send_nowait()
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            await edge
            self._cycle()


class StreamMonitor:
    """Watches an AXI4-Stream port without driving it; every transferred beat is counted and
    either passed to ``callback(tdata, tlast)`` or kept for :meth:`take`.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    prefix : str
        Port name prefix, e.g. ``"m_axis_c"``.
    clk : cocotb handle, optional
        The clock; default ``dut.clk``.
    callback : callable, optional
        Called with ``(tdata, tlast)`` (ints) for each beat, in order, in the cycle it transfers.
        An exception it raises fails the cocotb test at that cycle.

    Attributes
    ----------
    received : int
        Beats transferred so far.
    cycles : int
        Clock cycles watched so far.
    """

    def __init__(self, dut, prefix: str, clk=None, *,
                 callback: Callable[[int, int], None] | None = None):
        self.name = prefix
        self._clk = dut.clk if clk is None else clk
        self._tdata = _port(dut, prefix, "tdata")
        self._tvalid = _port(dut, prefix, "tvalid")
        self._tready = _port(dut, prefix, "tready")
        self._tlast = _port(dut, prefix, "tlast", required=False)
        self._beats: deque[tuple[int, int]] = deque()
        self._callback = callback
        self._target = self._deadline = None  # what wait_for waits for
        self._reached = Event()
        self.received = 0
        self.cycles = 0
        self._task = cocotb.start_soon(self._run())

    def set_callback(self, callback: Callable[[int, int], None] | None):
        """Send beats to ``callback`` from now on (``None``: keep them for :meth:`take`)."""
        self._callback = callback

    def take(self) -> list[tuple[int, int]]:
        """The kept beats as ``(tdata, tlast)`` pairs, oldest first; empties the store."""
        beats = list(self._beats)
        self._beats.clear()
        return beats

    async def wait_for(self, count: int, timeout_cycles: int):
        """Return once ``count`` beats have transferred in total.

        Raises
        ------
        AssertionError
            If they have not after ``timeout_cycles`` more clock cycles (a lost beat or a hang).
        """
        if self.received < count:
            self._target = count
            self._deadline = self.cycles + timeout_cycles
            self._reached.clear()
            await self._reached.wait()
            self._target = self._deadline = None
        if self.received < count:
            raise AssertionError(f"{self.name}: {self.received} of {count} beats after "
                                 f"{timeout_cycles} cycles")

    def stop(self):
        """Stop watching (and, for a sink, driving ``tready``)."""
        self._task.cancel()

    def _beat(self, data: int, last: int):
        self.received += 1
        if self._callback is None:
            self._beats.append((data, last))
        else:
            self._callback(data, last)
        if self.received == self._target:
            self._reached.set()

    def _tick(self):
        """Once per cycle: count it, and end a :meth:`wait_for` that has timed out."""
        self.cycles += 1
        if self.cycles == self._deadline:
            self._reached.set()

    def _cycle(self):
        """At a clock edge: take the beat transferred at it, if any."""
        self._tick()
        if self._tvalid.value and self._tready.value:
            tlast = self._tlast
            self._beat(self._tdata.value.to_unsigned(), 0 if tlast is None else int(tlast.value))

    async def _run(self):
        edge = self._clk.rising_edge
        while True:
            await edge
            self._cycle()


class StreamSink(StreamMonitor):
    """Takes beats from an AXI4-Stream master port: drives ``<prefix>_tready`` from a pause
    generator and, like :class:`StreamMonitor`, counts each beat and hands it on.

    Parameters
    ----------
    dut, prefix, clk, callback
        As :class:`StreamMonitor`.
    pause : iterator of bool, optional
        Pause generator for ``tready`` (default: always ready).
    """

    def __init__(self, dut, prefix: str, clk=None, *, pause: Iterable[bool] | None = None,
                 callback: Callable[[int, int], None] | None = None):
        self._pause: Iterator[bool] = itertools.repeat(False) if pause is None else iter(pause)
        self._ready = False  # what tready shows now
        super().__init__(dut, prefix, clk, callback=callback)
        self._tready.value = 0

    def set_pause_generator(self, pause: Iterable[bool] | None):
        """Use ``pause`` from the next cycle on (``None``: always ready)."""
        self._pause = itertools.repeat(False) if pause is None else iter(pause)

    def _cycle(self):
        """At a clock edge: take the beat transferred at it, then set ``tready`` for the next."""
        self._tick()
        if self._ready and self._tvalid.value:
            tlast = self._tlast
            self._beat(self._tdata.value.to_unsigned(), 0 if tlast is None else int(tlast.value))
        if next(self._pause) == self._ready:  # paused and ready, or free and not ready: flip
            self._ready = not self._ready
            self._tready.value = self._ready


class Lockstep:
    """Runs the per-cycle work of several drivers, sinks and monitors from one coroutine.

    Each component otherwise resumes its own coroutine at every clock edge; here one coroutine
    awaits the edge and steps them all, in the order given (which does not matter: each reads the
    values from before the edge and its writes take effect after it). The components keep their
    whole interface (``send``, ``wait``, ``wait_for``, pause generators, callbacks); their own
    loops are stopped. Stop the group with :meth:`stop`.

    Parameters
    ----------
    clk : cocotb handle
        The clock.
    *components : StreamDriver, StreamSink or StreamMonitor
    """

    def __init__(self, clk, *components):
        for component in components:
            component.stop()
        self._components = components
        self._task = cocotb.start_soon(self._run(clk))

    def stop(self):
        """Stop stepping the components (their outputs keep their last values)."""
        self._task.cancel()

    async def _run(self, clk):
        edge = clk.rising_edge
        cycles = tuple(component._cycle for component in self._components)
        while True:
            await edge
            for cycle in cycles:
                cycle()
