"""The golden-model part of ``make demo``: chunked vs plain FP16 accumulation on a real layer.

Trains the digits MLP in FP32, quantizes one training step's GEMMs to FP8 and runs them through
the golden model with chunked and with plain (unchunked) fp16_ibm accumulation, reporting each
result's error against FP32 accumulation of the same FP8 operands.
"""

from __future__ import annotations

import time

from .config import MacConfig
from .layers import gemm_layer
from .workloads import digits_mlp_gemms, train_digits_mlp


def accumulation_report(config: MacConfig, batch: int = 1024, seed: int = 0, out=print):
    """Print, per GEMM, its shape and the error of chunked and plain accumulation vs FP32."""
    t0 = time.perf_counter()
    mlp, (xtr, ytr, xte, yte) = train_digits_mlp(seed=seed)
    out(f"digits MLP 64-32-10 trained in FP32 (seed {seed}): test accuracy {mlp.accuracy(xte, yte):.3f}")
    plain = config.replace(chunk=None, inner_rounding="nearest")
    gemms = digits_mlp_gemms(mlp, xtr[:batch], ytr[:batch])
    out(f"FP8 {config.in_format.label} operands, {config.acc_format.label} accumulation; "
        "relative error vs FP32 accumulation of the same FP8 operands:")
    out(f"  {'GEMM':<18} {'M x K x N':>14}  {'plain FP16':>11}  {'chunked ' + str(config.chunk):>11}  gain")
    rows = []
    for name, (a, b) in gemms.items():
        g_chunk = gemm_layer(name, a, b, config)
        g_plain = gemm_layer(name, a, b, plain)
        e_c, e_p = g_chunk.rel_error(), g_plain.rel_error()
        m, k, n = g_chunk.shape
        gain = f"{e_p / e_c:6.1f}x" if e_c else "  exact"
        out(f"  {name:<18} {f'{m} x {k} x {n}':>14}  {e_p:11.2e}  {e_c:11.2e}  {gain}")
        rows.append((name, (m, k, n), e_p, e_c))
    out(f"({time.perf_counter() - t0:.1f} s)")
    return rows
