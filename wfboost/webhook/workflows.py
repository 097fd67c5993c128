"""Workflows: where shrinking (moving bulky values out, compressing status) will act.

Until that feature lands, every Workflow is admitted unchanged.
"""

from __future__ import annotations

from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision

KINDS = frozenset({("argoproj.io", "Workflow")})


async def admit_workflow(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    return UNCHANGED
