"""Stream harnesses that put the arithmetic blocks on Icarus and Verilator, and how to run them.

The blocks of ``fp8mac.hw`` (``FloatMultiplier``, ``MacUnit``, ``FloatAdder``: combinational;
``Lfsr``: one register) are simulated behind AXI4-Stream ports, so the shared stream driver, sink
and scoreboard (:mod:`fp8mac.sim.axis`, :mod:`fp8mac.sim.scoreboard`) feed them one case per clock
cycle and compare every result code with the golden model (``sim/tb_arith.py``).

- :class:`MacStep`: one MAC step, ``result = round(acc + a * b)``: a ``FloatMultiplier`` feeding
  a ``MacUnit.for_product``, as in a processing element.
- :class:`StreamHarness`: any combinational block between two streams: ``s_axis_tdata`` is the
  concatenation of the block's inputs (the first in the least significant bits), ``m_axis_tdata``
  its output, one register stage, full throughput.
- :class:`LfsrStream`: an ``Lfsr`` whose draws leave on ``m_axis``; a draw is consumed exactly
  when a beat transfers, so the sink's backpressure is the LFSR's advance enable.

:func:`run_arith` builds one of them and runs its cocotb test; :func:`measure_mac_rate` returns
MAC cases per second for the benchmarks.
"""

from __future__ import annotations

import json

from amaranth.hdl import Cat, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.hw.adder import FloatAdder, MacUnit
from fp8mac.hw.emit import emit_verilog
from fp8mac.hw.lfsr import Lfsr
from fp8mac.hw.multiplier import FloatMultiplier
from fp8mac.model.formats import format_by_name

from .runner import SimResults, build_and_test, build_root, write_verilog

__all__ = ["MacStep", "StreamHarness", "LfsrStream", "arith_harness", "run_arith", "run_harness",
           "measure_mac_rate"]


