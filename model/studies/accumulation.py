"""Study 1: dot-product error against length for plain, chunked and stochastic FP16 accumulation.

Reproduces the experiment behind Wang et al., "Training Deep Neural Networks with 8-bit Floating
Point Numbers" (NeurIPS 2018), Fig. 3: the sum of ``n`` FP8 products accumulated in FP16 with
round-to-nearest stops growing once the accumulator's ulp exceeds twice the products
("swamping"); chunk-based accumulation and stochastic rounding keep tracking FP32. The array's
default (chunk 64, stochastic outer rounding) also runs with multi-term fused steps, dot widths
4 and 16 (ARCHITECTURE.md §3b: one rounding per ``d`` products, so ``64 / d`` inner roundings
per chunk instead of 64), with the same seeds.

Every FP16 result here is the golden model's: a length-``n`` dot product is one output of
:func:`~fp8mac.model.gemm.mac_gemm` with ``M x K x N = trials x n x 1`` on an ``8 x 1`` array, so
each value is bit for bit what the hardware computes. All lengths share one ``mac_gemm`` call
(its cost is mostly per K step): a row of length ``n < K`` holds its products in a chunk-aligned
window and zero products elsewhere, which leave every accumulator unchanged (adding an exact zero
is exact under every rounding; tests/test_studies.py checks each row against its own unpadded
``mac_gemm``). Short rows get disjoint windows of the shared ``b`` column, so their trials are
independent; the longest rows share it. The FP32 baseline is the
sequential float32 sum of the same exact FP8 products (``numpy.cumsum``, strictly left to
right), which equals ``mac_gemm`` with an ``fp32`` accumulator (tests/test_studies.py checks
this).

Error metric: ``|computed - exact| / sum(|a_k b_k|)`` (the relative error for the default
same-sign products; for mixed-sign products the usual normalisation of summation error), with
the exact sum from :func:`math.fsum`. Reported per length as the mean over trials.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..config import MAX_DOT, MacConfig
from ..formats import FORMATS, format_by_name
from ..gemm import mac_gemm
from .report import Report, fmt_sci, new_figure, save_figure, check_out_dir

__all__ = ["DISTRIBUTIONS", "AccumulationResult", "Method", "accumulation_methods",
           "draw_operands", "dot_products", "fp32_dot_products", "run_accumulation",
           "check_lengths", "check_seed", "check_jobs", "check_int", "check_dots", "MAX_LENGTH",
           "QUICK", "DEFAULT"]

DISTRIBUTIONS = ("halfnormal", "uniform", "normal")
"""Operand distributions: ``|N(0,1)|`` and ``U(0,1)`` (same-sign products: swamping shows) and
``N(0,1)`` (zero-mean products, as in a trained layer)."""

MAX_LENGTH = 1 << 20
MAX_SEED = (1 << 64) - 1

DEFAULT = dict(lengths=tuple(1 << e for e in range(4, 17)), trials=32, chunks=(16, 64, 256),
               dots=(4, 16))
"""Default size: lengths 2^4 .. 2^16, 32 trials per length (``fp8mac study accumulation``, the
committed report: 60 to 90 s with its default 2 worker processes on 2 shared cores)."""
QUICK = dict(lengths=tuple(1 << e for e in range(4, 15)), trials=8, chunks=(64,),
             stochastic=False)
"""``--quick`` size (tests): lengths 2^4 .. 2^14, 8 trials, chunk 64 only, no stochastic runs."""


def check_lengths(lengths) -> tuple[int, ...]:
    """Validate dot-product lengths: integers in 1..2**20, sorted and unique on return."""
    try:
        items = list(lengths)
    except TypeError:
        raise ValueError(f"lengths must be a list of integers in 1..{MAX_LENGTH}, not {lengths!r}") from None
    if not items:
        raise ValueError(f"lengths must hold at least one integer in 1..{MAX_LENGTH}")
    out = []
    for n in items:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_LENGTH:
            raise ValueError(f"lengths must be integers in 1..{MAX_LENGTH}, not {n!r}")
        out.append(int(n))
    return tuple(sorted(set(out)))


def check_seed(seed, name="seed") -> int:
    """A seed: an integer in 0..2**64-1."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in 0..2**64-1, not {seed!r}")
    return int(seed)


