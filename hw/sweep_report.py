"""The reports of a design-space sweep (:mod:`fp8mac.hw.sweep`): ``results.csv``, ``sweep.md``
and ``pareto.png``.

``results.csv`` has one row per point in grid order: ``key``, (in a grid of named designs)
``name`` and ``kind``, ``status``, every
:class:`~fp8mac.model.config.MacConfig` field (formats by name, ``chunk`` ``off`` without
chunking) and ``outer_placement``, then the figures with their units in the column names
(:data:`COLUMNS`), the point's seconds on its worker (``point_s``), whether it came from the
cache, and for a failed point the error's type and message.

The Pareto fronts (:func:`pareto_front`) are the points no other point beats on both figures:
area per MAC/cycle against the accumulation error at the longest length (both lower is better),
and GMAC/s per mm^2 (higher is better) against that error.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from fp8mac.model.studies.report import Report, fmt_sci, new_figure, save_figure

from .sweep import CONFIG_FIELDS, _canonical, point_label

__all__ = ["COLUMNS", "pareto_front", "error_column", "csv_rows", "write_reports"]

#: Figure columns and what they mean (units in the names; ``_rel``: a dimensionless ratio).
COLUMNS = {
    "err_n<n>_rel": "accumulation error at length n: mean over trials of |computed - exact| / "
                    "sum|a_k b_k| (model/studies/accumulation.py)",
    "area_um2": "one PE slot's osu018 cell area (with 1/cols of its row's outer adder where it "
                "has one), um^2",
    "area_per_mac_um2": "area_um2 / dot: area per MAC per cycle, um^2",
    "nand2_eq": "area in NAND2X1 equivalents",
    "critical_path_ns": "OpenSTA critical path of the PE, ns",
    "fmax_mhz": "1 / critical path, MHz",
    "gmacs_per_mm2": "dot x fmax / area: GMAC/s per mm^2",
    "sim_bit_exact": "1: every result code of the simulated GEMM equals mac_gemm's",
    "sim_mismatches": "result codes that differ from mac_gemm's",
    "sim_cycles": "clock cycles of the simulated GEMM",
    "sim_shape": "M x K x N of the simulated GEMM",
    "sim_seed": "seed of its operands (numpy default_rng)",
    "point_s": "seconds the point took on its worker",
}
_AREA = ("area_um2", "area_per_mac_um2", "nand2_eq", "critical_path_ns", "fmax_mhz", "gmacs_per_mm2")
_SIM = ("sim_bit_exact", "sim_mismatches", "sim_cycles", "sim_shape", "sim_seed")


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, dict):  # a spelled-out format
        return v.get("name") or "custom(" + " ".join(f"{k}={x}" for k, x in v.items()) + ")"
    if isinstance(v, list):
        return "|".join(_cell(x) for x in v)
    return str(v)


def _config_cell(config, name: str) -> str:
    """A configuration field as text (``chunk`` ``off`` without chunking)."""
    v = _canonical(config)[name]
    return "off" if name == "chunk" and v is None else _cell(v)


def _figure_columns(result) -> list[str]:
    cols = []
    if "accuracy" in result.what:
        cols += [f"err_n{n}_rel" for n in sorted(result.grid.settings["accuracy"]["lengths"])]
    if "area" in result.what:
        cols += list(_AREA)
    if "sim" in result.what:
        cols += list(_SIM)
    return cols


def error_column(result) -> str | None:
    """The error the fronts use: at the longest length (None without accuracy figures)."""
    if "accuracy" not in result.what:
        return None
    return f"err_n{max(result.grid.settings['accuracy']['lengths'])}_rel"


def _names(result) -> bool:
    return any(p.name for p in result.grid.points)


def _id_columns(result) -> list[str]:
    """What tells the points apart in sweep.md: their names, or the fields the grid varies."""
    return ["point"] if result.grid.named else list(result.grid.varying)


def _id_cells(result, row) -> list[str]:
    if result.grid.named:
        return [row["point"].name]
    return [_config_cell(row["config"], f) for f in result.grid.varying]


def csv_rows(result) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``results.csv``."""
    figs = _figure_columns(result)
    named = _names(result)
    header = (["key"] + (["name", "kind"] if named else []) + ["status"] + list(CONFIG_FIELDS)
              + ["outer_placement"] + figs + ["point_s", "cached", "error_type", "error_message"])
    rows = []
    for r in result.rows:
        p = r["point"]
        rows.append([r["key"]] + ([p.name or "", p.kind] if named else []) + [r["status"]]
                    + [_config_cell(r["config"], f) for f in CONFIG_FIELDS]
                    + [r["config"].outer_placement]
                    + [_cell(r["figures"].get(c)) for c in figs]
                    + [_cell(r.get("seconds")), int(r["cached"]), r.get("error_type", ""),
                       r.get("error_message", "")])
    return header, rows


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def pareto_front(points, x_key, y_key, x_lower=True, y_lower=True) -> list:
    """The points no other point dominates on ``(x_key, y_key)`` (each figure better-or-equal
    and one strictly better; ``*_lower``: lower is better), sorted by x. Points lacking either
    figure are left out.

    ``points`` are mappings holding both figures (e.g. a row's ``figures``); the same objects
    are returned.
    """
    have = [p for p in points if _finite(p.get(x_key)) and _finite(p.get(y_key))]
    sx, sy = (1 if x_lower else -1), (1 if y_lower else -1)

    def dominates(q, p):
        qx, qy, px, py = sx * q[x_key], sy * q[y_key], sx * p[x_key], sy * p[y_key]
        return qx <= px and qy <= py and (qx < px or qy < py)

    front = [p for p in have if not any(dominates(q, p) for q in have if q is not p)]
    return sorted(front, key=lambda p: (sx * p[x_key], sy * p[y_key]))


