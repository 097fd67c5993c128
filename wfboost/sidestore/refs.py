"""References: what keeps a blob alive.

`workflow:<uid>` holds a blob while a Workflow with that uid exists in the cluster; it is added at admission time,
before the Workflow is stored, so it also holds for a grace period after it was (last) added, during which the
Workflow may not be visible yet. If the request is rejected later the uid never appears and, once the grace has
passed, the blob is an orphan. `entry:<id>` holds a blob until the time the cache entry expires; whoever renews
the entry adds the reference again with the new lifetime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from wfboost.blobs.wire import RefBody, RefInfo
from wfboost.sidestore.errors import BadRequest

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}")


@dataclass(frozen=True)
class RefRecord:
    ref: str
    added: float
    expires: float | None

    @property
    def kind(self) -> str:
        return self.ref.partition(":")[0]

    @property
    def target(self) -> str:
        return self.ref.partition(":")[2]

    def encode(self) -> bytes:
        return orjson.dumps({"added": self.added, "expires": self.expires})

    @classmethod
    def decode(cls, ref: str, raw: bytes | str) -> RefRecord:
        doc = orjson.loads(raw)
        expires = doc.get("expires")
        return cls(ref, float(doc["added"]), None if expires is None else float(expires))

    def info(self) -> RefInfo:
        return {"ref": self.ref, "added": self.added, "expires": self.expires}


def ref_name(body: RefBody) -> str:
    """ "workflow:<uid>" or "entry:<id>", or a 400 saying what a reference looks like."""
    kind, ident = body.get("kind"), body.get("id")
    if kind not in ("workflow", "entry") or not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise BadRequest('a reference is {"kind": "workflow"|"entry", "id": "<uid or entry id>"}')
    return f"{kind}:{ident}"


def record_for(body: RefBody, now: float) -> RefRecord:
    name = ref_name(body)
    expires: float | None = None
    if body["kind"] == "entry":
        ttl = body.get("ttl_seconds")
        if not isinstance(ttl, int | float) or ttl <= 0:
            raise BadRequest("an entry reference needs ttl_seconds > 0 (the cache entry's remaining lifetime)")
        expires = now + float(ttl)
    return RefRecord(name, now, expires)


def parse_ref_query(text: str, ttl: str | None) -> RefBody:
    """A reference given in a query string: `workflow:<uid>` or `entry:<id>` (with `ttl=<seconds>`)."""
    kind, _, ident = text.partition(":")
    body: RefBody = {"kind": "workflow" if kind == "workflow" else "entry", "id": ident}
    if kind not in ("workflow", "entry"):
        raise BadRequest(f"ref={text[:80]!r}: expected workflow:<uid> or entry:<id>")
    if kind == "entry":
        try:
            body["ttl_seconds"] = float(ttl or "")
        except ValueError:
            raise BadRequest("ref=entry:<id> needs ttl=<seconds>") from None
    return body
