"""WorkflowTaskResults written by Argo's wait container: where output shrinking and cached artifact
locations will act. Until then, every task result is admitted unchanged.
"""

from __future__ import annotations

from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision

KINDS = frozenset({("argoproj.io", "WorkflowTaskResult")})


async def admit_taskresult(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    return UNCHANGED
