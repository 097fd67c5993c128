"""Pods created by the Argo controller: memoization at admission.

Parse the Argo pod layout → derive the cache key → ask Redis once → hit: replay the cached outputs (replay.py);
miss: annotate the pod with its key and why it missed, so a user can see it (`kubectl describe pod`). Pods are only
touched on CREATE: their spec is immutable afterwards (argo-facts.md).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from wfboost.argo.pods import ArgoStep, NotAContainerStep, NotAnArgoStep, is_argo_step_pod, parse_pod
from wfboost.cache.eligibility import BadControl, skip_reason, step_controls
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.store import CacheStore, Verdict
from wfboost.kube import KubeError, resource_path
from wfboost.policy.controls import CACHE_ARTIFACTS, CACHE_HIT, CACHE_KEY, CACHE_OUTCOME, CACHE_SOURCE
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision
from wfboost.webhook.failopen import KubeUnavailable, StoreNotConfigured, UnparseableObject
from wfboost.webhook.replay import NotReplayable, hit_patch, metadata_ops, replay_plan

KINDS = frozenset({("", "Pod")})

ANNOTATION_KEY = CACHE_KEY
ANNOTATION_OUTCOME = CACHE_OUTCOME
ANNOTATION_SOURCE = CACHE_SOURCE
LABEL_HIT = CACHE_HIT
# The cached artifacts are also written on the pod, for the task result's fallback when Redis cannot answer; a list
# longer than this (rare: hundreds of artifacts) relies on Redis alone.
MAX_ARTIFACTS_ANNOTATION = 32 * 1024


async def admit_pod(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    pod = request.get("object") or {}
    if request["operation"] != "CREATE" or not is_argo_step_pod(pod):
        return UNCHANGED
    if ANNOTATION_OUTCOME in ((pod.get("metadata") or {}).get("annotations") or {}):
        return Decision(outcome="already_decided")  # a reinvocation: deciding again would key the replay itself
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
    settings = ctx.policy.memoize_settings_for(namespace, ctx.namespace_labels)
    if not settings.enabled:
        return Decision(outcome="memoize_off")
    try:
        step = parse_pod(pod, namespace)
    except NotAContainerStep:
        if ctx.metrics is not None:
            ctx.metrics.memo.decisions.labels(decision="skipped", reason="template_resource").inc()
        return Decision(outcome="skipped_template_resource")
    except NotAnArgoStep as exc:
        raise UnparseableObject(f"not a pod layout wfboost knows: {exc}") from None
    try:
        controls = step_controls(step)
    except BadControl as exc:
        return _note(ctx, step, "skipped", "bad_control", str(exc))
    if step.offloads:
        step = await _with_offloaded(step, ctx)
    reason = skip_reason(step, settings, controls)
    if reason is not None:
        return _note(ctx, step, "skipped", reason)
    key = cache_key(key_material(step, share_across_namespaces=settings.share_across_namespaces, seed=controls.seed))
    staleness = settings.staleness(controls.max_staleness)
    store = ctx.store
    if not isinstance(store, CacheStore):
        raise StoreNotConfigured("memoization is on but no Redis URL is configured (--redis-url)")
    if staleness.total_seconds() <= 0:
        await _forget_earlier_hit(ctx, store, step)
        return _note(ctx, step, "miss", "staleness_zero", key=key)
    started = time.perf_counter()
    found = await store.lookup(key, staleness=staleness, adopt=not ctx.dry_run)
    if ctx.metrics is not None:
        ctx.metrics.memo.lookup_latency.observe(time.perf_counter() - started)
    if found.verdict is not Verdict.HIT or found.entry is None:
        await _forget_earlier_hit(ctx, store, step)
        return _note(ctx, step, "miss", "no_entry", key=key)
    entry = found.entry
    try:
        plan = replay_plan(step, entry)
    except NotReplayable as exc:
        await _forget_earlier_hit(ctx, store, step)
        return _note(ctx, step, "miss", str(exc).split(":", 1)[0], str(exc), key=key)
    producer = entry["producer"]
    source = {
        "namespace": producer["namespace"],
        "workflow": producer["workflow"],
        "node": producer["node_name"],
        "finishedAt": entry["finished_at"],
        "entry": entry["entry_id"],
    }
    annotations = {ANNOTATION_KEY: key, ANNOTATION_OUTCOME: "hit", ANNOTATION_SOURCE: orjson.dumps(source).decode()}
    artifacts = orjson.dumps(entry["artifacts"]).decode()
    if len(artifacts) <= MAX_ARTIFACTS_ANNOTATION:  # pod annotations share 256 KiB in all
        annotations[CACHE_ARTIFACTS] = artifacts
    ops = hit_patch(step, plan, settings.replay, labels={LABEL_HIT: "true"}, annotations=annotations)
    if not ctx.dry_run:
        await store.mark_hit(namespace, step.workflow_uid, step.node_id, entry)
    if ctx.metrics is not None:
        ctx.metrics.memo.decisions.labels(decision="hit", reason="").inc()
        ctx.metrics.memo.replayed_bytes.inc(sum(len(e["value"]) for e in plan.env))
    return Decision(ops, "hit")


async def _forget_earlier_hit(ctx: AdmissionContext, store: CacheStore, step: ArgoStep) -> None:
    """A node replayed earlier (its marker still there) that now runs for real: `argo retry`, a resubmitted node.
    One more command on misses only; a miss then runs a whole step, which dwarfs it."""
    if not ctx.dry_run:
        await store.clear_hit(step.namespace, step.workflow_uid, step.node_id)


def _note(
    ctx: AdmissionContext, step: ArgoStep, decision: str, reason: str, detail: str = "", *, key: str = ""
) -> Decision:
    """Leave the pod as it is, but say on it what memoization decided and why."""
    if ctx.metrics is not None:
        ctx.metrics.memo.decisions.labels(decision=decision, reason=reason).inc()
    annotations = {ANNOTATION_OUTCOME: f"{decision}: {detail or reason}"}
    if key:
        annotations[ANNOTATION_KEY] = key
    return Decision(metadata_ops(step.pod, labels={}, annotations=annotations), f"{decision}_{reason}")


async def _with_offloaded(step: ArgoStep, ctx: AdmissionContext) -> ArgoStep:
    """Read the ConfigMap the controller created for an oversized template or args (named after the pod)."""
    if ctx.kube is None:
        raise KubeUnavailable(f"{step.pod_name}: {', '.join(step.offloads)} offloaded and no Kubernetes API access")
    path = resource_path("", "v1", "configmaps", step.namespace, step.pod_name)
    try:
        configmap: Any = await ctx.kube.get(path)
    except KubeError as exc:
        raise KubeUnavailable(f"reading ConfigMap {step.namespace}/{step.pod_name}: {exc}") from exc
    try:
        return step.with_offloaded(configmap.get("data") or {})
    except NotAnArgoStep as exc:
        raise UnparseableObject(str(exc)) from None

