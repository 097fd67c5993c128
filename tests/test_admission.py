"""The admission pipeline in-process: every failure is "allow, no patch" with a counted reason."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore
from wfboost.policy import Policy
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import Admission, AdmissionContext, Decision, Route, budget_for
from wfboost.webhook.failopen import FailOpen
from wfboost.webhook.wire import parse_review, review_for_object
from wfboost_dev.demo.processes import redis_server

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ml"}, "spec": {"containers": []}}
KINDS = frozenset({("", "Pod")})


def pipeline(handler: object, store: object = None) -> Admission:
    return Admission(
        routes={"pods": Route("pods", KINDS, handler)},  # type: ignore[arg-type]
        policy=lambda: Policy.default("wfboost"),
        store=store,  # type: ignore[arg-type]
    )


def fail_opens(admission: Admission) -> Counter[FailOpen]:
    """What the pipeline counted in its metrics, by reason (zeros left out)."""
    registry = admission.metrics.registry
    found = {reason: registry.get_sample_value("wfboost_fail_open_total", {"reason": reason.value}) or 0.0
             for reason in FailOpen}
    return Counter({reason: int(count) for reason, count in found.items() if count})


def review(obj: dict[str, object] = POD, namespace: str | None = None):  # type: ignore[no-untyped-def]
    return parse_review(orjson.dumps(review_for_object(obj, namespace=namespace)))


async def test_a_patch_that_applies_is_sent() -> None:
    async def label(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        return Decision([{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}], "patched")

    admission = pipeline(label)
    outcome = await admission.admit("pods", review(), 5)
    assert outcome.outcome == "patched" and outcome.review["response"]["patchType"] == "JSONPatch"
    assert not fail_opens(admission)


async def test_a_handler_that_raises_is_admitted_unchanged() -> None:
    async def broken(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        raise RuntimeError("boom")

    admission = pipeline(broken)
    outcome = await admission.admit("pods", review(), 5)
    assert outcome.fail_open is FailOpen.HANDLER_ERROR
    assert outcome.review["response"] == {"uid": outcome.review["response"]["uid"], "allowed": True}
    assert fail_opens(admission) == Counter({FailOpen.HANDLER_ERROR: 1})


async def test_the_deadline_cuts_a_slow_handler_short() -> None:
    async def slow(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        await asyncio.sleep(30)
        return Decision([{"op": "add", "path": "/metadata/labels", "value": {}}], "patched")

    admission = pipeline(slow)
    outcome = await admission.admit("pods", review(), 0.05)
    assert outcome.fail_open is FailOpen.DEADLINE and "patch" not in outcome.review["response"]
    assert fail_opens(admission)[FailOpen.DEADLINE] == 1


async def test_a_patch_that_would_not_apply_is_never_sent() -> None:
    async def wrong(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        return Decision([{"op": "remove", "path": "/spec/affinity"}], "patched")  # absent: the API server fails

    admission = pipeline(wrong)
    outcome = await admission.admit("pods", review(), 5)
    assert outcome.fail_open is FailOpen.PATCH_INVALID and "patch" not in outcome.review["response"]
    assert fail_opens(admission)[FailOpen.PATCH_INVALID] == 1


async def test_redis_down_is_admitted_unchanged() -> None:
    with redis_server() as valkey:
        url = valkey.url
    store = CacheStore(redis_client.connect(url))  # the server is gone: connections are refused

    async def uses_store(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        await ctx.store.redis.get("anything")
        return Decision([{"op": "add", "path": "/metadata/labels", "value": {}}], "patched")

    admission = pipeline(uses_store, store)
    try:
        outcome = await admission.admit("pods", review(), 5)
    finally:
        await store.redis.aclose()
    assert outcome.fail_open is FailOpen.STORE_UNAVAILABLE and "patch" not in outcome.review["response"]
    assert fail_opens(admission)[FailOpen.STORE_UNAVAILABLE] == 1


@pytest.mark.parametrize("namespace", ["kube-system", "wfboost"])
async def test_system_and_own_namespaces_are_never_touched(namespace: str) -> None:
    async def must_not_run(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        raise AssertionError("handler called out of scope")

    admission = pipeline(must_not_run)
    outcome = await admission.admit("pods", review(namespace=namespace), 5)
    assert outcome.outcome == "out_of_scope" and not fail_opens(admission)


async def test_a_kind_sent_to_the_wrong_route_is_left_alone() -> None:
    async def must_not_run(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
        raise AssertionError("handler called for the wrong kind")

    admission = pipeline(must_not_run)
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "namespace": "ml"}}
    outcome = await admission.admit("pods", review(wf), 5)
    assert outcome.outcome == "kind_mismatch"


@pytest.mark.parametrize(
    ("configured", "requested", "expected"),
    [(10.0, None, 8.0), (10.0, 5.0, 4.0), (30.0, 10.0, 8.0), (2.0, None, 1.6), (1.0, None, 0.8)],
)
def test_budget_stays_below_the_webhook_timeout(configured: float, requested: float | None, expected: float) -> None:
    assert budget_for(configured, requested) == pytest.approx(expected)