def _fmt(v, digits=1) -> str:
    if not _finite(v):
        return "n/a" if v is None else str(v)
    return f"{v:,.{digits}f}"


def _plot(result, out: Path, err: str):
    ok = [dict(r["figures"], _label=point_label(r["point"], result.grid.varying))
          for r in result.rows if r["status"] == "ok"]
    fig, axes = new_figure(2, 1, size=(5.6, 4.4))
    for ax, (x, lower, xlabel) in zip(axes[0], (
            ("area_per_mac_um2", True, "area per MAC/cycle (um^2, osu018 PE slot)"),
            ("gmacs_per_mm2", False, "throughput per area (GMAC/s per mm^2 at OpenSTA Fmax)"))):
        pts = [p for p in ok if _finite(p.get(x)) and _finite(p.get(err)) and p[err] > 0]
        ax.scatter([p[x] for p in pts], [p[err] for p in pts], s=18, color="0.6", label="points")
        front = pareto_front(pts, x, err, x_lower=lower)
        ax.plot([p[x] for p in front], [p[err] for p in front], "o-", color="C3", ms=5,
                drawstyle="steps-post", label="Pareto front")
        for p in front:
            ax.annotate(p["_label"], (p[x], p[err]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"accumulation error at n = {err[5:-4]}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_title("area against accuracy (lower left is better)", fontsize=9)
    axes[0][1].set_title("throughput per area against accuracy (lower right is better)", fontsize=9)
    return save_figure(fig, out / "pareto.png")


def write_reports(result, out) -> list[Path]:
    """Write ``results.csv``, ``sweep.md`` and (with accuracy and area figures) ``pareto.png``
    into ``out``; returns their paths. A stale ``pareto.png`` is removed when there is none."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = csv_rows(result)
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    paths = [out / "results.csv"]
    err = error_column(result)
    varying = list(result.grid.varying)
    ids = _id_columns(result)
    g = result.grid
    acc = g.settings["accuracy"]
    own = sum(r["seconds"] or 0 for r in result.rows if r["status"] == "ok" and not r["cached"])
    rep = Report("Design-space sweep")
    rep.text(f"Command: `{result.command}` (fp8mac {result.version}). Grid `{g.path.name}`: "
             + (f"{len(result.rows)} named designs" + (f" (its report: {g.report})" if g.report else "")
                + "; each is MacConfig's defaults plus its own fields. Run: " if g.named else
                f"{len(result.rows)} points over {' x '.join(varying) or 'one configuration'}; every "
                f"other field as the grid fixes it or MacConfig's default. Run: ")
             + f"{result.computed} computed, {result.cached} from the cache, {result.failed} failed, "
             f"{result.seconds:.0f} s wall time ({result.cluster})"
             + (f"; points' own times add up to {own:.0f} s." if result.computed else "."))
    notes = []
    if "accuracy" in result.what:
        notes.append(f"- Accuracy (`err_n<n>_rel`): the accumulation study's error "
                     f"(`model/studies/accumulation.py`), mean over {acc['trials']} trials of "
                     f"`|computed - exact| / sum|a_k b_k|`, {acc['distribution']} operands "
                     f"(seed {acc['seed']}), lengths {', '.join(map(str, sorted(acc['lengths'])))}; "
                     f"every dot product is `mac_gemm`'s with the point's configuration (bit for "
                     f"bit the array's).")
    if "area" in result.what:
        notes.append("- Area: one processing element (with 1/cols of its row's outer adder where "
                     "the outer sums are added per row) through `fp8mac.hw.synth.synthesize_block` "
                     "on the asic target (Yosys onto the OSU 0.18 um cells); Fmax from OpenSTA. "
                     "Area per MAC = area / dot; GMAC/s per mm^2 = dot x Fmax / area.")
        if _names(result):
            notes.append("- Named designs: each synthesized as its kind says on its own targets "
                         "(`fp8mac.hw.design_point`): a PE as above, an array or engine whole (per "
                         "MAC figures over all its PEs: rows x cols x dot), a block alone (no per "
                         "MAC figures); every target's report is cached in `points/<key>.json` "
                         "and the tools' work is kept in `work/<name>/`.")
    if "sim" in result.what:
        s = g.settings["sim"]
        notes.append(f"- Simulation: a random GEMM on the generated array on {s['simulator']} "
                     f"(operands seeded, `sim_seed`), every result code compared with `mac_gemm`.")
    rep.text("\n".join(notes))
    figs = [c for c in _figure_columns(result)]
    ok = [r for r in result.rows if r["status"] == "ok"]
    if err and "area" in result.what:
        rep.image("pareto.png", "Pareto fronts")
        pts = [dict(r["figures"], _row=r) for r in ok]
        for title, x, lower in (("area per MAC against accumulation error", "area_per_mac_um2", True),
                                ("throughput per area against accumulation error", "gmacs_per_mm2", False)):
            front = pareto_front(pts, x, err, x_lower=lower)
            rep.heading(f"Pareto front: {title}")
            rep.text(f"The points no other point beats on both `{x}` ({'lower' if lower else 'higher'} "
                     f"is better) and `{err}` (lower is better): {len(front)} of {len(pts)}.")
            rep.table(ids + [x, err, "fmax_mhz"],
                      [_id_cells(result, p["_row"])
                       + [_fmt(p[x], 2 if x == "gmacs_per_mm2" else 0), fmt_sci(p[err]),
                          _fmt(p.get("fmax_mhz"))] for p in front])
        paths.append(_plot(result, out, err))
    else:
        (out / "pareto.png").unlink(missing_ok=True)
        rep.text("No Pareto front: it needs both accuracy and area figures (`--what accuracy,area`).")
    rep.heading("All points")
    shown = [c for c in figs if c not in ("sim_shape", "sim_seed", "nand2_eq")]
    table = []
    for r in result.rows:
        cells = _id_cells(result, r)
        for c in shown:
            v = r["figures"].get(c)
            cells.append(fmt_sci(v) if c.startswith("err_") and _finite(v) else
                         _fmt(v, 2 if c in ("gmacs_per_mm2", "critical_path_ns") else 0 if c.endswith("um2") else 1)
                         if isinstance(v, float) else _cell(v))
        cells.append(r["status"] + (" (cached)" if r["cached"] else ""))
        table.append(cells)
    rep.table(ids + shown + ["status"], table, align="l" * len(ids) + "r" * len(shown) + "l")
    failed = [r for r in result.rows if r["status"] != "ok"]
    if failed:
        rep.heading("Failed points")
        rep.text("Recorded, not cached: the next run tries them again.")
        rep.table(["point", "error"],
                  [[point_label(r["point"], varying), f"{r['error_type']}: {r['error_message'][:240]}"]
                   for r in failed], align="ll")
    rep.heading("Columns of results.csv")
    present = set(header) | ({"err_n<n>_rel"} if err else set())
    rep.text("\n".join(f"- `{k}`: {v}" for k, v in COLUMNS.items() if k in present))
    paths.insert(1, rep.write(out / "sweep.md"))
    return paths
