"""Maximal-length LFSRs, their leap-ahead draws and the per-stream seeds (ARCHITECTURE.md §4).

Definition (the hardware :class:`fp8mac.hw.lfsr.Lfsr` implements exactly this):

* A Fibonacci LFSR of width ``w`` holds a non-zero state ``s`` (bits ``w-1 .. 0``). One step
  shifts left and feeds the parity of the tapped bits into bit 0::

      s <- ((s << 1) & (2**w - 1)) | parity(s & tap_mask(w))

  ``TAPS[w]`` lists the taps 1-indexed (tap ``t`` is state bit ``t - 1``), as in Xilinx XAPP052
  ("Efficient Shift Registers, LFSR Counters, and Long Pseudo-Random Sequence Generators"); the
  tests prove every entry maximal (period ``2**w - 1``).
* A *draw* of ``r`` bits advances ``r`` steps and returns the low ``r`` bits of the new state: the
  ``r`` bits just generated, the newest in bit 0. In hardware the ``r`` steps are one GF(2)-linear
  map (:func:`leap_columns`), a leap-ahead XOR network, applied once per enabled cycle.
* :func:`stream_seed` derives each stream's seed from the base seed and ``(row, col, stream)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["TAPS", "Lfsr", "tap_mask", "lfsr_step", "leap_columns", "stream_seed",
           "draw_sequences", "state_sequence", "STREAM_INNER", "STREAM_OUTER", "STREAM_ROW_OUTER",
           "check_width"]

TAPS: dict[int, tuple[int, ...]] = {
    3: (3, 2), 4: (4, 3), 5: (5, 3), 6: (6, 5), 7: (7, 6), 8: (8, 6, 5, 4), 9: (9, 5),
    10: (10, 7), 11: (11, 9), 12: (12, 6, 4, 1), 13: (13, 4, 3, 1), 14: (14, 5, 3, 1),
    15: (15, 14), 16: (16, 15, 13, 4), 17: (17, 14), 18: (18, 11), 19: (19, 6, 2, 1),
    20: (20, 17), 21: (21, 19), 22: (22, 21), 23: (23, 18), 24: (24, 23, 22, 17),
    25: (25, 22), 26: (26, 6, 2, 1), 27: (27, 5, 2, 1), 28: (28, 25), 29: (29, 27),
    30: (30, 6, 4, 1), 31: (31, 28), 32: (32, 22, 2, 1), 33: (33, 20), 34: (34, 27, 2, 1),
    35: (35, 33), 36: (36, 25), 37: (37, 5, 4, 3, 2, 1), 38: (38, 6, 5, 1), 39: (39, 35),
    40: (40, 38, 21, 19), 41: (41, 38), 42: (42, 41, 20, 19), 43: (43, 42, 38, 37),
    44: (44, 43, 18, 17), 45: (45, 44, 42, 41), 46: (46, 45, 26, 25), 47: (47, 42),
    48: (48, 47, 21, 20), 49: (49, 40), 50: (50, 49, 24, 23), 51: (51, 50, 36, 35),
    52: (52, 49), 53: (53, 52, 38, 37), 54: (54, 53, 18, 17), 55: (55, 31),
    56: (56, 55, 35, 34), 57: (57, 50), 58: (58, 39), 59: (59, 58, 38, 37), 60: (60, 59),
    61: (61, 60, 46, 45), 62: (62, 61, 6, 5), 63: (63, 62), 64: (64, 63, 61, 60),
}
"""Maximal-length taps per width (XAPP052 table); the widths fp8mac supports."""

STREAM_INNER = 0
STREAM_OUTER = 1
STREAM_ROW_OUTER = 2
"""Stream of a row's shared outer adder (``MacConfig.outer_placement == "row"``): seeded with
``stream_seed(seed, row, 0, STREAM_ROW_OUTER)``; it serves the row's PEs in turn."""


def check_width(width, name: str = "lfsr_width") -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or int(width) not in TAPS:
        raise ValueError(f"{name} must be an integer in {min(TAPS)}..{max(TAPS)} "
                         f"(the widths of the tap table), not {width!r}")
    return int(width)


def _check_count(n, name="n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {n!r}")
    return int(n)


def _check_rbits(rbits, width) -> int:
    hi = min(width, 32)
    if isinstance(rbits, bool) or not isinstance(rbits, (int, np.integer)) or not 1 <= rbits <= hi:
        raise ValueError(f"rbits must be an integer in 1..{hi} (at most the LFSR width and 32), not {rbits!r}")
    return int(rbits)


def tap_mask(width: int) -> int:
    """The state bits whose parity is fed back."""
    mask = 0
    for t in TAPS[check_width(width)]:
        mask |= 1 << (t - 1)
    return mask


def lfsr_step(state: int, width: int, mask: int | None = None) -> int:
    """One step of the definition above, on a Python int."""
    mask = tap_mask(width) if mask is None else mask
    fb = (state & mask).bit_count() & 1
    return ((state << 1) & ((1 << width) - 1)) | fb


def leap_columns(width: int, steps: int) -> list[int]:
    """The ``steps``-step map as columns: entry ``j`` is the state reached from state ``1 << j``.

    The map is linear over GF(2), so a state ``s`` advances to the XOR of the columns of its set
    bits; hardware builds each next-state bit as an XOR of the current bits that this names.
    """
    mask = tap_mask(width)
    cols = []
    for j in range(width):
        v = 1 << j
        for _ in range(steps):
            v = lfsr_step(v, width, mask)
        cols.append(v)
    return cols


