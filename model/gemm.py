"""``mac_gemm``: exactly the codes the MAC array computes for a GEMM (ARCHITECTURE.md §3-§4).

The rules, which the hardware follows:

* **Tiling.** The M x N output is cut into ``rows x cols`` tiles, processed in row-major tile
  order (tile ``t = tile_row * n_tile_cols + tile_col``). Processing element (r, c) computes output
  ``(tile_row * rows + r, tile_col * cols + c)``. Lanes beyond M or N (padding) compute on zero
  operands and their results are dropped.
* **Formats.** A's codes are in ``config.a_format``, B's in ``config.b_format`` (both
  ``in_format`` unless the configuration mixes them); every product is exact whatever the pair.
* **Steps** (dot width ``d = config.dot``, ARCHITECTURE.md §3b). The dot product of length K is
  completed with +0 products to ``Kp = ceil(K / d) * d`` (A's columns and B's rows padded with
  code 0), and a *step* consumes d consecutive products: ``S = Kp / d`` steps per output. With
  ``d = 1`` (the default) a step is one product and ``Kp = K``.
* **Schedule per output** (chunk size C, counted in products, a multiple of d: C / d steps)::

      outer = +0
      for each chunk of C consecutive products of the Kp (the last may be shorter):
          inner = +0
          for each step (a_k*b_k ... a_(k+d-1)*b_(k+d-1)) in chunk:
              inner = round_inner(inner + a_k*b_k + ... + a_(k+d-1)*b_(k+d-1))   # one rounding
          outer = round_outer(outer + inner)
      result = outer          # chunking off (C = None): result = inner, one chunk of Kp products

  A step is :func:`~fp8mac.model.arith.fp_dot` (:func:`~fp8mac.model.arith.fp_fma` for d = 1):
  the exact sum rounded once. The +0 padding products change no value, except that a sum of
  only -0 terms then becomes +0.
* **Run-time formats** (``a_formats`` / ``b_formats``). Each tile is computed in the formats it
  is sent with (:func:`mac_gemm_tile_formats`); a tile's results do not depend on the other
  tiles' formats, because no draw of a random stream depends on data (below).
* **Random streams.** Each PE has one LFSR per stochastic rounding (stream 0 inner, stream 1
  outer), seeded once with ``stream_seed(seed, r, c, stream)`` at the start of ``mac_gemm``
  (hardware: at reset) and running on across tiles. A stochastic step always draws (exact or
  not), once per step whatever d, and so does every stochastic outer add; nothing else draws.
  So for tile ``t``, step ``s`` uses inner draw ``t * S + s`` and chunk ``j`` uses outer draw
  ``t * n_chunks + j``.
* **Row outer adder** (``outer_adder = "row"``). Row r's outer sums are added by one adder that
  serves the row's PEs in turn, and their stochastic bits come from one LFSR per row, seeded
  with ``stream_seed(seed, r, 0, STREAM_ROW_OUTER)``. The array spaces chunk ends at least
  ``cols`` cycles apart and PE (r, c) adds its chunk sum c cycles after PE (r, 0), so the adds
  come in the order (chunk, column): chunk ``j`` of tile ``t`` in PE (r, c) uses the row's draw
  ``(t * n_chunks + j) * cols + c``. Each PE thus gets every cols-th draw of its row's stream:
  its own channel, and still independent of stalls and gaps.
"""

from __future__ import annotations

import numpy as np

from .config import MacConfig
from . import fastpath
from .formats import Unpacked, check_codes
from .lfsr import STREAM_INNER, STREAM_OUTER, STREAM_ROW_OUTER, draw_sequences, stream_seed
from .rounding import add_exact, mul_exact, pack, round_unpacked, sum_exact, top_exponent

__all__ = ["mac_gemm", "mac_gemm_tile_formats", "pe_seeds", "n_chunks", "float_kernel_applies", "random_draws"]


