"""Study 3: accumulator mantissa width from the variance retention ratio (VRR), model vs. golden model.

Sakr et al., "Accumulation Bit-Width Scaling for Ultra-Low Precision Training of Deep Networks"
(ICLR 2019, arXiv:1901.06588), §3, define the variance retention ratio of a length-``n``
accumulation of zero-mean products ``p_i`` (variance ``sigma^2``) in an accumulator with
``m_acc`` mantissa bits as

    VRR = Var(computed sum) / Var(exact sum) = Var(s_hat_n) / (n sigma^2),

derive it in closed form (their Theorem 1, a function ``VRR(m_acc, m_p, n)`` of the product
mantissa width ``m_p``), compose it for chunk-based accumulation (inner sums of ``n1`` products,
then an outer sum of ``n / n1`` chunk sums with ``m_acc``-bit terms) and choose the smallest
``m_acc`` whose VRR is close enough to 1 for the accumulation length.

**What is used here, and why.** The reference corpora available to this project hold the paper's
abstract and introduction but not §3, so the closed form and its coefficients could not be
checked; rather than transcribe a formula from memory, this module computes the same quantity
numerically from its definition under the same assumptions (Sakr et al.'s swamping picture):

* the products are i.i.d. zero-mean: here the exact distribution of products of two
  ``in_format`` values rounded from ``N(0, 1)`` (so ``m_p`` is implicit: FP8 E5M2 products
  have ``m_p = 5``);
* before step ``i`` the computed partial sum is Gaussian, ``N(0, V_{i-1})``; its binade fixes the
  accumulator's ulp ``u = 2**(floor(log2|s|) - m_acc)``;
* the partial sum's ulp, fixed before the addition, decides what survives of a product: it keeps
  only its multiple of ``u`` (round to nearest; a tie goes either way with probability 1/2, as the
  parity of the partial sum decides it): full swamping when ``|p| < u / 2``, partial swamping of
  its low bits otherwise. The variance that survives is ``h(u) = E[p * u * round(p / u)]`` (the
  projection of the kept part on the product: rounding noise is neither lost nor retained
  variance, so the model's VRR is at most 1, as in Sakr et al.);
* ``V_i = V_{i-1} + E_u[h(u)]`` (self-consistent: a swamped accumulator grows slower, so it swamps
  less than an ideal partial sum would) and ``VRR = V_n / (n sigma^2)``.

Chunked: ``VRR = VRR_inner(chunk) * VRR_outer(n / chunk)``, the outer terms being the chunk sums,
``N(0, chunk * sigma^2 * VRR_inner)`` rounded to ``m_acc`` bits.

What the model leaves out, by construction: a floating-point addition rounds with the ulp of its
*result*. A power of two ``B`` is the rounding target of ``[B - u/2, B + u)`` (half an ulp below,
half the doubled ulp above), so sums that land near a binade boundary are pulled toward zero on
average. Over a long zero-mean accumulation this contracts the computed sum; the measurement
includes it (the golden model rounds exactly), the swamping model does not. Stochastic rounding
is unbiased everywhere, so it loses no variance at all (it adds noise instead).

Criterion: the smallest ``m_acc`` with ``n * (1 - VRR) <= max_lost``, i.e. the accumulation loses
at most ``max_lost`` products' worth of variance. The default ``ln 50 = 3.91`` is Sakr et al.'s
knee cutoff as we recall it (normalized exponential variance lost ``exp(n (1 - VRR)) < 50``);
recalled, not verified against the text; ``--max-lost`` changes it.

The measurement: ``trials`` dot products of length ``n`` through
:func:`~fp8mac.model.gemm.mac_gemm` with accumulators ``FloatFormat(8, m_acc)`` (8 exponent bits:
range never matters): plain and chunked round to nearest (inside and across chunks), and plain
stochastic rounding. Over the zero-mean ensemble of trials, with ``s`` exact (``math.fsum``):

* retained variance ``sum(s_hat * s) / sum(s**2)`` (``Cov / Var``: the part of the exact sum's
  variance the computed sum keeps; rounding noise, uncorrelated with ``s``, does not count): the
  model's quantity, and the one the criterion is applied to;
* Sakr et al.'s ratio ``sum(s_hat**2) / sum(s**2)`` (noise counts as retained variance),

each with a delta-method standard error.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..config import MacConfig
from ..formats import FORMATS, FloatFormat
from .accumulation import check_int, check_jobs, check_lengths, check_seed, dot_products, draw_operands
from .report import Report, new_figure, save_figure, check_out_dir

__all__ = ["acc_format", "product_distribution", "vrr_model", "min_mantissa_bits", "measure_vrr",
           "run_bitwidth", "write_bitwidth", "BitwidthResult", "DEFAULT", "QUICK", "MAX_LOST"]

MAX_LOST = math.log(50.0)
DEFAULT = dict(lengths=(256, 1024, 4096), man_bits=tuple(range(4, 12)), chunk=64, trials=1024)
"""Default size: n = 256, 1024, 4096; m_acc = 4..11; three settings; 1024 trials."""
QUICK = dict(lengths=(1024,), man_bits=(4, 8), chunk=64, trials=1024, table_lengths=(64, 4096))
"""``--quick`` size (tests)."""
TABLE_LENGTHS = tuple(1 << e for e in range(6, 21, 2))
"""Lengths of the model-only table of minimum mantissa bits (2^6 .. 2^20)."""


def acc_format(man_bits: int) -> FloatFormat:
    """The accumulator of the sweep: 8 exponent bits (bias 127, IEEE specials), ``man_bits``."""
    check_int("man_bits", man_bits, 1, 23)
    return FloatFormat(8, int(man_bits), 127, "ieee", name=f"e8m{int(man_bits)}")


def _special():
    """scipy.special's ``erfc`` and ``ndtri`` (scipy comes with scikit-learn, a study dependency)."""
    try:
        from scipy.special import erfc, ndtri
    except ImportError:  # pragma: no cover - a clear message for a missing optional dependency
        raise SystemExit("fp8mac: the bitwidth study needs scipy (pip install 'fp8mac[study]')")
    return erfc, ndtri


