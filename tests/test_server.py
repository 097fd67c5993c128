"""The HTTPS server as the API server sees it: routes, status pages, metrics, bad input and fail-open."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import StartWebhook, Webhook, corpus_dir
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import AdmissionContext, Decision, Route
from wfboost.webhook.wire import review_for_object
from wfboost_dev.demo.processes import redis_server

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "train-1", "namespace": "ml", "labels": {"workflows.argoproj.io/workflow": "wf"}},
    "spec": {"containers": [{"name": "main", "image": "busybox"}]},
}
LABEL_PATCH = Decision([{"op": "add", "path": "/metadata/annotations", "value": {"wfboost.io/seen": "yes"}}], "patched")


def metric(webhook: Webhook, name: str, **labels: str) -> float:
    text = webhook.api.request("GET", "/metrics").body.decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if have == wanted:
            return float(match.group(3))
    return 0.0


def test_status_pages(webhook: Webhook) -> None:
    assert webhook.api.request("GET", "/healthz").status == 200
    ready = webhook.api.request("GET", "/readyz")
    assert ready.status == 200, ready.body
    page = webhook.api.request("GET", "/metrics").body.decode()
    assert "wfboost_admission_requests_total" in page or "wfboost_admission_requests" in page
    assert 'wfboost_fail_open_total{reason="deadline"} 0.0' in page


def test_a_pod_is_admitted_and_counted(webhook: Webhook) -> None:
    admitted = webhook.api.admit("pods", POD)
    assert admitted.patch == [] and admitted.object == POD
    assert metric(webhook, "wfboost_admission_requests_total", route="pods", outcome="unchanged") == 1.0
    assert metric(webhook, "wfboost_admission_seconds_count", route="pods") == 1.0


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_both_admission_versions(webhook: Webhook, api_version: str) -> None:
    admitted = webhook.api.admit("pods", POD, api_version=api_version)
    assert admitted.review["apiVersion"] == api_version


def test_corpus_workflows_pass_through_unchanged(webhook: Webhook) -> None:
    folder = corpus_dir("argo-examples")
    count = 0
    for path in sorted(folder.glob("*.yaml"))[:40]:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Workflow":
                admitted = webhook.api.admit("workflows", doc, namespace="argo")
                assert admitted.object == doc, path.name
                count += 1
    assert count > 10


def test_bad_bodies_get_a_4xx_with_a_message(webhook: Webhook) -> None:
    answer = webhook.api.request("POST", "/mutate/pods", b"{not json")
    assert answer.status == 400 and b"not an AdmissionReview: body is not JSON" in answer.body
    answer = webhook.api.request("POST", "/mutate/pods", b'{"apiVersion": "v1"}')
    assert answer.status == 400 and b"apiVersion is 'v1'" in answer.body
    assert b"Traceback" not in answer.body
    assert webhook.api.request("GET", "/mutate/pods").status == 405
    assert webhook.api.request("GET", "/nowhere").status == 404
    assert metric(webhook, "wfboost_admission_requests_total", route="pods", outcome="bad_request") == 2.0


def test_a_body_over_8_mib_gets_413(webhook: Webhook) -> None:
    """8 MiB: an UPDATE of a Workflow at the API server's 3 MiB request limit carries it twice (object, oldObject)."""
    big = {**POD, "metadata": {**POD["metadata"], "annotations": {"x": "a" * (3 << 20)}}}
    assert webhook.api.admit("pods", big, operation="UPDATE", old_object=big).patch == []
    review = review_for_object({**POD, "metadata": {**POD["metadata"], "annotations": {"x": "a" * (8 << 20)}}})
    answer = webhook.api.request("POST", "/mutate/pods", orjson.dumps(review))
    assert answer.status == 413 and b"exceeds the 8388608-byte limit" in answer.body
    assert webhook.api.request("GET", "/healthz").status == 200


def test_a_raising_handler_fails_open_and_is_counted(start_webhook: StartWebhook) -> None:
    async def broken(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        raise RuntimeError("handler bug")

    webhook = start_webhook(routes={"pods": Route("pods", frozenset({("", "Pod")}), broken)})
    admitted = webhook.api.admit("pods", POD)
    assert admitted.patch == [] and admitted.response == {"uid": admitted.response["uid"], "allowed": True}
    assert metric(webhook, "wfboost_fail_open_total", reason="handler_error") == 1.0
    assert metric(webhook, "wfboost_admission_requests_total", route="pods", outcome="fail_open") == 1.0


def test_the_deadline_follows_the_api_servers_timeout(start_webhook: StartWebhook) -> None:
    async def slowish(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        await asyncio.sleep(1.0)
        return LABEL_PATCH

    webhook = start_webhook(routes={"pods": Route("pods", frozenset({("", "Pod")}), slowish)})
    webhook.api.timeout_seconds = 10  # budget 8 s: the handler finishes, the patch is sent and applies
    assert webhook.api.admit("pods", POD).object["metadata"]["annotations"] == {"wfboost.io/seen": "yes"}
    webhook.api.timeout_seconds = 1  # ?timeout=1s: budget 0.8 s, the answer is allow without a patch
    assert webhook.api.admit("pods", POD).patch == []
    assert metric(webhook, "wfboost_fail_open_total", reason="deadline") == 1.0


def test_redis_down_fails_open_and_is_counted(start_webhook: StartWebhook) -> None:
    async def uses_store(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        await ctx.store.redis.get("wfboost:probe")
        return LABEL_PATCH

    with redis_server() as valkey:
        url = valkey.url
        route = Route("pods", frozenset({("", "Pod")}), uses_store)
        webhook = start_webhook(settings={"redis_url": url}, routes={"pods": route})
        assert webhook.api.admit("pods", POD).patch != []  # Redis up: the handler's patch goes through
    assert webhook.api.admit("pods", POD).patch == []  # Redis stopped: allow, no patch
    assert metric(webhook, "wfboost_fail_open_total", reason="store_unavailable") == 1.0


def test_not_ready_without_a_valid_policy(start_webhook: StartWebhook, tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: maybe}\n")
    webhook = start_webhook(settings={"policy_path": bad})
    answer = webhook.api.request("GET", "/readyz")
    assert answer.status == 503 and b"policy not loaded" in answer.body
    assert metric(webhook, "wfboost_policy_valid") == 0.0
    assert webhook.api.admit("pods", POD).patch == []  # still answers, never blocks


def test_one_decision_line_per_admission_at_debug_level(webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="wfboost.webhook.admission"):
        webhook.api.admit("pods", POD)
    lines = [r.getMessage() for r in caplog.records if r.name == "wfboost.webhook.admission"]
    assert lines == ["CREATE Pod ml/train-1: unchanged (0 patch ops)"]
