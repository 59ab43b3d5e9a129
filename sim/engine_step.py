"""One training step of the digits MLP on the layer engine: every GEMM and the weight update in RTL.

:func:`plan_step` computes the step with the golden model alone, chained as training chains it:
forward ``X W1`` and ``H W2``, backward ``dY W2^T`` and the weight gradients ``X^T dH`` and
``H^T dY``, each quantized to FP8 (:func:`~fp8mac.model.layers.gemm_layer`) and accumulated by
:func:`~fp8mac.model.gemm.mac_gemm`; the element-wise work between GEMMs (bias, ReLU, softmax,
its gradient) in float32 on the host, as in the paper's emulation. Then each weight matrix's fp16
master copy is updated by :func:`~fp8mac.model.update.sgd_update` from its weight-gradient GEMM's
result codes, with the learning rate divided by the gradient's two power-of-two scales (exact),
so the update sees the true gradient.

:func:`run_step_on_simulator` runs the same step on a generated engine (cocotb test
``training_step`` of :mod:`fp8mac.sim.tb_engine_step`): each GEMM from the engine's buffers, the
weight-gradient results kept in the C buffer, the master weights loaded next to them and updated
there by ``UPDATE``; every result code and every updated weight is compared with the plan, and the
engine's ``CYCLES`` are recorded per phase.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from fp8mac.model.config import MacConfig
from fp8mac.model.layers import gemm_layer
from fp8mac.model.lfsr import Lfsr, stream_seed
from fp8mac.model.update import sgd_update
from fp8mac.model.workloads import _softmax_grad

__all__ = ["PHASES", "plan_step", "step_engine_config", "run_step_on_simulator"]

PHASES = ("fc1.forward", "fc2.forward", "fc2.backward", "fc1.weight_grad", "fc2.weight_grad")
"""The step's GEMMs, in the order they run."""

UPDATES = (("w1", "fc1.weight_grad"), ("w2", "fc2.weight_grad"))
"""Each master weight matrix and the GEMM that gives its gradient."""


def _rows(m: int, n: int, config: MacConfig) -> int:
    return -(-m // config.rows) * -(-n // config.cols) * config.rows


def plan_step(mlp, x, y, config: MacConfig, lr: float = 0.1, seed: int = 0) -> dict:
    """The step's arrays (``np.savez``-able): per GEMM ``<name>.a`` / ``<name>.b`` (codes) and
    ``<name>.c`` (the model's result codes) and its C-buffer word ``<name>.c_base``; per weight
    matrix ``<w>.codes`` (fp16 master weights before), ``<w>.new`` (after the update), ``<w>.lr``
    (the learning-rate code the engine gets), ``<w>.state`` (the update LFSR's state before) and
    ``<w>.state_after``, ``<w>.base`` (its C-buffer word); ``c_words`` (C-buffer words used) and
    ``a_words`` / ``b_words`` (the largest GEMM's A and B words)."""
    facc = config.acc_format
    w1 = facc.encode(mlp.w1)
    w2 = facc.encode(mlp.w2)
    w1f, w2f = facc.decode(w1), facc.decode(w2)
    x = np.asarray(x, np.float64)
    layers = {}
    layers["fc1.forward"] = gemm_layer("fc1.forward", x, w1f, config)
    h_pre = layers["fc1.forward"].values + mlp.b1
    h = np.maximum(h_pre, 0)
    layers["fc2.forward"] = gemm_layer("fc2.forward", h, w2f, config)
    d_logits = _softmax_grad((layers["fc2.forward"].values + mlp.b2).astype(np.float32), y)
    layers["fc2.backward"] = gemm_layer("fc2.backward", d_logits, w2f.T, config)
    dh = layers["fc2.backward"].values * (h_pre > 0)
    layers["fc1.weight_grad"] = gemm_layer("fc1.weight_grad", x.T, dh, config)
    layers["fc2.weight_grad"] = gemm_layer("fc2.weight_grad", h.T, d_logits, config)
    out, base = {}, 0
    scratch = max(_rows(L.shape[0], L.shape[2], config) for n, L in layers.items() if "weight" not in n)
    for name in PHASES:
        L = layers[name]
        m, k, n = L.shape
        out.update({f"{name}.a": L.a_codes, f"{name}.b": L.b_codes, f"{name}.c": L.codes})
        if "weight" in name:  # kept for the update: a region of its own
            base = max(base, scratch)
            out[f"{name}.c_base"] = base
            base += _rows(m, n, config)
        else:
            out[f"{name}.c_base"] = 0  # forward and backward results share the scratch region
    for i, (w, grad) in enumerate(UPDATES):
        L = layers[grad]
        codes = {"w1": w1, "w2": w2}[w]
        lr_code = int(facc.encode(float(facc.decode(facc.encode(lr))) / (L.scale_a * L.scale_b)))
        state = stream_seed(seed, 0, 0, 16 + i, 32)
        lfsr = Lfsr(32, state)
        new = sgd_update(facc, codes, L.codes, lr_code, "stochastic", lfsr, config.rbits)
        out.update({f"{w}.codes": codes, f"{w}.new": new, f"{w}.lr": lr_code, f"{w}.state": state,
                    f"{w}.state_after": lfsr.state, f"{w}.base": base})
        base += _rows(*codes.shape, config)
    a_words = max(-(-L.shape[0] // config.rows) * -(-L.shape[1] // config.dot) for L in layers.values())
    b_words = max(-(-L.shape[2] // config.cols) * -(-L.shape[1] // config.dot) for L in layers.values())
    out.update(c_words=base, a_words=a_words, b_words=b_words)
    return out


def _pow2_at_least(n: int) -> int:
    return max(2, 1 << (int(n) - 1).bit_length())


def step_engine_config(plan: dict):
    """The smallest :class:`~fp8mac.hw.engine.EngineConfig` that holds ``plan``'s step."""
    from fp8mac.hw.engine import EngineConfig

    return EngineConfig(_pow2_at_least(plan["a_words"]), _pow2_at_least(plan["b_words"]),
                        _pow2_at_least(plan["c_words"]))


def run_step_on_simulator(config: MacConfig, plan: dict, sim: str = "verilator", *, seed: int | None = None,
                          design=None, quiet: bool = True) -> list[dict]:
    """Run ``plan`` on the engine of ``config`` in ``sim`` (generated and built as needed:
    :func:`fp8mac.sim.engine_bench.ensure_engine_design`); returns one row per phase (``phase``,
    ``shape``, ``cycles`` (the engine's CYCLES), ``exact``). Raises
    :class:`~fp8mac.sim.runner.SimulationFailed` if a code differs."""
    from fp8mac.sim.accel_bench import MANIFEST_ENV, build_args
    from fp8mac.sim.engine_bench import ensure_engine_design
    from fp8mac.sim.runner import build_and_test, build_root

    engine = step_engine_config(plan)
    folder = Path(design) if design is not None else ensure_engine_design(config, engine)
    jobs = build_root() / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    job = Path(tempfile.mkdtemp(prefix="engine-step-", dir=jobs))
    try:
        np.savez(job / "step.npz", **plan)
        results = build_and_test([folder / f"{config.top}.v"], config.top, "fp8mac.sim.tb_engine_step",
                                 sim=sim, name=folder.name, testcase="training_step", seed=seed,
                                 build_args=build_args(sim, config), expect_tests=1, quiet=quiet,
                                 extra_env={MANIFEST_ENV: str(folder / "manifest.json"),
                                            "FP8MAC_STEP_IN": str(job / "step.npz")})
    finally:
        shutil.rmtree(job, ignore_errors=True)
    return results.metrics["training_step"]
