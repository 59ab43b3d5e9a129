"""The weight update of FP8 training: ``w <- round(w - lr * g)`` on FP16 master weights.

Wang et al. (NeurIPS 2018) keep the master weights in FP16 and update them with stochastic
rounding, because ``lr * g`` is often below half an ulp of ``w`` and rounding to nearest would
drop it. One definition serves the training study (:mod:`fp8mac.model.studies.train`) and the
layer engine's update unit (:mod:`fp8mac.hw.engine`): a fused step ``w + (-lr) * g`` rounded once
(:func:`~fp8mac.model.arith.fp_fma`, the product exact), the random bits drawn from one LFSR, one
draw per element in the arrays' C order, the LFSR left after the last draw (so a tensor's stream
runs on from update to update).
"""

from __future__ import annotations

import numpy as np

from .arith import fp_fma
from .formats import FloatFormat, check_codes, format_by_name
from .lfsr import Lfsr
from .rounding import ROUNDINGS

__all__ = ["sgd_update"]


def sgd_update(fmt: FloatFormat | str, w_codes, g_codes, lr_code: int, rounding: str = "stochastic",
               lfsr: Lfsr | None = None, rbits: int = 8) -> np.ndarray:
    """``round(w + (-lr) * g)``, element-wise, one rounding each.

    Parameters
    ----------
    fmt : FloatFormat or str
        The format of ``w``, ``g``, ``lr`` and the result (``fp16_ibm`` in the paper's scheme).
    w_codes, g_codes : array_like
        Master weights and gradients, codes of one shape.
    lr_code : int
        The learning rate's code; ``-lr`` is that code with its sign flipped (exact).
    rounding : {"stochastic", "nearest", "zero"}
    lfsr : Lfsr
        ``stochastic`` only: the stream; draw ``k`` rounds element ``k`` (C order), and the LFSR
        is left after the last draw.
    rbits : int
        Random bits per draw.

    Raises
    ------
    ValueError
        On codes out of range, shapes that differ, a stochastic update without an LFSR.
    """
    fmt = format_by_name(fmt, "fmt")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")
    w = check_codes(fmt, w_codes, "w_codes")
    g = check_codes(fmt, g_codes, "g_codes")
    if w.shape != g.shape:
        raise ValueError(f"w_codes and g_codes must have one shape, not {w.shape} and {g.shape}")
    neg_lr = int(check_codes(fmt, lr_code, "lr_code")) ^ (1 << (fmt.width - 1))
    if rounding != "stochastic":
        return fp_fma(fmt, fmt, w, neg_lr, g, rounding)
    if not isinstance(lfsr, Lfsr):
        raise ValueError("a stochastic update needs its stream: lfsr must be an Lfsr")
    rand = lfsr.draws(w.size, rbits).reshape(w.shape)
    return fp_fma(fmt, fmt, w, neg_lr, g, "stochastic", rand, rbits)
