"""WorkflowTaskResults written by Argo's wait container: pointing a replayed step's artifacts at the cached ones.

A replayed pod's wait container uploads the empty placeholder files the replay created, to new keys. When it writes
its task result (named after the node id), this handler swaps each artifact's location for the one recorded in the
cache entry, so nothing is copied, downstream steps read the real data, and their own cache keys (which include
input artifact locations) match the first run's: chained steps hit too. Output shrinking will also act here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wfboost.cache.store import CacheStore
from wfboost.structs.admission import AdmissionRequest
from wfboost.structs.patch import PatchOp
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision

KINDS = frozenset({("argoproj.io", "WorkflowTaskResult")})

# Keys of an Argo artifact that say where it is stored; everything else (name, path, mode…) stays as reported.
LOCATION_FIELDS = frozenset(
    {"s3", "gcs", "oss", "hdfs", "artifactory", "azure", "http", "git", "raw", "plugin", "artifactGC", "deleted"}
)


async def admit_taskresult(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    result = request.get("object") or {}
    namespace = request.get("namespace") or (result.get("metadata") or {}).get("namespace") or ""
    if not ctx.policy.memoize_settings_for(namespace, ctx.namespace_labels).enabled:
        return UNCHANGED
    artifacts = (result.get("outputs") or {}).get("artifacts")
    if not artifacts or not isinstance(ctx.store, CacheStore):
        return UNCHANGED
    node_id = str((result.get("metadata") or {}).get("name") or "")
    marker = await ctx.store.hit_marker(namespace, node_id)
    if marker is None:
        return UNCHANGED
    repointed = repoint_artifacts(artifacts, marker.get("artifacts") or [])
    if repointed == artifacts:
        return Decision(outcome="hit_unchanged")
    op: PatchOp = {"op": "replace", "path": "/outputs/artifacts", "value": repointed}
    return Decision([op], "hit_repointed")


def repoint_artifacts(reported: list[Any], cached: list[Mapping[str, Any]]) -> list[Any]:
    """Each reported artifact with the cached artifact's location, matched by name; others as reported."""
    by_name = {a.get("name"): a for a in cached if isinstance(a, Mapping)}
    result: list[Any] = []
    for artifact in reported:
        source = by_name.get(artifact.get("name")) if isinstance(artifact, Mapping) else None
        if source is None:
            result.append(artifact)
            continue
        kept = {k: v for k, v in artifact.items() if k not in LOCATION_FIELDS}
        location = {k: v for k, v in source.items() if k in LOCATION_FIELDS}
        result.append({**kept, **location})
    return result
