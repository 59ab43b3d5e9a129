"""The generated layer engine's Verilog on Icarus and Verilator, bit for bit against mac_gemm.

Each case generates an engine design (:func:`fp8mac.sim.engine_bench.ensure_engine_design`,
cached under ``build/designs/``), builds it (cached) and runs the cocotb tests of
:mod:`fp8mac.sim.tb_engine` in one simulation: random ragged GEMMs up to what the buffers hold
under random load, AXI4-Lite and READ delays; a reset in the middle of a GEMM and of a READ; every
error flag of the manifest provoked through the ports; and a check that a wrong expected code is
caught. Every code of C (padding lanes included) is compared with ``mac_gemm``.

Tiers: the quick one (``make test``) runs two small designs (2 x 3 with run-time HFP8 formats and
dot 2 on both simulators, 3 x 2 with the row outer adder on Icarus; buffers of 32 to 64 words).
``FP8MAC_TIER=full`` adds designs and seeds (``FP8MAC_SEEDS``, default 3) and the throughput
measurement of the 8 x 8 engine on Verilator (also ``make bench``, section ``engine``).

Replay: every run prints ``FP8MAC_SEED=<n>  (<sim>, ...)``; ``FP8MAC_SEED=<n>`` replays it (seed
number r of a case uses ``FP8MAC_SEED + r``). ``WAVES=1`` records waves; ``SIM=icarus`` or
``SIM=verilator`` runs one simulator only.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fp8mac.hw.engine import CTRL_BITS, ERRORS, REGISTERS, STATUS_BITS, EngineConfig
from fp8mac.model.config import MacConfig
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.engine_bench import (EngineMismatch, compare_words, decode_status,
                                     engine_throughput, ensure_engine_design, operand_words,
                                     padded_expected, result_rows, run_engine_tests,
                                     throughput_shape)
from fp8mac.sim.runner import SIMULATORS, SimulationFailed, build_root
from fp8mac.sim.tiler import assemble, pack_lanes

TIER = os.environ.get("FP8MAC_TIER", "quick").strip().lower() or "quick"
if TIER not in ("quick", "full"):
    raise ValueError(f"FP8MAC_TIER must be quick or full, not {TIER!r}")
SIMS = (os.environ["SIM"].strip().lower(),) if os.environ.get("SIM", "").strip() else SIMULATORS
N_SEEDS = int(os.environ.get("FP8MAC_SEEDS", "3")) if TIER == "full" else 1

HFP8 = ("fp8_e4m3", "fp8_e5m2")
# (id, MacConfig fields, EngineConfig fields). Small arrays and buffers keep the builds and runs
# short; the depths differ per buffer in the second design so that a check against the wrong
# depth shows.
QUICK_DESIGNS = [
    ("2x3-hfp8-runtime-dot2-chunk8-a64b64c64",
     dict(rows=2, cols=3, dot=2, chunk=8, a_formats=HFP8, b_formats=HFP8,
          inner_rounding="stochastic"), dict(a_words=64, b_words=64, c_words=64)),
    ("3x2-row-outer-chunk4-both-sr-a32b64c32",
     dict(rows=3, cols=2, chunk=4, outer_adder="row", inner_rounding="stochastic", rbits=4, seed=7),
     dict(a_words=32, b_words=64, c_words=32)),
]
FULL_DESIGNS = QUICK_DESIGNS + [
    ("4x4-dot4-chunk16-pipeline2-a128b64c256",
     dict(rows=4, cols=4, dot=4, chunk=16, pipeline=2), dict(a_words=128, b_words=64, c_words=256)),
    ("2x2-shared-adder-chunk-off-nearest-a16b16c16",
     dict(rows=2, cols=2, chunk=None, pe="shared-adder", outer_rounding="nearest"),
     dict(a_words=16, b_words=16, c_words=16)),
    ("3x3-e5m2-x-e4m3-chunk8-a64b32c64",
     dict(rows=3, cols=3, chunk=8, a_format="fp8_e5m2", b_format="fp8_e4m3"),
     dict(a_words=64, b_words=32, c_words=64)),
]
DESIGNS = QUICK_DESIGNS if TIER == "quick" else FULL_DESIGNS
# The quick tier builds one design for Verilator (a build takes 35-50 s on two loaded cores, the
# tests then well under a second); the second runs on Icarus only (5 s, its build 1 s).
QUICK_SIMS = {QUICK_DESIGNS[1][0]: ("icarus",)}
CASES = [(name, fields, depths, sim) for name, fields, depths in DESIGNS for sim in SIMS
         if TIER == "full" or sim in QUICK_SIMS.get(name, SIMS)]

COCOTB_TESTS = ["random_gemms", "reset_mid_gemm", "error_flags", "done_survives_refused_start", "mutation"]
"""The cocotb tests of fp8mac.sim.tb_engine every case runs (in one simulation)."""

THROUGHPUT_DESIGN = (MacConfig(), EngineConfig(a_words=4096, b_words=4096, c_words=4096))
"""The engine whose MAC/s the full tier and ``make bench`` measure: the default 8 x 8 array."""

# Engine bugs found by these tests and not fixed yet: cocotb test -> (what its failure says, why).
# Each runs alone in test_known_engine_bugs, which expects that failure (xfail) and fails once the
# test passes: then the entry goes (and error_flags' range_done check is switched on).
KNOWN_ENGINE_BUGS: dict[str, tuple[str, str]] = {}
# Fixed: "done_survives_refused_start", a START or UPDATE refused by a range check cleared DONE
# (hw/engine.py cleared it when the command passed the shape and format checks, before the range
# checks); error_flags now checks that DONE survives every refused command (range_done).


@pytest.mark.parametrize("rep", range(N_SEEDS), ids=[f"seed{r}" for r in range(N_SEEDS)])
@pytest.mark.parametrize("name,fields,depths,sim", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_engine(name, fields, depths, sim, rep, seed):
    """Random GEMMs bit for bit, reset mid-GEMM, every error flag, the mutation check."""
    results = run_engine_tests(MacConfig(**fields), EngineConfig(**depths), sim, COCOTB_TESTS,
                               seed=(seed + rep) % 2**32)
    assert results.tests == len(COCOTB_TESTS)
    assert results.metrics["random_gemms"]["macs"] > 0
    manifest_errors = set(results.metrics["error_flags"])
    assert manifest_errors == set(ERRORS), f"provoked {sorted(manifest_errors)}"
    print(f"\n{sim}, {name}: {len(COCOTB_TESTS)} cocotb tests passed (FP8MAC_SEED={results.seed}; "
          f"build {results.build_seconds:.1f} s, run {results.test_seconds:.1f} s)")


if KNOWN_ENGINE_BUGS:  # defined only while there is one (an empty parametrize would skip)
    @pytest.mark.parametrize("bug", list(KNOWN_ENGINE_BUGS))
    def test_known_engine_bugs(bug, seed):
        """Each known engine bug as its own cocotb test on the first quick design: it must fail with
        the known message (xfail); once it passes the engine is fixed and this fails."""
        match, why = KNOWN_ENGINE_BUGS[bug]
        _, fields, depths = QUICK_DESIGNS[0]
        try:
            run_engine_tests(MacConfig(**fields), EngineConfig(**depths), SIMS[0], [bug],
                             seed=seed % 2**32)
        except SimulationFailed as exc:
            assert match in str(exc), f"{bug} failed otherwise than known: {exc}"
            pytest.xfail(why)
        pytest.fail(f"{bug} passes: the engine is fixed; drop it from KNOWN_ENGINE_BUGS and check "
                    "DONE after range errors in tb_engine.error_flags (range_done = True)")


def test_manifest_register_map_is_the_engine_s():
    """The bench decodes STATUS and addresses registers from the manifest: it must be
    hw/engine.py's map."""
    _, fields, depths = QUICK_DESIGNS[0]
    folder = ensure_engine_design(MacConfig(**fields), EngineConfig(**depths))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["top_kind"] == "engine"
    eng = manifest["engine"]
    assert {r["name"]: (r["offset"], r["access"]) for r in eng["registers"]} == \
        {k: v[:2] for k, v in REGISTERS.items()}
    assert {e["name"]: e["bit"] for e in eng["errors"]} == {k: v[0] for k, v in ERRORS.items()}
    assert eng["ctrl_bits"] == CTRL_BITS and eng["status_bits"] == STATUS_BITS
    assert (eng["a_words"], eng["b_words"], eng["c_words"]) == (64, 64, 64)
    status = decode_status(1 << STATUS_BITS["DONE"] | 1 << ERRORS["ERR_LOAD"][0] | 1 << 31, eng)
    assert status.done and not status.busy and status.errors == {"ERR_LOAD", "bit31"}
    assert "DONE" in str(status) and "ERR_LOAD" in str(status)


