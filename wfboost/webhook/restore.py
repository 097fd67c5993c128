"""Pods of shrunk Workflows: references put back before the pod exists (wfboost.shrink.restore).

The route is `fail_closed` (admission.py) and its webhook entry `failurePolicy: Fail`: a pod routed here (template
label `wfboost.io/restore`) that holds references either gets every value back or is refused; it never starts with
a reference in place of its value. Refusals are 429 when a retry can succeed (the side store unreachable), which
Argo's controller treats as transient (`errorsutil.IsTransientErr` in util/errors, v3.5.14 to v4.1.2: the node stays
Pending with the message and the pod is created again), and 400 when it never can (a value gone from the side
store, a restored string over Linux's limit, a reference where it cannot be restored), which fails the node with the
message.

A value over Linux's 128 KiB per-string limit reaches its container the way Argo 3.7.10+ passes long arguments (the
policy's `shrink.controllerVersion` says the controllers do): in a ConfigMap named after the pod, which this webhook
creates before answering (wfboost.argo.offload). A dry run creates nothing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from wfboost.argo.offload import offloads_container_args
from wfboost.blobs.client import SideStoreClientError, SideStoreUnavailable
from wfboost.kube import KubeApiError, KubeError, resource_path
from wfboost.shrink.refs import Reference, ReferenceMismatch, references_in, value_of
from wfboost.shrink.restore import RestoreRefused, offloaded_slots, pod_references, restore_pod
from wfboost.shrink.tables import ArgumentTable, TableError, parse_table
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision, Denial
from wfboost.webhook.errors import KubeUnavailable

log = logging.getLogger(__name__)

KINDS = frozenset({("", "Pod")})


async def admit_restore(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    pod = request.get("object") or {}
    if request.get("operation") != "CREATE":
        return UNCHANGED
    references = pod_references(pod)
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
    metadata = pod.get("metadata") or {}
    what = f"pod {namespace}/{metadata.get('name') or metadata.get('generateName', '')}"
    offloaded = offloaded_slots(pod)
    if not references:
        if offloaded and await _offload_holds_references(namespace, str(metadata.get("name") or ""), ctx):
            # values arriving at run time made Argo move the template (or the arguments) to its ConfigMap, with the
            # references in it: the process would read them there
            return _refuse(what, 400, f"{', '.join(offloaded)} read(s) Argo's offload ConfigMap, which holds "
                                      "references wfboost cannot restore there; keep this Workflow's values inline "
                                      "(wfboost.io/shrink off)")
        return Decision(outcome="no_references")
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
        version = ctx.policy.shrink.controller_version
        restored = restore_pod(pod, values, tables, offload_args=offloads_container_args(version),
                               controller_version=version)
    except RestoreRefused as exc:
        return _refuse(what, 429 if exc.transient else 400, str(exc))
    if restored.configmap is not None and not ctx.dry_run:  # a dry run writes nothing (sideEffects: NoneOnDryRun)
        refusal = await _create_configmap(restored.configmap, namespace, ctx)
        if refusal is not None:
            return _refuse(what, *refusal)
        return Decision(restored.ops, "restored_offloaded")
    return Decision(restored.ops, "restored")


async def _create_configmap(configmap: dict[str, Any], namespace: str, ctx: AdmissionContext) -> tuple[int, str] | None:
    """The ConfigMap Argo would have made for the pod's arguments, made first; one the same name already holds is
    accepted only with the same arguments (the controller re-creating a pod after a refusal finds the first)."""
    name = configmap["metadata"]["name"]
    if ctx.kube is None:
        return 429, "its arguments go in a ConfigMap, and the webhook has no Kubernetes API access"
    try:
        await ctx.kube.create(resource_path("", "v1", "configmaps", namespace), configmap)
        return None
    except KubeApiError as exc:
        if exc.status != 409:
            return (429 if exc.status >= 500 or exc.status == 429 else 400), f"creating ConfigMap {name}: {exc}"
    except KubeError as exc:
        return 429, f"creating ConfigMap {name}: {exc}"
    try:
        existing = await ctx.kube.get(resource_path("", "v1", "configmaps", namespace, name))
    except KubeError as exc:
        return 429, f"reading ConfigMap {name}: {exc}"
    if (existing.get("data") or {}) != configmap["data"]:
        return 400, f"ConfigMap {namespace}/{name} exists and holds other arguments"
    return None


def _refuse(what: str, code: int, reason: str) -> Decision:
    message = f"wfboost cannot restore the values of this pod: {reason}"
    log.warning("refusing %s (%d): %s", what, code, reason)
    return Decision(outcome="refused", denial=Denial(code, message))


async def _offload_holds_references(namespace: str, name: str, ctx: AdmissionContext) -> bool:
    """Whether the ConfigMap Argo offloaded this pod's template or arguments to (named after the pod) holds
    reference text. Unreadable for now: KubeUnavailable (429, the controller creates the pod again later)."""
    if ctx.kube is None:
        raise KubeUnavailable("the pod reads Argo's offload ConfigMap and the webhook has no Kubernetes API access")
    try:
        configmap = await ctx.kube.get(resource_path("", "v1", "configmaps", namespace, name))
    except KubeApiError as exc:
        if exc.status == 404:
            return False  # nothing offloaded under this name: the executor finds nothing to read either
        raise KubeUnavailable(f"reading ConfigMap {namespace}/{name}: {exc}") from exc
    except KubeError as exc:
        raise KubeUnavailable(f"reading ConfigMap {namespace}/{name}: {exc}") from exc
    return bool(references_in(orjson.dumps(configmap.get("data") or {}).decode()))
