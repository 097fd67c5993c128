"""Reading AdmissionReviews and writing answers (pure functions, no server)."""

from __future__ import annotations

import base64

import orjson
import pytest

from wfboost.webhook.go_duration import parse_go_duration
from wfboost.webhook.wire import BadReview, build_response, decode_patch, parse_review, review_for_object

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ml"}, "spec": {"containers": []}}


def test_review_for_object_matches_what_the_api_server_sends() -> None:
    review = review_for_object(POD, uid="u-1")
    request = review["request"]
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["namespace"] == "ml" and request["name"] == "p" and request["operation"] == "CREATE"
    wf = review_for_object({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {}})
    assert wf["request"]["kind"]["group"] == "argoproj.io"
    assert wf["request"]["resource"]["resource"] == "workflows"
    assert wf["request"]["namespace"] == "default"
    assert "name" not in wf["request"]  # generateName objects have no name yet


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_answer_echoes_api_version_kind_and_uid(api_version: str) -> None:
    review = parse_review(orjson.dumps(review_for_object(POD, uid="abc", api_version=api_version)))
    answer = build_response(review)
    assert answer == {"apiVersion": api_version, "kind": "AdmissionReview", "response": {"uid": "abc", "allowed": True}}


def test_patch_is_base64_json_patch() -> None:
    review = parse_review(orjson.dumps(review_for_object(POD)))
    op = {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}
    answer = build_response(review, [op])  # type: ignore[list-item]
    response = answer["response"]
    assert response["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(response["patch"])) == [op]
    assert decode_patch(response) == [op]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "body is not JSON"),
        (b"[]", "JSON list, not an AdmissionReview"),
        (b'{"apiVersion": "v1", "kind": "AdmissionReview"}', "apiVersion is 'v1'"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}', "kind is 'Pod'"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request is missing"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}', "request.uid"),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u",'
            b' "operation": "PATCH"}}',
            "request.operation",
        ),
        (
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u",'
            b' "operation": "CREATE", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": 3}}',
            "request.object must be an object",
        ),
    ],
)
def test_bad_reviews_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(BadReview, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_review(body)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m0s", 60.0), ("1.5s", 1.5), ("500ms", 0.5), ("2m30s", 150.0), ("", None), ("10", None),
     ("s", None), ("10x", None), ("-1s", None), ("0s", None)],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    assert parse_go_duration(text) == seconds
