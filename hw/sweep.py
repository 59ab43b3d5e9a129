"""Design-space sweeps: ``fp8mac sweep`` runs a grid of configurations on Dask and reports the
Pareto fronts of area and throughput against accuracy (ARCHITECTURE.md §9).

A **grid file** (TOML, or YAML) lists :class:`~fp8mac.model.config.MacConfig` fields, each with a
value or a list of values; the points are the Cartesian product of the lists (fields not listed
keep MacConfig's defaults), plus optional explicit points, minus optional exclusions::

    chunk = [16, 64]             # a list: one axis of the product
    dot = [1, 4]
    rbits = [4, 8]
    outer_rounding = "stochastic"   # one value: fixed for every point ("off" turns chunk off)

    [[points]]                   # extra points: MacConfig's defaults plus the fixed values
    chunk = "off"                # above plus these fields (a grid of [[points]] alone has
                                 # just those points)
    outer_rounding = "nearest"

    [[exclude]]                  # drop every product point that matches all its fields
    chunk = 16                   # (a value or a list of values per field)
    dot = 4

    [accuracy]                   # optional settings of the figures (defaults: ACCURACY)
    lengths = [64, 1024, 16384]

``a_formats`` / ``b_formats`` values are comma-separated strings (``"fp8_e4m3,fp8_e5m2"``).
Every point must be a valid MacConfig and every field a known one: anything else is a
ValueError naming the field (``fp8mac sweep`` exits 2 and writes nothing).

**Named designs.** A ``[[points]]`` entry may also say what is built from its configuration
and how (:mod:`fp8mac.hw.design_point`): ``name``, ``label``, ``kind`` (``pe``, ``array``,
``engine``, ``block``), ``targets`` (synthesis flows), ``hierarchical``, ``block``, ``depth``,
and for the grid's report ``section`` and ``lever``. A grid that sets ``report = "area"`` has
its named points written up by :mod:`fp8mac.hw.area_report` too (``area.md``, ``area.png``).
The shipped grids (:data:`SHIPPED_GRIDS`, ``--grid synth``: the designs of ``make synth``)
live in ``fp8mac/hw/grids/``.

**Figures** per point (``what``, default accuracy and area):

``accuracy``
    (Not for blocks.) The accumulation study's error
    (:mod:`fp8mac.model.studies.accumulation`: its operands, its metric
    ``mean |computed - exact| / sum|a_k b_k|``) at a few dot-product lengths, every dot product
    computed by :func:`~fp8mac.model.gemm.mac_gemm` with the point's configuration.
``area``
    One processing element (with its share of the row's outer adder where it has one) through
    :func:`~fp8mac.hw.synth.synthesize_block` on the ``asic`` target: osu018 cell area, NAND2
    equivalents, OpenSTA's critical path and Fmax, area per MAC/cycle (area / dot) and GMAC/s
    per mm^2 (dot x Fmax / area). A named design is synthesized on its own targets
    (:func:`~fp8mac.hw.design_point.synthesize_point`, its tools' work directories kept under
    ``OUT/work/<name>/``), the whole report cached with the figures (an array's or an engine's
    per MAC figures count all its PEs).
``sim``
    (Not for blocks.) A random GEMM on the generated array in a simulator
    (:func:`~fp8mac.sim.accel_bench.run_gemm_on_simulator`, Icarus by default) compared code
    for code with :func:`~fp8mac.model.gemm.mac_gemm`.

**Execution.** Each point is one Dask task (:func:`evaluate_point`) on a ``LocalCluster`` (one
single-threaded worker process per core, :func:`dask_client`) or on an existing cluster by
scheduler address. Finished points are cached in ``OUT/points/<key>.json``, the key a hash of
the point's configuration, the fp8mac version, ``what`` and the figures' settings
(:func:`point_key`), so a rerun or a grown grid computes only new points (no cluster is started
when there are none); ``recompute`` evaluates every point again. The fp8mac version of a
checkout does not change with its code: each entry records the source it was computed from
(:func:`source`, the commit and any uncommitted change under ``hw/`` or ``model/``), which the
area report states. A point whose evaluation raises is recorded with the error's type and
message (and tried again by the next run); the others go on. Points start longest first
(:func:`~fp8mac.hw.design_point.estimated_cost`). The results are written by
:mod:`fp8mac.hw.sweep_report`: ``results.csv``, ``sweep.md`` and ``pareto.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from fp8mac.model.config import MacConfig

from .area_report import SECTIONS as AREA_SECTIONS
from .design_point import POINT_FIELDS, Point, point_from_entry

__all__ = ["WHATS", "DEFAULT_WHAT", "ACCURACY", "SIM", "CONFIG_FIELDS", "CONNECT_TIMEOUT",
           "REPORTS", "SHIPPED_GRIDS", "Grid", "SweepResult", "find_grid", "load_grid",
           "parse_what", "point_key", "point_label", "evaluate_point", "accuracy_figures",
           "area_figures", "sim_figures", "dask_client", "source", "run_sweep", "register"]

WHATS = ("accuracy", "area", "sim")
DEFAULT_WHAT = ("accuracy", "area")

#: Defaults of the ``[accuracy]`` table: the accumulation study's lengths, trials per length,
#: operand distribution and seed (operands; the LFSRs take the point's own ``seed`` field).
ACCURACY = dict(lengths=(64, 1024, 16384), trials=16, distribution="halfnormal", seed=0)
#: Defaults of the ``[sim]`` table: simulator, GEMM shape (``None``: rows, two chunks of K
#: (at most 256; 32 without chunking), cols) and the operands' seed.
SIM = dict(simulator="icarus", m=None, k=None, n=None, seed=0)
_SETTINGS = {"accuracy": ACCURACY, "sim": SIM}

CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(MacConfig))
#: Seconds ``--scheduler`` waits for the scheduler (and for its first worker).
CONNECT_TIMEOUT = 10.0
_TABLES = ("points", "exclude", "report") + tuple(_SETTINGS)
#: A grid's ``report``: the module that writes it up from its named points, and the sections
#: (``section`` of a point) it has.
REPORTS = {"area": AREA_SECTIONS}
_GRIDS = Path(__file__).resolve().parent / "grids"
#: Grids shipped with fp8mac (``--grid NAME``): ``synth``, the designs of ``make synth``.
SHIPPED_GRIDS = ("synth",)


def _version() -> str:
    from .generate import _version as fp8mac_version  # the one the manifests record

    return fp8mac_version()


#: Modules of fp8mac.hw that only report figures: a change to them leaves every cached point valid.
REPORT_ONLY = ("area_report.py", "sweep_report.py", "benchmarks.py", "cli.py", "cli_demo.py")


@functools.lru_cache(maxsize=None)
def code_digest() -> str:
    """16 hex digits of a SHA-256 over what a point's figures depend on: Amaranth's version, the
    sources of ``fp8mac.hw`` (but :data:`REPORT_ONLY`) and of ``fp8mac.model``. Part of every
    cache key, so that editing the hardware or the model in a checkout (whose version does not
    change) invalidates the cached points."""
    import amaranth

    import fp8mac.hw
    import fp8mac.model

    hw, model = Path(fp8mac.hw.__file__).parent, Path(fp8mac.model.__file__).parent
    digest = hashlib.sha256(amaranth.__version__.encode())
    paths = [p for p in sorted(hw.glob("*.py")) if p.name not in REPORT_ONLY]
    paths += sorted(model.rglob("*.py"))
    for path in paths:
        digest.update(str(path.relative_to(path.parents[1])).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# --- the grid ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """A loaded grid file.

    Attributes
    ----------
    path : Path
    points : tuple of Point
        Product points (file order of the axes, last axis fastest), then the explicit points;
        duplicates (the same design however spelled) only once.
    axes : dict
        Field -> list of values, as written (the product's axes; one value for a fixed field).
    settings : dict
        ``{"accuracy": {...}, "sim": {...}}``: :data:`ACCURACY` and :data:`SIM` with the file's
        tables applied.
    report : str or None
        The grid's report (a key of :data:`REPORTS`), written from its named points.
    """

    path: Path
    points: tuple
    axes: dict
    settings: dict
    report: str | None = None

    @property
    def configs(self) -> tuple:
        """The points' configurations."""
        return tuple(p.config for p in self.points)

    @property
    def named(self) -> bool:
        """Whether every point has a name (then reports show names, not fields)."""
        return all(p.name for p in self.points)

    @property
    def varying(self) -> tuple[str, ...]:
        """The fields whose value differs between points (the grid's real axes); ``a_format`` /
        ``b_format`` only where some point's differs from its ``in_format``."""
        dicts = [c.to_dict() for c in self.configs]
        return tuple(f for f in CONFIG_FIELDS
                     if len({json.dumps(d.get(f), sort_keys=True) for d in dicts}) > 1)


def _canonical(config: MacConfig) -> dict:
    """The configuration as :meth:`MacConfig.to_dict` writes it, with every field present."""
    d = config.to_dict()
    for key in ("a_format", "b_format"):
        d.setdefault(key, d["in_format"])
    for key in CONFIG_FIELDS:  # the run-time format sets and any other field left out when unset
        d.setdefault(key, None)
    return d


def _unknown(name: str, where: str, allowed) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}unknown field {name!r}{hint}; fields: {', '.join(allowed)}"


