"""Block-scaled and 4-bit GEMMs of the training study (issue 19, item 5): MXFP8, MXFP4, NVFP4 and
IBM's 4-bit scheme, each GEMM computed by :func:`~fp8mac.model.blockscale.block_gemm`.

A :class:`Recipe` says, for each of a layer's three GEMMs (forward ``X W``, backward ``dY W^T``,
weight gradient ``X^T dY``), how each operand is quantized (:class:`Quant`: block format, element
rounding, a per-tensor scale, 2-D tiles, Tseng et al.'s 3/4 gain), whether a random Hadamard
transform (RHT) mixes the operands along K first, and the accumulator. :func:`block_layer` runs
one GEMM: float operands in, quantized to element and scale codes, ``block_gemm`` of those codes
(bit-exact: what a block-scaled MAC array returns), the result decoded and unscaled. What the
recipes follow, and what they leave out:

``mxfp8`` (OCP Microscaling Formats v1.0, 2023: blocks of 32 elements sharing an E8M0 scale
    ``2**(floor(log2 amax) - emax_elem)``): E4M3 weights and activations, E5M2 errors (the split of
    the FP8 recipes: Micikevicius et al., "FP8 Formats for Deep Learning", 2022; an assumption for
    MX: NVIDIA's MXFP8 recipe, Mishra et al. 2025, takes E4M3 everywhere with scales rounded up),
    nearest rounding, every GEMM block-scaled.
``mxfp4`` (Tseng, Yu, Park, "Training LLMs with MXFP4", AISTATS 2025, and their code,
    amazon-science/mxfp4-llm): forward in 8 bits (their code runs BF16 or FP8 forward; here
    MXFP8 E4M3, so every GEMM stays on the block array), backward and weight-gradient GEMMs in
    MXFP4 with both operands stochastically rounded after scaling by 3/4 (their ``dither_scale``:
    the OCP scale is chosen from the block, the elements are ``3/4 * x / scale``, so nothing
    clamps and the rounding stays unbiased; the 4/3 is undone on the result), after a random
    Hadamard transform along K (one random sign vector per GEMM, ``D H / sqrt(n)`` on blocks of
    n = 32; their code's default block is 64, 32 here because the hidden width is 32).
``nvfp4`` (NVIDIA, "Pretraining Large Language Models with NVFP4", arXiv 2509.25149, 2025, as
    summarized secondhand; the paper's own text was not read here): E2M1 elements in blocks of 16
    with an E4M3 scale, all three GEMMs 4-bit; 2-D 16 x 16 scaling of weights (one set of codes
    for W and W^T), 1 x 16 blocks for activations and errors; round to nearest for weights and
    activations, stochastic rounding for errors (dY); a 16 x 16 RHT on the weight-gradient GEMM's
    operands; the per-tensor second-level scale, here a power of two that puts the tensor's
    largest magnitude in (6 * 448 / 2, 6 * 448] (NVIDIA's is the FP32 value 6 * 448 / amax; a
    power of two keeps the quantization exact and moves nothing but the scales' exponents). The
    E4M3 block scale is ``amax / 6`` rounded up (cuDNN's rule; the model's default); whether
    NVIDIA rounds it up or to nearest was not checked. Left out: nothing else at this scale (the
    recipe's "selective high-precision layers" are the study's fp16_ibm first and last layers).
``ibm4`` (Sun et al., "Ultra-Low Precision 4-bit Training of Deep Neural Networks", NeurIPS 2020;
    the paper's own text could not be read here, only its abstract and its public reviews, which
    give: "int4 input activations, int4 weights, and fp4 input gradients", "MAC outputs are
    accumulated in fp16", radix-4 FP4 (1-3-0), GradScale "adaptive per-layer loss scaling", and
    two-phase rounding, "the incoming gradient for a layer is quantized in two different ways,
    one to calculate dL/dw and another to calculate dL/dx", to the even and the odd grid):
    weights INT4 (symmetric, -7 .. 7), activations UINT4 (0 .. 15, PACT's unsigned quantizer;
    the network's input, which has a sign, INT4), each with a per-tensor scale ``amax / levels``
    rounded up to 8 significant bits (PACT learns its clip and SAWB fits its scale from the
    weights' moments: both replaced by the tensor's maximum here, an assumption); errors in
    radix-4 FP4 with a per-layer power-of-two GradScale that puts max |dY| in (128, 256] (the
    even grid's top binade; one scale for both phases, an assumption), rounded to nearest on the
    even grid ``4**k`` for the weight gradient and on the odd grid ``2 * 4**k`` for the backward
    GEMM (which phase goes where is not given by the reviews: an assumption). No block scales:
    exact blocks of 16 products into an fp16_ibm accumulator (the array's, chunk 64).

Accumulation: fp32 for the three OCP / NVIDIA recipes (the accelerators they target, NVIDIA's
tensor cores and MXDOTP-style units, accumulate block products in FP32), fp16_ibm for ``ibm4``;
chunked as the FP8 scheme is (the study's chunk), inner nearest, outer stochastic (the array's
default roundings). Everything outside the GEMMs (first and last layers in fp16_ibm through
``mac_gemm``, fp16_ibm master weights with a stochastically rounded update, element-wise work in
float32) is the study's FP8 scheme, so the variants differ in their GEMM operands only.

Random bits (stochastic rounding of elements, RHT signs) come from a NumPy generator the caller
seeds from the run's seed; 8 random bits per stochastic rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..blockscale import (BlockConfig, BlockFormat, block_format, block_gemm, dequantize_blocks, quantize_blocks,
                          quantize_tiles, tile_block_scales)
from ..config import MacConfig
from ..elements import round_to_format
from ..layers import LayerGemm

__all__ = ["Quant", "Recipe", "RECIPES", "RECIPE_NOTES", "FORMAT_NOTE", "BlockLayerGemm", "block_layer", "quantize_operand", "hadamard",
           "random_hadamard", "RBITS"]

RBITS = 8
"""Random bits per stochastic rounding of an element."""

KINDS = ("fwd", "bwd", "wgrad")
ROLES = {"x": "activations", "w": "weights", "g": "errors dY"}
TENSOR_SCALES = ("none", "pow2", "max")


@dataclass(frozen=True)
class Quant:
    """How one operand tensor of one GEMM is quantized.

    Attributes
    ----------
    role : {"x", "w", "g"}
        Activations, weights or errors (for reports).
    fmt : str or BlockFormat
        The block format (:data:`~fp8mac.model.blockscale.BLOCK_FORMATS` name or a BlockFormat;
        one without a scale format for plain 4-bit elements).
    rounding : {"nearest", "stochastic"}
        Of the elements (stochastic: :data:`RBITS` random bits each).
    gain : float
        Elements represent ``gain * x`` (:func:`~fp8mac.model.blockscale.quantize_blocks`).
    tensor : {"none", "pow2", "max"}
        A per-tensor scale ``t`` first (codes represent ``x / t``): ``"pow2"`` the power of two
        that puts ``max |x|`` in ``(top / 2, top]``; ``"max"`` (formats without block scales)
        ``max |x| / top`` rounded up to 8 significant bits (``top``: the largest level used).
    top : float
        See ``tensor``.
    tiles : bool
        2-D ``B x B`` tiles (:func:`~fp8mac.model.blockscale.quantize_tiles`) instead of blocks
        along K.
    """

    role: str
    fmt: object
    rounding: str = "nearest"
    gain: float = 1.0
    tensor: str = "none"
    top: float = 0.0
    tiles: bool = False

    def __post_init__(self):
        object.__setattr__(self, "fmt", block_format(self.fmt, "fmt"))
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {self.role!r}")
        if self.tensor not in TENSOR_SCALES:
            raise ValueError(f"tensor must be one of {', '.join(TENSOR_SCALES)}, not {self.tensor!r}")
        if self.tensor == "max" and self.fmt.scale is not None:
            raise ValueError("tensor 'max' (not a power of two) applies to formats without block scales")
        if self.tensor != "none" and not self.top > 0:
            raise ValueError(f"top must be positive with tensor {self.tensor!r}")

    @property
    def label(self) -> str:
        extra = [] if self.rounding == "nearest" else ["SR"]
        if self.gain != 1.0:
            extra.append(f"x{self.gain:g}")
        if self.tiles:
            extra.append(f"{self.fmt.block}x{self.fmt.block} tiles")
        if self.tensor == "max":
            extra.append("max-scaled")
        if self.fmt.scale is None:
            name = self.fmt.element.label
        else:
            name = self.fmt.label
        return name + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class Recipe:
    """A block-scaled or 4-bit training arithmetic (module docstring).

    ``gemms[kind]`` is the pair of :class:`Quant` of the A and B operands of that GEMM kind;
    ``input_quant`` replaces the activations' Quant of the network's first layer (whose input has
    a sign) when given; ``rht[kind]`` is the Hadamard block size applied along that GEMM's K.
    """

    key: str
    gemms: dict
    acc_format: str = "fp32"
    rht: dict = field(default_factory=dict)
    input_quant: Quant | None = None

    def __post_init__(self):
        if set(self.gemms) != set(KINDS):
            raise ValueError(f"gemms must give {', '.join(KINDS)}")
        for kind, (qa, qb) in self.gemms.items():
            if qa.fmt.block != qb.fmt.block:
                raise ValueError(f"{kind}: the two operands' block sizes differ")

    def quants(self, kind: str, first_layer: bool = False) -> tuple[Quant, Quant]:
        qa, qb = self.gemms[kind]
        if first_layer and self.input_quant is not None:
            if qa.role == "x":
                qa = self.input_quant
        return qa, qb

    def four_bit(self, kind: str) -> bool:
        """Whether both operands of this GEMM kind have elements of 4 bits or fewer."""
        return all(q.fmt.element.width <= 4 for q in self.gemms[kind])

    def operand_label(self, kind: str) -> str:
        qa, qb = self.gemms[kind]
        text = f"{qa.label} x {qb.label}"
        if kind in self.rht:
            text += f", RHT {self.rht[kind]}"
        return text


def _r(role, fmt, **kw):
    return Quant(role, fmt, **kw)


_SR34 = dict(rounding="stochastic", gain=0.75)
_NV = dict(tensor="pow2", top=6.0 * 448.0)
_R4_EVEN = BlockFormat("fp4_r4", 16, None, name="fp4_r4/16")
_R4_ODD = BlockFormat("fp4_r4_odd", 16, None, name="fp4_r4_odd/16")
_INT4 = BlockFormat("int4", 16, None, name="int4/16")
_UINT4 = BlockFormat("uint4", 16, None, name="uint4/16")

RECIPES = {r.key: r for r in (
    Recipe("mxfp8", {
        "fwd": (_r("x", "mxfp8_e4m3"), _r("w", "mxfp8_e4m3")),
        "bwd": (_r("g", "mxfp8_e5m2"), _r("w", "mxfp8_e4m3")),
        "wgrad": (_r("x", "mxfp8_e4m3"), _r("g", "mxfp8_e5m2"))}),
    Recipe("mxfp4", {
        "fwd": (_r("x", "mxfp8_e4m3"), _r("w", "mxfp8_e4m3")),
        "bwd": (_r("g", "mxfp4", **_SR34), _r("w", "mxfp4", **_SR34)),
        "wgrad": (_r("x", "mxfp4", **_SR34), _r("g", "mxfp4", **_SR34))},
        rht={"bwd": 32, "wgrad": 32}),
    Recipe("nvfp4", {
        "fwd": (_r("x", "nvfp4", **_NV), _r("w", "nvfp4", tiles=True, **_NV)),
        "bwd": (_r("g", "nvfp4", rounding="stochastic", **_NV), _r("w", "nvfp4", tiles=True, **_NV)),
        "wgrad": (_r("x", "nvfp4", **_NV), _r("g", "nvfp4", rounding="stochastic", **_NV))},
        rht={"wgrad": 16}),
    Recipe("ibm4", {
        "fwd": (_r("x", _UINT4, tensor="max", top=15.0), _r("w", _INT4, tensor="max", top=7.0)),
        "bwd": (_r("g", _R4_ODD, tensor="pow2", top=256.0), _r("w", _INT4, tensor="max", top=7.0)),
        "wgrad": (_r("x", _UINT4, tensor="max", top=15.0), _r("g", _R4_EVEN, tensor="pow2", top=256.0))},
        acc_format="fp16_ibm", input_quant=_r("x", _INT4, tensor="max", top=7.0)),
)}
"""The recipes by name (module docstring)."""


FORMAT_NOTE = ("Operand labels: `mxfp8_e4m3` / `mxfp8_e5m2` / `mxfp4` are OCP MX v1.0 blocks of 32 (E4M3 / "
               "E5M2 / E2M1 elements, E8M0 scale 2^(floor(log2 amax) - emax_elem)); `nvfp4` blocks of 16 E2M1 "
               "elements with an E4M3 scale (amax / 6 rounded up); `int4` (-8..7), `uint4` (0..15), `fp4_r4` "
               "(radix-4 FP4, +-4^k, k = -2..4, and 0) and `fp4_r4_odd` (+-2 * 4^k) elements have no block "
               "scale: exact blocks of 16 products. SR: stochastic rounding of the elements (8 random bits); "
               "x0.75: elements of 3/4 of the value (undone on the result); RHT n: a random Hadamard "
               "transform along K in blocks of n before quantization; max-scaled: a per-tensor scale amax / "
               "levels (8 significant bits).")
"""The report's key to :attr:`Quant.label`."""

