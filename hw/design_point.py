"""A point of a design-space sweep (:mod:`fp8mac.hw.sweep`): what is built from a configuration
and how it is synthesized.

A point is a :class:`~fp8mac.model.config.MacConfig` and a **kind**:

``pe``
    One processing element (the default; a grid's product points are all PEs). With its row's
    outer adder where it has one, it is one PE slot: the PE plus ``1/cols`` of the row's adder
    and LFSR (:func:`~fp8mac.hw.synth.with_row_share`).
``array``
    The whole streaming top (:class:`~fp8mac.hw.top.Accelerator`), flattened; with
    ``hierarchical``, the Verilog ``fp8mac generate`` writes (one PE module, one row module),
    both kept as modules, so the PE is mapped once and OpenSTA times the whole netlist.
``engine``
    The layer engine (:class:`~fp8mac.hw.engine.Engine`) around the array, with buffers of
    ``depth`` words, hierarchical (the PE, the row, the streaming top, the update unit's
    multiplier and adder and the two FIFOs kept as modules).
``block``
    One sub-block of the PE the configuration describes, synthesized alone
    (:func:`~fp8mac.hw.emit.build_block`): ``multiplier`` (``in_format``), ``mac`` (the inner
    fused adder: ``acc_format``, ``in_format``, ``inner_rounding``, ``rbits``), ``adder`` (the
    outer adder: ``acc_format``, ``outer_rounding``, ``rbits``), ``lfsr`` (``lfsr_width``,
    ``rbits``, ``seed``) or, for a block-scaled PE, ``blocksum`` (its block stage,
    :class:`~fp8mac.hw.block.BlockSum`: ``a_block``, ``b_block``, ``dot``).

A named point (``name``) keeps the Verilog module names of ``make synth`` (``pe_<name>``, the
row adder ``row_adder``, a block ``<name>``, an array or engine ``config.top``) and its
``targets`` (any of ``generic``, ``asic``, ``ice40``; hierarchical arrays and engines ``asic``
only). ``label``, ``section`` and ``lever`` do not change what is built: they say how the
grid's report (:mod:`fp8mac.hw.area_report`) shows the point.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from fp8mac.model.config import MacConfig

__all__ = ["KINDS", "BLOCKS", "TARGETS", "POINT_FIELDS", "TOOL_TIMEOUT", "Point", "point_from_entry", "verilog",
           "synthesize_point", "block_args", "engine_keep", "macs_per_cycle", "report_figures",
           "estimated_cost"]

KINDS = ("pe", "array", "engine", "block")
BLOCKS = ("multiplier", "mac", "adder", "lfsr", "blocksum")  # fp8mac.hw.emit.BLOCKS, and a block PE's stage
TARGETS = ("generic", "asic", "ice40")  # fp8mac.hw.synth.TARGETS
#: The fields of a ``[[points]]`` entry besides MacConfig's.
POINT_FIELDS = ("name", "label", "kind", "targets", "hierarchical", "block", "depth", "section",
                "lever")
#: Seconds a tool run (Yosys, OpenSTA, nextpnr) may take before the design fails.
TOOL_TIMEOUT = 3600.0
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Point:
    """One design of a sweep (module docstring).

    Attributes
    ----------
    config : MacConfig
    kind : {"pe", "array", "engine", "block"}
    name : str or None
        Names the point in reports and its Verilog modules; ``None`` for a product point.
    label : str or None
        What a report calls it (default: the name).
    targets : tuple of str
        The synthesis flows (default ``("asic",)``).
    hierarchical : bool
        ``array`` only: PE and row modules kept.
    block : str or None
        ``block`` only: which sub-block.
    depth : int or None
        ``engine`` only: words per buffer (A, B and C alike).
    section, lever
        Where the grid's report shows the point, and (PEs) whether it is a one-change lever on
        the default.
    """

    config: MacConfig
    kind: str = "pe"
    name: str | None = None
    label: str | None = None
    targets: tuple = ("asic",)
    hierarchical: bool = False
    block: str | None = None
    depth: int | None = None
    section: str | None = None
    lever: bool = False

    @property
    def plain(self) -> bool:
        """A product point: an unnamed PE on the asic target (what ``area_figures`` measures)."""
        return self.spec() is None

    def spec(self) -> dict | None:
        """What is built, besides the configuration (None for a plain PE point): part of the
        point's cache key and of its Dask task."""
        d = {"kind": self.kind, "name": self.name, "targets": list(self.targets)}
        if self.kind == "array":
            d["hierarchical"] = self.hierarchical
        if self.kind == "block":
            d["block"] = self.block
        if self.kind == "engine":
            d["depth"] = self.depth
        return None if d == {"kind": "pe", "name": None, "targets": ["asic"]} else d

    @classmethod
    def from_spec(cls, config: MacConfig, spec: dict | None) -> "Point":
        """The inverse of :meth:`spec` (the report fields left at their defaults)."""
        if spec is None:
            return cls(config)
        spec = dict(spec)
        spec["targets"] = tuple(spec.get("targets", ("asic",)))
        return cls(config, **spec)

    @property
    def top(self) -> str:
        """The Verilog top module's name."""
        if self.kind == "pe":
            return f"pe_{self.name}" if self.name else f"{self.config.top}_pe"
        if self.kind == "block":
            return self.name or self.block
        return self.config.top

    @property
    def title(self) -> str:
        return self.label or self.name or self.kind


