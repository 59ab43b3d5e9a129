"""``Lfsr``: the leap-ahead LFSR that feeds a stochastic rounder, ``rbits`` fresh bits per draw."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.lfsr import TAPS, leap_columns, state_sequence, stream_seed
from fp8mac.model.rounding import MAX_RBITS

__all__ = ["Lfsr", "start_state", "stream_start", "stream_lfsr"]


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

    **Seed port** (``seed=None``): the seed is not built in but comes from the ``start`` input, so
    one Verilog module serves LFSRs of every seed (an array instantiates one PE module many
    times, each instance with its own constant ``start``). ``start`` must carry the state one draw
    after the seed, :func:`start_state` ``(seed, width, rbits)`` (what the built-in form resets
    to), and stay constant. A one-bit register ``loaded`` resets to 0 (as at power-up); while it
    is 0 the LFSR reads its state from ``start`` instead of its state register, and the first
    enabled edge sets it. Draw for draw the same sequence as the built-in form, after reset and
    from power-up (initial values), at the cost of the flag and a ``width``-bit 2:1 multiplexer.

    Parameters
    ----------
    width : int
        State width, a width of the model's tap table ``TAPS`` (3..64).
    rbits : int
        Bits per draw, 1..min(width, 32).
    seed : int or None
        The stream's seed, 1 .. 2**width - 1 (as :func:`~fp8mac.model.lfsr.stream_seed` gives);
        ``None``: it comes in on the ``start`` port.

    Members
    -------
    en : In(1)
        Consume the current draw and advance to the next one at the clock edge.
    value : Out(rbits)
        The current draw.
    start : In(width)
        Only with ``seed=None``: :func:`start_state` of the seed, constant.

    Raises
    ------
    ValueError
        If ``width`` has no tap-table entry, ``rbits`` is out of range, or ``seed`` is 0 or wider
        than ``width``; the message names the parameter.
    """

    def __init__(self, width: int, rbits: int, seed: int | None):
        try:
            self._check(width, rbits, seed)
        except ValueError:
            self._MustUse__silence = True  # not built, so not "created but never used"
            raise
        self._width = width
        self._rbits = rbits
        self._seed = seed
        members = {"en": In(1), "value": Out(rbits)}
        if seed is None:
            members["start"] = In(width)
        super().__init__(members)

    @staticmethod
    def _check(width, rbits, seed):
        if not _is_int(width) or width not in TAPS:
            raise ValueError(f"width must be an integer in {min(TAPS)}..{max(TAPS)} (the widths of "
                             f"the tap table fp8mac.model.lfsr.TAPS), not {width!r}")
        top = min(width, MAX_RBITS)
        if not _is_int(rbits) or not 1 <= rbits <= top:
            raise ValueError(f"rbits must be an integer in 1..{top} (at most the LFSR width "
                             f"{width} and {MAX_RBITS}), not {rbits!r}")
        if seed is not None and (not _is_int(seed) or not 1 <= seed < (1 << width)):
            raise ValueError(f"seed must be an integer in 1..{(1 << width) - 1} for width "
                             f"{width} (0 is the LFSR's dead state), or None (a start port), "
                             f"not {seed!r}")

    @property
    def width(self) -> int:
        return self._width

    @property
    def rbits(self) -> int:
        return self._rbits

    @property
    def seed(self) -> int | None:
        """The built-in seed, or None (the ``start`` port)."""
        return self._seed

    @property
    def reset_state(self) -> int:
        """The state register's reset value: the state one draw (``rbits`` steps) after ``seed``
        (0 with a seed port: the state is then read from ``start`` until the first draw)."""
        return 0 if self._seed is None else start_state(self._seed, self._width, self._rbits)

    def elaborate(self, platform):
        m = Module()
        state = Signal(self._width, init=self.reset_state)
        current = state
        if self._seed is None:
            loaded = Signal()  # the state register holds the stream (else `start` does)
            current = Signal(self._width)
            m.d.comb += current.eq(Mux(loaded, state, self.start))
            with m.If(self.en):
                m.d.sync += loaded.eq(1)
        columns = leap_columns(self._width, self._rbits)
        next_bits = []
        for i in range(self._width):
            sources = [current[j] for j in range(self._width) if (columns[j] >> i) & 1]
            bit = sources[0]
            for source in sources[1:]:
                bit = bit ^ source
            next_bits.append(bit)
        with m.If(self.en):
            m.d.sync += state.eq(Cat(*next_bits))
        m.d.comb += self.value.eq(current[:self._rbits])
        return m


def start_state(seed: int, width: int, rbits: int) -> int:
    """The state one draw (``rbits`` steps) after ``seed``: the built-in :class:`Lfsr`'s reset
    state, and what a seed-port Lfsr's ``start`` must carry for the stream seeded with ``seed``."""
    return int(state_sequence(seed, width, rbits, 1)[0])


def stream_start(config, row: int, col: int, stream: int) -> int:
    """The :func:`start_state` of ``config``'s random stream ``stream`` at ``(row, col)``
    (:func:`fp8mac.model.lfsr.stream_seed`): the constant a seed-port LFSR's ``start`` carries."""
    seed = stream_seed(config.seed, row, col, stream, config.lfsr_width)
    return start_state(seed, config.lfsr_width, config.rbits)


def stream_lfsr(m, name: str, config, row: int, col: int, stream: int, start=None) -> Lfsr:
    """Submodule ``name`` of ``m``: the :class:`Lfsr` of ``config``'s random stream ``stream`` at
    ``(row, col)``, its seed built in, or, given ``start`` (a seed-port design's constant input,
    :func:`stream_start`), loaded from it. Either form draws the same numbers."""
    if start is None:
        lfsr = Lfsr(config.lfsr_width, config.rbits,
                    stream_seed(config.seed, row, col, stream, config.lfsr_width))
    else:
        lfsr = Lfsr(config.lfsr_width, config.rbits, None)
        m.d.comb += lfsr.start.eq(start)
    m.submodules[name] = lfsr
    return lfsr
