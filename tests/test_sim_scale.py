"""Generated arrays at real sizes on Verilator, bit for bit against mac_gemm (issue 14).

``fp8mac generate``'s Verilog (one PE module, one row module of ``cols`` PE instances, ``rows``
row instances, each row's LFSR start states as constant ports) built by Verilator as the
accelerator harness builds it (:func:`fp8mac.sim.accel_bench.build_args`: hierarchically above
64 PEs, so for every case here) runs a short GEMM through
:func:`~fp8mac.sim.accel_bench.run_gemm_on_simulator`: two tile rows, a ragged second tile column
(padding lanes), K = 70 (a full chunk of 64 and a short one), random valid/ready pauses on every
stream; every result code is compared with :func:`~fp8mac.model.gemm.mac_gemm`.

Quick tier: a 32 x 32 array (1,024 PEs) with stochastic inner rounding (a per-PE LFSR in every
PE, seeded through its row's ports) besides the default stochastic outer rounding in each row's
adder. ``FP8MAC_TIER=full``: the same at 9 x 8 (72 PEs, the smallest array built
hierarchically) and 16 x 16, a 32 x 32 array of PEs with their own outer adders (two LFSRs per
PE), and the largest array MacConfig allows, 64 x 64, in the default configuration.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from fp8mac.model.config import MacConfig
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.accel_bench import build_args, ensure_design, run_gemm_on_simulator

TIER = os.environ.get("FP8MAC_TIER", "quick").strip().lower() or "quick"

# The quick tier runs a 32 x 32 array (about a minute and a half to build on two cores, beside
# the other tests: make test runs pytest-xdist); the full tier the other sizes, and 9 x 8, the
# smallest array built hierarchically (a 4 x 4 would be built flat, build_args).
QUICK = [("32x32-inner-sr", dict(rows=32, cols=32, inner_rounding="stochastic"))]
FULL = QUICK + [
    ("9x8-inner-sr", dict(rows=9, cols=8, inner_rounding="stochastic")),
    ("16x16-inner-sr", dict(rows=16, cols=16, inner_rounding="stochastic")),
    ("32x32-pe-outer-both-sr", dict(rows=32, cols=32, inner_rounding="stochastic",
                                    outer_adder="pe", seed=12345)),
    ("64x64-default", dict(rows=64, cols=64)),
]
CASES = FULL if TIER == "full" else QUICK


@pytest.mark.parametrize("name,fields", CASES, ids=[c[0] for c in CASES])
def test_large_array_gemm_on_verilator(name, fields, seed):
    config = MacConfig(**fields)
    fin = config.in_format
    codes = np.arange(1 << fin.width)
    values = np.abs(fin.decode(codes))
    pool = codes[np.isfinite(values) & (values < 64)]
    rng = np.random.default_rng(seed)
    m, k, n = 2 * config.rows, 70, config.cols + 3
    a, b = rng.choice(pool, (m, k)), rng.choice(pool, (k, n))
    got, stats = run_gemm_on_simulator(config, a, b, sim="verilator", seed=seed % 2**32,
                                       design=ensure_design(config),
                                       pauses=("random", "random", "random"), quiet=True)
    assert build_args("verilator", config) == ("--hierarchical",)
    np.testing.assert_array_equal(got, mac_gemm(a, b, config))
    assert stats["tiles"] == 4 and stats["macs"] == m * k * n
    print(f"\n{name}: build {stats['build_seconds']:.0f} s, {stats['cycles']} cycles, "
          f"{stats['cycles_per_second']:.0f} cycles/s (FP8MAC_SEED={stats['seed']})")


@pytest.mark.skipif(TIER != "full", reason="layer workloads at 32 x 32: FP8MAC_TIER=full (make regress)")
@pytest.mark.parametrize("workload", ["mlp.fc1.forward", "mlp.fc2.weight_grad", "conv.im2col"])
def test_layer_workload_on_a_32x32_array(workload, seed):
    """Real layer GEMMs (the digits MLP's forward and weight-gradient GEMMs, a convolution as
    im2col; ``sim.workloads`` at size "full") through a 32 x 32 array on Verilator, bit for bit
    against mac_gemm, with random pauses on every stream."""
    from fp8mac.sim.workloads import build_workload

    config = MacConfig(rows=32, cols=32)
    layer = build_workload(workload, config, seed, "full")
    got, stats = run_gemm_on_simulator(config, layer.a_codes, layer.b_codes, sim="verilator",
                                       seed=seed % 2**32, design=ensure_design(config),
                                       pauses=("random", "random", "random"), quiet=True)
    np.testing.assert_array_equal(got, mac_gemm(layer.a_codes, layer.b_codes, config))
    m, k = layer.a_codes.shape
    assert stats["macs"] == m * k * layer.b_codes.shape[1]
    print(f"\n{workload} {m}x{k}x{layer.b_codes.shape[1]} on 32 x 32: {stats['cycles']} cycles "
          f"(FP8MAC_SEED={stats['seed']})")
