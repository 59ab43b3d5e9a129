"""Binary floating-point formats as data: the format table every layer of fp8mac imports.

A format is ``(exp_bits, man_bits, bias, specials, subnormals, overflow)`` (ARCHITECTURE.md §1).
Codes are unsigned integers with the sign in the top bit; all functions here are vectorized over
NumPy arrays of codes.

The exact value of a finite code is held *unpacked* as three integer arrays
``(sign, sig, exp)`` with ``value = (-1)**sign * sig * 2**exp``; this is the form the rounding
core (:mod:`fp8mac.model.rounding`) and the arithmetic (:mod:`fp8mac.model.arith`) work on, so
that no result is ever computed through a float64 shortcut.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = ["FloatFormat", "FORMATS", "Unpacked", "format_by_name", "check_codes"]

SPECIALS = ("ieee", "fn", "none")
OVERFLOW = ("saturate", "inf")


class Unpacked(NamedTuple):
    """Exact values as integer arrays: ``(-1)**sign * sig * 2**exp``, plus special flags.

    ``sig`` is 0 for zeros, NaNs and infinities; ``sign`` is kept for signed zeros and
    infinities.
    """

    sign: np.ndarray  # int64, 0 or 1
    sig: np.ndarray  # int64, >= 0
    exp: np.ndarray  # int64, exponent of sig's least significant bit
    nan: np.ndarray  # bool
    inf: np.ndarray  # bool


@dataclass(frozen=True)
class FloatFormat:
    """A sign-exponent-significand binary format.

    Parameters
    ----------
    exp_bits : int
        Exponent field width, 2 to 8.
    man_bits : int
        Stored significand (mantissa) field width, 1 to 23; precision is ``man_bits + 1``.
    bias : int, optional
        Exponent bias; default ``2**(exp_bits - 1) - 1``.
    specials : {"ieee", "fn", "none"}
        ``"ieee"``: the all-ones exponent holds infinities and NaNs. ``"fn"``: finite and NaN
        only, the single NaN being S.1...1.1...1 (OCP E4M3). ``"none"``: every code is finite.
    subnormals : bool
        Gradual underflow (True) or flush-to-zero of inputs and results (False).
    overflow : {"saturate", "inf"}, optional
        What a rounded result beyond the largest finite value becomes; default ``"inf"`` for
        ``"ieee"`` formats and ``"saturate"`` otherwise (only ``"ieee"`` formats have infinities).
    name : str, optional
        A label for reports; presets carry their table name.

    Raises
    ------
    ValueError
        If a field is out of range; the message names the field and the allowed values.
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    specials: str = "ieee"
    subnormals: bool = True
    overflow: str | None = None
    name: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        for field in ("exp_bits", "man_bits"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{field} must be an integer, not {value!r}")
        if not 2 <= self.exp_bits <= 8:
            raise ValueError(f"exp_bits must be in 2..8, not {self.exp_bits}")
        if not 1 <= self.man_bits <= 23:
            raise ValueError(f"man_bits must be in 1..23, not {self.man_bits}")
        if self.specials not in SPECIALS:
            raise ValueError(f"specials must be one of {', '.join(SPECIALS)}, not {self.specials!r}")
        if self.specials == "fn" and self.exp_bits + self.man_bits < 3:
            raise ValueError("specials='fn' needs exp_bits + man_bits >= 3")
        if not isinstance(self.subnormals, (bool, np.bool_)):
            raise ValueError(f"subnormals must be True or False, not {self.subnormals!r}")
        bias = (1 << (self.exp_bits - 1)) - 1 if self.bias is None else self.bias
        if not isinstance(bias, (int, np.integer)) or isinstance(bias, bool):
            raise ValueError(f"bias must be an integer, not {bias!r}")
        if not 0 <= bias <= (1 << self.exp_bits) - 1:
            raise ValueError(f"bias must be in 0..{(1 << self.exp_bits) - 1} for exp_bits={self.exp_bits}, not {bias}")
        overflow = self.overflow
        if overflow is None:
            overflow = "inf" if self.specials == "ieee" else "saturate"
        if overflow not in OVERFLOW:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW)}, not {overflow!r}")
        if overflow == "inf" and self.specials != "ieee":
            raise ValueError(f"overflow='inf' needs specials='ieee' (a format with infinities), not {self.specials!r}")
        object.__setattr__(self, "exp_bits", int(self.exp_bits))
        object.__setattr__(self, "man_bits", int(self.man_bits))
        object.__setattr__(self, "bias", int(bias))
        object.__setattr__(self, "subnormals", bool(self.subnormals))
        object.__setattr__(self, "overflow", overflow)

    # ---- derived constants -------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Code width in bits (sign + exponent + mantissa)."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def precision(self) -> int:
        """Significand precision p in bits, hidden bit included."""
        return self.man_bits + 1

    @property
    def exp_field_max(self) -> int:
        return (1 << self.exp_bits) - 1

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal binade."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite binade."""
        top_field = self.exp_field_max - (1 if self.specials == "ieee" else 0)
        return top_field - self.bias

    @property
    def max_sig(self) -> int:
        """Largest significand (hidden bit included) in the top binade."""
        full = (1 << self.precision) - 1
        return full - 1 if self.specials == "fn" else full

    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def max_code(self) -> int:
        """Code of the largest positive finite value."""
        return ((self.emax + self.bias) << self.man_bits) | (self.max_sig - (1 << self.man_bits))

    @property
    def max_value(self) -> float:
        """The largest finite value, ``max_sig * 2**(emax - man_bits)`` (exact in float64)."""
        return float(self.max_sig) * 2.0 ** (self.emax - self.man_bits)

    @property
    def min_normal(self) -> float:
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.man_bits)

    @property
    def inf_code(self) -> int:
        """Code of +inf; only for formats with infinities."""
        if not self.has_inf:
            raise ValueError(f"format {self.label} has no infinities")
        return self.exp_field_max << self.man_bits

    @property
    def nan_code(self) -> int:
        """The one canonical (positive, quiet) NaN every NaN result becomes."""
        if self.specials == "ieee":
            return (self.exp_field_max << self.man_bits) | (1 << (self.man_bits - 1))
        if self.specials == "fn":
            return (1 << (self.width - 1)) - 1
        raise ValueError(f"format {self.label} has no NaN")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return (f"e{self.exp_bits}m{self.man_bits}(bias={self.bias},{self.specials},"
                f"{'sub' if self.subnormals else 'ftz'},{self.overflow})")

    @property
    def code_dtype(self):
        return np.uint8 if self.width <= 8 else np.uint16 if self.width <= 16 else np.uint32

    def to_dict(self) -> dict:
        return {"name": self.name, "exp_bits": self.exp_bits, "man_bits": self.man_bits,
                "bias": self.bias, "specials": self.specials, "subnormals": self.subnormals,
                "overflow": self.overflow}

    # ---- codes <-> exact values ------------------------------------------------------------
    def unpack(self, codes) -> Unpacked:
        """Split codes into exact integer fields; subnormal inputs are flushed when the format has
        no subnormals."""
        c = check_codes(self, codes, "codes").astype(np.int64)
        m = self.man_bits
        sign = (c >> (self.width - 1)) & 1
        ef = (c >> m) & self.exp_field_max
        mf = c & ((1 << m) - 1)
        normal = ef != 0
        sig = np.where(normal, mf | (1 << m), mf)
        exp = np.where(normal, ef - self.bias - m, self.emin - m)
        if self.specials == "ieee":
            top = ef == self.exp_field_max
            nan = top & (mf != 0)
            inf = top & (mf == 0)
        elif self.specials == "fn":
            nan = (ef == self.exp_field_max) & (mf == (1 << m) - 1)
            inf = np.zeros_like(nan)
        else:
            nan = inf = np.zeros(c.shape, dtype=bool)
        dead = nan | inf
        if not self.subnormals:
            dead = dead | ~normal
        sig = np.where(dead, 0, sig)
        return Unpacked(sign, sig, exp, nan, inf)

    def decode(self, codes) -> np.ndarray:
        """Codes to float64 values (exact for every format here: all fit in float64)."""
        u = self.unpack(codes)
        mag = np.ldexp(u.sig.astype(np.float64), u.exp)
        mag = np.where(u.inf, np.inf, mag)
        val = np.where(u.sign == 1, -mag, mag)
        return np.where(u.nan, np.nan, val)

    def encode(self, values, rounding="nearest", rand=None, rbits=None) -> np.ndarray:
        """Round float64 values to codes (see :func:`fp8mac.model.rounding.round_unpacked`).

        NaN becomes the canonical NaN; an infinity stays one where the format has them, becomes
        NaN in ``"fn"`` formats (as ml_dtypes does) and the largest finite value in ``"none"``
        formats. NaN cannot be encoded in a ``"none"`` format (ValueError).
        """
        from .rounding import check_rounding, pack, round_unpacked

        v = np.asarray(values, dtype=np.float64)
        rounding, rand, rbits = check_rounding(rounding, rand, rbits, v.shape)
        nan = np.isnan(v)
        inf = np.isinf(v)
        if nan.any() and not self.has_nan:
            raise ValueError(f"values: NaN cannot be encoded in format {self.label} (specials='none')")
        frac, e = np.frexp(np.where(nan | inf, 0.0, v))
        sig = np.abs(np.ldexp(frac, 53)).astype(np.int64)
        exp = e.astype(np.int64) - 53
        sign = np.signbit(v).astype(np.int64)
        exact = Unpacked(sign, sig, exp, nan, inf)
        return pack(self, round_unpacked(self, exact, np.zeros(v.shape, bool), rounding, rand, rbits,
                                         checked=True))


