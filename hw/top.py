"""The accelerator top: the MAC array behind three AXI4-Stream-compatible ports."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.config import MacConfig

from .array import MacArray
from .formats import convert_exact
from .pe import datapath_formats, lane_widths, pe_latency

__all__ = ["Accelerator", "port_list", "tile_spacing", "first_result_latency", "tuser_width",
           "port_members"]


def port_members(ports) -> dict:
    """A component signature's members from a port list (``{"name", "direction", "width"}``
    dicts, as :func:`port_list` gives): every port but ``clk`` and ``rst`` (the domain's)."""
    return {p["name"]: (In if p["direction"] == "input" else Out)(p["width"])
            for p in ports if p["name"] not in ("clk", "rst")}


def tuser_width(config: MacConfig, stream: str) -> int:
    """Bits of ``s_axis_<stream>_tuser``: enough for an index into the stream's run-time format
    set, 0 (no port) for a stream with one format."""
    n = len(config.stream_formats(stream))
    return (n - 1).bit_length() if n > 1 else 0


def port_list(config: MacConfig) -> list[dict]:
    """The top's ports as ``{"name", "direction", "width", "description"}`` (for the manifest)."""
    d, wa = config.dot, config.acc_format.width
    R, C = config.rows, config.cols
    ports = [("clk", "input", 1, "clock, rising edge"),
             ("rst", "input", 1, "synchronous reset, active high: back to idle, LFSRs reseeded")]
    if d == 1:
        cols_a = "A column: lane r (bits [r*W +: W]) is A[tile_row*rows + r][k]"
        rows_b = "B row: lane c (bits [c*W +: W]) is B[k][tile_col*cols + c]"
    else:
        cols_a = (f"{d} A columns: lane r (bits [r*{d}*W +: {d}*W]) holds A[tile_row*rows + r][k + j] "
                  f"in its bits [j*W +: W], j = 0..{d - 1}")
        rows_b = (f"{d} B rows: lane c (bits [c*{d}*W +: {d}*W]) holds B[k + j][tile_col*cols + c] "
                  f"in its bits [j*W +: W]")
    for s, lanes, what in (("a", R, cols_a), ("b", C, rows_b)):
        formats = config.stream_formats(s)
        w = formats[0].width
        labels = " or ".join(f.label for f in formats)
        if config.blocks:
            blk = getattr(config, f"{s}_block")
            w, lane = blk.element.width, lane_widths(config)[s == "b"]
            scale = (f"; bits [{d * w} +: {lane - d * w}] of a lane: the {blk.scale.label} scale of the block "
                     f"(read on the block's last beat)") if blk.scale is not None else ""
            ports += [(f"s_axis_{s}_tdata", "input", lanes * lane,
                       what.replace(f"*{d}*W +: {d}*W]", f"*{lane} +: {lane}]").replace("bits [r*W +: W]", f"bits [r*{lane} +: {lane}]")
                       .replace("bits [c*W +: W]", f"bits [c*{lane} +: {lane}]")
                       + f", W = {w}-bit {blk.element.label} elements of {blk.label} blocks of {blk.block}{scale}; "
                       f"K in whole blocks ({blk.block // d} beat{'s' * (blk.block > d)} each)")]
        else:
            ports += [(f"s_axis_{s}_tdata", "input", lanes * d * w, f"{what}, W = {w}-bit {labels} codes")]
        if tuser_width(config, s):
            ports.append((f"s_axis_{s}_tuser", "input", tuser_width(config, s),
                          "the beat's format: " + ", ".join(f"{i} = {f.label}" for i, f in enumerate(formats))
                          + "; constant within a tile"))
        ports += [
                  (f"s_axis_{s}_tvalid", "input", 1, "beat valid"),
                  (f"s_axis_{s}_tready", "output", 1, "beat accepted (A and B are taken together)"),
                  (f"s_axis_{s}_tlast", "input", 1, "the beat holding the dot product's last k (A's marks it; B's must agree)")]
    ports += [("m_axis_c_tdata", "output", C * wa,
               f"one result row of a tile: lane c is C[tile_row*rows + r][tile_col*cols + c], "
               f"{config.acc_format.label} codes"),
              ("m_axis_c_tvalid", "output", 1, "result beat valid"),
              ("m_axis_c_tready", "input", 1, "result beat taken"),
              ("m_axis_c_tlast", "output", 1, "last row (r = rows - 1) of the tile"),
              ("err_tlast", "output", 1, "sticky: a beat had s_axis_a_tlast != s_axis_b_tlast")]
    if tuser_width(config, "a") or tuser_width(config, "b"):
        ports.append(("err_tuser", "output", 1, "sticky: a beat's tuser changed within a tile, or named "
                                                "no format of the set (the beat is then read in format 0)"))
    return [dict(name=n, direction=d, width=w, description=t) for n, d, w, t in ports]


def first_result_latency(config: MacConfig) -> int:
    """Cycles (in which the array is not stalled) from the clock edge that takes a tile's last
    operand beat to the first cycle in which its row 0 result beat is valid:
    ``cols + 3 + pipeline``, plus 1 with the row's outer adder (the last step reaches PE (0,
    cols-1) after ``cols`` cycles, which writes its result register one cycle later: after its
    outer add with chunking on, from its accumulator with chunking off; the row adder's sum
    comes a cycle later; the row then moves into the output buffer). Row r follows r cycles
    after row 0."""
    return config.cols + 3 + pe_latency(config) + (config.outer_placement == "row")


def tile_spacing(rows: int, cols: int) -> int:
    """Fewest array cycles between the last beats of consecutive tiles for the array to stay
    exact and deadlock-free: ``max(cols, ceil((rows + cols - 1) / 2))``.

    A stall freezes the whole array, so when a PE must write tile u's result over tile u-1's
    undrained one, every row ahead of it in drain order must already be complete, or the drain
    waits on a frozen row forever. PE (r, c) writes ``r + c + 3`` cycles after the step that ends
    its dot product enters (the same for every tile; written ``r + c + 2`` here, the constant
    cancels), so with tile ends T:

    * the drain may be at row r of tile u-1 when PE (r, 0) writes tile u, at ``T_u + r + 2``; that
      row's last PE wrote at ``T_(u-1) + r + cols + 1``, earlier iff ``T_u - T_(u-1) >= cols``;
    * the drain may still be on tile u-2 (tile u-1 is not drained at all) when PE (0, 0) writes
      tile u, at ``T_u + 2``; tile u-2's last PE wrote at ``T_(u-2) + rows + cols``, earlier iff
      ``T_u - T_(u-2) >= rows + cols - 1``: two spacings of ``ceil((rows + cols - 1) / 2)``.

    The drain is never further behind: PE (r, c) cannot write tile u-1 before tile u-2's row r
    has left. Arrays with ``rows <= cols + 1`` need only ``cols``.
    """
    return max(cols, (rows + cols) // 2)


class Accelerator(wiring.Component):
    """The MAC array with AXI4-Stream-compatible operand and result streams.

    A *tile* is one ``rows x cols`` block of C = A @ B over the dot-product length K. The host
    streams, for k = 0 .. K-1, one beat on each operand stream: A column k of the tile's rows on
    ``s_axis_a`` and B row k of the tile's columns on ``s_axis_b``, with ``tlast`` on k = K-1
    (``s_axis_a_tlast`` defines the end; a differing ``s_axis_b_tlast`` sets the sticky
    ``err_tlast``). The two streams are consumed together: a beat is taken in a cycle where both are
    valid and the array can step. Tiles follow each other back to back, each with its own K.

    Results come out on ``m_axis_c`` in tile order, one beat per output row r = 0 .. rows-1 (lane c
    = column c), ``tlast`` on the tile's last row. They are the codes of
    :func:`fp8mac.model.gemm.mac_gemm` for the same configuration, tiles taken in the order the host
    sends them (the model's order is row-major over tiles) and padding lanes computing on whatever
    the host sends (the model pads with +0).

    Flow control: any stall stalls the whole array (a PE whose result register is still full, the
    result stream's backpressure reaching back); no beat is lost, duplicated or reordered under
    any valid/ready pattern, and the results do not depend on the pattern (LFSRs advance only on
    real roundings). The stall is registered: the array decides in each cycle whether it will
    step in the next one (:class:`MacArray`), so ``s_axis_*_tready`` depend on registers and
    the other stream's ``tvalid`` only; results leave through a two-entry output buffer, so
    ``m_axis_c_*`` are registers and a row moves into it (freeing the row's PEs) whenever it will
    have room, whatever ``m_axis_c_tready`` does in that cycle. Two rules keep the array exact and deadlock-free, at the cost of idle steps:
    a tile's last beat enters at least :func:`tile_spacing` cycles after the previous tile's last
    beat (``max(cols, ceil((rows + cols - 1) / 2))``; only tiles with a K below it pay for it), and
    with the ``shared-adder`` PE one bubble follows each chunk's last beat (the cycle in which
    every PE's adder does its outer add). With ``outer_adder = "row"`` a beat that ends a chunk
    enters at least ``max(cols, 2)`` cycles after the previous one that did (the row's adder
    serves one PE per cycle, in two stages; with ``chunk / dot >= max(cols, 2)``, checked by the
    configuration, only a tile's short last chunk can wait).

    Latency, without stalls: a tile's first result beat (row 0) is valid ``cols + 3`` cycles after
    its last operand beat is taken, plus ``pipeline``, plus 1 with the row's outer adder
    (:func:`first_result_latency`); row r is ready r cycles after row 0, so a tile's
    ``rows`` result beats can leave back to back. Pipeline stages delay every PE alike, so the
    tile spacing and the throughput (one step per cycle) do not change.

    Reset (``rst``, synchronous) returns everything to idle and reseeds the LFSRs, whatever the
    state: the next tile is computed as by a fresh ``mac_gemm``.

    ``seed_ports`` and ``module_prefix`` choose the array's structure (:class:`MacArray`; the
    default runs in Amaranth's simulator, ``module_prefix`` is what ``fp8mac generate`` writes,
    :func:`fp8mac.hw.emit.accelerator_verilog`); the results are the same.
    """

    def __init__(self, config: MacConfig, *, seed_ports: bool = False,
                 module_prefix: str | None = None):
        if not isinstance(config, MacConfig):
            raise ValueError(f"config must be a MacConfig, not {type(config).__name__}")
        self._config = config
        self._array_options = dict(seed_ports=seed_ports, module_prefix=module_prefix)
        super().__init__(port_members(port_list(config)))

    @property
    def config(self) -> MacConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        R, C = cfg.rows, cfg.cols
        m.submodules.array = array = MacArray(cfg, **self._array_options)

        en = array.en  # a register: the array decided in the previous cycle whether to stall

        def spaced(event, limit, name):
            """High when at least ``limit`` array cycles have passed since the last beat taken
            with ``event`` (a counter saturating at ``limit``, as if the last one were long ago
            after reset)."""
            gap = Signal(range(limit + 1), init=limit, name=name)
            with m.If(en):
                m.d.sync += gap.eq(Mux(fire & event, 1, Mux(gap < limit, gap + 1, gap)))
            return gap >= limit

        bubble = Signal()  # shared-adder PE: this cycle must stay empty
        take = Signal()
        chunked = cfg.chunk is not None and (cfg.pe == "shared-adder" or cfg.outer_placement == "row")
        chunk_end = Signal()  # the beat on offer ends a chunk (only where that matters)
        chunk_ok = Signal(init=1)  # ... and may enter now
        fire = Signal()
        # Spacing of tile ends: a tile's last beat enters tile_spacing array cycles after the
        # previous one's at the earliest.
        tile_ok = spaced(self.s_axis_a_tlast, tile_spacing(R, C), "gap")
        m.d.comb += take.eq(en & ~bubble & chunk_ok & (tile_ok | ~self.s_axis_a_tlast))
        m.d.comb += [
            fire.eq(self.s_axis_a_tvalid & self.s_axis_b_tvalid & take),
            self.s_axis_a_tready.eq(self.s_axis_b_tvalid & take),
            self.s_axis_b_tready.eq(self.s_axis_a_tvalid & take),
            array.valid.eq(fire), array.last.eq(self.s_axis_a_tlast),
        ]
        # Operand codes into the array: as they come, or, for a stream with run-time formats,
        # each code converted exactly into the stream's common format as its tuser says.
        for s, lanes in (("a", R), ("b", C)):
            m.d.comb += getattr(array, s).eq(self._datapath_codes(m, s, lanes * cfg.dot))
        self._check_tuser(m, fire)
        if chunked:
            steps = cfg.chunk // cfg.dot  # beats per chunk
            count = Signal(range(max(steps, 2)))
            m.d.comb += chunk_end.eq(self.s_axis_a_tlast | (count == steps - 1))
            with m.If(en & fire):
                m.d.sync += count.eq(Mux(chunk_end, 0, count + 1))
        if cfg.pe == "shared-adder" and cfg.chunk is not None:
            with m.If(en):
                m.d.sync += bubble.eq(fire & chunk_end)
        if cfg.outer_placement == "row":
            # A row's outer adder serves its PEs' chunk ends one per cycle, column after column,
            # and takes two cycles: chunk ends enter at least max(cols, 2) array cycles apart
            # (only short last chunks wait).
            m.d.comb += chunk_ok.eq(spaced(chunk_end, cfg.row_chunk_spacing, "chunk_gap") | ~chunk_end)
        with m.If(fire & (self.s_axis_a_tlast != self.s_axis_b_tlast)):
            m.d.sync += self.err_tlast.eq(1)

        # Drain: one beat per row, in order, through a two-entry output buffer, so that
        # m_axis_c comes from registers and the array learns a cycle ahead which row it loses:
        # `pull` (a register) moves row `row` into the buffer and clears it in the PEs; the next
        # cycle's pull is decided now, when that row will be full then and the buffer will have
        # room then (this cycle's tready counted).
        wa = cfg.acc_format.width
        row = Signal(range(R))                 # the next row to pull
        pull = Signal()                        # this cycle: row `row` moves into the buffer
        count = Signal(range(3))               # beats in the buffer
        beats = [Signal(C * wa + 1, name=f"out_beat{i}", reset_less=True) for i in range(2)]
        pop, pull_next = Signal(), Signal()
        row_next, count_next = Signal.like(row), Signal.like(count)
        beat = Cat(Array(array.row_data)[row], row == R - 1)  # data, tlast
        m.d.comb += [
            self.m_axis_c_tvalid.eq(count != 0),
            self.m_axis_c_tdata.eq(beats[0][:C * wa]), self.m_axis_c_tlast.eq(beats[0][C * wa]),
            pop.eq(self.m_axis_c_tvalid & self.m_axis_c_tready),
            Array(array.clear_row)[row].eq(pull),
            row_next.eq(Mux(pull, Mux(row == R - 1, 0, row + 1), row)),
            count_next.eq(count + pull - pop),
            pull_next.eq(Array(array.row_full_next)[row_next] & (count_next < 2)),
            Array(array.clear_row_next)[row_next].eq(pull_next),
        ]
        m.d.sync += [row.eq(row_next), pull.eq(pull_next), count.eq(count_next)]
        # The buffer: beats[0] is the head; a pull lands behind what stays. A pull only comes
        # with count < 2 (decided on count_next < 2), so there is never a third beat.
        with m.If(pop):
            m.d.sync += beats[0].eq(Mux(pull & (count == 1), beat, beats[1]))
        with m.Elif(pull):
            with m.If(count == 0):
                m.d.sync += beats[0].eq(beat)
            with m.Else():
                m.d.sync += beats[1].eq(beat)
        return m

    def _datapath_codes(self, m, stream: str, n: int):
        """The ``n`` codes of ``s_axis_<stream>_tdata`` in the array's format for the stream."""
        data = getattr(self, f"s_axis_{stream}_tdata")
        formats = self._config.stream_formats(stream)
        if len(formats) == 1:
            return data
        common = datapath_formats(self._config)[stream == "b"]
        sel = getattr(self, f"s_axis_{stream}_tuser")
        w = formats[0].width
        out = []
        for i in range(n):
            code, conv = data[i * w:(i + 1) * w], None
            for index, fmt in reversed(list(enumerate(formats))):  # index 0 when none matches
                value = convert_exact(fmt, common, code)
                conv = value if conv is None else Mux(sel == index, value, conv)
            out.append(conv)
        return Cat(*out)

    def _check_tuser(self, m, fire):
        """``err_tuser``: a taken beat whose tuser differs from its tile's first beat's, or
        names no format of the set (sticky until reset)."""
        users = [(s, getattr(self, f"s_axis_{s}_tuser"), len(self._config.stream_formats(s)))
                 for s in ("a", "b") if tuser_width(self._config, s)]
        if not users:
            return
        in_tile = Signal()  # a tile has begun: a beat without tlast was taken since the last tlast
        bad = []
        for s, user, n in users:
            first = Signal.like(user, name=f"tile_{s}_tuser", reset_less=True)
            with m.If(fire):
                m.d.sync += first.eq(Mux(in_tile, first, user))
            bad.append((in_tile & (user != first)) | (user >= n))
        with m.If(fire):
            m.d.sync += in_tile.eq(~self.s_axis_a_tlast)
            with m.If(Cat(*bad).any()):
                m.d.sync += self.err_tuser.eq(1)
