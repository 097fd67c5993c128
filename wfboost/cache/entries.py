"""A cache entry as stored: what a successful step produced and where it came from.

Stored as JSON inside the key's hash; the shape is versioned with the key (keyspace.KEY_VERSION).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class OutputParameter(TypedDict):
    name: str
    value: str


class Producer(TypedDict):
    """The run an entry came from: shown on hits and used by `wfboost cache invalidate --workflow`."""

    namespace: str
    workflow: str
    workflow_uid: str
    node_id: str
    node_name: str
    pod: str


class CacheEntry(TypedDict):
    key: str
    entry_id: str
    finished_at: str  # RFC 3339, the main container's real finish time
    finished_ms: int
    staleness_s: int  # the producer's effective staleness: the track the entry was recorded on
    parameters: list[OutputParameter]
    result: NotRequired[str]  # stdout as Argo captured it, when the producer's template captured it
    artifacts: list[dict[str, Any]]  # Argo artifacts with their locations, as the task result reported them
    image: str  # the image reference as written in the pod
    image_id: str  # containerStatuses[].imageID: the digest the producer actually ran
    producer: Producer
    recorded_at: str
    ran_ms: NotRequired[int]  # main's run time (finishedAt - startedAt): the compute time each hit saves


class LookupAnswer(TypedDict):
    """What the admission-time lookup returns for a hit."""

    entry: CacheEntry
    adopted: bool  # taken from another staleness track and copied onto the requested one
