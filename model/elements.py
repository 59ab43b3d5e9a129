"""Element and scale formats of block-scaled and 4-bit arithmetic (issue 19), and the one rounding
rule every one of them uses.

Two kinds of format live here:

* The OCP Microscaling element formats that :class:`~fp8mac.model.formats.FloatFormat` already
  describes, as FloatFormat values: ``fp4_e2m1`` (1, 2, 1, bias 1), ``fp6_e3m2`` (bias 3) and
  ``fp6_e2m3`` (bias 1), every code finite (OCP MX v1.0: no infinities, no NaN; subnormals;
  out-of-range values clamp to the largest magnitude). They are deliberately *not* in
  :data:`~fp8mac.model.formats.FORMATS`: that table is what the hardware generator offers as
  operand and accumulator formats, and a 4-bit operand is a later hardware step's decision.
  :func:`element_format` finds them (and every ``FORMATS`` preset) by name.
* :class:`GridFormat`, for the formats a FloatFormat cannot express, each given by the exact value
  of every code (at most 256 codes):

  ``kind="int"``
      two's complement integers of ``width`` bits times ``2**-frac_bits``: ``int4`` (-8 .. 7, as
      ml_dtypes' ``int4``).
  ``kind="uint"``
      unsigned integers ``0 .. 2**width - 1`` times ``2**-frac_bits``: ``uint4`` (0 .. 15, as
      ml_dtypes' ``uint4``), the unsigned 4-bit activations of PACT (Choi et al. 2018), which
      Sun et al. 2020 pair with radix-4 gradients: after a ReLU an activation has no sign to spend
      a bit on. No negative values and no -0 (``encode`` refuses negative values).
  ``kind="sign_magnitude"``
      sign bit, then ``width - 1`` magnitude bits, times ``2**-frac_bits``. ``fp4_e1m2`` is E1M2
      with bias 1 (exponent of the largest normal 0, as Huawei CANN's MX quantizer tables give
      FLOAT4_E1M2's ``emax``): field e = 0 holds ``0.mm * 2**0``, e = 1 holds ``1.mm * 2**0``,
      which is bit for bit the 3-bit magnitude ``emm`` times ``2**-2``: the uniform grid
      0, 0.25, ..., 1.75 (with -0).
  ``kind="radix4"``
      the radix-4 FP4 of Sun et al., "Ultra-Low Precision 4-bit Training of Deep Neural Networks"
      (NeurIPS 2020): a sign bit and ``width - 1`` exponent bits, no mantissa, values
      ``+-4**(f - bias)`` times ``2**phase``. What was followed: the NeurIPS 2020 review of the
      paper ("radix-4 fp4, which is a 1-3-0 (sign-exponent-mantissa) representation"; two-phase
      rounding quantizes a gradient twice, "even (round to 2^even) and odd (round to 2^odd)",
      one for dL/dW and one for dL/dX), IBM's patent US 12,443,841 B2 ("a mantissaless four-bit
      floating point format including a sign bit, three exponent bits, and no mantissa bits",
      its products with INT4 formed by shifters) and Chmiel et al. (LUQ, ICLR 2023 submission:
      "the use of the radix-4 ... allows covering a wider dynamic range"). **The paper's own text
      (its bias and the encoding of zero) could not be found**, so these are assumptions: the
      exponent field 0 encodes +-0 (a gradient must be able to underflow to zero), fields
      1 .. 7 are ``4**(f - bias)``, the bias defaults to FloatFormat's rule
      ``2**(exp_bits - 1) - 1 = 3`` (1/16 .. 256; with per-layer GradScale any other bias is the
      same format times a power of 4), ``phase=0`` is the "even" grid ``4**k = 2**(2k)`` and
      ``phase=1`` the "odd" grid ``2 * 4**k = 2**(2k+1)`` of two-phase rounding
      (:func:`two_phase_round`); rounding is the one rule below, on the linear value.
  ``kind="e8m0"``
      the OCP MX shared scale: 8 bits, unsigned, ``2**(code - 127)``, code 0xFF NaN; no zero.

The rounding rule (:func:`round_to_format`; ``GridFormat.encode`` and the block quantizers use it)
generalizes ARCHITECTURE.md §2 from binades to any sorted set of values. For a magnitude ``a``
between consecutive representable magnitudes ``lo <= a < hi`` let ``t = (a - lo) / (hi - lo)``:

* ``nearest``: up iff ``t > 1/2``; a tie goes to the neighbour whose code has an even last bit
  (the repo's "even" for binary formats; for the mantissa-less radix-4 and E8M0 formats the last
  exponent bit; for INT4 the even integer).
* ``zero``: down (magnitude truncated).
* ``stochastic`` with r bits: ``q = floor(t * 2**r)``; up iff ``q + R >= 2**r``.

For a FloatFormat, ``hi - lo`` is the ulp of ``a``'s binade, so this is §2's definition and
:func:`round_to_format` returns :meth:`FloatFormat.encode`'s codes wherever the value is in range
(tests/test_model_blockscale.py checks it on every preset of 8 bits or fewer; a flush-to-zero
FloatFormat differs: it rounds below the normal range on the subnormal grid, then flushes, where
this rule rounds between 0 and the smallest normal). Out of range the
rule clamps: a magnitude at or above the largest becomes the largest (OCP MX: "clamping normal
numbers"), even for formats with infinities; one below the smallest non-zero magnitude of a
format without zero (E8M0) becomes the smallest. Signs are kept: a negative value that rounds to
zero is -0 where the format has -0 (INT4 has not: +0). An unsigned integer format (UINT4) takes
every negative value, -0 included, to 0, its nearest value.

Every decision is exact: ``a`` is a float64, the grid values (times a scale of at most 8
significant bits) are exact float64 values, ``a - lo`` and ``hi - lo`` are exact (``lo`` has at
most 16 significant bits and ``a < 4 * lo``, or ``lo = 0``), and ``q`` is computed with integers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .config import _int
from .formats import FORMATS, FloatFormat, Unpacked, check_codes
from .rounding import check_rounding

__all__ = ["GridFormat", "GRID_KINDS", "ELEMENT_FORMATS", "SCALE_FORMATS", "E8M0", "element_format",
           "scale_format", "round_to_format", "two_phase_round", "format_emax", "format_values"]

GRID_KINDS = ("int", "uint", "sign_magnitude", "radix4", "e8m0")


@dataclass(frozen=True)
class GridFormat:
    """A small format given by the exact value of every code (module docstring: the kinds).

    Parameters
    ----------
    kind : {"int", "uint", "sign_magnitude", "radix4", "e8m0"}
    width : int
        Code width in bits: 2..8 (``int``, ``uint``, ``sign_magnitude``), 3..8 (``radix4``), 8
        (``e8m0``).
    frac_bits : int
        ``int``, ``uint`` and ``sign_magnitude`` only: the integer is scaled by ``2**-frac_bits``
        (-32..32).
    bias : int or None
        ``radix4``: exponent bias, 0 .. 2**(width-1) - 1 (default ``2**(width - 2) - 1``, 3 for
        4 bits); ``e8m0``: 127 (the default; no other). None for the other kinds.
    phase : {0, 1}
        ``radix4`` only: 0 the even grid ``4**k``, 1 the odd grid ``2 * 4**k``.
    name : str, optional
        A label; presets carry their table name.

    Raises
    ------
    ValueError
        If a field is out of range for the kind; the message names the field.
    """

    kind: str
    width: int
    frac_bits: int = 0
    bias: int | None = None
    phase: int = 0
    name: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        if self.kind not in GRID_KINDS:
            raise ValueError(f"kind must be one of {', '.join(GRID_KINDS)}, not {self.kind!r}")
        lo = {"int": 2, "uint": 2, "sign_magnitude": 2, "radix4": 3, "e8m0": 8}[self.kind]
        hi = 8
        set_("width", _int("width", self.width, lo, hi))
        if self.kind in ("int", "uint", "sign_magnitude"):
            set_("frac_bits", _int("frac_bits", self.frac_bits, -32, 32))
        elif self.frac_bits != 0:
            raise ValueError(f"frac_bits applies to kinds int, uint and sign_magnitude only, not {self.kind!r}")
        if self.kind == "radix4":
            bias = (1 << (self.width - 2)) - 1 if self.bias is None else self.bias
            set_("bias", _int("bias", bias, 0, (1 << (self.width - 1)) - 1))
            set_("phase", _int("phase", self.phase, 0, 1))
        else:
            if self.kind == "e8m0":
                if self.bias not in (None, 127) or isinstance(self.bias, bool):
                    raise ValueError(f"bias of an e8m0 format is 127, not {self.bias!r}")
                set_("bias", 127)
            elif self.bias is not None:
                raise ValueError(f"bias applies to kinds radix4 and e8m0 only, not {self.kind!r}")
            if self.phase != 0:
                raise ValueError(f"phase applies to kind radix4 only, not {self.kind!r}")

    # ---- the table ---------------------------------------------------------------------------
    @property
    def table(self) -> Unpacked:
        """Every code's exact value (index = code), read-only arrays."""
        return _grid_table(self)

    @property
    def has_nan(self) -> bool:
        return self.kind == "e8m0"

    @property
    def has_inf(self) -> bool:
        return False

    @property
    def signed(self) -> bool:
        return self.kind not in ("uint", "e8m0")

    @property
    def nan_code(self) -> int:
        if not self.has_nan:
            raise ValueError(f"format {self.label} has no NaN")
        return (1 << self.width) - 1

    @property
    def code_dtype(self):
        return np.uint8

    @property
    def max_code(self) -> int:
        """Code of the largest finite value."""
        return int(_grid(self)[0].codes[-1])

    @property
    def max_value(self) -> float:
        return float(self.decode(self.max_code))

    @property
    def min_value(self) -> float:
        """The smallest non-zero magnitude."""
        mags = _grid(self)[0].mags
        return float(mags[mags > 0][0])

    @property
    def emax(self) -> int:
        """``floor(log2(max_value))``: what OCP MX's scale choice calls ``emax_elem``."""
        return format_emax(self)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        extra = {"int": f"frac_bits={self.frac_bits}", "uint": f"frac_bits={self.frac_bits}",
                 "sign_magnitude": f"frac_bits={self.frac_bits}",
                 "radix4": f"bias={self.bias},phase={self.phase}", "e8m0": "bias=127"}[self.kind]
        return f"{self.kind}_w{self.width}({extra})"

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "width": self.width, "frac_bits": self.frac_bits,
                "bias": self.bias, "phase": self.phase}

    # ---- codes <-> values --------------------------------------------------------------------
    def unpack(self, codes) -> Unpacked:
        """Codes to exact values ``(-1)**sign * sig * 2**exp`` (the arithmetic's form)."""
        c = check_codes(self, codes, "codes").astype(np.int64)
        return Unpacked(*(x[c] for x in self.table))

    def decode(self, codes) -> np.ndarray:
        """Codes to float64 values (exact)."""
        u = self.unpack(codes)
        mag = np.ldexp(u.sig.astype(np.float64), u.exp)
        return np.where(u.nan, np.nan, np.where(u.sign == 1, -mag, mag))

    def encode(self, values, rounding="nearest", rand=None, rbits=None) -> np.ndarray:
        """Round float64 values to codes by the module docstring's rule.

        NaN becomes the NaN code where the format has one (E8M0) and is a ValueError otherwise;
        an infinity becomes NaN in E8M0 (as ml_dtypes does) and the largest magnitude elsewhere.
        E8M0 has neither zero nor a sign: zeros and negative values become NaN (as in ml_dtypes).
        """
        v = np.asarray(values, dtype=np.float64)
        if self.kind == "e8m0":
            bad = ~(v > 0) | np.isinf(v)  # NaN, zeros, negatives, infinities
            out = round_to_format(self, np.where(bad, 1.0, v), 1.0, rounding, rand, rbits)
            return np.where(bad, self.nan_code, out).astype(np.uint8)
        return round_to_format(self, v, 1.0, rounding, rand, rbits)


