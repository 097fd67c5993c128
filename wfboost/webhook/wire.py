"""Reading AdmissionReviews off the wire and writing the answers.

The API server sends `admission.k8s.io/v1` or (from old configurations) `v1beta1`; the answer must echo the
request's apiVersion, kind and uid or the API server treats the call as failed. Everything here is pure: no I/O,
so the same code serves the HTTPS server, `wfboost review` and the property tests.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, cast

import orjson

from wfboost.structs.admission import (
    ADMISSION_API_VERSIONS,
    AdmissionResponse,
    AdmissionReview,
)
from wfboost.structs.patch import PatchOp
from wfboost.webhook.errors import BadReview

_OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")


def parse_review(body: bytes) -> AdmissionReview:
    """Decode and check the parts of an AdmissionReview the answer depends on.

    Only what we must echo or dispatch on is checked strictly (apiVersion, kind, uid, operation, kind of the
    object); the object itself is left to the handlers, which fail open on anything they do not understand.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadReview(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadReview(f"body is a JSON {type(data).__name__}, not an AdmissionReview object")
    api_version = data.get("apiVersion")
    if api_version not in ADMISSION_API_VERSIONS:
        raise BadReview(
            f"apiVersion is {api_version!r}; expected one of {', '.join(ADMISSION_API_VERSIONS)}"
        )
    if data.get("kind") != "AdmissionReview":
        raise BadReview(f"kind is {data.get('kind')!r}; expected 'AdmissionReview'")
    request = data.get("request")
    if not isinstance(request, dict):
        raise BadReview("request is missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid is missing or not a non-empty string")
    if request.get("operation") not in _OPERATIONS:
        raise BadReview(f"request.operation is {request.get('operation')!r}; expected one of {_OPERATIONS}")
    kind = request.get("kind")
    if not isinstance(kind, dict) or not all(isinstance(kind.get(k), str) for k in ("group", "version", "kind")):
        raise BadReview("request.kind must be an object with string group, version and kind")
    for field in ("object", "oldObject"):
        value = request.get(field)
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"request.{field} must be an object or null, not a JSON {type(value).__name__}")
        if isinstance(value, dict):
            check_object_shape(value, f"request.{field}")
    for field in ("namespace", "name"):
        if request.get(field) is not None and not isinstance(request.get(field), str):
            raise BadReview(f"request.{field} must be a string")
    if request.get("dryRun") is not None and not isinstance(request.get("dryRun"), bool):
        raise BadReview("request.dryRun must be a boolean")
    return cast(AdmissionReview, data)


def check_object_shape(obj: dict[str, Any], where: str) -> None:
    """The few shapes every Kubernetes object has (the API server decodes into them before any webhook runs), so
    that handlers need not guard each access: `metadata` and its maps are objects, `spec` and `status` too."""
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise BadReview(f"{where}.metadata must be an object, not a JSON {type(meta).__name__}")
    for field in ("labels", "annotations"):
        value = (meta or {}).get(field)
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"{where}.metadata.{field} must be an object, not a JSON {type(value).__name__}")
    for field in ("spec", "status"):
        value = obj.get(field)
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"{where}.{field} must be an object, not a JSON {type(value).__name__}")


def build_response(
    review: AdmissionReview,
    patch: Sequence[PatchOp] = (),
    warnings: Sequence[str] = (),
) -> AdmissionReview:
    """An allowing answer, with the patch when there is one. wfboost denies only pods whose values it cannot
    restore (`build_denial`): see docs/fail-open.md."""
    request = review.get("request")
    uid = request["uid"] if request else ""
    response: AdmissionResponse = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(orjson.dumps(list(patch))).decode("ascii")
    if warnings:
        response["warnings"] = list(warnings)
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}


_REASONS = {429: "TooManyRequests", 400: "BadRequest"}


def build_denial(review: AdmissionReview, code: int, message: str) -> AdmissionReview:
    """A refusal, for the one route that may refuse (restoring a shrunk Workflow's pods). The API server answers the
    controller with `code` and "admission webhook … denied the request: <message>"."""
    request = review.get("request")
    uid = request["uid"] if request else ""
    response: AdmissionResponse = {
        "uid": uid, "allowed": False, "status": {"code": code, "reason": _REASONS.get(code, ""), "message": message},
    }
    return {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}


def decode_patch(response: AdmissionResponse) -> list[dict[str, Any]]:
    """The JSON Patch carried by a response (empty when there is none), as the API server decodes it."""
    encoded = response.get("patch")
    if not encoded:
        return []
    ops = orjson.loads(base64.b64decode(encoded))
    if not isinstance(ops, list):
        raise BadReview("patch is not a JSON array")
    return cast(list[dict[str, Any]], ops)


def review_for_object(
    obj: dict[str, Any],
    *,
    operation: str = "CREATE",
    old_object: dict[str, Any] | None = None,
    namespace: str | None = None,
    uid: str = "00000000-0000-0000-0000-000000000000",
    dry_run: bool = False,
    api_version: str = "admission.k8s.io/v1",
) -> AdmissionReview:
    """Wrap a bare object into the AdmissionReview the API server would send for it.

    Used by `wfboost review` on a bare pod or Workflow and by the test harness, so both send exactly what the
    API server sends: group/version/kind and resource from the object, namespace, name, userInfo, options.
    """
    api = obj.get("apiVersion") or ""
    group, _, version = api.rpartition("/") if "/" in api else ("", "", api)
    kind = str(obj.get("kind") or "")
    resource = plural_of(kind)
    meta = obj.get("metadata") or {}
    ns = namespace or meta.get("namespace") or ("" if kind in _CLUSTER_SCOPED else "default")
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": resource}
    request: dict[str, Any] = {
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "operation": operation,
        "namespace": ns,
        "userInfo": {"username": "system:serviceaccount:argo:argo", "groups": ["system:serviceaccounts"]},
        "object": obj,
        "oldObject": old_object,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.capitalize()}Options"},
    }
    if meta.get("name"):
        request["name"] = meta["name"]
    return cast(AdmissionReview, {"apiVersion": api_version, "kind": "AdmissionReview", "request": request})


# Kinds without a namespace: their reviews carry namespace "" (the API server leaves it unset).
_CLUSTER_SCOPED = frozenset({"ClusterWorkflowTemplate", "Namespace"})

# Kinds we admit and their resource (plural) names; anything else is pluralised the Kubernetes way.
_PLURALS = {"Pod": "pods", "Workflow": "workflows", "WorkflowTaskResult": "workflowtaskresults"}


def plural_of(kind: str) -> str:
    return _PLURALS.get(kind, kind.lower() + "s")
