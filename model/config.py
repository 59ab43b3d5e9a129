"""The one configuration every layer derives from: model, hardware generator, simulation, reports.

``MacConfig`` is validated once, at construction; a bad value raises ``ValueError`` naming the
field and what it allows. ``to_dict`` / ``from_dict`` are what ``manifest.json`` holds.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from .arith import check_format_pair
from .formats import FORMATS, FloatFormat, format_by_name
from .lfsr import TAPS, check_width
from .rounding import MAX_RBITS, ROUNDINGS

__all__ = ["MacConfig", "PE_VARIANTS", "OUTER_ADDERS", "MAX_PIPELINE", "MAX_ARRAY_DIM", "MAX_DOT",
           "MAX_STREAM_FORMATS", "VERILOG_KEYWORDS"]

PE_VARIANTS = ("two-adder", "shared-adder")
OUTER_ADDERS = ("auto", "pe", "row")
MAX_PIPELINE = 8
MAX_ARRAY_DIM = 64
MAX_DOT = 64
MAX_STREAM_FORMATS = 4
"""Most formats one operand stream can select at run time (a 2-bit ``tuser``)."""
_VERILOG_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# The reserved keywords of SystemVerilog (IEEE 1800-2017, Annex B), a superset of Verilog's
# (IEEE 1364-2005): a top module may not be named after one.
VERILOG_KEYWORDS = (
    "accept_on", "alias", "always", "always_comb", "always_ff", "always_latch", "and", "assert",
    "assign", "assume", "automatic", "before", "begin", "bind", "bins", "binsof", "bit", "break",
    "buf", "bufif0", "bufif1", "byte", "case", "casex", "casez", "cell", "chandle", "checker",
    "class", "clocking", "cmos", "config", "const", "constraint", "context", "continue", "cover",
    "covergroup", "coverpoint", "cross", "deassign", "default", "defparam", "design", "disable",
    "dist", "do", "edge", "else", "end", "endcase", "endchecker", "endclass", "endclocking",
    "endconfig", "endfunction", "endgenerate", "endgroup", "endinterface", "endmodule",
    "endpackage", "endprimitive", "endprogram", "endproperty", "endspecify", "endsequence",
    "endtable", "endtask", "enum", "event", "eventually", "expect", "export", "extends", "extern",
    "final", "first_match", "for", "force", "foreach", "forever", "fork", "forkjoin", "function",
    "generate", "genvar", "global", "highz0", "highz1", "if", "iff", "ifnone", "ignore_bins",
    "illegal_bins", "implements", "implies", "import", "incdir", "include", "initial", "inout",
    "input", "inside", "instance", "int", "integer", "interconnect", "interface", "intersect",
    "join", "join_any", "join_none", "large", "let", "liblist", "library", "local", "localparam",
    "logic", "longint", "macromodule", "matches", "medium", "modport", "module", "nand", "negedge",
    "nettype", "new", "nexttime", "nmos", "nor", "noshowcancelled", "not", "notif0", "notif1",
    "null", "or", "output", "package", "packed", "parameter", "pmos", "posedge", "primitive",
    "priority", "program", "property", "protected", "pull0", "pull1", "pulldown", "pullup",
    "pulsestyle_ondetect", "pulsestyle_onevent", "pure", "rand", "randc", "randcase",
    "randsequence", "rcmos", "real", "realtime", "ref", "reg", "reject_on", "release", "repeat",
    "restrict", "return", "rnmos", "rpmos", "rtran", "rtranif0", "rtranif1", "s_always",
    "s_eventually", "s_nexttime", "s_until", "s_until_with", "scalared", "sequence", "shortint",
    "shortreal", "showcancelled", "signed", "small", "soft", "solve", "specify", "specparam",
    "static", "string", "strong", "strong0", "strong1", "struct", "super", "supply0", "supply1",
    "sync_accept_on", "sync_reject_on", "table", "tagged", "task", "this", "throughout", "time",
    "timeprecision", "timeunit", "tran", "tranif0", "tranif1", "tri", "tri0", "tri1", "triand",
    "trior", "trireg", "type", "typedef", "union", "unique", "unique0", "unsigned", "until",
    "until_with", "untyped", "use", "uwire", "var", "vectored", "virtual", "void", "wait",
    "wait_order", "wand", "weak", "weak0", "weak1", "while", "wildcard", "wire", "with", "within",
    "wor", "xnor", "xor",
)


def _format_set(name, value) -> tuple[FloatFormat, ...] | None:
    """A run-time format set: None, a comma-separated string of preset names, or a sequence of
    names / FloatFormats / dicts; 1..MAX_STREAM_FORMATS distinct formats of one code width."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_STREAM_FORMATS:
        raise ValueError(f"{name} must list 1..{MAX_STREAM_FORMATS} formats, not {value!r}")
    formats = tuple(format_by_name(v, name) for v in value)
    if len(set(formats)) != len(formats):
        raise ValueError(f"{name} lists a format twice: {', '.join(f.label for f in formats)}")
    if len({f.width for f in formats}) != 1:
        raise ValueError(f"{name}: the formats of one stream must have one code width (its lanes), not "
                         + ", ".join(f"{f.label} ({f.width} bits)" for f in formats))
    return formats