def _fail(where: str, message: str):
    raise ValueError(f"{where}{message}")


def point_from_entry(config: MacConfig, entry: dict, where: str) -> Point:
    """The :class:`Point` of one ``[[points]]`` table: ``config`` built from its MacConfig
    fields, ``entry`` its point fields (:data:`POINT_FIELDS`). ``where`` prefixes every error
    (``grid FILE: [[points]] #3 (...): ``).

    Raises
    ------
    ValueError
        A field of the wrong type or value, or a field that does not belong to the kind; the
        message names the field. (A block whose component rejects the configuration's formats
        fails when it is built: a failed point.)
    """
    kind = entry.get("kind", "pe")
    if kind not in KINDS:
        _fail(where, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        _fail(where, f"name must be an identifier (letters, digits, _), not {name!r}")
    for key in ("label", "section"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            _fail(where, f"{key} must be a string, not {entry[key]!r}")
    for key in ("hierarchical", "lever"):
        if key in entry and not isinstance(entry[key], bool):
            _fail(where, f"{key} must be true or false, not {entry[key]!r}")
    hierarchical = entry.get("hierarchical", False)
    if "hierarchical" in entry and kind != "array":
        _fail(where, f"hierarchical is for kind array, not {kind}")
    block = entry.get("block")
    if kind == "block":
        if block not in BLOCKS:
            _fail(where, f"block must be one of {', '.join(BLOCKS)}, not {block!r}")
        if block == "blocksum" and not config.blocks:
            _fail(where, "block blocksum is the block stage of a block-scaled PE: give a_block")
    elif block is not None:
        _fail(where, f"block is for kind block, not {kind}")
    depth = entry.get("depth")
    if kind == "engine":
        from .engine import EngineConfig

        if depth is None:
            _fail(where, "depth (words per buffer) is needed for kind engine")
        try:
            EngineConfig(depth, depth, depth)
        except ValueError:
            _fail(where, f"depth (words per buffer) must be a power of two in 2..65536, not {depth!r}")
    elif depth is not None:
        _fail(where, f"depth is for kind engine, not {kind}")
    targets = entry.get("targets", ["asic"])
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets or any(t not in TARGETS for t in targets) \
            or len(set(targets)) != len(targets):
        _fail(where, f"targets must be a list of distinct {', '.join(TARGETS)}, not {targets!r}")
    targets = tuple(t for t in TARGETS if t in targets)
    if (kind == "engine" or hierarchical) and targets != ("asic",):
        _fail(where, f"targets of a hierarchical {'engine' if kind == 'engine' else 'array'} "
                     f"must be [\"asic\"] (kept modules are timed on the asic flow only), not "
                     f"{list(targets)}")
    return Point(config, kind, name, entry.get("label"), targets, hierarchical, block, depth,
                 entry.get("section"), entry.get("lever", False))


def block_args(point: Point) -> dict:
    """The :func:`~fp8mac.hw.emit.build_block` arguments of a ``block`` point (formats by name
    where they have one)."""
    c = point.config

    def fmt(f):
        return f.name or f

    return {
        "multiplier": lambda: dict(in_format=fmt(c.in_format)),
        "mac": lambda: dict(acc_format=fmt(c.acc_format), in_format=fmt(c.in_format),
                            rounding=c.inner_rounding, rbits=c.rbits),
        "adder": lambda: dict(acc_format=fmt(c.acc_format), rounding=c.outer_rounding, rbits=c.rbits),
        "lfsr": lambda: dict(lfsr_width=c.lfsr_width, rbits=c.rbits, seed=c.seed),
        "blocksum": lambda: dict(a_block=c.a_block.label, b_block=c.b_block.label, dot=c.dot),
    }[point.block]()


def engine_keep(top: str) -> tuple[str, ...]:
    """The modules an engine's synthesis keeps (its emitted submodules are named ``top.<name>``)."""
    from .array import pe_module_name, row_module_name

    return (pe_module_name(top), row_module_name(top), f"{top}.core", f"{top}.upd_mul",
            f"{top}.upd_mac", f"{top}.feed", f"{top}.out")


def verilog(point: Point) -> str:
    """The Verilog text of the point's design (top module :attr:`Point.top`)."""
    from .emit import build_block, emit_verilog

    c = point.config
    if point.kind == "pe":
        from .pe import ProcessingElement
        return emit_verilog(ProcessingElement(c), point.top)
    if point.kind == "array" and point.hierarchical:
        from .emit import accelerator_verilog
        return accelerator_verilog(c, point.top)
    if point.kind == "array":
        from .top import Accelerator
        return emit_verilog(Accelerator(c), point.top)
    if point.kind == "engine":
        from .emit import engine_verilog
        from .engine import EngineConfig
        return engine_verilog(c, EngineConfig(point.depth, point.depth, point.depth), point.top)
    if point.block == "blocksum":
        from .block import BlockSum
        return emit_verilog(BlockSum(c), point.top)
    return emit_verilog(build_block(point.block, **block_args(point)), point.top)


def synthesize_point(point: Point, work_dir, timeout: float | None = TOOL_TIMEOUT) -> dict:
    """Generate the point's Verilog into ``work_dir`` and synthesize it for its targets
    (:func:`~fp8mac.hw.synth.synthesize`, ``timeout`` seconds per tool run); returns the report,
    with ``times`` (seconds to generate and to synthesize).

    A PE whose outer sums are added per row carries ``1/cols`` of its row's adder: that adder
    (module ``row_adder`` for a named point) is synthesized too, into ``work_dir/row_adder``, on
    the targets but ice40.
    """
    from .synth import synthesize

    out = Path(work_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    text, top = verilog(point), point.top
    path = out / f"{top}.v"
    path.write_text(text)
    t1 = time.perf_counter()
    c = point.config
    keep = ()
    if point.kind == "engine":
        keep = engine_keep(top)
    elif point.kind == "array" and point.hierarchical:
        from .array import pe_module_name, row_module_name
        keep = (pe_module_name(top), row_module_name(top))
    config = None if point.kind == "block" else c
    report = synthesize(path, top, out, point.targets, config=config, timeout=timeout,
                        keep_hierarchy=keep)
    if point.kind == "pe" and c.outer_placement == "row":
        from .array import RowOuterAdder
        from .emit import emit_verilog
        from .synth import with_row_share

        row_top = "row_adder" if point.name else f"{c.top}_row_adder"
        row_dir = out / "row_adder"
        row_dir.mkdir(exist_ok=True)
        (row_dir / f"{row_top}.v").write_text(emit_verilog(RowOuterAdder(c), row_top))
        row = synthesize(row_dir / f"{row_top}.v", row_top, row_dir,
                         tuple(t for t in point.targets if t != "ice40"), config=c, timeout=timeout)
        report = with_row_share(report, row, c.cols)
    t2 = time.perf_counter()
    report["times"] = {"generate": round(t1 - t0, 1), "synthesize": round(t2 - t1, 1)}
    return report


def macs_per_cycle(point: Point) -> int | None:
    """MACs per cycle of the design: ``dot`` for a PE, ``rows x cols x dot`` for an array or an
    engine, None for a block."""
    c = point.config
    if point.kind == "pe":
        return c.dot
    if point.kind == "block":
        return None
    return c.rows * c.cols * c.dot


def report_figures(report: dict, macs: int | None) -> dict:
    """The sweep's area figures (``results.csv``) from a synthesis report's asic target:
    ``area_um2``, ``area_per_mac_um2``, ``nand2_eq``, ``critical_path_ns``, ``fmax_mhz`` and
    ``gmacs_per_mm2`` (``macs`` x Fmax / area); ``{}`` without the asic target."""
    asic = report.get("asic")
    if not asic:
        return {}

    def v(key):
        return (asic.get(key) or {}).get("value")

    area, fmax = v("area"), v("fmax")
    return {
        "area_um2": area,
        "area_per_mac_um2": area / macs if area and macs else None,
        "nand2_eq": v("nand2_eq"),
        "critical_path_ns": v("critical_path"),
        "fmax_mhz": fmax,
        # macs per cycle at fmax MHz over area um^2: 1e6 MAC/s / 1e-6 mm^2 = 1e3 GMAC/s/mm^2
        "gmacs_per_mm2": macs * fmax / area * 1e3 if macs and fmax and area else None,
    }


def estimated_cost(point: Point) -> float:
    """A rough relative cost of synthesizing the point, so a sweep can start the longest first
    (the exact product frames of wide formats at dot > 1, flat arrays); not a time."""
    c = point.config
    if point.kind == "block":
        return 10.0
    w = max(c.a_format.width, c.b_format.width)
    pe = c.dot * w * w * (1 + (c.dot > 1) * w / 8)
    if point.kind == "pe":
        return pe * (1 + c.pipeline / 4)
    if point.kind == "engine":
        return 1500.0 + 2 * c.rows * c.cols + 20 * (point.depth or 0)
    if point.hierarchical:
        return 2 * c.rows * c.cols + pe
    return 100.0 * c.rows * c.cols * max(1.0, pe / 64)
