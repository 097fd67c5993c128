"""The replay marker: how a replayed step's own task result says where its artifacts are.

A replayed pod must never upload anything (an upload would put the replay's files where Argo's default key or an
explicit `s3.key` points, beside or over the objects entries point at), so the hit patch takes the output
artifacts out of the template Argo's executor reads, and adds one output parameter instead: this marker, whose
`valueFrom.default` carries the cached artifacts. Argo's wait container reports it like any parameter (the file at
its path never exists, so the default is used: executor.go `SaveParameters`), which puts it in the step's
WorkflowTaskResult, written by the pod that was replayed and by no other. Whoever sees that task result first (the
webhook at its CREATE/UPDATE, else the recorder's watch) swaps the marker for the cached artifacts.

So the marker ties the rewrite to the replayed pod itself: a pod that ran for real never carries one, whatever
Redis said at its admission; and if nobody can rewrite the task result, the step's artifacts are absent (a visible
failure downstream: "Unable to resolve"), never empty files that pass for outputs.

The value is base64 of JSON, so no `$` reaches the kubelet's `$(VAR)` expansion of the env it travels in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import orjson

from wfboost.cache.errors import CacheError

# The parameter's name. A template that declares it itself is never replayed (it could not be told apart).
MARKER_PARAMETER = "wfboost-replay"
# A path no container writes: the wait container then reports the default, which is the marker.
MARKER_PATH = "/var/run/wfboost/replay-marker-never-written"
MARKER_VERSION = 1
# On a task result whose marker was swapped for the cached artifacts: it reports the cache's objects, which this run
# did not write (the recorder never records it).
REPLAYED_ANNOTATION = "wfboost.io/replayed"
# Cached artifacts are shared by every run that replays them: the consumer's artifact GC must never delete them.
NEVER_COLLECT = {"strategy": "Never"}


class ReplayMarker(TypedDict):
    v: int
    key: str  # the cache key
    entry: str  # the entry id the outputs came from
    artifacts: list[dict[str, Any]]  # the cached artifacts, as the task result must report them


class BadMarker(CacheError, ValueError):
    """A marker parameter whose value is not one wfboost wrote; the task result is left as it is."""


def marker_parameter(key: str, entry_id: str, artifacts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The output parameter the hit patch adds to the executor's template."""
    marker: ReplayMarker = {
        "v": MARKER_VERSION,
        "key": key,
        "entry": entry_id,
        "artifacts": [{**dict(a), "artifactGC": dict(NEVER_COLLECT)} for a in artifacts],
    }
    value = base64.b64encode(orjson.dumps(marker)).decode("ascii")
    return {"name": MARKER_PARAMETER, "valueFrom": {"path": MARKER_PATH, "default": value}}


def read_marker(outputs: Mapping[str, Any]) -> ReplayMarker | None:
    """The marker among a task result's output parameters; None when there is none."""
    for parameter in outputs.get("parameters") or []:
        if isinstance(parameter, Mapping) and parameter.get("name") == MARKER_PARAMETER:
            return _decode(parameter.get("value"))
    return None


def _decode(value: Any) -> ReplayMarker:
    try:
        marker = orjson.loads(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise BadMarker(f"{MARKER_PARAMETER} is not a wfboost replay marker: {exc}") from None
    if not isinstance(marker, dict) or marker.get("v") != MARKER_VERSION:
        raise BadMarker(f"{MARKER_PARAMETER} is not a version-{MARKER_VERSION} replay marker")
    if not isinstance(marker.get("artifacts"), list):
        raise BadMarker(f"{MARKER_PARAMETER} is not a version-{MARKER_VERSION} replay marker")
    return ReplayMarker(
        v=MARKER_VERSION, key=str(marker.get("key", "")), entry=str(marker.get("entry", "")),
        artifacts=[a for a in marker["artifacts"] if isinstance(a, dict)],
    )


def restored_outputs(outputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The outputs a replayed step's task result must report: the marker swapped for the cached artifacts. None
    when there is no marker (a step that ran for real, or a task result already restored)."""
    marker = read_marker(outputs)
    if marker is None:
        return None
    restored = {k: v for k, v in outputs.items() if k not in ("parameters", "artifacts")}
    parameters = [
        p for p in outputs.get("parameters") or [] if not (isinstance(p, Mapping) and p.get("name") == MARKER_PARAMETER)
    ]
    if parameters:
        restored["parameters"] = parameters
    kept = [a for a in outputs.get("artifacts") or [] if isinstance(a, Mapping) and a.get("name") == "main-logs"]
    artifacts = [*marker["artifacts"], *kept]  # Argo's archived logs stay the replay's own
    if artifacts:
        restored["artifacts"] = artifacts
    first: tuple[str, ...] = ("parameters", "artifacts", "result", "exitCode")  # Go's field order, for people
    ordered: dict[str, Any] = {k: restored[k] for k in first if k in restored}
    ordered.update((k, v) for k, v in restored.items() if k not in ordered)
    return ordered
