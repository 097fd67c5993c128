"""WorkflowTaskResults written by Argo's wait container: pointing a replayed step's artifacts at the cached ones.

A replayed pod's wait container uploads the empty placeholder files the replay created, to new keys. When it writes
its task result (named after the node id, owned by the workflow), this handler swaps each artifact's location for
the one recorded in the cache entry, so nothing is copied, downstream steps read the real data, and their own cache
keys (which include input artifact locations) match the first run's: chained steps hit too. The swapped artifacts are
marked `artifactGC: Never`: the data is shared by every run that hits it, and a consumer's artifact GC must not
delete it (entries expire on their own; see docs/memoization.md). Output shrinking will also act here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wfboost.argo.pods import owner_workflow_uid
from wfboost.cache.store import CacheStore
from wfboost.structs.admission import AdmissionRequest
from wfboost.structs.patch import PatchOp
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision

KINDS = frozenset({("argoproj.io", "WorkflowTaskResult")})

# Keys of an Argo artifact that say where it is stored; everything else (name, path, mode…) stays as reported.
LOCATION_FIELDS = frozenset({"s3", "gcs", "oss", "hdfs", "artifactory", "azure", "http", "git", "raw", "plugin"})
# Never copied from the producer nor kept from the placeholder: GC settings and the "deleted" flag.
GC_FIELDS = frozenset({"artifactGC", "deleted"})
# The cached data belongs to every run that hits it: the consumer's artifact GC must never delete it.
NEVER_COLLECT = {"strategy": "Never"}
# Argo's archived container logs are the replay's own, not the producer's: left as reported.
LOG_ARTIFACTS = frozenset({"main-logs"})


async def admit_taskresult(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    result = request.get("object") or {}
    namespace = request.get("namespace") or (result.get("metadata") or {}).get("namespace") or ""
    if not ctx.policy.memoize_settings_for(namespace, ctx.namespace_labels).enabled:
        return UNCHANGED
    artifacts = (result.get("outputs") or {}).get("artifacts")
    if not artifacts or not isinstance(ctx.store, CacheStore):
        return UNCHANGED
    node_id = str((result.get("metadata") or {}).get("name") or "")
    marker = await ctx.store.hit_marker(namespace, owner_workflow_uid(result), node_id)
    if marker is None:
        return UNCHANGED
    repointed = repoint_artifacts(artifacts, marker.get("artifacts") or [])
    if repointed == artifacts:
        return Decision(outcome="hit_unchanged")
    op: PatchOp = {"op": "replace", "path": "/outputs/artifacts", "value": repointed}
    return Decision([op], "hit_repointed")


def repoint_artifacts(reported: list[Any], cached: list[Mapping[str, Any]]) -> list[Any]:
    """Each reported artifact with the cached artifact's location, matched by name; others as reported."""
    by_name = {a.get("name"): a for a in cached if isinstance(a, Mapping) and a.get("name") not in LOG_ARTIFACTS}
    result: list[Any] = []
    for artifact in reported:
        source = by_name.get(artifact.get("name")) if isinstance(artifact, Mapping) else None
        if source is None:
            result.append(artifact)
            continue
        kept = {k: v for k, v in artifact.items() if k not in LOCATION_FIELDS | GC_FIELDS}
        location = {k: v for k, v in source.items() if k in LOCATION_FIELDS}
        result.append({**kept, **location, "artifactGC": dict(NEVER_COLLECT)})
    return result