def _read(path: Path):
    text_kind = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"--grid: cannot read {path}: {exc.strerror or exc}") from None
    if text_kind == ".toml":
        import tomllib

        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"grid {path}: not valid TOML: {exc}") from None
    if text_kind in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pragma: no cover - dask brings PyYAML
            raise ValueError(f"grid {path}: YAML grid files need PyYAML (pip install pyyaml); "
                             "or write the grid as TOML") from None
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"grid {path}: not valid YAML: {' '.join(str(exc).split())}") from None
        return {} if data is None else data
    raise ValueError(f"--grid: {path}: unknown file type {path.suffix!r}; a grid is .toml, .yaml "
                     "or .yml")


def _point_text(d: dict) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in d.items())


def _show(v) -> str:
    return "off" if v is None else str(v)


def _chunk(v):
    return None if isinstance(v, str) and v.strip().lower() in ("off", "none") else v


def _settings(path: Path, table: str, given) -> dict:
    """One settings table checked against its defaults' keys and the study's validators."""
    from fp8mac.model.studies.accumulation import (DISTRIBUTIONS, check_int, check_lengths,
                                                   check_seed)

    where = f"grid {path}: [{table}] "
    if not isinstance(given, dict):
        raise ValueError(f"{where}must be a table of settings ({', '.join(_SETTINGS[table])})")
    out = dict(_SETTINGS[table])
    for key, value in given.items():
        if key not in out:
            raise ValueError(_unknown(key, where, tuple(out)))
        try:
            if key == "lengths":
                value = list(check_lengths(value))
            elif key == "trials":
                value = check_int("trials", value, 1, 1 << 12)
            elif key == "distribution" and value not in DISTRIBUTIONS:
                raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, not {value!r}")
            elif key == "seed":
                value = check_seed(value)
            elif key == "simulator" and value not in ("icarus", "verilator"):
                raise ValueError(f"simulator must be icarus or verilator, not {value!r}")
            elif key in ("m", "k", "n"):
                value = check_int(key, value, 1, 4096)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
        out[key] = value
    if "lengths" in out:
        out["lengths"] = list(out["lengths"])
    return out


