"""A two-entry AXI4-Stream register slice, used only to prove the stream test infrastructure.

:class:`RegisterSlice` is the smallest block that has everything a stream checker must handle:
a registered ``tready`` (so the producer sees backpressure one cycle late), a skid register
(so a beat can be in flight while the consumer stalls), and ``tlast``. The self-test
(``tests/test_sim_infra.py``) drives it from :mod:`fp8mac.sim.axis` with random stalls on both
sides and checks every beat with :mod:`fp8mac.sim.scoreboard`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterSlice"]


class RegisterSlice(wiring.Component):
    """A two-entry register slice (skid buffer) between two AXI4-Stream ports.

    Full throughput (one beat per cycle when neither side stalls), in-order, no beat lost or
    duplicated under any backpressure. ``s_axis_tready`` and every ``m_axis_*`` output come
    straight from registers.

    Latency: 1 cycle from a beat accepted on ``s_axis`` to ``m_axis_tvalid``.

    Parameters
    ----------
    width : int
        ``tdata`` width in bits, 1 or more.

    Members
    -------
    s_axis_tdata, s_axis_tvalid, s_axis_tlast : In
        The upstream beat.
    s_axis_tready : Out(1)
        Registered: low exactly when the skid register is occupied.
    m_axis_tdata, m_axis_tvalid, m_axis_tlast : Out
        The downstream beat.
    m_axis_tready : In(1)
        Downstream backpressure.
    """

    def __init__(self, width: int = 8):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        self._width = width
        super().__init__({
            "s_axis_tdata": In(width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform):
        m = Module()
        main_data = Signal(self._width + 1)  # {tlast, tdata}
        skid_data = Signal(self._width + 1)
        main_valid = Signal()
        skid_valid = Signal()
        in_data = Signal(self._width + 1)

        m.d.comb += [
            in_data.eq(Cat(self.s_axis_tdata, self.s_axis_tlast)),
            self.s_axis_tready.eq(~skid_valid),
            self.m_axis_tvalid.eq(main_valid),
            self.m_axis_tdata.eq(main_data[:self._width]),
            self.m_axis_tlast.eq(main_data[self._width]),
        ]
        with m.If(~main_valid | self.m_axis_tready):
            # The main register empties or hands its beat on: refill it from the skid register
            # if that holds a beat (upstream is stalled then), else straight from upstream.
            with m.If(skid_valid):
                m.d.sync += [main_data.eq(skid_data), main_valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [main_data.eq(in_data), main_valid.eq(self.s_axis_tvalid)]
        with m.Elif(self.s_axis_tvalid & ~skid_valid):
            # Downstream stalls while a beat arrives: park it in the skid register.
            m.d.sync += [skid_data.eq(in_data), skid_valid.eq(1)]
        return m
