"""cocotb test of a whole training step on the layer engine (:mod:`fp8mac.sim.engine_step`).

``training_step``: the plan in ``FP8MAC_STEP_IN`` (``np.savez`` of :func:`~fp8mac.sim.engine_step.plan_step`)
on the engine of ``FP8MAC_MANIFEST``: each GEMM loaded, computed and read back (every code
compared with the plan's, which is ``mac_gemm``'s), the weight-gradient results left in the C
buffer; then each fp16 master weight matrix loaded next to its gradient and updated by ``UPDATE``
(every weight compared with ``sgd_update``'s, and the LFSR state read back). Records the engine's
``CYCLES`` per phase.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from fp8mac.sim.engine_bench import EngineBench, EngineMismatch
from fp8mac.sim.engine_step import PHASES, UPDATES
from fp8mac.sim.runner import record_metric, test_seed
from fp8mac.sim.tiler import assemble, result_words


@cocotb.test()
async def training_step(dut):
    """The plan's GEMMs and updates, bit for bit; per-phase cycles recorded."""
    with np.load(os.environ["FP8MAC_STEP_IN"]) as data:
        plan = {key: data[key] for key in data.files}
    tb = EngineBench(dut, seed=test_seed(), read_pause="random")
    await tb.reset()
    cfg = tb.config
    rows = []
    for name in PHASES:
        a, b, want = plan[f"{name}.a"], plan[f"{name}.b"], plan[f"{name}.c"]
        run = await tb.gemm(a, b, c_base=int(plan[f"{name}.c_base"]), name=name, expected=want)
        m, k, n = run.shape
        rows.append(dict(phase=name, shape=f"{m} x {k} x {n}", cycles=int(run.engine_cycles), exact=True))
        dut._log.info("%-16s %15s %7d cycles, bit-exact", name, rows[-1]["shape"], run.engine_cycles)
    for w, grad in UPDATES:
        codes, new = plan[f"{w}.codes"], plan[f"{w}.new"]
        m, n = codes.shape
        base, g_base = int(plan[f"{w}.base"]), int(plan[f"{grad}.c_base"])
        words = result_words(codes, cfg)
        await tb.load(w_words=words, w_at=base)
        for reg, value in (("M", m), ("N", n), ("W_BASE", base), ("C_BASE", g_base),
                           ("LR", int(plan[f"{w}.lr"])), ("U_STATE", int(plan[f"{w}.state"])),
                           ("U_MODE", 0)):
            await tb.write(reg, value)
        await tb.command("UPDATE")
        await tb.wait_done(4 * m * n + 1000, f"UPDATE of {w}")
        cycles = await tb.read("CYCLES")
        status = await tb.status()
        if status.errors or not status.done:
            raise AssertionError(f"UPDATE of {w}: STATUS {status} (FP8MAC_SEED={tb.seed})")
        got = assemble(await tb.read_c(base, len(words)), m, n, cfg)
        bad = np.argwhere(got != new)
        if bad.size:
            i, j = bad[0]
            raise EngineMismatch(f"UPDATE of {w}: {len(bad)} weights differ, first ({i}, {j}): got "
                                 f"{int(got[i, j]):#x}, expected {int(new[i, j]):#x} (was "
                                 f"{int(codes[i, j]):#x}) (FP8MAC_SEED={tb.seed})")
        state = await tb.read("U_STATE")
        if state != int(plan[f"{w}.state_after"]):
            raise EngineMismatch(f"UPDATE of {w}: U_STATE {state:#x} after it, the model's LFSR "
                                 f"{int(plan[f'{w}.state_after']):#x} (FP8MAC_SEED={tb.seed})")
        rows.append(dict(phase=f"update {w}", shape=f"{m} x {n}", cycles=int(cycles), exact=True))
        dut._log.info("%-16s %15s %7d cycles, bit-exact", f"update {w}", rows[-1]["shape"], cycles)
    record_metric("training_step", rows)
