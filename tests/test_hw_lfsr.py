"""Lfsr against the golden model's draw sequence, with the advance enable toggling at random."""

import os
import secrets

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from fp8mac.hw.lfsr import Lfsr, start_state
from fp8mac.model.lfsr import Lfsr as ModelLfsr
from fp8mac.model.lfsr import draw_sequences, stream_seed

SEED = int(os.environ.get("FP8MAC_SEED", secrets.randbits(32)))


def run_lfsr(width, rbits, seed, cycles, rng, *, port=False, reset_at=()):
    """Simulate ``cycles`` cycles with a random ``en``; returns (values seen, en per cycle).

    ``port``: the seed-port form, its ``start`` driven with ``start_state(seed)``. ``reset_at``:
    cycles in which ``rst`` is high (``en`` is then forced low).
    """
    dut = Lfsr(width, rbits, None if port else seed)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut
    en = rng.integers(0, 2, cycles)
    en[list(reset_at)] = 0
    seen = []

    async def testbench(ctx):
        if port:
            ctx.set(dut.start, start_state(seed, width, rbits))
        for c, e in enumerate(en):
            ctx.set(sync.rst, c in reset_at)
            ctx.set(dut.en, int(e))
            seen.append(ctx.get(dut.value))
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return np.array(seen, dtype=np.uint64), en


@pytest.mark.parametrize("port", [False, True], ids=["built-in-seed", "seed-port"])
@pytest.mark.parametrize("width,rbits", [(32, 8), (3, 3), (7, 1), (16, 5), (31, 31), (64, 32)])
def test_sequence_with_enable(width, rbits, port):
    """Cycle c shows model draw (number of enabled cycles before c): en = 0 holds the draw. The
    seed-port form, ``start`` = start_state(seed), gives the same draws from power-up."""
    print(f"FP8MAC_SEED={SEED}")
    rng = np.random.default_rng([SEED, width, rbits])
    seed = stream_seed(int(rng.integers(0, 1 << 62)), 0, 0, 0, width)
    cycles = 300
    seen, en = run_lfsr(width, rbits, seed, cycles, rng, port=port)
    draws = draw_sequences(seed, width, rbits, cycles + 1).astype(np.uint64)
    index = np.concatenate([[0], np.cumsum(en)[:-1]])
    bad = np.flatnonzero(seen != draws[index])
    assert bad.size == 0, (f"FP8MAC_SEED={SEED} width={width} rbits={rbits} seed={seed:#x}: cycle "
                           f"{bad[0]} shows {int(seen[bad[0]]):#x}, model draw {index[bad[0]]} is "
                           f"{int(draws[index[bad[0]]]):#x}")


def test_matches_model_object():
    """The first draws from seed 1 equal the model Lfsr's own draw() (independent of
    draw_sequences), so the two model paths and the hardware agree."""
    model = ModelLfsr(32, 1)
    want = [model.draw(8) for _ in range(20)]
    seen, en = run_lfsr(32, 8, 1, 20, np.random.default_rng(0))
    index = np.concatenate([[0], np.cumsum(en)[:-1]])
    assert [int(s) for s in seen] == [want[i] for i in index]


@pytest.mark.parametrize("port", [False, True], ids=["built-in-seed", "seed-port"])
def test_reset_restarts_the_stream(port):
    """A reset (after some draws, and twice in a row) restarts at draw 0, in both forms."""
    width, rbits, cycles, resets = 32, 8, 120, (40, 41, 90)
    seed = stream_seed(SEED, 3, 5, 1, width)
    seen, en = run_lfsr(width, rbits, seed, cycles, np.random.default_rng(SEED), port=port,
                        reset_at=resets)
    draws = draw_sequences(seed, width, rbits, cycles + 1)
    index, k = [], 0
    for c in range(cycles):
        index.append(k)
        k = 0 if c in resets else k + int(en[c])
    assert [int(s) for s in seen] == [int(draws[i]) for i in index], f"FP8MAC_SEED={SEED}"


def test_seed_port_reads_start_until_the_first_draw():
    """Only ``start`` decides the seed-port stream (a different start, a different stream), and
    the form has the ``start`` port while the built-in one has none."""
    width, rbits = 16, 4
    a, _ = run_lfsr(width, rbits, 1, 30, np.random.default_rng(1), port=True)
    b, _ = run_lfsr(width, rbits, 2, 30, np.random.default_rng(1), port=True)
    assert a[0] == start_state(1, width, rbits) % (1 << rbits) and (a != b).any()
    port, built_in = Lfsr(width, rbits, None), Lfsr(width, rbits, 1)
    for unused in (port, built_in):
        unused._MustUse__silence = True  # never elaborated: no "created but never used" warning
    assert "start" in port.signature.members and "start" not in built_in.signature.members
    assert start_state(1, width, rbits) == built_in.reset_state


@pytest.mark.parametrize("kwargs,name", [
    (dict(width=2, rbits=1, seed=1), "width"),
    (dict(width=65, rbits=8, seed=1), "width"),
    (dict(width=True, rbits=1, seed=1), "width"),
    (dict(width=8, rbits=9, seed=1), "rbits"),
    (dict(width=64, rbits=33, seed=1), "rbits"),
    (dict(width=32, rbits=0, seed=1), "rbits"),
    (dict(width=32, rbits=8, seed=0), "seed"),
    (dict(width=8, rbits=8, seed=256), "seed"),
])
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} "):
        Lfsr(**kwargs)
