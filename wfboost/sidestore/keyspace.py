"""Every Redis key the side store uses, in one place, so the keyspace is documented by the code.

Per-namespace keys carry the namespace in braces (a Redis Cluster hash tag) so that a blob's record, its
references, its namespace's usage counter and its objects being written sit in one slot and change together in one
script or transaction. The few global keys (the namespaces, the uploads' clock, the stored-bytes gauges) are only
ever changed on their own, so the whole keyspace works on a Redis Cluster as on one Redis (docs/sidestore.md).
"""

from __future__ import annotations

PREFIX = "wfboost:sidestore:v1:"


def blob(namespace: str, digest: str) -> str:
    """Hash: manifest, size, stored, backend, created."""
    return f"{PREFIX}{{{namespace}}}:blob:{digest}"


def refs(namespace: str, digest: str) -> str:
    """Hash: reference ("workflow:<uid>" | "entry:<id>") -> JSON {added, expires}."""
    return f"{PREFIX}{{{namespace}}}:refs:{digest}"


def by_ref(namespace: str, ref: str) -> str:
    """Set of digests one reference holds (to drop a reference everywhere at once)."""
    return f"{PREFIX}{{{namespace}}}:byref:{ref}"


def index(namespace: str) -> str:
    """Sorted set (all scores 0, ordered by digest) of the namespace's blobs, for listing and sweeping."""
    return f"{PREFIX}{{{namespace}}}:index"


def usage(namespace: str) -> str:
    """Plain bytes the namespace holds, blobs and parts of unfinished uploads, counted against its quota."""
    return f"{PREFIX}{{{namespace}}}:usage"


def upload(namespace: str, upload_id: str) -> str:
    """Hash: "meta" -> JSON of the upload; "part:<n>" -> JSON of a received part."""
    return f"{PREFIX}{{{namespace}}}:upload:{upload_id}"


def completed(namespace: str, upload_id: str) -> str:
    """The digest a finished upload produced, kept a while so a retried "complete" gets the same answer."""
    return f"{PREFIX}{{{namespace}}}:completed:{upload_id}"


def pending(namespace: str) -> str:
    """Sorted set "<backend>|<object>" by write start: the namespace's objects not yet owned by a record. Released
    in the same script that creates the record, so a crash can leave an object here but never a recorded one."""
    return f"{PREFIX}{{{namespace}}}:pending"


NAMESPACES = PREFIX + "namespaces"  # set of namespaces that ever wrote something (added before the first byte)
UPLOADS = PREFIX + "uploads"  # sorted set "<namespace>/<id>" by start time, for expiry
# Where side stores before per-namespace pending sets listed objects being written; the sweeper still reclaims
# what a crash of such a version left there.
LEGACY_PENDING = PREFIX + "pending"


def stored(backend: str) -> str:
    """Compressed bytes held by one backend (for the metrics)."""
    return f"{PREFIX}stored:{backend}"


def data_index(key: str) -> str:
    return f"{PREFIX}data:{key}:index"


def data_chunk(key: str, index: int) -> str:
    return f"{PREFIX}data:{key}:chunk:{index}"
