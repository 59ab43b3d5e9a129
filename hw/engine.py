"""The layer engine: the MAC array with operand and result buffers, a GEMM sequencer and AXI4-Lite
control, so that the host loads operands once and the engine tiles a whole GEMM by itself.

Dataflow (:class:`Engine`):

* ``s_axis_a`` / ``s_axis_b`` write the A and B buffers (``lib.memory`` memories), one word per
  beat, at consecutive addresses from the load pointer ``A_LOAD`` / ``B_LOAD``. A word is one
  operand beat of the streaming top (:class:`~fp8mac.hw.top.Accelerator`): ``rows * dot`` A codes
  or ``cols * dot`` B codes, laid out as :mod:`fp8mac.sim.tiler` packs them. A GEMM's A occupies
  ``ceil(M / rows) * ceil(K / dot)`` words from ``A_BASE`` (tile row after tile row, each its
  ``ceil(K / dot)`` beats), B ``ceil(N / cols) * ceil(K / dot)`` words from ``B_BASE``.
* ``START`` runs ``C = A @ B``: the sequencer walks the tiles in row-major order, reads each
  tile's beats from the buffers and feeds them to the streaming top (whose tile spacing, chunk
  rules and stalls stay inside it), and writes each result row into the C buffer at
  ``C_BASE + tile * rows + r``. ``DONE`` (and the ``done`` port) rises when the last row is
  written; ``CYCLES`` holds the GEMM's clock cycles.
* ``READ`` streams ``C_COUNT`` words of the C buffer from ``C_BASE`` out on ``m_axis_c``
  (``tlast`` on the last).
* ``UPDATE`` is the SGD step of FP8 training on FP16 master weights held in the C buffer, in the
  result layout (``s_axis_w`` loads them from ``C_LOAD``): for the M x N weight matrix at
  ``W_BASE`` and its gradient at ``C_BASE`` (a weight-gradient GEMM's results), ``w <- round(w
  - LR * g)`` element by element in row-major order, one element per cycle, stochastic rounding
  with ``rbits`` bits per element from a 32-bit LFSR that starts from ``U_STATE`` and leaves its
  state there: bit for bit :func:`fp8mac.model.update.sgd_update`.

Bad programming never hangs and never computes on garbage: a command refused or stopped sets a
sticky error flag in ``STATUS`` (:data:`ERRORS`), cleared by writing ``CLEAR`` or by reset; the
engine stays idle. :data:`REGISTERS` is the register map (the manifest lists it too).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Module, ResetSignal,
                          Signal)
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory

from fp8mac.model.config import MacConfig
from fp8mac.model.lfsr import leap_columns

from .adder import MacUnit
from .multiplier import FloatMultiplier
from .top import Accelerator, port_members, tuser_width


def _xor(bits):
    out = bits[0]
    for bit in bits[1:]:
        out = out ^ bit
    return out

__all__ = ["EngineConfig", "Engine", "REGISTERS", "ERRORS", "CTRL_BITS", "STATUS_BITS",
           "engine_port_list", "register_map", "c_header"]

REGISTERS = {
    # name: (byte offset, access, description)
    "CTRL": (0x00, "w", "commands, one per write (bits below); reads 0"),
    "STATUS": (0x04, "r", "BUSY, DONE, READING and the sticky error flags (bits below)"),
    "M": (0x08, "rw", "rows of A and C, 1..65535"),
    "N": (0x0C, "rw", "columns of B and C, 1..65535"),
    "K": (0x10, "rw", "the dot-product length, 1..65535"),
    "A_BASE": (0x14, "rw", "A buffer word of the GEMM's first A beat"),
    "B_BASE": (0x18, "rw", "B buffer word of the GEMM's first B beat"),
    "C_BASE": (0x1C, "rw", "C buffer word of the first result row (START) or of the first word READ sends"),
    "A_LOAD": (0x20, "rw", "A buffer word the next s_axis_a beat is written to (advances by one per beat)"),
    "B_LOAD": (0x24, "rw", "B buffer word the next s_axis_b beat is written to"),
    "C_COUNT": (0x28, "rw", "words READ sends"),
    "FORMATS": (0x2C, "rw", "run-time formats: bits [1:0] the A stream's index, [3:2] the B stream's"),
    "CYCLES": (0x30, "r", "clock cycles of the last GEMM or UPDATE, from its checks' end to DONE"),
    "DEPTHS": (0x34, "r", "log2 of the A, B and C buffer depths in bits [7:0], [15:8], [23:16]"),
    "C_LOAD": (0x38, "rw", "C buffer word the next s_axis_w beat is written to (master weights)"),
    "W_BASE": (0x3C, "rw", "UPDATE: C buffer word of the master weights' first row (updated in place)"),
    "LR": (0x40, "rw", "UPDATE: the learning rate, an accumulator-format code (the unit adds -LR * G)"),
    "U_STATE": (0x44, "rw", "UPDATE: the 32-bit LFSR state the next draw follows (read back after an "
                            "UPDATE to continue the tensor's stream)"),
    "U_MODE": (0x48, "rw", "UPDATE: bit 0 = 1 rounds to nearest instead of stochastically"),
}
"""The AXI4-Lite register map: 32-bit registers, byte addresses (``s_axil_awaddr`` /
``s_axil_araddr``, 8 bits). Writes to read-only or unknown addresses answer SLVERR."""

CTRL_BITS = {"START": 0, "READ": 1, "CLEAR": 2, "UPDATE": 3}
"""``CTRL`` bits: ``START`` a GEMM, ``READ`` the C buffer out, ``CLEAR`` the error flags,
``UPDATE`` the weights (:mod:`fp8mac.model.update`)."""

STATUS_BITS = {"BUSY": 0, "DONE": 1, "READING": 2}
"""``STATUS`` bits besides the errors: ``BUSY`` a START or UPDATE is being checked or runs (the
checks take ``max(ceil(M/rows), ceil(N/cols), ceil(K/dot))`` cycles); ``DONE`` the last GEMM or
UPDATE finished: low from the next START or UPDATE on, high again when it finishes, or, if its
checks refuse it (an error flag), back to what it was before it; ``READING`` a READ is sending.
So a host may wait for ``done`` right after a command and then read ``STATUS`` for errors."""

ERRORS = {
    "ERR_BUSY": (8, "START, UPDATE or READ while a GEMM, an UPDATE or a READ runs (the command is ignored)"),
    "ERR_SHAPE": (9, "START with M, N or K = 0 (nothing runs)"),
    "ERR_A_RANGE": (10, "START whose A words (A_BASE + ceil(M/rows) * ceil(K/dot)) exceed the A buffer"),
    "ERR_B_RANGE": (11, "START whose B words exceed the B buffer"),
    "ERR_C_RANGE": (12, "START whose result rows (C_BASE + ceil(M/rows) * ceil(N/cols) * rows), or "
                        "READ whose words (C_BASE + C_COUNT), exceed the C buffer"),
    "ERR_LOAD": (13, "an s_axis_a / s_axis_b / s_axis_w beat beyond its buffer (the beat is taken and dropped)"),
    "ERR_FORMAT": (14, "START with a FORMATS index beyond a stream's run-time format set"),
    "ERR_READ": (15, "READ with C_COUNT = 0"),
    "ERR_W_RANGE": (16, "UPDATE whose weight or gradient rows (W_BASE or C_BASE + ceil(M/rows) * "
                        "ceil(N/cols) * rows) exceed the C buffer"),
    "ERR_STATE": (17, "UPDATE, stochastic, with U_STATE = 0 (the LFSR's dead state)"),
}
"""``STATUS`` error flags (bit, meaning): sticky until ``CLEAR`` or reset; a refused command
changes nothing else."""


@dataclass(frozen=True)
class EngineConfig:
    """Buffer depths of the :class:`Engine`, in words (powers of two, 2..65536).

    Attributes
    ----------
    a_words, b_words : int
        A and B buffer words (one operand beat each: ``rows * dot`` or ``cols * dot`` codes).
    c_words : int
        C buffer words (one result row each: ``cols`` accumulator codes).
    """

    a_words: int = 1024
    b_words: int = 1024
    c_words: int = 1024

    def __post_init__(self):
        for name in ("a_words", "b_words", "c_words"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 65536
                    or value & (value - 1)):
                raise ValueError(f"{name} must be a power of two in 2..65536, not {value!r}")


def engine_port_list(config: MacConfig) -> list[dict]:
    """The engine's ports as ``{"name", "direction", "width", "description"}``."""
    wacc = config.acc_format.width
    w_a = config.rows * config.dot * config.stream_formats("a")[0].width
    w_b = config.cols * config.dot * config.stream_formats("b")[0].width
    ports = [("clk", "input", 1, "clock, rising edge"),
             ("rst", "input", 1, "synchronous reset, active high: idle, registers and flags cleared (buffers keep their words)")]
    for ch, signals in (("aw", [("addr", "input", 8), ("prot", "input", 3), ("valid", "input", 1), ("ready", "output", 1)]),
                        ("w", [("data", "input", 32), ("strb", "input", 4), ("valid", "input", 1), ("ready", "output", 1)]),
                        ("b", [("resp", "output", 2), ("valid", "output", 1), ("ready", "input", 1)]),
                        ("ar", [("addr", "input", 8), ("prot", "input", 3), ("valid", "input", 1), ("ready", "output", 1)]),
                        ("r", [("data", "output", 32), ("resp", "output", 2), ("valid", "output", 1), ("ready", "input", 1)])):
        for sig, d, w in signals:
            ports.append((f"s_axil_{ch}{sig}", d, w, f"AXI4-Lite {ch.upper()} channel"))
    ports += [("s_axis_a_tdata", "input", w_a, "one A buffer word: an A operand beat"),
              ("s_axis_a_tvalid", "input", 1, "A load beat valid"),
              ("s_axis_a_tready", "output", 1, "always 1: loads never stall"),
              ("s_axis_b_tdata", "input", w_b, "one B buffer word: a B operand beat"),
              ("s_axis_b_tvalid", "input", 1, "B load beat valid"),
              ("s_axis_b_tready", "output", 1, "always 1"),
              ("s_axis_w_tdata", "input", config.cols * wacc, "one C buffer word (master weights)"),
              ("s_axis_w_tvalid", "input", 1, "C load beat valid"),
              ("s_axis_w_tready", "output", 1, "low while a GEMM or an UPDATE writes the C buffer"),
              ("m_axis_c_tdata", "output", config.cols * wacc, "one C buffer word: a result row"),
              ("m_axis_c_tvalid", "output", 1, "READ beat valid"),
              ("m_axis_c_tready", "input", 1, "READ beat taken"),
              ("m_axis_c_tlast", "output", 1, "the READ's last word"),
              ("done", "output", 1, "STATUS.DONE: the last GEMM finished")]
    return [dict(name=n, direction=d, width=w, description=t) for n, d, w, t in ports]


