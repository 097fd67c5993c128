"""Latching through the HTTPS harness and a real Valkey: identical steps in flight at once run once.

The API server's part is played as in the other admission tests; the controller's part is played by retrying a
refused pod creation, as Argo does after a 429 (`requeueIfTransientErr` in workflow/controller/operator.go: the node
stays Pending and the workflow is requeued). The recorder's part, where it matters, is the store call it makes
(`record` with the leader's lease, `release_lease`); its own tests cover when it makes them.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import StartWebhook, Webhook
from tests.test_server import metric
from wfboost.argo.pods import parse_pod
from wfboost.cache.entries import CacheEntry
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.leases import LEASE_ANNOTATION, lease_owner
from wfboost_dev.demo.plan import plan_workflow

POLICY = """\
apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true, latch: true}
memoize: {namespaces: [ml], maxStaleness: P7D}
latch: {leaseTTL: %s, heartbeat: PT0.5S, followerWait: %s}
"""
IMAGE = "python:3.11@sha256:" + "a" * 64
FOLLOWERS = 99


def step_workflow(name: str, seed: str) -> dict[str, Any]:
    return yaml.safe_load(f"""
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {{name: {name}, namespace: ml}}
spec:
  entrypoint: train
  templates:
    - name: train
      metadata: {{annotations: {{wfboost.io/cache-seed: "{seed}"}}}}
      container:
        image: {IMAGE}
        command: [python, -c, "open('/tmp/score', 'w').write('0.91')"]
      outputs:
        parameters: [{{name: score, valueFrom: {{path: /tmp/score}}}}]
