"""Pause generators: the idle and backpressure patterns of stream drivers and sinks.

A pause generator is an endless iterator of booleans, one per clock cycle: ``True`` means "do
not offer a beat" for a driver (``tvalid`` low) and "not ready" for a sink (``tready`` low).
Any driver or sink takes any generator (the shape of cocotbext-axi's ``set_pause_generator``),
so every test can run with and without stalls. The random ones draw from a NumPy generator
seeded from the run's seed and a per-stream name (:func:`stream_rng`), in blocks, so a cycle
costs one ``next()``.

- ``none``: never pause (back-to-back beats, sink always ready);
- ``random``: pause each cycle independently with probability ``p``;
- ``stalls``: long stalls, runs of ``length`` (default 10 to 80) paused cycles, one starting with
  probability ``p`` after each free cycle;
- ``alternate``: pause every other cycle (the worst case for a one-register pipeline).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator

import numpy as np

__all__ = ["PAUSES", "stream_rng", "no_pause", "random_pause", "stall_pause", "alternate_pause",
           "pause_generator"]

_BLOCK = 4096


def stream_rng(seed: int, stream: str) -> np.random.Generator:
    """A NumPy generator for one stream: the same (seed, stream) always gives the same draws,
    and streams never share draws."""
    salt = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:8], "little")
    return np.random.default_rng([int(seed), salt])


def no_pause() -> Iterator[bool]:
    """Never pause: back-to-back beats, sink always ready."""
    return itertools.repeat(False)


def random_pause(rng: np.random.Generator, p: float = 0.3) -> Iterator[bool]:
    """Pause each cycle independently with probability ``p``."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], not {p!r}")
    while True:
        yield from (rng.random(_BLOCK) < p).tolist()


def stall_pause(rng: np.random.Generator, p: float = 0.02, length=(10, 80)) -> Iterator[bool]:
    """Long stalls: after each free cycle a stall starts with probability ``p``; a stall lasts
    a uniform number of cycles in ``length`` (inclusive)."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], not {p!r}")
    lo, hi = length
    if not 1 <= lo <= hi:
        raise ValueError(f"length must be (lo, hi) with 1 <= lo <= hi, not {length!r}")
    while True:
        free = (rng.geometric(p, _BLOCK // 16)).tolist()
        stall = rng.integers(lo, hi + 1, _BLOCK // 16).tolist()
        for f, s in zip(free, stall):
            yield from itertools.repeat(False, f)
            yield from itertools.repeat(True, s)


def alternate_pause() -> Iterator[bool]:
    """Pause every other cycle."""
    return itertools.cycle((False, True))


PAUSES = ("none", "random", "stalls", "alternate")
"""The pattern names :func:`pause_generator` accepts."""


def pause_generator(kind: str, seed: int, stream: str, **options) -> Iterator[bool]:
    """The pause generator named ``kind`` (one of :data:`PAUSES`) for stream ``stream``.

    Parameters
    ----------
    kind : str
        ``"none"``, ``"random"``, ``"stalls"`` or ``"alternate"``.
    seed : int
        The run's seed (printed as ``FP8MAC_SEED``).
    stream : str
        The stream's name, e.g. ``"s_axis_a"``: decorrelates streams that share a seed.
    **options
        ``p`` for ``"random"``; ``p`` and ``length`` for ``"stalls"``.
    """
    if kind == "none":
        return no_pause()
    if kind == "random":
        return random_pause(stream_rng(seed, stream), **options)
    if kind == "stalls":
        return stall_pause(stream_rng(seed, stream), **options)
    if kind == "alternate":
        return alternate_pause()
    raise ValueError(f"pause kind must be one of {', '.join(PAUSES)}, not {kind!r}")
