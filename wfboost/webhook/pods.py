"""Pods created by the Argo controller: where memoization and latching will act.

Until those features land, every pod is admitted unchanged; the route, scope checks and fail-open path are live.
"""

from __future__ import annotations

from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision

KINDS = frozenset({("", "Pod")})


async def admit_pod(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    return UNCHANGED
