"""``fp8mac demo``: the main job, end to end (:mod:`fp8mac.sim.demo`)."""

from __future__ import annotations


def _positive(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _seed(text):
    import argparse

    try:
        value = int(text, 0)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..2**32-1, not {text!r}")
    return value


def register(sub):
    d = sub.add_parser(
        "demo", help="the main job: generate the array, simulate real layers, report area",
        description="Generate the default array, run the digits MLP's training GEMMs on a "
                    "simulator against the golden model, and report errors and area.")
    d.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                   help="simulator (default verilator)")
    d.add_argument("--batch", type=_positive, default=1024,
                   help="training batch: K of the weight-gradient GEMMs (default 1024)")
    d.add_argument("--seed", type=_seed, default=0,
                   help="seed of the training and of the stream pauses (default 0)")
    d.add_argument("--no-synth", action="store_true", help="skip the area report")
    d.set_defaults(func=run)


def run(args) -> int:
    import sys

    from fp8mac.sim.demo import run_demo
    from fp8mac.sim.tools import ToolMissing

    try:
        return run_demo(batch=args.batch, seed=args.seed, sim=args.sim, synth=not args.no_synth)
    except ToolMissing as exc:
        print(f"fp8mac: error: {exc}", file=sys.stderr)
        return 1
