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

Port access in the per-cycle loops goes through :func:`port_access`: on simulators where cocotb
writes straight through (Verilator), it calls the simulator object under the handle directly,
which is what ``handle.value`` does there minus the Python around it (a third of a bench's
cycle time); elsewhere (Icarus) it is ``handle.value`` itself.

Idle and backpressure cycles come from a pause generator (:mod:`fp8mac.sim.pause`). A driver
pauses only between beats: once ``tvalid`` is high it stays high with ``tdata`` stable until the
beat is taken, as AXI4-Stream requires.
"""

from __future__ import annotations

import itertools
import numbers
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import cocotb
import cocotb.handle
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event

__all__ = ["StreamDriver", "StreamMonitor", "StreamSink", "Lockstep", "start_clock", "reset",
           "port_access"]


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


def _direct_gpi(handle):
    """The simulator object under ``handle`` when a deposit through the handle is exactly one call
    of its ``set_signal_val_binstr`` (else None).

    That is the case when cocotb trusts the simulator's inertial writes
    (``COCOTB_TRUST_INERTIAL_WRITES``, set by cocotb_tools' runner for Verilator): cocotb 2's
    ``_set_value`` then range-checks the value, formats it and calls
    ``set_signal_val_binstr(DEPOSIT, binstr)`` at once. Otherwise cocotb queues writes for the
    ReadWrite phase, and only the public API does that. The names used here are cocotb
    internals; if a cocotb release renames them this returns None and the public API is used.
    """
    gpi = getattr(handle, "_handle", None)
    action = getattr(getattr(cocotb.handle, "_GPISetAction", None), "DEPOSIT", None)
    if (getattr(cocotb.handle, "_trust_inertial", False) is True and action is not None
            and hasattr(gpi, "set_signal_val_binstr") and hasattr(gpi, "get_signal_val_binstr")):
        return gpi
    return None


def port_access(handle) -> tuple[Callable[[], str], Callable[[int], None]]:
    """``(get, put)`` for a port in a per-cycle loop.

    ``get()`` returns the port's value as a binary string, most significant bit first (``"1"``,
    ``"0"``, ``"X"``, ... per bit; ``int(get(), 2)`` raises on X or Z like
    ``LogicArray.to_unsigned``); ``put(v)`` deposits the integer ``v`` (``0 <= v < 2**width``;
    the caller checks the range) with the semantics of ``handle.value = v``.

    Both go straight to the simulator object when :func:`_direct_gpi` allows (Verilator): on this
    machine about 1.7 us less per read and 3.7 us less per 64-bit write than ``handle.value``,
    for a bench that does five or more of them per cycle. Otherwise they are
    ``str(handle.value)`` and ``handle.value = v``.
    """
    gpi = _direct_gpi(handle)
    if gpi is None:
        def put(value: int):
            handle.value = value
        return (lambda: str(handle.value)), put
    set_binstr = gpi.set_signal_val_binstr
    deposit = cocotb.handle._GPISetAction.DEPOSIT.value
    spec = f"0{len(handle)}b"

    def put(value: int):
        set_binstr(deposit, format(value, spec))
    return gpi.get_signal_val_binstr, put


def _handshake(value: str, name: str) -> bool:
    """A handshake signal's value read by a ``get`` of :func:`port_access`; X or Z is an error
    (the DUT must drive its handshakes to 0 or 1 from reset on)."""
    if value == "1":
        return True
    if value == "0":
        return False
    raise AssertionError(f"{name} is {value!r}: a handshake signal must be 0 or 1")


def _port(dut, prefix: str, name: str, required: bool = True):
    full = f"{prefix}_{name}"
    try:
        return getattr(dut, full)
    except AttributeError:
        if required:
            raise AttributeError(f"{dut._name} has no port {full}") from None
        return None


def _stream_ports(dut, prefix: str):
    """The handles of ``<prefix>_tdata``, ``_tvalid``, ``_tready`` and ``_tlast`` (None when the
    stream has no tlast)."""
    return (_port(dut, prefix, "tdata"), _port(dut, prefix, "tvalid"), _port(dut, prefix, "tready"),
            _port(dut, prefix, "tlast", required=False))


class StreamDriver:
    """Drives beats into an AXI4-Stream slave port (``<prefix>_tdata/tvalid/tready/tlast``, and
    ``_tuser`` if the port has one).

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
        self._tdata, self._tvalid, self._tready, self._tlast = _stream_ports(dut, prefix)
        self._get_ready = port_access(self._tready)[0]
        self._ready_name = f"{prefix}_tready"
        self._put_data = port_access(self._tdata)[1]
        self._put_valid = port_access(self._tvalid)[1]
        self._put_last = None if self._tlast is None else port_access(self._tlast)[1]
        self._tuser = _port(dut, prefix, "tuser", required=False)
        self._put_user = None if self._tuser is None else port_access(self._tuser)[1]
        self._user_out = 0
        self._data_limit = 1 << len(self._tdata)
        self._queue: deque[tuple[int, int, int]] = deque()
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
        if self._tuser is not None:
            self._tuser.value = 0
        self._task = cocotb.start_soon(self._run())

    def set_pause_generator(self, pause: Iterable[bool] | None):
        """Use ``pause`` from the next cycle on (``None``: never pause)."""
        self._pause = itertools.repeat(False) if pause is None else iter(pause)

    def send_nowait(self, tdata: Iterable[int], tlast: Iterable[int] | None = None,
                    tuser: Iterable[int] | int | None = None):
        """Queue beats. ``tlast`` gives each beat's last flag; by default only the final beat of
        this call has it (one packet per call). ``tuser``: each beat's ``tuser``, or one value
        for all (default 0); only for a port with ``tuser``."""
        data = [int(d) for d in tdata]
        if tlast is None:
            last = [0] * len(data)
            if data:
                last[-1] = 1
        else:
            last = [int(bool(x)) for x in tlast]
            if len(last) != len(data):
                raise ValueError(f"{self.name}: {len(data)} beats but {len(last)} tlast flags")
        if tuser is None or isinstance(tuser, numbers.Integral):
            user = [int(tuser or 0)] * len(data)
        else:
            user = [int(u) for u in tuser]
            if len(user) != len(data):
                raise ValueError(f"{self.name}: {len(data)} beats but {len(user)} tuser values")
        if any(user) and self._tuser is None:
            raise ValueError(f"{self.name} has no tuser port")
        if not data:
            return
        if min(data) < 0 or max(data) >= self._data_limit:
            bad = next(d for d in data if not 0 <= d < self._data_limit)
            raise ValueError(f"{self.name}: tdata {bad} does not fit the port's "
                             f"{self._data_limit.bit_length() - 1} bits")
        self._queue.extend(zip(data, last, user))
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
        if self._busy and _handshake(self._get_ready(), self._ready_name):
            # the beat on the bus was taken at this edge
            self.sent += 1
            self._busy = False
        paused = next(self._pause)
        queue = self._queue
        if not self._busy and queue and not paused:
            data, last, user = queue.popleft()
            self._put_data(data)
            if self._put_user is not None and user != self._user_out:
                self._put_user(user)
                self._user_out = user
            if self._put_last is not None and last != self._last_out:
                self._put_last(last)
                self._last_out = last
            self._busy = True
        if self._busy != self._valid_out:
            self._put_valid(self._busy)
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
        self._tdata, self._tvalid, self._tready, self._tlast = _stream_ports(dut, prefix)
        self._get_valid = port_access(self._tvalid)[0]
        self._get_ready = port_access(self._tready)[0]
        self._valid_name, self._ready_name = f"{prefix}_tvalid", f"{prefix}_tready"
        self._get_data = port_access(self._tdata)[0]
        self._get_last = None if self._tlast is None else port_access(self._tlast)[0]
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

    def _take(self):
        """Read the beat on the bus (transferred at this edge) and hand it on."""
        data = self._get_data()
        last = "0" if self._get_last is None else self._get_last()
        try:
            data_int, last_int = int(data, 2), int(last, 2)
        except ValueError:  # X or Z: the only characters int() rejects in these strings
            raise AssertionError(f"{self.name}: a transferred beat has tdata {data!r}, tlast "
                                 f"{last!r} (X or Z)") from None
        self._beat(data_int, last_int)

    def _tick(self):
        """Once per cycle: count it, and end a :meth:`wait_for` that has timed out."""
        self.cycles += 1
        if self.cycles == self._deadline:
            self._reached.set()

    def _cycle(self):
        """At a clock edge: take the beat transferred at it, if any."""
        self._tick()
        if (_handshake(self._get_valid(), self._valid_name)
                and _handshake(self._get_ready(), self._ready_name)):
            self._take()

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
        self._put_ready = port_access(self._tready)[1]

    def set_pause_generator(self, pause: Iterable[bool] | None):
        """Use ``pause`` from the next cycle on (``None``: always ready)."""
        self._pause = itertools.repeat(False) if pause is None else iter(pause)

    def _cycle(self):
        """At a clock edge: take the beat transferred at it, then set ``tready`` for the next."""
        self._tick()
        if self._ready and _handshake(self._get_valid(), self._valid_name):
            self._take()
        if next(self._pause) == self._ready:  # paused and ready, or free and not ready: flip
            self._ready = not self._ready
            self._put_ready(self._ready)


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
