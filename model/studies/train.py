"""Study 2: training a digits MLP with every GEMM on the FP8 MAC array's golden model.

After Wang et al., "Training Deep Neural Networks with 8-bit Floating Point Numbers" (NeurIPS
2018): FP8 (1,5,2) GEMM operands, FP16 (1,6,9) chunk-based accumulation, FP16 master weights
updated with stochastic rounding, the first and last layers in 16-bit.

The network is a 64-h-h-10 ReLU MLP on scikit-learn's digits (the pattern of
:mod:`fp8mac.model.workloads`, one hidden layer deeper: with only two layers, "first and last
layer in 16-bit" would leave no FP8 layer at all; here the middle layer is FP8). The data split is
fixed (``load_digits(seed=0)``: 1,438 training and 359 test images) and the pixels are
standardized with the training set's mean and standard deviation (+0.1); each training seed fixes
the initialisation, the batch order and the random streams. Plain SGD, no momentum.

Per batch, every GEMM runs through :func:`~fp8mac.model.gemm.mac_gemm` (bit-exact), via
:func:`~fp8mac.model.layers.gemm_layer`: forward ``X W`` for the three layers, backward
``dY W^T`` for layers 3 and 2 (layer 1 needs no input gradient) and weight gradients ``X^T dY``
(K = the batch) for all three. Operands are quantized with per-tensor power-of-two scales
(:func:`~fp8mac.model.layers.quantize`): exact, undone after accumulation. This is the paper's
loss scaling made automatic: the error tensors are scaled by a power of two so that they land in
FP8's range instead of underflowing. Element-wise work (bias add, ReLU, softmax, loss, bias
gradients as column sums) is float32, as in the paper's emulation.

Weight update: master weights and biases are ``fp16_ibm`` codes; each step computes
``w <- round(w + (-lr) * g)`` with :func:`~fp8mac.model.update.sgd_update` (one rounding, the FP16
AXPY of a weight-update unit), ``g`` the gradient rounded to ``fp16_ibm``, ``-lr`` the nearest
``fp16_ibm`` value, and stochastic rounding with 8 random bits drawn from a 32-bit LFSR
(:class:`~fp8mac.model.lfsr.Lfsr`, one stream per parameter tensor, seeded from the run seed).

Variants (``VARIANTS``): FP32 (float32 NumPy throughout), the paper's FP8 scheme, three
ablations (no chunking, round-to-nearest weight update, FP8 first and last layers) and the hybrid
FP8 scheme of Sun et al., "Hybrid 8-bit Floating Point (HFP8) Training and Inference for Deep
Neural Networks" (NeurIPS 2019), in two forms:

* ``hfp8``: (1,4,3) weights and activations, (1,5,2) errors. Each GEMM takes its two operands in
  their own formats (``MacConfig.a_format`` / ``b_format``): forward ``X W`` is E4M3 x E4M3,
  backward ``dY W^T`` E5M2 x E4M3, weight gradient ``X^T dY`` E4M3 x E5M2. The (1,4,3) format is
  OCP E4M3 (``fp8_e4m3``: bias 7, no infinities) -- an assumption: the paper's own text could not
  be consulted here (see :data:`E4M3_B11`). Everything else (fp16_ibm chunked accumulation, 16-bit
  first and last layers, stochastic-rounding FP16 weight update) is this study's Wang et al.
  scheme, not checked against the HFP8 paper either: only the operand formats change.
* ``hfp8-b11``: the same with :data:`E4M3_B11` (bias 11) for the (1,4,3) tensors.

Every FP8 variant records, per step and layer, the relative error of its weight gradient ``X^T dY``
against a float32 GEMM of the same quantized operands
(:meth:`~fp8mac.model.layers.LayerGemm.rel_error`): the accumulation error alone. With ``batch`` =
1438 (``LONG``: full-batch steps) the weight-gradient dot products are K = 1438 long, where plain
FP16 accumulation loses accuracy; chunking and the no-chunking ablation differ only there (every
other GEMM of this network has K <= 64 at the default width: one chunk, where the two
accumulations are the same sums). ``LONG`` also measures, on the FP32 runs, how far the gradient
of a random 128-image sub-batch lies from the full-batch one: the sampling noise minibatch SGD
trains with, the yardstick for the accumulation error.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..config import MacConfig
from ..formats import FORMATS, FloatFormat, format_by_name
from ..layers import gemm_layer
from ..lfsr import Lfsr, stream_seed
from ..update import sgd_update
from ..workloads import load_digits
from . import lowbit
from .accumulation import check_int, check_jobs, check_seed
from .report import Report, fmt_pct, fmt_sci, new_figure, save_figure, check_out_dir

__all__ = ["Variant", "VARIANTS", "TrainRun", "TrainResult", "train_mlp", "run_train",
           "write_train", "gemm_configs", "block_mac", "E4M3_B11", "DEFAULT", "QUICK", "LONG", "FOUR_BIT",
           "TRAIN_IMAGES"]

TRAIN_IMAGES = 1438
"""Training images of the fixed digits split: the largest batch, a full-batch step."""

E4M3_B11 = FORMATS["fp8_e4m3_b11"]
"""(1,4,3) with exponent bias 11 (the preset ``fp8_e4m3_b11``): normals 2**-10 .. 1.875 * 2**4 =
30, subnormals down to 2**-13, every code finite.

