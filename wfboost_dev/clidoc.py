"""docs/cli.md, written from the CLI's own parser: every command, every option, its default and its help.

`python -m wfboost_dev.clidoc` rewrites the file; tests/test_cli_doc.py fails when it is not what the parser says, so
the page cannot drift from the options the commands take.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wfboost.cli import build_parser

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
HEADER = """# `wfboost` commands

Written from the CLI's parser by `python -m wfboost_dev.clidoc` (a test checks it is current). Every command also
takes `--log-level` (DEBUG, INFO, WARNING, ERROR; default INFO) and `--log-format` (text or json), before or after
the command's name. Expected errors are one line on stderr and exit status 1.
"""


def render() -> str:
    parser = build_parser()
    sections = [HEADER]
    for path, sub in _commands(parser, ["wfboost"]):
        sections.append(_section(path, sub))
    return "\n".join(sections)


def _commands(parser: argparse.ArgumentParser, path: list[str]) -> list[tuple[list[str], argparse.ArgumentParser]]:
    found: list[tuple[list[str], argparse.ArgumentParser]] = []
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, [*path, name])
                found.extend(nested if nested else [([*path, name], sub)])
    return found


def _section(path: list[str], parser: argparse.ArgumentParser) -> str:
    lines = [f"## `{' '.join(path)}`", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    lines += ["| argument | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest in ("log_level", "log_format"):
            continue
        name = ", ".join(action.option_strings) or (action.metavar if isinstance(action.metavar, str) else action.dest)
        default = "" if action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings else (
            f"`{action.default}`")
        choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices and action.option_strings else ""
        meaning = " ".join((action.help or "").split()).replace("|", "\\|") + choices
        lines.append(f"| `{name}` | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/cli.md; with --check, only say whether it is current (exit 1 when not). Run it in an environment
    without WFBOOST_* variables: they are defaults of some options."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    text = render()
    if check:
        if DOC.read_text() != text:
            print(f"{DOC} is not what the CLI's parser says: run `python -m wfboost_dev.clidoc`", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
