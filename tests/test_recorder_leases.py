"""The recorder's part in latching: it renews a leader's lease while the leader's pod runs, and releases it when the
leader will not be recorded (failed, stopped, gone) or once it is. The cluster is kmock's emulator; Valkey is real."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import timedelta
from typing import Any

from tests.harness.emulated import HANG_GUARD, Cluster, recorded, running
from tests.test_recorder import counter, declared_outputs, expected_key, namespace, workflow_pods
from wfboost.argo.pods import parse_pod
from wfboost.cache import keyspace
from wfboost.cache.leases import LEASE_ANNOTATION, lease_owner
from wfboost.cache.store import CacheStore, LeaseRequest, Verdict
from wfboost.policy import Policy, load_policy

POLICY = """
apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true, latch: true}
memoize: {namespaces: ["team-*"]}
latch: {leaseTTL: PT300S, heartbeat: PT10S}
"""


def policy() -> Policy:
    return load_policy(POLICY)


async def as_leader(store: CacheStore, pod: dict[str, Any], ttl: timedelta = timedelta(seconds=300)) -> dict[str, Any]:
    """The pod as the webhook admits a leader: its lease taken, and named on the pod."""
    step = parse_pod(pod)
    owner = lease_owner(step)
    found = await store.lookup(expected_key(pod), staleness=timedelta(days=7), lease=LeaseRequest(owner, ttl))
    assert found.verdict is Verdict.LEADER
    leader = copy.deepcopy(pod)
    leader["metadata"]["annotations"][LEASE_ANNOTATION] = owner
    return leader


async def lease_of(store: CacheStore, pod: dict[str, Any]) -> tuple[str | None, int]:
    key = keyspace.lease_key(expected_key(pod))
    holder = await store.redis.get(key)
    return (holder.decode() if holder else None), int(await store.redis.pttl(key))


async def until(condition: Any) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while not await condition():  # noqa: ASYNC110 - polling what the recorder writes from its own tasks
            await asyncio.sleep(0.02)


async def _counted_release(recorder: Any, cause: str) -> bool:
    return counter(recorder, "wfboost_recorder_leases_released_total", cause=cause) == 1


async def test_a_failed_leader_releases_its_lease(cluster: Cluster, store: CacheStore) -> None:
    pod = await as_leader(store, workflow_pods("v3.7.18", namespace())["fetch"])
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod, 1)
        await until(lambda: _released(store, pod))
        assert counter(recorder, "wfboost_recorder_leases_released_total", cause="failed") == 1


async def test_a_recorded_leader_releases_its_lease(cluster: Cluster, store: CacheStore) -> None:
    pod = await as_leader(store, workflow_pods("v3.7.18", namespace())["fetch"])
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod))
        await recorded(store, expected_key(pod))
        assert (await lease_of(store, pod))[0] is None
        await until(lambda: _counted_release(recorder, "recorded"))  # counted once record_run has answered


async def test_a_running_leaders_lease_is_renewed(cluster: Cluster, store: CacheStore) -> None:
    pod = await as_leader(store, workflow_pods("v3.7.18", namespace())["fetch"], ttl=timedelta(seconds=2))
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await until(lambda: _seen(recorder))
        follower = await store.lookup(expected_key(pod), staleness=timedelta(days=7), node="ns/uid/other.fetch",
                                      lease=LeaseRequest("another pod", timedelta(seconds=30)),
                                      follower_wait=timedelta(hours=1))
        assert follower.verdict is Verdict.FOLLOWER
        await recorder.heartbeat_pass()
        holder, ttl_ms = await lease_of(store, pod)
        assert holder == pod["metadata"]["annotations"][LEASE_ANNOTATION] and ttl_ms > 25_000
        assert counter(recorder, "wfboost_recorder_leases_extended_total") == 1
        assert counter(recorder, "wfboost_recorder_latch_followers_waiting") >= 1
        assert counter(recorder, "wfboost_recorder_latch_leases") >= 1


async def test_a_lease_annotation_copied_from_another_pod_is_not_this_pods(cluster: Cluster, store: CacheStore) -> None:
    """The annotation must name the very pod: a pod that carries another's (copied YAML) leads nothing."""
    pods = workflow_pods("v3.7.18", namespace())
    leader = await as_leader(store, pods["fetch"])
    impostor = copy.deepcopy(pods["fetch"])
    impostor["metadata"]["name"] += "-copy"
    impostor["metadata"]["annotations"][LEASE_ANNOTATION] = leader["metadata"]["annotations"][LEASE_ANNOTATION]
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(impostor)
        await cluster.finish_pod(impostor, 1)
        await until(lambda: _gave_up(recorder))
        assert (await lease_of(store, leader))[0] == json.loads(json.dumps(
            leader["metadata"]["annotations"][LEASE_ANNOTATION]))