The bias that the OpenXLA StableHLO RFC "E4M3B11FNUZ in XLA" (openxla/stablehlo
rfcs/20230309-e4m3b11.md, 2023), the LLVM APFloat change adding ``Float8E4M3B11FNUZ`` and the
StableHLO specification attribute to the (1,4,3) format of Sun et al. (HFP8, NeurIPS 2019): "an FP
format with 4 bits of exponent, 3 bits of significand and an exponent bias of 11". That is a
secondary attribution; the paper's own statement of the bias (and of its special values) could not
be consulted here, so the ``hfp8`` variant keeps OCP E4M3 and ``hfp8-b11`` runs this one. Its
finite values are exactly ml_dtypes' ``float8_e4m3b11fnuz``'s; that type (Google's hardware
variant) spends code 0x80 on its NaN where this one has -0.
"""

DEFAULT = dict(variants=("fp32", "fp8", "no-chunk", "nearest-update", "fp8-edges", "hfp8",
                         "hfp8-b11"),
               seeds=(0, 1, 2), hidden=32, epochs=4, batch=128, lr=0.5, chunk=64)
"""Default size (about 75 s with one worker process)."""
QUICK = dict(variants=("fp32", "fp8"), seeds=(0,), hidden=16, epochs=2, batch=128, lr=0.5,
             chunk=64)
"""``--quick`` size (tests): FP32 and the paper's scheme, one seed, two epochs."""
LONG = dict(variants=("fp32", "fp8", "no-chunk"), seeds=(0, 1, 2), hidden=32, epochs=100,
            batch=TRAIN_IMAGES, lr=0.5, chunk=64, noise_batch=128)
"""``--long`` size: full-batch gradient descent (one step per epoch, 100 steps), so every
weight-gradient GEMM is K = 1438 long; FP32, the paper's scheme and no chunking, and the sampling
noise of a batch-128 gradient on the FP32 runs (about 10 minutes with one worker process)."""
FOUR_BIT = dict(DEFAULT, variants=("fp32", "fp8", "mxfp8", "mxfp4", "nvfp4", "ibm4", "mxfp4-all",
                                   "nvfp4-all", "ibm4-all"))
"""``--4bit``: the default size with FP32, the paper's FP8 scheme and the block-scaled and 4-bit
recipes of :mod:`.lowbit`, in the middle layer and in every layer (``-all``)."""


@dataclass(frozen=True)
class Variant:
    """One training arithmetic.

    Attributes
    ----------
    key, label : str
    fp8 : bool
        GEMMs on the array's golden model (False: float32 NumPy).
    chunk : bool
        Chunk-based accumulation (the study's chunk size) or plain accumulation.
    update : {"stochastic", "nearest"}
        Rounding of the fp16_ibm weight update.
    edges16 : bool
        First and last layers' GEMMs with fp16_ibm operands (False: FP8 like the others).
    fwd_format, err_format : str or FloatFormat
        The FP8 layers' formats of weights and activations (``fwd_format``) and of the error
        tensors ``dY`` (``err_format``); see :func:`gemm_configs`.
    recipe : str or None
        A block-scaled or 4-bit recipe of :data:`.lowbit.RECIPES`: the layers that are not
        fp16_ibm (``edges16``) run their GEMMs by it, through ``block_gemm``.
    """

    key: str
    label: str
    fp8: bool = True
    chunk: bool = True
    update: str = "stochastic"
    edges16: bool = True
    fwd_format: str | FloatFormat = "fp8_e5m2"
    err_format: str | FloatFormat = "fp8_e5m2"
    recipe: str | None = None


VARIANTS = {v.key: v for v in (
    Variant("fp32", "FP32 baseline", fp8=False),
    Variant("fp8", "FP8 (paper: chunked FP16 acc, SR update, 16-bit first/last)"),
    Variant("no-chunk", "FP8, no chunking", chunk=False),
    Variant("nearest-update", "FP8, nearest-rounding weight update", update="nearest"),
    Variant("fp8-edges", "FP8, first/last layers in FP8 too", edges16=False),
    Variant("hfp8", "HFP8: E4M3 weights/activations, E5M2 errors (else as FP8)",
            fwd_format="fp8_e4m3"),
    Variant("hfp8-b11", "HFP8 with E4M3 bias 11", fwd_format=E4M3_B11),
    Variant("mxfp8", "MXFP8 (OCP MX: E4M3 weights/activations, E5M2 errors)", recipe="mxfp8"),
    Variant("mxfp4", "MXFP4 backward (Tseng et al.: SR x3/4, RHT; MXFP8 forward)", recipe="mxfp4"),
    Variant("nvfp4", "NVFP4 (NVIDIA: all GEMMs, SR errors, 2-D weights, RHT wgrad)", recipe="nvfp4"),
    Variant("ibm4", "IBM 4-bit (Sun et al. 2020: INT4 w/x, radix-4 errors, TPR)", recipe="ibm4"),
    Variant("mxfp4-all", "MXFP4 backward, every layer", recipe="mxfp4", edges16=False),
    Variant("nvfp4-all", "NVFP4, every layer", recipe="nvfp4", edges16=False),
    Variant("ibm4-all", "IBM 4-bit, every layer", recipe="ibm4", edges16=False),
)}

