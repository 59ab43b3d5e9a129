"""Statistics of the shared row random source (``outer_adder = "row"``, ARCHITECTURE.md §4).

A row's outer adder hands the draws of one LFSR to its PEs in turn: PE c gets draws c, c + cols,
c + 2 cols, ... of the row's stream (:mod:`fp8mac.model.gemm`). These tests check that those
channels behave as independent uniform sources, as the per-PE LFSRs do:

* neighbouring channels are uncorrelated (Pearson correlation of their draws and of their
  rounding decisions);
* each channel's stochastic rounding is unbiased: for a part ``q / 2**r`` of an ulp below the
  value, the share of draws that round up is ``q / 2**r``.

Each check is a z-test at |z| < 5 (two-sided false-alarm rate 5.7e-7 per check under the null
hypothesis, about 1e-5 for the whole file); the LFSR sequences are deterministic, so a pass is
reproducible, and the seeds come from the default configuration and a few others.
"""

import numpy as np
import pytest

from fp8mac.model.config import MacConfig
from fp8mac.model.lfsr import STREAM_ROW_OUTER, draw_sequences, stream_seed

Z = 5.0
N = 1 << 14  # draws per channel


def channels(config, row):
    """(cols, N) draws: channel c is every cols-th draw of the row's stream, from draw c."""
    seed = stream_seed(config.seed, row, 0, STREAM_ROW_OUTER, config.lfsr_width)
    seq = draw_sequences(np.array([seed], dtype=np.uint64), config.lfsr_width, config.rbits,
                         N * config.cols)[:, 0].astype(np.int64)
    return seq.reshape(N, config.cols).T


CONFIGS = [MacConfig(outer_adder="row"), MacConfig(outer_adder="row", seed=12345, rbits=4),
           MacConfig(outer_adder="row", lfsr_width=16, rows=2, cols=16, chunk=32)]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"w{c.lfsr_width}-r{c.rbits}-s{c.seed}")
def test_neighbouring_channels_are_uncorrelated(config):
    for row in range(min(config.rows, 2)):
        ch = channels(config, row).astype(float)
        for c in range(config.cols - 1):
            rho = np.corrcoef(ch[c], ch[c + 1])[0, 1]
            assert abs(rho) * np.sqrt(N) < Z, f"row {row}: channels {c}, {c + 1} correlate: {rho:.4f}"
            # The rounding decisions too, at q = half an ulp: up iff draw >= 2**r / 2.
            up0, up1 = ch[c] >= (1 << config.rbits) / 2, ch[c + 1] >= (1 << config.rbits) / 2
            rho = np.corrcoef(up0, up1)[0, 1]
            assert abs(rho) * np.sqrt(N) < Z, f"row {row}: decisions of {c}, {c + 1} correlate: {rho:.4f}"
        # Lag one within a channel: a PE's consecutive outer roundings.
        rho = np.corrcoef(ch[0][:-1], ch[0][1:])[0, 1]
        assert abs(rho) * np.sqrt(N) < Z


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"w{c.lfsr_width}-r{c.rbits}-s{c.seed}")
def test_each_channel_rounds_without_bias(config):
    """Round up iff q + R >= 2**r (ARCHITECTURE.md §2): P(up) must be q / 2**r for every q."""
    r = config.rbits
    ch = channels(config, 0)
    for q in sorted({1, (1 << r) // 4, (1 << r) // 2, (3 << r) // 4, (1 << r) - 1}):
        p = q / (1 << r)
        sd = np.sqrt(p * (1 - p) / N)
        for c in range(config.cols):
            share = np.mean(ch[c] + q >= (1 << r))
            assert abs(share - p) < Z * sd, f"channel {c}, q = {q}: P(up) {share:.4f}, want {p:.4f}"


def test_a_correlated_source_is_caught():
    """The check can fail: an LFSR stepped once per draw instead of leaping r steps (so that
    consecutive draws share r - 1 bits) correlates at lag one, and is caught."""
    from fp8mac.model.lfsr import state_sequence

    r = 8
    seed = stream_seed(1, 0, 0, STREAM_ROW_OUTER, 32)
    states = state_sequence(np.array([seed], dtype=np.uint64), 32, 1, N + 1)[:, 0]
    draws = (states & np.uint64((1 << r) - 1)).astype(float)
    rho = np.corrcoef(draws[:-1], draws[1:])[0, 1]
    assert abs(rho) * np.sqrt(N) > Z, rho
