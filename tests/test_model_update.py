"""fp8mac.model.update.sgd_update against an exact reference: Fractions, one rounding."""

import numpy as np
import pytest

from fp8mac.model.formats import FORMATS
from fp8mac.model.lfsr import Lfsr
from fp8mac.model.update import sgd_update

import fraction_ref

F = FORMATS["fp16_ibm"]


@pytest.mark.parametrize("rounding", ["nearest", "stochastic", "zero"])
def test_update_is_one_rounding_of_the_exact_step(rounding, seed):
    rng = np.random.default_rng(seed)
    w = F.encode(rng.normal(0, 1, 300))
    g = F.encode(rng.normal(0, 1, 300) * np.exp2(rng.integers(-12, 4, 300)))
    lr = int(F.encode(0.01))
    lfsr = Lfsr(32, int(rng.integers(1, 2**32)))
    draws = Lfsr(32, lfsr.state).draws(300, 8)  # the same stream, drawn independently
    got = sgd_update(F, w, g, lr, rounding, lfsr if rounding == "stochastic" else None, 8)
    neg_lr = lr ^ (1 << (F.width - 1))  # -lr: the sign flipped
    for k in range(300):
        want = fraction_ref.fma(F, F, int(w[k]), neg_lr, int(g[k]), rounding,
                                int(draws[k]) if rounding == "stochastic" else None, 8)
        assert int(got[k]) == want, f"element {k}: w={int(w[k]):#x} g={int(g[k]):#x} (FP8MAC_SEED={seed})"


def test_update_leaves_the_stream_after_its_draws():
    lfsr, twin = Lfsr(32, 77), Lfsr(32, 77)
    w = F.encode(np.ones((3, 4)))
    sgd_update(F, w, w, int(F.encode(0.5)), "stochastic", lfsr, 5)
    twin.draws(12, 5)
    assert lfsr.state == twin.state


def test_update_bad_input():
    w = F.encode(np.ones(3))
    with pytest.raises(ValueError, match="lfsr must be an Lfsr"):
        sgd_update(F, w, w, 0x3c00, "stochastic")
    with pytest.raises(ValueError, match="one shape"):
        sgd_update(F, w, w[:2], 0x3c00, "nearest")
    with pytest.raises(ValueError, match="rounding must be one of"):
        sgd_update(F, w, w, 0x3c00, "up")
