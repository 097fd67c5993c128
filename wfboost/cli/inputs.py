"""Reading what a user hands a command: a file or stdin, as UTF-8 text, with one clear line when it cannot be."""

from __future__ import annotations

import sys

# Nothing a command reads is this big (the API server refuses bodies over 3 MiB); more is not what the user meant.
MAX_INPUT_BYTES = 64 * 1024 * 1024


class InputError(ValueError):
    """The input cannot be read as text; the message says why in one line."""


def read_text(path: str) -> str:
    """The text of `path` ('-': stdin)."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{name}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
