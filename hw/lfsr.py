"""``Lfsr``: the leap-ahead LFSR that feeds a stochastic rounder, ``rbits`` fresh bits per draw."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.lfsr import TAPS, leap_columns, state_sequence
from fp8mac.model.rounding import MAX_RBITS

__all__ = ["Lfsr"]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Lfsr(wiring.Component):
    """A maximal-length Fibonacci LFSR that advances ``rbits`` steps per enabled cycle.

    Implements the model's definition (:mod:`fp8mac.model.lfsr`): draw ``i`` of a stream seeded
    with ``seed`` is the low ``rbits`` bits of the state after ``(i + 1) * rbits`` steps. The state
    register resets to the state one draw after ``seed``, ``value`` shows its low ``rbits`` bits,
    and each clock edge with ``en`` = 1 applies the ``rbits``-step map at once, a leap-ahead XOR
    network whose next-state bit ``i`` is the XOR of the current bits ``j`` with bit ``i`` set in
    ``leap_columns(width, rbits)[j]`` (taps from the model's ``TAPS``). So the ``k``-th cycle with
    ``en`` = 1 (``k = 0, 1, ...`` after reset) presents model draw ``k``, and ``en`` = 0 holds.

    ``value`` is the state register's output (latency 0 from the register; a draw is consumed by
    the edge that has ``en`` = 1). Clock domain ``sync``; its reset restarts the stream.

    Parameters
    ----------
    width : int
        State width, a width of the model's tap table ``TAPS`` (3..64).
    rbits : int
        Bits per draw, 1..min(width, 32).
    seed : int
        The stream's seed, 1 .. 2**width - 1 (as :func:`~fp8mac.model.lfsr.stream_seed` gives).

    Members
    -------
    en : In(1)
        Consume the current draw and advance to the next one at the clock edge.
    value : Out(rbits)
        The current draw.

    Raises
    ------
    ValueError
        If ``width`` has no tap-table entry, ``rbits`` is out of range, or ``seed`` is 0 or wider
        than ``width``; the message names the parameter.
    """

    def __init__(self, width: int, rbits: int, seed: int):
        try:
            self._check(width, rbits, seed)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        self._width = width
        self._rbits = rbits
        self._seed = seed
        super().__init__({"en": In(1), "value": Out(rbits)})

    @staticmethod
    def _check(width, rbits, seed):
        if not _is_int(width) or width not in TAPS:
            raise ValueError(f"width must be an integer in {min(TAPS)}..{max(TAPS)} (the widths of "
                             f"the tap table fp8mac.model.lfsr.TAPS), not {width!r}")
        top = min(width, MAX_RBITS)
        if not _is_int(rbits) or not 1 <= rbits <= top:
            raise ValueError(f"rbits must be an integer in 1..{top} (at most the LFSR width "
                             f"{width} and {MAX_RBITS}), not {rbits!r}")
        if not _is_int(seed) or not 1 <= seed < (1 << width):
            raise ValueError(f"seed must be an integer in 1..{(1 << width) - 1} for width "
                             f"{width} (0 is the LFSR's dead state), not {seed!r}")

    @property
    def width(self) -> int:
        return self._width

    @property
    def rbits(self) -> int:
        return self._rbits

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def reset_state(self) -> int:
        """The state register's reset value: the state one draw (``rbits`` steps) after ``seed``."""
        return int(state_sequence(self._seed, self._width, self._rbits, 1)[0])

    def elaborate(self, platform):
        m = Module()
        state = Signal(self._width, init=self.reset_state)
        columns = leap_columns(self._width, self._rbits)
        next_bits = []
        for i in range(self._width):
            sources = [state[j] for j in range(self._width) if (columns[j] >> i) & 1]
            bit = sources[0]
            for source in sources[1:]:
                bit = bit ^ source
            next_bits.append(bit)
        with m.If(self.en):
            m.d.sync += state.eq(Cat(*next_bits))
        m.d.comb += self.value.eq(state[:self._rbits])
        return m
