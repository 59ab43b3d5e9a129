"""In-order scoreboard: every result code the DUT streams out against the golden model's code.

The expected codes are computed up front (vectorized, by :mod:`fp8mac.model`) and packed into
the beats the DUT must send; each received beat is one integer comparison. On the first
mismatch :class:`Scoreboard` raises :class:`ScoreboardMismatch` naming the beat, the tile, the
element (row, col), both codes in hex and decoded in the result format, and the seed that
reproduces the run. It counts beats, so a lost beat (:meth:`Scoreboard.check_complete`), an
extra one or a duplicate (a mismatch, or a beat beyond the expected number) is caught.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fp8mac.model.formats import FloatFormat, format_by_name

__all__ = ["ScoreboardMismatch", "Scoreboard", "describe_code"]


class ScoreboardMismatch(AssertionError):
    """A received beat differs from the expected one, or the beat count is wrong."""


def describe_code(fmt: FloatFormat | str, code: int) -> str:
    """``0x3e00 (+1 = 0|011111|000000000)``: hex, value and sign|exponent|mantissa fields."""
    fmt = format_by_name(fmt, "fmt")
    code = int(code)
    value = float(fmt.decode(np.array([code], dtype=np.int64))[0])
    sign = code >> (fmt.width - 1)
    exp = (code >> fmt.man_bits) & fmt.exp_field_max
    man = code & ((1 << fmt.man_bits) - 1)
    digits = (fmt.width + 3) // 4
    return (f"0x{code:0{digits}x} ({value:+.10g} = {sign}|{exp:0{fmt.exp_bits}b}|"
            f"{man:0{fmt.man_bits}b})")


class Scoreboard:
    """Checks a result stream beat by beat, in order.

    Element ``k`` of ``expected`` (C order) travels in beat ``k // lanes``, lane ``k % lanes``,
    lane 0 in the least significant bits of ``tdata``.

    Parameters
    ----------
    expected : array_like of int
        Expected codes in stream order. A 3-D array is read as ``(tile, row, col)``.
    fmt : FloatFormat or str or None
        The result format (width of a lane, and how codes are decoded in messages); None for
        plain bit vectors of ``width`` bits.
    lanes : int
        Codes per beat.
    tile_shape : (int, int), optional
        ``(rows, cols)`` of a tile, to name an element's tile and (row, col); default from a 3-D
        ``expected``, else positions are reported as element indices.
    tlast : array_like of int, optional
        Expected ``tlast`` of each beat; default: not checked.
    seed : int, optional
        The run's seed, quoted in every failure.
    name : str
        Names the stream in messages.
    locate : callable, optional
        ``locate(k) -> str`` describing element ``k``; overrides ``tile_shape``.
    width : int, optional
        Lane width when ``fmt`` is None.

    Attributes
    ----------
    received : int
        Beats checked so far.
    """

    def __init__(self, expected, fmt, *, lanes: int = 1, tile_shape=None, tlast=None,
                 seed: int | None = None, name: str = "result",
                 locate: Callable[[int], str] | None = None, width: int | None = None):
        self.fmt = None if fmt is None else format_by_name(fmt, "fmt")
        if (self.fmt is None) == (width is None):
            raise ValueError("give either fmt or width")
        self.width = self.fmt.width if self.fmt is not None else int(width)
        codes = np.asarray(expected)
        if tile_shape is None and codes.ndim == 3:
            tile_shape = codes.shape[1:]
        codes = codes.reshape(-1).astype(np.int64)
        if lanes < 1 or codes.size % lanes:
            raise ValueError(f"lanes must divide the {codes.size} expected codes, not {lanes!r}")
        self.lanes = lanes
        self.name = name
        self.seed = seed
        self._codes = codes
        self._tile_shape = None if tile_shape is None else tuple(int(n) for n in tile_shape)
        self._locate = locate
        width = self.width
        per_beat = codes.reshape(-1, lanes).astype(object)
        packed = per_beat[:, 0].copy()
        for lane in range(1, lanes):
            packed |= per_beat[:, lane] << (lane * width)
        self._beats: list[int] = packed.tolist()
        if tlast is None:
            self._tlast = None
        else:
            self._tlast = [int(bool(x)) for x in np.asarray(tlast).reshape(-1)]
            if len(self._tlast) != len(self._beats):
                raise ValueError(f"tlast has {len(self._tlast)} flags for {len(self._beats)} beats")
        self.received = 0

    @property
    def expected_beats(self) -> int:
        return len(self._beats)

    @property
    def done(self) -> bool:
        """All expected beats have arrived."""
        return self.received == len(self._beats)

    def add_beat(self, tdata: int, tlast: int | None = None):
        """Check the next beat; raise :class:`ScoreboardMismatch` if it is wrong or extra."""
        index = self.received
        self.received += 1
        if index >= len(self._beats):
            raise ScoreboardMismatch(f"{self.name}: beat {index} is beyond the "
                                     f"{len(self._beats)} expected (a duplicated beat?)"
                                     f"{self._rerun()}")
        if tdata != self._beats[index]:
            raise ScoreboardMismatch(self._mismatch(index, int(tdata)))
        if self._tlast is not None and tlast is not None and tlast != self._tlast[index]:
            raise ScoreboardMismatch(f"{self.name}: beat {index} of {len(self._beats)} has "
                                     f"tlast={tlast}, expected {self._tlast[index]}"
                                     f"{self._rerun()}")

    __call__ = add_beat  # so that a scoreboard can be a sink's callback

    def check_complete(self):
        """Raise :class:`ScoreboardMismatch` unless exactly the expected number of beats arrived."""
        if self.received != len(self._beats):
            raise ScoreboardMismatch(f"{self.name}: received {self.received} beats, expected "
                                     f"{len(self._beats)} (a lost beat?){self._rerun()}")

    def where(self, k: int) -> str:
        """Where element ``k`` of the stream sits, for messages."""
        if self._locate is not None:
            return self._locate(k)
        if self._tile_shape is None:
            return f"element {k}"
        rows, cols = self._tile_shape
        tile, rest = divmod(k, rows * cols)
        row, col = divmod(rest, cols)
        return f"tile {tile}, element (row {row}, col {col})"

    def _describe(self, code: int) -> str:
        if self.fmt is None:
            return f"0x{code:0{(self.width + 3) // 4}x}"
        return describe_code(self.fmt, code)

    def _rerun(self) -> str:
        return "" if self.seed is None else f"; rerun with FP8MAC_SEED={self.seed}"

    def _mismatch(self, index: int, tdata: int) -> str:
        width, mask = self.width, (1 << self.width) - 1
        kind = f"format {self.fmt.label}" if self.fmt is not None else f"{width}-bit lanes"
        lines = [f"{self.name}: beat {index} of {len(self._beats)} differs ({kind})"
                 f"{self._rerun()}"]
        expected = self._beats[index]
        for lane in range(self.lanes):
            got, want = (tdata >> (lane * width)) & mask, (expected >> (lane * width)) & mask
            if got != want:
                k = index * self.lanes + lane
                lane_text = f", lane {lane}" if self.lanes > 1 else ""
                lines.append(f"  {self.where(k)}{lane_text}: got {self._describe(got)}, "
                             f"expected {self._describe(want)}")
        if tdata >> (self.lanes * width):
            lines.append(f"  bits above the {self.lanes} lanes are set: tdata=0x{tdata:x}")
        return "\n".join(lines)
