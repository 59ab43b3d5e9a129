"""The exact rounding core: one definition of every rounded result (ARCHITECTURE.md §2).

Every rounded operation first forms its **exact** result as integers, ``(sign, sig, exp, sticky)``
meaning ``|x| = (sig + theta) * 2**exp`` with ``theta = 0`` when ``sticky`` is False and
``0 < theta < 1`` when it is True. :func:`add_exact` guarantees that a set sticky bit only ever
lies far below the bits a rounding looks at (at least 34 bits below the result's ulp), so the
decisions below are exactly those on the true value:

* ``nearest``: round half to even.
* ``zero``: truncate the magnitude.
* ``stochastic`` with ``r`` bits: ``t`` is the part of ``|x|`` below the result's ulp, in ulps
  (the ulp of the binade of ``|x|``, clamped at the subnormal ulp); ``q = floor(t * 2**r)``; the
  magnitude rounds up iff ``q + R >= 2**r`` for the random r-bit integer ``R``. So
  ``P(up) = q / 2**r`` and tail bits below the top r are ignored (bias at most ``2**-r`` ulp).

Then overflow (the format's ``overflow`` policy; truncation always saturates, as IEEE 754 says),
then flush-to-zero of subnormal results when the format has no subnormals.
"""

from __future__ import annotations

import numpy as np

from .formats import FloatFormat, Unpacked

__all__ = ["ROUNDINGS", "MAX_RBITS", "round_unpacked", "pack", "add_exact", "sum_exact", "mul_exact",
           "check_rounding", "top_exponent"]

ROUNDINGS = ("nearest", "zero", "stochastic")
MAX_RBITS = 32
WINDOW = 60  # add_exact keeps this many bits below the larger operand's top (see its docstring)
_ZERO_TOP = -(1 << 20)  # "top" exponent of a zero operand: below any real one


def bitlen(x: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2**62 (0 for 0), vectorized and exact."""
    _, e = np.frexp(x.astype(np.float64))
    e = e.astype(np.int64)
    # float64 rounding can carry a value just below 2**k up to 2**k: undo that.
    over = (e > 0) & ((x >> np.minimum(np.maximum(e - 1, 0), 62)) == 0)
    return e - over


def check_rounding(rounding, rand, rbits, shape=None):
    """Validate a rounding request; returns ``(rounding, rand as int64 array or None, rbits)``."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")
    if rounding != "stochastic":
        return rounding, None, rbits
    if rbits is None or isinstance(rbits, bool) or not isinstance(rbits, (int, np.integer)):
        raise ValueError(f"rbits must be an integer in 1..{MAX_RBITS} for stochastic rounding, not {rbits!r}")
    if not 1 <= rbits <= MAX_RBITS:
        raise ValueError(f"rbits must be in 1..{MAX_RBITS}, not {rbits}")
    if rand is None:
        raise ValueError("rand: stochastic rounding needs an array of r-bit random integers")
    r = np.asarray(rand)
    if r.dtype.kind not in "ui":
        raise ValueError(f"rand must hold integers, got dtype {r.dtype}")
    r = r.astype(np.int64)
    if r.size and (r.min() < 0 or r.max() >= (1 << rbits)):
        bad = r.min() if r.min() < 0 else r.max()
        raise ValueError(f"rand values must be in 0..{(1 << rbits) - 1} for rbits={rbits}, got {bad}")
    if shape is not None:
        try:
            np.broadcast_shapes(r.shape, shape)
        except ValueError:
            raise ValueError(f"rand shape {r.shape} does not broadcast with the operands' shape {shape}") from None
    return rounding, r, int(rbits)