@lru_cache(maxsize=None)
def _grid_table(fmt: GridFormat) -> Unpacked:
    n = 1 << fmt.width
    sign, sig, exp = (np.zeros(n, np.int64) for _ in range(3))
    nan = np.zeros(n, bool)
    for c in range(n):
        if fmt.kind == "int":
            v = c - n if c >= n // 2 else c
            sign[c], sig[c], exp[c] = int(v < 0), abs(v), -fmt.frac_bits
        elif fmt.kind == "uint":
            sig[c], exp[c] = c, -fmt.frac_bits
        elif fmt.kind == "sign_magnitude":
            sign[c], sig[c], exp[c] = c >> (fmt.width - 1), c & (n // 2 - 1), -fmt.frac_bits
        elif fmt.kind == "radix4":
            f = c & (n // 2 - 1)
            sign[c] = c >> (fmt.width - 1)
            sig[c], exp[c] = (0, 0) if f == 0 else (1, 2 * (f - fmt.bias) + fmt.phase)
        else:  # e8m0
            nan[c] = c == n - 1
            sig[c], exp[c] = (0, 0) if nan[c] else (1, c - fmt.bias)
    out = Unpacked(sign, sig, exp, nan, np.zeros(n, bool))
    for x in out:
        x.flags.writeable = False
    return out


# ---- the registries --------------------------------------------------------------------------------

E8M0 = GridFormat("e8m0", 8, name="e8m0")
"""The OCP MX shared scale: ``2**(code - 127)``, 0xFF NaN."""

ELEMENT_FORMATS: dict[str, FloatFormat | GridFormat] = {
    f.name: f
    for f in (
        FloatFormat(2, 1, 1, "none", name="fp4_e2m1"),  # OCP MX FP4: 0, 0.5 .. 6
        FloatFormat(3, 2, 3, "none", name="fp6_e3m2"),  # OCP MX FP6: max 28
        FloatFormat(2, 3, 1, "none", name="fp6_e2m3"),  # OCP MX FP6: max 7.5
        GridFormat("sign_magnitude", 4, frac_bits=2, name="fp4_e1m2"),  # E1M2, bias 1: 0 .. 1.75
        GridFormat("int", 4, name="int4"),  # -8 .. 7
        GridFormat("uint", 4, name="uint4"),  # 0 .. 15 (PACT's unsigned activations)
        GridFormat("radix4", 4, name="fp4_r4"),  # Sun et al. 2020, even phase: +-4**(f-3)
        GridFormat("radix4", 4, phase=1, name="fp4_r4_odd"),  # odd phase: +-2 * 4**(f-3)
        FORMATS["fp8_e4m3"],  # MXFP8 elements
        FORMATS["fp8_e5m2"],
    )
}
"""Element formats of block-scaled (and the 4-bit radix-4 / INT4) arithmetic, by name."""

SCALE_FORMATS: dict[str, FloatFormat | GridFormat] = {"e8m0": E8M0, "fp8_e4m3": FORMATS["fp8_e4m3"]}
"""Block scale formats: OCP MX's E8M0 and NVFP4's E4M3 (non-negative codes only as scales)."""


def _lookup(value, argname, table, what):
    if isinstance(value, (FloatFormat, GridFormat)):
        return value
    if isinstance(value, dict):
        try:
            return GridFormat(**value) if "kind" in value else FloatFormat(**value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{argname}: {exc}") from None
    if isinstance(value, str) and value in table:
        return table[value]
    raise ValueError(f"{argname}: unknown {what} {value!r}; choose one of {', '.join(table)}")


def element_format(value, argname: str = "element"):
    """An element format: a name from :data:`ELEMENT_FORMATS` or :data:`~fp8mac.model.formats.FORMATS`
    (8 bits or fewer), a FloatFormat or GridFormat of 8 bits or fewer (not E8M0, a scale), or a
    dict of either's fields. ValueError names ``argname``."""
    table = dict(ELEMENT_FORMATS)
    table.update({k: f for k, f in FORMATS.items() if k not in table})
    fmt = _lookup(value, argname, table, "element format")
    if fmt.width > 8:
        raise ValueError(f"{argname}: element formats have 8 bits or fewer, not {fmt.width} ({fmt.label})")
    if isinstance(fmt, GridFormat) and fmt.kind == "e8m0":
        raise ValueError(f"{argname}: {fmt.label} is a scale format (no zero, no sign), not an element format")
    return fmt


def scale_format(value, argname: str = "scale"):
    """A block scale format: ``"e8m0"`` (OCP MX) or ``"fp8_e4m3"`` (NVFP4), by name or value."""
    fmt = _lookup(value, argname, SCALE_FORMATS, "scale format")
    if fmt not in SCALE_FORMATS.values():
        raise ValueError(f"{argname}: scale formats are {', '.join(SCALE_FORMATS)}, not {fmt.label}")
    return fmt


def format_values(fmt) -> np.ndarray:
    """Every code's float64 value (index = code) of a format of 8 bits or fewer."""
    return fmt.decode(np.arange(1 << fmt.width))


def format_emax(fmt) -> int:
    """``floor(log2)`` of the largest finite magnitude (FloatFormat: ``emax``)."""
    if isinstance(fmt, FloatFormat):
        return fmt.emax
    top = _grid(fmt)[0].mags[-1]
    return int(np.frexp(top)[1]) - 1


# ---- the rounding rule ---------------------------------------------------------------------------------

class _SignGrid:
    """The representable magnitudes of one sign, ascending and distinct, and their codes."""

    def __init__(self, mags, codes):
        self.mags = np.asarray(mags, np.float64)
        self.codes = np.asarray(codes, np.int64)
        self.mags.flags.writeable = self.codes.flags.writeable = False


@lru_cache(maxsize=None)
def _grid(fmt) -> tuple[_SignGrid, _SignGrid | None]:
    """(positive grid, negative grid or None for an unsigned format) of a format of <= 8 bits.
    Where several codes have one value (a flush-to-zero format's subnormals) the smallest code
    (the canonical one) represents it."""
    if fmt.width > 8:
        raise ValueError(f"fmt: round_to_format takes formats of 8 bits or fewer, not {fmt.label}")
    codes = np.arange(1 << fmt.width)
    u = fmt.unpack(codes)
    mag = np.ldexp(u.sig.astype(np.float64), u.exp)
    finite = ~u.nan & ~u.inf
    grids = []
    for s in (0, 1):
        pick = finite & (u.sign == s)
        if not pick.any():
            grids.append(None)
            continue
        order = np.lexsort((codes[pick], mag[pick]))
        m, c = mag[pick][order], codes[pick][order]
        keep = np.concatenate([[True], m[1:] != m[:-1]])
        grids.append(_SignGrid(m[keep], c[keep]))
    if isinstance(fmt, GridFormat) and fmt.kind == "int" and grids[1] is not None:
        # two's complement: -x rounds among 0 (code 0, no -0) and the negative values
        grids[1] = _SignGrid(np.concatenate([[0.0], grids[1].mags]), np.concatenate([[0], grids[1].codes]))
    return grids[0], grids[1]


def _odd_split(x):
    """Non-negative float64 ``x = m * 2**e`` with integer ``m`` (int64, odd unless 0)."""
    f, e = np.frexp(x)
    m = np.ldexp(f, 53).astype(np.int64)
    low = m & -m  # lowest set bit (a power of two; 0 for m = 0)
    tz = np.where(m > 0, np.frexp(low.astype(np.float64))[1] - 1, 0)
    return m >> tz, e.astype(np.int64) - 53 + tz


def _check_scale(scale, shape):
    s = np.asarray(scale, dtype=np.float64)
    try:
        np.broadcast_shapes(s.shape, shape)
    except ValueError:
        raise ValueError(f"scale shape {s.shape} does not broadcast with the values' shape {shape}") from None
    if s.size:
        if not np.all(np.isfinite(s) & (s > 0)):
            raise ValueError("scale must hold finite positive values")
        m, _ = _odd_split(s)
        if np.any(m >= 1 << 8):
            raise ValueError("scale values must have at most 8 significant bits (as E8M0 and E4M3 scales "
                             "have), so that every scaled grid value is exact")
    return s


def round_to_format(fmt, values, scale=1.0, rounding="nearest", rand=None, rbits=None) -> np.ndarray:
    """Codes of ``fmt`` nearest ``values / scale`` by the module docstring's rule, exactly.

    ``fmt`` is a FloatFormat or GridFormat of 8 bits or fewer; ``scale`` positive float64 values
    (broadcasting with ``values``) of at most 8 significant bits: the rounding is on the exact
    quotient (``values`` are compared with the exact products ``scale * v`` of the format's
    values ``v``; no division is rounded). ``rounding``: ``"nearest"``, ``"zero"``,
    ``"stochastic"`` (``rand``: r-bit integers broadcasting with ``values``) or ``"up"`` (away from
    zero: the smallest magnitude at or above, used to choose NVFP4 scales). NaN becomes the
    format's NaN (ValueError where it has none); infinities and out-of-range magnitudes clamp;
    negative values are a ValueError in E8M0 and 0 in an unsigned integer format.
    """
    if isinstance(fmt, str):
        fmt = element_format(fmt, "fmt") if fmt in ELEMENT_FORMATS or fmt in FORMATS else scale_format(fmt, "fmt")
    if not isinstance(fmt, (FloatFormat, GridFormat)):
        raise ValueError(f"fmt must be a FloatFormat or GridFormat, not {type(fmt).__name__}")
    pos, neg = _grid(fmt)
    v = np.asarray(values, dtype=np.float64)
    if rounding == "up":
        rand, rbits = None, None
    else:
        rounding, rand, rbits = check_rounding(rounding, rand, rbits, v.shape)
    s = _check_scale(scale, v.shape)
    shape = np.broadcast_shapes(v.shape, s.shape, () if rand is None else rand.shape)
    v, s = np.broadcast_to(v, shape), np.broadcast_to(s, shape)
    nan = np.isnan(v)
    if nan.any() and not fmt.has_nan:
        raise ValueError(f"values: NaN cannot be encoded in format {fmt.label} (it has no NaN)")
    neg_side = np.signbit(v) & ~nan
    clamp_to_zero = None
    if neg is None and neg_side.any():
        if not (isinstance(fmt, GridFormat) and fmt.kind == "uint"):
            raise ValueError(f"values: format {fmt.label} is unsigned; got a negative value")
        clamp_to_zero, neg_side = neg_side, np.zeros(shape, bool)  # -0 and below: 0, the nearest value
    a = np.abs(np.where(nan, 0.0, v))
    out = np.zeros(shape, np.int64)
    for side, grid in ((~neg_side, pos), (neg_side, neg)):
        if grid is None or not side.any():
            continue
        r = None if rand is None else np.broadcast_to(rand, shape)[side]
        out[side] = _round_side(grid, a[side], s[side], rounding, r, rbits)
    if clamp_to_zero is not None:
        out[clamp_to_zero] = 0
    if nan.any():
        out = np.where(nan, fmt.nan_code, out)
    return out.astype(fmt.code_dtype)


def _round_side(grid: _SignGrid, a, s, rounding, rand, rbits):
    """Codes for magnitudes ``a`` (float64, may be inf) on ``grid`` scaled by ``s``."""
    mags, n = grid.mags, len(grid.mags)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        idx = np.searchsorted(mags, a / s, side="right") - 1  # approximate: fixed below
    idx = np.clip(idx, -1, n - 1)
    for _ in range(4):  # exact fix-up: mags[idx] * s <= a < mags[idx + 1] * s
        lo_ok = (idx < 0) | (mags[np.maximum(idx, 0)] * s <= a)
        hi_ok = (idx >= n - 1) | (mags[np.minimum(idx + 1, n - 1)] * s > a)
        if lo_ok.all() and hi_ok.all():
            break
        idx = idx - (~lo_ok) + (lo_ok & ~hi_ok)
    else:
        raise AssertionError("internal: grid search did not settle")
    if n == 1:
        return np.full(a.shape, grid.codes[0])
    below = idx < 0  # below the smallest magnitude (a format without zero): round up to it
    top = idx >= n - 1  # at or above the largest: clamp
    i = np.clip(idx, 0, n - 2)
    lo = mags[i] * s
    gap = (mags[i + 1] - mags[i]) * s  # exact: both have few significant bits
    d = np.where(below | top, 0.0, a - lo)  # exact (module docstring)
    if rounding == "nearest":
        up = (2 * d > gap) | ((2 * d == gap) & ((grid.codes[i] & 1) == 1))
    elif rounding == "zero":
        up = np.zeros(a.shape, bool)
    elif rounding == "up":
        up = d > 0
    else:  # stochastic: q = floor(d * 2**r / gap) with integers
        dm, de = _odd_split(d)
        gm, ge = _odd_split(gap)
        sh = de - ge + rbits  # dm * 2**sh < gm * 2**r
        num = np.where(sh >= 0, dm << np.clip(sh, 0, 62), dm >> np.clip(-sh, 0, 63))
        q = num // gm
        up = q + rand >= (1 << rbits)
    j = np.where(top, n - 1, np.where(below, 0, i + up))
    return grid.codes[j]


def two_phase_round(values, rounding="nearest", rand=None, rbits=None, bias=None):
    """Sun et al.'s two-phase rounding (TPR) of gradients: the same values rounded to the even
    radix-4 grid (``fp4_r4``: ``+-4**k``) and to the odd one (``fp4_r4_odd``: ``+-2 * 4**k``),
    returned as ``(even_codes, odd_codes)``; one feeds the weight-gradient GEMM, the other the
    backward one (the review of the paper names the two uses, not which phase goes where).
    ``bias`` overrides the radix-4 bias (module docstring: the paper's is not known here).
    ``rand``: for stochastic rounding, ``(rand_even, rand_odd)`` or one array used for both."""
    even, odd = ELEMENT_FORMATS["fp4_r4"], ELEMENT_FORMATS["fp4_r4_odd"]
    if bias is not None:
        even, odd = (dataclasses.replace(f, bias=bias, name=None) for f in (even, odd))
    r_even, r_odd = rand if isinstance(rand, tuple) else (rand, rand)
    return even.encode(values, rounding, r_even, rbits), odd.encode(values, rounding, r_odd, rbits)
