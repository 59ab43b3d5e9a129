"""The GEMMs the cocotb regressions stream through the generated array, by name.

Every workload is a :class:`~fp8mac.model.layers.LayerGemm`: FP8 operand codes, plus the FP32
references its error is measured against (FP32 accumulation of the same FP8 operands, and FP32 on
the unquantized operands). The codes the hardware must produce always come from
:func:`~fp8mac.model.gemm.mac_gemm`; nothing here depends on the hardware.

Workloads (``WORKLOADS``; ``size`` is ``"quick"`` or ``"full"``):

* ``mlp.fc1.forward``, ``mlp.fc2.forward`` (Y = X W), ``mlp.fc2.backward`` (dX = dY W^T),
  ``mlp.fc1.weight_grad``, ``mlp.fc2.weight_grad`` (dW = X^T dY, K = the batch): one training
  step of the digits MLP (:mod:`fp8mac.model.workloads`, trained in FP32), quantized to FP8 by
  :func:`fp8mac.model.layers.gemm_layer` (per-tensor power-of-two scales);
* ``conv.im2col``: a 3x3 convolution over digits images through im2col
  (:func:`fp8mac.model.layers.conv2d_forward`);
* ``random``: codes drawn uniformly from the finite codes below the layer helpers' operand
  ceiling (all exponents, subnormals, both signs), M and N not multiples of the array shape and K
  not a multiple of the chunk;
* ``corners``: random codes mixed with the corner codes of the input format (zeros of both signs,
  the smallest and largest subnormals, the smallest normal, one, the largest finite value, and,
  where the format has them, infinities and NaNs), with products that overflow the accumulator;
* ``k1``: K = 1 (one product per output, one chunk), ragged M and N.

On a block-scaled design (``config.a_block``) the MLP workloads are block-quantized along K
(:func:`block_layer`) and their codes come from :func:`~fp8mac.model.blockscale.block_gemm`; the
other workloads are refused.

Random operands and the MLP batch come from ``seed``; the MLP itself is trained once per process
with a fixed seed (training is deterministic, so every run sees the same network).
"""

from __future__ import annotations

import functools

import numpy as np

from fp8mac.model.blockscale import block_gemm, dequantize_blocks, quantize_blocks
from fp8mac.model.config import MacConfig
from fp8mac.model.formats import FloatFormat, format_by_name
from fp8mac.model.gemm import mac_gemm
from fp8mac.model.layers import LayerGemm, conv2d_forward, gemm_layer, operand_top_exp
from fp8mac.model.workloads import digits_conv_operands, digits_mlp_gemms, train_digits_mlp

__all__ = ["WORKLOADS", "SIZES", "QUICK_WORKLOADS", "HFP8_FORMATS", "HFP8_STEP", "build_workload",
           "workload_formats", "code_gemm", "block_layer", "model_gemm", "corner_codes", "errors", "error_table", "nearest_config"]

SIZES = {
    # MLP batch, conv images and filters, random GEMMs' extra rows/cols beyond whole tiles
    "quick": dict(batch=8, conv_images=1, conv_filters=4, tiles=(1, 1)),
    "full": dict(batch=32, conv_images=4, conv_filters=6, tiles=(3, 2)),
}
"""Workload sizes: ``quick`` for ``make test``, ``full`` for ``make regress``."""

_MLP_KEYS = ("fc1.forward", "fc2.forward", "fc2.backward", "fc1.weight_grad", "fc2.weight_grad")
_FORMULAS = {"forward": "Y=XW", "backward": "dX=dY.W^T", "weight_grad": "dW=X^T.dY"}

HFP8_FORMATS = {"forward": ("fp8_e4m3", "fp8_e4m3"), "backward": ("fp8_e5m2", "fp8_e4m3"),
                "weight_grad": ("fp8_e4m3", "fp8_e5m2")}
"""(A, B) formats of each GEMM of hybrid FP8 training (Sun et al., NeurIPS 2019): weights and
activations in (1,4,3), errors in (1,5,2): forward X W, backward dY W^T (error x weight), weight
gradient X^T dY (activation x error)."""

