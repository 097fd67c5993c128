"""Reading a reference: the text a `wfboost-ref:…` string in a stored object stands for, for a person.

`kubectl get -o yaml`, `argo get` and the Argo UI show a moved value as its reference, which names what it is, its
size and its digest. `GET /v1/namespaces/<ns>/view/<reference>` (the reference as shown, percent-encoded) answers
the value itself, checked against the reference's size and digest, as `text/plain` UTF-8 — never rendered (the
headers forbid sniffing and active content), so viewing a value in a browser runs nothing it holds:

- `wfboost-ref:v1:<size>:<sha256>`: the value;
- `wfboost-ref:table-v1:<size>:<sha256>`: the argument table, as indented JSON;
- `wfboost-ref:table-v1:<size>:<sha256>#<row>[<input>]`: one cell, as a pod of that row received it.

The same bearer token or client certificate as any blob read, and the same namespace scope. `wfboost sidestore show`
is its command-line client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import orjson

from wfboost.shrink.refs import CELL_PATTERN, PATTERN, TABLE_PATTERN, Reference, ReferenceMismatch, value_of
from wfboost.shrink.tables import TableError, cell, parse_table
from wfboost.sidestore.errors import BadRequest, DigestMismatch, NotFound

__all__ = ["MAX_VIEWED_BYTES", "VIEW_HEADERS", "Viewed", "parse_viewed", "viewed_text"]

# Moved values are at most 900 KiB and tables about a megabyte at 2,000 calls; larger blobs are streamed by GET.
MAX_VIEWED_BYTES: Final = 16 * 1024 * 1024
VIEW_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=86400, immutable",  # content-addressed: a reference's text never changes
}
_FORMS: Final = ("wfboost-ref:v1:<size>:<sha256>, wfboost-ref:table-v1:<size>:<sha256> or "
                 "wfboost-ref:table-v1:<size>:<sha256>#<row>[<input>]")


@dataclass(frozen=True)
class Viewed:
    reference: Reference
    row: int | None = None
    input: str | None = None


def parse_viewed(text: str) -> Viewed:
    """The reference (and cell) named by `text`; BadRequest saying the accepted forms otherwise."""
    text = text.strip()
    if match := PATTERN.fullmatch(text):
        return Viewed(Reference(int(match[1]), match[2]))
    if match := TABLE_PATTERN.fullmatch(text):
        return Viewed(Reference(int(match[1]), match[2], table=True))
    if match := CELL_PATTERN.fullmatch(text):
        return Viewed(Reference(int(match[1]), match[2], table=True), int(match[3]), match[4])
    shown = re.sub(r"[^\x20-\x7e]", "?", text[:100])
    raise BadRequest(f"{shown!r} is not a wfboost reference: expected {_FORMS}")


def viewed_text(wanted: Viewed, data: bytes) -> tuple[str, str]:
    """(body, content type) for the blob `data` the reference names."""
    try:
        text = value_of(wanted.reference, data)
    except ReferenceMismatch as exc:
        raise DigestMismatch(str(exc)) from None
    if not wanted.reference.table:
        return text, "text/plain"
    try:
        table = parse_table(wanted.reference, text)
        if wanted.row is None or wanted.input is None:
            return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode() + "\n", "application/json"
        return cell(table, wanted.reference, wanted.row, wanted.input), "text/plain"
    except TableError as exc:
        raise NotFound(str(exc)) from None
