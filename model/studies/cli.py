"""``fp8mac study accumulation | train | bitwidth``: the paper studies, written to Markdown and PNG.

Every option is validated by the study itself; bad values end as one line
``fp8mac: error: ...`` and exit status 2 (``fp8mac.hw.cli`` catches the ValueError). Options
left out take the study's default size, or its ``--quick`` size.
"""

from __future__ import annotations

import time

__all__ = ["register", "parse_int", "parse_ints", "parse_float"]

STUDIES = ("accumulation", "train", "bitwidth")


def parse_int(name, text, lo=None, hi=None) -> int:
    """``text`` as an integer in ``lo..hi``; ValueError naming the option otherwise."""
    try:
        value = int(str(text).strip(), 0)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {text!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        allowed = (f"in {lo}..{hi}" if lo is not None and hi is not None
                   else f"at least {lo}" if lo is not None else f"at most {hi}")
        raise ValueError(f"{name} must be {allowed}, not {value}")
    return value


def parse_ints(name, text, lo=None, hi=None, doubling=False) -> list[int]:
    """A comma-separated list of integers, or a range ``a..b`` (every integer, or with
    ``doubling`` the powers-of-two multiples ``a, 2a, 4a, ... <= b``)."""
    text = str(text).strip()
    if ".." in text:
        a, _, b = text.partition("..")
        a, b = parse_int(name, a, lo, hi), parse_int(name, b, lo, hi)
        if a > b:
            raise ValueError(f"{name}: range {text!r} is empty (start above end)")
        if doubling:
            if a < 1:
                raise ValueError(f"{name}: a doubling range must start at 1 or more, not {a}")
            out = []
            while a <= b:
                out.append(a)
                a *= 2
            return out
        return list(range(a, b + 1))
    items = [t for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{name} must be a comma-separated list of integers, not {text!r}")
    return [parse_int(name, t, lo, hi) for t in items]


def parse_float(name, text, positive=True) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None
    if positive and not value > 0 or value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a positive finite number, not {text!r}")
    return value


def _common(p, seed_flag="--seed"):
    p.add_argument("--quick", action="store_true", help="the small size the tests use")
    if seed_flag == "--seed":
        p.add_argument("--seed", help="random seed (default 0)")
    else:
        p.add_argument("--seeds", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--out", help="output directory (default reports/)")
    p.add_argument("--jobs", help="worker processes (default 2)")


def register(sub):
    """Add the ``study`` subcommand and its three studies to ``sub`` (argparse subparsers)."""
    s = sub.add_parser("study", help="run a paper study (Markdown tables and PNG plots)",
                       description="Reproduce the studies behind the design choices: swamping and "
                                   "chunking (accumulation), FP8 training (train), accumulator "
                                   "width by variance retention (bitwidth).")
    studies = s.add_subparsers(dest="study", metavar="STUDY", required=True,
                               parser_class=type(s))

    a = studies.add_parser("accumulation", help="dot-product error against length",
                           description="Error of FP8 dot products of length 2^4..2^16 accumulated "
                                       "in FP32, plain / chunked / stochastic FP16 (golden model).")
    _common(a)
    a.add_argument("--lengths", help="comma list or doubling range a..b (default 16..65536)")
    a.add_argument("--trials", help="dot products per length (default 32)")
    a.add_argument("--chunks", help="chunk sizes of the round-to-nearest runs (default 16,64,256)")
    a.add_argument("--distribution", help="operands: halfnormal (default), uniform or normal")
    a.add_argument("--in-format", help="operand format (default fp8_e5m2)")
    a.add_argument("--acc-format", help="accumulator format (default fp16_ibm)")
    a.add_argument("--rbits", help="random bits per stochastic rounding (default 8)")
    a.set_defaults(func=run_accumulation)

    t = studies.add_parser("train", help="digits MLP trained with every GEMM on the array",
                           description="Train a 64-h-h-10 MLP on digits in FP32 and with FP8 GEMMs "
                                       "(golden model), plus ablations and HFP8; mean and spread "
                                       "over seeds, and the weight gradients' accumulation error. "
                                       "--long: full-batch steps (K = 1438 weight gradients), "
                                       "written as train_long.md / .png; --4bit: block-scaled and "
                                       "4-bit GEMMs (MXFP8, MXFP4, NVFP4, IBM 4-bit) through "
                                       "block_gemm, written as train_4bit.md / .png.")
    _common(t, "--seeds")
    t.add_argument("--long", action="store_true",
                   help="full-batch case: FP32, fp8 and no-chunk, 100 steps of all 1438 images")
    t.add_argument("--4bit", dest="four_bit", action="store_true",
                   help="block-scaled and 4-bit case: FP32, fp8 and the variants mxfp8, mxfp4, nvfp4, "
                        "ibm4 (layer 2) and mxfp4-all, nvfp4-all, ibm4-all (every layer)")
    t.add_argument("--variants", help="comma list of fp32, fp8, no-chunk, nearest-update, "
                                      "fp8-edges, hfp8, hfp8-b11, mxfp8, mxfp4, nvfp4, ibm4, "
                                      "mxfp4-all, nvfp4-all, ibm4-all (default fp32 .. hfp8-b11; "
                                      "--long: fp32, fp8, no-chunk; --4bit: fp32, fp8 and the "
                                      "block-scaled and 4-bit ones)")
    t.add_argument("--hidden", help="hidden units per layer (default 32)")
    t.add_argument("--epochs", help="epochs (default 4; --long: 100 full-batch steps)")
    t.add_argument("--batch", help="batch size: K of the weight-gradient GEMMs (default 128; "
                                   "--long: 1438, all training images)")
    t.add_argument("--lr", help="learning rate (default 0.5)")
    t.add_argument("--chunk", help="accumulation chunk size (default 64)")
    t.add_argument("--noise-batch", help="FP32 runs: measure the sampling noise of gradients of "
                                         "this many of each step's images (default off; --long: 128)")
    t.set_defaults(func=run_train)

    b = studies.add_parser("bitwidth", help="accumulator mantissa bits by variance retention",
                           description="Variance retention ratio (Sakr et al., ICLR 2019): the "
                                       "swamping model against golden-model measurements.")
    _common(b)
    b.add_argument("--lengths", help="comma list or doubling range (default 256,1024,4096)")
    b.add_argument("--man-bits", help="accumulator mantissa bits, list or range a..b (default 4..12)")
    b.add_argument("--chunk", help="chunk size of the chunked runs (default 64)")
    b.add_argument("--trials", help="dot products per cell (default 1024)")
    b.add_argument("--max-lost", help="criterion: n (1 - VRR) at most this (default ln 50)")
    b.add_argument("--in-format", help="operand format, 8-bit (default fp8_e5m2)")
    b.set_defaults(func=run_bitwidth)


def _command(args, names):
    parts = ["fp8mac", "study", args.study]
    if args.quick:
        parts.append("--quick")
    if getattr(args, "long", False):
        parts.append("--long")
    if getattr(args, "four_bit", False):
        parts.append("--4bit")
    for n in names:
        v = getattr(args, n.replace("-", "_"), None)
        if v is not None:
            parts += [f"--{n}", str(v)]
    return " ".join(parts)


def _jobs(args):
    return 2 if args.jobs is None else parse_int("--jobs", args.jobs, 1, 64)


def _out(args):
    from .report import check_out_dir

    return check_out_dir("reports" if args.out is None else args.out)


def _report(paths, t0):
    print(f"wrote {', '.join(str(p) for p in paths)} ({time.perf_counter() - t0:.0f} s)")
    return 0


def run_accumulation(args) -> int:
    from .accumulation import DEFAULT, QUICK, run_accumulation as run, write_accumulation

    t0 = time.perf_counter()
    size = dict(DEFAULT, stochastic=True)
    if args.quick:
        size.update(QUICK)
    kw = dict(size)
    if args.lengths is not None:
        kw["lengths"] = parse_ints("--lengths", args.lengths, 1, 1 << 20, doubling=True)
    if args.trials is not None:
        kw["trials"] = parse_int("--trials", args.trials, 1, 1 << 16)
    if args.chunks is not None:
        kw["chunks"] = parse_ints("--chunks", args.chunks, 1, 1 << 20)
    if args.distribution is not None:
        kw["distribution"] = args.distribution
    if args.in_format is not None:
        kw["in_format"] = args.in_format
    if args.acc_format is not None:
        kw["acc_format"] = args.acc_format
    if args.rbits is not None:
        kw["rbits"] = parse_int("--rbits", args.rbits, 1, 32)
    seed = 0 if args.seed is None else parse_int("--seed", args.seed, 0, (1 << 64) - 1)
    out = _out(args)
    result = run(seed=seed, jobs=_jobs(args), **kw)
    names = ["seed", "lengths", "trials", "chunks", "distribution", "in-format", "acc-format",
             "rbits", "out", "jobs"]
    return _report(write_accumulation(result, out, _command(args, names)), t0)


def run_train(args) -> int:
    from .train import DEFAULT, FOUR_BIT, LONG, QUICK, TRAIN_IMAGES, run_train as run, write_train

    t0 = time.perf_counter()
    sizes = [f for f, on in (("--quick", args.quick), ("--long", args.long), ("--4bit", args.four_bit)) if on]
    if len(sizes) > 1:
        raise ValueError(f"{' and '.join(sizes)} are different sizes: give one of them")
    kw = dict(QUICK if args.quick else LONG if args.long else FOUR_BIT if args.four_bit else DEFAULT)
    if args.seeds is not None:
        kw["seeds"] = parse_ints("--seeds", args.seeds, 0, (1 << 64) - 1)
    if args.variants is not None:
        kw["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.hidden is not None:
        kw["hidden"] = parse_int("--hidden", args.hidden, 1, 1024)
    if args.epochs is not None:
        kw["epochs"] = parse_int("--epochs", args.epochs, 1, 1000)
    if args.batch is not None:
        kw["batch"] = parse_int("--batch", args.batch, 1, TRAIN_IMAGES)
    if args.lr is not None:
        kw["lr"] = parse_float("--lr", args.lr)
    if args.chunk is not None:
        kw["chunk"] = parse_int("--chunk", args.chunk, 1, 1 << 20)
    if args.noise_batch is not None:
        kw["noise_batch"] = parse_int("--noise-batch", args.noise_batch, 1, TRAIN_IMAGES)
    out = _out(args)
    result = run(jobs=_jobs(args), **kw)
    names = ["seeds", "variants", "hidden", "epochs", "batch", "lr", "chunk", "noise-batch", "out",
             "jobs"]
    name = "train_long" if args.long else "train_4bit" if args.four_bit else "train"
    return _report(write_train(result, out, _command(args, names), name=name), t0)


def run_bitwidth(args) -> int:
    from .bitwidth import DEFAULT, QUICK, run_bitwidth as run, write_bitwidth

    t0 = time.perf_counter()
    kw = dict(QUICK if args.quick else DEFAULT)
    if args.lengths is not None:
        kw["lengths"] = parse_ints("--lengths", args.lengths, 1, 1 << 20, doubling=True)
    if args.man_bits is not None:
        kw["man_bits"] = parse_ints("--man-bits", args.man_bits, 1, 23)
    if args.chunk is not None:
        kw["chunk"] = parse_int("--chunk", args.chunk, 1, 1 << 20)
    if args.trials is not None:
        kw["trials"] = parse_int("--trials", args.trials, 2, 1 << 16)
    if args.max_lost is not None:
        kw["max_lost"] = parse_float("--max-lost", args.max_lost)
    if args.in_format is not None:
        kw["in_format"] = args.in_format
    seed = 0 if args.seed is None else parse_int("--seed", args.seed, 0, (1 << 64) - 1)
    out = _out(args)
    result = run(seed=seed, jobs=_jobs(args), **kw)
    names = ["seed", "lengths", "man-bits", "chunk", "trials", "max-lost", "in-format", "out", "jobs"]
    return _report(write_bitwidth(result, out, _command(args, names)), t0)