def round_unpacked(fmt: FloatFormat, x: Unpacked, sticky, rounding="nearest", rand=None,
                   rbits=None, checked=False) -> Unpacked:
    """Round exact values ``x`` (+ sticky, see the module docstring) to ``fmt``.

    Returns the canonical unpacked result: ``sig`` has at most ``fmt.precision`` bits, ``exp`` is
    the result's ulp exponent, zeros have ``sig == 0``; NaNs and infinities are flagged (an
    infinity becomes NaN in a format without infinities, or the largest finite value in a format
    without NaN either). ``checked=True`` skips argument validation (internal fast path).
    """
    if not checked:
        rounding, rand, rbits = check_rounding(rounding, rand, rbits)
    sign, sig, exp, nan, inf = x
    m = fmt.man_bits
    L = bitlen(sig) - 1
    top = np.where(sig > 0, L + exp, fmt.emin)
    ue = np.maximum(top, fmt.emin) - m  # exponent of the result's ulp
    s = ue - exp  # how many bits of sig lie below that ulp (<= 0: none)
    sp = np.minimum(np.maximum(s, 0), 62)  # sig < 2**62, so a shift of 62 already clears it
    kept = (sig << np.minimum(np.maximum(-s, 0), 62)) >> sp
    if rounding == "nearest":
        hb = np.minimum(np.maximum(s - 1, 0), 62)
        half = (s >= 1) & (((sig >> hb) & 1) == 1)
        below = ((sig & ((1 << hb) - 1)) != 0) | sticky
        inc = half & (below | ((kept & 1) == 1))
        need = 1
    elif rounding == "stochastic":
        rem = sig & ((1 << sp) - 1)  # sp = 0 when s <= 0: no bits below the ulp
        q = (rem << np.minimum(np.maximum(rbits - s, 0), 62)) >> np.minimum(np.maximum(s - rbits, 0), 62)
        inc = (q + rand) >> rbits
        need = rbits
    else:
        inc = 0
        need = 0
    if np.any(sticky & (s < need)):
        raise AssertionError("internal: inexact operand bits reach the rounding position")
    kept = kept + inc
    carry = kept >> (m + 1)
    kept = kept >> carry
    ue = ue + carry
    emax_ulp = fmt.emax - m
    over = (ue > emax_ulp) | ((ue == emax_ulp) & (kept > fmt.max_sig))
    if fmt.overflow == "inf" and rounding != "zero":
        inf = inf | over
        kept = np.where(over, 0, kept)
    else:
        kept = np.where(over, fmt.max_sig, kept)
        ue = np.where(over, emax_ulp, ue)
    if not fmt.subnormals:
        kept = np.where(kept < (1 << m), 0, kept)
    # Specials of the operands: NaN wins, then infinities the format may not have.
    if not fmt.has_inf:
        if fmt.has_nan:
            nan = nan | inf
        else:
            kept = np.where(inf, fmt.max_sig, kept)
            ue = np.where(inf, emax_ulp, ue)
        inf = np.zeros_like(inf)
    kept = np.where(nan | inf, 0, kept)
    ue = np.where(kept == 0, fmt.emin - m, ue)
    sign = np.where(nan, 0, sign)
    return Unpacked(sign, kept, ue, nan, inf & ~nan)


def pack(fmt: FloatFormat, u: Unpacked) -> np.ndarray:
    """Canonical unpacked values (as :func:`round_unpacked` returns) to codes."""
    m = fmt.man_bits
    normal = u.sig >= (1 << m)
    ef = np.where(normal, u.exp + m + fmt.bias, 0)
    code = (u.sign << (fmt.width - 1)) | (ef << m) | (u.sig & ((1 << m) - 1))
    if fmt.has_inf:
        code = np.where(u.inf, (u.sign << (fmt.width - 1)) | fmt.inf_code, code)
    if fmt.has_nan:
        code = np.where(u.nan, fmt.nan_code, code)
    return np.asarray(code).astype(fmt.code_dtype)


def mul_exact(x: Unpacked, y: Unpacked) -> Unpacked:
    """The exact product of two unpacked values (NaN for 0 * inf)."""
    xz = (x.sig == 0) & ~x.inf & ~x.nan
    yz = (y.sig == 0) & ~y.inf & ~y.nan
    nan = x.nan | y.nan | (x.inf & yz) | (y.inf & xz)
    inf = (x.inf | y.inf) & ~nan
    return Unpacked(x.sign ^ y.sign, x.sig * y.sig, x.exp + y.exp, nan, inf)


def top_exponent(u: Unpacked) -> np.ndarray:
    """``exp + bitlen(sig)``: the exponent just above the value's leading one (very low for 0)."""
    return np.where(u.sig > 0, u.exp + bitlen(u.sig), _ZERO_TOP)