GEMMS = ("fwd", "bwd", "wgrad")
"""The three GEMMs of a layer: forward ``X W``, backward ``dY W^T``, weight gradient ``X^T dY``."""


def gemm_configs(variant: Variant, chunk: int) -> list:
    """Per layer (three), the :class:`MacConfig` of each GEMM kind (:data:`GEMMS`), seed 1.

    A stream first: forward ``X W`` takes (fwd, fwd) formats, backward ``dY W^T`` (err, fwd) and
    the weight gradient ``X^T dY`` (fwd, err), from the variant's ``fwd_format`` and
    ``err_format``; the first and last layers take fp16_ibm on both streams when ``edges16``.
    Accumulation: fp16_ibm, chunks of ``chunk`` products (``None`` when the variant does not chunk),
    the array's default rounding.
    """
    acc = dict(acc_format="fp16_ibm", chunk=chunk if variant.chunk else None)
    fwd = format_by_name(variant.fwd_format, "fwd_format")
    err = format_by_name(variant.err_format, "err_format")

    def layer(f, e):
        return {"fwd": MacConfig(a_format=f, b_format=f, **acc),
                "bwd": MacConfig(a_format=e, b_format=f, **acc),
                "wgrad": MacConfig(a_format=f, b_format=e, **acc)}

    mid = layer(fwd, err)
    edge = layer(FORMATS["fp16_ibm"], FORMATS["fp16_ibm"]) if variant.edges16 else mid
    return [edge, mid, edge]


def block_mac(variant: Variant, chunk: int) -> MacConfig | None:
    """The :class:`MacConfig` (accumulator, chunking; array defaults otherwise) of a recipe
    variant's block GEMMs, seed 1; None for the other variants."""
    if variant.recipe is None:
        return None
    acc = lowbit.RECIPES[variant.recipe].acc_format
    return MacConfig(acc_format=acc, chunk=chunk if variant.chunk else None)


def block_layers(variant: Variant) -> tuple:
    """The layers (0, 1, 2) whose GEMMs a recipe variant runs by its recipe."""
    if variant.recipe is None:
        return ()
    return (1,) if variant.edges16 else (0, 1, 2)


@dataclass
class TrainRun:
    """One training run: per-epoch test accuracy and mean training loss, and the final accuracy."""

    variant: str
    seed: int
    test_accuracy: list
    train_loss: list
    seconds: float
    wgrad_error: list = field(default_factory=list)
    """Per step, the three layers' weight-gradient relative errors against a float32 GEMM of the
    same quantized operands (empty for FP32)."""
    sampling_noise: list = field(default_factory=list)
    """Per step (FP32 with ``noise_batch`` only), the three layers' relative distance between a
    random sub-batch's weight gradient and the step's (see :func:`train_mlp`)."""
    gemm_error: list = field(default_factory=list)
    """Per step, per layer, the forward, backward (None for layer 1) and weight-gradient GEMMs'
    relative errors against the float32 GEMM of the unquantized operands: quantization and
    accumulation together (empty for FP32)."""

    @property
    def final(self) -> float:
        return self.test_accuracy[-1]


def _softmax_xent(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-30))))
    p[np.arange(len(y)), y] -= 1.0
    return loss, (p / len(y)).astype(np.float32)


