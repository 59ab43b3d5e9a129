"""The output-stationary systolic MAC array: rows of processing elements, the operand skew and
the rows' outer adders."""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.model.config import MacConfig
from fp8mac.model.lfsr import STREAM_ROW_OUTER

from .adder import FloatAdder
from .emit import check_verilog_name
from .lfsr import stream_lfsr, stream_start
from .pe import ProcessingElement, lane_widths

__all__ = ["MacArray", "ArrayRow", "RowOuterAdder", "pe_module_name", "row_module_name"]


def pe_module_name(prefix: str) -> str:
    """The Verilog name of the one processing-element module of an array whose rows and PEs are
    Verilog instances (:class:`MacArray` ``module_prefix``, the generated top's name)."""
    return f"{prefix}_pe"


def row_module_name(prefix: str) -> str:
    """The Verilog name of the one array-row module (see :func:`pe_module_name`)."""
    return f"{prefix}_row"


class RowOuterAdder(wiring.Component):
    """One array row's outer (chunk) adder, for ``outer_placement == "row"``: ``sum = round(a +
    b)`` of whichever PE requests it (the others drive zeros, so ``a`` and ``b`` are ORed), with
    one LFSR (stream ``STREAM_ROW_OUTER`` of the row) when the outer rounding is stochastic.

    Two stages: a request (``req``, ``a``, ``b``) is registered in a cycle with ``en``, and its
    ``sum`` is valid in the next cycle with ``en`` (the LFSR draws then), so neither the request
    mux across the row nor the sum's broadcast back to the row's PEs shares a cycle with the
    adder's whole depth.

    Parameters
    ----------
    config : MacConfig
    row : int
        The row (selects the LFSR's seed).
    seed_port : bool
        Take the LFSR's seed from the constant input ``lfsr_start``
        (:func:`~fp8mac.hw.lfsr.start_state` of the row's seed, :meth:`seed_port_values`)
        instead of building it in, so one module serves every row.

    Members
    -------
    en : In(1)
    req : In(cols)
        Requests, one per PE of the row (at most one is set in a cycle).
    a, b : In(acc_format width).array(cols)
        Each PE's operands, zero when it does not request.
    sum : Out(acc_format width)
        The sum of the request registered in the previous cycle with ``en``.
    lfsr_start : In(lfsr_width)
        Only with ``seed_port`` and a stochastic outer rounding.
    """

    def __init__(self, config: MacConfig, row: int = 0, *, seed_port: bool = False):
        self._config, self._row = config, row
        self._seed_port = bool(seed_port)
        w, C = config.acc_format.width, config.cols
        members = {"en": In(1), "req": In(C), "a": In(w).array(C), "b": In(w).array(C),
                   "sum": Out(w)}
        if self._seed_port and STREAM_ROW_OUTER in config.row_streams:
            members["lfsr_start"] = In(config.lfsr_width)
        super().__init__(members)

    @staticmethod
    def seed_port_values(config: MacConfig, row: int) -> dict[str, int]:
        """The constant value of a seed-port row adder's ``lfsr_start`` in row ``row`` (empty
        without a stochastic outer rounding)."""
        if STREAM_ROW_OUTER not in config.row_streams:
            return {}
        return {"lfsr_start": stream_start(config, row, 0, STREAM_ROW_OUTER)}

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        stochastic = cfg.outer_rounding == "stochastic"
        m.submodules.add = add = FloatAdder(cfg.acc_format, cfg.outer_rounding,
                                            cfg.rbits if stochastic else None)
        a = b = 0
        for c in range(cfg.cols):
            a, b = a | self.a[c], b | self.b[c]
        w = cfg.acc_format.width
        a_q, b_q = Signal(w, reset_less=True), Signal(w, reset_less=True)  # the request, registered
        req_q = Signal()
        with m.If(self.en):
            m.d.sync += [a_q.eq(a), b_q.eq(b), req_q.eq(self.req.any())]
        m.d.comb += [add.a.eq(a_q), add.b.eq(b_q), self.sum.eq(add.result)]
        if stochastic:
            lfsr = stream_lfsr(m, "lfsr", cfg, self._row, 0, STREAM_ROW_OUTER,
                               self.lfsr_start if self._seed_port else None)
            m.d.comb += [lfsr.en.eq(self.en & req_q), add.rand.eq(lfsr.value)]
        return m