HFP8_STEP = tuple(f"mlp.{key}" for key in _MLP_KEYS)
"""The GEMMs of one digits MLP training step (each in its :data:`HFP8_FORMATS` on an HFP8 array)."""


@functools.cache
def _trained_mlp():
    return train_digits_mlp(seed=0)


def _check_size(size):
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    return SIZES[size]


def _mlp(key):
    def build(config, rng, size):
        mlp, (_, _, x_test, y_test) = _trained_mlp()
        batch = rng.choice(len(x_test), _check_size(size)["batch"], replace=False)
        a, b = digits_mlp_gemms(mlp, x_test[batch], y_test[batch])[key]
        name = f"mlp.{key} {_FORMULAS[key.split('.')[1]]}"
        if config.blocks:
            return block_layer(name, a, b, config)
        return gemm_layer(name, a, b, config)
    return build


def block_layer(name, a, b, config: MacConfig) -> LayerGemm:
    """Float ``a`` (M x K) and ``b`` (K x N) block-quantized along K (the OCP MX / NVFP4 scale
    rules of :func:`~fp8mac.model.blockscale.quantize_blocks`, elements to nearest) and run
    through :func:`~fp8mac.model.blockscale.block_gemm`: a :class:`LayerGemm` with ``scales``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a_codes, sa = quantize_blocks(a, config.a_block, axis=-1)
    b_codes, sb = quantize_blocks(b, config.b_block, axis=0)
    codes = block_gemm(a_codes, sa, b_codes, sb, config.block_config())
    aq = dequantize_blocks(a_codes, sa, config.a_block, axis=-1).astype(np.float32)
    bq = dequantize_blocks(b_codes, sb, config.b_block, axis=0).astype(np.float32)
    return LayerGemm(name, a_codes.astype(np.int64), b_codes.astype(np.int64), 1.0, 1.0, codes,
                     config.acc_format.decode(codes), (aq @ bq).astype(np.float64),
                     (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float64), scales=(sa, sb))


def model_gemm(layer: LayerGemm, config: MacConfig) -> np.ndarray:
    """The model's result codes of ``layer``'s operands on ``config``: ``mac_gemm``, or
    ``block_gemm`` with the layer's scales for a block-scaled design."""
    if config.blocks:
        return block_gemm(layer.a_codes, layer.scales[0], layer.b_codes, layer.scales[1], config.block_config())
    return mac_gemm(layer.a_codes, layer.b_codes, config)


def _conv(config, rng, size):
    s = _check_size(size)
    x, w = digits_conv_operands(n_images=s["conv_images"], filters=s["conv_filters"],
                                seed=int(rng.integers(1 << 31)))
    layer = conv2d_forward(x, w, config, stride=1, padding=1)
    layer.name = "conv.im2col 3x3"
    return layer


def code_gemm(name: str, a_codes, b_codes, config: MacConfig) -> LayerGemm:
    """A :class:`LayerGemm` of operands given as codes (scales 1; the FP32 references are both
    FP32 GEMMs of the decoded codes, so only accumulation error shows)."""
    a_codes = np.asarray(a_codes, dtype=np.int64)
    b_codes = np.asarray(b_codes, dtype=np.int64)
    codes = mac_gemm(a_codes, b_codes, config)
    with np.errstate(invalid="ignore", over="ignore"):
        fp32 = (config.a_format.decode(a_codes).astype(np.float32)
                @ config.b_format.decode(b_codes).astype(np.float32))
    fp32 = fp32.astype(np.float64)
    return LayerGemm(name, a_codes, b_codes, 1.0, 1.0, codes, config.acc_format.decode(codes),
                     fp32, fp32.copy())