RECIPE_NOTES = {
    "mxfp8": "OCP Microscaling Formats (MX) v1.0 (2023) for the formats and the scale rule (rounded down: "
             "floor(log2 amax) - emax_elem); E4M3 weights and activations with E5M2 errors is the FP8 split of "
             "Micikevicius et al. (2022), taken over for MX here (an assumption). NVIDIA's MXFP8 recipe "
             "(Mishra et al., arXiv 2506.08027, 2025) differs: E4M3 for every tensor and scales rounded up, "
             "having found that the OCP rounding can make LLM pretraining diverge; not run here. Round to "
             "nearest; no per-tensor scale (the E8M0 scales cover the range); FP32 accumulation, as the "
             "accelerators for MX formats accumulate.",
    "mxfp4": "Tseng, Yu, Park, \"Training LLMs with MXFP4\" (AISTATS 2025) and their code "
             "(amazon-science/mxfp4-llm: `dither_scale` and the Megatron patch): the backward and weight-"
             "gradient GEMMs in MXFP4, both operands stochastically rounded after scaling by 3/4 (the OCP scale "
             "lets |x| / scale reach 8, beyond E2M1's 6; 3/4 of it fits, so nothing clamps and the rounding "
             "stays unbiased), after a random Hadamard transform along K with one random sign vector per GEMM "
             "(their default block 64; 32 here, the hidden width). Their forward pass is BF16 (or FP8 through "
             "Transformer Engine); here MXFP8 E4M3, so every GEMM stays on the block array.",
    "nvfp4": "NVIDIA, \"Pretraining Large Language Models with NVFP4\" (arXiv 2509.25149, 2025), from its "
             "abstract and secondhand summaries (the paper's text was not read here): all three GEMMs in "
             "NVFP4; 16 x 16 2-D scaling for weights (one set of codes for W and W^T), 1 x 16 blocks for "
             "activations and errors; round to nearest for weights and activations, stochastic rounding for "
             "the errors; a 16 x 16 random Hadamard transform on the weight-gradient GEMM's operands; a "
             "per-tensor second-level scale (here a power of two putting amax in (1344, 2688], NVIDIA's is the "
             "FP32 value 2688 / amax); E4M3 block scales rounded up (cuDNN's rule; NVIDIA's rounding of the "
             "scale not checked); FP32 accumulation. Their selective high-precision layers (the last ones, "
             "about 15 %) correspond to the fp16_ibm first and last layers here; `nvfp4-all` drops that.",
    "ibm4": "Sun et al., \"Ultra-Low Precision 4-bit Training of Deep Neural Networks\" (NeurIPS 2020). The "
            "paper's text could not be read here; its abstract and public reviews give INT4 weights and "
            "activations, radix-4 FP4 (1-3-0) gradients, FP16 accumulation, per-layer gradient scaling "
            "(GradScale) and two-phase rounding (TPR: the incoming gradient rounded to the even grid 4^k for "
            "one GEMM and to the odd grid 2 * 4^k for the other). Assumptions: the radix-4 bias 3 and zero "
            "code (model/elements.py); weights INT4 symmetric (-7..7) and activations UINT4 (0..15, PACT's "
            "unsigned 4 bits; the network's signed input INT4), each with the per-tensor scale amax / levels "
            "(PACT's learned clip and SAWB's fitted weight scale both replaced by the maximum); GradScale a "
            "power of two putting max |dY| in (128, 256], one scale for both phases; nearest rounding; the even "
            "phase feeds the weight gradient and the odd one the backward GEMM; blocks of 16 exact products "
            "into fp16_ibm (chunk as the FP8 scheme).",
}
"""Per recipe, what it follows, assumes and leaves out (for the report)."""


