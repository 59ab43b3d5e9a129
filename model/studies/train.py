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
``w <- round(w + (-lr) * g)`` with :func:`~fp8mac.model.arith.fp_fma` (one rounding, the FP16
AXPY of a weight-update unit), ``g`` the gradient rounded to ``fp16_ibm``, ``-lr`` the nearest
``fp16_ibm`` value, and stochastic rounding with 8 random bits drawn from a 32-bit LFSR
(:class:`~fp8mac.model.lfsr.Lfsr`, one stream per parameter tensor, seeded from the run seed).

Variants (``VARIANTS``): FP32 (float32 NumPy throughout), the paper's FP8 scheme, and three
ablations: no chunking, round-to-nearest weight update, and FP8 first and last layers.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..arith import fp_fma
from ..config import MacConfig
from ..formats import FORMATS
from ..layers import gemm_layer
from ..lfsr import Lfsr, stream_seed
from ..workloads import load_digits
from .accumulation import check_int, check_jobs, check_seed
from .report import Report, fmt_pct, new_figure, save_figure, check_out_dir

__all__ = ["Variant", "VARIANTS", "TrainRun", "TrainResult", "train_mlp", "run_train",
           "write_train", "DEFAULT", "QUICK"]

DEFAULT = dict(variants=("fp32", "fp8", "no-chunk", "nearest-update", "fp8-edges"),
               seeds=(0, 1, 2), hidden=32, epochs=4, batch=128, lr=0.5, chunk=64)
"""Default size (about 2 minutes on two cores)."""
QUICK = dict(variants=("fp32", "fp8"), seeds=(0,), hidden=16, epochs=2, batch=128, lr=0.5,
             chunk=64)
"""``--quick`` size (tests): FP32 and the paper's scheme, one seed, two epochs."""


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
    """

    key: str
    label: str
    fp8: bool = True
    chunk: bool = True
    update: str = "stochastic"
    edges16: bool = True


VARIANTS = {v.key: v for v in (
    Variant("fp32", "FP32 baseline", fp8=False),
    Variant("fp8", "FP8 (paper: chunked FP16 acc, SR update, 16-bit first/last)"),
    Variant("no-chunk", "FP8, no chunking", chunk=False),
    Variant("nearest-update", "FP8, nearest-rounding weight update", update="nearest"),
    Variant("fp8-edges", "FP8, first/last layers in FP8 too", edges16=False),
)}


@dataclass
class TrainRun:
    """One training run: per-epoch test accuracy and mean training loss, and the final accuracy."""

    variant: str
    seed: int
    test_accuracy: list
    train_loss: list
    seconds: float

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
            self.neg_lr = self.FP16.encode(-lr)
            self.lfsrs = [Lfsr(32, stream_seed(seed, 0, 0, 2 + i, 32)) for i in range(6)]
            acc = dict(acc_format="fp16_ibm", chunk=chunk if variant.chunk else None)
            mid = MacConfig(in_format="fp8_e5m2", **acc)
            edge = MacConfig(in_format="fp16_ibm" if variant.edges16 else "fp8_e5m2", **acc)
            self.configs = [edge, mid, edge]  # per layer

    def gemm(self, layer, a, b):
        if not self.v.fp8:
            return a @ b
        self.calls += 1  # a free-running LFSR: every GEMM call starts from a fresh seed
        cfg = self.configs[layer].replace(seed=(self.seed * 1_000_003 + self.calls) % (1 << 64))
        return gemm_layer(f"layer {layer + 1}", a, b, cfg).values.astype(np.float32)

    def forward(self, x):
        w1, w2, w3, b1, b2, b3 = self.params
        h1 = np.maximum(self.gemm(0, x, w1) + b1, 0)
        h2 = np.maximum(self.gemm(1, h1, w2) + b2, 0)
        return h1, h2, self.gemm(2, h2, w3) + b3

    def step(self, x, y):
        w1, w2, w3, *_ = self.params
        h1, h2, logits = self.forward(x)
        loss, d3 = _softmax_xent(logits, y)
        g_w3 = self.gemm(2, h2.T, d3)
        d2 = self.gemm(2, d3, w3.T) * (h2 > 0)
        g_w2 = self.gemm(1, h1.T, d2)
        d1 = self.gemm(1, d2, w2.T) * (h1 > 0)
        g_w1 = self.gemm(0, x.T, d1)
        grads = [g_w1, g_w2, g_w3, d1.sum(0), d2.sum(0), d3.sum(0)]
        self.update(grads)
        return loss

    def update(self, grads):
        if not self.v.fp8:
            self.params = [p - self.lr * g for p, g in zip(self.params, grads)]
            return
        for i, g in enumerate(grads):
            g16 = self.FP16.encode(g)
            if self.v.update == "stochastic":
                rand = self.lfsrs[i].draws(g16.size, 8).reshape(g16.shape)
                c = fp_fma(self.FP16, self.FP16, self.codes[i], self.neg_lr, g16, "stochastic", rand, 8)
            else:
                c = fp_fma(self.FP16, self.FP16, self.codes[i], self.neg_lr, g16, "nearest")
            self.codes[i] = c
            self.params[i] = self.FP16.decode(c).astype(np.float32)

    def accuracy(self, x, y):
        return float(np.mean(np.argmax(self.forward(x)[2], axis=1) == y))


def train_mlp(variant="fp8", seed=0, hidden=32, epochs=5, batch=128, lr=0.5, chunk=64,
              train_limit=None) -> TrainRun:
    """Train one variant with one seed; returns its per-epoch test accuracy and loss.

    ``train_limit`` keeps only the first that many training images (tests).

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
    acc, losses = [], []
    for _ in range(epochs):
        order = rng.permutation(len(xtr))
        ls = [mlp.step(xtr[order[i:i + batch]], ytr[order[i:i + batch]])
              for i in range(0, len(xtr), batch)]
        losses.append(float(np.mean(ls)))
        acc.append(mlp.accuracy(xte, yte))
    return TrainRun(variant, seed, acc, losses, time.perf_counter() - t0)


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
              chunk=DEFAULT["chunk"], jobs=1, log=print) -> TrainResult:
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
    batch = check_int("batch", batch, 1, 1438)
    chunk = check_int("chunk", chunk, 1, 1 << 20)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, not {lr!r}")
    jobs = check_jobs(jobs)
    log(f"train study: seeds {seeds}, 64-{hidden}-{hidden}-10 MLP, {epochs} epochs, batch {batch}, "
        f"lr {lr}, chunk {chunk}, variants {', '.join(variants)}")
    args = [(v, s, hidden, epochs, batch, lr, chunk) for v in variants for s in seeds]
    if jobs == 1:
        runs = [_train_job(a) for a in args]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            runs = list(pool.map(_train_job, args))
    for r in runs:
        log(f"  {r.variant:<15} seed {r.seed}: test accuracy {r.final:.3f} ({r.seconds:.1f} s)")
    params = dict(variants=variants, seeds=seeds, hidden=hidden, epochs=epochs, batch=batch,
                  lr=lr, chunk=chunk)
    return TrainResult(runs, params, time.perf_counter() - t0)