def test_compare_words_catches_each_wrong_code(seed):
    """The comparison behind every engine GEMM (no simulator): the model's own words pass; one
    flipped bit anywhere, padding lanes included, fails naming C[i][j], its tile, word, lane and
    the seed; a missing word fails."""
    config = MacConfig(rows=3, cols=2, chunk=4, inner_rounding="stochastic")
    rng = np.random.default_rng(seed)
    fin = config.in_format
    values = fin.decode(np.arange(256))
    finite = np.flatnonzero(np.isfinite(values) & (np.abs(values) < 16))
    m, k, n = 4, 5, 3
    a, b = rng.choice(finite, (m, k)), rng.choice(finite, (k, n))
    want = padded_expected(a, b, config)
    np.testing.assert_array_equal(want[:m, :n], mac_gemm(a, b, config))
    tm, tn = 2, 2
    rows = want.reshape(tm, 3, tn, 2).transpose(0, 2, 1, 3).reshape(-1, 2)
    words = pack_lanes(rows, 16)
    assert len(words) == result_rows(m, n, config)
    compare_words(words, want, m, n, config, name="ok", seed=seed)
    np.testing.assert_array_equal(assemble(words, m, n, config), want[:m, :n])
    for _ in range(8):
        w, lane, bit = int(rng.integers(len(words))), int(rng.integers(2)), int(rng.integers(16))
        bad = list(words)
        bad[w] ^= 1 << (lane * 16 + bit)
        t, r = divmod(w, 3)
        i, j = t // tn * 3 + r, t % tn * 2 + lane
        with pytest.raises(EngineMismatch) as info:
            compare_words(bad, want, m, n, config, name="flipped", seed=seed, c_base=5)
        text = str(info.value)
        assert f"GEMM 'flipped': 1 of {want.size} result codes differ" in text, text
        assert f"C[{i}][{j}]" in text and f"C word {5 + w} lane {lane}" in text, text
        assert ("(padding lane)" in text) == (i >= m or j >= n), text
        assert f"FP8MAC_SEED={seed}" in text
    with pytest.raises(EngineMismatch, match="11 C words read, expected 12"):
        compare_words(words[:-1], want, m, n, config, name="short", seed=seed)