def _ragged_shape(config: MacConfig, size: str) -> tuple[int, int, int]:
    """(M, K, N): M, N not multiples of the array shape (when it is > 1), K not a multiple of the
    chunk (and more than one chunk when chunking is on)."""
    extra_r, extra_c = _check_size(size)["tiles"]
    m = extra_r * config.rows + max(config.rows - 1, 1)
    n = extra_c * config.cols + max(config.cols - 1, 1)
    chunk = config.chunk or 16
    k = chunk + max(chunk // 2, 1) + (chunk if size == "full" else 0)
    if chunk > 1 and k % chunk == 0:
        k += 1
    return m, k, n


def _finite_codes_below(fmt: FloatFormat, top_exp: int) -> np.ndarray:
    codes = np.arange(1 << fmt.width)
    v = fmt.decode(codes)
    return codes[np.isfinite(v) & (np.abs(v) < 2.0**top_exp)]


def _random(config, rng, size):
    m, k, n = _ragged_shape(config, size)
    top = operand_top_exp(config, k)
    a = rng.choice(_finite_codes_below(config.a_format, top), (m, k))
    b = rng.choice(_finite_codes_below(config.b_format, top), (k, n))
    return code_gemm("random codes", a, b, config)


def corner_codes(fmt: FloatFormat) -> np.ndarray:
    """The corner codes of ``fmt``, both signs: zero, smallest and largest subnormal, smallest
    normal, one, largest finite, and the infinity and NaNs if the format has them."""
    m, sign = fmt.man_bits, 1 << (fmt.width - 1)
    mags = [0, 1 << m, fmt.bias << m, fmt.max_code]  # zero, min normal, 1.0, max finite
    if fmt.subnormals:
        mags += [1, (1 << m) - 1]
    if fmt.has_inf:
        mags += [fmt.inf_code, fmt.nan_code, fmt.inf_code | 1]  # inf, quiet and signalling NaN
    elif fmt.has_nan:
        mags.append(fmt.nan_code)
    mags = np.unique(mags)
    return np.concatenate([mags, mags | sign])


def _corners(config, rng, size):
    m, k, n = _ragged_shape(config, size)
    k = min(k, 24)  # short dot products: a NaN or infinity does not reach every output

    def operand(fmt, shape):
        """Codes of ``fmt``: 40% corners, 1.5% specials (if it has any), the rest finite."""
        corners = corner_codes(fmt)
        special = np.isnan(fmt.decode(corners)) | np.isinf(fmt.decode(corners))
        finite_corners, specials = corners[~special], corners[special]
        finite = _finite_codes_below(fmt, fmt.emax + 1)
        u = rng.random(shape)
        out = rng.choice(finite, shape)
        out = np.where(u < 0.4, rng.choice(finite_corners, shape), out)
        if specials.size:
            out = np.where(u > 0.985, rng.choice(specials, shape), out)
        return out
    return code_gemm("corner codes", operand(config.a_format, (m, k)), operand(config.b_format, (k, n)),
                     config)


def _k1(config, rng, size):
    m, _, n = _ragged_shape(config, size)
    top = operand_top_exp(config, 1)
    a = rng.choice(_finite_codes_below(config.a_format, top), (m, 1))
    b = rng.choice(_finite_codes_below(config.b_format, top), (1, n))
    return code_gemm("K=1", a, b, config)


WORKLOADS = {**{f"mlp.{key}": _mlp(key) for key in _MLP_KEYS},
             "conv.im2col": _conv, "random": _random, "corners": _corners, "k1": _k1}
"""Workload name -> builder ``(config, rng, size) -> LayerGemm``."""

QUICK_WORKLOADS = ("mlp.fc1.forward", "mlp.fc2.backward", "mlp.fc2.weight_grad", "conv.im2col",
                   "random", "corners", "k1")
"""The workloads of the quick tier (``make test``): every kind, at ``size="quick"``."""


def workload_formats(name: str, config: MacConfig, seed: int) -> tuple[FloatFormat, FloatFormat] | None:
    """The (A, B) formats workload ``name`` runs in on a design with run-time formats (None for
    one without): an MLP GEMM in its :data:`HFP8_FORMATS` where both streams can carry them,
    any other workload in a pair drawn from the two sets by ``seed``."""
    if not config.runtime_formats:
        return None
    kind = name.split(".")[-1]
    if name.startswith("mlp.") and kind in HFP8_FORMATS:
        a, b = (format_by_name(f) for f in HFP8_FORMATS[kind])
        if a in config.stream_formats("a") and b in config.stream_formats("b"):
            return a, b
    salt = int.from_bytes(name.encode(), "little") % (1 << 63)
    rng = np.random.default_rng([int(seed), salt, 16])
    return tuple(config.stream_formats(s)[int(rng.integers(len(config.stream_formats(s))))] for s in "ab")


def build_workload(name: str, config: MacConfig, seed: int, size: str = "quick",
                   formats=None) -> LayerGemm:
    """Workload ``name`` for ``config`` (in ``formats``, an (A, B) pair of its run-time sets,
    when given: :meth:`MacConfig.with_formats`); the same arguments give the same GEMM.

    Raises
    ------
    ValueError
        If ``name`` or ``size`` is unknown, or a format is not in its stream's set.
    """
    if name not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, not {name!r}")
    if config.blocks and not name.startswith("mlp."):
        raise ValueError(f"a block-scaled design runs the MLP workloads ({', '.join(HFP8_STEP)}), not {name!r}")
    _check_size(size)
    if formats is not None:
        config = config.with_formats(*formats)
    salt = int.from_bytes(name.encode(), "little") % (1 << 63)
    return WORKLOADS[name](config, np.random.default_rng([int(seed), salt]), size)


def nearest_config(config: MacConfig) -> MacConfig:
    """The same chunking, every rounding to nearest: what chunking alone gives."""
    return config.replace(inner_rounding="nearest", outer_rounding="nearest")


def errors(layer: LayerGemm, result_codes, config: MacConfig) -> dict[str, float]:
    """Relative Frobenius errors (as :meth:`LayerGemm.rel_error`) of ``result_codes``, the
    hardware's results, and of two golden-model baselines on the same operands.

    Returns ``vs_fp32_quantized`` (against FP32 accumulation of the same FP8 operands: the
    accumulation error alone), ``vs_fp32`` (against FP32 on the unquantized operands:
    quantization plus accumulation), ``plain_vs_fp32_quantized`` (:meth:`MacConfig.plain`: one
    FP16 sum, nearest) and ``nearest_vs_fp32_quantized`` (:func:`nearest_config`: the same
    chunks, nearest). NaN where a result or a reference is not finite.
    """
    scale = 1.0 / (layer.scale_a * layer.scale_b)
    cases = [("vs_fp32_quantized", result_codes, "fp32_quantized"),
             ("vs_fp32", result_codes, "fp32")]
    for key, baseline in (("plain", MacConfig.plain), ("nearest", nearest_config)):
        codes = model_gemm(layer, baseline(config))
        cases.append((f"{key}_vs_fp32_quantized", codes, "fp32_quantized"))
    out = {}
    for key, codes, against in cases:
        values = config.acc_format.decode(np.asarray(codes)) * scale
        ref = getattr(layer, against)
        if not (np.all(np.isfinite(values)) and np.all(np.isfinite(ref))):
            out[key] = float("nan")
            continue
        diff, norm = float(np.linalg.norm(values - ref)), float(np.linalg.norm(ref))
        out[key] = diff / norm if norm else diff
    return out


def error_table(rows) -> str:
    """A Markdown table of ``rows``: dicts with ``workload``, ``shape``, ``exact`` and the keys of
    :func:`errors`. The three middle columns compare accumulations of the same FP8 operands with
    FP32: plain FP16 (one sum, nearest), chunked with nearest rounding, and the hardware."""
    def fmt(x):
        return "n/a" if x is None or x != x else f"{x:.2e}"
    lines = ["| workload | M x K x N | bit-exact | vs FP32 (same FP8 operands): plain FP16 | "
             "chunked, nearest | this array | this array vs FP32 on unquantized operands |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        errs = [fmt(r.get(key)) for key in ("plain_vs_fp32_quantized", "nearest_vs_fp32_quantized",
                                            "vs_fp32_quantized", "vs_fp32")]
        lines.append(f"| {r['workload']} | {r['shape']} | {'yes' if r['exact'] else 'NO'} | "
                     + " | ".join(errs) + " |")
    return "\n".join(lines)
