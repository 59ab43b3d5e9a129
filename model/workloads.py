"""Real-data workloads: a small MLP trained on scikit-learn's digits in FP32 NumPy, and its GEMMs.

The digits data set (1,797 8x8 images, 10 classes) ships inside scikit-learn: nothing is
downloaded. Training takes well under a second. :func:`digits_mlp_gemms` returns the float
operands of one training step's GEMMs (forward, backward, weight gradient per layer), which
:mod:`fp8mac.model.layers` quantizes and runs through the array's golden model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DigitsMlp", "load_digits", "train_digits_mlp", "digits_mlp_gemms", "digits_conv_operands"]


def load_digits(seed: int = 0, test_fraction: float = 0.2):
    """Digits as ``(x_train, y_train, x_test, y_test)``; pixels scaled to [0, 1], fixed split."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:  # pragma: no cover - a clear message for a missing optional dependency
        raise SystemExit("fp8mac: the digits workload needs scikit-learn (pip install scikit-learn)")
    d = _load()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


@dataclass
class DigitsMlp:
    """A 64-hidden-10 ReLU MLP; weights are ``in x out``."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def forward(self, x):
        h_pre = x @ self.w1 + self.b1
        h = np.maximum(h_pre, 0)
        return h_pre, h, h @ self.w2 + self.b2

    def accuracy(self, x, y) -> float:
        return float(np.mean(np.argmax(self.forward(x)[2], axis=1) == y))


def _softmax_grad(logits, y):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p / len(y)


def train_digits_mlp(hidden: int = 32, epochs: int = 30, batch: int = 64, lr: float = 0.1,
                     seed: int = 0) -> tuple[DigitsMlp, tuple]:
    """Train in FP32 with plain SGD; returns ``(mlp, (x_train, y_train, x_test, y_test))``."""
    data = load_digits(seed)
    x, y = data[0], data[1]
    rng = np.random.default_rng(seed)
    mlp = DigitsMlp(
        (rng.standard_normal((64, hidden)) * np.sqrt(2 / 64)).astype(np.float32),
        np.zeros(hidden, np.float32),
        (rng.standard_normal((hidden, 10)) * np.sqrt(2 / hidden)).astype(np.float32),
        np.zeros(10, np.float32),
    )
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            xb, yb = x[idx], y[idx]
            h_pre, h, logits = mlp.forward(xb)
            d_logits = _softmax_grad(logits, yb)
            dh = (d_logits @ mlp.w2.T) * (h_pre > 0)
            mlp.w2 -= lr * (h.T @ d_logits)
            mlp.b2 -= lr * d_logits.sum(0)
            mlp.w1 -= lr * (xb.T @ dh)
            mlp.b1 -= lr * dh.sum(0)
    return mlp, data


def digits_mlp_gemms(mlp: DigitsMlp, x, y) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The float operands ``(A, B)`` of one training step's GEMMs on batch ``(x, y)``.

    Keys: ``fc1.forward`` (X W1), ``fc2.forward`` (H W2), ``fc2.backward`` (dY W2^T),
    ``fc1.weight_grad`` (X^T dH: K = batch), ``fc2.weight_grad`` (H^T dY: K = batch).
    """
    h_pre, h, logits = mlp.forward(x)
    d_logits = _softmax_grad(logits, y)
    dh = (d_logits @ mlp.w2.T) * (h_pre > 0)
    return {
        "fc1.forward": (x, mlp.w1),
        "fc2.forward": (h, mlp.w2),
        "fc2.backward": (d_logits, mlp.w2.T),
        "fc1.weight_grad": (x.T, dh),
        "fc2.weight_grad": (h.T, d_logits),
    }


def digits_conv_operands(n_images: int = 8, filters: int = 4, seed: int = 0):
    """``(x, w)`` for a 3x3 convolution over digits images: x (N, 1, 8, 8), w (F, 1, 3, 3)."""
    xtr = load_digits(seed)[0][:n_images]
    rng = np.random.default_rng(seed)
    return xtr.reshape(-1, 1, 8, 8), (rng.standard_normal((filters, 1, 3, 3)) / 3).astype(np.float32)