def product_distribution(in_format="fp8_e5m2"):
    """Values and probabilities of ``a * b`` for ``a, b`` drawn from ``N(0, 1)`` and rounded to
    nearest in ``in_format`` (exact: the Gaussian mass of each code's rounding interval)."""
    erfc, _ = _special()
    fin = FORMATS[in_format] if isinstance(in_format, str) else in_format
    v = fin.decode(np.arange(1 << fin.width))
    v = np.unique(v[np.isfinite(v)])
    mid = (v[1:] + v[:-1]) / 2
    edges = np.concatenate([[-np.inf], mid, [np.inf]])
    p = np.diff(0.5 * erfc(-edges / math.sqrt(2.0)))
    prod = np.multiply.outer(v, v).ravel()
    prob = np.multiply.outer(p, p).ravel()
    keep = prob > 0
    return prod[keep], prob[keep] / prob[keep].sum()


def _round_bits(x, man_bits):
    """``x`` rounded to ``man_bits`` mantissa bits in its own binade (ties to even)."""
    ax = np.abs(x)
    e = np.floor(np.log2(np.where(ax > 0, ax, 1.0)))
    ulp = np.ldexp(1.0, (e - man_bits).astype(int))
    return np.where(ax > 0, np.round(x / ulp) * ulp, 0.0)


def _gaussian_terms(var, man_bits, points=4001):
    """``N(0, var)`` by equal-probability quantiles, rounded to ``man_bits`` bits."""
    _, ndtri = _special()
    x = math.sqrt(var) * ndtri((np.arange(points) + 0.5) / points)
    return _round_bits(x, man_bits), np.full(points, 1.0 / points)


def _retained(values, probs, ulps):
    """``E[p * u * round(p / u)]`` for each accumulator ulp ``u``: the part of a term's variance
    that survives the addition (a tie goes up or down with probability 1/2: the partial sum's
    parity decides it). Ulps at most ``2**-24`` times the terms' RMS keep everything (their
    loss is below ``2**-48`` of the variance) and are not computed."""
    second = float(np.dot(probs, values * values))
    out = np.full(len(ulps), second)
    big = ulps > math.sqrt(second) * 2.0 ** -24
    if big.any():
        r = values[None, :] / ulps[big][:, None]
        fl = np.floor(r)
        frac = r - fl
        q = np.where(frac < 0.5, fl, fl + 1)
        q = np.where(frac == 0.5, fl + 0.5, q)
        out[big] = ulps[big] * ((values * probs)[None, :] * q).sum(axis=1)
    return out


_H_CACHE: dict = {}