def check_codes(fmt: FloatFormat, codes, argname: str) -> np.ndarray:
    """Validate an array of codes for ``fmt``; ValueError names ``argname`` if one is out of range."""
    c = np.asarray(codes)
    if c.dtype.kind not in "ui":
        if c.dtype.kind == "b" or c.size and not np.all(np.mod(c, 1) == 0):
            raise ValueError(f"{argname}: codes must be integers, got dtype {c.dtype}")
        c = c.astype(np.int64)
    if c.size:
        lo, hi = c.min(), c.max()
        if lo < 0 or hi >= (1 << fmt.width):
            raise ValueError(f"{argname}: codes must be in 0..{(1 << fmt.width) - 1} for "
                             f"{fmt.width}-bit format {fmt.label}, got {lo if lo < 0 else hi}")
    return c


FORMATS: dict[str, FloatFormat] = {
    f.name: f
    for f in (
        FloatFormat(5, 2, 15, "ieee", name="fp8_e5m2"),
        FloatFormat(4, 3, 7, "fn", name="fp8_e4m3"),
        # HFP8's forward (1,4,3) format with bias 11, every code finite: the bias the OpenXLA
        # StableHLO RFC "E4M3B11FNUZ in XLA" (rfcs/20230309-e4m3b11.md) and LLVM's
        # Float8E4M3B11FNUZ attribute to Sun et al., NeurIPS 2019 (a secondary source: the
        # paper's text was not at hand). Values as ml_dtypes' float8_e4m3b11fnuz, whose code
        # 0x80 is NaN where this one has -0.
        FloatFormat(4, 3, 11, "none", name="fp8_e4m3_b11"),
        FloatFormat(6, 9, 31, "ieee", name="fp16_ibm"),
        FloatFormat(5, 10, 15, "ieee", name="fp16"),
        FloatFormat(8, 7, 127, "ieee", name="bf16"),
        FloatFormat(8, 23, 127, "ieee", name="fp32"),
    )
}
"""The preset formats (ARCHITECTURE.md §1); their names are part of the public interface."""


def format_by_name(fmt, argname: str = "format") -> FloatFormat:
    """A preset by name, or a FloatFormat passed through; ValueError lists the names."""
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, dict):
        try:
            return FloatFormat(**fmt)
        except TypeError as exc:
            raise ValueError(f"{argname}: {exc}") from None
    if isinstance(fmt, str) and fmt in FORMATS:
        return FORMATS[fmt]
    raise ValueError(f"{argname}: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
