"""Workflows: large node statuses stored compressed, in the controller's own format (wfboost.shrink.status).

Moving bulky spec values to the side store is not built yet; until then only `status` is ever changed, and only
where the policy's `compressStatus` switch is on.
"""

from __future__ import annotations

import asyncio
import logging

from wfboost.shrink.status import compress_status, status_nodes_json
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision

log = logging.getLogger(__name__)

KINDS = frozenset({("argoproj.io", "Workflow")})

# Below this, compressing in the event loop is cheaper than handing the work to a thread.
_INLINE_BYTES = 256 * 1024


async def admit_workflow(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    namespace = request.get("namespace") or ""
    if not ctx.policy.compress_status_in(namespace, ctx.namespace_labels):
        return UNCHANGED
    workflow = request.get("object") or {}
    settings = ctx.policy.shrink
    chosen = status_nodes_json(workflow, settings.status_threshold_bytes)
    if isinstance(chosen, str):
        return Decision(outcome=chosen)
    if len(chosen) < _INLINE_BYTES:
        compressed = compress_status(chosen, settings.status_compression)
    else:
        compressed = await asyncio.to_thread(compress_status, chosen, settings.status_compression)
    saved = compressed.nodes_bytes - compressed.compressed_bytes
    if saved <= 0:
        return Decision(outcome="status_incompressible")
    ctx.metrics.shrink.bytes_saved.labels(what="status").inc(saved)
    log.debug(
        "Workflow %s/%s: status.nodes %d bytes stored as compressedNodes of %d",
        namespace, request.get("name", ""), compressed.nodes_bytes, compressed.compressed_bytes,
    )
    return Decision(compressed.ops, "status_compressed")