def find_grid(grid) -> Path:
    """The grid file ``grid`` names: a path, or the name of a shipped grid (:data:`SHIPPED_GRIDS`)
    when no such file exists."""
    path = Path(grid)
    if str(grid) in SHIPPED_GRIDS and not path.exists():
        return _GRIDS / f"{grid}.toml"
    return path


def load_grid(path) -> Grid:
    """Read and check a grid file (module docstring), or a shipped grid by name; every point a
    valid MacConfig and, if named, a valid design.

    Raises
    ------
    ValueError
        A missing or unparsable file, an unknown field or table, an empty list of values, an
        exclusion on a field the grid does not vary, a point MacConfig rejects (the message
        names the point's fields and MacConfig's reason, which names the field), a point field
        :func:`~fp8mac.hw.design_point.point_from_entry` rejects, a name given twice, or no
        point left.
    """
    path = find_grid(path)
    if not path.is_file():
        raise ValueError(f"--grid: {path} is not a file (shipped grids: {', '.join(SHIPPED_GRIDS)})")
    data = _read(path)
    if not isinstance(data, dict):
        raise ValueError(f"grid {path}: must map MacConfig fields to values, not {type(data).__name__}")
    where = f"grid {path}: "
    axes, points, exclude, settings = {}, [], [], {t: dict(d) for t, d in _SETTINGS.items()}
    report = data.get("report")
    if report is not None and report not in REPORTS:
        raise ValueError(f"{where}report must be one of {', '.join(REPORTS)}, not {report!r}")
    for key, value in data.items():
        if key == "report":
            continue
        if key in _SETTINGS:
            settings[key] = _settings(path, key, value)
        elif key in ("points", "exclude"):
            if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
                raise ValueError(f"{where}{key} must be a list of tables of fields ([[{key}]])")
            allowed = CONFIG_FIELDS + (POINT_FIELDS if key == "points" else ())
            for entry in value:
                for f in entry:
                    if f not in allowed:
                        raise ValueError(_unknown(f, f"{where}[[{key}]]: ", allowed))
            (points if key == "points" else exclude).extend(value)
        elif key not in CONFIG_FIELDS:
            raise ValueError(_unknown(key, where, CONFIG_FIELDS + _TABLES))
        else:
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ValueError(f"{where}{key}: the list of values is empty (give at least one)")
            axes[key] = [_chunk(v) if key == "chunk" else v for v in values]
    for i, entry in enumerate(exclude):
        for f in entry:
            if f not in axes:
                raise ValueError(f"{where}[[exclude]] #{i + 1}: {f} is not an axis of the grid "
                                 f"(axes: {', '.join(axes) or 'none'})")
    fixed = {k: v[0] for k, v in axes.items() if len(v) == 1}

    def excluded(d):
        for entry in exclude:
            if all(d[f] in [(_chunk(x) if f == "chunk" else x)
                            for x in (entry[f] if isinstance(entry[f], list) else [entry[f]])]
                   for f in entry):
                return True
        return False

    out, seen, taken = [], set(), set()

    def config_of(d, what):
        try:
            return MacConfig.from_dict(d)
        except ValueError as exc:
            raise ValueError(f"{where}{what}: {exc}") from None
        except TypeError as exc:  # a value of a type no field takes (e.g. a table)
            raise ValueError(f"{where}{what}: {exc}") from None

    def add(point):
        key = json.dumps([_canonical(point.config), point.spec()], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(point)

    axis_names = list(axes)
    # A grid of [[points]] alone has just those (no product point of MacConfig's defaults).
    product = itertools.product(*(axes[n] for n in axis_names)) if axes or not points else ()
    for combo in product:
        d = dict(zip(axis_names, combo))
        if not excluded(d):
            varied = {k: v for k, v in d.items() if len(axes[k]) > 1}
            add(Point(config_of(d, f"point {_point_text(varied or d)}"
                                + (" (drop it with an [[exclude]] entry)" if len(varied) > 1 else ""))))
    sections = REPORTS.get(report, ())
    for i, p in enumerate(points):
        fields = {k: (_chunk(v) if k == "chunk" else v) for k, v in p.items() if k in CONFIG_FIELDS}
        what = f"[[points]] #{i + 1} ({p['name'] if 'name' in p else _point_text(p)})"
        point = point_from_entry(config_of({**fixed, **fields}, what),
                                 {k: v for k, v in p.items() if k in POINT_FIELDS}, f"{where}{what}: ")
        if point.section is not None and point.section not in sections:
            raise ValueError(f"{where}{what}: section must be one of {', '.join(sections)}, not "
                             f"{point.section!r}" if sections else
                             f"{where}{what}: section is for a grid with a report (report = "
                             f"{' or '.join(repr(r) for r in REPORTS)})")
        if point.name is not None:
            if point.name in taken:
                raise ValueError(f"{where}{what}: name {point.name!r} is given twice")
            taken.add(point.name)
        add(point)
    if not out:
        raise ValueError(f"{where}no points: every point of the product is excluded")
    return Grid(path, tuple(out), axes, settings, report)


def parse_what(text) -> tuple[str, ...]:
    """``--what``: a comma-separated subset of :data:`WHATS`, returned in that order."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    bad = [t for t in items if t not in WHATS]
    if bad or not items:
        raise ValueError(f"--what must be a comma-separated subset of {', '.join(WHATS)}, "
                         f"not {text!r}")
    return tuple(w for w in WHATS if w in items)


def point_key(point, what, settings: dict, version: str | None = None) -> str:
    """The cache key of a point (a :class:`~fp8mac.hw.design_point.Point` or a MacConfig): 16
    hex digits of a SHA-256 over its configuration (:meth:`MacConfig.to_dict`), what is built
    from it (:meth:`~fp8mac.hw.design_point.Point.spec`, for a named or non-PE point), the
    fp8mac version and its :func:`code_digest`, ``what`` and the settings of those figures."""
    if isinstance(point, MacConfig):
        point = Point(point)
    version = version or f"{_version()}+{code_digest()}"
    blob = {"config": point.config.to_dict(), "version": version, "what": sorted(what),
            "settings": {w: settings[w] for w in sorted(what) if w in settings}}
    if not point.plain:
        blob["design"] = point.spec()
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def point_label(point, fields) -> str:
    """``chunk=16 dot=4 rbits=8``: the point's values of ``fields``; a named point's name."""
    if isinstance(point, Point):
        if point.name:
            return point.name
        point = point.config
    d = _canonical(point)
    return " ".join(f"{f}={_show(d[f]) if not isinstance(d[f], list) else ','.join(map(str, d[f]))}"
                    for f in fields) or "default"


# --- one point (runs on a Dask worker) -----------------------------------------------------------

def accuracy_figures(config: MacConfig, lengths=ACCURACY["lengths"], trials=ACCURACY["trials"],
                     distribution=ACCURACY["distribution"], seed=ACCURACY["seed"]) -> dict:
    """The accumulation study's error of ``config`` at each length: ``err_n<n>_rel``.

    Operands from :func:`~fp8mac.model.studies.accumulation.draw_operands` (windows aligned to
    the chunk, or the dot width without chunking, so each dot product is computed as an
    unpadded one would be), the dot products by
    :func:`~fp8mac.model.studies.accumulation.dot_products` (``mac_gemm`` with ``config``).

    A block-scaled point (``config.a_block``): :func:`_block_accuracy_figures`.

    Raises
    ------
    ValueError
        The two operand streams have different formats: the study draws both in one.
    """
    import numpy as np

    from fp8mac.model.studies.accumulation import _exact, dot_products, draw_operands

    if config.blocks:
        return _block_accuracy_figures(config, lengths, trials, distribution, seed)
    if config.a_format != config.b_format:
        raise ValueError(f"accuracy: the accumulation study draws both operands in one format, "
                         f"but a_format is {config.a_format.label} and b_format "
                         f"{config.b_format.label}")
    align = config.chunk if config.chunk is not None else config.dot
    groups = draw_operands(lengths, trials, distribution, config.a_format, seed, align=align)
    computed = dot_products(groups, config)
    exact, scale = _exact(groups, config.a_format)  # the study's exact sums and its metric's scale
    return {f"err_n{n}_rel": float(np.mean(np.abs(computed[n] - exact[n]) / scale[n]))
            for n in sorted(computed)}


def _block_accuracy_figures(config: MacConfig, lengths, trials, distribution, seed) -> dict:
    """:func:`accuracy_figures` of a block-scaled point: per length n, ``trials`` rows of n values
    and one column of n (from ``distribution``, as the study draws them) block-quantized along K
    (:func:`~fp8mac.model.blockscale.quantize_blocks`, OCP MX / NVFP4 scales, nearest), their
    products by :func:`~fp8mac.model.blockscale.block_gemm`, and the mean over the rows of
    ``|computed - exact| / sum |a_k b_k|`` of those quantized operands (the accumulation error
    alone, the study's metric)."""
    import math

    import numpy as np

    from fp8mac.model.blockscale import block_gemm, dequantize_blocks, quantize_blocks
    from fp8mac.model.studies.accumulation import _draw, check_lengths

    rng = np.random.default_rng(seed)
    out = {}
    for n in check_lengths(lengths):
        a, sa = quantize_blocks(_draw(rng, distribution, (trials, n)), config.a_block, axis=-1)
        b, sb = quantize_blocks(_draw(rng, distribution, (n, 1)), config.b_block, axis=0)
        computed = config.acc_format.decode(block_gemm(a, sa, b, sb, config.block_config())[:, 0])
        prods = (dequantize_blocks(a, sa, config.a_block, axis=-1)
                 * dequantize_blocks(b, sb, config.b_block, axis=0)[:, 0])  # exact in float64
        exact = np.array([math.fsum(row) for row in prods])
        out[f"err_n{n}_rel"] = float(np.mean(np.abs(computed - exact) / np.abs(prods).sum(axis=1)))
    return out


def area_figures(config: MacConfig, work_dir) -> dict:
    """One PE slot of ``config`` synthesized for the ``asic`` target into ``work_dir``
    (:func:`~fp8mac.hw.design_point.report_figures`)."""
    from .design_point import report_figures
    from .synth import synthesize_block

    return report_figures(synthesize_block(config, "pe", work_dir, ("asic",)), config.dot)


def sim_figures(config: MacConfig, work_dir, simulator=SIM["simulator"], m=None, k=None, n=None,
                seed=SIM["seed"]) -> dict:
    """A random ``m x k x n`` GEMM on ``config``'s generated array in ``simulator``, compared code
    for code with ``mac_gemm``: ``sim_bit_exact`` is 1 only when every result code agrees (the
    bench itself raises on the first difference).

    Operands: ``numpy.random.default_rng(seed)`` normals rounded to each stream's format.
    """
    import numpy as np

    from fp8mac.model.gemm import mac_gemm
    from fp8mac.sim.accel_bench import ensure_design, run_gemm_on_simulator

    m = m or config.rows
    n = n or config.cols
    k = k or (min(2 * config.chunk, 256) if config.chunk is not None else 32)
    rng = np.random.default_rng(seed)
    a = config.a_format.encode(rng.standard_normal((m, k)))
    b = config.b_format.encode(rng.standard_normal((k, n)))
    work = Path(work_dir)
    design = ensure_design(config, work / "design")
    codes, stats = run_gemm_on_simulator(config, a, b, simulator, design=design,
                                         out_dir=work / "sim", seed=seed, quiet=True)
    mismatches = int(np.count_nonzero(np.asarray(codes) != mac_gemm(a, b, config)))
    return {"sim_bit_exact": int(mismatches == 0), "sim_mismatches": mismatches,
            "sim_cycles": int(stats["cycles"]), "sim_shape": f"{m}x{k}x{n}", "sim_seed": seed}


def evaluate_point(config_dict: dict, what, settings: dict, design: dict | None = None,
                   work_dir=None) -> dict:
    """The Dask task of one point: its figures, or the error that stopped them.

    ``design``: what is built (:meth:`~fp8mac.hw.design_point.Point.spec`; None: a PE on the
    asic target). ``work_dir``: where a named design's tools work (kept); default a temporary
    directory.

    Returns ``{"status": "ok", "figures": {...}, "seconds", "host"}`` (and for a design's area
    its whole synthesis ``report``), or ``"status": "error"`` with ``error_type`` and
    ``error_message`` (whitespace collapsed to one line) and the figures computed before the
    error.
    """
    from .design_point import macs_per_cycle, report_figures, synthesize_point

    t0 = time.perf_counter()
    figures = {}
    out = {"host": socket.gethostname()}
    try:
        point = Point.from_spec(MacConfig.from_dict(config_dict), design)
        config = point.config
        if "accuracy" in what and point.kind != "block":
            figures.update(accuracy_figures(config, **settings["accuracy"]))
        if "area" in what or ("sim" in what and point.kind != "block"):
            with contextlib.ExitStack() as stack:
                work = Path(work_dir) if work_dir else Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="fp8mac-sweep-")))
                if "area" in what and point.plain:
                    figures.update(area_figures(config, work / "synth"))
                elif "area" in what:
                    report = synthesize_point(point, work if work_dir else work / "synth")
                    out["report"] = report
                    figures.update(report_figures(report, macs_per_cycle(point)))
                if "sim" in what and point.kind != "block":
                    figures.update(sim_figures(config, work, **settings["sim"]))
        out["status"] = "ok"
    except Exception as exc:  # recorded, not raised: one point's failure does not stop the sweep
        out.update(status="error", error_type=type(exc).__name__,
                   error_message=" ".join(str(exc).split()))
    out.update(figures=figures, seconds=round(time.perf_counter() - t0, 3))
    return out