@lru_cache(maxsize=512)
def _byte_tables(cols: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Look-up tables of a GF(2) map given as columns: table ``i`` maps byte ``i`` of a state to
    its image (cached: a leap map is applied again for every GEMM of the same configuration)."""
    tables = []
    for b in range(0, len(cols), 8):
        n = min(8, len(cols) - b)
        table = [0] * (1 << n)
        for v in range(1, 1 << n):
            low = (v & -v).bit_length() - 1
            table[v] = table[v & (v - 1)] ^ cols[b + low]
        array = np.array(table, dtype=np.uint64)
        array.flags.writeable = False
        tables.append(array)
    return tuple(tables)


def _apply_columns(cols, states: np.ndarray) -> np.ndarray:
    """Apply a GF(2) map given as columns to an array of uint64 states (byte lookup tables)."""
    out = np.zeros(states.shape, dtype=np.uint64)
    for i, table in enumerate(_byte_tables(tuple(cols))):
        out ^= table[(states >> np.uint64(8 * i)) & np.uint64(len(table) - 1)]
    return out


def _compose(cols_a, cols_b) -> tuple[int, ...]:
    """Columns of the map ``A after B``."""
    return tuple(int(x) for x in _apply_columns(cols_a, np.array(cols_b, dtype=np.uint64)))


@lru_cache(maxsize=1024)
def _leap_power(width: int, steps: int, k: int) -> tuple[int, ...]:
    """Columns of the ``steps * 2**k``-step map (cached, built by squaring)."""
    if k == 0:
        return tuple(leap_columns(width, steps))
    half = _leap_power(width, steps, k - 1)
    return _compose(half, half)


def _mix64(x: int) -> int:
    """SplitMix64's finalizer (Steele, Lea, Flood 2014): a bijective 64-bit mixer."""
    m = (1 << 64) - 1
    x &= m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def stream_seed(seed: int, row: int, col: int, stream: int, width: int) -> int:
    """The seed of one random stream: ``mix64(mix64(seed) + (row << 40 | col << 20 | stream))``
    truncated to ``width`` bits, with 0 (the LFSR's dead state) replaced by 1."""
    check_width(width)
    for name, value, hi in (("seed", seed, (1 << 64) - 1), ("row", row, (1 << 20) - 1),
                            ("col", col, (1 << 20) - 1), ("stream", stream, (1 << 20) - 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= hi:
            raise ValueError(f"{name} must be an integer in 0..{hi}, not {value!r}")
    v = _mix64(_mix64(seed) + ((row << 40) | (col << 20) | stream)) & ((1 << width) - 1)
    return v or 1


def state_sequence(seeds, width: int, steps: int, n: int) -> np.ndarray:
    """States after ``steps``, ``2 * steps``, ... ``n * steps`` steps from each seed, as uint64 of
    shape ``(n,) + seeds.shape``.

    Vectorized by doubling: with states ``S_1 .. S_k`` known, ``S_{k+1} .. S_{2k}`` are the leap
    map ``A**k`` applied to them, so the cost is about ``n * width / 8`` table look-ups per seed.
    """
    width = check_width(width)
    n = _check_count(n)
    raw = np.asarray(seeds)
    if raw.dtype.kind not in "ui" or (raw.size and (raw.min() < 1 or raw.max() >= (1 << width))):
        raise ValueError(f"seeds must be integers in 1..{(1 << width) - 1} for width {width} "
                         "(0 is the LFSR's dead state)")
    seeds = raw.astype(np.uint64)
    out = np.empty((n,) + seeds.shape, dtype=np.uint64)
    if n == 0:
        return out
    out[0] = _apply_columns(_leap_power(width, steps, 0), seeds)
    done, doublings = 1, 0  # out[:done] known; the leap map A**done is _leap_power(.., doublings)
    while done < n:
        k = min(done, n - done)
        out[done:done + k] = _apply_columns(_leap_power(width, steps, doublings), out[:k])
        done += k
        doublings += 1
    return out


def draw_sequences(seeds, width: int, rbits: int, n: int) -> np.ndarray:
    """``n`` draws of ``rbits`` bits from an LFSR started at each seed: uint32 of shape
    ``(n,) + seeds.shape``; draw ``i`` is the low ``rbits`` of the state after ``(i+1) * rbits``
    steps."""
    width = check_width(width)
    rbits = _check_rbits(rbits, width)
    states = state_sequence(seeds, width, rbits, n)
    return (states & np.uint64((1 << rbits) - 1)).astype(np.uint32)


class Lfsr:
    """One maximal-length LFSR as defined in the module docstring.

    Parameters
    ----------
    width : int
        State width; one of ``TAPS``' keys.
    seed : int
        Initial state, ``1 .. 2**width - 1``.
    """

    def __init__(self, width: int = 32, seed: int = 1):
        self.width = check_width(width, "width")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 < seed < (1 << self.width):
            raise ValueError(f"seed must be an integer in 1..{(1 << self.width) - 1} for width {self.width}, not {seed!r}")
        self.state = int(seed)
        self._mask = tap_mask(self.width)

    def step(self) -> int:
        """Advance one step; returns the new bit."""
        self.state = lfsr_step(self.state, self.width, self._mask)
        return self.state & 1

    def draw(self, rbits: int) -> int:
        """Advance ``rbits`` steps and return the ``rbits`` new bits (newest in bit 0)."""
        rbits = _check_rbits(rbits, self.width)
        for _ in range(rbits):
            self.step()
        return self.state & ((1 << rbits) - 1)

    def draws(self, n: int, rbits: int) -> np.ndarray:
        """The next ``n`` draws as a uint32 array (vectorized), leaving the LFSR after them."""
        rbits = _check_rbits(rbits, self.width)
        n = _check_count(n)
        states = state_sequence(self.state, self.width, rbits, n)
        if n:
            self.state = int(states[-1])
        return (states & np.uint64((1 << rbits) - 1)).astype(np.uint32)
