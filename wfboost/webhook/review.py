"""`wfboost review`: the admission pipeline run offline on a file, exactly as the server runs it.

A user points it at a pod or Workflow (or an AdmissionReview captured from a cluster) to see what the webhook would
do; the answer and the patched object come from the same `Admission.admit` the HTTPS server calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson

from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore
from wfboost.kube import JsonObject, KubeApiError
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


# A kind wfboost does not admit (cluster-scoped: side-store values are per namespace) but whose runs it does:
# reviewed as the Workflow `argo submit --from` creates. WorkflowTemplates and CronWorkflows are admitted themselves.
CREATES_WORKFLOWS = frozenset({"ClusterWorkflowTemplate"})


def workflow_created_by(doc: dict[str, Any]) -> dict[str, Any]:
    """The Workflow `argo submit --from clusterworkflowtemplate/<name>` creates: a `workflowTemplateRef` (the
    controller merges the template when it runs it)."""
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    name = str(metadata.get("name") or "workflow")
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": f"{name}-", **({"namespace": metadata["namespace"]}
                                                     if metadata.get("namespace") else {})},
        "spec": {"workflowTemplateRef": {"name": name, "clusterScope": True}},
    }


def as_review(doc: dict[str, Any], namespace: str | None) -> tuple[str, AdmissionReview]:
    """The route and AdmissionReview for a document: reviews are taken as they are, objects wrapped as CREATE;
    a ClusterWorkflowTemplate as the Workflow it creates."""
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


class OfflineConfigMaps:
    """The ConfigMaps a user gives `wfboost review --configmap` (Argo's offload ConfigMap of a pod whose template
    or arguments it moved there), served where admission would read them from the API server. Writes nothing."""

    def __init__(self, configmaps: Iterable[Mapping[str, Any]]) -> None:
        self._by_name: dict[str, list[Mapping[str, Any]]] = {}
        for configmap in configmaps:
            self._by_name.setdefault(str((configmap.get("metadata") or {}).get("name") or ""), []).append(configmap)

    async def get(self, path: str) -> JsonObject:
        parts = path.strip("/").split("/")  # api/v1/namespaces/<ns>/configmaps/<name>
        if len(parts) == 6 and parts[4] == "configmaps":
            for configmap in self._by_name.get(parts[5], []):
                if (configmap.get("metadata") or {}).get("namespace") in (None, "", parts[3]):
                    return cast(JsonObject, dict(configmap))
            raise KubeApiError(404, "NotFound", f"ConfigMap {parts[3]}/{parts[5]} not given (--configmap FILE)")
        raise KubeApiError(404, "NotFound", f"{path}: an offline review has only the ConfigMaps it was given")

    async def create(self, path: str, body: Mapping[str, Any]) -> JsonObject:
        raise KubeApiError(405, "MethodNotAllowed", "an offline review writes nothing")


@contextlib.asynccontextmanager
async def offline_admission(
    policy: Policy, redis_url: str | None, namespace_labels: Mapping[str, str] | None = None,
    configmaps: Iterable[Mapping[str, Any]] | None = None,
) -> AsyncIterator[Admission]:
    """An Admission without a cluster: Redis only when a URL is given; `namespace_labels` stand for every
    namespace's labels (None: unknown, so label-gated policy rules match nothing, as in the server before its
    namespace watch has synced); `configmaps` answer the reads of offload ConfigMaps."""
    redis = redis_client.connect(redis_url) if redis_url else None
    try:
        yield Admission(
            routes=ROUTES, policy=lambda: policy, store=CacheStore(redis) if redis is not None else None,
            metrics=Metrics(), namespace_labels=lambda _namespace: namespace_labels,
            kube=OfflineConfigMaps(configmaps) if configmaps is not None else None,
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