# --- the cluster and the run ---------------------------------------------------------------------

def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                timeout: float = CONNECT_TIMEOUT, log=print):
    """A ``dask.distributed.Client``: on the scheduler at ``scheduler``, or on a new
    ``LocalCluster`` of ``workers`` single-threaded worker processes (default: one per core; its
    scheduler's HTTP endpoints on a free port, so clusters side by side never compete for
    8787). Both are closed on exit.

    Raises
    ------
    fp8mac.hw.cli.UsageError
        No scheduler answers at ``scheduler`` within ``timeout`` seconds, or it has no worker
        within that time.
    """
    from dask.distributed import Client, LocalCluster

    from .cli import UsageError

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=f"{timeout}s", set_as_default=False)
        except (OSError, ValueError, TypeError) as exc:  # refused, timed out, bad address
            reason = " ".join(str(exc).split())
            raise UsageError(f"--scheduler: no Dask scheduler answers at {scheduler} within "
                             f"{timeout:g} s ({reason})") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise UsageError(f"--scheduler: the Dask scheduler at {scheduler} has no worker "
                                 f"(waited {timeout:g} s); start one with `dask worker {scheduler}`"
                                 ) from None
            n = len(client.nthreads())
            log(f"sweep: Dask scheduler {scheduler}, {n} worker(s)")
            yield client
        return
    workers = workers or default_workers()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        log(f"sweep: LocalCluster of {workers} worker process(es), 1 thread each")
        yield client