def test_operand_words_and_shapes():
    """Buffer words: A per tile row, B per tile column, each once; the throughput GEMM fits."""
    config = MacConfig(rows=2, cols=3, dot=2, chunk=8)
    a = np.arange(5 * 7).reshape(5, 7) % 100
    b = np.arange(7 * 4).reshape(7, 4) % 100
    aw, bw = operand_words(a, b, config)
    assert len(aw) == 3 * 4 and len(bw) == 2 * 4  # ceil(5/2) x ceil(7/2), ceil(4/3) x ceil(7/2)
    for cfg, depths in ((MacConfig(), (4096, 4096, 4096)), (config, (64, 64, 64)),
                        (MacConfig(rows=3, cols=2, chunk=4), (32, 64, 32))):
        m, k, n = throughput_shape(cfg, depths)
        tm, tn, s = -(-m // cfg.rows), -(-n // cfg.cols), -(-k // cfg.dot)
        assert tm * s <= depths[0] and tn * s <= depths[1] and tm * tn * cfg.rows <= depths[2]
    assert throughput_shape(MacConfig(), (4096, 4096, 4096)) == (128, 256, 128)


def test_engine_design_is_cached():
    """A second ensure_engine_design of the same engine writes nothing."""
    _, fields, depths = QUICK_DESIGNS[0]
    folder = ensure_engine_design(MacConfig(**fields), EngineConfig(**depths))
    stamp = (folder / "fp8mac-design.key").stat().st_mtime_ns
    verilog = next(folder.glob("*.v")).stat().st_mtime_ns
    assert ensure_engine_design(MacConfig(**fields), EngineConfig(**depths)) == folder
    assert (folder / "fp8mac-design.key").stat().st_mtime_ns == stamp
    assert next(folder.glob("*.v")).stat().st_mtime_ns == verilog
    assert folder.parent == build_root() / "designs"


if TIER == "full":
    def test_throughput(seed):
        """MAC/s of the 8 x 8 engine on Verilator (loads, compute and READ included) and the
        simulator-alone rate of its compute phase."""
        row = engine_throughput(*THROUGHPUT_DESIGN, seed=seed % 2**32)
        m, k, n = row["mkn"]
        line = (f"Engine throughput, 8 x 8, {m} x {k} x {n} x {row['repeats']} on Verilator "
                f"(FP8MAC_SEED={row['seed']}): {row['macs_per_second'] / 1e6:.2f} M MAC/s (load "
                f"{row['load_seconds']:.2f} s, compute {row['compute_seconds']:.2f} s, READ "
                f"{row['read_seconds']:.2f} s); simulator alone "
                f"{row['sim_only_macs_per_second'] / 1e6:.2f} M MAC/s; Python share "
                f"{100 * row['python_share']:.0f}%")
        path = build_root() / "sim" / "tables" / "engine_throughput.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(line + "\n")
        print("\n" + line)
        assert row["macs_per_second"] > 0 and row["seconds"] >= 1.0
