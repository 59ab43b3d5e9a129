"""The arithmetic blocks' Verilog on Icarus and Verilator, every result code against the model.

``sim/tb_arith.py`` streams random cases through the harnesses of ``sim/arith_harness.py``
(:class:`~fp8mac.sim.arith_harness.MacStep`: ``FloatMultiplier`` -> ``MacUnit``; ``FloatAdder``;
``Lfsr``) and compares each output with :func:`~fp8mac.model.arith.fp_fma`,
:func:`~fp8mac.model.arith.fp_add` or the model's LFSR draws. Verilator runs 10**5 MAC steps per
rounding mode; Icarus, slower, a smaller set. A mismatched pair (hardware rounding toward zero,
model rounding to nearest) proves that a wrong result fails the test and names the case.

The dot-width step (ARCHITECTURE.md §3b, ``round(acc + a_0*b_0 + ... + a_(d-1)*b_(d-1))``,
fp8_e5m2 products into fp16_ibm) runs in both structures a processing element may use,
``DotMacUnit`` (``frame``) and ``ProductSum`` -> ``MacUnit`` (``sum+mac``), each rounding mode a
lane of one harness, against :func:`~fp8mac.model.arith.fp_dot`. The cases are
``tests/test_hw_dot.py``'s families (random codes, exact cancellation leaving small terms,
accumulator cancellation, subnormal-range products, specials and all -0 sums), repeated with
fresh draws, stochastic random bits at each case's rounding boundary for half of them
(``test_hw_adder.boundary_rand``). Quick tier: dot 2 (both structures), 4 and 8 (``frame``),
nearest and stochastic (8 bits), about 3,000 cases per mode on Verilator and 500 on Icarus.
``FP8MAC_TIER=full`` (``make regress``): both structures at dot 2, 4 and 8, rounding to zero
too, >= 10**5 cases per mode on Verilator and on Icarus, except ``sum+mac`` on Icarus: 20,000
(measured times in DOT_CASES); and the exhaustive dot-2 sweep, every (a0, a1) pair of e5m2
codes against 8 fixed (b0, b1, accumulator) sets, on Verilator. Three mutations must fail: one
wrong expected code (the last case), the model told to round to zero, and hardware whose
random bits are off by one.
``FP8MAC_SEED`` (printed) replays a run.
"""

import os

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from fp8mac.hw.dot import DotMacUnit
from fp8mac.model.arith import fp_dot
from fp8mac.model.formats import FORMATS
from fp8mac.sim.arith_harness import (StreamHarness, arith_harness, harness_name, run_arith,
                                     run_harness)
from fp8mac.sim.runner import SimulationFailed

from test_hw_adder import boundary_rand, rand_bits
from test_hw_dot import dot_cases

FULL = os.environ.get("FP8MAC_TIER", "quick").strip().lower() == "full"

MAC_CASES = {"verilator": 100_000, "icarus": 5_000}
ADDER_CASES = {"verilator": 10_000}  # FloatAdder shares MacUnit's code: Verilator only
ROUNDINGS = {"nearest": None, "stochastic": 8}  # rounding: random bits


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("sim", MAC_CASES)
def test_mac_step(sim, rounding):
    results = run_arith("mac", sim, MAC_CASES[sim], acc_format="fp16_ibm", in_format="fp8_e5m2",
                        rounding=rounding, rbits=ROUNDINGS[rounding])
    print(f"{sim} mac {rounding}: {results.metrics['cases_per_second']:.0f} cases per CPU second "
          f"(build {results.build_seconds:.1f} s, simulation {results.test_seconds:.1f} s)")


@pytest.mark.parametrize("sim", MAC_CASES)
@pytest.mark.parametrize("a_fmt, b_fmt, rounding", [("fp8_e4m3", "fp8_e5m2", "nearest"),
                                                    ("fp8_e5m2", "fp8_e4m3", "stochastic")])
