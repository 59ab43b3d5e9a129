"""The processing element: FP8 multiplier, chunked inner accumulator, outer accumulator, LFSRs.

One PE of the output-stationary array computes one dot product at a time with exactly the
schedule of :mod:`fp8mac.model.gemm` (ARCHITECTURE.md §3-§4).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.config import MacConfig
from fp8mac.model.lfsr import STREAM_INNER, STREAM_OUTER

from .adder import FloatAdder, MacUnit
from .block import BlockSum, block_lane_width
from .dot import DotMacUnit, ProductSum, use_dot_frame
from .formats import common_format, format_unpacked_layout, unpack, unpacked_layout
from .lfsr import stream_lfsr, stream_start
from .multiplier import FloatMultiplier

__all__ = ["ProcessingElement", "step_addend_layout", "LFSR_PORTS", "lane_widths", "datapath_formats",
           "pe_latency"]

LFSR_PORTS = (("lfsr_inner", STREAM_INNER), ("lfsr_outer", STREAM_OUTER))
"""A PE's own LFSRs (submodule name, model stream); a seed-port PE has ``<name>_start`` ports
for those whose stream is in ``MacConfig.stochastic_streams``."""


def datapath_formats(config: MacConfig):
    """The formats of the A and B codes inside the array: each stream's one format, or, for a
    stream with run-time formats, their :func:`~fp8mac.hw.formats.common_format` (the top
    converts every code to it, exactly, before the array)."""
    return (common_format(config.stream_formats("a"), "a_formats"),
            common_format(config.stream_formats("b"), "b_formats"))


def step_addend_layout(config: MacConfig):
    """The exact value a MAC step adds to the inner accumulator: one product
    (:meth:`FloatMultiplier.product_layout`) for ``dot = 1``, else the ``dot`` products' exact sum
    (:meth:`ProductSum.sum_layout`), of the :func:`datapath_formats`."""
    if config.blocks:
        return BlockSum.addend_layout(config)
    fa, fb = datapath_formats(config)
    if config.dot == 1:
        return FloatMultiplier.product_layout(fa, fb)
    return ProductSum.sum_layout(fa, config.dot, fb)


def lane_widths(config: MacConfig) -> tuple[int, int]:
    """Bits of one A lane and one B lane inside the array (``dot`` codes of the
    :func:`datapath_formats`; with block-scaled operands ``dot`` element codes and the block's
    scale code, :func:`~fp8mac.hw.block.block_lane_width`)."""
    if config.blocks:
        return block_lane_width(config.a_block, config.dot), block_lane_width(config.b_block, config.dot)
    fa, fb = datapath_formats(config)
    return config.dot * fa.width, config.dot * fb.width


def pe_latency(config: MacConfig) -> int:
    """Cycles from a step's operands to its accumulation loop: ``pipeline``; a block-scaled PE's
    block stage (:class:`~fp8mac.hw.block.BlockSum`) is a register stage of its own, so at least
    1 there."""
    return max(config.pipeline, 1) if config.blocks else config.pipeline


class ProcessingElement(wiring.Component):
    """One processing element (PE) of the MAC array.

    Computes, for each dot product streamed through it (steps marked by ``valid_in``, the last one
    by ``last_in``; a step carries ``dot`` products, ``a_in`` and ``b_in`` holding ``dot`` codes
    each, term ``j`` in bits ``[j*W, (j+1)*W)``)::

        outer = +0
        for each chunk of ``chunk / dot`` steps (the last chunk may be shorter):
            inner = +0
            for each step: inner = round_inner(inner + sum_j a_in[j] * b_in[j])   # ONE rounding
            outer = round_outer(outer + inner)
        result = outer            # chunking off: result = inner, no outer add

    With ``dot = 1`` the step is a :class:`~fp8mac.hw.multiplier.FloatMultiplier` feeding a
    :class:`~fp8mac.hw.adder.MacUnit`; with ``dot > 1`` one :class:`~fp8mac.hw.dot.DotMacUnit`
    (accumulator and products in one fixed-point frame) or a :class:`~fp8mac.hw.dot.ProductSum`
    (the products' exact sum) feeding a ``MacUnit``, so the step is still correctly rounded.

    bit for bit as :func:`fp8mac.model.gemm.mac_gemm` does for PE ``(row, col)``: its LFSRs are
    seeded with ``stream_seed(config.seed, row, col, stream)`` at reset, and draw once per
    stochastic MAC step and once per stochastic outer add, never on stalls or idle cycles. With
    ``config.outer_placement == "row"`` the PE has no outer adder and no outer LFSR: it hands its
    outer adds to its row's :class:`~fp8mac.hw.array.RowOuterAdder` (``outer_req``, ``outer_a``,
    ``outer_b``, ``outer_sum``) in the cycle its own adder would have done them, and takes the
    sum, registered and added by the row, one cycle later.

    Timing (all registers advance only when ``en`` is high; ``en`` low freezes the PE):

    * ``pipeline = N`` (0 by default): the step's exact addend (the product, or the products'
      exact sum) passes through one register and the operands through N - 1 more before the
      accumulation loop, with ``valid`` and ``last`` delayed alike; everything below then
      happens N cycles later. The loop itself (accumulator + step, normalize, round, write back)
      is one cycle: a register inside it would change what one cycle computes.
    * The multiplier and the fused adder are combinational: a step is accepted every cycle in which
      ``en & valid_in``.
    * ``two-adder`` PE: the outer add of a chunk happens in the cycle after its last step, on a
      second adder, in parallel with the next chunk's first step.
    * ``shared-adder`` PE: the outer add uses the same adder in the cycle after the chunk's last
      step; the feeder must leave that cycle without a step (``valid_in`` low): the
      :class:`~fp8mac.hw.top.Accelerator` inserts one bubble per chunk.
    * ``result`` is written (and ``full`` set) in the outer-add cycle of the last chunk (chunking
      off: in the cycle after the last step), so the latency from the last step to ``full`` is 2
      cycles. ``clear`` empties the result register; a result written in a cycle with ``clear``
      replaces the one drained. A write that finds ``full`` still set and no ``clear`` must not
      happen: ``stall_next`` says one cycle ahead that it would, so that the array's ``en``, a
      register, is low in that cycle and stays low until the result is drained. The owner
      decides the drain a cycle ahead too (``clear_next`` is the next cycle's ``clear``, decided
      from ``full_next``).
    * ``a_out``, ``b_out``, ``valid_out``, ``last_out`` are the inputs delayed by one cycle, for the
      right and lower neighbours.

    Parameters
    ----------
    config : MacConfig
        Formats, dot width, chunk size, roundings, random bits, LFSR width, seed and PE variant.
    row, col : int
        The PE's position in the array (selects its LFSR seeds).
    seed_ports : bool
        Take the LFSR seeds from constant input ports instead of building them in (then ``row``
        and ``col`` do not matter): one PE module serves every position of the array
        (:class:`~fp8mac.hw.array.MacArray` with ``seed_ports``). Each own LFSR (``lfsr_inner``,
        ``lfsr_outer``) is a seed-port :class:`~fp8mac.hw.lfsr.Lfsr`.

    Members
    -------
    en : In(1)
        Clock enable of the whole PE.
    a_in, b_in : In(dot * A width), In(dot * B width)
        Operand codes, ``dot`` per step, in the :func:`datapath_formats` (``config.a_format`` and
        ``config.b_format`` unless a stream selects its format at run time).
    valid_in, last_in : In(1)
        A step is present; it is the dot product's last step.
    a_out, b_out, valid_out, last_out : Out
        The same, one cycle later.
    result : Out(acc_format width)
        The last dot product's result code.
    full : Out(1)
        ``result`` holds a result not yet drained.
    clear : In(1)
        Drain acknowledge: empties ``result``.
    full_next : Out(1)
        ``full`` in the next cycle (given this cycle's ``en`` and ``clear``).
    clear_next : In(1)
        ``clear`` in the next cycle (the owner's drain decision, from ``full_next``).
    stall_next : Out(1)
        The PE will have to write a result in the next cycle into a register that is full and not
        drained then: the array's ``en`` must be low in that cycle.
    outer_req, outer_a, outer_b : Out
        Only with ``outer_adder = "row"`` (the PE has no outer adder): an outer add is due this
        cycle, of ``outer_a`` (the outer sum so far, +0 for the first chunk) and ``outer_b`` (the
        chunk's inner sum), each an ``acc_format`` code, zero when ``outer_req`` is low (so a row
        can OR them together).
    outer_sum : In(acc_format width)
        Only with ``outer_adder = "row"``: the rounded sum of the request made in the previous
        cycle with ``en``, from the row's two-stage adder.
    lfsr_inner_start, lfsr_outer_start : In(lfsr_width)
        Only with ``seed_ports``, one per stochastic stream of the PE (:data:`LFSR_PORTS`): the
        LFSR's :func:`~fp8mac.hw.lfsr.start_state` for the stream's seed at the PE's position
        (:meth:`seed_port_values`), constant.
    """

    def __init__(self, config: MacConfig, row: int = 0, col: int = 0, *, seed_ports: bool = False):
        if not isinstance(config, MacConfig):
            raise ValueError(f"config must be a MacConfig, not {type(config).__name__}")
        if not (0 <= row < config.rows and 0 <= col < config.cols):
            raise ValueError(f"(row, col) must lie in the {config.rows} x {config.cols} array, not ({row}, {col})")
        self._config = config
        self._row, self._col = row, col
        self._seed_ports = bool(seed_ports)
        (wia, wib), wa = lane_widths(config), config.acc_format.width
        members = {
            "en": In(1),
            "a_in": In(wia), "b_in": In(wib), "valid_in": In(1), "last_in": In(1),
            "a_out": Out(wia), "b_out": Out(wib), "valid_out": Out(1), "last_out": Out(1),
            "result": Out(wa), "full": Out(1), "clear": In(1), "stall_next": Out(1),
            "full_next": Out(1), "clear_next": In(1),
        }
        if config.outer_placement == "row":
            members.update({"outer_req": Out(1), "outer_a": Out(wa), "outer_b": Out(wa),
                            "outer_sum": In(wa)})
        if self._seed_ports:
            members.update({f"{name}_start": In(config.lfsr_width) for name, stream in LFSR_PORTS
                            if stream in config.stochastic_streams})
        super().__init__(members)

    @property
    def config(self) -> MacConfig:
        return self._config

    @staticmethod
    def seed_port_values(config: MacConfig, row: int, col: int) -> dict[str, int]:
        """The constant values of a seed-port PE's ``lfsr_*_start`` ports at ``(row, col)``."""
        return {f"{name}_start": stream_start(config, row, col, stream)
                for name, stream in LFSR_PORTS if stream in config.stochastic_streams}

    def _lfsr(self, m, name, stream):
        start = getattr(self, f"{name}_start") if self._seed_ports else None
        return stream_lfsr(m, name, self._config, self._row, self._col, stream, start)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        (fa, fb), facc = datapath_formats(cfg), cfg.acc_format
        rbits = cfg.rbits

        # Reset: only control state (valid, last, full, counters, first-chunk flags, LFSRs) is
        # reset. Data registers (operands passed on, pipeline stages, accumulators, the result)
        # are reset-less: every read of one is qualified by control state that reset clears, and
        # a synchronous reset costs a gate per flip-flop on a library without reset flops, and a
        # net that reaches every flip-flop of the array.
        def data_reg(like, name):
            return Signal.like(like, name=name, reset_less=True)

        a_out, b_out = data_reg(self.a_out, "a_q"), data_reg(self.b_out, "b_q")
        result = data_reg(self.result, "result_q")
        m.d.comb += [self.a_out.eq(a_out), self.b_out.eq(b_out), self.result.eq(result)]
        with m.If(self.en):
            m.d.sync += [a_out.eq(self.a_in), b_out.eq(self.b_in),
                         self.valid_out.eq(self.valid_in), self.last_out.eq(self.last_in)]

        def delayed(value, depth, name, data=True):
            """``value`` through ``depth`` registers clocked by ``en`` (a stall freezes them);
            reset-less if ``data``."""
            for i in range(depth):
                reg = Signal.like(value, name=f"{name}_p{i}", reset_less=data)
                with m.If(self.en):
                    m.d.sync += reg.eq(value)
                value = reg
            return value

        # Pipeline: `pipeline` register stages between the operands and the accumulation loop,
        # the step's valid and last delayed alike; the loop itself (acc + step, normalize,
        # round, write back) stays one cycle. Stage 1 registers the step's exact addend (the
        # product, or the products' exact sum) right before the loop; further stages register
        # the operands before the multipliers.
        depth = cfg.pipeline
        a_in = delayed(self.a_in, max(depth - 1, 0), "a")
        b_in = delayed(self.b_in, max(depth - 1, 0), "b")
        if cfg.blocks:
            # Block-scaled operands: the block stage sums a block's beats exactly and registers
            # its scaled value, one loop step per block (the pipeline's addend register).
            m.submodules.block = blk = BlockSum(cfg)
            m.d.comb += [blk.en.eq(self.en), blk.a.eq(a_in), blk.b.eq(b_in),
                         blk.valid_in.eq(delayed(self.valid_in, max(depth - 1, 0), "valid", data=False)),
                         blk.last_in.eq(delayed(self.last_in, max(depth - 1, 0), "last", data=False))]
            valid_in, last_in = blk.valid_out, blk.last_out
        else:
            valid_in = delayed(self.valid_in, depth, "valid", data=False)
            last_in = delayed(self.last_in, depth, "last", data=False)

        # The inner step: acc + the step's products, one rounding. Either one DotMacUnit (the
        # products and the accumulator in one fixed-point frame), or the products' exact value
        # (one product, or a ProductSum) feeding a MacUnit; the shared-adder PE, whose adder also
        # does the outer adds, and a pipelined PE, which registers the products' sum before the
        # loop, take the second form.
        single_frame = (cfg.dot > 1 and not cfg.blocks and (cfg.pe == "two-adder" or cfg.chunk is None)
                        and depth == 0 and use_dot_frame(facc, fa, cfg.dot, fb))
        addend_layout = step_addend_layout(cfg)
        step_addend = None
        if cfg.blocks:
            step_addend = blk.addend
        elif cfg.dot == 1:
            m.submodules.mul = mul = FloatMultiplier(fa, fb)
            step_addend = mul.product
        elif not single_frame:
            m.submodules.dot = mul = ProductSum(fa, cfg.dot, fb)
            step_addend = mul.sum
        if step_addend is not None and not cfg.blocks:
            m.d.comb += [mul.a.eq(a_in), mul.b.eq(b_in)]
            if depth:
                step_addend = delayed(step_addend, 1, "addend")

        def inner_unit(rounding, rbits):
            """The inner MAC step unit; its ``acc`` and ``rand`` are the caller's to drive."""
            if single_frame:
                unit = DotMacUnit(facc, fa, cfg.dot, rounding, rbits, fb)
                m.d.comb += [unit.a.eq(a_in), unit.b.eq(b_in)]
            else:
                unit = MacUnit(facc, addend_layout, rounding, rbits)
                m.d.comb += unit.addend.eq(step_addend)
            return unit

        step = Signal()
        m.d.comb += step.eq(self.en & valid_in)
        inner = Signal(facc.width, reset_less=True)  # read only after a step (`fresh`, `chunk_start`)
        write = Signal()  # the result register is written this cycle (if en)
        write_value = Signal(facc.width)

        with m.If(self.clear):
            m.d.sync += self.full.eq(0)
        with m.If(self.en & write):
            m.d.sync += [result.eq(write_value), self.full.eq(1)]
        # The stall, one cycle ahead: will this PE have to write into a full register next cycle
        # that is not drained in that cycle? `write` is a register (so is everything it depends
        # on), so its next value is known now: `valid_in & last_in` if the array steps now,
        # itself if it holds. `full` next cycle is kept unless drained now, and set if written
        # now (a write under `en` is never blocked: `en` is high only if no PE was predicted to
        # be). The drain is decided a cycle ahead too (`clear_next`), from `full_next`.
        kept = self.full & ~self.clear
        write_step = Signal()  # `write` next cycle if the array steps now (set by each variant)
        m.d.comb += write_step.eq(valid_in & last_in)
        write_next = Mux(self.en, write_step, write)
        m.d.comb += [self.full_next.eq(Mux(self.en, write | kept, kept)),
                     self.stall_next.eq(write_next & self.full_next & ~self.clear_next)]

        inner_stochastic = cfg.inner_rounding == "stochastic"
        outer_stochastic = STREAM_OUTER in cfg.stochastic_streams  # the PE's own outer stream

        if cfg.chunk is None:
            # One plain accumulator: result = inner after the last step.
            mac = inner_unit(cfg.inner_rounding, rbits if inner_stochastic else None)
            m.submodules.mac = mac
            fresh = Signal(init=1)  # the next step starts a dot product
            m.d.comb += mac.acc.eq(Mux(fresh, 0, inner))
            if inner_stochastic:
                lfsr = self._lfsr(m, "lfsr_inner", STREAM_INNER)
                m.d.comb += [lfsr.en.eq(step), mac.rand.eq(lfsr.value)]
            with m.If(step):
                m.d.sync += [inner.eq(mac.result), fresh.eq(last_in)]
            # The result is written the cycle after the last step, from `inner` (which a next
            # dot product's first step overwrites only at the end of that cycle): `write` is a
            # register, as the stall's prediction needs.
            done = Signal()
            with m.If(self.en):
                m.d.sync += done.eq(step & last_in)
            m.d.comb += [write.eq(done), write_value.eq(inner)]
            return m

        chunk = cfg.chunk // cfg.step_products  # loop steps per chunk
        count = Signal(range(max(chunk, 2)))  # steps taken in the current chunk
        chunk_start = Signal()
        chunk_end = Signal()
        m.d.comb += [chunk_start.eq(count == 0),
                     chunk_end.eq(last_in | (count == chunk - 1))]
        with m.If(step):
            m.d.sync += count.eq(Mux(chunk_end, 0, count + 1))
        outer = Signal(facc.width, reset_less=True)  # read only after a chunk (`first_chunk`)
        first_chunk = Signal(init=1)  # the pending outer add starts from +0
        pend = Signal()  # an outer add is due this cycle (the previous step ended a chunk)
        pend_last = Signal()  # ... and it is the dot product's last chunk
        with m.If(self.en):
            m.d.sync += [pend.eq(step & chunk_end), pend_last.eq(step & last_in)]
        outer_fire = Signal()
        m.d.comb += outer_fire.eq(self.en & pend)
        outer_acc = Signal(facc.width)
        m.d.comb += outer_acc.eq(Mux(first_chunk, 0, outer))

        if cfg.outer_placement == "row":
            # The outer add happens in the row's adder, which registers the request (this
            # cycle's outer and inner sums) and adds in the next cycle, when its sum comes back
            # (`outer_sum`) and is taken into `outer` (and the result register, for the last
            # chunk). A PE's chunk ends are at least 2 steps apart (MacConfig), so the next
            # request reads the updated `outer`.
            mac = inner_unit(cfg.inner_rounding, rbits if inner_stochastic else None)
            m.submodules.mac = mac
            m.d.comb += [mac.acc.eq(Mux(chunk_start, 0, inner)), self.outer_req.eq(pend),
                         self.outer_a.eq(Mux(pend, outer_acc, 0)), self.outer_b.eq(Mux(pend, inner, 0))]
            if inner_stochastic:
                li = self._lfsr(m, "lfsr_inner", STREAM_INNER)
                m.d.comb += [li.en.eq(step), mac.rand.eq(li.value)]
            back, back_last = Signal(), Signal()  # the row's sum is this PE's (of its last chunk)
            with m.If(self.en):
                m.d.sync += [back.eq(pend), back_last.eq(pend & pend_last)]
            with m.If(step):
                m.d.sync += inner.eq(mac.result)
            with m.If(self.en & back):
                m.d.sync += [outer.eq(self.outer_sum), first_chunk.eq(back_last)]
            m.d.comb += [write.eq(back & back_last), write_value.eq(self.outer_sum),
                         write_step.eq(pend & pend_last)]
            return m
        elif cfg.pe == "two-adder":
            mac = inner_unit(cfg.inner_rounding, rbits if inner_stochastic else None)
            add = FloatAdder(facc, cfg.outer_rounding, rbits if outer_stochastic else None)
            m.submodules.mac = mac
            m.submodules.outer_add = add
            m.d.comb += [mac.acc.eq(Mux(chunk_start, 0, inner)),
                         add.a.eq(outer_acc), add.b.eq(inner)]
            if inner_stochastic:
                li = self._lfsr(m, "lfsr_inner", STREAM_INNER)
                m.d.comb += [li.en.eq(step), mac.rand.eq(li.value)]
            if outer_stochastic:
                lo = self._lfsr(m, "lfsr_outer", STREAM_OUTER)
                m.d.comb += [lo.en.eq(outer_fire), add.rand.eq(lo.value)]
            step_result, outer_result = mac.result, add.result
        else:
            # One adder: MAC steps and outer adds (never in the same cycle) share it. Its addend is
            # the product in a step and the unpacked inner sum in an outer add, in one layout
            # wide enough for both; its rounding is selected per cycle when the two differ.
            prod_layout = addend_layout
            inner_layout = format_unpacked_layout(facc)
            layout = unpacked_layout(max(prod_layout["sig"].width, inner_layout["sig"].width),
                                     max(prod_layout["exp"].width, inner_layout["exp"].width))
            modes = (cfg.inner_rounding, cfg.outer_rounding)
            rounding = modes[0] if modes[0] == modes[1] else modes
            mac = MacUnit(facc, layout, rounding, rbits if (inner_stochastic or outer_stochastic) else None)
            m.submodules.mac = mac
            inner_value = unpack(facc, inner)
            addend = Signal(layout)
            for field in ("sig", "exp", "sign", "nan", "inf"):
                m.d.comb += getattr(addend, field).eq(
                    Mux(pend, getattr(inner_value, field), getattr(step_addend, field)))
            m.d.comb += [mac.addend.eq(addend),
                         mac.acc.eq(Mux(pend, outer_acc, Mux(chunk_start, 0, inner)))]
            if rounding is modes:
                m.d.comb += mac.mode.eq(pend)
            rand_inner = rand_outer = Const(0, rbits)
            if inner_stochastic:
                li = self._lfsr(m, "lfsr_inner", STREAM_INNER)
                m.d.comb += li.en.eq(step)
                rand_inner = li.value
            if outer_stochastic:
                lo = self._lfsr(m, "lfsr_outer", STREAM_OUTER)
                m.d.comb += lo.en.eq(outer_fire)
                rand_outer = lo.value
            if inner_stochastic or outer_stochastic:
                m.d.comb += mac.rand.eq(Mux(pend, rand_outer, rand_inner))
            step_result = outer_result = mac.result

        with m.If(step):
            m.d.sync += inner.eq(step_result)
        with m.If(outer_fire):
            m.d.sync += [outer.eq(outer_result), first_chunk.eq(pend_last)]
        m.d.comb += [write.eq(pend & pend_last), write_value.eq(outer_result)]
        return m