def _accumulate(values, probs, man_bits, n, key=None):
    """``V_n / (n sigma^2)`` for one accumulation of ``n`` terms (see the module docstring).

    ``key`` names the term distribution so that its retained-variance table (which depends on
    the distribution and ``man_bits`` only) is computed once per process.
    """
    erfc, _ = _special()
    sigma2 = float(np.dot(probs, values * values))
    sd = math.sqrt(sigma2)
    top = math.floor(math.log2(sd))
    es = np.arange(top - 40, top + 25)  # partial sums up to 2**24 sigma: n up to 2**40
    cached = _H_CACHE.get((key, man_bits)) if key is not None else None
    if cached is None:
        cached = (_retained(values, probs, np.ldexp(1.0, es - man_bits)),
                  float(np.dot(probs, values * _round_bits(values, man_bits))))
        if key is not None:
            _H_CACHE[(key, man_bits)] = cached
    h, v = cached  # v: V_1, the first term into a zero accumulator
    lo = np.ldexp(1.0, es)
    j = 1
    while j < n:
        step = max(1, min(n - j, j // 64))
        tail = erfc(lo / math.sqrt(2.0 * v))
        pbin = tail - np.append(tail[1:], 0.0)
        pbin[0] += 1.0 - tail[0]  # |s| below the lowest binade: no swamping there either
        v += step * float(np.dot(pbin, h))
        j += step
    return v / (n * sigma2)


def vrr_model(n, man_bits, chunk=None, in_format="fp8_e5m2", _dist=None) -> float:
    """The modelled VRR of a length-``n`` accumulation with ``man_bits`` accumulator mantissa
    bits, plain (``chunk=None``) or chunk-based (see the module docstring).

    Raises
    ------
    ValueError
        If ``n``, ``man_bits`` or ``chunk`` is out of range.
    """
    n = check_int("n", n, 1, 1 << 30)
    man_bits = check_int("man_bits", man_bits, 1, 23)
    name = in_format if isinstance(in_format, str) else in_format.label
    values, probs = _dist or product_distribution(in_format)
    if chunk is None or chunk >= n:
        return _accumulate(values, probs, man_bits, n, ("products", name))
    chunk = check_int("chunk", chunk, 1, 1 << 30)
    inner = _accumulate(values, probs, man_bits, chunk, ("products", name))
    sigma2 = float(np.dot(probs, values * values))
    cv, cp = _gaussian_terms(chunk * sigma2 * inner, man_bits)
    outer = _accumulate(cv, cp, man_bits, -(-n // chunk), ("chunk sums", name, chunk))
    return inner * outer


def min_mantissa_bits(n, chunk=None, max_lost=MAX_LOST, in_format="fp8_e5m2", lo=2, hi=23,
                      _dist=None):
    """The smallest ``man_bits`` in ``lo..hi`` with ``n * (1 - VRR) <= max_lost`` (the VRR is
    non-decreasing in ``man_bits``: bisection); None if even ``hi`` bits do not suffice."""
    dist = _dist or product_distribution(in_format)
    ok = lambda m: n * (1.0 - vrr_model(n, m, chunk, in_format, dist)) <= max_lost  # noqa: E731
    if not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def measure_vrr(lengths, man_bits, chunk=None, trials=1024, in_format="fp8_e5m2", seed=0,
                rounding="nearest"):
    """Measured retention per length with ``man_bits``:
    ``{n: (retained, its standard error, variance ratio, its standard error)}``.

    ``trials`` zero-mean dot products (``N(0, 1)`` operands rounded to ``in_format``) per length
    through ``mac_gemm`` with ``acc_format(man_bits)``, plain or chunked, with ``rounding``
    inside and across chunks.
    """
    align = 1 if chunk is None else int(chunk)
    groups = draw_operands(lengths, trials, "normal", in_format, seed, align)
    config = MacConfig(rows=8, cols=1, in_format=in_format, acc_format=acc_format(man_bits),
                       chunk=chunk, inner_rounding=rounding, outer_rounding=rounding, seed=seed)
    computed = dot_products(groups, config)
    fin = FORMATS[in_format]
    out = {}
    for g in groups:
        for n, p, bw in zip(g.lengths, g.a_parts, g.b_windows()):
            prods = fin.decode(p) * fin.decode(bw)
            exact = np.array([math.fsum(r) for r in prods])
            out[n] = _ratio(computed[n] * exact, exact * exact) + _ratio(computed[n] ** 2, exact * exact)
    return out


def _ratio(x, y):
    """``sum(x) / sum(y)`` and its delta-method standard error."""
    r = float(x.sum() / y.sum())
    return r, float(math.sqrt(np.var(x - r * y) / len(x)) / y.mean())


def settings(chunk):
    """The accumulations compared: ``(label, chunk, rounding)``."""
    return [("plain RNE", None, "nearest"), (f"chunk {chunk} RNE", chunk, "nearest"),
            ("plain SR", None, "stochastic")]


def _measure_job(args):
    lengths, m, chunk, rounding, trials, in_format, seed = args
    return measure_vrr(lengths, m, chunk, trials, in_format, seed, rounding)


@dataclass
class BitwidthResult:
    """What :func:`run_bitwidth` computed.

    Attributes
    ----------
    rows : list of dict
        One per (setting, n, man_bits): ``label``, ``chunk``, ``rounding``, ``n``, ``man_bits``,
        ``model`` (None for stochastic rounding), ``measured`` (retained variance) and ``se``,
        ``ratio`` (variance ratio) and ``ratio_se``.
    minimum : list of dict
        One per (round-to-nearest setting, n): ``model`` and ``measured`` minimum mantissa bits.
    table : list of dict
        Model-only minimum mantissa bits for ``TABLE_LENGTHS`` and chunk sizes.
    params : dict
    seconds : float
    """

    rows: list
    minimum: list
    table: list
    params: dict
    seconds: float


def run_bitwidth(lengths=DEFAULT["lengths"], man_bits=DEFAULT["man_bits"], chunk=DEFAULT["chunk"],
                 trials=DEFAULT["trials"], max_lost=MAX_LOST, in_format="fp8_e5m2", seed=0, jobs=1,
                 table_lengths=TABLE_LENGTHS, log=print) -> BitwidthResult:
    """Model and measure the VRR over ``lengths`` x ``man_bits`` for each of :func:`settings`.

    Raises
    ------
    ValueError
        For a bad length, mantissa width, chunk, trials, seed, format or ``max_lost``.
    """
    t0 = time.perf_counter()
    lengths = check_lengths(lengths)
    seed = check_seed(seed)
    jobs = check_jobs(jobs)
    trials = check_int("trials", trials, 2, 1 << 16)
    try:
        man_bits = sorted({check_int("man_bits", m, 1, 23) for m in man_bits})
    except TypeError:
        raise ValueError(f"man_bits must be a list of integers in 1..23, not {man_bits!r}") from None
    if not man_bits:
        raise ValueError("man_bits must hold at least one integer in 1..23")
    chunk = check_int("chunk", chunk, 1, 1 << 20)
    if isinstance(max_lost, bool) or not isinstance(max_lost, (int, float)) or not (
            math.isfinite(max_lost) and max_lost > 0):
        raise ValueError(f"max_lost must be a positive number, not {max_lost!r}")
    if not isinstance(in_format, str) or in_format not in FORMATS or FORMATS[in_format].width > 8:
        raise ValueError(f"in_format must be an 8-bit preset (fp8_e5m2, fp8_e4m3), not {in_format!r}")
    log(f"bitwidth study: seed {seed}, {trials} trials, lengths {list(lengths)}, man_bits "
        f"{man_bits[0]}..{man_bits[-1]}, plain / chunk {chunk} / stochastic, {in_format} products")
    dist = product_distribution(in_format)
    sets = settings(chunk)
    args = [(lengths, m, c, rnd, trials, in_format, seed) for _, c, rnd in sets for m in man_bits]
    if jobs == 1:
        measured = [_measure_job(a) for a in args]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            measured = list(pool.map(_measure_job, args))
    log(f"  measured {len(args)} sweeps ({time.perf_counter() - t0:.1f} s)")
    labels = {(c, rnd): lab for lab, c, rnd in sets}
    rows = []
    for (_, m, c, rnd, *_), meas in zip(args, measured):
        for n in lengths:
            vr, se, ratio, ratio_se = meas[n]
            model = vrr_model(n, m, c, in_format, dist) if rnd == "nearest" else None
            rows.append(dict(label=labels[(c, rnd)], chunk=c, rounding=rnd, n=n, man_bits=m,
                             model=model, measured=vr, se=se, ratio=ratio, ratio_se=ratio_se))
    minimum = []
    for lab, c, rnd in sets:
        if rnd != "nearest":
            continue
        for n in lengths:
            cells = [r for r in rows if r["label"] == lab and r["n"] == n]
            meas_ok = [r["man_bits"] for r in cells if n * (1 - r["measured"]) <= max_lost]
            minimum.append(dict(label=lab, chunk=c, n=n,
                                model=min_mantissa_bits(n, c, max_lost, in_format, _dist=dist),
                                measured=min(meas_ok) if meas_ok else None,
                                swept=(man_bits[0], man_bits[-1])))
    table = []
    for n in table_lengths:
        table.append(dict(n=n, **{str(c): min_mantissa_bits(n, c, max_lost, in_format, _dist=dist)
                                  for c in (None, 16, 64, 256)}))
    log(f"  model done ({time.perf_counter() - t0:.1f} s)")
    params = dict(lengths=list(lengths), man_bits=man_bits, chunk=chunk, trials=trials,
                  max_lost=max_lost, in_format=in_format, seed=seed)
    return BitwidthResult(rows, minimum, table, params, time.perf_counter() - t0)


def write_bitwidth(result: BitwidthResult, out, command="fp8mac study bitwidth"):
    """Write ``bitwidth.md`` and ``bitwidth.png`` into ``out``; returns both paths."""
    out = check_out_dir(out)
    p = result.params
    sets = settings(p["chunk"])
    dist = product_distribution(p["in_format"])
    fig, axes = new_figure(len(sets), 1, size=(5.2, 4.4))
    for ax, (lab, c, rnd) in zip(axes[0], sets):
        for i, n in enumerate(p["lengths"]):
            cells = [r for r in result.rows if r["label"] == lab and r["n"] == n]
            ms = [r["man_bits"] for r in cells]
            color = f"C{i}"
            if rnd == "nearest":
                fine = np.arange(ms[0], ms[-1] + 1)
                ax.plot(fine, [1 - vrr_model(n, int(m), c, p["in_format"], dist) for m in fine],
                        color=color, label=f"swamping model n={n}")
            ax.errorbar(ms, [1 - r["measured"] for r in cells], yerr=[2 * r["se"] for r in cells],
                        fmt="o", color=color, ms=4, capsize=2, label=f"measured n={n}")
            ax.axhline(p["max_lost"] / n, color=color, ls=":", lw=1)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xlabel("accumulator mantissa bits m_acc")
        ax.set_ylabel("1 - retained variance (model: lines, measured: points)")
        ax.set_title(f"{lab}, {p['in_format']} products")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    png = save_figure(fig, out / "bitwidth.png")

    rep = Report("Bit width: variance retention ratio, model vs. golden model")
    rep.text(f"Command: `{command}`. Seed {p['seed']}, {p['trials']} trials per cell, zero-mean "
             f"products of `{p['in_format']}` operands rounded from N(0,1), accumulators with 8 "
             f"exponent bits and `m_acc` mantissa bits. Variance retention (Sakr et al., ICLR 2019): "
             f"how much of the exact sum's variance the computed sum keeps. Criterion: the smallest "
             f"`m_acc` whose retained variance R has `n (1 - R) <= {p['max_lost']:.2f}` (dotted "
             f"lines in the plot). The model is Sakr et "
             f"al.'s swamping picture evaluated numerically (their closed form could not be checked "
             f"against the paper's text here); `model/studies/bitwidth.py` says exactly what it "
             f"assumes and what it leaves out.")
    rep.image("bitwidth.png", "variance lost against accumulator mantissa bits")
    rep.heading("Minimum accumulator mantissa bits (round to nearest)")
    rep.table(["accumulation", "n", "swamping model", "measured (golden model)"],
              [[r["label"], r["n"], r["model"] if r["model"] is not None else "> 23",
                r["measured"] if r["measured"] is not None else f"> {r['swept'][1]}"]
               for r in result.minimum])
    rep.text("`measured`: the smallest swept `m_acc` whose measured retained variance meets the "
             "criterion (point estimate; the standard errors below say how sharp that is).")
    rep.heading("Retained variance by cell")
    rep.table(["accumulation", "n", "m_acc", "model", "measured", "+-2 SE", "Var ratio", "+-2 SE"],
              [[r["label"], r["n"], r["man_bits"],
                f"{r['model']:.5f}" if r["model"] is not None else "-",
                f"{r['measured']:.5f}", f"{2 * r['se']:.5f}", f"{r['ratio']:.5f}",
                f"{2 * r['ratio_se']:.5f}"]
               for r in result.rows])
    rep.text("`model`: the swamping model (round to nearest only). `measured`: retained variance "
             "Cov(computed, exact) / Var(exact); `Var ratio`: Var(computed) / Var(exact), Sakr et "
             "al.'s VRR, which also counts rounding noise as retained.")
    rep.heading("Model: minimum mantissa bits by length and chunk size")
    rep.table(["n", "plain", "chunk 16", "chunk 64", "chunk 256"],
              [[r["n"]] + [r[k] if r[k] is not None else "> 23" for k in ("None", "16", "64", "256")]
               for r in result.table])
    md = rep.write(out / "bitwidth.md")
    return md, png