class MacStep(wiring.Component):
    """One fused MAC step, ``result = round(acc + a * b)``: :class:`FloatMultiplier` ->
    :class:`MacUnit`. Combinational: latency 0 cycles.

    Parameters
    ----------
    acc_format, in_format : FloatFormat or str
        Accumulator and operand formats.
    rounding : {"nearest", "stochastic", "zero"}
    rbits : int, optional
        Random bits per stochastic rounding.

    Members
    -------
    a, b : In(in_format.width)
    acc : In(acc_format.width)
    rand : In(rbits)
        ``stochastic`` only.
    result : Out(acc_format.width)
    """

    def __init__(self, acc_format, in_format, rounding="nearest", rbits=None):
        self._mul = FloatMultiplier(in_format)
        self._mac = MacUnit.for_product(acc_format, in_format, rounding, rbits)
        width = self._mul.in_format.width
        members = {"a": In(width), "b": In(width), "acc": In(self._mac.acc_format.width)}
        if rounding == "stochastic":
            members["rand"] = In(rbits)
        members["result"] = Out(self._mac.acc_format.width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = self._mul
        m.submodules.mac = mac = self._mac
        m.d.comb += [
            mul.a.eq(self.a), mul.b.eq(self.b),
            mac.acc.eq(self.acc), mac.addend.eq(mul.product),
            self.result.eq(mac.result),
        ]
        if "rand" in self.signature.members:
            m.d.comb += mac.rand.eq(self.rand)
        return m


class StreamHarness(wiring.Component):
    """A combinational ``block`` between an AXI4-Stream slave and master port.

    ``s_axis_tdata`` is ``Cat`` of the block's ``inputs`` (the first in the least significant
    bits), ``m_axis_tdata`` is its ``output``, registered; ``tlast`` travels along. Full
    throughput; latency 1 cycle.

    Parameters
    ----------
    block : wiring.Component
        A combinational component.
    inputs : sequence of str
        The block's input members, in ``tdata`` order.
    output : str
        The block's output member.

    Attributes
    ----------
    fields : list of (str, int)
        ``(name, width)`` of each ``s_axis_tdata`` field, least significant first.
    """

    def __init__(self, block, inputs, output="result"):
        members = block.signature.members
        self._block, self._inputs, self._output = block, list(inputs), output
        self.fields = [(name, Shape.cast(members[name].shape).width) for name in self._inputs]
        out_width = Shape.cast(members[output].shape).width
        super().__init__({
            "s_axis_tdata": In(sum(w for _, w in self.fields)), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.block = block = self._block
        m.d.comb += Cat(*(getattr(block, name) for name in self._inputs)).eq(self.s_axis_tdata)
        # One register stage: it may load whenever it is empty or its beat leaves.
        m.d.comb += self.s_axis_tready.eq(~self.m_axis_tvalid | self.m_axis_tready)
        with m.If(self.s_axis_tready):
            m.d.sync += [
                self.m_axis_tvalid.eq(self.s_axis_tvalid),
                self.m_axis_tdata.eq(getattr(block, self._output)),
                self.m_axis_tlast.eq(self.s_axis_tlast),
            ]
        return m


class LfsrStream(wiring.Component):
    """An :class:`~fp8mac.hw.lfsr.Lfsr`'s draws as a stream: ``m_axis_tdata`` is the current
    draw, ``m_axis_tvalid`` is high out of reset, and the LFSR advances exactly when a beat
    transfers (``en = tvalid & tready``). Beat ``k`` is model draw ``k``.

    Parameters
    ----------
    width, rbits, seed : int
        As :class:`~fp8mac.hw.lfsr.Lfsr`.
    """

    def __init__(self, width, rbits, seed):
        self._lfsr = Lfsr(width, rbits, seed)
        super().__init__({"m_axis_tdata": Out(rbits), "m_axis_tvalid": Out(1),
                          "m_axis_tready": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.lfsr = lfsr = self._lfsr
        out_of_reset = Signal()
        m.d.sync += out_of_reset.eq(1)
        m.d.comb += [
            self.m_axis_tvalid.eq(out_of_reset),
            self.m_axis_tdata.eq(lfsr.value),
            lfsr.en.eq(self.m_axis_tvalid & self.m_axis_tready),
        ]
        return m


def arith_harness(block: str, **config) -> tuple[wiring.Component, dict]:
    """The harness for ``block`` and the description its cocotb test reads.

    Parameters
    ----------
    block : {"mac", "adder", "lfsr"}
    **config
        ``mac``: ``acc_format``, ``in_format``, ``rounding``, ``rbits``; ``adder``: ``fmt``,
        ``rounding``, ``rbits``; ``lfsr``: ``width``, ``rbits``, ``seed``.
    """
    if block == "mac":
        cfg = {"acc_format": "fp16_ibm", "in_format": "fp8_e5m2", "rounding": "nearest",
               "rbits": None, **config}
        step = MacStep(cfg["acc_format"], cfg["in_format"], cfg["rounding"], cfg["rbits"])
        names = [n for n in ("a", "b", "acc", "rand") if n in step.signature.members]
        harness = StreamHarness(step, names)
    elif block == "adder":
        cfg = {"fmt": "fp16_ibm", "rounding": "nearest", "rbits": None, **config}
        adder = FloatAdder(cfg["fmt"], cfg["rounding"], cfg["rbits"])
        names = [n for n in ("a", "b", "rand") if n in adder.signature.members]
        harness = StreamHarness(adder, names)
    elif block == "lfsr":
        cfg = {"width": 32, "rbits": 8, "seed": 1, **config}
        harness = LfsrStream(cfg["width"], cfg["rbits"], cfg["seed"])
    else:
        raise ValueError(f"block must be one of mac, adder, lfsr, not {block!r}")
    for key in ("acc_format", "in_format", "fmt"):
        if key in cfg:
            cfg[key] = format_by_name(cfg[key], key).to_dict()
    cfg["block"] = block
    cfg["fields"] = getattr(harness, "fields", [])
    return harness, cfg


def _label(cfg: dict) -> str:
    parts = [cfg["block"]]
    for key in ("acc_format", "in_format", "fmt"):
        if key in cfg:
            parts.append(cfg[key]["name"] or "custom")
    for key in ("rounding", "rbits", "width", "seed"):
        if cfg.get(key) is not None:
            parts.append(f"{key[0]}{cfg[key]}" if key != "rounding" else cfg[key])
    return "-".join(parts)


def run_arith(block: str, sim: str | None = None, cases: int = 1000, *, pause: str = "none",
              seed: int | None = None, **config) -> SimResults:
    """Build the harness for ``block`` and run ``cases`` random cases through it (``tb_arith``).

    Parameters
    ----------
    block : {"mac", "adder", "lfsr"}
    sim : {"icarus", "verilator"}, optional
        Default: the ``SIM`` environment variable, else ``"verilator"``.
    cases : int
        Random cases (MAC steps, additions, LFSR draws).
    pause : str
        Pause pattern of both streams (:data:`fp8mac.sim.pause.PAUSES`).
    seed : int, optional
        Default: ``FP8MAC_SEED``, else a fresh one (printed).
    **config
        As :func:`arith_harness`.

    Returns
    -------
    SimResults
        ``metrics["cases_per_second"]``: cases per CPU second of the simulation process.
    """
    harness, cfg = arith_harness(block, **config)
    return run_harness(harness, cfg, sim, cases, pause=pause, seed=seed)


def run_harness(harness, cfg: dict, sim: str | None = None, cases: int = 1000, *,
                pause: str = "none", seed: int | None = None, name: str | None = None
                ) -> SimResults:
    """Run ``tb_arith`` on ``harness``, the test expecting what ``cfg`` describes (the two come
    from :func:`arith_harness`; the tests pair mismatched ones to prove that errors are caught).
    ``name`` names the build directory (default from ``cfg``)."""
    top = "arith_" + cfg["block"]
    name = name or _label(cfg)
    source = write_verilog(emit_verilog(harness, top), build_root() / "sim" / name / f"{top}.v")
    cfg = {**cfg, "cases": int(cases), "pause": pause}
    return build_and_test([source], top, "fp8mac.sim.tb_arith", sim=sim, name=name,
                          extra_env={"FP8MAC_ARITH": json.dumps(cfg)}, seed=seed,
                          expect_tests=1)


def measure_mac_rate(sim: str, cases: int = 20000, rounding: str = "nearest") -> float:
    """MAC cases per CPU second through one simulated MAC step (fp8_e5m2 x fp8_e5m2 + fp16_ibm),
    all cases checked against the model; for ``make bench``."""
    rbits = 8 if rounding == "stochastic" else None
    results = run_arith("mac", sim, cases, rounding=rounding, rbits=rbits)
    return results.metrics["cases_per_second"]