def n_chunks(k: int, chunk: int | None) -> int:
    """Chunks in a dot product of length ``k`` (1 when chunking is off). With a dot width d (chunk
    a multiple of d) the padded length ``ceil(k / d) * d`` has as many."""
    return 1 if chunk is None else -(-k // chunk)


def pe_seeds(config: MacConfig, stream: int) -> np.ndarray:
    """The ``rows x cols`` seeds of one random stream (uint64)."""
    return np.array([[stream_seed(config.seed, r, c, stream, config.lfsr_width)
                      for c in range(config.cols)] for r in range(config.rows)], dtype=np.uint64)


_BLOCK = 16384  # outputs per block of the K loop (cache-sized)


class _IntKernel:
    """The definition: exact integers (:mod:`fp8mac.model.rounding`), state kept unpacked.
    ``fa``, ``fb``: the A and B operands' formats."""

    def __init__(self, fa, fb, facc, rbits):
        self.fa, self.fb, self.facc, self.rbits = fa, fb, facc, rbits
        self.table = _product_table(fa, fb) if fa.width <= 8 and fb.width <= 8 else None

    def zero(self, shape):
        f = self.facc
        return (Unpacked(np.zeros(shape, np.int64), np.zeros(shape, np.int64),
                         np.full(shape, f.emin - f.man_bits, np.int64),
                         np.zeros(shape, bool), np.zeros(shape, bool)), None)

    def product(self, a_col, b_row, shape):
        if self.table is not None:
            idx = (a_col << self.fb.width) | b_row
            return Unpacked(*(x[idx] for x in self.table[0])), self.table[1][idx]
        return mul_exact(self.fa.unpack(np.broadcast_to(a_col, shape)),
                         self.fb.unpack(np.broadcast_to(b_row, shape))), None

    def add(self, acc, x, rounding, rand):
        exact, sticky = add_exact(acc[0], x[0], acc[1], x[1])
        return round_unpacked(self.facc, exact, sticky, rounding, rand, self.rbits, checked=True), None

    def dot(self, acc, a_cols, b_rows, rounding, rand):
        """One d-term step: ``a_cols`` (rows x d) and ``b_rows`` (d x N) codes."""
        a3, b3 = a_cols[:, :, None], b_rows[None, :, :]
        if self.table is not None:
            prod = Unpacked(*(x[(a3 << self.fb.width) | b3] for x in self.table[0]))
        else:
            shape = (a3.shape[0], a3.shape[1], b3.shape[2])
            prod = mul_exact(self.fa.unpack(np.broadcast_to(a3, shape)), self.fb.unpack(np.broadcast_to(b3, shape)))
        terms = Unpacked(*(np.concatenate([u[:, None, :], p], axis=1) for u, p in zip(acc[0], prod)))
        exact, sticky = sum_exact(terms, axis=1)
        return round_unpacked(self.facc, exact, sticky, rounding, rand, self.rbits, checked=True), None

    def codes(self, state):
        return pack(self.facc, state[0])


class _FloatKernel:
    """:mod:`fp8mac.model.fastpath`: float64 state, TwoSum, exact pair rounding; d-term steps
    through the products' exact split sums (:func:`~fp8mac.model.fastpath.dot_pair`).
    ``fa``, ``fb``: the A and B operands' formats (a product of two formats of at most 24
    significand bits each is exact in float64 as well)."""

    def __init__(self, fa, fb, facc, rbits, dot=1):
        self.fa, self.fb, self.facc, self.rbits = fa, fb, facc, rbits
        self.table = None
        self.plan = fastpath.dot_plan(facc, fa, dot, fb) if dot > 1 else None
        if fa.width <= 8 and fb.width <= 8:
            va, vb = fa.decode(np.arange(1 << fa.width)), fb.decode(np.arange(1 << fb.width))
            with np.errstate(invalid="ignore"):
                self.table = np.multiply.outer(va, vb).ravel()  # exact; 0 * inf = NaN
                if self.plan is not None:
                    self.hi, self.lo = fastpath.split(self.table, self.plan.split)

    def zero(self, shape):
        return np.zeros(shape)

    def product(self, a_col, b_row, shape):
        if self.table is not None:
            return self.table[(a_col << self.fb.width) | b_row]
        with np.errstate(invalid="ignore"):
            return self.fa.decode(a_col) * self.fb.decode(b_row)

    def add(self, acc, x, rounding, rand):
        with np.errstate(invalid="ignore"):
            s, e = fastpath.two_sum(acc, x)
        return fastpath.round_pair(self.facc, s, e, rounding, rand, self.rbits)

    def dot(self, acc, a_cols, b_rows, rounding, rand):
        """One d-term step: ``a_cols`` (rows x d) and ``b_rows`` (d x N) codes."""
        a3, b3 = a_cols[:, :, None], b_rows[None, :, :]
        if self.table is None:
            with np.errstate(invalid="ignore"):
                s, e = fastpath.dot_sum(self.plan, acc, self.fa.decode(a3) * self.fb.decode(b3), axis=1)
            return fastpath.round_pair(self.facc, s, e, rounding, rand, self.rbits)
        # the same as dot_sum, with the products' split parts looked up
        idx = (a3 << self.fb.width) | b3
        with np.errstate(invalid="ignore"):
            H = self.hi[idx].sum(axis=1)
            L = self.lo[idx].sum(axis=1, initial=-0.0)  # -0 iff every lo is (NumPy starts from +0)
            s, e = fastpath.dot_pair(self.plan, acc, H, L)
            bad = ~np.isfinite(s)
            if bad.any():  # a NaN or infinite term: IEEE's sum of the terms is the special result
                s = np.where(bad, acc + self.table[idx].sum(axis=1), s)
        return fastpath.round_pair(self.facc, s, e, rounding, rand, self.rbits)

    def codes(self, state):
        return self.facc.encode(state)


def _product_table(fa, fb):
    """Exact products of every pair of codes of two small formats (``a`` in ``fa``, ``b`` in
    ``fb``), indexed ``a << fb.width | b``, and their top exponents."""
    a, b = np.meshgrid(np.arange(1 << fa.width), np.arange(1 << fb.width), indexing="ij")
    u = mul_exact(fa.unpack(a.ravel()), fb.unpack(b.ravel()))
    return Unpacked(*(np.ascontiguousarray(x) for x in u)), top_exponent(u)


def float_kernel_applies(config: MacConfig) -> bool:
    """Whether ``mac_gemm``'s float64 kernel is exact for ``config``: acc ``man_bits + rbits <= 52``
    (:func:`fastpath.supported`) and, for ``dot > 1``, an exact scheme for the d-term steps
    (:func:`fastpath.dot_plan`; fp8 and fp16 operands into every preset accumulator). Mixed
    operand formats (``a_format != b_format``) change neither condition's form: products of two
    formats are exact in float64 and ``dot_plan`` takes the two formats' bounds."""
    rb = config.rbits if config.stochastic_streams or config.row_streams else None
    if not fastpath.supported(config.acc_format, rb):
        return False
    return config.dot == 1 or fastpath.dot_plan(config.acc_format, config.a_format, config.dot,
                                                config.b_format) is not None


def random_draws(config: MacConfig, tm: int, tn: int, steps: int, nch: int):
    """The random bits of a GEMM of ``tm x tn`` tiles of ``steps`` MAC steps and ``nch`` chunks
    each: ``(inner, outer)``, each None (no such stochastic stream) or ``(flat, base)``, where PE
    step ``d``'s draw for output ``(i, j)`` of the padded result is ``flat[base[i, j] + d * R *
    C]`` (R x C the array). The inner stream draws once per step, the PE's outer one once per
    chunk, and a row's outer adder (``STREAM_ROW_OUTER``) once per chunk end of each of its PEs.
    :func:`mac_gemm` and :func:`~fp8mac.model.blockscale.block_gemm` (whose step is a block)
    share it."""
    R, C, rb = config.rows, config.cols, config.rbits
    T = tm * tn
    # Per output (i, j): the flat index of its PE's first draw for its tile, in a draw sequence
    # laid out (draw, r, c); draw d of that PE is then at base + d * R * C.
    i, j = np.arange(tm * R)[:, None], np.arange(tn * C)[None, :]
    tile = (i // R) * tn + (j // C)
    pe_flat = (i % R) * C + (j % C)

    def draws(stream, per_tile):
        seq = draw_sequences(pe_seeds(config, stream), config.lfsr_width, rb, T * per_tile)
        return seq.reshape(-1), tile * per_tile * (R * C) + pe_flat

    inner_seq = draws(STREAM_INNER, steps) if config.inner_rounding == "stochastic" else None
    outer_seq = draws(STREAM_OUTER, nch) if STREAM_OUTER in config.stochastic_streams else None
    if STREAM_ROW_OUTER in config.row_streams:
        # One sequence per row, laid out (draw, r); PE (r, c)'s chunk j of tile t is draw
        # (t * nch + j) * C + c, at flat index ((t * nch + j) * C + c) * R + r: its draws are
        # R * C apart, as with per-PE streams.
        seeds = np.array([[stream_seed(config.seed, r, 0, STREAM_ROW_OUTER, config.lfsr_width)]
                          for r in range(R)], dtype=np.uint64)
        seq = draw_sequences(seeds, config.lfsr_width, rb, T * nch * C)
        outer_seq = seq.reshape(-1), (tile * nch * C + j % C) * R + i % R
    return inner_seq, outer_seq


def mac_gemm(a_codes, b_codes, config: MacConfig, kernel: str | None = None) -> np.ndarray:
    """The array's result codes (acc_format) for ``A (M x K) @ B (K x N)``: A given as
    ``config.a_format`` codes, B as ``config.b_format`` codes (both ``in_format`` unless the
    configuration mixes formats).

    ``kernel`` selects the arithmetic: ``"int"`` is the definition (:mod:`fp8mac.model.rounding`),
    ``"float"`` the faster :mod:`fp8mac.model.fastpath` proven equal to it; ``None`` (default)
    takes the fast one where it applies (:func:`float_kernel_applies`).

    Raises
    ------
    ValueError
        If the operands are not 2-D, K differs, K is 0, or a code is out of the format's range.
    """
    if not isinstance(config, MacConfig):
        raise ValueError(f"config must be a MacConfig, not {type(config).__name__}")
    if config.blocks:
        raise ValueError("config has block-scaled operands (a_block / b_block): their GEMM takes scale codes, "
                         "fp8mac.model.blockscale.block_gemm(a, a_scales, b, b_scales, config.block_config())")
    fa, fb, facc = config.a_format, config.b_format, config.acc_format
    a = check_codes(fa, a_codes, "a_codes")
    b = check_codes(fb, b_codes, "b_codes")
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a_codes and b_codes must be 2-D (M x K and K x N), got shapes {a.shape} and {b.shape}")
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"shape mismatch: a_codes is {M} x {K} but b_codes is {K2} x {N} (K must agree)")
    if K == 0:
        raise ValueError("K (the dot-product length) must be at least 1")
    R, C = config.rows, config.cols
    tm, tn = -(-M // R), -(-N // C)
    Mp, Np = tm * R, tn * C
    d = config.dot
    Kp = -(-K // d) * d  # completed with +0 products
    steps = Kp // d
    ap = np.zeros((Mp, Kp), dtype=np.int64)
    ap[:M, :K] = a
    bp = np.zeros((Kp, Np), dtype=np.int64)
    bp[:K, :N] = b

    chunk = Kp if config.chunk is None else config.chunk
    nch = n_chunks(Kp, config.chunk)
    rb = config.rbits
    inner_seq, outer_seq = random_draws(config, tm, tn, steps, nch)

    if kernel is None:
        kernel = "float" if float_kernel_applies(config) else "int"
    if kernel not in ("int", "float"):
        raise ValueError(f"kernel must be 'int', 'float' or None, not {kernel!r}")
    if kernel == "float" and not fastpath.supported(
            facc, rb if config.stochastic_streams or config.row_streams else None):
        raise ValueError(f"kernel='float' needs acc man_bits + rbits <= 52, not {facc.man_bits} + {rb}")
    if kernel == "float" and not float_kernel_applies(config):
        operands = fa.label if fa == fb else f"{fa.label} x {fb.label}"
        raise ValueError(f"kernel='float' has no exact float64 scheme for dot={d} steps of "
                         f"{operands} products into {facc.label} (fastpath.dot_plan)")
    ops = _FloatKernel(fa, fb, facc, rb, d) if kernel == "float" else _IntKernel(fa, fb, facc, rb)
    out = np.empty((Mp, Np), dtype=facc.code_dtype)
    # Outputs are independent: run the K loop on blocks of rows small enough to stay in cache.
    rows_per_block = max(1, _BLOCK // Np)
    for r0 in range(0, Mp, rows_per_block):
        rs = slice(r0, min(r0 + rows_per_block, Mp))
        shape = (rs.stop - rs.start, Np)

        def rand(seq, d):
            if seq is None:
                return None
            flat, base = seq
            return flat[base[rs] + d * (R * C)].astype(np.int64)

        outer = ops.zero(shape)
        a_blk = ap[rs]
        for c0 in range(0, Kp, chunk):
            inner = ops.zero(shape)
            if d == 1:
                for k in range(c0, min(c0 + chunk, Kp)):
                    prod = ops.product(a_blk[:, k][:, None], bp[k][None, :], shape)
                    inner = ops.add(inner, prod, config.inner_rounding, rand(inner_seq, k))
            else:
                for k in range(c0, min(c0 + chunk, Kp), d):
                    inner = ops.dot(inner, a_blk[:, k:k + d], bp[k:k + d], config.inner_rounding,
                                    rand(inner_seq, k // d))
            if config.chunk is None:
                outer = inner
            else:
                outer = ops.add(outer, inner, config.outer_rounding, rand(outer_seq, c0 // chunk))
        out[rs] = ops.codes(outer)
    return out[:M, :N]


def mac_gemm_tile_formats(a_codes, b_codes, config: MacConfig, tile_formats, kernel: str | None = None) -> np.ndarray:
    """:func:`mac_gemm` of a design with run-time formats when each tile is sent with its own
    formats: ``tile_formats[t]`` is ``(a_format, b_format)`` of tile ``t`` (row-major tile order,
    one pair per tile; each from its stream's set, :meth:`MacConfig.with_formats`). A tile's
    operand codes are read in its formats (the host sends A's rows again for every tile of a
    tile row, so two tiles may read the same codes in different formats: the formats of one
    stream share a code width).

    Tile t's results are those of ``mac_gemm`` of the whole GEMM in tile t's formats: every
    product and sum is exact before its one rounding, and the random draws depend only on the
    tile's position in the order (module docstring), never on data or formats.

    Raises
    ------
    ValueError
        As ``mac_gemm``; or if ``tile_formats`` does not hold one pair per tile, or a format is
        not in its stream's set.
    """
    a = np.asarray(a_codes)
    b = np.asarray(b_codes)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a_codes and b_codes must be 2-D (M x K and K x N), got shapes {a.shape} and {b.shape}")
    R, C = config.rows, config.cols
    tm, tn = -(-a.shape[0] // R), -(-b.shape[1] // C)
    pairs = list(tile_formats)
    if len(pairs) != tm * tn or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise ValueError(f"tile_formats must hold one (a_format, b_format) pair per tile: {tm * tn} tiles "
                         f"of {R} x {C} for a {a.shape[0]} x {b.shape[1]} result")
    configs = [config.with_formats(*p) for p in pairs]
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    for cfg in dict.fromkeys(configs):  # each distinct pair once (a stream's formats share a width)
        mine = np.array([other == cfg for other in configs]).reshape(tm, tn)
        use = np.repeat(np.repeat(mine, R, axis=0), C, axis=1)[:a.shape[0], :b.shape[1]]
        out[use] = mac_gemm(a, b, cfg, kernel)[use]
    return out
