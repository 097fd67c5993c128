"""WorkflowTaskResults written by Argo's wait container: putting a replayed step's artifacts back.

A replayed pod uploads nothing; its executor's template carried the replay marker instead of the output artifacts
(wfboost.cache.marker), so the step's own task result reports the marker among its output parameters. At each
CREATE and UPDATE of such a task result (the wait container creates it, then merge-patches it several times), the
marker is swapped for the cached artifacts: downstream steps read the cached data, nothing is copied, and their own
cache keys (which include input artifact locations) match the first run's, so chained steps hit too.

Pure: the task result itself says whether it comes from a replay and where its artifacts are, so no Redis and no
API call is needed, and a task result without a marker (a step that ran for real) is never touched. When this
webhook cannot answer, the recorder finds the marker on the completed task result and makes the same change.
Output shrinking will also act here.
"""

from __future__ import annotations

import logging

from wfboost.cache.marker import REPLAYED_ANNOTATION, BadMarker, restored_outputs
from wfboost.structs.admission import AdmissionRequest
from wfboost.structs.patch import PatchOp
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision
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
    if restored is None:
        return UNCHANGED
    ops: list[PatchOp] = [{"op": "replace", "path": "/outputs", "value": restored}]
    ops.extend(metadata_ops(result, labels={}, annotations={REPLAYED_ANNOTATION: "true"}))
    return Decision(ops, "replay_restored")
