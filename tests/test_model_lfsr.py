"""model/lfsr.py: maximal-length LFSRs, their r-bit draws and the per-stream seeds.

The tap table is checked two ways: by brute force (the orbit of a state has length 2**w - 1) for
small widths, and for every width by proving the feedback polynomial primitive over GF(2). The
draws are compared with a bit-serial reference written from the module docstring.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from fp8mac.model import Lfsr
from fp8mac.model.lfsr import TAPS, draw_sequences, lfsr_step, stream_seed, tap_mask


# ---- a bit-serial reference, from the docstring's definition -------------------------------------

def reference_states(seed, width, n):
    """States after 1..n steps: shift left, feed the parity of the tapped bits (tap t = bit t-1) in."""
    s, out = seed, []
    for _ in range(n):
        fb = sum((s >> (t - 1)) & 1 for t in TAPS[width]) & 1
        s = ((s << 1) | fb) & ((1 << width) - 1)
        out.append(s)
    return out


def reference_draws(seed, width, rbits, n):
    """A draw of r bits: r steps, then the low r bits of the state."""
    states = reference_states(seed, width, rbits * n)
    return [states[(i + 1) * rbits - 1] & ((1 << rbits) - 1) for i in range(n)]


def test_reference_by_hand():
    # Width 32, taps (32, 22, 2, 1) = state bits 31, 21, 1, 0, from seed 1:
    # 1 -> 0b11 (bit 0 = 1) -> 0b110 (bits 1,0 = 1,1) -> 0b1101 (bit 1 = 1) -> 0b11011 (bit 0 = 1)
    # -> 0b110110 (bits 1,0 = 1,1: parity 0) -> 0b1101101 (bit 1 = 1).
    assert TAPS[32] == (32, 22, 2, 1)  # XAPP052's entry
    assert reference_states(1, 32, 6) == [3, 6, 13, 27, 54, 109]
    assert reference_draws(1, 32, 3, 2) == [13 & 7, 109 & 7]
    # bit 31 feeds back: 0x80000000 -> (shifted out) 0 | parity(bit 31) = 1
    assert reference_states(0x80000000, 32, 1) == [1]


# ---- known answers at the default width 32 ----------------------------------------------------------

@pytest.mark.parametrize("rbits", [1, 3, 8, 13, 32])
def test_draws_width32_known_answer(rbits, seed):
    seeds = [1, 0xFFFFFFFF, 0x80000000, seed % (2**32 - 1) + 1]
    n = 200
    for s in seeds:
        want = reference_draws(s, 32, rbits, n)
        one = Lfsr(32, s)
        assert [one.draw(rbits) for _ in range(n)] == want
        assert one.state == reference_states(s, 32, rbits * n)[-1]
        many = Lfsr(32, s)
        got = many.draws(n, rbits)
        assert got.dtype == np.uint32 and got.tolist() == want
        assert many.state == one.state  # draws() leaves the LFSR where n draw() calls do
        assert many.draws(5, rbits).tolist() == reference_draws(one.state, 32, rbits, 5)
    # draw_sequences: shape (n,) + seeds.shape, one independent sequence per seed
    arr = np.array(seeds, dtype=np.uint64).reshape(2, 2)
    seq = draw_sequences(arr, 32, rbits, n)
    assert seq.shape == (n, 2, 2) and seq.dtype == np.uint32
    for k, s in enumerate(seeds):
        assert seq[:, k // 2, k % 2].tolist() == reference_draws(s, 32, rbits, n)


@pytest.mark.parametrize("width", [3, 7, 16, 31, 33, 48, 64])
def test_draws_other_widths_match_reference(width, rng):
    s = int(rng.integers(1, 2**63)) % (2**width - 1) + 1
    for rbits in sorted({1, 3, min(width, 8), min(width, 32)}):
        want = reference_draws(s, width, rbits, 100)
        assert Lfsr(width, s).draws(100, rbits).tolist() == want
        assert draw_sequences(np.array([s], dtype=np.uint64), width, rbits, 100)[:, 0].tolist() == want


def test_step_matches_reference(rng):
    for width in TAPS:
        s = int(rng.integers(1, 2**63)) % (2**width - 1) + 1
        lf = Lfsr(width, s)
        got = [(lf.step(), lf.state)[1] for _ in range(3 * width)]
        assert got == reference_states(s, width, 3 * width)


def test_draws_same_with_cold_and_warm_leap_caches():
    # state_sequence caches its leap maps and their byte tables across calls: a long sequence
    # after a short one (and the reverse) must still follow the reference.
    from fp8mac.model import lfsr as lfsr_module
    seeds = np.array([1, 0xDEADBEEF], dtype=np.uint64)
    want = [reference_draws(int(s), 32, 5, 300) for s in seeds]
    for order in ((7, 300), (300, 7)):
        lfsr_module._leap_power.cache_clear()
        lfsr_module._byte_tables.cache_clear()
        for n in order:
            got = draw_sequences(seeds, 32, 5, n)
            for k in range(len(seeds)):
                assert got[:, k].tolist() == want[k][:n]


def test_draws_of_zero_length():
    lf = Lfsr(32, 12345)
    assert lf.draws(0, 8).shape == (0,) and lf.state == 12345


# ---- maximal period ----------------------------------------------------------------------------

@pytest.mark.parametrize("width", range(3, 17))
def test_period_by_brute_force(width):
    mask = tap_mask(width)
    s, steps = 1, 0
    seen_max = 0
    while True:
        s = lfsr_step(s, width, mask)
        steps += 1
        seen_max = max(seen_max, s)
        if s == 1:
            break
        assert s != 0 and steps < 1 << width
    assert steps == 2**width - 1  # all non-zero states, as the map is a bijection on them
    assert seen_max == 2**width - 1


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (bases: the first 12 primes)."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    for p in bases:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _pollard_rho(n: int, rnd: random.Random) -> int:
    """A non-trivial factor of a composite n (Brent's variant)."""
    if n % 2 == 0:
        return 2
    while True:
        y, c, m = rnd.randrange(1, n), rnd.randrange(1, n), 128
        g, r, q = 1, 1, 1
        while g == 1:
            x = y
            for _ in range(r):
                y = (y * y + c) % n
            k = 0
            while k < r and g == 1:
                ys = y
                for _ in range(min(m, r - k)):
                    y = (y * y + c) % n
                    q = q * abs(x - y) % n
                g = math.gcd(q, n)
                k += m
            r *= 2
        if g == n:
            g = 1
            while g == 1:
                ys = (ys * ys + c) % n
                g = math.gcd(abs(x - ys), n)
        if g != n:
            return g


def prime_factors(n: int, rnd: random.Random) -> list[int]:
    if n == 1:
        return []
    if _is_prime(n):
        return [n]
    d = _pollard_rho(n, rnd)
    return prime_factors(d, rnd) + prime_factors(n // d, rnd)


def test_factoring_helpers():
    rnd = random.Random(0)
    assert sorted(prime_factors(2**64 - 1, rnd)) == [3, 5, 17, 257, 641, 65537, 6700417]
    assert prime_factors(2**61 - 1, rnd) == [2**61 - 1]  # a Mersenne prime
    assert sorted(prime_factors(2**59 - 1, rnd)) == [179951, 3203431780337]
    assert not _is_prime(3215031751) and _is_prime(2**31 - 1)  # a strong pseudoprime to 2, 3, 5, 7


def _polymulmod(a: int, b: int, p: int, deg: int) -> int:
    """a * b mod p over GF(2), polynomials as bit masks (bit i = coefficient of x**i)."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if (a >> deg) & 1:
            a ^= p
    return r


def _x_pow(e: int, p: int, deg: int) -> int:
    """x**e mod p."""
    result, base = 1, 2  # 1 and x
    while e:
        if e & 1:
            result = _polymulmod(result, base, p, deg)
        base = _polymulmod(base, base, p, deg)
        e >>= 1
    return result


def feedback_polynomial(width: int) -> int:
    """The new bit is b[n] = XOR of b[n - t] for the taps t (state bit t-1 was generated t steps
    ago), so the characteristic polynomial is x**w + sum over taps of x**(w - t)."""
    p = 1 << width
    for t in TAPS[width]:
        p ^= 1 << (width - t)
    return p


@pytest.mark.parametrize("width", sorted(TAPS))
def test_feedback_polynomial_is_primitive(width):
    """x has order exactly 2**w - 1 modulo p (so p, of degree w with p(0) = 1, is primitive and
    the LFSR runs through all 2**w - 1 non-zero states)."""
    p = feedback_polynomial(width)
    assert p & 1 and p >> width == 1  # the tap w is present: p(0) = 1, degree w
    order = 2**width - 1
    factors = prime_factors(order, random.Random(width))
    assert math.prod(factors) == order and all(_is_prime(q) for q in factors)
    assert _x_pow(order, p, width) == 1
    for q in set(factors):
        assert _x_pow(order // q, p, width) != 1, f"x**((2**{width}-1)/{q}) = 1: not primitive"


def test_primitivity_check_rejects_a_bad_polynomial():
    # x**4 + x**2 + 1 = (x**2 + x + 1)**2 is not primitive (x has order 6), nor is
    # x**4 + x**3 + x**2 + x + 1 (irreducible, order 5): the check above must tell.
    for p in (0b10101, 0b11111):
        ok = _x_pow(15, p, 4) == 1 and all(_x_pow(15 // q, p, 4) != 1 for q in (3, 5))
        assert not ok
    assert _x_pow(15, 0b11001, 4) == 1 and all(_x_pow(15 // q, 0b11001, 4) != 1 for q in (3, 5))  # x^4+x^3+1


def test_brute_force_period_agrees_with_polynomial_order():
    """For a non-primitive tap set the brute-force orbit is short: the period test can fail."""
    width, mask = 4, 0b1010  # taps 4, 2: x^4 + x^2 + 1
    s, steps = 1, 0
    while True:
        s = lfsr_step(s, width, mask)
        steps += 1
        if s == 1:
            break
    assert steps == 6


# ---- stream seeds ------------------------------------------------------------------------------

def splitmix64_mix(x):
    """SplitMix64's output function (Steele, Lea, Flood, OOPSLA 2014), from the published constants."""
    m = 2**64 - 1
    x &= m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def reference_stream_seed(seed, row, col, stream, width):
    """The docstring's formula: mix64(mix64(seed) + (row << 40 | col << 20 | stream)), truncated to
    ``width`` bits, 0 replaced by 1."""
    v = splitmix64_mix(splitmix64_mix(seed) + ((row << 40) | (col << 20) | stream)) & ((1 << width) - 1)
    return v or 1


def test_splitmix64_known_answer():
    # SplitMix64 seeded with 0 returns mix(k * 0x9E3779B97F4A7C15) for k = 1, 2, ...: its well-known
    # first outputs are 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4.
    gamma = 0x9E3779B97F4A7C15
    assert splitmix64_mix(gamma) == 0xE220A8397B1DCDAF
    assert splitmix64_mix(2 * gamma) == 0x6E789E6AA1B965F4


def test_stream_seed_formula(seed):
    for base in (0, 1, 2**64 - 1, seed):
        for width in (3, 8, 32, 64):
            for row, col, stream in ((0, 0, 0), (0, 0, 1), (7, 0, 0), (0, 7, 1), (63, 63, 1), (5, 3, 0)):
                assert stream_seed(base, row, col, stream, width) == reference_stream_seed(base, row, col, stream, width)
    assert stream_seed(0, 0, 0, 0, 32) == 1  # mix64(0) = 0: the dead state is replaced



@pytest.mark.parametrize("base", [0, 1, 2**64 - 1, "random"])
def test_stream_seeds_nonzero_and_distinct(base, seed):
    base = seed if base == "random" else base
    seeds = [stream_seed(base, r, c, s, 32) for r in range(8) for c in range(8) for s in (0, 1)]
    assert all(0 < x < 2**32 for x in seeds)
    assert len(set(seeds)) == len(seeds) == 128
    other = [stream_seed((base + 1) % 2**64, r, c, s, 32) for r in range(8) for c in range(8) for s in (0, 1)]
    assert seeds != other  # the base seed matters


def test_stream_seed_never_zero_at_narrow_widths():
    # At width 3 a truncated hash is 0 for about 1 in 8 streams: those must become non-zero.
    for width in (3, 4, 5):
        seeds = [stream_seed(b, r, c, s, width) for b in range(4) for r in range(8) for c in range(8) for s in (0, 1)]
        assert all(0 < x < 2**width for x in seeds)
        assert len(set(seeds)) == 2**width - 1  # and every non-zero state occurs


# ---- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: Lfsr(2, 1), r"width must be an integer in 3\.\.64"),
    (lambda: Lfsr(65, 1), r"width must be an integer in 3\.\.64"),
    (lambda: Lfsr(32.0, 1), r"width must be an integer"),
    (lambda: Lfsr(8, 0), r"seed must be an integer in 1\.\.255"),
    (lambda: Lfsr(8, 256), r"seed must be an integer in 1\.\.255"),
    (lambda: Lfsr(8, True), r"seed must be an integer"),
    (lambda: Lfsr(8, 1).draw(9), r"rbits must be an integer in 1\.\.8"),
    (lambda: Lfsr(8, 1).draw(0), r"rbits must be an integer in 1\.\.8"),
    (lambda: Lfsr(8, 1).draws(4, 9), r"rbits must be an integer in 1\.\.8"),
    (lambda: Lfsr(64, 1).draws(4, 33), r"rbits must be an integer in 1\.\.32"),
    (lambda: draw_sequences(np.array([1], np.uint64), 16, 17, 4), r"rbits must be an integer in 1\.\.16"),
    (lambda: draw_sequences(np.array([1], np.uint64), 99, 8, 4), r"width must be an integer in 3\.\.64"),
    (lambda: stream_seed(1, 0, 0, 0, 2), r"width must be an integer in 3\.\.64"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call,match", [
    (lambda: Lfsr(8, 1).draw(2.5), r"rbits"),
    (lambda: Lfsr(8, 1).draws(-1, 4), r"\bn\b"),
    (lambda: Lfsr(8, 1).draws(2.5, 4), r"\bn\b"),
    (lambda: draw_sequences(np.array([0], np.uint64), 8, 4, 3), r"seed"),
    (lambda: draw_sequences(np.array([256], np.uint64), 8, 4, 3), r"seed"),
], ids=["draw-float-rbits", "draws-negative-n", "draws-float-n", "sequences-seed-0", "sequences-seed-too-wide"])
def test_bad_arguments_more(call, match):
    with pytest.raises(ValueError, match=match):
        call()