def check_jobs(jobs) -> int:
    """Worker processes: an integer in 1..64."""
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or not 1 <= jobs <= 64:
        raise ValueError(f"jobs must be an integer in 1..64 (worker processes), not {jobs!r}")
    return int(jobs)


def check_int(name, value, lo, hi) -> int:
    """``value`` as an int in ``lo..hi``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class Method:
    """One accumulation scheme: a label and its array configuration (``None``: FP32 baseline)."""

    label: str
    config: MacConfig | None


def check_dots(dots, sr_chunk=64) -> tuple[int, ...]:
    """Dot widths of the extra array-default runs: powers of two in 2..``MAX_DOT`` dividing
    ``sr_chunk`` (dot 1 is the array-default run itself), unique and sorted on return."""
    if isinstance(dots, (int, np.integer)):
        dots = (dots,)
    try:
        items = list(dots)
    except TypeError:
        raise ValueError(f"dots must be a list of powers of two in 2..{MAX_DOT}, "
                         f"not {dots!r}") from None
    out = []
    for d in items:
        d = check_int("dots", d, 2, MAX_DOT)
        if d & (d - 1) or sr_chunk % d:
            raise ValueError(f"dots must be powers of two in 2..{MAX_DOT} dividing sr_chunk "
                             f"({sr_chunk}), not {d}")
        out.append(d)
    return tuple(sorted(set(out)))


def accumulation_methods(chunks=(16, 64, 256), in_format="fp8_e5m2", acc_format="fp16_ibm",
                         rbits=8, stochastic=True, sr_chunk=64, seed=1, dots=()) -> list[Method]:
    """The schemes compared: FP32; plain and chunked round-to-nearest; stochastic (plain, and
    chunk ``sr_chunk`` with nearest inner and stochastic outer rounding: the array's default);
    then, with ``stochastic``, the array's default again with each dot width in ``dots`` (one
    rounding per ``d`` products, ARCHITECTURE.md §3b), labelled ``... RNE+SR dot d``.

    Raises
    ------
    ValueError
        For a bad chunk size, dot width, format or rbits (from
        :class:`~fp8mac.model.config.MacConfig`).
    """
    if isinstance(chunks, (int, np.integer)):
        chunks = (chunks,)
    chunks = tuple(chunks)
    for c in chunks:
        check_int("chunks", c, 1, MAX_LENGTH)
    dots = check_dots(dots, sr_chunk)
    base = MacConfig(rows=8, cols=1, in_format=in_format, acc_format=acc_format, rbits=rbits,
                     seed=seed)
    acc = base.acc_format.name or "acc"
    methods = [Method("FP32", None),
               Method(f"{acc} plain RNE", base.plain())]
    for c in chunks:
        methods.append(Method(f"{acc} chunk {c} RNE",
                              base.replace(chunk=int(c), inner_rounding="nearest", outer_rounding="nearest")))
    if stochastic:
        methods.append(Method(f"{acc} plain SR", base.replace(chunk=None, inner_rounding="stochastic")))
        methods.append(Method(f"{acc} chunk {sr_chunk} RNE+SR",
                              base.replace(chunk=int(sr_chunk), inner_rounding="nearest",
                                           outer_rounding="stochastic")))
        for d in dots:
            methods.append(Method(f"{acc} chunk {sr_chunk} RNE+SR dot {d}",
                                  base.replace(chunk=int(sr_chunk), inner_rounding="nearest",
                                               outer_rounding="stochastic", dot=d)))
    return methods


def _draw(rng, distribution, shape):
    if distribution == "halfnormal":
        return np.abs(rng.standard_normal(shape))
    if distribution == "uniform":
        return rng.random(shape)
    return rng.standard_normal(shape)


@dataclass
class _Group:
    """Lengths sharing one mac_gemm call (K = the longest): ``trials`` rows per length.

    Trial ``t`` of length ``n`` reads the window ``b[offsets[t] : offsets[t] + n]`` of the shared
    column; the rest of its row is zero. Windows start at multiples of ``align`` (a multiple of
    every chunk size), so chunk boundaries fall where an unpadded length-``n`` dot product has
    them and the zero products before and after change nothing. Short lengths get disjoint
    windows, so their trials are independent; the longest share ``b``.
    """

    lengths: tuple
    a_parts: list  # per length: trials x n codes
    offsets: list  # per length: trials window starts
    b: np.ndarray  # K codes

    @property
    def k(self):
        return self.lengths[-1]

    def matrices(self):
        rows = sum(p.shape[0] for p in self.a_parts)
        a = np.zeros((rows, self.k), dtype=self.b.dtype)
        r = 0
        for p, offs in zip(self.a_parts, self.offsets):
            n = p.shape[1]
            for t, o in enumerate(offs):
                a[r + t, o:o + n] = p[t]
            r += p.shape[0]
        return a, self.b[:, None]

    def b_windows(self):
        """Per length, the ``trials x n`` b values each trial multiplies."""
        return [np.stack([self.b[o:o + p.shape[1]] for o in offs])
                for p, offs in zip(self.a_parts, self.offsets)]


def _offsets(n, k, trials, align):
    """Window starts for ``trials`` trials of length ``n`` in a column of ``k``: multiples of
    ``align``, consecutive trials as far apart as the column allows."""
    slots = (k - n) // align + 1
    stride = max(1, -(-n // align))
    return [align * ((t * stride) % slots) for t in range(trials)]


def draw_operands(lengths, trials, distribution="halfnormal", in_format="fp8_e5m2", seed=0,
                  align=256):
    """Random operand codes, grouped for :func:`dot_products`.

    Each trial of length ``n`` is a row ``a`` of ``n`` codes and a window of the column ``b`` its
    group shares (the trials are ``M x K x N = trials x n x 1`` GEMMs; see ``_Group``). Values
    are drawn from ``distribution`` with ``numpy.random.default_rng(seed)`` and rounded to
    nearest in ``in_format``. ``align`` must be a multiple of every chunk size used.
    """
    lengths = check_lengths(lengths)
    trials = check_int("trials", trials, 1, 1 << 16)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, not {distribution!r}")
    fin = format_by_name(in_format, "in_format")
    rng = np.random.default_rng(check_seed(seed))
    groups = []
    for lens in (lengths,):  # one group: one mac_gemm call per method
        b = fin.encode(_draw(rng, distribution, lens[-1]))
        parts = [fin.encode(_draw(rng, distribution, (trials, n))) for n in lens]
        offsets = [_offsets(n, lens[-1], trials, align) for n in lens]
        groups.append(_Group(lens, parts, offsets, b))
    return groups


def _group_results(config, group):
    """Worker: the acc_format codes of every row of one group."""
    a, b = group.matrices()
    return mac_gemm(a, b, config)[:, 0]


def dot_products(groups, config: MacConfig) -> dict[int, np.ndarray]:
    """Per length, the ``trials`` dot products computed by the array (decoded to float64)."""
    out = {}
    for g in groups:
        vals = config.acc_format.decode(_group_results(config, g))
        r = 0
        for n, p in zip(g.lengths, g.a_parts):
            out[n] = vals[r:r + p.shape[0]]
            r += p.shape[0]
    return out


def _products(fin, group):
    """Exact products (float64) per length of one group, as ``trials x n`` arrays."""
    return [fin.decode(p) * fin.decode(bw) for p, bw in zip(group.a_parts, group.b_windows())]


def fp32_dot_products(groups, in_format) -> dict[int, np.ndarray]:
    """The FP32 baseline: the same exact products summed left to right in float32."""
    fin = format_by_name(in_format, "in_format")
    out = {}
    for g in groups:
        for n, prods in zip(g.lengths, _products(fin, g)):
            out[n] = np.cumsum(prods.astype(np.float32), axis=1, dtype=np.float32)[:, -1].astype(np.float64)
    return out


def _exact(groups, in_format):
    """Exact sums (``math.fsum``), sums of magnitudes and exact sums rounded once to nothing."""
    fin = format_by_name(in_format, "in_format")
    exact, scale = {}, {}
    for g in groups:
        for n, prods in zip(g.lengths, _products(fin, g)):
            exact[n] = np.array([math.fsum(row) for row in prods])
            scale[n] = np.abs(prods).sum(axis=1)
    return exact, scale


@dataclass
class AccumulationResult:
    """What :func:`run_accumulation` measured.

    Attributes
    ----------
    lengths : tuple of int
    methods : list of Method
    error : dict
        ``error[label][n]``: mean over trials of ``|computed - exact| / sum|a_k b_k|``.
    mean_sum : dict
        ``mean_sum[label][n]``: mean computed dot product (``"exact"`` too).
    floor : dict
        ``floor[n]``: the same error metric for the exact sum rounded once to the accumulator
        format, the best any result in that format can do.
    swamping_length : int or None
        Where plain round-to-nearest accumulation stops keeping up: the first length whose
        mean sum grew, from the previous length, by less than half as much as the exact sum
        did (from there on most of every further product is lost); None if that never happens
        within the lengths measured.
    params : dict
        Everything needed to reproduce the run.
    seconds : float
    """

    lengths: tuple
    methods: list
    error: dict
    mean_sum: dict
    floor: dict
    swamping_length: int | None
    params: dict
    seconds: float = 0.0
    per_method_seconds: dict = field(default_factory=dict)


def _swamping_length(lengths, plain, exact):
    for prev, n in zip(lengths, lengths[1:]):
        grown = exact[n] - exact[prev]
        if grown > 0 and plain[n] - plain[prev] < 0.5 * grown:
            return n
    return None


def run_accumulation(lengths=DEFAULT["lengths"], trials=DEFAULT["trials"], chunks=DEFAULT["chunks"],
                     distribution="halfnormal", in_format="fp8_e5m2", acc_format="fp16_ibm",
                     rbits=8, stochastic=True, sr_chunk=64, dots=DEFAULT["dots"], seed=0, jobs=1,
                     log=print) -> AccumulationResult:
    """Run the accumulation study (see the module docstring).

    Parameters
    ----------
    lengths : sequence of int
        Dot-product lengths, 1..2**20.
    trials : int
        Dot products per length.
    chunks : sequence of int
        Chunk sizes of the chunked round-to-nearest runs.
    distribution : {"halfnormal", "uniform", "normal"}
        Operand distribution.
    in_format, acc_format : str
        Preset format names (``fp8mac.model.FORMATS``).
    rbits : int
        Random bits per stochastic rounding.
    stochastic : bool
        Include the stochastic-rounding runs.
    sr_chunk : int
        Chunk size of the chunked stochastic run.
    dots : sequence of int
        Dot widths (powers of two dividing ``sr_chunk``, at least 2) of further chunked
        stochastic runs (with ``stochastic`` only); ``()`` for none.
    seed : int
        Seeds the operands (``numpy.random.default_rng``) and the array's LFSRs.
    jobs : int
        Worker processes (the methods run in parallel; results do not depend on it).
    log : callable
        Progress lines go here (``print`` by default).

    Raises
    ------
    ValueError
        For any bad parameter; the message names it and the allowed values.
    """
    t0 = time.perf_counter()
    lengths = check_lengths(lengths)
    seed = check_seed(seed)
    jobs = check_jobs(jobs)
    trials = check_int("trials", trials, 1, 1 << 16)
    for name, f in (("in_format", in_format), ("acc_format", acc_format)):
        if not isinstance(f, str) or f not in FORMATS:
            raise ValueError(f"{name} must be one of {', '.join(FORMATS)}, not {f!r}")
    check_int("sr_chunk", sr_chunk, 1, MAX_LENGTH)
    dots = check_dots(dots, sr_chunk)
    methods = accumulation_methods(chunks, in_format, acc_format, rbits, stochastic, sr_chunk,
                                   seed=seed, dots=dots)
    facc = FORMATS[acc_format]
    log(f"accumulation study: seed {seed}, {trials} trials per length, lengths "
        f"{lengths[0]}..{lengths[-1]}, {distribution} {in_format} operands, {acc_format} accumulators")
    align = math.lcm(*[int(c) for c in chunks], int(sr_chunk))
    groups = draw_operands(lengths, trials, distribution, in_format, seed, align)
    exact, scale = _exact(groups, in_format)

    computed = {}
    timings = {}
    hw = [m for m in methods if m.config is not None]
    t1 = time.perf_counter()
    computed["FP32"] = fp32_dot_products(groups, in_format)
    timings["FP32"] = time.perf_counter() - t1
    if jobs == 1 or len(hw) == 1:
        for m in hw:
            t1 = time.perf_counter()
            computed[m.label] = dot_products(groups, m.config)
            timings[m.label] = time.perf_counter() - t1
            log(f"  {m.label:<32} {timings[m.label]:6.1f} s")
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(hw)), mp_context=ctx) as pool:
            futures = {m.label: pool.submit(dot_products, groups, m.config) for m in hw}
            for m in hw:
                computed[m.label] = futures[m.label].result()
                log(f"  {m.label:<32} done")

    error, mean_sum = {}, {"exact": {n: float(exact[n].mean()) for n in lengths}}
    for m in methods:
        error[m.label] = {n: float(np.mean(np.abs(computed[m.label][n] - exact[n]) / scale[n]))
                          for n in lengths}
        mean_sum[m.label] = {n: float(computed[m.label][n].mean()) for n in lengths}
    floor = {n: float(np.mean(np.abs(facc.decode(facc.encode(exact[n])) - exact[n]) / scale[n]))
             for n in lengths}
    plain = methods[1].label
    swamp = (_swamping_length(lengths, mean_sum[plain], mean_sum["exact"])
             if distribution != "normal" else None)
    params = dict(lengths=list(lengths), trials=trials, chunks=[int(c) for c in chunks],
                  distribution=distribution, in_format=in_format, acc_format=acc_format,
                  rbits=rbits, stochastic=stochastic, sr_chunk=sr_chunk, seed=seed,
                  dots=list(dots) if stochastic else [])
    return AccumulationResult(lengths, methods, error, mean_sum, floor, swamp, params,
                              time.perf_counter() - t0, timings)


def _at(d, n):
    return d.get(n, float("nan"))


def _dot_labels(result):
    """The array default's label and ``[(label, d)]`` of its dot-width variants (from the
    configs, so renamed labels still pair up)."""
    default = next((m.label for m in result.methods
                    if m.config is not None and m.config.chunk == result.params["sr_chunk"]
                    and m.config.dot == 1 and m.config.inner_rounding == "nearest"
                    and m.config.outer_rounding == "stochastic"), None)
    dotted = [(m.label, m.config.dot) for m in result.methods
              if m.config is not None and m.config.dot > 1]
    return default, dotted


def _outer_note(result):
    """Where the chunked stochastic runs add their outer sums (it picks their LFSR streams)."""
    cfgs = [m.config for m in result.methods if m.config is not None and m.config.chunk is not None
            and m.config.outer_rounding == "stochastic"]
    if not cfgs:
        return ""
    places = sorted({c.outer_placement for c in cfgs})
    oa = cfgs[0].outer_adder
    default = " (the array's default)" if oa == MacConfig.outer_adder else ""
    return (f" Chunked stochastic runs: `outer_adder` {oa!r}{default}, here the "
            f"{' / '.join(places)} outer adder and its LFSR streams.")


def _dot_finding(result, band=(0.8, 1.25)):
    """One Findings line: the dot-width variants against the array default (dot 1), where the
    inner roundings matter (one chunk) and from which length on the ratios stay in ``band``."""
    default, dotted = _dot_labels(result)
    if default is None or not dotted:
        return None
    lens, c = result.lengths, result.params["sr_chunk"]
    e1 = result.error[default]
    ratio = {d: {n: result.error[lab][n] / e1[n] if e1[n] else math.nan for n in lens}
             for lab, d in dotted}
    ds = " and ".join(f"dot {d}" for _, d in dotted)
    parts = []
    short = [n for n in lens if n <= c]
    if short:
        n = short[-1]
        parts.append(f"at n = {n} ({'one chunk' if n == c else 'less than a chunk'}) the error is "
                     + " and ".join(f"{fmt_sci(result.error[lab][n])} with dot {d}"
                                    for lab, d in dotted)
                     + f" against dot 1's {fmt_sci(e1[n])} ("
                     + " and ".join(f"{ratio[d][n]:.2f}x" for _, d in dotted)
                     + f"; floor {fmt_sci(result.floor[n])})")
    at_floor = [f"dot {d} at n = {n}" for lab, d in dotted for n in lens
                if n <= d and result.error[lab][n] == result.floor[n]]
    if at_floor:
        parts.append(f"{', '.join(at_floor)} is exactly the floor (one step: the exact sum "
                     "rounded once)")
    inside = [n for n in lens
              if all(band[0] <= ratio[d][m] <= band[1] for _, d in dotted for m in lens if m >= n)]
    if inside:
        n0 = inside[0]
        rs = [ratio[d][m] for _, d in dotted for m in lens if m >= n0]
        parts.append(f"from n = {n0} on {ds} stay within {min(rs):.2f}x..{max(rs):.2f}x of dot 1 "
                     f"(at n = {lens[-1]}: "
                     + ", ".join(f"{fmt_sci(result.error[lab][lens[-1]])}" for lab, _ in dotted)
                     + f" against {fmt_sci(e1[lens[-1]])}): there the error comes from the outer "
                     f"sum, which has the same {c}-product chunks and stochastic roundings "
                     "whatever d")
    return (f"- Multi-term steps ({ds}: chunk {c}, SR outer, one inner rounding per d products, "
            f"so {' and '.join(str(c // d) for _, d in dotted)} instead of {c} per chunk): "
            + "; ".join(parts) + ".")


def write_accumulation(result: AccumulationResult, out, command="fp8mac study accumulation"):
    """Write ``accumulation.md`` and ``accumulation.png`` into ``out``; returns both paths."""
    out = check_out_dir(out)
    p = result.params
    lens = result.lengths
    labels = [m.label for m in result.methods]
    fig, axes = new_figure(2, 1, size=(6.0, 4.6))
    ax, ax2 = axes[0]
    styles = {lab: dict(color=f"C{i}") for i, lab in enumerate(labels[1:])}
    styles["FP32"] = dict(color="black", lw=2)
    default, dotted = _dot_labels(result)
    for (lab, d), (ls, mk) in zip(dotted, [("--", "s"), ("-.", "^"), (":", "v"), ("--", "D")] * 4):
        # the array default's dot-width variants: its colour, their own line and marker
        styles[lab] = dict(color=styles[default]["color"], ls=ls, marker=mk)
    for lab in labels:
        ys = [result.error[lab][n] for n in lens]
        ys = [y if y > 0 else np.nan for y in ys]
        ax.loglog(lens, ys, ms=3, label=lab, **{"marker": "o", **styles[lab]})
    ax.loglog(lens, [result.floor[n] or np.nan for n in lens], ls=":", color="gray",
              label=f"exact sum rounded once to {p['acc_format']}")
    if result.swamping_length:
        for a in (ax, ax2):
            a.axvline(result.swamping_length, ls="--", color="red", lw=1)
        ax.text(result.swamping_length, ax.get_ylim()[1], f" swamping\n n={result.swamping_length}",
                color="red", va="top", fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("dot-product length n")
    ax.set_ylabel("mean |computed - exact| / sum|a b|")
    ax.set_title(f"Accumulation error ({p['distribution']} {p['in_format']} operands)")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax2.loglog(lens, [result.mean_sum["exact"][n] for n in lens], color="gray", ls=":", lw=3,
               label="exact")
    for lab in labels:
        ax2.loglog(lens, [result.mean_sum[lab][n] for n in lens], ms=3, label=lab,
                   **{"marker": "o", **styles[lab]})
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("dot-product length n")
    ax2.set_ylabel("mean computed dot product")
    ax2.set_title("The plain FP16 sum stops growing (swamping)")
    ax2.legend(fontsize=7)
    ax2.grid(True, which="both", alpha=0.3)
    png = save_figure(fig, out / "accumulation.png")

    rep = Report("Accumulation: dot-product error against length")
    rep.text(f"Command: `{command}`. Seed {p['seed']} (operands and LFSRs), {p['trials']} trials "
             f"per length, {p['distribution']} operands rounded to `{p['in_format']}`, "
             f"`{p['acc_format']}` accumulators on an 8 x 1 array, {p['rbits']} random bits per "
             f"stochastic rounding. Every FP16 value is `mac_gemm`'s (bit-exact); FP32 is the "
             f"sequential float32 sum of the same exact products. Error: mean over trials of "
             f"`|computed - exact| / sum|a_k b_k|`." + _outer_note(result))
    rep.image("accumulation.png", "error and sum against length")
    rep.heading("Mean error by length")
    rep.table(["n"] + labels + ["floor"],
              [[n] + [fmt_sci(result.error[lab][n]) for lab in labels] + [fmt_sci(result.floor[n])]
               for n in lens])
    rep.text("`floor`: the exact sum rounded once to the accumulator format (no accumulation "
             "error at all): the best any FP16 result can be.")
    sw = result.swamping_length
    plain = labels[1]
    longest = lens[-1]
    lines = []
    if sw:
        prev = lens[lens.index(sw) - 1]
        lines.append(f"- Swamping: plain round-to-nearest accumulation stops keeping up at n = {sw} "
                     f"(from n = {prev} its mean sum grew by "
                     f"{result.mean_sum[plain][sw] - result.mean_sum[plain][prev]:.4g}, the exact sum by "
                     f"{result.mean_sum['exact'][sw] - result.mean_sum['exact'][prev]:.4g}: less than "
                     f"half of each further product is kept); at n = {longest} it returns "
                     f"{result.mean_sum[plain][longest] / result.mean_sum['exact'][longest]:.1%} "
                     "of the exact sum.")
    for lab in labels[2:]:
        ratio = result.error[plain][longest] / result.error[lab][longest] if result.error[lab][longest] else math.inf
        lines.append(f"- {lab}: error {fmt_sci(result.error[lab][longest])} at n = {longest}, "
                     f"{ratio:.0f}x below plain RNE and {result.error[lab][longest] / result.floor[longest]:.1f}x the floor"
                     if result.floor[longest] else f"- {lab}: error {fmt_sci(result.error[lab][longest])}")
    dot_line = _dot_finding(result)
    if dot_line:
        lines.append(dot_line)
    rep.heading("Findings")
    rep.text("\n".join(lines))
    md = rep.write(out / "accumulation.md")
    return md, png
