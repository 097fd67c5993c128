"""`wfboost <command>`: a thin shell over the library.

Each command lives in its own module exposing `register(subparsers)`, which adds a subparser whose
`handler` default is a callable `(argparse.Namespace) -> int`. Handlers call the same library functions the
server uses; they print results and return an exit code, and turn expected errors into one clear line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from wfboost import __version__

# Modules under wfboost.cli that contribute a command; each has `register(subparsers)`.
COMMAND_MODULES = ("serve", "review", "certs", "sidestore", "recorder", "cache", "policy")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wfboost",
        description="Memoize and shrink Argo Workflows from a mutating admission webhook.",
    )
    parser.add_argument("--version", action="version", version=f"wfboost {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log verbosity"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"wfboost.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