class MacArray(wiring.Component):
    """``rows x cols`` processing elements, output-stationary, with the operand skew inside.

    Each cycle with ``en`` high (the array's own enable, an output) the array takes one *step*: ``dot`` A columns (``a``: ``rows``
    lanes of ``dot`` codes, lane r in bits ``[r*w, (r+1)*w)`` with ``w = dot * W``, A[r][k + j] in
    its bits ``[j*W, (j+1)*W)``) and ``dot`` B rows (``b``: ``cols`` lanes, B[k + j][c] likewise),
    aligned as the user has them, with ``valid`` (a step is present) and ``last`` (it ends the dot product). Row r's A
    value is delayed by ``r + 1`` registers and column c's B value by ``c + 1`` before entering
    the edge PEs; PEs pass A right and B down one register per hop, so PE (r, c) sees step k
    ``r + c + 1`` cycles after it entered. ``valid`` and ``last`` travel with A.

    Results are read a row at a time: ``row_data[r]`` is the ``cols`` result codes of row r (lane
    c = column c), ``row_full[r]`` says all of them hold an undrained result, and ``clear_row[r]``
    empties them; ``row_full_next[r]`` is ``row_full[r]`` in the next cycle, and
    ``clear_row_next[r]`` must be ``clear_row[r]`` in the next cycle (the owner decides its drain
    a cycle ahead; a PE written in a cycle whose ``clear_row`` drains it keeps the new result).
    The array stalls itself: ``en`` is a register (one in the array, a copy in
    every row) that is low in a cycle in which some PE would have to write a result into a
    still-full register, decided the cycle before from every PE's ``stall_next`` (registers,
    ``en`` and ``clear_row`` only, so no combinational path runs from a PE through the whole
    array back into every PE, and the enable's fan-out is a row's). ``stall`` is ``~en``. The
    owner offers a step (``valid``) only in a cycle with ``en`` high, and drains rows in any
    cycle. With dot products whose last steps enter at least
    :func:`~fp8mac.hw.top.tile_spacing` cycles apart, every row ahead of the blocking one in
    drain order is complete, so a stall always resolves by draining (the
    :class:`~fp8mac.hw.top.Accelerator` enforces that spacing).

    Latency: the result of PE (r, c) is written ``r + c + 3`` cycles after the step that ends its
    dot product entered (the outer add with chunking on; the write from the accumulator with
    chunking off).

    With ``outer_adder = "row"`` the PEs have no outer adder: each row has one
    (:class:`~fp8mac.hw.adder.FloatAdder`, and one :class:`~fp8mac.hw.lfsr.Lfsr` seeded with
    ``stream_seed(seed, r, 0, STREAM_ROW_OUTER)`` when the outer rounding is stochastic) that adds
    the chunk sum of whichever PE asks (``outer_req``), the sum coming back in the next cycle (a
    cycle later than a PE's own adder). The owner must end chunks at least ``max(cols, 2)`` steps
    apart (the
    :class:`~fp8mac.hw.top.Accelerator` does): PE (r, c) asks ``c`` cycles after PE (r, 0), so no
    two PEs of a row ask in one cycle, and they ask in column order, the order in which
    :func:`~fp8mac.model.gemm.mac_gemm` hands out the row's draws.

    Structure: row r is the submodule ``row_r<r>``, an :class:`ArrayRow` whose PE c is its
    submodule ``pe_c<c>`` (so PE (r, c) is ``row_r<r>.pe_c<c>``), with the row's outer adder
    ``outer_add``. Every row computes the same function, as does every PE; they differ only in
    their LFSR seeds. By default each row and PE has its seeds built in: Amaranth's simulator
    runs that form, and Verilog output would write every PE out again. With ``seed_ports`` the
    rows take their seeds' start states from constant ports (:meth:`ArrayRow.seed_port_values`),
    so all rows are one design, as are all PEs. With ``module_prefix`` the rows are moreover
    Verilog instances (:class:`~amaranth.hdl.Instance`) of the module :func:`row_module_name`,
    whose PEs are instances of :func:`pe_module_name`: the caller emits each once
    (:func:`fp8mac.hw.emit.accelerator_verilog`), and the Verilog is one PE, one row of ``cols``
    PE instances and ``rows`` row instances. Amaranth's simulator cannot run that form. Results
    are the same in every form.

    Parameters
    ----------
    config : MacConfig
    seed_ports : bool
        Rows (and their PEs and adders) take their seeds from constant ports.
    module_prefix : str, optional
        Instantiate the Verilog modules named after this prefix instead of elaborating the rows
        here (implies ``seed_ports``); a Verilog identifier.
    """

    def __init__(self, config: MacConfig, *, seed_ports: bool = False,
                 module_prefix: str | None = None):
        if not isinstance(config, MacConfig):
            raise ValueError(f"config must be a MacConfig, not {type(config).__name__}")
        if module_prefix is not None:
            check_verilog_name(module_prefix, "module_prefix")
        self._config = config
        self._module_prefix = module_prefix
        self._seed_ports = bool(seed_ports) or module_prefix is not None
        (wia, wib), wa = lane_widths(config), config.acc_format.width
        R, C = config.rows, config.cols
        super().__init__({
            "en": Out(1),  # this cycle's enable (a register); stall = ~en
            "a": In(R * wia), "b": In(C * wib), "valid": In(1), "last": In(1),
            "row_data": Out(C * wa).array(R),
            "row_full": Out(1).array(R),
            "clear_row": In(1).array(R),
            "row_full_next": Out(1).array(R),
            "clear_row_next": In(1).array(R),
            "stall": Out(1),
        })

    @property
    def config(self) -> MacConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        R, C = cfg.rows, cfg.cols
        wia, wib = lane_widths(cfg)  # one lane: dot codes
        # The enable is a register (reset high): the next cycle's is computed now from every PE's
        # `stall_next` and registered here and, a copy each, in every row.
        en, en_next = Signal(init=1), Signal()
        m.d.sync += en.eq(en_next)
        m.d.comb += [self.en.eq(en), self.stall.eq(~en)]

        def skew(name, lanes, width):
            """``lanes`` (a value of ``n * width`` bits) skewed: lane i through ``i + 1`` registers
            clocked by ``en``. Stage d is one register holding lanes d, d+1, ... (those not yet
            taken out); lane i leaves from stage i."""
            out, prev = [], lanes
            for d in range(len(lanes) // width):
                reg = Signal(len(prev), name=f"{name}_d{d}", reset_less=True)  # data: no reset
                with m.If(en):
                    m.d.sync += reg.eq(prev)
                out.append(reg[:width])
                prev = reg[width:]
            return out

        def chain(name, value, depth):
            """``value`` delayed by 1, 2, ..., ``depth`` registers clocked by ``en``."""
            out = []
            for d in range(depth):
                reg = Signal.like(value, name=f"{name}_d{d}")
                with m.If(en):
                    m.d.sync += reg.eq(out[-1] if out else value)
                out.append(reg)
            return out

        # Row r's A lane, valid and last enter it r + 1 cycles late; column c's B lane enters
        # row 0 c + 1 cycles late and passes down from row to row.
        a_rows, b_cols = skew("a_skew", self.a, wia), skew("b_skew", self.b, wib)
        valid_rows, last_rows = chain("valid_skew", self.valid, R), chain("last_skew", self.last, R)
        b = [Cat(b_cols)] + [Signal(C * wib, name=f"b_r{r}") for r in range(1, R + 1)]
        stall = []
        signature = _signature(ArrayRow, cfg) if self._module_prefix is not None else None
        for r in range(R):
            ports = dict(en_next=en_next, a=a_rows[r], valid=valid_rows[r], last=last_rows[r], b_in=b[r],
                         b_out=b[r + 1], clear=self.clear_row[r], result=self.row_data[r],
                         full=self.row_full[r], stall_next=Signal(name=f"stall_next_r{r}"),
                         full_next=self.row_full_next[r], clear_next=self.clear_row_next[r])
            stall.append(ports["stall_next"])
            if self._seed_ports:
                ports.update(ArrayRow.seed_port_values(cfg, r))
            name = f"row_r{r}"
            if self._module_prefix is not None:
                instance(m, name, row_module_name(self._module_prefix), signature, ports)
            else:
                submodule(m, name, ArrayRow(cfg, r, seed_ports=self._seed_ports), ports)
        m.d.comb += en_next.eq(~Cat(stall).any())
        return m


class ArrayRow(wiring.Component):
    """One row of the :class:`MacArray`: ``cols`` processing elements, and with
    ``outer_placement == "row"`` the row's :class:`RowOuterAdder`.

    PE c (submodule ``pe_c<c>``) takes A, ``valid`` and ``last`` from PE c-1 (PE 0 from the
    row's inputs) and B lane c from ``b_in``, and passes B on to ``b_out`` (one register, in the
    PE): the row below's ``b_in``. The adder (submodule ``outer_add``) serves the PE that
    requests an outer add, its sum coming back the next cycle.

    Parameters
    ----------
    config : MacConfig
    row : int
        The row's position (selects its PEs' and its adder's LFSR seeds).
    seed_ports : bool
        Take the seeds from constant ports instead (:meth:`seed_port_values`): one design for
        every row.
    module_prefix : str, optional
        The PEs are Verilog instances of module :func:`pe_module_name` ``(module_prefix)``
        (implies ``seed_ports``; Amaranth's simulator cannot run it).

    Members
    -------
    en_next : In(1)
        The array's enable in the next cycle: the row registers its own copy (reset high), which
        drives its PEs and adder, so that no net of the array's enable spans more than a row.
    a : In(dot * in width)
        The row's A lane (``dot`` codes), ``valid`` and ``last``, already skewed.
    valid, last : In(1)
    b_in : In(cols * dot * in width)
        B lanes from above, lane c for PE c.
    b_out : Out(cols * dot * in width)
        ``b_in`` one cycle later (when ``en``), for the row below.
    clear : In(1)
        Empties every PE's result register.
    result : Out(cols * acc width)
        Lane c: PE c's result.
    full : Out(1)
        Every PE of the row holds an undrained result.
    stall_next : Out(1)
        Some PE of the row will have to write into a still-full register in the next cycle
        (:class:`~fp8mac.hw.pe.ProcessingElement`'s ``stall_next``).
    full_next, clear_next
        ``full`` in the next cycle, and whether the row is drained in the next cycle.
    lfsr_inner_start, lfsr_outer_start : In(cols * lfsr_width)
        Only with ``seed_ports``, one per stochastic stream of the PEs: lane c is PE c's
        ``lfsr_*_start``.
    row_lfsr_start : In(lfsr_width)
        Only with ``seed_ports`` and a stochastic row outer adder: its ``lfsr_start``.
    """

    def __init__(self, config: MacConfig, row: int = 0, *, seed_ports: bool = False,
                 module_prefix: str | None = None):
        if not isinstance(config, MacConfig):
            raise ValueError(f"config must be a MacConfig, not {type(config).__name__}")
        if module_prefix is not None:
            check_verilog_name(module_prefix, "module_prefix")
        self._config, self._row = config, row
        self._module_prefix = module_prefix
        self._seed_ports = bool(seed_ports) or module_prefix is not None
        (wia, wib), wa, C = lane_widths(config), config.acc_format.width, config.cols
        members = {"en_next": In(1), "a": In(wia), "valid": In(1), "last": In(1),
                   "b_in": In(C * wib), "b_out": Out(C * wib), "clear": In(1),
                   "result": Out(C * wa), "full": Out(1), "stall_next": Out(1),
                   "full_next": Out(1), "clear_next": In(1)}
        if self._seed_ports:
            members.update({port: In(C * config.lfsr_width)
                            for port in ProcessingElement.seed_port_values(config, 0, 0)})
            if STREAM_ROW_OUTER in config.row_streams:
                members["row_lfsr_start"] = In(config.lfsr_width)
        super().__init__(members)

    @staticmethod
    def seed_port_values(config: MacConfig, row: int) -> dict[str, int]:
        """The constants of a seed-port row's ``lfsr_*_start`` ports in row ``row``: each
        PE's :meth:`~fp8mac.hw.pe.ProcessingElement.seed_port_values` in lane c, and the row
        adder's :meth:`RowOuterAdder.seed_port_values`."""
        w = config.lfsr_width
        values = {}
        for c in range(config.cols):
            for port, value in ProcessingElement.seed_port_values(config, row, c).items():
                values[port] = values.get(port, 0) | (value << (c * w))
        if STREAM_ROW_OUTER in config.row_streams:
            values["row_lfsr_start"] = RowOuterAdder.seed_port_values(config, row)["lfsr_start"]
        return values

    @property
    def config(self) -> MacConfig:
        return self._config

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        C, w = cfg.cols, cfg.lfsr_width
        (wia, wib), wa = lane_widths(cfg), cfg.acc_format.width
        row_outer = cfg.outer_placement == "row"

        def nets(name, width, n):
            return [Signal(width, name=f"{name}_c{c}") for c in range(n)]

        # a, valid and last enter PE c from the left (c = cols: they leave the row).
        a, valid, last = nets("a", wia, C + 1), nets("valid", 1, C + 1), nets("last", 1, C + 1)
        a[0], valid[0], last[0] = self.a, self.valid, self.last
        full, stall = nets("full", 1, C), nets("stall_next", 1, C)
        full_next = nets("full_next", 1, C)
        en = Signal(init=1)  # the row's copy of the array's enable
        m.d.sync += en.eq(self.en_next)
        if row_outer:
            req, outer_a, outer_b = nets("outer_req", 1, C), nets("outer_a", wa, C), nets("outer_b", wa, C)
            outer_sum = Signal(wa, name="outer_sum")
        signature = _signature(ProcessingElement, cfg) if self._module_prefix is not None else None
        for c in range(C):
            ports = dict(en=en, a_in=a[c], b_in=self.b_in[c * wib:(c + 1) * wib],
                         valid_in=valid[c], last_in=last[c], a_out=a[c + 1],
                         b_out=self.b_out[c * wib:(c + 1) * wib], valid_out=valid[c + 1],
                         last_out=last[c + 1], result=self.result[c * wa:(c + 1) * wa],
                         full=full[c], clear=self.clear, stall_next=stall[c],
                         full_next=full_next[c], clear_next=self.clear_next)
            if row_outer:
                ports.update(outer_req=req[c], outer_a=outer_a[c], outer_b=outer_b[c],
                             outer_sum=outer_sum)
            if self._seed_ports:
                ports.update({port: getattr(self, port)[c * w:(c + 1) * w] for port in
                              ProcessingElement.seed_port_values(cfg, 0, 0)})
            if self._module_prefix is not None:
                instance(m, f"pe_c{c}", pe_module_name(self._module_prefix), signature, ports)
            else:
                submodule(m, f"pe_c{c}", ProcessingElement(cfg, self._row, c,
                                                           seed_ports=self._seed_ports), ports)
        m.d.comb += [self.full.eq(Cat(full).all()), self.stall_next.eq(Cat(stall).any()),
                     self.full_next.eq(Cat(full_next).all())]
        if row_outer:
            adder = RowOuterAdder(cfg, self._row, seed_port=self._seed_ports)
            ports = dict(en=en, req=Cat(req), a=outer_a, b=outer_b, sum=outer_sum)
            if "row_lfsr_start" in self.signature.members:
                ports["lfsr_start"] = self.row_lfsr_start
            submodule(m, "outer_add", adder, ports)
        return m


def _connections(signature, ports):
    """``(port name, flow, index or None, value)`` for each member of ``signature``, its value
    from ``ports`` (an int is a constant; an array member takes a list)."""
    for name, member in signature.members.items():
        value = ports[name]
        if isinstance(value, list):
            for i, v in enumerate(value):
                yield name, member.flow, i, v
        else:
            if isinstance(value, int):
                value = Const(value, member.shape)
            yield name, member.flow, None, value


def submodule(m, name, component, ports):
    """``component`` as submodule ``name`` of ``m``, its ports connected to ``ports``."""
    m.submodules[name] = component
    for port, flow, i, value in _connections(component.signature, ports):
        member = getattr(component, port)
        member = member if i is None else member[i]
        m.d.comb += member.eq(value) if flow == In else value.eq(member)


def instance(m, name, module, signature, ports):
    """An instance ``name`` of Verilog module ``module`` in ``m``, with ``signature``'s members as
    its ports (array members flattened to ``<name>__<i>``, as
    :func:`~fp8mac.hw.emit.emit_verilog` names them) connected to ``ports``, and ``clk`` and
    ``rst``."""
    kwargs = dict(i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync"))
    for port, flow, i, value in _connections(signature, ports):
        kwargs[f"{'i' if flow == In else 'o'}_{port}{'' if i is None else f'__{i}'}"] = value
    m.submodules[name] = Instance(module, **kwargs)


def _signature(cls, config):
    """The signature of the seed-port form of ``cls`` (ProcessingElement or ArrayRow): the same
    at every position."""
    component = cls(config, seed_ports=True)
    component._MustUse__silence = True  # only its signature is used: never elaborated
    return component.signature
