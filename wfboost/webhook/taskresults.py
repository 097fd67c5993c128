"""WorkflowTaskResults written by Argo's wait container: putting a replayed step's artifacts back, and moving bulky
output values to the side store.

A replayed pod uploads nothing; its executor's template carried the replay marker instead of the output artifacts
(wfboost.cache.marker), so the step's own task result reports the marker among its output parameters. At each
CREATE and UPDATE of such a task result (the wait container creates it, then merge-patches it several times), the
marker is swapped for the cached artifacts: downstream steps read the cached data, nothing is copied, and their own
cache keys (which include input artifact locations) match the first run's, so chained steps hit too. Pure: the task
result itself says whether it comes from a replay and where its artifacts are, so no Redis and no API call is
needed, and a task result without a marker (a step that ran for real) is never touched by it. When this webhook
cannot answer, the recorder finds the marker on the completed task result and makes the same change.

With `shrinkTaskResults` on, an output value of at least `valueThresholdBytes` whose name is movable in the Workflow
as stored (wfboost.shrink.outputs: every consumer only copies it into container strings, and carries the restore
mark the Workflow's CREATE gave it) is stored in the side store, held by the Workflow's uid, and replaced by its
reference; the controller hands the reference to the consumers, whose pods get the value back at CREATE
(wfboost.webhook.restore). Only a task result with such a value costs anything more: one GET of its Workflow (kept
briefly, by uid; analysed once per version of its spec) and one PUT per value.
Any failure there moves nothing (the value stays inline, counted as fail-open), never losing the replay's change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from wfboost.blobs.client import SideStoreClientError
from wfboost.cache.marker import REPLAYED_ANNOTATION, BadMarker, restored_outputs
from wfboost.shrink.outputs import why_output_stays
from wfboost.shrink.refs import reference_for
from wfboost.structs.admission import AdmissionRequest
from wfboost.structs.patch import PatchOp
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision
from wfboost.webhook.errors import KubeUnavailable, SideStoreNotConfigured
from wfboost.webhook.failopen import FailOpen
from wfboost.webhook.replay import metadata_ops

log = logging.getLogger(__name__)

KINDS = frozenset({("argoproj.io", "WorkflowTaskResult")})


async def admit_taskresult(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    result = request.get("object") or {}
    outputs = result.get("outputs")
    if not isinstance(outputs, dict) or not outputs.get("parameters"):
        return UNCHANGED
    try:
        restored = restored_outputs(outputs)
    except BadMarker as exc:
        log.warning("task result %s/%s: %s; left as it is", request.get("namespace"), request.get("name"), exc)
        return Decision(outcome="bad_marker")
    current = restored if restored is not None else outputs
    moved = await _moved_outputs(request, result, current, ctx)
    if restored is not None:
        parameters = [dict(p) for p in restored.get("parameters") or []]
        for index, reference in moved.items():
            parameters[index]["value"] = reference
        ops: list[PatchOp] = [{"op": "replace", "path": "/outputs",
                               "value": {**restored, "parameters": parameters} if moved else restored}]
        ops.extend(metadata_ops(result, labels={}, annotations={REPLAYED_ANNOTATION: "true"}))
        return Decision(ops, "replay_restored")
    if not moved:
        return UNCHANGED
    return Decision([{"op": "replace", "path": f"/outputs/parameters/{index}/value", "value": reference}
                     for index, reference in sorted(moved.items())], "outputs_moved")


async def _moved_outputs(request: AdmissionRequest, result: Mapping[str, Any], outputs: Mapping[str, Any],
                         ctx: AdmissionContext) -> dict[int, str]:
    """Index of each output parameter moved to the side store -> its reference; {} when nothing moves."""
    namespace = request.get("namespace") or ""
    if not ctx.policy.shrink_task_results_in(namespace, ctx.namespace_labels):
        return {}
    threshold = ctx.policy.shrink.value_threshold_bytes
    parameters = outputs.get("parameters")
    candidates = {index: p for index, p in enumerate(parameters if isinstance(parameters, list) else [])
                  if isinstance(p, Mapping) and isinstance(p.get("value"), str) and len(p["value"]) * 4 >= threshold
                  and isinstance(p.get("name"), str)}
    if not candidates:
        return {}  # the common case: small outputs, no API call
    owner = _workflow_owner(result)
    if owner is None or ctx.dry_run:
        return {}  # a dry run stores nothing, so nothing may point at the side store
    name, uid = owner
    try:
        verdict = await ctx.movable_outputs.of(ctx.kube, namespace, name, uid)
    except KubeUnavailable as exc:
        return _failed(ctx, FailOpen.KUBE_UNAVAILABLE, request, exc)
    chosen = {index: p["value"] for index, p in candidates.items() if p["name"] in verdict
              and why_output_stays(p["value"], verdict[p["name"]], threshold) is None}
    if not chosen:
        return {}
    values = {value.encode() for value in chosen.values()}
    try:
        client = ctx.require_sidestore()
        async with asyncio.timeout(max(0.01, ctx.remaining() - 0.05)):
            await asyncio.gather(*(client.put(namespace, data, refs=[{"kind": "workflow", "id": uid}])
                                   for data in values))
    except (SideStoreClientError, SideStoreNotConfigured, TimeoutError) as exc:
        return _failed(ctx, FailOpen.SIDESTORE_UNAVAILABLE, request, exc)
    moved = {index: reference_for(value).text for index, value in chosen.items()}
    ctx.metrics.shrink.values_moved.inc(len(moved))
    ctx.metrics.shrink.bytes_saved.labels(what="outputs").inc(sum(
        len(orjson.dumps(value)) - len(orjson.dumps(moved[index])) for index, value in chosen.items()))
    log.info("task result %s/%s of Workflow %s: %d output value(s) moved to the side store", namespace,
             request.get("name") or "", name, len(moved))
    return moved


def _workflow_owner(result: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the Workflow that owns the task result (the executor sets it: taskresult.go)."""
    metadata = result.get("metadata")
    for owner in (metadata.get("ownerReferences") or [] if isinstance(metadata, Mapping) else []):
        if (isinstance(owner, Mapping) and owner.get("kind") == "Workflow"
                and str(owner.get("apiVersion", "")).startswith("argoproj.io/")
                and isinstance(owner.get("name"), str) and isinstance(owner.get("uid"), str) and owner["uid"]):
            return owner["name"], owner["uid"]
    return None


def _failed(ctx: AdmissionContext, reason: FailOpen, request: AdmissionRequest, exc: BaseException) -> dict[int, str]:
    ctx.metrics.fail_open.labels(reason=reason.value).inc()
    log.warning("task result %s/%s: outputs left inline (%s): %s", request.get("namespace"), request.get("name"),
                reason.value, exc or type(exc).__name__)
    return {}