""")


def pod_of(name: str, seed: str) -> dict[str, Any]:
    return plan_workflow(step_workflow(name, seed), "v3.7.18", namespace="ml").pods[0].pod


def latching(start_webhook: StartWebhook, tmp_path: Path, valkey: Any, ttl: str = "PT30S",
             wait: str = "PT1H") -> Webhook:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % (ttl, wait))
    return start_webhook(settings={"policy_path": policy, "redis_url": valkey.url})


def record(webhook: Webhook, pod: dict[str, Any], seed: str, lease: str) -> CacheEntry:
    """What the recorder writes when the leader succeeds: the entry, releasing the lease it names."""
    step = parse_pod(pod)
    entry: Any = {
        "key": cache_key(key_material(step, seed=seed)), "entry_id": step.pod_name,
        "finished_at": "2026-12-01T10:00:00Z", "finished_ms": int(time.time() * 1000) - 1000,
        "staleness_s": 604800, "parameters": [{"name": "score", "value": "0.91"}], "artifacts": [],
        "image": IMAGE, "image_id": "sha256:" + "a" * 64,
        "producer": {"namespace": "ml", "workflow": step.workflow, "workflow_uid": "uid", "node_id": step.node_id,
                     "node_name": step.node_name, "pod": step.pod_name},
        "recorded_at": "2026-12-01T10:00:01Z",
    }
    store = webhook.server.store
    assert store is not None
    webhook.running.call(lambda: store.record(entry, retention=timedelta(days=1), lease_owner=lease))
    return entry  # type: ignore[no-any-return]


def admit_all(webhook: Webhook, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pod's creation at once, as many workflows reaching the same step together."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda pod: webhook.api.answer("pods", pod), pods))


def test_a_hundred_identical_steps_started_together_run_once(
    start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest
) -> None:
    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey)
    pods = [pod_of(f"run-{i}", seed) for i in range(FOLLOWERS + 1)]
    answers = admit_all(webhook, pods)
    allowed = [(pod, a) for pod, a in zip(pods, answers, strict=True) if a["allowed"]]
    refused = [a for a in answers if not a["allowed"]]
    assert len(allowed) == 1 and len(refused) == FOLLOWERS
    leader_pod = allowed[0][0]
    leader = parse_pod(leader_pod)
    for answer in refused:
        assert answer["status"]["code"] == 429 and answer["status"]["reason"] == "TooManyRequests"
        message = answer["status"]["message"]
        assert f"pod {leader.pod_name} of workflow {leader.workflow} (namespace ml)" in message
    # the leader carries its lease, for the recorder to renew and release
    stored = webhook.api.admit("pods", leader_pod).object  # admitted again (a create the API server retried)
    assert stored["metadata"]["annotations"][LEASE_ANNOTATION] == lease_owner(leader)
    assert metric(webhook, "wfboost_latch_leaders_total") == 2
    assert metric(webhook, "wfboost_latch_deferrals_total") == FOLLOWERS

    # The leader is recorded: every follower's next attempt is a hit that replays its outputs.
    record(webhook, leader_pod, seed, lease_owner(leader))
    followers = [pod for pod in pods if pod is not leader_pod]
    for pod in followers[:10]:
        hit = webhook.api.admit("pods", pod).object
        assert hit["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"
        assert hit["metadata"]["labels"]["wfboost.io/cache-hit"] == "true"
        source = json.loads(hit["metadata"]["annotations"]["wfboost.io/cache-source"])
        assert source["workflow"] == leader.workflow  # the leader's result, replayed
        assert "0.91" in json.dumps(hit["spec"]["containers"])  # its recorded output value
    assert metric(webhook, "wfboost_latch_wait_seconds_count", then="hit") == 10


def test_when_the_leader_fails_one_follower_leads_and_the_others_wait_for_it(
    start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest
) -> None:
    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey)
    pods = [pod_of(f"run-{i}", seed) for i in range(20)]
    first = admit_all(webhook, pods)
    leader_pod = next(pod for pod, a in zip(pods, first, strict=True) if a["allowed"])
    leader = parse_pod(leader_pod)
    key = cache_key(key_material(leader, seed=seed))
    store = webhook.server.store
    assert store is not None
    # the recorder sees the leader fail and releases its lease
    assert webhook.running.call(lambda: store.release_lease(key, lease_owner(leader)))
    others = [pod for pod in pods if pod is not leader_pod]
    second = admit_all(webhook, others)
    leaders = [pod for pod, a in zip(others, second, strict=True) if a["allowed"]]
    assert len(leaders) == 1  # exactly one of the next attempts leads
    assert metric(webhook, "wfboost_latch_takeovers_total") == 1
    new_leader = parse_pod(leaders[0])
    assert all(f"pod {new_leader.pod_name} " in a["status"]["message"] for a in second if not a["allowed"])
    record(webhook, leaders[0], seed, lease_owner(new_leader))
    assert all(a["allowed"] for a in admit_all(webhook, [p for p in others if p is not leaders[0]]))


def test_a_lease_whose_pod_never_came_lapses(
    start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest
) -> None:
    """Admitted as the leader but never created (a later webhook or a quota refused it): nothing renews its lease,
    which lapses after latch.leaseTTL; the next attempt leads."""
    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey, ttl="PT1S")
    ghost, waiting = pod_of("ghost", seed), pod_of("waiting", seed)
    assert webhook.api.answer("pods", ghost)["allowed"]
    assert webhook.api.answer("pods", waiting)["status"]["code"] == 429
    time.sleep(1.2)
    assert webhook.api.answer("pods", waiting)["allowed"]


def test_a_follower_that_waited_long_enough_runs_for_real(
    start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest
) -> None:
    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey, wait="PT1S")
    assert webhook.api.answer("pods", pod_of("slow-leader", seed))["allowed"]
    follower = pod_of("follower", seed)
    assert webhook.api.answer("pods", follower)["status"]["code"] == 429
    time.sleep(1.1)
    ran = webhook.api.admit("pods", follower).object
    outcome = ran["metadata"]["annotations"]["wfboost.io/cache-outcome"]
    assert outcome.startswith("miss: latch_wait_over (waited 1 s for pod slow-leader of workflow slow-leader")
    assert LEASE_ANNOTATION not in ran["metadata"]["annotations"]  # it runs without the lease
    assert metric(webhook, "wfboost_latch_waited_out_total") == 1


@pytest.mark.parametrize("case", ["dry_run", "latch_false", "staleness_zero", "latch_off"])
def test_what_never_waits(
    case: str, start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest
) -> None:
    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey)
    if case == "latch_off":
        policy = tmp_path / "off.yaml"
        policy.write_text((POLICY % ("PT30S", "PT1H")).replace("latch: true", "latch: false"))
        webhook = start_webhook(settings={"policy_path": policy, "redis_url": valkey.url})
    first, second = pod_of("first", seed), pod_of("second", seed)
    if case == "dry_run":
        assert webhook.api.answer("pods", first, dry_run=True)["allowed"]  # takes no lease
        assert LEASE_ANNOTATION in webhook.api.admit("pods", second).object["metadata"]["annotations"]
        return
    for pod in (first, second):
        if case == "latch_false":
            pod["metadata"]["annotations"]["wfboost.io/latch"] = "false"
        if case == "staleness_zero":
            pod["metadata"]["annotations"]["wfboost.io/max-staleness"] = "P0D"  # it would not take the result
    for pod in (first, second):
        answer = webhook.api.admit("pods", pod).object
        assert LEASE_ANNOTATION not in answer["metadata"]["annotations"]


def test_redis_down_never_defers(start_webhook: StartWebhook, tmp_path: Path) -> None:
    from wfboost_dev.demo.processes import free_port

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % ("PT30S", "PT1H"))
    webhook = start_webhook(settings={"policy_path": policy, "redis_url": f"redis://127.0.0.1:{free_port()}"})
    for name in ("a", "b"):
        assert webhook.api.answer("pods", pod_of(name, "s"))["allowed"]
    assert metric(webhook, "wfboost_fail_open_total", reason="store_unavailable") == 2


def test_the_same_pod_admitted_again_still_leads(
    start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest
) -> None:
    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey)
    pod = pod_of("again", seed)
    assert webhook.api.answer("pods", pod)["allowed"]
    assert webhook.api.answer("pods", copy.deepcopy(pod))["allowed"]


def test_cache_inflight_lists_leaders_and_who_waits(
    start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from wfboost.cli import main

    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey)
    leader = pod_of("lead", seed)
    assert webhook.api.answer("pods", leader)["allowed"]
    for name in ("wait-1", "wait-2"):
        assert webhook.api.answer("pods", pod_of(name, seed))["status"]["code"] == 429
    key = cache_key(key_material(parse_pod(leader), seed=seed))
    assert main(["cache", "inflight", "--redis-url", valkey.url, "--json"]) == 0
    listed = {item["key"]: item for item in json.loads(capsys.readouterr().out)}
    assert listed[key]["leader"] == lease_owner(parse_pod(leader))
    assert len(listed[key]["waiting"]) == 2 and 0 < listed[key]["expires_in_s"] <= 30
    assert listed[key]["waiting_workflows"] == ["ml/wait-1", "ml/wait-2"]
    assert main(["cache", "inflight", "--redis-url", valkey.url]) == 0
    table = capsys.readouterr().out
    assert f"pod {parse_pod(leader).pod_name} of workflow lead (namespace ml)" in table and "step(s) in flight" in table


def test_a_step_near_its_deadline_never_waits(
    start_webhook: StartWebhook, tmp_path: Path, valkey: Any, request: pytest.FixtureRequest
) -> None:
    """A deferred node stays Pending, and Argo fails a Pending node at its deadline (operator.go
    checkTemplateTimeout): a step within two minutes of its ARGO_DEADLINE runs at once."""
    from datetime import UTC, datetime

    seed = request.node.nodeid
    webhook = latching(start_webhook, tmp_path, valkey)
    assert webhook.api.answer("pods", pod_of("leader", seed))["allowed"]

    def with_deadline(pod: dict[str, Any], seconds: int) -> dict[str, Any]:
        when = datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
        for env in main["env"]:
            if env["name"] == "ARGO_DEADLINE":
                env["value"] = when
        return pod

    hurried = with_deadline(pod_of("hurried", seed), 60)
    ran = webhook.api.admit("pods", hurried).object
    assert ran["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "miss: no_entry"
    patient = with_deadline(pod_of("patient", seed), 3600)
    assert webhook.api.answer("pods", patient)["status"]["code"] == 429


async def test_cache_explain_says_whether_the_step_would_hit_now(
    valkey: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    """`cache explain POD --redis-url` asks the store what the webhook would, writing nothing."""
    import asyncio

    from wfboost.cache import redis_client
    from wfboost.cache.store import CacheStore
    from wfboost.cli import main

    seed = request.node.nodeid
    pod = pod_of("explained", seed)
    path = tmp_path / "pod.json"
    path.write_text(json.dumps(pod))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY % ("PT30S", "PT1H"))
    args = ["cache", "explain", str(path), "--policy", str(policy), "--redis-url", valkey.url]
    assert await asyncio.to_thread(main, args) == 0
    assert "now:       would miss: no entry younger than P7D" in capsys.readouterr().out
    step = parse_pod(pod)
    entry: Any = {
        "key": cache_key(key_material(step, seed=seed)), "entry_id": "e1", "finished_at": "2026-12-01T10:00:00Z",
        "finished_ms": int(time.time() * 1000), "staleness_s": 604800, "parameters": [], "artifacts": [],
        "image": IMAGE, "image_id": "", "recorded_at": "2026-12-01T10:00:00Z",
        "producer": {"namespace": "ml", "workflow": "earlier", "workflow_uid": "u", "node_id": "n",
                     "node_name": "earlier.train", "pod": "p"},
    }
    client = redis_client.connect(valkey.url)
    try:
        await CacheStore(client).record(entry, retention=timedelta(days=1))
    finally:
        await client.aclose()
    assert await asyncio.to_thread(main, args) == 0
    assert "now:       would hit: the result of ml/earlier node earlier.train" in capsys.readouterr().out
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump_all([pod, pod]))
    assert await asyncio.to_thread(main, ["cache", "explain", str(two), "--policy", str(policy)]) == 1
    assert "holds 2 objects; explain takes one pod per file" in capsys.readouterr().err


@pytest.mark.parametrize(("version", "initless"), [("v3.5.14", False), ("v3.7.18", False), ("v4.1.2", True)])
def test_latching_on_pods_built_from_argos_source(
    version: str, initless: bool, start_webhook: StartWebhook, tmp_path: Path, valkey: Any,
    request: pytest.FixtureRequest,
) -> None:
    """The same step in two workflows, pods built from Argo's controller source (tests/argo_source, independent of
    wfboost's own model): one leads, the other is deferred naming it, and the leader's record makes it a hit."""
    from tests.argo_source.pods import ControllerConfig, controller_pod

    seed = request.node.nodeid
    template = step_workflow("x", seed)["spec"]["templates"][0]
    built = [controller_pod(version, f"wf-{i}", f"uid-{i}", "ml", template, f"wf-{i}", config=ControllerConfig(
        initless=initless)) for i in range(2)]
    webhook = latching(start_webhook, tmp_path, valkey)
    leader = webhook.api.admit("pods", built[0].pod).object
    assert leader["metadata"]["annotations"][LEASE_ANNOTATION] == lease_owner(parse_pod(built[0].pod))
    refused = webhook.api.answer("pods", built[1].pod)
    assert refused["status"]["code"] == 429
    assert f"pod {built[0].pod_name} of workflow wf-0" in refused["status"]["message"]
    record(webhook, built[0].pod, seed, lease_owner(parse_pod(built[0].pod)))
    hit = webhook.api.admit("pods", built[1].pod).object
    assert hit["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"