def test_mac_step_every_mixed_pair(sim, a_fmt, b_fmt, rounding, seed):
    """HFP8's mixed products (issue 16): every (A, B) code pair, 65,536 MAC steps into fp16_ibm,
    on both simulators, each with an accumulator near its product (either sign, within the
    rounding's reach, so that most steps round; edge accumulators for a tenth) and, for the
    stochastic one, random bits from the seed; the model's products are checked against
    Fractions in test_model_mixed.py."""
    from fp8mac.sim.tb_arith import mixed

    fa, fb, acc_fmt = FORMATS[a_fmt], FORMATS[b_fmt], FORMATS["fp16_ibm"]
    rng = np.random.default_rng([seed, 16])
    a, b = (x.ravel() for x in np.meshgrid(np.arange(256), np.arange(256), indexing="ij"))
    with np.errstate(invalid="ignore"):  # 0 * inf
        product = fa.decode(a) * fb.decode(b)
    stimulus = {"a": a, "b": b, "acc": mixed(rng, acc_fmt, a.size, product, acc_fmt.precision + 12)}
    rbits = ROUNDINGS[rounding]
    if rbits:
        stimulus["rand"] = rng.integers(0, 1 << rbits, a.size)
    results = run_arith("mac", sim, seed=seed, stimulus=stimulus, acc_format="fp16_ibm",
                        in_format=a_fmt, b_format=b_fmt, rounding=rounding, rbits=rbits)
    print(f"{sim} mac {a_fmt} x {b_fmt} {rounding}: every pair, simulation {results.test_seconds:.1f} s")


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("sim", ADDER_CASES)
def test_adder(sim, rounding):
    run_arith("adder", sim, ADDER_CASES[sim], fmt="fp16_ibm", rounding=rounding,
              rbits=ROUNDINGS[rounding])


@pytest.mark.parametrize("sim, pause", [("verilator", "random"), ("icarus", "stalls")])
def test_lfsr_draws_under_backpressure(sim, pause):
    # The sink's pauses are the LFSR's advance enable: stalls must not change the draws.
    run_arith("lfsr", sim, 5_000, pause=pause, width=32, rbits=8, seed=0x1234ABCD)


def test_wrong_hardware_fails_and_names_the_case():
    hardware, cfg = arith_harness("mac", rounding="zero")
    with pytest.raises(SimulationFailed) as info:
        run_harness(hardware, {**cfg, "rounding": "nearest"}, "icarus", 500,
                    name="mac-mutant-zero-vs-nearest")
    message = str(info.value)
    assert "1 of 1 cocotb tests failed" in message
    assert "mac: beat " in message and " differs (format fp16_ibm)" in message
    assert "case " in message and "a=0x" in message and "acc=0x" in message, message


# ---- the dot-width step --------------------------------------------------------------------------

ACC, IN = FORMATS["fp16_ibm"], FORMATS["fp8_e5m2"]
RBITS = 8
DOT_ROUNDINGS = ["nearest", "stochastic"] + (["zero"] if FULL else [])
# (dot, structures side by side): quick, dot 2 in both structures, 4 and 8 as a PE builds them;
# full, every dot width in each structure (separate harnesses, so that they run in parallel).
DOT_HARNESSES = ([(d, (s,)) for d in (2, 4, 8) for s in ("frame", "sum+mac")] if FULL else
                 [(2, ("frame", "sum+mac")), (4, ("frame",)), (8, ("frame",))])
DOT_CASES = ({("verilator", "frame"): 100_000, ("verilator", "sum+mac"): 100_000,
              ("icarus", "frame"): 100_000, ("icarus", "sum+mac"): 20_000} if FULL else
             {("verilator", "frame"): 3_000, ("verilator", "sum+mac"): 3_000,
              ("icarus", "frame"): 500, ("icarus", "sum+mac"): 500})
"""Cases per mode (at least: whole rounds of ``dot_cases``; every mode of a harness sees every
case). Icarus is the slow one, and slower on ``sum+mac`` (ProductSum's frame, then MacUnit's
alignment). Measured in the full tier on this 2-core machine (shared, load 1 to 5), DotMacUnit
of hw/dot.py fb36fa6: Icarus ``frame`` harnesses (three rounding lanes) at 503 / 254 / 147 cases
per CPU second for dot 2 / 4 / 8, 10**5 cases in 302 / 616 / 753 s of wall time (at most 4.2
minutes per mode); ``sum+mac`` at 186 / 130 / 108, which would take 6 to 9 minutes per mode for
10**5, so 20,000 there (25,216 / 30,016 / 30,016 cases: 201 / 349 / 280 s). Verilator runs
73,000 to 89,000 cases per CPU second: 10**5 cases in 4 to 5 s, the exhaustive sweep (524,288
cases) in 9 s, plus 6 to 13 s of C++ build."""


def dot_config(d, structures):
    return {"acc_format": "fp16_ibm", "in_format": "fp8_e5m2", "dot": d, "rbits": RBITS,
            "rounding": DOT_ROUNDINGS, "structure": list(structures)}


