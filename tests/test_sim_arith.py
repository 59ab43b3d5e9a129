"""The arithmetic blocks' Verilog on Icarus and Verilator, every result code against the model.

``sim/tb_arith.py`` streams random cases through the harnesses of ``sim/arith_harness.py``
(:class:`~fp8mac.sim.arith_harness.MacStep`: ``FloatMultiplier`` -> ``MacUnit``; ``FloatAdder``;
``Lfsr``) and compares each output with :func:`~fp8mac.model.arith.fp_fma`,
:func:`~fp8mac.model.arith.fp_add` or the model's LFSR draws. Verilator runs 10**5 MAC steps per
rounding mode; Icarus, slower, a smaller set. A mismatched pair (hardware rounding toward zero,
model rounding to nearest) proves that a wrong result fails the test and names the case.
"""

import pytest

from fp8mac.sim.arith_harness import arith_harness, run_arith, run_harness
from fp8mac.sim.runner import SimulationFailed

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