def c_header(top: str) -> str:
    """``<top>_regs.h``: the register map as C macros for the SoC's driver (byte offsets, CTRL
    and STATUS bits, error flags)."""
    guard = f"{top.upper()}_REGS_H"
    lines = [f"/* {top}: fp8mac layer engine registers (AXI4-Lite, 32-bit, byte offsets). */",
             "/* Written by fp8mac generate --top-kind engine; see its manifest.json. */",
             f"#ifndef {guard}", f"#define {guard}", ""]
    prefix = top.upper()
    for name, (offset, access, text) in REGISTERS.items():
        lines.append(f"#define {prefix}_{name} 0x{offset:02X}u /* {access}: {text.replace('*/', '* /')} */")
    lines.append("")
    for name, bit in CTRL_BITS.items():
        lines.append(f"#define {prefix}_CTRL_{name} (1u << {bit})")
    for name, bit in STATUS_BITS.items():
        lines.append(f"#define {prefix}_STATUS_{name} (1u << {bit})")
    for name, (bit, text) in ERRORS.items():
        lines.append(f"#define {prefix}_STATUS_{name} (1u << {bit}) /* {text.replace('*/', '* /')} */")
    errors = " | ".join(f"{prefix}_STATUS_{name}" for name in ERRORS)
    lines += [f"#define {prefix}_STATUS_ERRORS ({errors})", "", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def register_map() -> dict:
    """The register map for the manifest: registers, CTRL and STATUS bits, error flags."""
    return {"bus": "AXI4-Lite, 32-bit data, 8-bit byte addresses",
            "registers": [dict(name=k, offset=o, access=a, description=t) for k, (o, a, t) in REGISTERS.items()],
            "ctrl_bits": CTRL_BITS, "status_bits": STATUS_BITS,
            "errors": [dict(name=k, bit=b, description=t) for k, (b, t) in ERRORS.items()]}


class Engine(wiring.Component):
    """The layer engine (module docstring): buffers, sequencer and AXI4-Lite control around the
    streaming :class:`~fp8mac.hw.top.Accelerator`, whose results it computes bit for bit.

    Parameters
    ----------
    config : MacConfig
    engine : EngineConfig
    module_prefix : str, optional
        As :class:`~fp8mac.hw.top.Accelerator` (the generated Verilog's PE and row modules).
    """

    def __init__(self, config: MacConfig, engine: EngineConfig = EngineConfig(), *,
                 module_prefix: str | None = None):
        if not isinstance(config, MacConfig):
            raise ValueError(f"config must be a MacConfig, not {type(config).__name__}")
        if not isinstance(engine, EngineConfig):
            raise ValueError(f"engine must be an EngineConfig, not {type(engine).__name__}")
        if config.blocks:
            raise ValueError("a_block: the layer engine's buffers hold plain operand codes; block-scaled "
                             "operands go with the streaming top (--top-kind stream)")
        self._config, self._engine = config, engine
        self._module_prefix = module_prefix
        super().__init__(port_members(engine_port_list(config)))

    @property
    def config(self) -> MacConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg, eng = self._config, self._engine
        R, C, d = cfg.rows, cfg.cols, cfg.dot
        # The streaming top runs in its own domain, reset with the engine and at every START, so
        # that each GEMM is computed as a fresh mac_gemm (LFSRs reseeded).
        restart = Signal()
        m.domains.core = core_domain = ClockDomain("core", local=True)
        m.d.comb += [core_domain.clk.eq(ClockSignal("sync")),
                     core_domain.rst.eq(ResetSignal("sync") | restart)]
        core = Accelerator(cfg, module_prefix=self._module_prefix)
        m.submodules.core = DomainRenamer("core")(core)
        wa, wb, wc = len(self.s_axis_a_tdata), len(self.s_axis_b_tdata), len(self.m_axis_c_tdata)
        m.submodules.mem_a = mem_a = Memory(shape=wa, depth=eng.a_words, init=[])
        m.submodules.mem_b = mem_b = Memory(shape=wb, depth=eng.b_words, init=[])
        m.submodules.mem_c = mem_c = Memory(shape=wc, depth=eng.c_words, init=[])
        facc = cfg.acc_format
        wacc = facc.width

        # ---- registers ----------------------------------------------------------------------
        reg = {name: Signal(32, name=f"reg_{name.lower()}") for name in
               ("M", "N", "K", "A_BASE", "B_BASE", "C_BASE", "A_LOAD", "B_LOAD", "C_COUNT", "FORMATS",
                "CYCLES", "C_LOAD", "W_BASE", "LR", "U_STATE", "U_MODE")}
        errors = Signal(len(ERRORS))
        busy, done, reading = Signal(), Signal(), Signal()
        cmd = {name: Signal(name=f"cmd_{name.lower()}") for name in CTRL_BITS}  # one-cycle pulses
        set_error = {name: Signal(name=f"set_{name.lower()}") for name in ERRORS}
        depths = Const((eng.a_words.bit_length() - 1) | ((eng.b_words.bit_length() - 1) << 8)
                       | ((eng.c_words.bit_length() - 1) << 16), 32)
        fsm_idle = Signal()
        status = Cat(~fsm_idle, done, reading, Const(0, 5), errors)
        load_ptr = {"a": reg["A_LOAD"], "b": reg["B_LOAD"]}
        load_fire = {s: getattr(self, f"s_axis_{s}_tvalid") for s in "ab"}

        # ---- AXI4-Lite slave: a write takes AW and W together; one response at a time --------
        bvalid, rvalid = Signal(), Signal()
        m.d.comb += [self.s_axil_bvalid.eq(bvalid), self.s_axil_rvalid.eq(rvalid)]
        wtake = Signal()
        m.d.comb += [wtake.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~bvalid),
                     self.s_axil_awready.eq(wtake), self.s_axil_wready.eq(wtake)]
        waddr, wdata = self.s_axil_awaddr, self.s_axil_wdata
        writable = [k for k, (_, a, _) in REGISTERS.items() if "w" in a]
        with m.If(bvalid & self.s_axil_bready):
            m.d.sync += bvalid.eq(0)
        with m.If(wtake):
            m.d.sync += [bvalid.eq(1), self.s_axil_bresp.eq(2)]  # SLVERR unless a writable address
            with m.Switch(waddr):
                for name in writable:
                    with m.Case(REGISTERS[name][0]):
                        m.d.sync += self.s_axil_bresp.eq(0)
                        if name == "CTRL":
                            m.d.comb += [cmd[c].eq(wdata[b]) for c, b in CTRL_BITS.items()]
                        else:
                            m.d.sync += reg[name].eq(wdata)
        rtake = Signal()
        m.d.comb += [rtake.eq(self.s_axil_arvalid & ~rvalid), self.s_axil_arready.eq(rtake)]
        with m.If(rvalid & self.s_axil_rready):
            m.d.sync += rvalid.eq(0)
        with m.If(rtake):
            m.d.sync += [rvalid.eq(1), self.s_axil_rresp.eq(2), self.s_axil_rdata.eq(0)]
            with m.Switch(self.s_axil_araddr):
                for name, (offset, access, _) in REGISTERS.items():
                    if "r" not in access:
                        continue
                    value = {"STATUS": status, "DEPTHS": depths}.get(name)
                    with m.Case(offset):
                        m.d.sync += [self.s_axil_rresp.eq(0),
                                     self.s_axil_rdata.eq(reg[name] if value is None else value)]
        m.d.comb += self.done.eq(done)

        # ---- loads: one word per beat, never stalled; beyond the buffer: dropped, flagged ---
        for s, mem, depth in (("a", mem_a, eng.a_words), ("b", mem_b, eng.b_words)):
            port = mem.write_port()
            ptr = load_ptr[s]
            m.d.comb += [getattr(self, f"s_axis_{s}_tready").eq(1),
                         port.addr.eq(ptr), port.data.eq(getattr(self, f"s_axis_{s}_tdata")),
                         port.en.eq(load_fire[s] & (ptr < depth))]
            with m.If(load_fire[s]):
                host_write = wtake & (waddr == REGISTERS[f"{s.upper()}_LOAD"][0])
                with m.If(~host_write):  # a host write of the pointer wins
                    m.d.sync += ptr.eq(ptr + 1)
                with m.If(ptr >= depth):
                    m.d.comb += set_error["ERR_LOAD"].eq(1)

        # ---- the sequencer ---------------------------------------------------------------------
        # Tiles in row-major order; per tile `steps` beats: A word a_row + s, B word b_col + s.
        tm, tn, steps = Signal(16), Signal(16), Signal(16)  # ceil(M/R), ceil(N/C), ceil(K/d)
        acc_m, acc_n, acc_k = Signal(17), Signal(17), Signal(17)
        ti, tj, s_ = Signal(16), Signal(16), Signal(16)
        a_row, b_col = Signal(17), Signal(17)
        issued_all = Signal()
        rows_written, rows_needed = Signal(32), Signal(32)
        c_ptr = Signal(32)
        n_a = {s: len(cfg.stream_formats(s)) for s in "ab"}
        fmt_a, fmt_b = reg["FORMATS"][0:2], reg["FORMATS"][2:4]

        fifo_width = wa + wb + 1
        m.submodules.feed = feed = SyncFIFOBuffered(width=fifo_width, depth=4)
        rd_a, rd_b = mem_a.read_port(), mem_b.read_port()
        in_flight = Signal()  # a read issued last cycle: its words arrive now
        issue = Signal()
        last_issued = Signal()
        m.d.comb += [feed.w_en.eq(in_flight), feed.w_data.eq(Cat(rd_a.data, rd_b.data, last_issued))]
        m.d.sync += in_flight.eq(issue)
        with m.If(issue):
            m.d.sync += last_issued.eq(s_ == steps - 1)

        m.d.comb += [
            rd_a.addr.eq(a_row + s_), rd_b.addr.eq(b_col + s_), rd_a.en.eq(issue), rd_b.en.eq(issue),
            core.s_axis_a_tdata.eq(feed.r_data[:wa]), core.s_axis_b_tdata.eq(feed.r_data[wa:wa + wb]),
            core.s_axis_a_tlast.eq(feed.r_data[-1]), core.s_axis_b_tlast.eq(feed.r_data[-1]),
            core.s_axis_a_tvalid.eq(feed.r_rdy), core.s_axis_b_tvalid.eq(feed.r_rdy),
            feed.r_en.eq(feed.r_rdy & core.s_axis_a_tready),
        ]
        if tuser_width(cfg, "a"):
            m.d.comb += core.s_axis_a_tuser.eq(fmt_a)
        if tuser_width(cfg, "b"):
            m.d.comb += core.s_axis_b_tuser.eq(fmt_b)

        # Results: the core's rows into the C buffer, never stalled.
        # The C buffer's one write port (a lane each, for UPDATE): the GEMM's result rows, the
        # UPDATE's weights, or, while neither runs, the s_axis_w loads.
        wr_c = mem_c.write_port(granularity=wacc)
        updating = Signal()
        m.d.comb += core.m_axis_c_tready.eq(1)
        with m.If(core.m_axis_c_tvalid & busy):
            m.d.comb += [wr_c.addr.eq(c_ptr), wr_c.data.eq(core.m_axis_c_tdata), wr_c.en.eq(-1)]
            m.d.sync += [c_ptr.eq(c_ptr + 1), rows_written.eq(rows_written + 1)]
        m.d.comb += self.s_axis_w_tready.eq(~busy & ~updating)
        with m.If(self.s_axis_w_tvalid & ~busy & ~updating):
            with m.If(reg["C_LOAD"] < eng.c_words):
                m.d.comb += [wr_c.addr.eq(reg["C_LOAD"]), wr_c.data.eq(self.s_axis_w_tdata), wr_c.en.eq(-1)]
            with m.Else():
                m.d.comb += set_error["ERR_LOAD"].eq(1)
            with m.If(~(wtake & (waddr == REGISTERS["C_LOAD"][0]))):
                m.d.sync += reg["C_LOAD"].eq(reg["C_LOAD"] + 1)

        # UPDATE: one weight per cycle, row-major over the M x N matrix in the result layout
        # (element (i, j) in word (i // rows * tn + j // cols) * rows + i % rows, lane j % cols).
        # Stage 0 reads the weight's and the gradient's words; stage 1 adds -LR * g, rounds once
        # and writes the lane back.
        rd_w, rd_g = mem_c.read_port(), mem_c.read_port()
        u_i, u_r, u_rbase = Signal(16), Signal(16), Signal(32)  # row i, i % rows, (i // rows) * tn * rows
        u_j, u_c, u_jr = Signal(16), Signal(range(C)), Signal(32)  # column j, j % cols, (j // cols) * rows
        u_issue, u_all = Signal(), Signal()
        u_word = Signal(32)
        s1_valid, s1_lane, s1_word = Signal(), Signal(range(C)), Signal(32)
        m.d.comb += [u_word.eq(u_rbase + u_r + u_jr),
                     rd_w.addr.eq(reg["W_BASE"] + u_word), rd_g.addr.eq(reg["C_BASE"] + u_word),
                     rd_w.en.eq(u_issue), rd_g.en.eq(u_issue)]
        m.d.sync += s1_valid.eq(u_issue)
        with m.If(u_issue):
            m.d.sync += [s1_lane.eq(u_c), s1_word.eq(u_word)]
            with m.If(u_j == reg["N"][:16] - 1):
                m.d.sync += [u_j.eq(0), u_c.eq(0), u_jr.eq(0), u_i.eq(u_i + 1)]
                with m.If(u_r == R - 1):
                    m.d.sync += [u_r.eq(0), u_rbase.eq(u_rbase + tn * R)]
                with m.Else():
                    m.d.sync += u_r.eq(u_r + 1)
                with m.If(u_i == reg["M"][:16] - 1):
                    m.d.sync += u_all.eq(1)
            with m.Else():
                m.d.sync += u_j.eq(u_j + 1)
                with m.If(u_c == C - 1):
                    m.d.sync += [u_c.eq(0), u_jr.eq(u_jr + R)]
                with m.Else():
                    m.d.sync += u_c.eq(u_c + 1)
        rbits = cfg.rbits
        m.submodules.upd_mul = upd_mul = FloatMultiplier(facc)
        m.submodules.upd_mac = upd_mac = MacUnit.for_product(facc, facc, ("stochastic", "nearest"), rbits)
        u_state = reg["U_STATE"]
        columns = leap_columns(32, rbits)
        leap = Cat(*[_xor([u_state[j] for j in range(32) if (columns[j] >> i) & 1]) for i in range(32)])
        lane_w = rd_w.data.word_select(s1_lane, wacc)
        lane_g = rd_g.data.word_select(s1_lane, wacc)
        m.d.comb += [upd_mul.a.eq(reg["LR"][:wacc] ^ (1 << (wacc - 1))), upd_mul.b.eq(lane_g),
                     upd_mac.acc.eq(lane_w), upd_mac.addend.eq(upd_mul.product),
                     upd_mac.mode.eq(reg["U_MODE"][0]), upd_mac.rand.eq(leap[:rbits])]
        with m.If(s1_valid):
            m.d.comb += [wr_c.addr.eq(reg["W_BASE"] + s1_word), wr_c.data.eq(upd_mac.result.replicate(C)),
                         wr_c.en.eq(1 << s1_lane)]
            with m.If(~reg["U_MODE"][0]):
                m.d.sync += u_state.eq(leap)

        # READ: C_COUNT words from C_BASE onto m_axis_c, through a small FIFO after the read port.
        rd_c = mem_c.read_port()
        m.submodules.out = out = SyncFIFOBuffered(width=wc + 1, depth=4)
        read_ptr, read_left = Signal(32), Signal(32)
        c_in_flight, c_last = Signal(), Signal()
        c_issue = Signal()
        m.d.comb += [out.w_en.eq(c_in_flight), out.w_data.eq(Cat(rd_c.data, c_last)),
                     rd_c.addr.eq(read_ptr), rd_c.en.eq(c_issue),
                     self.m_axis_c_tdata.eq(out.r_data[:wc]), self.m_axis_c_tlast.eq(out.r_data[wc]),
                     self.m_axis_c_tvalid.eq(out.r_rdy), out.r_en.eq(self.m_axis_c_tready)]
        m.d.sync += c_in_flight.eq(c_issue)
        m.d.comb += c_issue.eq(reading & (read_left != 0) & (out.level + c_in_flight < out.depth))
        with m.If(c_issue):
            m.d.sync += [read_ptr.eq(read_ptr + 1), read_left.eq(read_left - 1), c_last.eq(read_left == 1)]
        with m.If(reading & (read_left == 0) & ~c_in_flight & (out.level == 0)):
            m.d.sync += reading.eq(0)

        with m.If(busy | updating):
            m.d.sync += reg["CYCLES"].eq(reg["CYCLES"] + 1)
        op_update = Signal()  # the command in COUNT / CHECK: 0 a GEMM, 1 an UPDATE
        done_before = Signal()  # DONE when the command in COUNT / CHECK came

        a_need, b_need = Signal(32), Signal(32)
        with m.If(~fsm_idle & (cmd["START"] | cmd["READ"] | cmd["UPDATE"])):
            m.d.comb += set_error["ERR_BUSY"].eq(1)
        with m.FSM(name="seq") as fsm:
            with m.State("IDLE"):
                with m.If(cmd["START"]):
                    with m.If(reading):
                        m.d.comb += set_error["ERR_BUSY"].eq(1)
                    with m.Elif((reg["M"][:16] == 0) | (reg["N"][:16] == 0) | (reg["K"][:16] == 0)
                                | (reg["M"][16:] != 0) | (reg["N"][16:] != 0) | (reg["K"][16:] != 0)):
                        m.d.comb += set_error["ERR_SHAPE"].eq(1)
                    with m.Elif((fmt_a >= n_a["a"]) | (fmt_b >= n_a["b"])):
                        m.d.comb += set_error["ERR_FORMAT"].eq(1)
                    with m.Else():
                        m.d.sync += [done.eq(0), done_before.eq(done), tm.eq(0), tn.eq(0), steps.eq(0), op_update.eq(0),
                                     acc_m.eq(0), acc_n.eq(0), acc_k.eq(0)]
                        m.next = "COUNT"
                with m.If(cmd["UPDATE"]):
                    with m.If(reading):
                        m.d.comb += set_error["ERR_BUSY"].eq(1)
                    with m.Elif((reg["M"][:16] == 0) | (reg["N"][:16] == 0)
                                | (reg["M"][16:] != 0) | (reg["N"][16:] != 0)):
                        m.d.comb += set_error["ERR_SHAPE"].eq(1)
                    with m.Elif(~reg["U_MODE"][0] & (reg["U_STATE"] == 0)):
                        m.d.comb += set_error["ERR_STATE"].eq(1)
                    with m.Else():
                        m.d.sync += [done.eq(0), done_before.eq(done), tm.eq(0), tn.eq(0), steps.eq(0), op_update.eq(1),
                                     acc_m.eq(0), acc_n.eq(0), acc_k.eq(reg["K"][:16])]
                        m.next = "COUNT"
                with m.If(cmd["READ"]):
                    with m.If(reading):
                        m.d.comb += set_error["ERR_BUSY"].eq(1)
                    with m.Elif(reg["C_COUNT"] == 0):
                        m.d.comb += set_error["ERR_READ"].eq(1)
                    with m.Elif(reg["C_BASE"] + reg["C_COUNT"] > eng.c_words):
                        m.d.comb += set_error["ERR_C_RANGE"].eq(1)
                    with m.Else():
                        m.d.sync += [reading.eq(1), read_ptr.eq(reg["C_BASE"]), read_left.eq(reg["C_COUNT"])]
            with m.State("COUNT"):
                # ceil(M / rows), ceil(N / cols), ceil(K / dot) by counting (no divider): one
                # cycle per step of the largest.
                pending = Signal()
                for acc, count, total, unit in ((acc_m, tm, reg["M"], R), (acc_n, tn, reg["N"], C),
                                                (acc_k, steps, reg["K"], d)):
                    with m.If(acc < total[:16]):
                        m.d.sync += [acc.eq(acc + unit), count.eq(count + 1)]
                        m.d.comb += pending.eq(1)
                with m.If(~pending):
                    m.d.sync += [a_need.eq(tm * steps), b_need.eq(tn * steps), rows_needed.eq(tm * tn * R)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                bad = Signal()
                checks = {0: (("ERR_A_RANGE", reg["A_BASE"], a_need, eng.a_words),
                              ("ERR_B_RANGE", reg["B_BASE"], b_need, eng.b_words),
                              ("ERR_C_RANGE", reg["C_BASE"], rows_needed, eng.c_words)),
                          1: (("ERR_W_RANGE", reg["W_BASE"], rows_needed, eng.c_words),
                              ("ERR_W_RANGE", reg["C_BASE"], rows_needed, eng.c_words))}
                for op, items in checks.items():
                    for name, base, need, depth in items:
                        with m.If((op_update == op) & ((base >= depth) | (base + need > depth))):
                            m.d.comb += [set_error[name].eq(1), bad.eq(1)]
                with m.If(bad):
                    m.d.sync += done.eq(done_before)  # a refused command leaves DONE as it was
                    m.next = "IDLE"
                with m.Elif(op_update):
                    m.d.sync += [updating.eq(1), reg["CYCLES"].eq(0), u_i.eq(0), u_r.eq(0), u_rbase.eq(0),
                                 u_j.eq(0), u_c.eq(0), u_jr.eq(0), u_all.eq(0)]
                    m.next = "UPDATE"
                with m.Else():
                    m.d.comb += restart.eq(1)
                    m.d.sync += [busy.eq(1), reg["CYCLES"].eq(0), ti.eq(0), tj.eq(0), s_.eq(0),
                                 a_row.eq(reg["A_BASE"]), b_col.eq(reg["B_BASE"]), issued_all.eq(0),
                                 rows_written.eq(0), c_ptr.eq(reg["C_BASE"])]
                    m.next = "RUN"
            with m.State("UPDATE"):
                m.d.comb += u_issue.eq(~u_all)
                with m.If(u_all & ~s1_valid):
                    m.d.sync += [updating.eq(0), done.eq(1)]
                    m.next = "IDLE"
            with m.State("RUN"):
                m.d.comb += issue.eq(~issued_all & (feed.level + in_flight < feed.depth))
                with m.If(issue):
                    with m.If(s_ == steps - 1):
                        m.d.sync += s_.eq(0)
                        with m.If(tj == tn - 1):
                            m.d.sync += [tj.eq(0), b_col.eq(reg["B_BASE"]), a_row.eq(a_row + steps),
                                         ti.eq(ti + 1)]
                            with m.If(ti == tm - 1):
                                m.d.sync += issued_all.eq(1)
                        with m.Else():
                            m.d.sync += [tj.eq(tj + 1), b_col.eq(b_col + steps)]
                    with m.Else():
                        m.d.sync += s_.eq(s_ + 1)
                with m.If(rows_written == rows_needed):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"

        m.d.comb += fsm_idle.eq(fsm.ongoing("IDLE"))
        with m.If(cmd["CLEAR"]):
            m.d.sync += errors.eq(0)
        with m.Else():
            m.d.sync += errors.eq(errors | Cat(set_error[name] for name in ERRORS))
        return m