def dot_stimulus(d, cases, rng):
    """``cases`` dot-``d`` steps: whole rounds of ``test_hw_dot.dot_cases`` (a random subset of
    ``cases`` if fewer than a round); random bits as ``test_hw_adder.rand_bits``, half of them at
    each case's stochastic rounding boundary (``boundary_rand``)."""
    rounds, total = [], 0
    while total < cases:
        rounds.append(dot_cases(ACC, IN, d, rng))
        total += len(rounds[-1][0])
    acc, a, b = (np.concatenate(part) for part in zip(*rounds))
    if len(acc) > cases and len(rounds) == 1:
        keep = np.sort(rng.choice(len(acc), cases, replace=False))
        acc, a, b = acc[keep], a[keep], b[keep]
    return with_rand(acc, a, b, rng)


def with_rand(acc, a, b, rng):
    """The stimulus dict: acc, a, b and random bits, half of them at the rounding boundary."""
    n = len(acc)
    edge = boundary_rand(lambda r: fp_dot(ACC, IN, acc, a, b, "stochastic", r, RBITS), n, RBITS,
                         rng)
    rand = np.where(rng.integers(0, 2, n) == 1, edge, rand_bits(rng, n, RBITS))
    return {"acc": acc, "a": a, "b": b, "rand": rand}


def dot_id(harness):
    d, structures = harness
    return f"dot{d}-" + "-".join(s.replace("+", "") for s in structures)


@pytest.mark.parametrize("harness", DOT_HARNESSES, ids=dot_id)
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_dot_step(sim, harness, seed):
    d, structures = harness
    rng = np.random.default_rng([seed, d, len(structures)])
    stimulus = dot_stimulus(d, max(DOT_CASES[sim, s] for s in structures), rng)
    results = run_arith("dot", sim, seed=seed, stimulus=stimulus, **dot_config(d, structures))
    print(f"{sim} dot {d} {'+'.join(structures)} x {'/'.join(DOT_ROUNDINGS)}: "
          f"{len(stimulus['acc'])} cases per mode, "
          f"{results.metrics['cases_per_second']:.0f} cases per CPU second "
          f"(build {results.build_seconds:.1f} s, simulation {results.test_seconds:.1f} s)")


def test_dot_step_own_random_cases(seed):
    # The bench's own stimulus (no case file): tb_arith's dot_operands, uniform random bits.
    run_arith("dot", "verilator", 2_000, seed=seed, **dot_config(4, ["frame"]))


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_dot_step_mixed_formats(sim, seed):
    # HFP8's weight-gradient pair (E4M3 activations x E5M2 errors), dot 4, both structures, the
    # bench's own stimulus (cancelling pairs, edge codes, accumulators near the sum).
    run_arith("dot", sim, 3_000 if sim == "verilator" else 400, seed=seed,
              **{**dot_config(4, ["frame", "sum+mac"]), "in_format": "fp8_e4m3", "b_format": "fp8_e5m2"})


@pytest.mark.skipif(not FULL, reason="exhaustive sweep: FP8MAC_TIER=full (make regress)")
@pytest.mark.parametrize("structure", ["frame", "sum+mac"])
def test_dot2_every_product_pair(structure, seed):
    """Every (a0, a1) pair of e5m2 codes (2**16, specials included) with each fixed (b0, b1) and
    fp16_ibm accumulator below, every rounding mode, on Verilator: exact cancellation (b1 = -b0),
    equal and different weights, subnormal and the largest factors, +0, -0, subnormal, normal,
    near-overflow and infinite accumulators."""
    a0, a1 = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    a = np.stack([a0.ravel(), a1.ravel()], axis=1)
    sets = [((0x3C, 0xBC), 0x0000), ((0x3C, 0x3C), 0x3E00), ((0x01, 0x7B), 0x8001),
            ((0x40, 0xC0), 0x8000), ((0x3D, 0x3A), 0xBE35), ((0x03, 0x83), 0x0001),
            ((0x7B, 0x01), 0x7BFF), ((0x3C, 0x00), 0x7E00)]
    acc = np.concatenate([np.full(len(a), code) for _, code in sets])
    b = np.concatenate([np.broadcast_to(np.array(pair), a.shape) for pair, _ in sets])
    a = np.tile(a, (len(sets), 1))
    stimulus = with_rand(acc, a, b, np.random.default_rng([seed, 2]))
    results = run_arith("dot", "verilator", seed=seed, stimulus=stimulus,
                        **dot_config(2, [structure]))
    print(f"exhaustive dot 2 {structure}: {len(acc)} cases per mode, "
          f"simulation {results.test_seconds:.1f} s")