def add_exact(x: Unpacked, y: Unpacked, tx=None, ty=None):
    """The exact sum of two unpacked values as ``(Unpacked, sticky)``.

    Both operands are placed on one grid whose lsb lies ``WINDOW`` (60) bits below the top of the
    larger one (``tx``/``ty``: :func:`top_exponent`, computed here unless given). The larger
    operand always fits (significands have at most 48 bits); bits of the smaller one below the
    grid are ORed into a sticky bit. When that happens the smaller operand is below
    ``2**(top - 2)``, so the sum keeps at least 58 significant bits and the sticky lies at least
    58 - 24 = 34 bits below any result ulp: more than the 32 random bits stochastic rounding may
    read. The sum is formed doubled, with the truncated operand's sticky as a signed half unit, so
    that halving it gives the floor of the exact magnitude and a sticky bit that says whether
    anything lies below (a borrow when the truncated operand is subtracted). Exact zero sums are
    +0, except (-0) + (-0) = -0.
    """
    nan = x.nan | y.nan | (x.inf & y.inf & (x.sign != y.sign))
    inf = (x.inf | y.inf) & ~nan
    if tx is None:
        tx = top_exponent(x)
    if ty is None:
        ty = top_exponent(y)
    g = np.maximum(tx, ty) - WINDOW
    dx = x.exp - g
    dy = y.exp - g
    rx = np.minimum(np.maximum(-dx, 0), 62)
    ry = np.minimum(np.maximum(-dy, 0), 62)
    X = (x.sig << np.minimum(np.maximum(dx, 0), 62)) >> rx
    Y = (y.sig << np.minimum(np.maximum(dy, 0), 62)) >> ry
    # Signed, doubled; a truncated operand contributes +-1 (half a grid unit) for its lost bits.
    nx = 1 - 2 * x.sign
    ny = 1 - 2 * y.sign
    T = 2 * (nx * X + ny * Y) + nx * ((x.sig & ((1 << rx) - 1)) != 0) + ny * ((y.sig & ((1 << ry) - 1)) != 0)
    neg = T < 0
    mag = np.abs(T)
    sign = np.where(T == 0, x.sign & y.sign, neg)
    sign = np.where(inf, np.where(x.inf, x.sign, y.sign), sign)
    return Unpacked(sign.astype(np.int64), mag >> 1, g, nan, inf), (mag & 1) == 1


LIMB = 56  # sum_exact's limb width
_GROUP = 32  # terms added between carry propagations: a limb then holds < (2 * 32 + 1) * 2**56 < 2**63


