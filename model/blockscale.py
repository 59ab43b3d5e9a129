"""Block-scaled arithmetic (issue 19, item 2): OCP MX (MXFP8 / MXFP6 / MXFP4), NVFP4, and unscaled
blocks of the 4-bit radix-4 / INT4 formats, bit-exact.

A :class:`BlockFormat` is an element format (:func:`~fp8mac.model.elements.element_format`), a block
size (16 or 32) and a scale format (``"e8m0"``, ``"fp8_e4m3"`` or None). A :class:`BlockConfig`
pairs the A and B streams' block formats with a :class:`~fp8mac.model.config.MacConfig` for
everything else (array shape, accumulator, chunking, roundings, LFSRs): the description a hardware
step can take, without new MacConfig fields.

**The block dot product** (:func:`block_dot`), one rounding::

    acc' = round(acc + (sa * sb) * (a_0*b_0 + ... + a_(B-1)*b_(B-1)))

the exact sum of the block's B element products, times the exact product of the two scales,
added to the accumulator and rounded **once** to the accumulator format (``nearest``, ``zero`` or
``stochastic`` by :func:`~fp8mac.model.rounding.round_unpacked`, one r-bit draw per block). With
no scale format the factor is 1. Specials follow IEEE 754 on the exact values: NaN if an element,
a scale (E8M0 0xFF, E4M3 0x7F) or the accumulator is NaN, for 0 * inf, or for +inf and -inf
together; else an infinity if one occurs. The sum is taken before the scaling, so its zero's sign
is that of the element sum (the one place where "scale each product" would differ: a zero E4M3
scale); an exact zero result is +0 unless both ``acc`` and the block's value are -0. Scales are
non-negative: an E4M3 scale code with the sign bit set is a ValueError (NVFP4 uses E4M3 as an
unsigned scale; an MX scale has no sign).

**The GEMM** (:func:`block_gemm`) follows :func:`~fp8mac.model.gemm.mac_gemm`'s rules with one
change: a *step* is one block. The M x N output is tiled ``rows x cols`` in row-major tile order;
K is completed with +0 elements (code 0) to ``Kp = ceil(K / B) * B``, and each output runs::

    outer = +0
    for each chunk of C consecutive elements of the Kp (C = mac.chunk, a multiple of B):
        inner = +0
        for each block in the chunk:
            inner = block_dot(inner, that block of A's row, its scale, of B's column, its scale)
        outer = round_outer(outer + inner)
    result = outer          # chunking off: result = inner

The random streams are mac_gemm's: per PE an inner and an outer LFSR seeded with
``stream_seed(seed, r, c, stream)`` at the start, one inner draw per block step (``t * S + s`` for
tile t and step s, ``S = Kp / B``), one outer draw per chunk (or the row outer adder's stream,
draw ``(t * n_chunks + j) * cols + c``). Differences from mac_gemm, all following from the block
being the step: ``mac.dot`` does not change the results (it must divide B: a PE of dot width d
would take B / d cycles per block and round once per block); ``mac.in_format`` / ``a_format`` /
``b_format`` are not read (the operand formats are the block formats' elements) and run-time
format sets are refused; with the row outer adder, ``mac.outer_placement`` is resolved from
``chunk / dot`` as in mac_gemm (a hardware step may need ``chunk / B >= cols`` instead). Scales
come per block: A's as an ``M x ceil(K / B)`` array, B's as ``ceil(K / B) x N``; padding lanes
get the scale 1.

**Quantization** (:func:`quantize_blocks`): per block, the OCP MX scale (E8M0)
``shared_exp = floor(log2(max |x|)) - emax_elem`` clamped to -127 .. 127 (``emax_elem`` the
exponent of the element format's largest value; an all-zero block gets -127, as Graphcore's
gfloat ``compute_scale_amax`` does), or the NVFP4 scale (E4M3) ``amax / max_elem`` rounded up
(cuDNN's block scale quantize: ``scale = quantize_round_up(amax(vals) / vmax_otype)``) or to
nearest; then each element ``x / scale`` rounded (nearest, or stochastic with caller-supplied
bits) by :func:`~fp8mac.model.elements.round_to_format`, exactly and clamping to the element
format's largest value (OCP MX: "clamping normal numbers"). A block holding a NaN or an infinity
gets the NaN scale (its elements code 0). NVFP4's second, per-tensor FP32 scale is outside the
block format: the caller applies it to the tensor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .arith import check_format_pair
from .config import MacConfig
from .elements import E8M0, ELEMENT_FORMATS, SCALE_FORMATS, element_format, format_emax, round_to_format, scale_format
from .formats import Unpacked, check_codes, format_by_name
from .gemm import n_chunks, random_draws
from .rounding import add_exact, check_rounding, mul_exact, pack, round_unpacked, sum_exact

__all__ = ["BlockFormat", "BlockConfig", "BLOCK_FORMATS", "BLOCK_SIZES", "block_format", "block_dot",
           "block_gemm", "quantize_blocks", "quantize_tiles", "tile_block_scales", "dequantize_blocks",
           "mx_scale_codes", "nvfp4_scale_codes"]

BLOCK_SIZES = (16, 32)
SCALE_ROUNDINGS = ("up", "nearest")


def _spelled(fmt, table):
    return fmt.name if fmt.name in table and table[fmt.name] == fmt else fmt.to_dict()


@dataclass(frozen=True)
class BlockFormat:
    """One stream's block-scaled format.

    Parameters
    ----------
    element : str, FloatFormat, GridFormat or dict
        The element format (:func:`~fp8mac.model.elements.element_format`: 8 bits or fewer).
    block : int
        Elements per block sharing one scale: 16 or 32.
    scale : str, format or None
        ``"e8m0"`` (OCP MX), ``"fp8_e4m3"`` (NVFP4) or None (no scale: plain exact blocks, as
        the radix-4 x INT4 GEMMs of Sun et al. use; ``"none"`` in a config file).
    name : str, optional
        A label; presets carry their table name.

    Raises
    ------
    ValueError
        Naming ``element``, ``block`` or ``scale``.
    """

    element: object
    block: int = 32
    scale: object = "e8m0"
    name: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "element", element_format(self.element, "element"))
        b = self.block
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or int(b) not in BLOCK_SIZES:
            raise ValueError(f"block must be one of {', '.join(map(str, BLOCK_SIZES))}, not {b!r}")
        object.__setattr__(self, "block", int(b))
        if self.scale == "none":  # a config file's spelling of no scale (TOML has no null)
            object.__setattr__(self, "scale", None)
        if self.scale is not None:
            object.__setattr__(self, "scale", scale_format(self.scale, "scale"))

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        scale = self.scale.label if self.scale is not None else "none"
        return f"{self.element.label}/{self.block}/{scale}"

    def to_dict(self) -> dict:
        return {"name": self.name, "element": _spelled(self.element, ELEMENT_FORMATS), "block": self.block,
                "scale": None if self.scale is None else _spelled(self.scale, SCALE_FORMATS)}

    def scale_one(self) -> int:
        """The scale code of 1.0 (padding lanes)."""
        return int(self.scale.encode(1.0)) if self.scale is not None else 0


BLOCK_FORMATS: dict[str, BlockFormat] = {
    f.name: f
    for f in (
        BlockFormat("fp8_e4m3", 32, "e8m0", name="mxfp8_e4m3"),
        BlockFormat("fp8_e5m2", 32, "e8m0", name="mxfp8_e5m2"),
        BlockFormat("fp6_e3m2", 32, "e8m0", name="mxfp6_e3m2"),
        BlockFormat("fp6_e2m3", 32, "e8m0", name="mxfp6_e2m3"),
        BlockFormat("fp4_e2m1", 32, "e8m0", name="mxfp4"),
        BlockFormat("fp4_e2m1", 16, "fp8_e4m3", name="nvfp4"),
    )
}
"""OCP MX v1.0's concrete formats (block 32, E8M0 scales) and NVIDIA's NVFP4 (block 16, E4M3)."""


def block_format(value, argname: str = "block format") -> BlockFormat:
    """A preset name from :data:`BLOCK_FORMATS`, a BlockFormat, or a dict of its fields."""
    if isinstance(value, BlockFormat):
        return value
    if isinstance(value, dict):
        try:
            return BlockFormat(**value)
        except TypeError as exc:
            raise ValueError(f"{argname}: {exc}") from None
    if isinstance(value, str) and value in BLOCK_FORMATS:
        return BLOCK_FORMATS[value]
    raise ValueError(f"{argname}: unknown block format {value!r}; choose one of {', '.join(BLOCK_FORMATS)}")


@dataclass(frozen=True)
class BlockConfig:
    """A block-scaled MAC array: ``mac`` for the array and its arithmetic, ``a`` / ``b`` for the
    two streams' block formats (``b`` defaults to ``a``). The two block sizes must agree;
    ``mac.chunk`` (counted in elements) must be a multiple of the block size and ``mac.dot`` must
    divide it; the accumulator must hold the specials the elements and scales can produce (an
    infinity for E5M2 elements, a NaN for any NaN-capable element or scale). Module docstring:
    what of ``mac`` is read.

    Raises
    ------
    ValueError
        Naming ``mac``, ``a``, ``b``, ``chunk`` or ``dot``.
    """

    mac: MacConfig
    a: object = "mxfp4"
    b: object = None

    def __post_init__(self):
        mac = self.mac
        if isinstance(mac, dict):
            mac = MacConfig.from_dict(mac)
        if not isinstance(mac, MacConfig):
            raise ValueError(f"mac must be a MacConfig, not {type(mac).__name__}")
        object.__setattr__(self, "mac", mac)
        a = block_format(self.a, "a")
        b = a if self.b is None else block_format(self.b, "b")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        if a.block != b.block:
            raise ValueError(f"b: the two streams' block sizes must agree, not {a.block} (a) and {b.block} (b)")
        if mac.runtime_formats:
            raise ValueError("mac: run-time format sets (a_formats / b_formats) are not supported with block formats")
        B = a.block
        if mac.chunk is not None and mac.chunk % B:
            raise ValueError(f"chunk must be a multiple of the block size ({B}), not {mac.chunk}")
        if B % mac.dot:
            raise ValueError(f"dot ({mac.dot}) must divide the block size ({B})")
        check_format_pair(mac.acc_format, a.element, b.element, names=("a.element", "b.element"))
        for fmt, name in ((a.scale, "a.scale"), (b.scale, "b.scale")):
            if fmt is not None and fmt.has_nan and not mac.acc_format.has_nan:
                raise ValueError(f"acc_format {mac.acc_format.label} has no NaN but {name} {fmt.label} has one")

    @property
    def block(self) -> int:
        return self.a.block

    def to_dict(self) -> dict:
        d = {"mac": self.mac.to_dict(), "a": self.a.to_dict()}
        if self.b != self.a:
            d["b"] = self.b.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BlockConfig":
        if not isinstance(d, dict):
            raise ValueError(f"config must be a mapping, not {type(d).__name__}")
        unknown = sorted(set(d) - {"mac", "a", "b"})
        if unknown:
            raise ValueError(f"unknown block config field(s) {', '.join(unknown)}; allowed: mac, a, b")
        return cls(d.get("mac"), d.get("a", "mxfp4"), d.get("b"))


# ---- exact pieces ------------------------------------------------------------------------------------

def _table_lookup(table: Unpacked, idx) -> Unpacked:
    return Unpacked(*(x[idx] for x in table))


_PRODUCT_TABLES: dict = {}


def _product_table(fa, fb) -> Unpacked:
    """Exact products of every code pair (index ``a << fb.width | b``)."""
    key = (fa, fb)
    if key not in _PRODUCT_TABLES:
        a, b = np.meshgrid(np.arange(1 << fa.width), np.arange(1 << fb.width), indexing="ij")
        _PRODUCT_TABLES[key] = mul_exact(fa.unpack(a.ravel()), fb.unpack(b.ravel()))
    return _PRODUCT_TABLES[key]


def _check_scales(fmt: BlockFormat, scales, argname):
    """Scale codes (or None when the format has no scale), non-negative."""
    if fmt.scale is None:
        if scales is not None:
            raise ValueError(f"{argname}: the block format {fmt.label} has no scale; pass None")
        return None
    if scales is None:
        raise ValueError(f"{argname}: the block format {fmt.label} needs scale codes ({fmt.scale.label})")
    s = check_codes(fmt.scale, scales, argname)
    u = fmt.scale.unpack(s)
    if np.any((u.sign == 1) & ~u.nan):
        raise ValueError(f"{argname}: scale codes must be non-negative ({fmt.scale.label} codes with the sign bit "
                         "clear, or its NaN)")
    return s.astype(np.int64)


def _block_step(facc, acc: Unpacked, prod: Unpacked, scale: Unpacked | None, rounding, rand, rbits, axis):
    """round(acc + scale * sum(prod along ``axis``)) as unpacked accumulator values.

    ``prod``: exact element products, the block along ``axis``; ``acc`` and ``scale`` have the
    shape of ``prod`` without that axis (``scale`` None: 1)."""
    if scale is not None:
        scaled = mul_exact(prod, Unpacked(*(np.expand_dims(x, axis) for x in scale)))
    else:
        scaled = prod
    terms = Unpacked(*(np.concatenate([np.expand_dims(u, axis), p], axis=axis) for u, p in zip(acc, scaled)))
    exact, sticky = sum_exact(terms, axis=axis)
    if scale is not None:
        # The sum comes before the scaling: with a zero scale the block's value is a zero with the
        # element sum's sign, which "scale each product" does not give. Fix exact zero totals.
        zero_total = (exact.sig == 0) & ~sticky & ~exact.nan & ~exact.inf
        fix = zero_total & (scale.sig == 0) & ~scale.nan
        if fix.any():
            sub = Unpacked(*(np.moveaxis(p, axis, -1)[fix] for p in prod))
            esum, _ = sum_exact(sub)
            block_neg = esum.sign ^ scale.sign[fix]
            sign = exact.sign.copy()
            sign[fix] = acc.sign[fix] & (acc.sig[fix] == 0) & block_neg
            exact = exact._replace(sign=sign)
    return round_unpacked(facc, exact, sticky, rounding, rand, rbits, checked=True)


def block_dot(acc_format, a_block, acc, a, a_scale, b, b_scale, rounding="nearest", rand=None, rbits=None,
              b_block=None) -> np.ndarray:
    """One block step: ``round(acc + (a_scale * b_scale) * sum(a[..., i] * b[..., i]))`` (module
    docstring), one rounding; returns ``acc_format`` codes.

    ``a`` / ``b``: element codes whose last axis is one block (exactly B elements);
    ``a_scale`` / ``b_scale``: one scale code per block (None without a scale format); ``acc``:
    accumulator codes. All broadcast together (without the block axis); ``rand`` has one r-bit
    draw per result. ``b_block`` defaults to ``a_block`` (preset names or BlockFormats).
    """
    facc = format_by_name(acc_format, "acc_format")
    fa = block_format(a_block, "a_block")
    fb = fa if b_block is None else block_format(b_block, "b_block")
    if fa.block != fb.block:
        raise ValueError(f"b_block: block sizes must agree, not {fa.block} and {fb.block}")
    check_format_pair(facc, fa.element, fb.element, names=("a_block.element", "b_block.element"))
    for fmt, name in ((fa.scale, "a_block.scale"), (fb.scale, "b_block.scale")):
        if fmt is not None and fmt.has_nan and not facc.has_nan:
            raise ValueError(f"acc_format {facc.label} has no NaN but {name} {fmt.label} has one")
    B = fa.block
    a = check_codes(fa.element, a, "a").astype(np.int64)
    b = check_codes(fb.element, b, "b").astype(np.int64)
    for x, name in ((a, "a"), (b, "b")):
        if x.ndim == 0 or x.shape[-1] != B:
            raise ValueError(f"{name}: the last axis must be one block of {B} elements, got shape {x.shape}")
    acc = check_codes(facc, acc, "acc").astype(np.int64)
    sa = _check_scales(fa, a_scale, "a_scale")
    sb = _check_scales(fb, b_scale, "b_scale")
    shapes = [a.shape[:-1], b.shape[:-1], acc.shape] + [s.shape for s in (sa, sb) if s is not None]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError("operand shapes do not broadcast: " + ", ".join(map(str, shapes))) from None
    rounding, rand, rbits = check_rounding(rounding, rand, rbits, shape)
    if rand is not None:
        shape = np.broadcast_shapes(shape, rand.shape)
        rand = np.broadcast_to(rand, shape)
    a, b = np.broadcast_to(a, shape + (B,)), np.broadcast_to(b, shape + (B,))
    prod = _table_lookup(_product_table(fa.element, fb.element), (a << fb.element.width) | b)
    scale = None
    if fa.scale is not None or fb.scale is not None:
        ua = fa.scale.unpack(np.broadcast_to(sa, shape)) if sa is not None else None
        ub = fb.scale.unpack(np.broadcast_to(sb, shape)) if sb is not None else None
        scale = ua if ub is None else ub if ua is None else mul_exact(ua, ub)
    out = _block_step(facc, facc.unpack(np.broadcast_to(acc, shape)), prod, scale, rounding, rand, rbits, -1)
    return pack(facc, out)


# ---- the GEMM ------------------------------------------------------------------------------------------

_ROWS = 8192  # outputs per block of the K loop


def block_gemm(a_codes, a_scales, b_codes, b_scales, config: BlockConfig) -> np.ndarray:
    """The array's result codes (``config.mac.acc_format``) for ``A (M x K) @ B (K x N)`` in block
    formats ``config.a`` / ``config.b`` (module docstring: the schedule and its random draws).

    ``a_scales``: ``M x ceil(K / B)`` scale codes, A's row i, block j; ``b_scales``:
    ``ceil(K / B) x N``; None for a block format without a scale.

    Raises
    ------
    ValueError
        If the operands are not 2-D, K differs or is 0, a scale array has the wrong shape, a code
        is out of range, or a scale code is negative.
    """
    if not isinstance(config, BlockConfig):
        raise ValueError(f"config must be a BlockConfig, not {type(config).__name__}")
    cfg, fa, fb = config.mac, config.a, config.b
    facc, B = cfg.acc_format, config.block
    a = check_codes(fa.element, a_codes, "a_codes")
    b = check_codes(fb.element, b_codes, "b_codes")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a_codes and b_codes must be 2-D (M x K and K x N), got shapes {a.shape} and {b.shape}")
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"shape mismatch: a_codes is {M} x {K} but b_codes is {K2} x {N} (K must agree)")
    if K == 0:
        raise ValueError("K (the dot-product length) must be at least 1")
    Kb = -(-K // B)
    sa = _check_scales(fa, a_scales, "a_scales")
    sb = _check_scales(fb, b_scales, "b_scales")
    if sa is not None and sa.shape != (M, Kb):
        raise ValueError(f"a_scales must be M x ceil(K / {B}) = {M} x {Kb}, not {sa.shape}")
    if sb is not None and sb.shape != (Kb, N):
        raise ValueError(f"b_scales must be ceil(K / {B}) x N = {Kb} x {N}, not {sb.shape}")
    R, C = cfg.rows, cfg.cols
    tm, tn = -(-M // R), -(-N // C)
    Mp, Np, Kp = tm * R, tn * C, Kb * B
    ap = np.zeros((Mp, Kp), np.int64)
    ap[:M, :K] = a
    bp = np.zeros((Kp, Np), np.int64)
    bp[:K, :N] = b
    sap = np.full((Mp, Kb), fa.scale_one(), np.int64)
    sbp = np.full((Kb, Np), fb.scale_one(), np.int64)
    if sa is not None:
        sap[:M] = sa
    if sb is not None:
        sbp[:, :N] = sb

    chunk = Kp if cfg.chunk is None else cfg.chunk
    nch = n_chunks(Kp, cfg.chunk)
    rb = cfg.rbits
    inner_seq, outer_seq = random_draws(cfg, tm, tn, Kb, nch)  # one inner draw per block step

    ptab = _product_table(fa.element, fb.element)
    wb = fb.element.width
    out = np.empty((Mp, Np), dtype=facc.code_dtype)
    zero_code = np.zeros((), np.int64)
    rows_per_block = max(1, _ROWS // Np)
    for r0 in range(0, Mp, rows_per_block):
        rs = slice(r0, min(r0 + rows_per_block, Mp))
        shape = (rs.stop - rs.start, Np)

        def rand(seq, d):
            if seq is None:
                return None
            flat, base = seq
            return flat[base[rs] + d * (R * C)].astype(np.int64)

        zero = facc.unpack(np.broadcast_to(zero_code, shape))
        outer = zero
        for c0 in range(0, Kp, chunk):
            inner = zero
            for k in range(c0, min(c0 + chunk, Kp), B):
                blk = k // B
                idx = (ap[rs, k:k + B][:, :, None] << wb) | bp[k:k + B][None, :, :]
                prod = _table_lookup(ptab, idx)  # rows x B x N
                scale = None
                if fa.scale is not None or fb.scale is not None:
                    ua = fa.scale.unpack(np.broadcast_to(sap[rs, blk][:, None], shape)) if fa.scale else None
                    ub = fb.scale.unpack(np.broadcast_to(sbp[blk][None, :], shape)) if fb.scale else None
                    scale = ua if ub is None else ub if ua is None else mul_exact(ua, ub)
                inner = _block_step(facc, inner, prod, scale, cfg.inner_rounding, rand(inner_seq, blk), rb, 1)
            if cfg.chunk is None:
                outer = inner
            else:
                exact, sticky = add_exact(outer, inner)
                outer = round_unpacked(facc, exact, sticky, cfg.outer_rounding, rand(outer_seq, c0 // chunk), rb,
                                       checked=True)
        out[rs] = pack(facc, outer)
    return out[:M, :N]


# ---- quantization ----------------------------------------------------------------------------------------

def _blocks(x, B, axis):
    """``x`` with ``axis`` last, completed with zeros to whole blocks: (..., Kb, B), and K."""
    v = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    K = v.shape[-1]
    if K == 0:
        raise ValueError("x: the blocked axis must hold at least one element")
    Kb = -(-K // B)
    pad = np.zeros(v.shape[:-1] + (Kb * B - K,))
    return np.concatenate([v, pad], axis=-1).reshape(v.shape[:-1] + (Kb, B)), K


def mx_scale_codes(amax, element) -> np.ndarray:
    """OCP MX shared scales (E8M0 codes) for blocks whose largest magnitude is ``amax``:
    ``floor(log2(amax)) - emax_elem`` clamped to -127 .. 127; -127 for ``amax = 0``; NaN (0xFF)
    where ``amax`` is NaN or infinite."""
    fmt = element_format(element, "element")
    m = np.asarray(amax, dtype=np.float64)
    bad = ~np.isfinite(m)
    _, e = np.frexp(np.where(bad, 1.0, m))
    shared = np.where(m > 0, e.astype(np.int64) - 1 - format_emax(fmt), -127)
    code = np.clip(shared, -127, 127) + 127
    return np.where(bad, E8M0.nan_code, code).astype(np.uint8)


def nvfp4_scale_codes(amax, element="fp4_e2m1", scale="fp8_e4m3", rounding="up") -> np.ndarray:
    """NVFP4 block scales: ``amax / max_elem`` rounded to ``scale`` (E4M3) codes, ``"up"`` (the
    smallest value at or above it: no element then exceeds the element format's range; cuDNN's
    rule) or ``"nearest"``, exactly; clamped to the largest E4M3 value (448); NaN (0x7F) where
    ``amax`` is NaN or infinite. A zero ``amax`` gives the scale 0."""
    fe = element_format(element, "element")
    fs = scale_format(scale, "scale")
    if rounding not in SCALE_ROUNDINGS:
        raise ValueError(f"scale_rounding must be one of {', '.join(SCALE_ROUNDINGS)}, not {rounding!r}")
    m = np.asarray(amax, dtype=np.float64)
    bad = ~np.isfinite(m)
    if np.any(m[~bad] < 0):
        raise ValueError("amax must be non-negative")
    code = round_to_format(fs, np.where(bad, 0.0, m), fe.max_value, rounding)
    return np.where(bad, fs.nan_code, code).astype(np.uint8)


def _quantize_groups(groups, f: BlockFormat, rounding, rand, rbits, scale_rounding, gain):
    """Element and scale codes of ``groups`` (float64, ``(..., G, n)``: G groups of n values, each
    sharing one scale, padding zeros included), ``rand`` of the same shape or None."""
    bad = ~np.isfinite(groups).all(axis=-1)
    amax = np.where(bad, np.nan, np.abs(np.where(np.isfinite(groups), groups, 0.0)).max(axis=-1))
    if f.scale == E8M0:
        scodes = mx_scale_codes(amax, f.element)
    else:
        scodes = nvfp4_scale_codes(amax, f.element, f.scale, scale_rounding)
    svals = f.scale.decode(scodes)
    usable = ~bad & (svals > 0)  # zero scale: an all-zero group, its elements rounded unscaled
    s = np.where(usable, svals, 1.0)[..., None]
    vals = np.where(bad[..., None], 0.0, groups)
    if gain != 1.0:
        vals = vals * gain
    return round_to_format(f.element, vals, s, rounding, rand, rbits), scodes


def _check_gain(gain):
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not (0 < gain <= 1):
        raise ValueError(f"gain must be a number in (0, 1], not {gain!r}")
    return float(gain)


def quantize_blocks(x, fmt, axis=-1, rounding="nearest", rand=None, rbits=None, scale_rounding="up", gain=1.0):
    """Block-quantize float64 ``x`` along ``axis`` (the dot products' K axis: -1 for A, 0 for B)
    to ``(element codes, scale codes)`` (module docstring: the scale choice).

    The axis is completed with zeros to whole blocks for the scale choice; the codes keep ``x``'s
    shape and the scales have ``ceil(K / B)`` entries along ``axis``. ``rounding`` of the
    elements: ``"nearest"`` or ``"stochastic"`` (``rand``: r-bit integers of ``x``'s shape) or
    ``"zero"``. ``scale_rounding``: NVFP4's E4M3 scale, ``"up"`` or ``"nearest"``. With no scale
    format, the elements are ``x`` rounded and the scales None.

    ``gain`` (in (0, 1]): the scale is chosen from ``x`` as above, and the elements are
    ``gain * x / scale`` rounded, so the codes represent ``gain * x`` (the caller divides the
    result by ``gain``). Tseng et al.'s MXFP4 training (2025) quantizes gradients this way with
    ``gain = 3/4`` and stochastic rounding: the OCP scale lets ``|x| / scale`` reach up to twice
    2**emax_elem (8 for E2M1, whose largest value is 6), and 3/4 of that fits, so stochastic
    rounding never clamps and stays unbiased. ``gain * x`` is computed in float64 (exact for
    float32 data and gain 3/4).
    """
    f = block_format(fmt, "fmt")
    B = f.block
    gain = _check_gain(gain)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise ValueError("x must have at least one axis")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for x of {x.ndim} dimensions")
    rounding, rand, rbits = check_rounding(rounding, rand, rbits, x.shape)
    if rand is not None:
        rand = np.moveaxis(np.broadcast_to(rand, x.shape), axis, -1)
    if f.scale is None:
        codes = round_to_format(f.element, np.moveaxis(x, axis, -1) * gain, 1.0, rounding, rand, rbits)
        return np.moveaxis(codes, -1, axis), None
    blocks, K = _blocks(x, B, axis)
    if rand is not None:
        rpad = np.zeros(blocks.shape[:-2] + (blocks.shape[-2] * B,), np.int64)
        rpad[..., :K] = rand
        rand = rpad.reshape(blocks.shape)
    codes, scodes = _quantize_groups(blocks, f, rounding, rand, rbits, scale_rounding, gain)
    codes = codes.reshape(blocks.shape[:-2] + (-1,))[..., :K]
    return np.moveaxis(codes, -1, axis), np.moveaxis(scodes, -1, axis)


def quantize_tiles(x, fmt, rounding="nearest", rand=None, rbits=None, scale_rounding="up", gain=1.0):
    """Quantize a 2-D ``x`` with one scale per ``B x B`` tile (``B`` the block size): the
    two-dimensional weight scaling of NVIDIA's NVFP4 training recipe ("Pretraining Large Language
    Models with NVFP4", 2025: 16 x 16 blocks for weights), so that ``x`` and ``x.T`` are the same
    codes and either can be a GEMM operand with its K along either axis. Returns ``(codes,
    tile_scales)``, ``tile_scales`` of shape ``(ceil(rows / B), ceil(cols / B))``; the scale
    choice and the elements as :func:`quantize_blocks` (edge tiles completed with zeros).
    :func:`tile_block_scales` lays the tile scales out as one operand's block scales."""
    f = block_format(fmt, "fmt")
    if f.scale is None:
        raise ValueError(f"fmt: tiles need a scale format; {f.label} has none (use quantize_blocks)")
    B = f.block
    gain = _check_gain(gain)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"x must be a non-empty 2-D array, got shape {x.shape}")
    rounding, rand, rbits = check_rounding(rounding, rand, rbits, x.shape)
    (m, n), tm, tn = x.shape, -(-x.shape[0] // B), -(-x.shape[1] // B)

    def tiles(v, fill):
        p = np.full((tm * B, tn * B), fill, dtype=v.dtype)
        p[:m, :n] = v
        return p.reshape(tm, B, tn, B).transpose(0, 2, 1, 3).reshape(tm, tn, B * B)

    r = None if rand is None else tiles(np.broadcast_to(rand, x.shape).astype(np.int64), 0)
    codes, scodes = _quantize_groups(tiles(x, 0.0), f, rounding, r, rbits, scale_rounding, gain)
    codes = codes.reshape(tm, tn, B, B).transpose(0, 2, 1, 3).reshape(tm * B, tn * B)[:m, :n]
    return codes, scodes


def tile_block_scales(tile_scales, block: int, n: int, k_axis: int) -> np.ndarray:
    """Block scales of an operand quantized in tiles (:func:`quantize_tiles`), in
    :func:`block_gemm`'s layout: ``k_axis = 0`` for the tiled matrix itself as B (its rows are K:
    ``ceil(K / B) x n`` scales, ``n`` its columns), ``k_axis = 1`` for its transpose as B (its
    columns are K: ``ceil(K / B) x n`` scales, ``n`` its rows). For A operands, transpose the
    result of the other orientation."""
    t = np.asarray(tile_scales)
    if k_axis not in (0, 1):
        raise ValueError(f"k_axis must be 0 or 1, not {k_axis!r}")
    t = t if k_axis == 0 else t.T
    return np.repeat(t, block, axis=1)[:, :n]


def dequantize_blocks(codes, scales, fmt, axis=-1) -> np.ndarray:
    """The float64 values (exact) of block-quantized ``codes`` with ``scales`` along ``axis``."""
    f = block_format(fmt, "fmt")
    c = np.moveaxis(check_codes(f.element, codes, "codes"), axis, -1)
    vals = f.element.decode(c)
    if f.scale is None:
        if scales is not None:
            raise ValueError(f"scales: the block format {f.label} has no scale; pass None")
        return np.moveaxis(vals, -1, axis)
    s = np.moveaxis(check_codes(f.scale, scales, "scales"), axis, -1)
    Kb = -(-c.shape[-1] // f.block)
    if s.shape != c.shape[:-1] + (Kb,):
        raise ValueError(f"scales must have ceil(K / {f.block}) = {Kb} entries along the axis, got shape "
                         f"{np.moveaxis(s, -1, axis).shape} for codes of shape {np.moveaxis(c, -1, axis).shape}")
    sv = np.repeat(f.scale.decode(s), f.block, axis=-1)[..., :c.shape[-1]]
    with np.errstate(invalid="ignore"):
        return np.moveaxis(vals * sv, -1, axis)
