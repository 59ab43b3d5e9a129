"""Training-layer GEMMs as the MAC array runs them: forward, backward, weight gradient, im2col conv.

Each helper quantizes its float operands to the configuration's input format with a per-tensor
power-of-two scale (exact, so the scale never adds rounding: the paper's FP8 tensors with loss
scaling), runs :func:`~fp8mac.model.gemm.mac_gemm`, and returns a :class:`LayerGemm` holding the
codes the hardware must produce plus FP32 references for error reporting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import MacConfig
from .formats import FloatFormat
from .gemm import mac_gemm

__all__ = ["LayerGemm", "quantize", "gemm_layer", "linear_forward", "linear_backward",
           "linear_weight_grad", "conv2d_forward", "im2col", "operand_top_exp"]


def quantize(x, fmt: FloatFormat, top_exp=None, rounding="nearest", rand=None, rbits=None):
    """``x`` to ``fmt`` codes with a power-of-two scale ``s`` (codes hold ``x * s``).

    ``s`` puts ``max|x|`` just below ``2**top_exp`` (default: the format's top binade, so nothing
    overflows and as little as possible underflows). Returns ``(codes, s)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("x: values to quantize must be finite")
    if top_exp is None:
        top_exp = int(np.floor(np.log2(fmt.max_value)))
    amax = float(np.max(np.abs(x))) if x.size else 0.0
    scale = 1.0 if amax == 0 else 2.0 ** (top_exp - np.ceil(np.log2(amax)))
    return fmt.encode(x * scale, rounding, rand, rbits), float(scale)


def operand_top_exp(config: MacConfig, k: int) -> int:
    """Where :func:`gemm_layer` puts each operand's largest magnitude (``2**top``).

    High in the input formats' range (half the smaller top exponent of the A and B formats) but
    low enough that a sum of ``k`` largest products stays two binades below the accumulator's
    largest value.
    """
    room = (config.acc_format.emax - 2 - int(np.ceil(np.log2(max(k, 1))))) // 2
    return int(min(min(config.a_format.emax, config.b_format.emax) // 2, room))


@dataclass
class LayerGemm:
    """One GEMM of a layer, ``A @ B``, as the hardware sees it.

    Attributes
    ----------
    name : str
    a_codes, b_codes : ndarray
        Operands in the A and B formats (A scaled by ``scale_a``, B by ``scale_b``).
    codes : ndarray
        The result codes the array must produce (``mac_gemm``).
    values : ndarray
        Those results decoded and unscaled (float64).
    fp32_quantized : ndarray
        FP32 GEMM of the same FP8 operands: the error against it is accumulation error alone.
    fp32 : ndarray
        FP32 GEMM of the unquantized operands: quantization plus accumulation error.
    scales : tuple or None
        Block-scaled operands only: the scale codes ``(A's, B's)`` that go with the element
        codes (:func:`~fp8mac.model.blockscale.block_gemm`); ``codes`` are then block_gemm's.
    """

    name: str
    a_codes: np.ndarray
    b_codes: np.ndarray
    scale_a: float
    scale_b: float
    codes: np.ndarray
    values: np.ndarray
    fp32_quantized: np.ndarray
    fp32: np.ndarray
    scales: tuple | None = None  # block-scaled operands: (A's, B's) scale codes, block_gemm's

    @property
    def shape(self):
        """``(M, K, N)``."""
        return (self.a_codes.shape[0], self.a_codes.shape[1], self.b_codes.shape[1])

    def rel_error(self, against="fp32_quantized") -> float:
        """Relative Frobenius-norm error of ``values`` against a reference."""
        ref = getattr(self, against).astype(np.float64)
        norm = np.linalg.norm(ref)
        return float(np.linalg.norm(self.values - ref) / norm) if norm else float(np.linalg.norm(self.values))


def gemm_layer(name, a, b, config: MacConfig) -> LayerGemm:
    """Quantize float ``a`` (M x K) and ``b`` (K x N) and run them through ``mac_gemm``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"{name}: operands must be M x K and K x N, got {a.shape} and {b.shape}")
    fa, fb = config.a_format, config.b_format
    top = operand_top_exp(config, a.shape[1])
    a_codes, sa = quantize(a, fa, top)
    b_codes, sb = quantize(b, fb, top)
    codes = mac_gemm(a_codes, b_codes, config)
    unscale = 1.0 / (sa * sb)
    values = config.acc_format.decode(codes) * unscale
    aq = fa.decode(a_codes).astype(np.float32)
    bq = fb.decode(b_codes).astype(np.float32)
    fp32_q = (aq @ bq).astype(np.float64) * unscale
    fp32 = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float64)
    return LayerGemm(name, a_codes, b_codes, sa, sb, codes, values, fp32_q, fp32)


def linear_forward(x, w, config) -> LayerGemm:
    """Forward pass ``Y = X W`` (X: batch x in, W: in x out)."""
    return gemm_layer("forward Y=XW", x, w, config)


def linear_backward(dy, w, config) -> LayerGemm:
    """Backward (input gradient) ``dX = dY W^T``."""
    return gemm_layer("backward dX=dY.W^T", dy, np.asarray(w).T, config)


def linear_weight_grad(x, dy, config) -> LayerGemm:
    """Weight gradient ``dW = X^T dY``: K is the batch, the long dot products chunking is for."""
    return gemm_layer("weight-grad dW=X^T.dY", np.asarray(x).T, dy, config)


def im2col(x, kh, kw, stride=1, padding=0):
    """``x`` (N, C, H, W) to patches ``(N*OH*OW, C*kh*kw)``; returns ``(cols, OH, OW)``."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be N x C x H x W, got shape {x.shape}")
    for name, value, lo in (("kh", kh, 1), ("kw", kw, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, not {value!r}")
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w + 2 * padding - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kh}x{kw} does not fit the {h}x{w} input with padding {padding}")
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, :, i, j] = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride].transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw), oh, ow


def conv2d_forward(x, w, config, stride=1, padding=0) -> LayerGemm:
    """Convolution through im2col: ``x`` (N, C, H, W), ``w`` (F, C, kh, kw); the GEMM is
    ``patches (N*OH*OW x C*kh*kw) @ W^T (C*kh*kw x F)``."""
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[1] != np.asarray(x).shape[1]:
        raise ValueError(f"w must be F x C x kh x kw with C matching x, got {w.shape}")
    cols, _, _ = im2col(x, w.shape[2], w.shape[3], stride, padding)
    return gemm_layer("conv2d (im2col)", cols, w.reshape(w.shape[0], -1).T, config)
