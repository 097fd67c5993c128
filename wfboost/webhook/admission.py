"""The admission pipeline: one AdmissionReview in, one answer out, never an error.

Shared by the HTTPS server and `wfboost review`, so what a user sees offline is what the cluster gets. Each admitted
kind has a handler `(request, context) -> Decision`; this module owns everything around it: scope, the deadline,
turning any failure into "allow, no patch" (failopen.py), and checking that a patch applies to the exact object
received before it is sent (a patch that does not apply fails the request even under failurePolicy Ignore).

One route is the exception: restoring the values of a shrunk Workflow's pods (`fail_closed`). A pod there must never
start with a reference in place of its value, so any failure denies it with 429, which Argo's controller treats as
transient (the node stays Pending with the message, and the pod is created again later), and policy scope does not
apply (a pod that holds references gets them back wherever it is).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wfboost.blobs.client import SideStoreClient
from wfboost.cache.store import CacheStore
from wfboost.cache.tally import CacheTally
from wfboost.kube import ObjectApi
from wfboost.policy import Policy
from wfboost.structs.admission import AdmissionRequest, AdmissionReview
from wfboost.structs.patch import PatchOp
from wfboost.webhook.errors import PatchDoesNotApply, SideStoreNotConfigured, StoreNotConfigured
from wfboost.webhook.failopen import FailOpen, classify
from wfboost.webhook.metrics import Metrics
from wfboost.webhook.movable_outputs import MovableOutputs
from wfboost.webhook.patch_check import PatchFailed, apply_patch
from wfboost.webhook.table_cache import TableCache
from wfboost.webhook.wire import build_denial, build_response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Denial:
    """A refusal: only on the fail-closed route, for a pod whose values cannot be restored."""

    code: int  # 429: transient, the controller creates the pod again later; 400: it never can be
    message: str


@dataclass(frozen=True)
class Decision:
    """What a handler decided. `outcome` is a short label counted in metrics (patched, unchanged, skipped_…)."""

    patch: Sequence[PatchOp] = ()
    outcome: str = "unchanged"
    warnings: Sequence[str] = ()
    denial: Denial | None = None


UNCHANGED = Decision()


@dataclass
class AdmissionContext:
    """What a handler may use. I/O clients are injected so handlers stay testable and the CLI reuses them; a part
    that is not configured is None, and `require_*` turns its absence into the counted fail-open reason."""

    policy: Policy
    deadline: float  # loop.time() after which the answer is "allow, no patch"
    metrics: Metrics
    dry_run: bool = False
    store: CacheStore | None = None  # None when no Redis is configured
    sidestore: SideStoreClient | None = None
    kube: ObjectApi | None = None  # for the rare reads (an offloaded Argo template)
    namespace_labels: Mapping[str, str] | None = None  # None when unknown: label-gated policy rules do not match
    tables: TableCache = field(default_factory=TableCache)  # argument tables already fetched, for restoring
    movable_outputs: MovableOutputs = field(default_factory=MovableOutputs)  # Workflows' verdicts, for task results
    tally: CacheTally | None = None  # hits and misses for `wfboost cache stats`, written to Redis in the background

    def remaining(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def require_store(self) -> CacheStore:
        if self.store is None:
            raise StoreNotConfigured("memoization is on but no Redis URL is configured (--redis-url)")
        return self.store

    def require_sidestore(self) -> SideStoreClient:
        if self.sidestore is None:
            raise SideStoreNotConfigured("shrinkWorkflows is on but no side store is configured (--sidestore-url)")
        return self.sidestore


Handler = Callable[[AdmissionRequest, AdmissionContext], Awaitable[Decision]]


@dataclass(frozen=True)
class Route:
    """An admitted kind: where the API server sends it, which objects belong there and who decides."""

    name: str  # URL path segment: /mutate/<name>
    kinds: frozenset[tuple[str, str]]  # (group, kind) accepted on this route
    handler: Handler
    fail_closed: bool = False  # failures deny (429) instead of allowing; policy scope does not apply
    # Admits cluster-scoped objects too (a ClusterWorkflowTemplate): they belong to no namespace, so the namespace
    # scope cannot apply to them and the handler decides alone.
    cluster_scoped: bool = False


@dataclass(frozen=True)
class Outcome:
    """The answer and how it came about, for metrics, logs and `wfboost review`."""

    review: AdmissionReview
    outcome: str
    fail_open: FailOpen | None = None
    detail: str = ""


@dataclass
class Admission:
    """The pipeline with its parts: the routes, the policy in force, and the clients handlers may use."""

    routes: Mapping[str, Route]
    policy: Callable[[], Policy]
    metrics: Metrics = field(default_factory=Metrics)
    store: CacheStore | None = None
    sidestore: SideStoreClient | None = None
    kube: ObjectApi | None = None
    namespace_labels: Callable[[str], Mapping[str, str] | None] = field(default=lambda namespace: None)
    tables: TableCache = field(default_factory=TableCache)
    movable_outputs: MovableOutputs = field(default_factory=MovableOutputs)
    tally: CacheTally | None = None

    async def admit(self, route_name: str, review: AdmissionReview, budget: float) -> Outcome:
        """Decide within `budget` seconds; whatever happens, the result allows the request."""
        request = review["request"]
        route = self.routes.get(route_name)
        if route is None:
            return Outcome(build_response(review), "unknown_route")
        kind = request["kind"]
        if (kind["group"], kind["kind"]) not in route.kinds:
            return Outcome(build_response(review), "kind_mismatch", detail=f"{kind['kind']} sent to {route.name}")
        policy = self.policy()
        namespace = request.get("namespace") or ((request.get("object") or {}).get("metadata") or {}).get(
            "namespace", ""
        )
        labels = self.namespace_labels(namespace)
        scoped = not route.fail_closed and not (route.cluster_scoped and not namespace)
        if scoped and not policy.namespace_in_scope(namespace, labels):
            return Outcome(build_response(review), "out_of_scope")
        if request["operation"] == "DELETE" or request.get("object") is None:
            return Outcome(build_response(review), "unchanged")

        loop = asyncio.get_running_loop()
        ctx = AdmissionContext(
            policy=policy,
            deadline=loop.time() + budget,
            dry_run=bool(request.get("dryRun")),
            store=self.store,
            sidestore=self.sidestore,
            kube=self.kube,
            metrics=self.metrics,
            namespace_labels=labels,
            tables=self.tables,
            movable_outputs=self.movable_outputs,
            tally=self.tally,
        )
        try:
            async with asyncio.timeout(budget):
                decision = await route.handler(request, ctx)
            if loop.time() > ctx.deadline:  # CPU-bound work cannot be interrupted; late answers are dropped
                raise TimeoutError("handler finished after the deadline")
            if decision.patch:
                verify_patch(request.get("object"), decision.patch)
        except Exception as exc:
            if route.fail_closed:
                return self._fail_closed(review, exc)
            return self._fail_open(review, exc)
        if log.isEnabledFor(logging.DEBUG):  # one decision line per admission, at debug level
            log.debug("%s %s %s/%s: %s (%d patch ops%s)", request["operation"], kind["kind"], namespace,
                      request.get("name") or "", decision.outcome, len(decision.patch),
                      ", refused" if decision.denial is not None else "")
        if decision.denial is not None:
            return Outcome(build_denial(review, decision.denial.code, decision.denial.message), decision.outcome)
        return Outcome(build_response(review, decision.patch, decision.warnings), decision.outcome)

    def _fail_closed(self, review: AdmissionReview, exc: BaseException) -> Outcome:
        reason = classify(exc)
        request = review["request"]
        what = _described(request)
        message = f"wfboost could not restore the values this pod needs ({reason.value}: {exc or type(exc).__name__})"
        log.error("refusing %s for now: %s", what, message, exc_info=exc if reason is FailOpen.HANDLER_ERROR else None)
        self.metrics.fail_open.labels(reason=reason.value).inc()
        return Outcome(build_denial(review, 429, message + "; the controller will create it again"), "refused",
                       fail_open=reason, detail=str(exc))

    def _fail_open(self, review: AdmissionReview, exc: BaseException) -> Outcome:
        reason = classify(exc)
        request = review["request"]
        what = _described(request)
        if reason in (FailOpen.HANDLER_ERROR, FailOpen.PATCH_INVALID):
            log.error("admitting %s unchanged (%s): %s", what, reason.value, exc, exc_info=exc)
        else:
            log.warning("admitting %s unchanged (%s): %s", what, reason.value, exc or type(exc).__name__)
        self.metrics.fail_open.labels(reason=reason.value).inc()
        return Outcome(build_response(review), "fail_open", fail_open=reason, detail=str(exc))


def _described(request: AdmissionRequest) -> str:
    return f"{request['kind']['kind']} {request.get('namespace', '')}/{request.get('name', '')}"


def verify_patch(obj: Any, patch: Sequence[PatchOp]) -> dict[str, Any]:
    """Apply the patch to the object exactly as received, as the API server will (wfboost.webhook.patch_check:
    the original is left unchanged, and the result shares what the patch does not touch with it). Returns the
    patched object so callers (review --show-object) need not apply it again.
    """
    try:
        result = apply_patch(obj, patch)
    except PatchFailed as exc:
        raise PatchDoesNotApply(f"patch does not apply: {exc}") from exc
    if not isinstance(result, dict):
        raise PatchDoesNotApply("patched object is not a JSON object")
    return result


def budget_for(webhook_timeout: float, requested: float | None = None) -> float:
    """Seconds a handler may take: below the webhook timeout, leaving room for the network and patch apply.

    The API server passes its timeout as `?timeout=10s`; a smaller value there wins over the configured one.
    """
    timeout = min(webhook_timeout, requested) if requested else webhook_timeout
    return max(0.05, timeout * 0.8)