class _Mlp:
    """The 64-h-h-10 MLP with its parameters held as fp16_ibm codes (FP8 variants) or float32."""

    FP16 = FORMATS["fp16_ibm"]

    def __init__(self, variant: Variant, hidden, lr, chunk, seed, rng):
        self.v = variant
        sizes = [(64, hidden), (hidden, hidden), (hidden, 10)]
        ws = [(rng.standard_normal(s) * math.sqrt(2.0 / s[0])).astype(np.float32) for s in sizes]
        bs = [np.zeros(s[1], np.float32) for s in sizes]
        self.params = ws + bs  # w1 w2 w3 b1 b2 b3
        self.lr = lr
        self.calls = 0
        self.seed = seed
        if variant.fp8:
            self.codes = [self.FP16.encode(p) for p in self.params]
            self.params = [self.FP16.decode(c).astype(np.float32) for c in self.codes]
            self.lr_code = int(self.FP16.encode(lr))
            self.lfsrs = [Lfsr(32, stream_seed(seed, 0, 0, 2 + i, 32)) for i in range(6)]
            self.configs = gemm_configs(variant, chunk)  # per layer, per GEMM kind
            self.block_mac = block_mac(variant, chunk)
            self.block_layers = block_layers(variant)
            if variant.recipe is not None:
                self.recipe = lowbit.RECIPES[variant.recipe]
                self.qrng = np.random.default_rng([seed, 2])  # element SR bits and RHT signs
        self.wgrad_error = []  # per step: the three layers' weight-gradient errors
        self.gemm_error = []  # per step: per layer, the three GEMMs' errors against FP32
        self._gemm_errors = None

    def gemm(self, layer, kind, a, b):
        if not self.v.fp8:
            return a @ b
        self.calls += 1  # a free-running LFSR: every GEMM call starts from a fresh seed
        seed = (self.seed * 1_000_003 + self.calls) % (1 << 64)
        name = f"layer {layer + 1} {kind}"
        if layer in self.block_layers:
            g = lowbit.block_layer(name, a, b, self.recipe, kind, self.block_mac.replace(seed=seed), self.qrng,
                                   first_layer=layer == 0)
        else:
            g = gemm_layer(name, a, b, self.configs[layer][kind].replace(seed=seed))
        if kind == "wgrad":
            self._errors[layer] = g.rel_error()
        if self._gemm_errors is not None:
            self._gemm_errors[layer][GEMMS.index(kind)] = g.rel_error("fp32")
        return g.values.astype(np.float32)

    def forward(self, x):
        w1, w2, w3, b1, b2, b3 = self.params
        h1 = np.maximum(self.gemm(0, "fwd", x, w1) + b1, 0)
        h2 = np.maximum(self.gemm(1, "fwd", h1, w2) + b2, 0)
        return h1, h2, self.gemm(2, "fwd", h2, w3) + b3

    def gradients(self, x, y):
        """Loss and gradients (w1 w2 w3 b1 b2 b3) of the mean loss over ``(x, y)``."""
        w1, w2, w3, *_ = self.params
        h1, h2, logits = self.forward(x)
        loss, d3 = _softmax_xent(logits, y)
        g_w3 = self.gemm(2, "wgrad", h2.T, d3)
        d2 = self.gemm(2, "bwd", d3, w3.T) * (h2 > 0)
        g_w2 = self.gemm(1, "wgrad", h1.T, d2)
        d1 = self.gemm(1, "bwd", d2, w2.T) * (h1 > 0)
        g_w1 = self.gemm(0, "wgrad", x.T, d1)
        return loss, [g_w1, g_w2, g_w3, d1.sum(0), d2.sum(0), d3.sum(0)]

    def step(self, x, y):
        self._errors = [None] * 3
        self._gemm_errors = [[None] * 3 for _ in range(3)] if self.v.fp8 else None
        loss, grads = self.gradients(x, y)
        if self.v.fp8:
            self.wgrad_error.append(self._errors)
            self.gemm_error.append(self._gemm_errors)
        self._gemm_errors = None
        self.update(grads)
        return loss, grads

    def update(self, grads):
        if not self.v.fp8:
            self.params = [p - self.lr * g for p, g in zip(self.params, grads)]
            return
        for i, g in enumerate(grads):
            # The update the layer engine's UPDATE computes (one definition: model/update.py).
            c = sgd_update(self.FP16, self.codes[i], self.FP16.encode(g), self.lr_code, self.v.update,
                           self.lfsrs[i] if self.v.update == "stochastic" else None, 8)
            self.codes[i] = c
            self.params[i] = self.FP16.decode(c).astype(np.float32)

    def accuracy(self, x, y):
        return float(np.mean(np.argmax(self.forward(x)[2], axis=1) == y))


def _rel_distance(a, b) -> float:
    """``|a - b| / |b|`` (Frobenius norms, float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def train_mlp(variant="fp8", seed=0, hidden=32, epochs=5, batch=128, lr=0.5, chunk=64,
              train_limit=None, noise_batch=None) -> TrainRun:
    """Train one variant with one seed; returns its per-epoch test accuracy and loss.

    ``train_limit`` keeps only the first that many training images (tests). ``noise_batch``
    (FP32 only; ignored by the FP8 variants) measures at every step how far the weight gradients
    of a random subset of that many of the step's images (float32, drawn from a generator of its
    own, seeded ``[seed, 1]``, so the training itself is unchanged) lie from the step's
    gradients: :attr:`TrainRun.sampling_noise`.

    Raises
    ------
    ValueError
        For an unknown variant or an out-of-range size.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_digits(0)
    if train_limit is not None:
        xtr, ytr = xtr[:train_limit], ytr[:train_limit]
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 0.1  # standardized pixels (train statistics)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    rng = np.random.default_rng(seed)
    mlp = _Mlp(VARIANTS[variant], hidden, lr, chunk, seed, rng)
    measure = noise_batch is not None and not mlp.v.fp8
    noise_rng = np.random.default_rng([seed, 1]) if measure else None
    acc, losses, noise = [], [], []
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        ls = []
        for i in range(0, len(xtr), batch):
            xb, yb = xtr[order[i:i + batch]], ytr[order[i:i + batch]]
            if measure:
                sub = noise_rng.choice(len(xb), size=min(noise_batch, len(xb)), replace=False)
                g_sub = mlp.gradients(xb[sub], yb[sub])[1]
            loss, grads = mlp.step(xb, yb)
            if measure:
                noise.append([_rel_distance(g_sub[j], grads[j]) for j in range(3)])
            ls.append(loss)
        losses.append(float(np.mean(ls)))
        acc.append(mlp.accuracy(xte, yte))
    return TrainRun(variant, seed, acc, losses, time.perf_counter() - t0, mlp.wgrad_error, noise,
                    mlp.gemm_error)


def _train_job(args):
    return train_mlp(*args)


@dataclass
class TrainResult:
    """Runs of every variant and seed, and the parameters that reproduce them."""

    runs: list
    params: dict
    seconds: float

    def summary(self, variant):
        """``(mean, sample standard deviation, min, max)`` of the final test accuracy."""
        finals = np.array([r.final for r in self.runs if r.variant == variant])
        sd = float(finals.std(ddof=1)) if len(finals) > 1 else 0.0
        return float(finals.mean()), sd, float(finals.min()), float(finals.max())


