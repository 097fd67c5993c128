"""`wfboost review`: the admission pipeline run offline on a file, exactly as the server runs it.

A user points it at a pod or Workflow (or an AdmissionReview captured from a cluster) to see what the webhook would
do; the answer and the patched object come from the same `Admission.admit` the HTTPS server calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, cast

import orjson

from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore
from wfboost.policy import Policy
from wfboost.structs.admission import AdmissionReview
from wfboost.webhook.admission import Admission, Outcome, budget_for, verify_patch
from wfboost.webhook.errors import BadReview, ReviewInputError
from wfboost.webhook.metrics import Metrics
from wfboost.webhook.routes import ROUTE_BY_KIND, ROUTES
from wfboost.webhook.wire import check_object_shape, decode_patch, parse_review, review_for_object


@dataclass(frozen=True)
class Reviewed:
    route: str
    outcome: Outcome
    patched_object: dict[str, Any] | None


# Kinds wfboost does not admit but that create Workflows it does: reviewed as the Workflow they create.
CREATES_WORKFLOWS = frozenset({"CronWorkflow", "WorkflowTemplate", "ClusterWorkflowTemplate"})


def workflow_created_by(doc: dict[str, Any]) -> dict[str, Any]:
    """The Workflow a CronWorkflow creates at each run (its `workflowSpec`, as the cron controller copies it:
    workflow/cron ConvertCronWorkflowToWorkflow), or the one `argo submit --from` creates from a (Cluster)
    WorkflowTemplate (a `workflowTemplateRef`: the controller merges the template when it runs it)."""
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    name = str(metadata.get("name") or "workflow")
    created: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": f"{name}-", **({"namespace": metadata["namespace"]}
                                                     if metadata.get("namespace") else {})},
    }
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    if doc.get("kind") == "CronWorkflow":
        created["spec"] = spec.get("workflowSpec") if isinstance(spec.get("workflowSpec"), dict) else {}
    else:
        reference: dict[str, Any] = {"name": name}
        if doc.get("kind") == "ClusterWorkflowTemplate":
            reference["clusterScope"] = True
        created["spec"] = {"workflowTemplateRef": reference}
    return created


def as_review(doc: dict[str, Any], namespace: str | None) -> tuple[str, AdmissionReview]:
    """The route and AdmissionReview for a document: reviews are taken as they are, objects wrapped as CREATE;
    a CronWorkflow or WorkflowTemplate as the Workflow it creates."""
    if doc.get("kind") in CREATES_WORKFLOWS:
        doc = workflow_created_by(doc)
    if doc.get("kind") == "AdmissionReview":
        try:
            review = parse_review(orjson.dumps(doc))
        except BadReview as exc:
            raise ReviewInputError(str(exc)) from None
        kind = review["request"]["kind"]["kind"]
    else:
        kind = str(doc.get("kind") or "")
        if not kind or not doc.get("apiVersion"):
            raise ReviewInputError("object has no apiVersion/kind; cannot tell which route would see it")
        try:
            check_object_shape(doc, str(doc.get("kind")))
        except BadReview as exc:
            raise ReviewInputError(str(exc)) from None
        review = review_for_object(doc, namespace=namespace)
    route = ROUTE_BY_KIND.get(kind)
    if route is None:
        raise ReviewInputError(
            f"kind {kind!r} is not admitted by wfboost (it admits {', '.join(sorted(ROUTE_BY_KIND))})"
        )
    return route, review


@contextlib.asynccontextmanager
async def offline_admission(policy: Policy, redis_url: str | None) -> AsyncIterator[Admission]:
    redis = redis_client.connect(redis_url) if redis_url else None
    try:
        yield Admission(
            routes=ROUTES, policy=lambda: policy, store=CacheStore(redis) if redis is not None else None,
            metrics=Metrics(),
        )
    finally:
        if redis is not None:
            await redis.aclose()


async def review_all(
    docs: Iterable[dict[str, Any]],
    admission: Admission,
    *,
    namespace: str | None = None,
    webhook_timeout: float = 10.0,
) -> list[Reviewed]:
    results = []
    for doc in docs:
        route, review = as_review(doc, namespace)
        outcome = await admission.admit(route, review, budget_for(webhook_timeout))
        obj = review["request"].get("object")
        patched = None
        if obj is not None:
            response = outcome.review["response"]
            patched = verify_patch(obj, cast(Any, decode_patch(response)))
        results.append(Reviewed(route, outcome, patched))
    return results
