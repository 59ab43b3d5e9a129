"""The ``fp8mac`` command line.

Every subcommand validates its input once; bad input prints one line ``fp8mac: error: ...``
naming the parameter and what is allowed, and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "UsageError"]


class UsageError(Exception):
    """Bad user input: reported as one line, exit status 2."""


def _cmd_demo(args) -> int:
    from fp8mac.model.config import MacConfig
    from fp8mac.model.demo import accumulation_report

    print("== fp8mac demo: golden model ==")
    accumulation_report(MacConfig(), batch=args.batch, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fp8mac", description=(
        "Generator of FP8 MAC arrays with chunked FP16 accumulation and LFSR stochastic rounding."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    d = sub.add_parser("demo", help="the main job: model, simulate and report a real layer",
                       description="Run the end-to-end demo on the digits MLP's training GEMMs.")
    d.add_argument("--batch", type=int, default=1024, help="training batch (K of the weight-gradient GEMMs; default 1024)")
    d.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ValueError) as exc:
        print(f"fp8mac: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
