"""The ``fp8mac`` command line (also ``python -m fp8mac.hw``).

Each subcommand lives in its own module, listed in ``SUBCOMMANDS``, which exposes
``register(subparsers)``; it adds its parser and sets ``func`` to a function taking the parsed
arguments and returning an exit status. Modules import heavy dependencies inside ``func`` so that
``fp8mac --help`` stays fast.

Every subcommand validates its input once; bad input prints one line ``fp8mac: error: ...``
naming the parameter and what is allowed, and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "UsageError", "SUBCOMMANDS"]

SUBCOMMANDS = [
    "fp8mac.hw.cli_demo",
    "fp8mac.hw.emit",
    "fp8mac.hw.generate",
    "fp8mac.hw.synth",
    "fp8mac.hw.sweep",
    "fp8mac.model.studies.cli",
]


class UsageError(Exception):
    """Bad user input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fp8mac", description=(
        "Generator of FP8 MAC arrays with chunked FP16 accumulation and LFSR stochastic rounding."))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
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
