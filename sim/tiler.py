"""The host side of the array: cut a GEMM into tiles, pack beats, reassemble the result.

The order is the model's (:mod:`fp8mac.model.gemm`): tiles of ``rows x cols`` outputs in
row-major tile order, lanes beyond M or N padded with +0 operands. For each tile the host sends
``ceil(K / dot)`` beats on each operand stream (beat s: A columns ``s*dot .. s*dot + dot - 1`` of
the tile's rows, B rows ``s*dot ..`` of the tile's columns, K completed with +0 products up to a
multiple of ``dot``; ``tlast`` on the last beat) and receives ``rows`` result beats (one output row
each, lane c = column c). Code i of a beat occupies bits ``[i*w, (i+1)*w)`` (``w`` the width of the
stream's format, ``a_format`` or ``b_format``): operand lane r holds
codes ``r*dot .. r*dot + dot - 1``, A[r][s*dot + j] (or B[s*dot + j][c]) at ``r*dot + j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fp8mac.model.config import MacConfig

__all__ = ["Tile", "pack_lanes", "unpack_lanes", "tiles", "assemble", "result_words"]


def pack_lanes(codes, width: int) -> list[int]:
    """Rows of lane codes ``(n, lanes)`` to ``n`` beat integers (lane i at bits i*width)."""
    codes = np.asarray(codes, dtype=np.int64)
    n, lanes = codes.shape
    if width * lanes <= 63:
        shifts = (np.arange(lanes, dtype=np.int64) * width)[None, :]
        return [int(v) for v in np.bitwise_or.reduce(codes << shifts, axis=1)]
    if width in (8, 16, 32):
        raw = codes.astype(f"<u{width // 8}").reshape(n, lanes)
        return [int.from_bytes(row.tobytes(), "little") for row in raw]
    return [sum(int(c) << (i * width) for i, c in enumerate(row)) for row in codes]


def unpack_lanes(beats, width: int, lanes: int) -> np.ndarray:
    """Beat integers to an ``(n, lanes)`` array of codes."""
    mask = (1 << width) - 1
    return np.array([[(int(b) >> (i * width)) & mask for i in range(lanes)] for b in beats],
                    dtype=np.int64).reshape(len(beats), lanes)


@dataclass
class Tile:
    """One tile's traffic: operand beats in, expected result rows out."""

    index: int
    tile_row: int
    tile_col: int
    a_beats: list[int]  # ceil(K / dot) beats of ``rows * dot`` input codes
    b_beats: list[int]  # ceil(K / dot) beats of ``cols * dot`` input codes

    @property
    def k(self) -> int:
        return len(self.a_beats)


def _pack_fields(values, widths) -> list[int]:
    """Rows of fields ``(n, F)`` of the given bit widths, field 0 lowest, to ``n`` integers."""
    shifts = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)
    if sum(widths) <= 63:
        return [int(v) for v in np.bitwise_or.reduce(np.asarray(values, np.int64) << shifts[None, :], axis=1)]
    return [sum(int(v) << int(s) for v, s in zip(row, shifts)) for row in np.asarray(values, np.int64)]