@dataclass
class SweepResult:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    grid : Grid
    what : tuple of str
    rows : list of dict
        One per point, in grid order: ``key``, ``point`` (Point), ``config`` (MacConfig),
        ``status`` (``"ok"`` or ``"error"``), ``cached`` (bool), ``figures``, ``seconds``,
        ``source`` (what it was computed from, :func:`source`), for a design's area its
        synthesis ``report``, and for an error ``error_type`` and ``error_message``.
    computed, cached, failed : int
        Points evaluated by this run, taken from the cache, and failed (of the computed).
    seconds : float
        Wall time of the run.
    cluster : str
        Where the points ran (no cluster when every point was cached).
    """

    grid: Grid
    what: tuple
    rows: list
    computed: int = 0
    cached: int = 0
    failed: int = 0
    seconds: float = 0.0
    cluster: str = "no cluster: nothing to compute"
    command: str = ""
    version: str = field(default_factory=_version)


def _cache_path(out: Path, key: str) -> Path:
    return out / "points" / f"{key}.json"


def _load_cached(out: Path, key: str):
    path = _cache_path(out, key)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if entry.get("status") == "ok" and entry.get("key") == key else None


def _store(out: Path, entry: dict):
    path = _cache_path(out, entry["key"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)  # a reader never sees half a file


def source() -> str:
    """What this fp8mac is: the git commit of its checkout and any uncommitted change under
    ``hw/`` or ``model/`` (``68cf1be``, ``68cf1be with uncommitted changes in hw/pe.py``), or
    its version where it is not a git checkout (an installed wheel)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args):
        try:
            r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return ""
        return r.stdout if r.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip()
    if not commit or not (root / "hw").is_dir():
        return f"fp8mac {_version()}"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "hw", "model").splitlines()
             if line.strip()]
    return commit + (f" with uncommitted changes in {', '.join(dirty)}" if dirty else "")


