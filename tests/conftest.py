"""Shared fixtures: a printed, reproducible random seed.

Every random stimulus in the suite comes from the ``seed`` fixture. It takes ``FP8MAC_SEED`` from
the environment when set (decimal or ``0x`` hex) and draws a fresh one otherwise, and prints it:
pytest shows it under "Captured stdout setup" for a failing test and, with ``-rA``, for every test.
To replay a failure::

    FP8MAC_SEED=<printed value> .venv/bin/python -m pytest tests/test_model_gemm.py -k <name>
"""

from __future__ import annotations

import os
import secrets

import numpy as np
import pytest

SEED_ENV = "FP8MAC_SEED"


def _seed_from_env() -> int | None:
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text, 0)
    except ValueError:
        raise pytest.UsageError(f"{SEED_ENV} must be an integer (decimal or 0x hex), not {text!r}") from None
    if not 0 <= value < 1 << 64:
        raise pytest.UsageError(f"{SEED_ENV} must be in 0..2**64-1, not {value}")
    return value


def pytest_configure(config):
    _seed_from_env()  # a malformed FP8MAC_SEED stops the session before any test runs


def pytest_report_header(config):
    value = _seed_from_env()
    return f"{SEED_ENV}={value} (from the environment)" if value is not None else \
        f"{SEED_ENV} not set: each test draws and prints its own seed"


@pytest.fixture
def seed() -> int:
    """The test's random seed (an int in 0..2**32-1 when drawn), printed for replay."""
    value = _seed_from_env()
    if value is None:
        value = secrets.randbits(32)
    print(f"{SEED_ENV}={value}")
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """A NumPy generator seeded from ``seed``."""
    return np.random.default_rng(seed)