def _int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, not {value}")
    return int(value)


@dataclass(frozen=True)
class MacConfig:
    """An FP8 MAC array and its arithmetic (ARCHITECTURE.md §3-§5).

    Parameters
    ----------
    rows, cols : int
        Array shape, 1..64 each. Processing element (r, c) owns output (tile_row*rows + r,
        tile_col*cols + c).
    in_format, acc_format : str or FloatFormat
        Operand and accumulator formats (preset names or FloatFormat values). ``in_format`` is
        the shorthand for both operand streams: the format of every stream not given its own
        below.
    a_format, b_format : str, FloatFormat or None
        The A stream's and the B stream's operand formats (HFP8 training multiplies E4M3 by E5M2
        in its backward and weight-gradient GEMMs); ``None`` (default) means ``in_format``. After
        construction both are always FloatFormat values. When they agree, ``in_format`` is set to
        that format too, so ``in_format`` is the operand format of every single-format
        configuration (whether its formats were given as ``in_format`` or as the two streams').
        When they differ (:attr:`mixed_formats`), ``in_format`` is only the shorthand as given,
        not the format of either stream necessarily: code that handles operands must read
        ``a_format`` and ``b_format``. :meth:`replace` with ``in_format`` sets both streams
        unless ``a_format`` / ``b_format`` are given in the same call (``dataclasses.replace``
        does not know this rule: it keeps the old streams' formats).
    a_formats, b_formats : sequence of formats, comma-separated names, or None
        Formats the stream selects at run time, per tile (1..4 of one code width; the hardware's
        ``s_axis_<a|b>_tuser`` carries the index into this list, ARCHITECTURE.md and the README
        give the encoding). ``None`` (default): the stream has the one format ``a_format`` /
        ``b_format``. With a set, ``a_format`` / ``b_format`` is the format of the GEMM the model
        computes (default: the set's first) and must be in the set: :meth:`with_formats` picks
        another one. Every pair of the two sets must be one the accumulator can hold.
    chunk : int or None
        Products per inner accumulation chunk (>= 1, a multiple of ``dot``); ``None`` turns
        chunking off (one plain accumulator, no outer sum).
    dot : int
        Dot width d, a power of two in 1..64: products per fused MAC step, each step rounding
        ``inner + a_0*b_0 + ... + a_(d-1)*b_(d-1)`` once (ARCHITECTURE.md §3b). A chunk of C
        products is C/d steps; a dot product whose length is not a multiple of d is completed
        with +0 products. 1 (default) is one product per step.
    inner_rounding, outer_rounding : {"nearest", "stochastic", "zero"}
        Rounding of each inner MAC step and of each outer chunk sum.
    rbits : int
        Random bits per stochastic rounding, 1..min(32, lfsr_width).
    lfsr_width : int
        Width of each LFSR (a width of the tap table).
    seed : int
        Base seed, 0 .. 2**64 - 1; stream seeds derive from it (``lfsr.stream_seed``).
    pe : {"two-adder", "shared-adder"}
        Hardware choice only (results are identical for the same ``outer_placement``): a second
        adder for the outer sum, or one adder shared by inner and outer sums (one bubble per
        chunk).
    outer_adder : {"auto", "pe", "row"}
        Where the outer (chunk) sums are added: in every PE, or in one adder per array row that
        serves the row's PEs in turn, since each PE needs it only once per chunk. ``"row"`` needs
        chunking, the two-adder PE and ``chunk / dot >= max(cols, 2)`` (a row's PEs end their
        chunks one cycle apart, every PE's chunk must end before the next one starts, and the
        row's adder takes two cycles: request registered, then the add). The row's adder
        draws its stochastic bits from one LFSR per row (stream
        :data:`~fp8mac.model.lfsr.STREAM_ROW_OUTER`), which changes which random bits each outer
        sum gets (:func:`~fp8mac.model.gemm.mac_gemm` defines them), not the scheme. ``"auto"``
        (default) is ``"row"`` wherever that is allowed and ``"pe"`` elsewhere
        (:attr:`outer_placement`, which the manifest records too). Measured on osu018
        (reports/area.md): the default PE with the row adder is 1.7x smaller, adder and LFSR
        shares included.
    pipeline : int
        Hardware choice only (results are identical, latency grows): register stages, 0..8,
        between a PE's operands and its accumulation loop (``fp8mac.hw.pe`` says where they go).
    top : str
        Verilog name of the generated top module: an identifier that is not a Verilog or
        SystemVerilog keyword (:data:`VERILOG_KEYWORDS`).
    a_block, b_block : str, BlockFormat, dict or None
        Block-scaled operands (issue 19): each stream's
        :class:`~fp8mac.model.blockscale.BlockFormat` (a preset of
        :data:`~fp8mac.model.blockscale.BLOCK_FORMATS` such as ``"mxfp4"``, ``"mxfp8_e4m3"`` or
        ``"nvfp4"``). Giving one gives both the same (``b_block`` only differs for mixed MX
        elements, e.g. MXFP8 E4M3 x E5M2). ``None`` (default): plain operands. With blocks, a
        step of the model is one block (:func:`~fp8mac.model.blockscale.block_gemm`, one
        rounding per block), the operand formats are the blocks' elements (``in_format``,
        ``a_format``, ``b_format`` and run-time format sets are not read, and sets are refused),
        ``chunk`` must be a multiple of the block size and ``dot`` must divide it
        (:meth:`block_config` gives the model's description).

    Attributes
    ----------
    macs_per_cycle : int
        Products each processing element consumes per step (``dot``).
    stochastic_streams : tuple of int
        The random streams of a processing element.
    """

    rows: int = 8
    cols: int = 8
    in_format: FloatFormat | str = "fp8_e5m2"
    acc_format: FloatFormat | str = "fp16_ibm"
    a_format: FloatFormat | str | None = None
    b_format: FloatFormat | str | None = None
    a_formats: tuple | str | None = None
    b_formats: tuple | str | None = None
    chunk: int | None = 64
    dot: int = 1
    inner_rounding: str = "nearest"
    outer_rounding: str = "stochastic"
    rbits: int = 8
    lfsr_width: int = 32
    seed: int = 1
    pe: str = "two-adder"
    outer_adder: str = "auto"
    pipeline: int = 0
    top: str = "fp8mac_array"
    a_block: object = None
    b_block: object = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("rows", _int("rows", self.rows, 1, MAX_ARRAY_DIM))
        set_("cols", _int("cols", self.cols, 1, MAX_ARRAY_DIM))
        set_("in_format", format_by_name(self.in_format, "in_format"))
        set_("acc_format", format_by_name(self.acc_format, "acc_format"))
        for field in ("a_format", "b_format"):
            value, options = getattr(self, field), _format_set(f"{field}s", getattr(self, f"{field}s"))
            set_(f"{field}s", options)
            if value is None:
                value = self.in_format if options is None else options[0]
            set_(field, format_by_name(value, field))
            if options is not None and getattr(self, field) not in options:
                raise ValueError(f"{field} ({getattr(self, field).label}) must be one of {field}s: "
                                 f"{', '.join(f.label for f in options)}")
        if self.a_format == self.b_format:
            set_("in_format", self.a_format)  # both streams given alike: the shorthand is theirs
        for fa in self.a_formats or (self.a_format,):
            for fb in self.b_formats or (self.b_format,):
                if fa == fb and self.a_formats is None and self.b_formats is None:
                    check_format_pair(self.acc_format, fa)
                else:
                    check_format_pair(self.acc_format, fa, fb,
                                      names=("a_formats" if self.a_formats else "a_format",
                                             "b_formats" if self.b_formats else "b_format"))
        if self.chunk is not None:
            set_("chunk", _int("chunk", self.chunk, 1, 1 << 30))
        dot = self.dot
        if (isinstance(dot, bool) or not isinstance(dot, (int, np.integer)) or not 1 <= dot <= MAX_DOT
                or dot & (dot - 1)):
            raise ValueError(f"dot must be a power of two in 1..{MAX_DOT}, not {dot!r}")
        set_("dot", int(dot))
        if self.chunk is not None and self.chunk % self.dot:
            raise ValueError(f"chunk must be a multiple of dot ({self.dot}), not {self.chunk}")
        for field in ("inner_rounding", "outer_rounding"):
            if getattr(self, field) not in ROUNDINGS:
                raise ValueError(f"{field} must be one of {', '.join(ROUNDINGS)}, not {getattr(self, field)!r}")
        try:
            set_("lfsr_width", check_width(self.lfsr_width))
        except ValueError:
            raise ValueError(f"lfsr_width must be an integer in {min(TAPS)}..{max(TAPS)}, not {self.lfsr_width!r}") from None
        set_("rbits", _int("rbits", self.rbits, 1, min(MAX_RBITS, self.lfsr_width)))
        set_("seed", _int("seed", self.seed, 0, (1 << 64) - 1))
        if self.pe not in PE_VARIANTS:
            raise ValueError(f"pe must be one of {', '.join(PE_VARIANTS)}, not {self.pe!r}")
        if self.outer_adder not in OUTER_ADDERS:
            raise ValueError(f"outer_adder must be one of {', '.join(OUTER_ADDERS)}, not {self.outer_adder!r}")

        set_("pipeline", _int("pipeline", self.pipeline, 0, MAX_PIPELINE))
        if self.outer_adder == "row":
            if self.chunk is None:
                raise ValueError("outer_adder 'row' needs chunking: chunk is off")
            if self.pe != "two-adder":
                raise ValueError(f"outer_adder 'row' goes with pe two-adder, not {self.pe!r}")
            if self.chunk // self.dot < self.row_chunk_spacing:
                raise ValueError(f"outer_adder 'row': chunk / dot ({self.chunk} / {self.dot}) must be at least "
                                 f"max(cols, 2) = {self.row_chunk_spacing}: one chunk end per column before the "
                                 f"next chunk ends, and two cycles for the row's adder")
        if not isinstance(self.top, str) or not _VERILOG_ID.match(self.top):
            raise ValueError(f"top must be a Verilog identifier ([A-Za-z_][A-Za-z0-9_]*), not {self.top!r}")
        if self.top in VERILOG_KEYWORDS:
            raise ValueError(f"top must not be a Verilog/SystemVerilog keyword, not {self.top!r}")
        if self.a_block is not None or self.b_block is not None:
            from .blockscale import block_format  # blockscale builds on this module

            def block(value, field):
                try:
                    return block_format(value, field)
                except ValueError as exc:  # a dict's field errors name the field, not the stream
                    msg = str(exc)
                    raise ValueError(msg if msg.startswith(field) else f"{field}: {msg}") from None
            a = block(self.a_block if self.a_block is not None else self.b_block, "a_block")
            b = block(self.b_block if self.b_block is not None else self.a_block, "b_block")
            set_("a_block", a)
            set_("b_block", b)
            self.block_config()  # the model's checks (block sizes, chunk, dot, specials)

    @property
    def outer_placement(self) -> str:
        """Where the outer sums are added, ``"row"`` or ``"pe"``: ``outer_adder`` with ``"auto"``
        resolved (row wherever chunking is on, the PE is the two-adder one and
        ``chunk / dot >= max(cols, 2)``)."""
        if self.outer_adder != "auto":
            return self.outer_adder
        row_ok = (self.chunk is not None and self.pe == "two-adder"
                  and self.chunk // self.dot >= self.row_chunk_spacing)
        return "row" if row_ok else "pe"

    @property
    def row_chunk_spacing(self) -> int:
        """Fewest steps between two chunk ends of a row's outer adder, ``max(cols, 2)``: the
        row's PEs end a chunk one cycle apart, column after column, and the adder takes two
        cycles (the request registered, then the add). The configuration requires it of full
        chunks (``chunk / dot``); the hardware's top enforces it on short last chunks."""
        return max(self.cols, 2)

    @property
    def blocks(self) -> bool:
        """Whether the operands are block-scaled (``a_block`` / ``b_block`` given)."""
        return self.a_block is not None

    @property
    def block_size(self) -> int | None:
        """Elements per block (16 or 32) with block-scaled operands, else None."""
        return self.a_block.block if self.blocks else None

    @property
    def step_products(self) -> int:
        """Products one step of the accumulation loop adds with one rounding: the block size with
        block-scaled operands (a PE takes ``block / dot`` beats per step), else ``dot``."""
        return self.block_size if self.blocks else self.dot

    def block_config(self):
        """The :class:`~fp8mac.model.blockscale.BlockConfig` the model computes this design with
        (:func:`~fp8mac.model.blockscale.block_gemm`): this configuration without its block
        fields, its outer adder's placement resolved, and the two block formats. ValueError
        (naming ``a_block``, ``b_block``, ``chunk``, ``dot`` or ``acc_format``) if the blocks do
        not fit the rest; None without blocks."""
        if not self.blocks:
            return None
        from .blockscale import BlockConfig
        if self.runtime_formats:
            raise ValueError("a_block: run-time format sets (a_formats / b_formats) do not go with block formats")
        mac = dataclasses.replace(self, a_block=None, b_block=None, outer_adder=self.outer_placement)
        try:
            return BlockConfig(mac, self.a_block, self.b_block)
        except ValueError as exc:
            msg = str(exc)
            for old, new in (("a.element", "a_block's element"), ("b.element", "b_block's element"),
                             ("a.scale", "a_block's scale"), ("b.scale", "b_block's scale")):
                msg = msg.replace(old, new)
            if msg.startswith("b: "):
                msg = "b_block: " + msg[3:]
            raise ValueError(msg) from None

    @property
    def mixed_formats(self) -> bool:
        """Whether the two operand streams have different formats (``a_format != b_format``)."""
        return self.a_format != self.b_format

    @property
    def runtime_formats(self) -> bool:
        """Whether ``a_formats`` or ``b_formats`` is given (a stream whose set has two or more
        formats gets a ``tuser`` port in the hardware; a set of one is that stream's format)."""
        return self.a_formats is not None or self.b_formats is not None

    def stream_formats(self, stream: str) -> tuple[FloatFormat, ...]:
        """The formats stream ``"a"`` or ``"b"`` can carry: its set, or its one format."""
        if stream not in ("a", "b"):
            raise ValueError(f"stream must be 'a' or 'b', not {stream!r}")
        return getattr(self, f"{stream}_formats") or (getattr(self, f"{stream}_format"),)

    def with_formats(self, a_format=None, b_format=None) -> "MacConfig":
        """This design computing a GEMM whose A and B operands are in ``a_format`` / ``b_format``
        (each from its stream's set; None keeps the current one): what the model computes for
        tiles sent with those formats. ValueError if a format is not in its stream's set."""
        for name, value in (("a_format", a_format), ("b_format", b_format)):
            if value is not None and format_by_name(value, name) not in self.stream_formats(name[0]):
                allowed = ", ".join(f.label for f in self.stream_formats(name[0]))
                raise ValueError(f"{name} must be one of {allowed}, not {format_by_name(value, name).label}")
        return dataclasses.replace(self, a_format=a_format or self.a_format,
                                   b_format=b_format or self.b_format)

    @property
    def operand_label(self) -> str:
        """The operand formats for reports: ``in_format``'s label when both streams have it,
        else ``"<a_format> x <b_format>"``."""
        if self.blocks:
            a, b = self.a_block.label, self.b_block.label
            return f"{a} x {b}" if a != b else a
        a = "|".join(f.label for f in self.stream_formats("a"))
        b = "|".join(f.label for f in self.stream_formats("b"))
        return f"{a} x {b}" if a != b or self.runtime_formats else a

    @property
    def macs_per_cycle(self) -> int:
        """Products a processing element consumes per step: ``dot``."""
        return self.dot

    @property
    def stochastic_streams(self) -> tuple[int, ...]:
        """The random streams a PE has: 0 (inner) and/or 1 (outer), those whose rounding is
        stochastic (the outer one only when chunking is on and the PE has its own outer adder)."""
        streams = []
        if self.inner_rounding == "stochastic":
            streams.append(0)
        if self.chunk is not None and self.outer_rounding == "stochastic" and self.outer_placement == "pe":
            streams.append(1)
        return tuple(streams)

    @property
    def row_streams(self) -> tuple[int, ...]:
        """The random streams each array row has: 2 (the row outer adder's, ``STREAM_ROW_OUTER``)
        when the outer sums are stochastic and added per row, else none."""
        if self.chunk is not None and self.outer_rounding == "stochastic" and self.outer_placement == "row":
            return (2,)
        return ()

    def replace(self, **changes) -> "MacConfig":
        """A copy with ``changes``; ``in_format`` sets both operand streams' formats unless
        ``a_format`` / ``b_format`` are changed in the same call (as at construction)."""
        if "in_format" in changes:
            for field in ("a_format", "b_format"):
                changes.setdefault(field, None)
        return dataclasses.replace(self, **changes)

    def plain(self) -> "MacConfig":
        """The conventional MAC this design is measured against: the same formats and array,
        one accumulator (chunking off), every rounding to nearest. The error baselines of the
        regressions and the demo, and the area baselines of the synthesis comparison."""
        return self.replace(chunk=None, inner_rounding="nearest", outer_rounding="nearest",
                            outer_adder="auto")

    def to_dict(self) -> dict:
        """Every field, formats as preset names or spelled out; ``a_format`` / ``b_format`` only
        where they differ from ``in_format`` (so a single-format configuration's dict, and the
        manifests written from it, hold the same keys as before the two fields existed)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("a_format", "b_format"):
            if d[key] == self.in_format:
                del d[key]
        for key in ("a_formats", "b_formats", "a_block", "b_block"):
            if d[key] is None:
                del d[key]
        if self.blocks:
            from .blockscale import BLOCK_FORMATS
            for key in ("a_block", "b_block"):
                f = d[key]
                d[key] = f.name if BLOCK_FORMATS.get(f.name) == f else f.to_dict()

        def spelled(fmt):
            return fmt.name if fmt.name in FORMATS and FORMATS[fmt.name] == fmt else fmt.to_dict()
        for key in ("in_format", "acc_format", "a_format", "b_format"):
            if key in d:
                d[key] = spelled(d[key])
        for key in ("a_formats", "b_formats"):
            if key in d:
                d[key] = [spelled(f) for f in d[key]]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MacConfig":
        """The inverse of ``to_dict``; unknown keys are a ValueError that names them."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a mapping of field names to values, not {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown config field(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
        d = dict(d)
        if d.get("chunk") in ("off", "none"):
            d["chunk"] = None
        return cls(**d)