def _block_tiles(a, b, config: MacConfig, a_scales, b_scales) -> list[Tile]:
    """:func:`tiles` for block-scaled operands: K completed with code 0 elements to whole blocks,
    each lane's ``dot`` element codes followed by its block's scale code (padding lanes: the
    scale 1, as the model pads)."""
    (M, K), N = a.shape, b.shape[1]
    R, C, d, B = config.rows, config.cols, config.dot, config.block_size
    tm, tn = -(-M // R), -(-N // C)
    Kb = -(-K // B)
    S, per = Kb * B // d, B // d  # beats per tile, beats per block
    ap = np.zeros((tm * R, Kb * B), np.int64)
    ap[:M, :K] = a
    bp = np.zeros((Kb * B, tn * C), np.int64)
    bp[:K, :N] = b
    scales = []
    for blk, given, shape, sl in ((config.a_block, a_scales, (tm * R, Kb), np.s_[:M]),
                                  (config.b_block, b_scales, (Kb, tn * C), np.s_[:, :N])):
        s = np.full(shape, blk.scale_one(), np.int64)
        if blk.scale is not None:
            s[sl] = np.asarray(given, np.int64)
        scales.append(s)
    sa, sb = scales
    beat_block = np.arange(S) // per
    wa, wb = config.a_block.element.width, config.b_block.element.width
    swa, swb = (0 if f.scale is None else f.scale.width for f in (config.a_block, config.b_block))
    out = []
    for ti in range(tm):
        el = ap[ti * R:(ti + 1) * R].reshape(R, S, d).transpose(1, 0, 2)  # beat, lane, term
        if swa:
            fields = np.concatenate([el, sa[ti * R:(ti + 1) * R][:, beat_block].T[:, :, None]], axis=2)
            a_beats = _pack_fields(fields.reshape(S, -1), ([wa] * d + [swa]) * R)
        else:
            a_beats = _pack_fields(el.reshape(S, -1), [wa] * (R * d))
        for tj in range(tn):
            el = bp[:, tj * C:(tj + 1) * C].reshape(S, d, C).transpose(0, 2, 1)
            if swb:
                fields = np.concatenate([el, sb[beat_block][:, tj * C:(tj + 1) * C][:, :, None]], axis=2)
                b_beats = _pack_fields(fields.reshape(S, -1), ([wb] * d + [swb]) * C)
            else:
                b_beats = _pack_fields(el.reshape(S, -1), [wb] * (C * d))
            out.append(Tile(len(out), ti, tj, a_beats, b_beats))
    return out


def tiles(a_codes, b_codes, config: MacConfig, a_scales=None, b_scales=None) -> list[Tile]:
    """The tiles of ``A (M x K) @ B (K x N)`` in the order the array must receive them.

    With block-scaled operands (``config.a_block``) ``a_scales`` (``M x ceil(K / block)``) and
    ``b_scales`` (``ceil(K / block) x N``) are the blocks' scale codes, as
    :func:`~fp8mac.model.blockscale.block_gemm` takes them, and each lane carries its block's
    scale above its element codes (:func:`~fp8mac.hw.block.block_lane_width`)."""
    a = np.asarray(a_codes, dtype=np.int64)
    b = np.asarray(b_codes, dtype=np.int64)
    (M, K), (K2, N) = a.shape, b.shape
    if K != K2:
        raise ValueError(f"shape mismatch: A is {M} x {K} but B is {K2} x {N}")
    if config.blocks:
        return _block_tiles(a, b, config, a_scales, b_scales)
    R, C, d = config.rows, config.cols, config.dot
    tm, tn = -(-M // R), -(-N // C)
    S = -(-K // d)  # beats per tile
    ap = np.zeros((tm * R, S * d), np.int64)
    ap[:M, :K] = a
    bp = np.zeros((S * d, tn * C), np.int64)
    bp[:K, :N] = b
    out = []
    for ti in range(tm):
        # (R, S*d) -> beat s, lane r, term j
        a_tile = ap[ti * R:(ti + 1) * R].reshape(R, S, d).transpose(1, 0, 2).reshape(S, R * d)
        a_beats = pack_lanes(a_tile, config.a_format.width)
        for tj in range(tn):
            # (S*d, C) -> beat s, lane c, term j
            b_tile = bp[:, tj * C:(tj + 1) * C].reshape(S, d, C).transpose(0, 2, 1).reshape(S, C * d)
            out.append(Tile(len(out), ti, tj, a_beats, pack_lanes(b_tile, config.b_format.width)))
    return out


def assemble(result_beats, m: int, n: int, config: MacConfig) -> np.ndarray:
    """Result beats (``rows`` per tile, tile order) back to the ``m x n`` result codes."""
    R, C = config.rows, config.cols
    tm, tn = -(-m // R), -(-n // C)
    if len(result_beats) != tm * tn * R:
        raise ValueError(f"expected {tm * tn * R} result beats for a {m} x {n} result on a "
                         f"{R} x {C} array, got {len(result_beats)}")
    rows = unpack_lanes(result_beats, config.acc_format.width, C)
    out = np.zeros((tm * R, tn * C), np.int64)
    for t in range(tm * tn):
        ti, tj = divmod(t, tn)
        out[ti * R:(ti + 1) * R, tj * C:(tj + 1) * C] = rows[t * R:(t + 1) * R]
    return out[:m, :n]


def result_words(codes, config: MacConfig) -> list[int]:
    """An ``m x n`` matrix of accumulator codes as the result beats :func:`assemble` reads (tile
    after tile in row-major order, a beat per tile row, lane c = column c, padding lanes 0): the
    layout of the layer engine's C buffer, where its master weights live too."""
    R, C = config.rows, config.cols
    codes = np.asarray(codes, dtype=np.int64)
    m, n = codes.shape
    tm, tn = -(-m // R), -(-n // C)
    padded = np.zeros((tm * R, tn * C), np.int64)
    padded[:m, :n] = codes
    rows = padded.reshape(tm, R, tn, C).transpose(0, 2, 1, 3).reshape(tm * tn * R, C)
    return pack_lanes(rows, config.acc_format.width)
