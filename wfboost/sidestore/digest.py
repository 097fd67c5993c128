"""Blob names: `sha256:<64 lowercase hex>` of the uncompressed content.

The digest is of what the client sent, never of what is stored, so compression (or a change of it) never
changes a blob's name, and a client can compute the name before it uploads.
"""

from __future__ import annotations

import re

from wfboost.sidestore.errors import BadRequest

ALGORITHM = "sha256"
_HEX = re.compile(r"[0-9a-f]{64}")


def parse_digest(text: str) -> str:
    """The digest in canonical form, or a 400 that says what a digest looks like."""
    algorithm, sep, hex_part = text.partition(":")
    if sep != ":" or algorithm != ALGORITHM or not _HEX.fullmatch(hex_part):
        raise BadRequest(f"{text[:80]!r} is not a blob digest: expected sha256:<64 lowercase hex digits>")
    return text


def parse_hex(text: str, what: str) -> str:
    """A bare sha256 hex (per-part checksums), lowercased; a 400 naming `what` otherwise."""
    value = text.strip().lower()
    if value.startswith(f"{ALGORITHM}:"):
        value = value[len(ALGORITHM) + 1 :]
    if not _HEX.fullmatch(value):
        raise BadRequest(f"{what} must be a sha256 (64 hex digits), got {text[:80]!r}")
    return value


def digest_of_hex(hex_part: str) -> str:
    return f"{ALGORITHM}:{hex_part}"