def run_train(variants=DEFAULT["variants"], seeds=DEFAULT["seeds"], hidden=DEFAULT["hidden"],
              epochs=DEFAULT["epochs"], batch=DEFAULT["batch"], lr=DEFAULT["lr"],
              chunk=DEFAULT["chunk"], noise_batch=None, jobs=1, log=print) -> TrainResult:
    """Train every variant with every seed (see the module docstring).

    Raises
    ------
    ValueError
        For an unknown variant, a bad seed or an out-of-range size; the message names it.
    """
    t0 = time.perf_counter()
    variants = list(variants)
    if not variants:
        raise ValueError(f"variants must name at least one of {', '.join(VARIANTS)}")
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"variants must be among {', '.join(VARIANTS)}, not {v!r}")
    seeds = [check_seed(s, "seeds") for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one integer in 0..2**64-1")
    hidden = check_int("hidden", hidden, 1, 1024)
    epochs = check_int("epochs", epochs, 1, 1000)
    batch = check_int("batch", batch, 1, TRAIN_IMAGES)
    chunk = check_int("chunk", chunk, 1, 1 << 20)
    if noise_batch is not None:
        noise_batch = check_int("noise_batch", noise_batch, 1, TRAIN_IMAGES)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, not {lr!r}")
    jobs = check_jobs(jobs)
    log(f"train study: seeds {seeds}, 64-{hidden}-{hidden}-10 MLP, {epochs} epochs, batch {batch}, "
        f"lr {lr}, chunk {chunk}, variants {', '.join(variants)}"
        + ("" if noise_batch is None else f", sampling noise of {noise_batch}-image sub-batches"))
    args = [(v, s, hidden, epochs, batch, lr, chunk, None, noise_batch) for v in variants for s in seeds]
    if jobs == 1:
        runs = [_train_job(a) for a in args]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            runs = list(pool.map(_train_job, args))
    for r in runs:
        log(f"  {r.variant:<15} seed {r.seed}: test accuracy {r.final:.3f} ({r.seconds:.1f} s)")
    params = dict(variants=variants, seeds=seeds, hidden=hidden, epochs=epochs, batch=batch,
                  lr=lr, chunk=chunk, noise_batch=noise_batch)
    return TrainResult(runs, params, time.perf_counter() - t0)


LAYER_STYLES = (":", "-", "--")
"""Line styles of layers 1, 2, 3 in the weight-gradient error panel."""


def _wgrad_errors(result, variant):
    """Array (seeds x steps x 3 layers) of a variant's weight-gradient errors (None for FP32)."""
    runs = [r for r in result.runs if r.variant == variant and r.wgrad_error]
    return np.array([r.wgrad_error for r in runs], dtype=np.float64) if runs else None


def _operand_formats(variant: Variant, chunk: int) -> list:
    """``A x B`` format labels of the middle (FP8) layer's forward, backward and weight-gradient
    GEMMs, then the first/last layers' (all three alike)."""
    cfgs = gemm_configs(variant, chunk)
    label = lambda c: f"{c.a_format.label} x {c.b_format.label}"  # noqa: E731
    edges = {label(cfgs[0][k]) for k in GEMMS}
    if variant.recipe is not None:
        recipe = lowbit.RECIPES[variant.recipe]
        mid = [recipe.operand_label(k) for k in GEMMS]
        if not variant.edges16:
            first = recipe.input_quant
            return mid + ["as layer 2" + (f" (layer 1's input {first.label})" if first else "")]
        return mid + [" / ".join(sorted(edges))]
    return [label(cfgs[1][k]) for k in GEMMS] + [" / ".join(sorted(edges))]


def _four_bit_gemms(variant: Variant) -> str:
    """Which GEMMs of a recipe variant have 4-bit operands on both streams."""
    recipe = lowbit.RECIPES[variant.recipe]
    kinds = {"fwd": "forward", "bwd": "backward", "wgrad": "weight gradient"}
    four = [kinds[k] for k in GEMMS if recipe.four_bit(k)]
    layers = "layer 2" if variant.edges16 else "layers 1-3"
    return f"{layers}: {', '.join(four)}" if four else "none"


def _block_reading(result, blocks) -> str:
    """What the recipe variants' final accuracies say against FP32 (one paragraph)."""
    m32 = result.summary("fp32")[0]
    l32 = np.mean([r.train_loss[-1] for r in result.runs if r.variant == "fp32"])
    sds = [result.summary(v)[1] for v in ["fp32"] + list(blocks)]
    near, below = [], []
    for v in blocks:
        mean = result.summary(v)[0]
        loss = np.mean([r.train_loss[-1] for r in result.runs if r.variant == v])
        d = round(100 * (mean - m32), 1)  # as the table shows it
        (near if d >= -1.0 else below).append(f"`{v}` ({d:+.1f} points, final loss {loss:.3f})")
    text = (f"Reading the accuracy table: the standard deviation over seeds is {100 * min(sds):.1f} to "
            f"{100 * max(sds):.1f} points here. At most 1 point from FP32 ({fmt_pct(m32)} %, final loss "
            f"{l32:.3f}): {', '.join(near) if near else 'none'}. ")
    if below:
        text += f"More than 1 point below: {', '.join(below)}. "
    return text + ("The GEMM error table below shows what each layer's arithmetic costs per GEMM; "
                   "SGD averages those errors over steps, so a GEMM tens of per cent off the FP32 "
                   "product still trains here. One small network on one data set: this says which "
                   "recipes break first, not what they cost on large models.")


def _gemm_errors(result, variant):
    """Array (seeds x steps x 3 layers x 3 GEMMs) of a variant's GEMM errors against FP32 (NaN
    for layer 1's backward, which is not computed), or None."""
    runs = [r for r in result.runs if r.variant == variant and r.gemm_error]
    if not runs:
        return None
    return np.array([[[[np.nan if e is None else e for e in layer] for layer in step] for step in r.gemm_error]
                     for r in runs], dtype=np.float64)


def write_train(result: TrainResult, out, command="fp8mac study train", name="train"):
    """Write ``<name>.md`` and ``<name>.png`` into ``out``; returns both paths."""
    out = check_out_dir(out)
    p = result.params
    fp8 = [v for v in p["variants"] if VARIANTS[v].fp8]
    errors = {v: _wgrad_errors(result, v) for v in fp8}
    errors = {v: e for v, e in errors.items() if e is not None}
    full = p["batch"] >= TRAIN_IMAGES
    blocks = [v for v in p["variants"] if VARIANTS[v].recipe is not None]
    gerr = {v: _gemm_errors(result, v) for v in fp8} if blocks else {}
    gerr = {v: e for v, e in gerr.items() if e is not None}
    panels = 2 + bool(errors) + bool(gerr)
    fig, axes = new_figure(2 if panels == 4 else panels, 2 if panels == 4 else 1, size=(5.6, 4.4))
    flat = [a for row in axes for a in row]
    ax, ax2 = flat[:2]
    ep = np.arange(1, p["epochs"] + 1)
    colors = {}
    for i, v in enumerate(p["variants"]):
        runs = [r for r in result.runs if r.variant == v]
        acc = np.array([r.test_accuracy for r in runs])
        loss = np.array([r.train_loss for r in runs])
        style = dict(color="black", lw=2) if v == "fp32" else dict(color=f"C{i}")
        colors[v] = style["color"]
        marker = dict(marker="o", ms=3) if len(ep) <= 20 else {}
        ax.plot(ep, acc.mean(0), label=VARIANTS[v].label, **marker, **style)
        if len(runs) > 1:
            ax.fill_between(ep, acc.min(0), acc.max(0), alpha=0.15, color=style["color"])
        ax2.plot(ep, loss.mean(0), label=VARIANTS[v].label, **marker, **style)
    if len(ep) <= 20:
        for a in (ax, ax2):
            a.set_xticks(ep)
    xlabel = "step (full batch: one per epoch)" if full else "epoch"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (mean; band: min..max over seeds)")
    ax.set_title(f"digits 64-{p['hidden']}-{p['hidden']}-10 MLP, batch {p['batch']}, "
                 f"seeds {p['seeds']}")
    ax.legend(fontsize=7 if len(p["variants"]) <= 7 else 6)
    ax.grid(True, alpha=0.3)
    ax2.set_yscale("log")
    ax2.set_xlabel(xlabel)
    ax2.set_ylabel("mean training loss")
    ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)
    if errors:
        ax3 = flat[2]
        # fp32 accumulators (block recipes) leave errors of ~1e-10 or exactly 0: the table lists them
        shown = {v: e for v, e in errors.items() if block_mac(VARIANTS[v], p["chunk"]) is None
                 or block_mac(VARIANTS[v], p["chunk"]).acc_format.name != "fp32"}
        per_layer = len(shown) <= 3
        for v, e in shown.items():
            steps = np.arange(1, e.shape[1] + 1)
            if per_layer:
                for layer in range(3):
                    ax3.plot(steps, e[:, :, layer].mean(0), color=colors[v], lw=1,
                             ls=LAYER_STYLES[layer], label=f"{v}, layer {layer + 1}")
            else:
                ax3.plot(steps, e.mean(axis=(0, 2)), color=colors[v], lw=1, label=v)
        ax3.set_yscale("log")
        ax3.set_xlabel("training step")
        ax3.set_ylabel("|dW - dW_32| / |dW_32|, same operands"
                       + ("" if per_layer else " (mean of 3 layers)"))
        ax3.set_title(f"accumulation error of X^T dY (K = {p['batch']})"
                      + ("\n(recipes accumulating in fp32 left out: see the table)" if len(shown) < len(errors) else ""))
        ax3.legend(fontsize=6)
        ax3.grid(True, alpha=0.3, which="both")
    if gerr:
        ax4 = flat[3 if errors else 2]
        for v, e in gerr.items():
            steps = np.arange(1, e.shape[1] + 1)
            ax4.plot(steps, e[:, :, 1, :].mean(axis=(0, 2)), color=colors[v], lw=1, label=v)
        ax4.set_yscale("log")
        ax4.set_xlabel("training step")
        ax4.set_ylabel("|Y - Y_32| / |Y_32| vs unquantized FP32 (mean of 3 GEMMs)")
        ax4.set_title("layer 2's GEMM error: quantization + accumulation")
        ax4.legend(fontsize=6)
        ax4.grid(True, alpha=0.3, which="both")
    png = save_figure(fig, out / f"{name}.png")

    title = "Training: digits MLP with every GEMM on the FP8 array's golden model"
    if blocks:
        title = "Training: digits MLP with block-scaled and 4-bit GEMMs (golden model)"
    if full:
        title += ", full-batch steps"
    rep = Report(title)
    steps = (f"full-batch gradient descent: {p['epochs']} steps of all {TRAIN_IMAGES} training "
             f"images, so every weight-gradient GEMM has K = {p['batch']}" if full else
             f"{p['epochs']} epochs, batch {p['batch']}")
    rep.text(f"Command: `{command}`. 64-{p['hidden']}-{p['hidden']}-10 ReLU MLP on scikit-learn's "
             f"digits (fixed split: 1,438 train / 359 test), plain SGD ({steps}), learning rate "
             f"{p['lr']}, seeds {p['seeds']} (initialisation, batch order, random streams). FP8 "
             f"variants: every forward, backward and weight-gradient GEMM through `mac_gemm` (FP8 "
             f"operands with per-tensor power-of-two scaling: E5M2 unless the variant says "
             f"otherwise, see the operand table; fp16_ibm accumulation, chunk {p['chunk']}, the "
             f"array's default rounding: nearest inside chunks, stochastic across), fp16_ibm "
             f"master weights updated by a fused FP16 AXPY with stochastic rounding (8 LFSR "
             f"bits). The middle layer is the FP8 one; the first and last layers' GEMMs take "
             f"fp16_ibm operands, as in the paper.")
    if blocks:
        rep.text(f"Block-scaled and 4-bit variants ({', '.join(f'`{v}`' for v in blocks)}): the GEMMs of the "
                 f"layers they quantize run through `block_gemm`, the bit-exact model of a block-scaled "
                 f"MAC array (element and scale codes in, the accumulator's codes out: exactly what the "
                 f"generated hardware computes), with the recipe's accumulator and chunk {p['chunk']}; "
                 f"operands are quantized by the recipe (below) with random bits from a generator seeded "
                 f"by the run's seed. Everything else is the FP8 scheme above. Variants ending in `-all` "
                 f"quantize all three layers; the others only the middle one, the first and last layers "
                 f"staying fp16_ibm as in the FP8 scheme and in the papers (NVIDIA keeps the output head "
                 f"and the last layers in BF16).")
    rep.image(f"{name}.png", "test accuracy, training loss, weight-gradient accumulation error"
              + (" and GEMM error against FP32" if gerr else ""))
    base = p["variants"][0] if "fp32" not in p["variants"] else "fp32"
    bmean = result.summary(base)[0]
    rows = []
    for v in p["variants"]:
        mean, sd, lo, hi = result.summary(v)
        loss = np.array([r.train_loss[-1] for r in result.runs if r.variant == v])
        rows.append([VARIANTS[v].label, f"{fmt_pct(mean)} +- {fmt_pct(sd)}",
                     f"{fmt_pct(lo)} .. {fmt_pct(hi)}",
                     "-" if v == base else f"{100 * (mean - bmean):+.1f}",
                     f"{loss.mean():.3f}"])
    rep.heading("Final test accuracy (%)")
    rep.table(["variant", "mean +- sd", "min .. max", f"vs {VARIANTS[base].label} (points)",
               "final training loss"], rows)
    k = len(p["seeds"])
    rep.text(f"Mean and sample standard deviation over {k} seed{'s' if k > 1 else ''} (the band in "
             f"the plot: min..max); final training loss: the last epoch's mean loss, mean over seeds.")
    if fp8:
        rep.heading("Operand formats of each GEMM (A x B)")
        rep.table(["variant", "layer 2: forward X W", "layer 2: backward dY W^T",
                   "layer 2: weight gradient X^T dY", "layers 1 and 3: all three"],
                  [[VARIANTS[v].label] + _operand_formats(VARIANTS[v], p["chunk"]) for v in fp8])
        if any(v.startswith("hfp8") for v in fp8):
            rep.text("HFP8 (Sun et al., NeurIPS 2019): (1,4,3) weights and activations, (1,5,2) "
                     "errors. `fp8_e4m3` is OCP E4M3 (bias 7, no infinities), an assumption: the "
                     "paper's own statement of its (1,4,3) bias could not be consulted. "
                     "`fp8_e4m3_b11` (bias 11, every code finite) is the bias that the OpenXLA "
                     "StableHLO RFC for E4M3B11FNUZ and LLVM's Float8E4M3B11FNUZ attribute to the "
                     "paper. With per-tensor power-of-two scaling the bias only moves where the "
                     "scale puts a tensor (`operand_top_exp`: half the smaller top exponent of the "
                     "two operand formats). Accumulation, first/last layers and weight update are "
                     "this study's scheme for every FP8 variant; only the operand formats change.")
    if blocks:
        rep.heading("Block-scaled and 4-bit recipes")
        rep.table(["variant", "4-bit GEMMs (both operands)", "accumulator"],
                  [[f"`{v}`", _four_bit_gemms(VARIANTS[v]),
                    f"{lowbit.RECIPES[VARIANTS[v].recipe].acc_format}, chunk {p['chunk']}"] for v in blocks])
        rep.text(lowbit.FORMAT_NOTE)
        for key in dict.fromkeys(VARIANTS[v].recipe for v in blocks):
            rep.text(f"- `{key}`: {lowbit.RECIPE_NOTES[key]}")
        if base == "fp32":
            rep.text(_block_reading(result, blocks))
    if errors:
        rep.heading("Weight-gradient accumulation error")
        head = ["variant"] + [f"layer {i + 1}" for i in range(3)]
        rows = [[VARIANTS[v].label] + [f"{fmt_sci(e[:, :, i].mean())} (max {fmt_sci(e[:, :, i].max())})"
                                       for i in range(3)] for v, e in errors.items()]
        rep.table(head, rows)
        rep.text("Relative error |dW - dW_32| / |dW_32| of each weight gradient X^T dY, dW_32 the "
                 "float32 GEMM of the same quantized operands"
                 + (" (float64 for `block_gemm`'s, whose fp32 accumulators leave errors below 1e-7"
                    ")" if blocks else "") + ", so the accumulation error alone: "
                 f"mean over every step and seed (max: the worst step). K = the batch "
                 f"({p['batch']}" + ("" if full or TRAIN_IMAGES % p["batch"] == 0 else
                                     f"; each epoch's last batch {TRAIN_IMAGES % p['batch']}") + ").")
        if "fp8" in errors and "no-chunk" in errors:
            e8, en = errors["fp8"], errors["no-chunk"]
            ratios = [en[:, :, i].mean() / e8[:, :, i].mean() for i in range(3)]
            paired = [en[:, 0, i].mean() / e8[:, 0, i].mean() for i in range(3)]
            m8, mn = result.summary("fp8")[0], result.summary("no-chunk")[0]
            # Every other GEMM has K = 64 (layer 1 forward), hidden or 10: within one chunk, where
            # chunked and plain accumulation are the same sums, so the first step's weight
            # gradients see the same operands in both variants.
            same = max(64, p["hidden"]) <= p["chunk"]
            first = (f"at the first step, where both see the same operands (every other GEMM here "
                     f"has K <= {max(64, p['hidden'])}, one chunk, the same sums with or without "
                     f"chunks)" if same else "at the first step")
            rep.text(f"Without chunking the weight-gradient error is "
                     f"{', '.join(f'{r:.1f}x' for r in ratios)} the chunked one (layers 1, 2, 3, "
                     f"mean over steps); {first}, {', '.join(f'{r:.1f}x' for r in paired)}. "
                     f"Final test accuracy: "
                     f"{fmt_pct(m8)} % chunked, {fmt_pct(mn)} % without chunking "
                     f"({100 * (mn - m8):+.1f} points).")
    if gerr:
        rep.heading("GEMM error against FP32: quantization and accumulation")
        kinds = ("forward", "backward", "weight gradient")
        rows = []
        for v, e in gerr.items():
            others = [np.nanmean(e[:, :, i, :]) for i in (0, 2)]
            rows.append([VARIANTS[v].label] + [fmt_sci(float(e[:, :, 1, j].mean())) for j in range(3)]
                        + [fmt_sci(float(x)) for x in others])
        rep.table(["variant"] + [f"layer 2: {k}" for k in kinds] + ["layer 1 (mean)", "layer 3 (mean)"], rows)
        rep.text("Relative error |Y - Y_32| / |Y_32| of each GEMM's result against the float32 GEMM of the "
                 "operands before quantization (and before any Hadamard transform): what the layer's "
                 "arithmetic costs, the operands' rounding and the accumulation's together; mean over every "
                 "step and seed. Layer 1 has no backward GEMM. For comparison, the FP8 scheme's layers 1 "
                 "and 3 are fp16_ibm GEMMs.")
    noise = [r.sampling_noise for r in result.runs if r.sampling_noise]
    if noise:
        nb = p["noise_batch"]
        n = np.array(noise, dtype=np.float64)
        rep.heading(f"Sampling noise of a batch-{nb} gradient (FP32 runs)")
        rep.table(["", "layer 1", "layer 2", "layer 3"],
                  [[f"|dW_{nb} - dW| / |dW|, mean (min)"] +
                   [f"{fmt_sci(n[:, :, i].mean())} ({fmt_sci(n[:, :, i].min())})" for i in range(3)]])
        text = (f"dW_{nb}: the float32 weight gradient of {nb} of the step's images drawn at "
                f"random, dW: the step's (float32, FP32 trajectory); mean over every step and seed "
                f"(min: the closest step).")
        if errors:
            worst = max(float(e.max()) for e in errors.values())
            text += (f" An update from a gradient with relative error e lies within e of the exact "
                     f"update's length (its direction within arcsin e). The worst accumulation "
                     f"error of any FP8 run above, {fmt_sci(worst)}, is "
                     f"{float(n.min()) / worst:.0f}x below the smallest sampling noise of a "
                     f"batch-{nb} gradient ({fmt_sci(float(n.min()))}), and minibatch SGD trains "
                     f"on such gradients (the default study uses batch 128).")
        rep.text(text)
    md = rep.write(out / f"{name}.md")
    return md, png
