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

import orjson
from redis.exceptions import RedisError

from wfboost.argo import names
from wfboost.argo.pods import owner_workflow_uid
from wfboost.kube import KubeError, resource_path
from wfboost.policy.controls import CACHE_ARTIFACTS, CACHE_HIT
from wfboost.structs.admission import AdmissionRequest
from wfboost.structs.patch import PatchOp
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision
from wfboost.webhook.errors import StoreNotConfigured

KINDS = frozenset({("argoproj.io", "WorkflowTaskResult")})

# Keys of an Argo artifact that say where it is stored; everything else (name, path, mode…) stays as reported.
LOCATION_FIELDS = frozenset(names.ARTIFACT_DRIVERS)
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
    if not artifacts:
        return UNCHANGED
    node_id = str((result.get("metadata") or {}).get("name") or "")
    workflow_uid = owner_workflow_uid(result)
    try:
        marker = await ctx.require_store().hit_marker(namespace, workflow_uid, node_id)
        cached = marker.get("artifacts") or [] if marker is not None else None
    except (RedisError, StoreNotConfigured) as exc:
        # Without this answer a replayed step's placeholders would become its outputs: ask the pod instead.
        cached = await _cached_artifacts_from_pod(ctx, namespace, result, workflow_uid, node_id, exc)
    if cached is None:
        return UNCHANGED
    repointed = repoint_artifacts(artifacts, cached)
    if repointed == artifacts:
        return Decision(outcome="hit_unchanged")
    op: PatchOp = {"op": "replace", "path": "/outputs/artifacts", "value": repointed}
    return Decision([op], "hit_repointed")


async def _cached_artifacts_from_pod(
    ctx: AdmissionContext, namespace: str, result: Mapping[str, Any], workflow_uid: str, node_id: str,
    cause: Exception,
) -> list[Any] | None:
    """The fallback when Redis cannot answer: the newest pod of this node, if it is a replay, carries the cached
    artifacts in an annotation. One API list, only on this rare path; if that fails too, the admission fails open
    (with Redis's error, counted as store_unavailable)."""
    if ctx.kube is None:
        raise cause
    workflow = str(((result.get("metadata") or {}).get("labels") or {}).get(names.LABEL_WORKFLOW, ""))
    try:
        listed = await ctx.kube.list(
            resource_path("", "v1", "pods", namespace), label_selector=f"{names.LABEL_WORKFLOW}={workflow}"
        )
    except KubeError as exc:
        raise cause from exc
    mine = [
        pod for pod in listed.get("items") or []
        if ((pod.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_NODE_ID) == node_id
        and owner_workflow_uid(pod) == workflow_uid
    ]
    if not mine:
        return None
    newest = max(mine, key=lambda pod: str((pod.get("metadata") or {}).get("creationTimestamp") or ""))
    meta = newest.get("metadata") or {}
    if (meta.get("labels") or {}).get(CACHE_HIT) != "true":
        return None
    try:
        cached = orjson.loads((meta.get("annotations") or {}).get(CACHE_ARTIFACTS, "[]"))
    except orjson.JSONDecodeError:
        return None
    return cached if isinstance(cached, list) else None


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