def run_sweep(grid: Grid, out, what=DEFAULT_WHAT, scheduler: str | None = None,
              workers: int | None = None, timeout: float = CONNECT_TIMEOUT, log=print,
              command: str = "", recompute: bool = False, report_dir=None,
              benchmarks=None) -> SweepResult:
    """Evaluate every point of ``grid`` not in ``out``'s cache (every point with ``recompute``)
    on Dask; write the cache entries as points finish and the reports at the end
    (:mod:`fp8mac.hw.sweep_report`; with the grid's ``report``, that report too, into
    ``report_dir`` (default ``out``), and its section of ``benchmarks``, a BENCHMARKS.md).

    Progress goes to ``log``: a line per finished point (``[ 3/16] ok chunk=16 dot=4 (2.1 s)``)
    and the counts (``... 12 cached, 4 to compute``).
    """
    from .sweep_report import write_reports

    t0 = time.perf_counter()
    out = Path(out)
    what = tuple(what)
    version = _version()
    rows = []
    for point in grid.points:
        key = point_key(point, what, grid.settings, version)
        rows.append({"key": key, "point": point, "config": point.config, "cached": False})
    todo = []
    result = SweepResult(grid, what, rows, command=command, version=version)
    for row in rows:
        entry = None if recompute else _load_cached(out, row["key"])
        if entry is None:
            todo.append(row)
        else:
            row.update(status="ok", cached=True, figures=entry["figures"], seconds=entry["seconds"],
                       source=entry.get("source"))
            if "report" in entry:
                row["report"] = entry["report"]
    result.cached = len(rows) - len(todo)
    log(f"sweep: {len(rows)} points ({', '.join(what)}): {result.cached} cached, "
        f"{len(todo)} to compute")
    if todo:
        with dask_client(scheduler, workers, timeout, log) as client:
            result.cluster = f"scheduler {scheduler}" if scheduler else \
                f"LocalCluster of {len(client.nthreads())} workers"
            try:  # only once a cluster is there: a bad scheduler leaves nothing behind
                (out / "points").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(f"--out: cannot create {out}: {exc.strerror or exc}") from None
            _compute(client, todo, what, grid, out, log, version, source())
    result.computed = len(todo)
    result.failed = sum(1 for r in rows if r["status"] != "ok")
    result.seconds = time.perf_counter() - t0
    paths = write_reports(result, out)
    if grid.report == "area":
        from .area_report import write_area_report

        paths += write_area_report(result, Path(report_dir) if report_dir else out, benchmarks)
    log(f"sweep: {len(rows)} points in {result.seconds:.1f} s: {result.computed} computed, "
        f"{result.cached} cached, {result.failed} failed; wrote {', '.join(map(str, paths))}")
    return result


