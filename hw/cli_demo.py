"""``fp8mac demo``: the main job, end to end (:mod:`fp8mac.sim.demo`)."""

from __future__ import annotations

SEED_MAX = 2**32 - 1


def register(sub):
    from fp8mac.sim.runner import SIMULATORS  # the standard library only: --help stays fast

    d = sub.add_parser(
        "demo", help="the main job: generate the array, simulate real layers, report area",
        description="Generate the default array, run the digits MLP's training GEMMs on a "
                    "simulator against the golden model, and report errors and area.")
    d.add_argument("--sim", choices=SIMULATORS, default="verilator",
                   help="simulator (default verilator)")
    d.add_argument("--batch", default="1024",
                   help="training batch: K of the weight-gradient GEMMs, at least 1 (default 1024)")
    d.add_argument("--seed", default="0",
                   help=f"seed of the training and of the stream pauses, 0..{SEED_MAX} (default 0)")
    d.add_argument("--no-synth", action="store_true", help="skip the area report")
    d.set_defaults(func=run)


def run(args) -> int:
    import sys

    from fp8mac.model.studies.cli import parse_int
    from fp8mac.sim.demo import run_demo
    from fp8mac.sim.tools import ToolMissing

    batch = parse_int("--batch", args.batch, 1)  # ValueError: one line, exit 2 (fp8mac.hw.cli)
    seed = parse_int("--seed", args.seed, 0, SEED_MAX)
    try:
        return run_demo(batch=batch, seed=seed, sim=args.sim, synth=not args.no_synth)
    except ToolMissing as exc:
        print(f"fp8mac: error: {exc}", file=sys.stderr)
        return 1
