"""Random and mangled AdmissionReviews over HTTPS: every answer is a 4xx with a message or a well-formed allow."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Webhook
from wfboost.webhook.wire import review_for_object

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p", "namespace": "ml", "labels": {"workflows.argoproj.io/workflow": "wf"}},
    "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sh"]}]},
}
WORKFLOW = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "namespace": "ml"},
            "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
REQUEST_KEYS = ["uid", "kind", "resource", "operation", "object", "oldObject", "namespace", "dryRun", "name"]


@st.composite
def mangled_reviews(draw: st.DrawFn) -> bytes:
    base: dict[str, Any] = copy.deepcopy(
        review_for_object(
            draw(st.sampled_from([POD, WORKFLOW])),
            api_version=draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])),
            operation=draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"])),
            dry_run=draw(st.booleans()),
        )  # type: ignore[arg-type]
    )
    how = draw(st.sampled_from(["valid", "drop", "replace", "replace_top", "bytes", "truncate", "value"]))
    if how == "drop":
        base["request"].pop(draw(st.sampled_from(REQUEST_KEYS)), None)
    elif how == "replace":
        base["request"][draw(st.sampled_from(REQUEST_KEYS))] = draw(json_values)
    elif how == "replace_top":
        base[draw(st.sampled_from(["apiVersion", "kind", "request"]))] = draw(json_values)
    elif how == "bytes":
        return draw(st.binary(max_size=200))
    elif how == "value":
        return orjson.dumps(draw(json_values))
    body = orjson.dumps(base)
    if how == "truncate":
        return body[: draw(st.integers(0, len(body) - 1))]
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=mangled_reviews(), route=st.sampled_from(["pods", "workflows", "workflowtaskresults", "other"]))
def test_every_answer_is_a_4xx_with_a_message_or_an_allow(webhook: Webhook, body: bytes, route: str) -> None:
    answer = webhook.api.request("POST", f"/mutate/{route}", body)
    if answer.status == 200:
        sent = orjson.loads(body)
        got = answer.json()
        assert got["apiVersion"] == sent["apiVersion"] and got["kind"] == "AdmissionReview"
        assert got["response"]["uid"] == sent["request"]["uid"]
        assert got["response"]["allowed"] is True
        assert "patch" not in got["response"]  # nothing is enabled: nothing may be patched
    else:
        assert 400 <= answer.status < 500, (answer.status, answer.body)
        text = answer.body.decode()
        assert text.strip(), "a 4xx must say why"
        assert "Traceback" not in text
    # The same server instance serves every example: it must still be up and admitting.
    assert webhook.api.request("GET", "/healthz").status == 200