class RandOffByOne(wiring.Component):
    """A mutant: a stochastic DotMacUnit whose random bits are one too large (mod 2**r)."""

    def __init__(self, d):
        self._unit = DotMacUnit(ACC, IN, d, "stochastic", RBITS)
        super().__init__({name: member for name, member in self._unit.signature.members.items()})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        m.d.comb += [unit.acc.eq(self.acc), unit.a.eq(self.a), unit.b.eq(self.b),
                     unit.rand.eq(self.rand + 1), self.result.eq(unit.result)]
        return m


def failing_run(harness, cfg, stimulus, name=None, sim="icarus"):
    with pytest.raises(SimulationFailed) as info:
        run_harness(harness, cfg, sim, stimulus=stimulus, name=name)
    message = str(info.value)
    assert "1 of 1 cocotb tests failed" in message and "dot: beat " in message, message
    return message


def test_dot_one_wrong_expected_code_fails(seed):
    # The bench's own harness (Verilator's build of the quick tier), every expected code the
    # model's but the last case's stochastic sum+mac one.
    harness, cfg = arith_harness("dot", **dot_config(2, ["frame", "sum+mac"]))
    stimulus = dot_stimulus(2, 300, np.random.default_rng([seed, 3]))
    args = (ACC, IN, stimulus["acc"], stimulus["a"], stimulus["b"])
    lanes = {r: fp_dot(*args, r, *((stimulus["rand"], RBITS) if r == "stochastic" else ()))
             for r in DOT_ROUNDINGS}
    expected = np.stack([lanes[r] for _, r in cfg["lanes"]], axis=1)
    lane = cfg["lanes"].index(("sum+mac", "stochastic"))
    expected[-1, lane] ^= 1
    message = failing_run(harness, cfg, {**stimulus, "expected": expected}, sim="verilator")
    assert "beat 299 of 300 differs" in message, message
    assert "case 299 (a=(0x" in message and "[sum+mac stochastic]" in message, message
    assert message.count("got ") == 1, message  # only that lane of that case


def test_dot_model_rounding_to_zero_fails(seed):
    # Hardware rounding to nearest, the model told to truncate: the same build, another claim.
    harness, cfg = arith_harness("dot", **dot_config(2, ["frame", "sum+mac"]))
    claim = {**cfg, "lanes": [(s, "zero" if r == "nearest" else r) for s, r in cfg["lanes"]]}
    stimulus = dot_stimulus(2, 200, np.random.default_rng([seed, 4]))
    message = failing_run(harness, claim, stimulus, name=harness_name(cfg))
    assert "zero]" in message and "stochastic]" not in message, message


def test_dot_random_bits_off_by_one_fails(seed):
    # R + 1 instead of R: the cases whose bits sit at the rounding boundary pass on the real
    # unit (Verilator's quick-tier build) and fail on the mutant (Icarus).
    harness, cfg = arith_harness("dot", **dot_config(2, ["frame", "sum+mac"]))
    stimulus = dot_stimulus(2, 200, np.random.default_rng([seed, 5]))
    run_harness(harness, cfg, "verilator", seed=seed, stimulus=stimulus)
    mutant = StreamHarness(RandOffByOne(2), ["a", "b", "acc", "rand"])  # cfg's tdata fields
    claim = {**cfg, "lanes": [("frame", "stochastic")]}
    message = failing_run(mutant, claim, stimulus, name="dot-mutant-rand-plus-one")
    assert "[frame stochastic]" in message and "case " in message, message


def test_verilog_is_reused_only_for_the_same_harness(tmp_path):
    # A harness from arith_harness reuses its Verilog when described alike (here a file written
    # over stays), another description or a harness of the test's own is converted again.
    from fp8mac.sim.arith_harness import LfsrStream, _verilog

    path = tmp_path / "arith_lfsr.v"
    _verilog(arith_harness("lfsr", seed=5)[0], "arith_lfsr", path)
    assert "module arith_lfsr" in path.read_text()
    path.write_text("// kept\n")
    _verilog(arith_harness("lfsr", seed=5)[0], "arith_lfsr", path)
    assert path.read_text() == "// kept\n"
    _verilog(arith_harness("lfsr", seed=6)[0], "arith_lfsr", path)
    assert "module arith_lfsr" in path.read_text()
    path.write_text("// kept\n")
    _verilog(LfsrStream(32, 8, 6), "arith_lfsr", path)
    assert "module arith_lfsr" in path.read_text()
