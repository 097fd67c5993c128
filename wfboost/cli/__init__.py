"""`wfboost <command>`: a thin shell over the library.

Each command lives in its own module exposing `register(subparsers)`, which adds a subparser whose
`handler` default is a callable `(argparse.Namespace) -> int`. Handlers call the same library functions the
server uses; they print results and return an exit code, and turn expected errors into one clear line on stderr.
`--log-level` and `--log-format` are taken before or after the command, at any depth.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import orjson

from wfboost import __version__

# Modules under wfboost.cli that contribute a command; each has `register(subparsers)`.
COMMAND_MODULES = ("serve", "review", "shrink", "split", "certs", "credentials", "sidestore", "recorder", "cache",
                   "policy")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors parse without a regex."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def _add_log_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The same options on every parser; below the top they default to 'not given' so they never override it."""
    level: str = "INFO" if top else argparse.SUPPRESS
    fmt: str = "text" if top else argparse.SUPPRESS
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=level, help="log verbosity (default INFO)")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=fmt, help="log lines as text or JSON (default text)"
    )


def _every_subparser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.append(sub)
                found.extend(_every_subparser(sub))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wfboost",
        description="Memoize Argo Workflows steps from a mutating admission webhook.",
    )
    parser.add_argument("--version", action="version", version=f"wfboost {__version__}")
    _add_log_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"wfboost.cli.{name}")
        module.register(subparsers)
    for sub in _every_subparser(parser):
        _add_log_options(sub, top=False)
    return parser


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler], force=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        status = int(args.handler(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit, where Python would print a traceback
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): what it did not read is not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # a bug, not a user error: still one line; the traceback is in the debug log
        logging.getLogger("wfboost.cli").debug("wfboost %s failed", args.command, exc_info=True)
        print(f"wfboost {args.command}: unexpected {type(exc).__name__}: {exc} (a bug: please report it; "
              "--log-level DEBUG shows where)", file=sys.stderr)
        return 2
