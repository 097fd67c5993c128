"""Pods of shrunk Workflows: references put back before the pod exists (wfboost.shrink.restore).

The route is `fail_closed` (admission.py) and its webhook entry `failurePolicy: Fail`: a pod routed here (template
label `wfboost.io/restore`) that holds references either gets every value back or is refused; it never starts with
a reference in place of its value. Refusals are 429 when a retry can succeed (the side store unreachable), which
Argo's controller treats as transient (`errorsutil.IsTransientErr` in util/errors, v3.5.14 to v4.1.2: the node stays
Pending with the message and the pod is created again), and 400 when it never can (a value gone from the side
store, a restored string over Linux's limit, a reference where it cannot be restored), which fails the node with the
message.
"""

from __future__ import annotations

import asyncio
import logging

from wfboost.blobs.client import SideStoreClientError, SideStoreUnavailable
from wfboost.shrink.refs import Reference, ReferenceMismatch, value_of
from wfboost.shrink.restore import RestoreRefused, offloaded_slots, pod_references, restore_ops
from wfboost.shrink.tables import ArgumentTable, TableError, parse_table
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision, Denial

log = logging.getLogger(__name__)

KINDS = frozenset({("", "Pod")})


async def admit_restore(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    pod = request.get("object") or {}
    if request.get("operation") != "CREATE":
        return UNCHANGED
    references = pod_references(pod)
    if not references:
        return Decision(outcome="no_references")
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
    metadata = pod.get("metadata") or {}
    what = f"pod {namespace}/{metadata.get('name') or metadata.get('generateName', '')}"
    offloaded = offloaded_slots(pod)
    if offloaded:
        return _refuse(what, 400, f"{', '.join(offloaded)} read(s) Argo's offload ConfigMap, where wfboost cannot "
                                  "restore references; keep this Workflow's values inline (wfboost.io/shrink off)")
    if ctx.sidestore is None:
        return _refuse(what, 429, "the webhook has no side store configured (--sidestore-url)")
    tables: dict[Reference, ArgumentTable] = {}
    for reference in references:
        cached = ctx.tables.get(namespace, reference) if reference.table else None
        if cached is not None:
            tables[reference] = cached
    ordered = sorted(references - tables.keys(), key=lambda r: r.sha256)
    sidestore = ctx.sidestore
    fetched = await asyncio.gather(*(sidestore.get(namespace, r.digest) for r in ordered), return_exceptions=True)
    values: dict[Reference, str] = {}
    for reference, data in zip(ordered, fetched, strict=True):
        if isinstance(data, SideStoreUnavailable):
            return _refuse(what, 429, f"the side store is unreachable ({data.message})")
        if isinstance(data, SideStoreClientError):
            if data.status == 404:
                return _refuse(what, 400, f"{reference.text} is not in the side store for namespace {namespace}")
            if data.status in (401, 403):  # a retry cannot help: say so loudly rather than wait forever
                return _refuse(what, 400, f"the side store refused the webhook's credentials ({data})")
            return _refuse(what, 429, f"the side store answered {data}")
        if isinstance(data, BaseException):
            raise data
        try:
            text = value_of(reference, data)
            if reference.table:
                tables[reference] = parse_table(reference, text)
                ctx.tables.put(namespace, reference, tables[reference])
            else:
                values[reference] = text
        except (ReferenceMismatch, TableError) as exc:
            return _refuse(what, 400, str(exc))
    try:
        ops = restore_ops(pod, values, tables)
    except RestoreRefused as exc:
        return _refuse(what, 429 if exc.transient else 400, str(exc))
    return Decision(ops, "restored")


def _refuse(what: str, code: int, reason: str) -> Decision:
    message = f"wfboost cannot restore the values of this pod: {reason}"
    log.warning("refusing %s (%d): %s", what, code, reason)
    return Decision(outcome="refused", denial=Denial(code, message))
