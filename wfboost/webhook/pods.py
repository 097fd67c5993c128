"""Pods created by the Argo controller: memoization and latching at admission.

Parse the Argo pod layout → assess the step (may it be memoized; its key) → ask Redis once (the entry, or with
latching the lease) → decide (hit, miss, skipped or deferred, memoize.py) → patch: a replay for a hit (replay.py),
annotations saying why otherwise; a follower of an identical step in flight is refused with 429, which Argo's
controller retries (docs/latching.md). Pods are only touched on CREATE: their spec is immutable afterwards.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from wfboost.argo.pods import ArgoStep, NotAContainerStep, NotAnArgoStep, is_argo_step_pod, parse_pod
from wfboost.cache.eligibility import Candidate, assess
from wfboost.cache.keyspace import node_identity
from wfboost.cache.leases import lease_owner
from wfboost.cache.runs import new_run_id
from wfboost.cache.store import LeaseRequest, Lookup, Verdict
from wfboost.kube import KubeError, ObjectApi, resource_path
from wfboost.policy.controls import CACHE_OUTCOME
from wfboost.shrink.restore import pod_references
from wfboost.shrink.workflow import RESTORE_LABEL
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision, Denial
from wfboost.webhook.errors import KubeUnavailable, UnparseableObject
from wfboost.webhook.memoize import decide, patch_for

log = logging.getLogger(__name__)

KINDS = frozenset({("", "Pod")})
# A follower stops waiting this long before its own deadline, so that it still has time to run.
DEADLINE_MARGIN = timedelta(minutes=2)


async def admit_pod(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    pod = request.get("object") or {}
    if request["operation"] != "CREATE" or not is_argo_step_pod(pod):
        return UNCHANGED
    if CACHE_OUTCOME in ((pod.get("metadata") or {}).get("annotations") or {}):
        return Decision(outcome="already_decided")  # a reinvocation: deciding again would key the replay itself
    _notice_unrestored(pod, ctx)
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
    settings = ctx.policy.memoize_settings_for(namespace, ctx.namespace_labels)
    if not settings.enabled:
        return Decision(outcome="memoize_off")
    step = await read_step(pod, namespace, ctx.kube)
    if step is None:
        ctx.metrics.memo.decisions.labels(decision="skipped", reason="template_resource").inc()
        return Decision(outcome="skipped_template_resource")
    assessment = assess(step, settings)
    latch = _latch_for(ctx, step, assessment) if isinstance(assessment, Candidate) else None
    found = await _lookup(ctx, step, assessment, latch) if isinstance(assessment, Candidate) else None
    decision = decide(step, assessment, found, owner=latch[0].owner if latch else "")
    ctx.metrics.memo.decisions.labels(decision=decision.verdict, reason=decision.reason).inc()
    ctx.metrics.memo.replayed_bytes.inc(decision.replayed_bytes)
    if decision.verdict == "hit" and decision.entry is not None and not ctx.dry_run:
        ctx.metrics.memo.saved_seconds.inc(max(0, decision.entry.get("ran_ms", 0)) / 1000)
    if found is not None:
        _count_latch(ctx, found)
    if ctx.tally is not None and not ctx.dry_run:
        ctx.tally.note(namespace, decision.verdict, decision.entry.get("ran_ms", 0) if decision.entry else 0)
    if decision.verdict == "deferred":
        message = (f"wfboost: an identical step is running ({decision.leader}); this one waits for its result "
                   "and is created again by the controller")
        return Decision(outcome=decision.outcome, denial=Denial(429, message))
    return Decision(patch_for(step, decision, settings.replay, run_id=new_run_id()), decision.outcome)


def _latch_for(ctx: AdmissionContext, step: ArgoStep, candidate: Candidate) -> tuple[LeaseRequest, timedelta] | None:
    """The lease to ask for and how long this pod may wait as a follower: where latching is on, for a step that
    would take the leader's result (staleness above zero, its own `wfboost.io/latch` not "false"), never on a dry
    run (which writes nothing).

    A deferred node stays Pending, and Argo fails a Pending node at its deadline (`ARGO_DEADLINE`: the workflow's
    and the template's, operator.go checkTemplateTimeout): the wait ends DEADLINE_MARGIN before it, and a step
    closer than that to its deadline runs at once."""
    latch = ctx.policy.latch_settings_for(step.namespace, ctx.namespace_labels)
    if not latch.enabled or ctx.dry_run or candidate.controls.latch is False:
        return None
    if candidate.staleness.total_seconds() <= 0:
        return None
    wait = latch.follower_wait
    deadline = _deadline(step)
    if deadline is not None:
        left = deadline - datetime.now(UTC) - DEADLINE_MARGIN
        if left <= timedelta(0):
            return None
        wait = min(wait, left)
    return LeaseRequest(lease_owner(step), latch.lease_ttl), wait


def _deadline(step: ArgoStep) -> datetime | None:
    text = next((e.get("value") for e in step.main.get("env") or [] if e.get("name") == "ARGO_DEADLINE"), None)
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _count_latch(ctx: AdmissionContext, found: Lookup) -> None:
    latch = ctx.metrics.latch
    if found.verdict is Verdict.LEADER:
        latch.leaders.inc()
        if found.waited_ms:
            latch.takeovers.inc()  # it was a follower: the leader it waited for was released
    elif found.verdict is Verdict.FOLLOWER:
        latch.deferrals.inc()
    elif found.verdict is Verdict.WAITED:
        latch.waited_out.inc()
    if found.waited_ms and found.verdict in (Verdict.HIT, Verdict.LEADER):
        latch.wait_seconds.labels(then=found.verdict.value).observe(found.waited_ms / 1000)


def _notice_unrestored(pod: dict[str, Any], ctx: AdmissionContext) -> None:
    """A pod holding reference text that was not routed to the restoring entry: a gap in the analysis, or a webhook
    configuration without restore.wfboost.io. It cannot be refused here (this entry fails open): say it loudly."""
    if RESTORE_LABEL in ((pod.get("metadata") or {}).get("labels") or {}) or not pod_references(pod):
        return
    metadata = pod.get("metadata") or {}
    log.error("pod %s/%s holds wfboost references but is not marked for restoring; it will run with them",
              metadata.get("namespace"), metadata.get("name") or metadata.get("generateName"))
    ctx.metrics.shrink.unrestored_pods.inc()


async def read_step(pod: dict[str, Any], namespace: str, kube: ObjectApi | None) -> ArgoStep | None:
    """The parsed step, with a template or args the controller offloaded read from the pod's ConfigMap; None for a
    resource or data step (its main container is argoexec itself: nothing to memoize)."""
    try:
        step = parse_pod(pod, namespace)
    except NotAContainerStep:
        return None
    except NotAnArgoStep as exc:
        raise UnparseableObject(f"not a pod layout wfboost knows: {exc}") from None
    if not step.offloads:
        return step
    if kube is None:
        raise KubeUnavailable(f"{step.pod_name}: {', '.join(step.offloads)} offloaded and no Kubernetes API access")
    path = resource_path("", "v1", "configmaps", step.namespace, step.pod_name)
    try:
        configmap = await kube.get(path)
    except KubeError as exc:
        raise KubeUnavailable(f"reading ConfigMap {step.namespace}/{step.pod_name}: {exc}") from exc
    try:
        return step.with_offloaded(configmap.get("data") or {})
    except NotAnArgoStep as exc:
        raise UnparseableObject(str(exc)) from None


async def _lookup(
    ctx: AdmissionContext, step: ArgoStep, candidate: Candidate, latch: tuple[LeaseRequest, timedelta] | None
) -> Lookup | None:
    """The store's answer, in one round trip; not asked for a step that never reuses (staleness P0D). Dry runs
    write nothing (no adoption onto another track, no served node, no lease)."""
    if candidate.staleness.total_seconds() <= 0:
        return None
    store = ctx.require_store()
    started = time.perf_counter()
    node = node_identity(step.namespace, step.workflow_uid, step.node_name)
    lease, wait = latch if latch is not None else (None, timedelta(0))
    found = await store.lookup(candidate.key, staleness=candidate.staleness, adopt=not ctx.dry_run, node=node,
                               lease=lease, follower_wait=wait)
    ctx.metrics.memo.lookup_latency.observe(time.perf_counter() - started)
    return found