async def _released(store: CacheStore, pod: dict[str, Any]) -> bool:
    return (await lease_of(store, pod))[0] is None


async def _seen(recorder: Any) -> bool:
    return any(state.step is not None for _, state in recorder.table.items())


async def _gave_up(recorder: Any) -> bool:
    return counter(recorder, "wfboost_recorder_steps_skipped_total", reason="failed") >= 1


async def test_a_leader_garbage_collected_as_it_succeeds_is_still_recorded(cluster: Cluster, store: CacheStore) -> None:
    """podGC deletes a pod as it completes: a leader whose main succeeded keeps its lease until its record lands."""
    pod = await as_leader(store, workflow_pods("v3.7.18", namespace())["fetch"])
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await until(lambda: _finished(recorder))
        await cluster.delete_pod(pod)
        await until(lambda: _gone(recorder))
        await recorder.heartbeat_pass()  # gone, but it succeeded: not given up
        await cluster.report(pod, declared_outputs(pod))
        await recorded(store, expected_key(pod))
        assert (await lease_of(store, pod))[0] is None
        await until(lambda: _counted_release(recorder, "recorded"))  # counted once record_run has answered


async def test_a_deletion_the_watch_missed_does_not_hold_the_lease(cluster: Cluster, store: CacheStore) -> None:
    pod = await as_leader(store, workflow_pods("v3.7.18", namespace())["fetch"], ttl=timedelta(seconds=20))
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await until(lambda: _seen(recorder))
        # gone without a DELETED event (lost across a 410; a relist does not report deletions)
        del cluster.kmock.objects[("v1/pods", pod["metadata"]["namespace"], pod["metadata"]["name"])]
        await recorder.heartbeat_pass()
        assert (await lease_of(store, pod))[0] is None
        assert counter(recorder, "wfboost_recorder_leases_released_total", cause="pod_deleted") == 1


def test_the_heartbeat_is_the_shortest_any_namespace_asks_for() -> None:
    from wfboost.recorder.watch import shortest_heartbeat

    text = POLICY + "overrides:\n  - namespaces: [fast]\n    latch: {leaseTTL: PT5S, heartbeat: PT1S}\n"
    assert shortest_heartbeat(load_policy(text)) == timedelta(seconds=1)
    assert shortest_heartbeat(policy()) == timedelta(seconds=10)


async def test_a_followers_first_refusal_outlives_the_controllers_requeue(store: CacheStore) -> None:
    """Argo asks again every 10 s (30 s under load): the time of a node's first refusal must still be there."""
    key = "e" * 64
    await store.lookup(key, staleness=timedelta(days=7), lease=LeaseRequest("L", timedelta(seconds=60)))
    found = await store.lookup(key, staleness=timedelta(days=7), lease=LeaseRequest("F", timedelta(seconds=1)),
                               node="ns/uid/wf.step", follower_wait=timedelta(seconds=1))
    assert found.verdict is Verdict.FOLLOWER
    assert await store.redis.pttl(keyspace.waits_key(key)) > 600_000


async def _finished(recorder: Any) -> bool:
    return any(state.exit is not None for _, state in recorder.table.items())


async def _gone(recorder: Any) -> bool:
    return any(state.pod_gone for _, state in recorder.table.items())