def sum_exact(x: Unpacked, axis: int = -1):
    """The exact sum of the values along ``axis`` of ``x``, as ``(Unpacked, sticky)``.

    :func:`add_exact` keeps a 60-bit window below the larger operand, which is exact for two
    terms but not for more: two large terms may cancel exactly and leave a tiny third one whose
    bits lay below the window. Here every finite term is placed exactly on one integer grid
    whose unit is the smallest ulp of any non-zero term, ``2**lsb``, in limbs of 56 bits (int64
    arrays, signed, carries propagated every 32 terms), wide enough for the largest term plus
    the carries of the sum. The exact sum is then reduced to ``sig`` with exactly 62 bits (its
    leading one at bit 61) and a sticky bit for anything non-zero below: the sticky lies at least
    62 - 24 = 38 bits below any result ulp, more than the 32 random bits stochastic rounding
    reads, so :func:`round_unpacked` applies.

    Specials: NaN if any term is NaN or infinities of both signs occur; else an infinity (its
    sign) if any term is infinite. An exact zero sum is +0 unless every term is -0 (then -0),
    which generalizes ``(-0) + (-0) = -0``. Significands must be below ``2**56`` (products of two
    24-bit significands have at most 48 bits).
    """
    x = Unpacked(*(np.moveaxis(np.asarray(v), axis, -1) for v in x))
    shape, n = x.sig.shape[:-1], x.sig.shape[-1]
    if n == 0:
        raise ValueError("sum_exact needs at least one term")
    sign, sig, exp, nan, inf = (np.reshape(v, (-1, n)) for v in x)
    rows = sig.shape[0]
    pos_inf = (inf & (sign == 0)).any(axis=1)
    neg_inf = (inf & (sign == 1)).any(axis=1)
    nan_out = nan.any(axis=1) | (pos_inf & neg_inf)
    inf_out = (pos_inf | neg_inf) & ~nan_out
    live = sig > 0
    if np.any(sig >> LIMB):
        raise AssertionError("internal: sum_exact takes significands below 2**56")
    if live.any():
        lsb = int(exp[live].min())
        top = int((exp + bitlen(sig))[live].max())
    else:
        lsb = top = 0
    # |sum| < n * 2**top: limbs 0 .. nl-2 hold it; limb nl-1 is only the sign after the carries.
    nl = -(-(top - lsb + n.bit_length() + 1) // LIMB) + 1
    limbs = np.zeros((rows, nl + 1), np.int64)  # one spare limb: a term's high part may land there
    flat = limbs.reshape(-1)
    base = np.arange(rows, dtype=np.int64) * (nl + 1)
    off = np.where(live, exp - lsb, 0)
    j, r = off // LIMB, off % LIMB
    neg = sign == 1
    for t in range(n):
        lo = (sig[:, t] & ((1 << (LIMB - r[:, t])) - 1)) << r[:, t]
        hi = sig[:, t] >> (LIMB - r[:, t])
        idx = base + j[:, t]
        flat[idx] += np.where(neg[:, t], -lo, lo)
        flat[idx + 1] += np.where(neg[:, t], -hi, hi)
        if t % _GROUP == _GROUP - 1:
            _carry(limbs)
    _carry(limbs)
    negative = limbs[:, -1] < 0
    if negative.any():
        limbs[negative] = -limbs[negative]
        _carry(limbs)
    # the top non-zero limb h and the two below it; sticky for anything further down
    nz = limbs != 0
    any_nz = nz.any(axis=1)
    h = np.where(any_nz, limbs.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1), 0)
    pad = np.concatenate([np.zeros((rows, 3), np.int64), limbs], axis=1)  # limb k at column k + 3
    below = np.logical_or.accumulate(np.concatenate([np.zeros((rows, 3), bool), nz], axis=1), axis=1)
    pick = lambda col: np.take_along_axis(pad, (h + 3 + col)[:, None], axis=1)[:, 0]  # noqa: E731
    hi, mid, lo = pick(0), pick(-1), pick(-2)
    rest = np.take_along_axis(below, (h + 3 - 3)[:, None], axis=1)[:, 0]
    b = bitlen(hi)  # 1..56 where the sum is non-zero
    wide = b >= 6  # then bits of mid already reach below the 62-bit significand
    sh_mid = np.where(wide, b - 6, 0)
    sig_out = (hi << np.where(any_nz, 62 - b, 0)) | np.where(wide, mid >> sh_mid, mid << (6 - b).clip(0))
    sh_lo = np.where(wide, 0, 50 + b)
    sig_out = sig_out | np.where(wide, 0, lo >> sh_lo)
    sticky = np.where(wide, ((mid & ((1 << sh_mid) - 1)) != 0) | (lo != 0), (lo & ((1 << sh_lo) - 1)) != 0)
    sticky = (sticky | rest) & any_nz
    exp_out = lsb + LIMB * h - (62 - b)
    sign_out = np.where(any_nz, negative, sign.all(axis=1))
    special = nan_out | inf_out
    sign_out = np.where(inf_out, pos_inf == 0, sign_out)
    sig_out = np.where(special | ~any_nz, 0, sig_out)
    sticky = sticky & ~special
    exp_out = np.where(any_nz & ~special, exp_out, exp[:, 0])
    out = Unpacked(sign_out.astype(np.int64), sig_out, exp_out, nan_out, inf_out)
    return Unpacked(*(v.reshape(shape) for v in out)), sticky.reshape(shape)


def _carry(limbs):
    """Propagate carries so that every limb but the last is in 0 .. 2**LIMB - 1 (in place)."""
    for k in range(limbs.shape[1] - 1):
        c = limbs[:, k] >> LIMB
        limbs[:, k] -= c << LIMB
        limbs[:, k + 1] += c