def _compute(client, todo, what, grid, out, log, version, src):
    from dask.distributed import as_completed

    from .design_point import estimated_cost

    settings, varying = grid.settings, grid.varying
    futures = {}
    # Longest first, so that the workers finish together (Dask runs higher priorities first).
    ranked = sorted(todo, key=lambda r: -estimated_cost(r["point"]))
    for rank, row in enumerate(ranked):
        point = row["point"]
        work = str((out / "work" / point.name).absolute()) if point.name else None
        fut = client.submit(evaluate_point, point.config.to_dict(), what, settings, point.spec(),
                            work, key=f"fp8mac-sweep-{row['key']}", pure=False,
                            priority=len(ranked) - rank)
        futures[fut] = row
    width = len(str(len(todo)))
    for i, fut in enumerate(as_completed(futures, loop=client.loop), 1):
        row = futures[fut]
        try:
            res = fut.result()
        except Exception as exc:  # the task itself died (a killed worker, a lost connection)
            res = {"status": "error", "error_type": type(exc).__name__,
                   "error_message": " ".join(str(exc).split()), "figures": {}, "seconds": None}
        fut.release()
        row.update(status=res["status"], figures=res["figures"], seconds=res["seconds"], source=src)
        if "report" in res:
            row["report"] = res["report"]
        label = point_label(row["point"], varying)
        if res["status"] == "ok":
            entry = {"key": row["key"], "config": row["config"].to_dict(), "version": version,
                     "what": list(what), "settings": {w: settings[w] for w in what if w in settings},
                     "status": "ok", "figures": res["figures"], "seconds": res["seconds"],
                     "host": res.get("host"), "source": src}
            if row["point"].spec() is not None:
                entry["design"] = row["point"].spec()
            if "report" in res:
                entry["report"] = res["report"]
            _store(out, entry)
            log(f"[{i:>{width}}/{len(todo)}] ok     {label} ({res['seconds']:.1f} s)")
        else:
            row.update(error_type=res["error_type"], error_message=res["error_message"])
            log(f"[{i:>{width}}/{len(todo)}] FAILED {label}: {res['error_type']}: "
                f"{res['error_message'][:300]}")