def write_train(result: TrainResult, out, command="fp8mac study train"):
    """Write ``train.md`` and ``train.png`` into ``out``; returns both paths."""
    out = check_out_dir(out)
    p = result.params
    fig, axes = new_figure(2, 1, size=(5.6, 4.4))
    ax, ax2 = axes[0]
    ep = np.arange(1, p["epochs"] + 1)
    for i, v in enumerate(p["variants"]):
        runs = [r for r in result.runs if r.variant == v]
        acc = np.array([r.test_accuracy for r in runs])
        loss = np.array([r.train_loss for r in runs])
        style = dict(color="black", lw=2) if v == "fp32" else dict(color=f"C{i}")
        ax.plot(ep, acc.mean(0), marker="o", ms=3, label=VARIANTS[v].label, **style)
        if len(runs) > 1:
            ax.fill_between(ep, acc.min(0), acc.max(0), alpha=0.15, color=style["color"])
        ax2.plot(ep, loss.mean(0), marker="o", ms=3, label=VARIANTS[v].label, **style)
    for a in (ax, ax2):
        a.set_xticks(ep)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (mean; band: min..max over seeds)")
    ax.set_title(f"digits 64-{p['hidden']}-{p['hidden']}-10 MLP, seeds {p['seeds']}")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mean training loss")
    ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)
    png = save_figure(fig, out / "train.png")

    rep = Report("Training: digits MLP with every GEMM on the FP8 array's golden model")
    rep.text(f"Command: `{command}`. 64-{p['hidden']}-{p['hidden']}-10 ReLU MLP on scikit-learn's "
             f"digits (fixed split: 1,438 train / 359 test), plain SGD, {p['epochs']} epochs, batch "
             f"{p['batch']}, learning rate {p['lr']}, seeds {p['seeds']} (initialisation, batch "
             f"order, random streams). FP8 variants: every forward, backward and weight-gradient "
             f"GEMM through `mac_gemm` (FP8 E5M2 operands with per-tensor power-of-two scaling, "
             f"fp16_ibm accumulation, chunk {p['chunk']}, the array's default rounding: nearest "
             f"inside chunks, stochastic across), fp16_ibm master weights updated by a fused "
             f"FP16 AXPY with stochastic rounding (8 LFSR bits). The middle layer is the FP8 one; "
             f"the first and last layers' GEMMs take fp16_ibm operands, as in the paper.")
    rep.image("train.png", "test accuracy and training loss against epoch")
    base = p["variants"][0] if "fp32" not in p["variants"] else "fp32"
    bmean = result.summary(base)[0]
    rows = []
    for v in p["variants"]:
        mean, sd, lo, hi = result.summary(v)
        rows.append([VARIANTS[v].label, f"{fmt_pct(mean)} +- {fmt_pct(sd)}",
                     f"{fmt_pct(lo)} .. {fmt_pct(hi)}",
                     "-" if v == base else f"{100 * (mean - bmean):+.1f}"])
    rep.heading("Final test accuracy (%)")
    rep.table(["variant", "mean +- sd", "min .. max", f"vs {VARIANTS[base].label} (points)"], rows)
    k = len(p["seeds"])
    rep.text(f"Mean and sample standard deviation over {k} seed{'s' if k > 1 else ''} (the band in "
             f"the plot: min..max).")
    md = rep.write(out / "train.md")
    return md, png
