"""The output-stationary systolic MAC array."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.config import MacConfig
from fp8mac.model.lfsr import STREAM_ROW_OUTER, stream_seed

from .adder import FloatAdder
from .lfsr import Lfsr
from .pe import ProcessingElement

__all__ = ["MacArray", "RowOuterAdder"]


class RowOuterAdder(wiring.Component):
    """One array row's outer (chunk) adder, for ``outer_placement == "row"``: ``sum = round(a +
    b)`` of whichever PE requests it (the others drive zeros, so ``a`` and ``b`` are ORed), with
    one LFSR (stream ``STREAM_ROW_OUTER`` of the row) when the outer rounding is stochastic; the
    LFSR draws once per cycle with ``en`` and a request. Combinational but for the LFSR.

    Parameters
    ----------
    config : MacConfig
    row : int
        The row (selects the LFSR's seed).

    Members
    -------
    en : In(1)
    req : In(cols)
        Requests, one per PE of the row (at most one is set in a cycle).
    a, b : In(acc_format width).array(cols)
        Each PE's operands, zero when it does not request.
    sum : Out(acc_format width)
    """

    def __init__(self, config: MacConfig, row: int = 0):
        self._config, self._row = config, row
        w, C = config.acc_format.width, config.cols
        super().__init__({"en": In(1), "req": In(C), "a": In(w).array(C), "b": In(w).array(C),
                          "sum": Out(w)})

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        stochastic = cfg.outer_rounding == "stochastic"
        m.submodules.add = add = FloatAdder(cfg.acc_format, cfg.outer_rounding,
                                            cfg.rbits if stochastic else None)
        a = b = 0
        for c in range(cfg.cols):
            a, b = a | self.a[c], b | self.b[c]
        m.d.comb += [add.a.eq(a), add.b.eq(b), self.sum.eq(add.result)]
        if stochastic:
            seed = stream_seed(cfg.seed, self._row, 0, STREAM_ROW_OUTER, cfg.lfsr_width)
            m.submodules.lfsr = lfsr = Lfsr(cfg.lfsr_width, cfg.rbits, seed)
            m.d.comb += [lfsr.en.eq(self.en & self.req.any()), add.rand.eq(lfsr.value)]
        return m


class MacArray(wiring.Component):
    """``rows x cols`` processing elements, output-stationary, with the operand skew inside.

    Each cycle with ``en`` high the array takes one *step*: ``dot`` A columns (``a``: ``rows``
    lanes of ``dot`` codes, lane r in bits ``[r*w, (r+1)*w)`` with ``w = dot * W``, A[r][k + j] in
    its bits ``[j*W, (j+1)*W)``) and ``dot`` B rows (``b``: ``cols`` lanes, B[k + j][c] likewise),
    aligned as the user has them, with ``valid`` (a step is present) and ``last`` (it ends the dot product). Row r's A
    value is delayed by ``r + 1`` registers and column c's B value by ``c + 1`` before entering
    the edge PEs; PEs pass A right and B down one register per hop, so PE (r, c) sees step k
    ``r + c + 1`` cycles after it entered. ``valid`` and ``last`` travel with A.

    Results are read a row at a time: ``row_data[r]`` is the ``cols`` result codes of row r (lane
    c = column c), ``row_full[r]`` says all of them hold an undrained result, and ``clear_row[r]``
    empties them. ``stall`` is high when some PE must write a result into a still-full register:
    the owner must drop ``en`` until that row is drained. With dot products whose last steps enter
    at least :func:`~fp8mac.hw.top.tile_spacing` cycles apart, every row ahead of the blocking one
    in drain order is complete, so the stall always resolves by draining (the
    :class:`~fp8mac.hw.top.Accelerator` enforces that spacing).

    Latency: the result of PE (r, c) is written ``r + c + 2`` cycles after the step that ends its
    dot product entered (``r + c + 3`` with chunking on: the outer add).

    With ``outer_adder = "row"`` the PEs have no outer adder: each row has one
    (:class:`~fp8mac.hw.adder.FloatAdder`, and one :class:`~fp8mac.hw.lfsr.Lfsr` seeded with
    ``stream_seed(seed, r, 0, STREAM_ROW_OUTER)`` when the outer rounding is stochastic) that adds
    the chunk sum of whichever PE asks (``outer_req``) in the cycle it asks, with the same timing as
    a PE's own adder. The owner must end chunks at least ``cols`` steps apart (the
    :class:`~fp8mac.hw.top.Accelerator` does): PE (r, c) asks ``c`` cycles after PE (r, 0), so no
    two PEs of a row ask in one cycle, and they ask in column order, the order in which
    :func:`~fp8mac.model.gemm.mac_gemm` hands out the row's draws.

    Parameters
    ----------
    config : MacConfig
    """

    def __init__(self, config: MacConfig):
        if not isinstance(config, MacConfig):
            raise ValueError(f"config must be a MacConfig, not {type(config).__name__}")
        self._config = config
        wi, wa = config.dot * config.in_format.width, config.acc_format.width
        R, C = config.rows, config.cols
        super().__init__({
            "en": In(1),
            "a": In(R * wi), "b": In(C * wi), "valid": In(1), "last": In(1),
            "row_data": Out(C * wa).array(R),
            "row_full": Out(1).array(R),
            "clear_row": In(1).array(R),
            "stall": Out(1),
        })

    @property
    def config(self) -> MacConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        R, C = cfg.rows, cfg.cols
        wi = cfg.dot * cfg.in_format.width  # one lane: dot codes
        en = self.en

        def delay_line(name, value, depth):
            """``value`` through ``depth`` registers clocked by ``en``."""
            prev = value
            for i in range(depth):
                reg = Signal.like(value, name=f"{name}_d{i}")
                with m.If(en):
                    m.d.sync += reg.eq(prev)
                prev = reg
            return prev

        pes = [[ProcessingElement(cfg, r, c) for c in range(C)] for r in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]
        stall_reqs = []
        for r in range(R):
            a_r = delay_line(f"a_skew{r}", self.a[r * wi:(r + 1) * wi], r + 1)
            valid_r = delay_line(f"valid_skew{r}", self.valid, r + 1)
            last_r = delay_line(f"last_skew{r}", self.last, r + 1)
            for c in range(C):
                pe = pes[r][c]
                m.d.comb += pe.en.eq(en)
                if c == 0:
                    m.d.comb += [pe.a_in.eq(a_r), pe.valid_in.eq(valid_r), pe.last_in.eq(last_r)]
                else:
                    left = pes[r][c - 1]
                    m.d.comb += [pe.a_in.eq(left.a_out), pe.valid_in.eq(left.valid_out),
                                 pe.last_in.eq(left.last_out)]
                if r == 0:
                    m.d.comb += pe.b_in.eq(delay_line(f"b_skew{c}", self.b[c * wi:(c + 1) * wi], c + 1))
                else:
                    m.d.comb += pe.b_in.eq(pes[r - 1][c].b_out)
                m.d.comb += pe.clear.eq(self.clear_row[r])
                stall_reqs.append(pe.stall_req)
            m.d.comb += [self.row_data[r].eq(Cat(pe.result for pe in pes[r])),
                         self.row_full[r].eq(Cat(pe.full for pe in pes[r]).all())]
        m.d.comb += self.stall.eq(Cat(*stall_reqs).any())
        if cfg.outer_placement == "row":
            for r in range(R):
                self._row_outer_adder(m, r, pes[r])
        return m

    def _row_outer_adder(self, m, r, pes):
        """Row r's outer adder: the requesting PE's operands in, the rounded sum out to every PE
        of the row (only the requesting one takes it)."""
        row = RowOuterAdder(self._config, r)
        m.submodules[f"outer_add_r{r}"] = row
        m.d.comb += row.en.eq(self.en)
        for c, pe in enumerate(pes):
            m.d.comb += [row.req[c].eq(pe.outer_req), row.a[c].eq(pe.outer_a),
                         row.b[c].eq(pe.outer_b), pe.outer_sum.eq(row.sum)]