# --- command line --------------------------------------------------------------------------------

def register(sub):
    """Add the ``sweep`` subcommand to the ``fp8mac`` command line."""
    p = sub.add_parser(
        "sweep", help="design-space sweep on Dask: accuracy, area and Fmax per configuration",
        description="Evaluate every point of a grid of configurations (a TOML or YAML file of "
                    "MacConfig fields with value lists) on Dask, cached in OUT, and write "
                    "OUT/results.csv, OUT/sweep.md and OUT/pareto.png (the Pareto fronts of "
                    "area per MAC and throughput per area against accumulation error). A grid "
                    "with a report (the shipped grid synth: report = \"area\") also writes it: "
                    "area.md and area.png.")
    p.add_argument("--grid", required=True, metavar="FILE",
                   help="the grid file (.toml, .yaml, .yml), or a shipped grid by name: "
                        + ", ".join(SHIPPED_GRIDS) + " (the designs of make synth)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output and cache directory (a rerun computes only new points)")
    p.add_argument("--recompute", action="store_true",
                   help="evaluate every point again, ignoring (and replacing) the cached ones")
    p.add_argument("--report-dir", metavar="DIR",
                   help="where the grid's report goes (default OUT), e.g. reports for make synth")
    p.add_argument("--benchmarks", metavar="FILE",
                   help="also replace the grid report's section of this BENCHMARKS.md")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler (e.g. tcp://host:8786); default: a "
                        "LocalCluster on this machine")
    p.add_argument("--workers", metavar="N",
                   help="worker processes of the LocalCluster (default: one per core)")
    p.add_argument("--what", default=",".join(DEFAULT_WHAT), metavar="LIST",
                   help=f"figures per point, a subset of {','.join(WHATS)} "
                        f"(default {','.join(DEFAULT_WHAT)})")
    p.add_argument("--connect-timeout", default=str(CONNECT_TIMEOUT), metavar="S",
                   help=f"seconds to wait for --scheduler and its first worker (default {CONNECT_TIMEOUT:g})")
    p.set_defaults(func=run)


def run(args) -> int:
    from fp8mac.model.studies.cli import parse_float, parse_int

    what = parse_what(args.what)
    workers = None if args.workers is None else parse_int("--workers", args.workers, 1, 256)
    if workers is not None and args.scheduler:
        raise ValueError("--workers sizes the LocalCluster; with --scheduler the cluster has its own workers")
    timeout = parse_float("--connect-timeout", args.connect_timeout)
    out = Path(args.out)
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out: {existing} exists and is not a directory")
    grid = load_grid(args.grid)
    for flag, value in (("--report-dir", args.report_dir), ("--benchmarks", args.benchmarks)):
        if value is not None and grid.report is None:
            raise ValueError(f"{flag}: grid {grid.path} has no report (report = "
                             f"{' or '.join(repr(r) for r in REPORTS)})")
    if args.report_dir is not None and Path(args.report_dir).exists() and not Path(args.report_dir).is_dir():
        raise ValueError(f"--report-dir: {args.report_dir} exists and is not a directory")
    if args.benchmarks is not None:
        bench = Path(args.benchmarks)
        if bench.is_dir() or not bench.absolute().parent.is_dir():
            raise ValueError(f"--benchmarks: {bench} is not a file in an existing directory")
    command = f"fp8mac sweep --grid {args.grid} --out {args.out} --what {','.join(what)}"
    command += " --recompute" if args.recompute else ""
    command += f" --scheduler {args.scheduler}" if args.scheduler else ""
    command += f" --workers {workers}" if workers else ""
    result = run_sweep(grid, out, what, args.scheduler, workers, timeout,
                       log=lambda line: print(line, flush=True), command=command,
                       recompute=args.recompute, report_dir=args.report_dir,
                       benchmarks=args.benchmarks)
    return 1 if result.failed else 0