# ---- quantization -----------------------------------------------------------------------------------

def _round_up_8_bits(x: float) -> float:
    """The smallest value of at most 8 significant bits at or above positive ``x``."""
    m, e = math.frexp(x)
    return math.ldexp(math.ceil(m * 256) / 256, e)


def tensor_scale(x, q: Quant) -> float:
    """The per-tensor scale ``t`` of :class:`Quant` (codes represent ``x / t``); 1 for a zero
    tensor or ``tensor="none"``."""
    amax = float(np.max(np.abs(x))) if np.size(x) else 0.0
    if q.tensor == "none" or amax == 0:
        return 1.0
    if q.tensor == "pow2":
        return 2.0 ** -math.floor(math.log2(q.top / amax))  # amax / t in (top / 2, top]
    return _round_up_8_bits(amax / q.top)


def quantize_operand(x, q: Quant, axis: int, rng=None):
    """``(codes, block scales or None, t)``: ``x`` (2-D float) quantized by ``q`` with K along
    ``axis`` (-1: an A operand, 0: a B operand), scales in :func:`block_gemm`'s layout; the codes
    represent ``q.gain * x / t``."""
    x = np.asarray(x, dtype=np.float64)
    t = tensor_scale(x, q)
    rand = rng.integers(0, 1 << RBITS, x.shape) if q.rounding == "stochastic" else None
    rbits = RBITS if rand is not None else None
    f = q.fmt
    if f.scale is None:
        codes = round_to_format(f.element, x * q.gain, t, q.rounding, rand, rbits)
        return codes, None, t
    xs = x / t  # t is a power of two here (Quant refuses "max" with block scales): exact
    if q.tiles:
        if axis not in (0, -1):
            raise ValueError(f"axis must be 0 or -1, not {axis}")
        codes, ts = quantize_tiles(xs, f, q.rounding, rand, rbits, gain=q.gain)
        if axis == 0:
            return codes, tile_block_scales(ts, f.block, x.shape[1], 0), t
        return codes, tile_block_scales(ts.T, f.block, x.shape[0], 0).T, t
    codes, scales = quantize_blocks(xs, f, axis, q.rounding, rand, rbits, gain=q.gain)
    return codes, scales, t


def dequantize_operand(codes, scales, q: Quant, axis: int) -> np.ndarray:
    """float64 values of quantized codes (``gain * x / t``: before the per-tensor unscale)."""
    if q.fmt.scale is None:
        return q.fmt.element.decode(codes)
    return dequantize_blocks(codes, scales, q.fmt, axis)


def hadamard(n: int) -> np.ndarray:
    """The n x n Sylvester Hadamard matrix (n a power of two), entries +-1."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"n must be a power of two, not {n}")
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def random_hadamard(a, b, n: int, rng):
    """``(a S_blk, S_blk^T b)``: both operands of ``a @ b`` mixed along K by the block-diagonal
    random Hadamard transform ``S = D H / sqrt(n)`` (``D`` one random sign vector for the GEMM),
    K completed with zeros to a multiple of ``n``. ``S`` is orthogonal, so the product is
    unchanged in exact arithmetic (float64 rounds the transform; it is the operands' preparation
    before quantization, not part of the array's arithmetic)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    (M, K), N = a.shape, b.shape[1]
    Kp = -(-K // n) * n
    signs = rng.integers(0, 2, n) * 2.0 - 1.0
    S = signs[:, None] * hadamard(n) / math.sqrt(n)
    ap = np.zeros((M, Kp))
    ap[:, :K] = a
    bp = np.zeros((Kp, N))
    bp[:K] = b
    a2 = (ap.reshape(M, Kp // n, n) @ S).reshape(M, Kp)
    b2 = np.einsum("ji,bjn->bin", S, bp.reshape(Kp // n, n, N)).reshape(Kp, N)
    return a2, b2


# ---- one GEMM -------------------------------------------------------------------------------------------

@dataclass
class BlockLayerGemm(LayerGemm):
    """A :class:`~fp8mac.model.layers.LayerGemm` computed by ``block_gemm``: the operands'
    codes hold ``scale_a * A`` and ``scale_b * B`` (``gain / t``; after the RHT when one is
    applied), with their block scales; ``fp32_quantized`` is the float64 product of the
    dequantized operands (so its error is the accumulation's alone), ``fp32`` the float32 GEMM of
    the operands before any transform or quantization."""

    a_scales: np.ndarray | None = None
    b_scales: np.ndarray | None = None
    config: BlockConfig | None = None
    quants: tuple = ()


def block_layer(name, a, b, recipe: Recipe, kind: str, mac: MacConfig, rng, first_layer=False) -> BlockLayerGemm:
    """One GEMM ``a @ b`` of kind ``kind`` by ``recipe``: quantized operands, ``block_gemm``
    with ``mac`` (accumulator, chunk, roundings, seed) and the operands' block formats, the result
    decoded and unscaled. ``rng``: the stochastic roundings' and the RHT's random source."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"{name}: operands must be M x K and K x N, got {a.shape} and {b.shape}")
    qa, qb = recipe.quants(kind, first_layer)
    fp32 = (a.astype(np.float32) @ b.astype(np.float32)).astype(np.float64)
    if kind in recipe.rht:
        a, b = random_hadamard(a, b, recipe.rht[kind], rng)
    ca, sa, ta = quantize_operand(a, qa, -1, rng)
    cb, sb, tb = quantize_operand(b, qb, 0, rng)
    cfg = BlockConfig(mac, qa.fmt, qb.fmt)
    codes = block_gemm(ca, sa, cb, sb, cfg)
    unscale = (ta * tb) / (qa.gain * qb.gain)
    values = cfg.mac.acc_format.decode(codes) * unscale
    fp32_q = (dequantize_operand(ca, sa, qa, -1) @ dequantize_operand(cb, sb, qb, 0)) * unscale
    return BlockLayerGemm(name, ca, cb, qa.gain / ta, qb.gain / tb, codes, values, fp32_q, fp32,
                          a_scales=sa, b_scales=sb, config=cfg, quants=(qa, qb))
