"""The recorder records a result only from the run that produced it, keyed from that run's pod, and only when the
controller marked the node Succeeded. Against kmock's emulator (real watches) and real Valkey.

Each test here failed before the recorder tracked runs (pod uids, creation times) and read the Workflow:
- a pod deleted while Pending, followed by a new pod of the same node with other inputs, was recorded under the
  first pod's key (a lookup for lr=0.1 returned lr=0.2's score);
- a failed node's tombstone blocked the recording of its later successful retry;
- a step stopped by `argo stop` whose main exited 0 on SIGTERM (pod Succeeded, node Failed) was recorded;
- artifacts that the producer's own artifact GC deletes were recorded.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import orjson

from tests.harness.emulated import HANG_GUARD, Cluster, recorded, running, stamped, task_result
from tests.test_recorder import (
    P7D,
    counter,
    declared_outputs,
    expected_key,
    namespace,
    policy,
    workflow_pods,
)
from wfboost.cache.marker import MARKER_PARAMETER, marker_parameter
from wfboost.cache.store import CacheStore
from wfboost.kube import resource_path
from wfboost.policy.controls import CACHE_HIT
from wfboost.recorder.watch import Recorder
from wfboost.recorder.workflows import WorkflowReader


def with_args(pod: dict[str, Any], *args: str) -> dict[str, Any]:
    """The same pod, its main container given other arguments (another learning rate): another key."""
    changed = copy.deepcopy(pod)
    main = next(c for c in changed["spec"]["containers"] if c["name"] == "main")
    main["args"] = list(args)
    changed["metadata"].pop("uid", None)
    changed["metadata"].pop("creationTimestamp", None)
    return changed


async def skipped(recorder: Recorder, reason: str) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while counter(recorder, "wfboost_recorder_steps_skipped_total", reason=reason) < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_new_pod_of_the_same_node_is_recorded_under_its_own_key(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    first = workflow_pods("v3.7.18", ns)["fetch"]
    second = with_args(first, "fetch --lr 0.1")
    assert expected_key(first) != expected_key(second)
    async with running(cluster, store, policy):
        stamped(first)["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        await cluster.create_pod(first)  # deleted while Pending: it never ran
        await cluster.delete_pod(first)
        await cluster.create_pod(second)  # the controller creates the node's pod again, now with other inputs
        await cluster.finish_pod(second)
        await cluster.report(second, declared_outputs(second))
        tracks = await recorded(store, expected_key(second))
    assert tracks[str(P7D)]["producer"]["pod"] == second["metadata"]["name"]
    assert await store.tracks(expected_key(first)) == {}


async def test_a_failed_run_does_not_block_the_nodes_later_success(cluster: Cluster, store: CacheStore) -> None:
    """`argo retry` re-creates a failed node's pod under the same name and node id: a new run, recorded."""
    ns = namespace()
    failed = workflow_pods("v3.7.18", ns)["fetch"]
    async with running(cluster, store, policy) as recorder:
        stamped(failed)["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
        await cluster.create_pod(failed)
        await cluster.finish_pod(failed, 1)
        await skipped(recorder, "failed")
        await cluster.delete_pod(failed)
        retried = copy.deepcopy(failed)
        retried["metadata"].pop("uid")
        retried["metadata"].pop("creationTimestamp")
        await cluster.create_pod(retried)
        await cluster.finish_pod(retried)
        await cluster.report(retried, declared_outputs(retried))
        tracks = await recorded(store, expected_key(retried))
    assert tracks[str(P7D)]["entry_id"] == retried["metadata"]["uid"]


async def test_an_earlier_runs_task_result_is_not_joined_with_a_new_pod(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    pod = workflow_pods("v3.7.18", ns)["fetch"]
    async with running(cluster, store, policy) as recorder:
        old_result = declared_outputs(pod)
        old_result["parameters"] = [{"name": "rows", "value": "from an earlier run"}]
        await cluster.report(pod, old_result)  # created before the pod below: an earlier run's
        await asyncio.sleep(1.1)  # creation times have a resolution of one second
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await recorder.housekeeping_pass()
        assert await store.tracks(expected_key(pod)) == {}  # no task result of this run yet: nothing recorded
        await cluster.kube.delete(resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns,
                                                pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]))
        await cluster.report(pod, declared_outputs(pod))  # this run's own
        tracks = await recorded(store, expected_key(pod))
    assert tracks[str(P7D)]["parameters"] == [{"name": "rows", "value": "value of rows"}]


async def test_a_stopped_step_whose_pod_succeeded_is_not_recorded(cluster: Cluster, store: CacheStore) -> None:
    """`argo stop`: the controller marks the node Failed and signals the pod; a main that traps SIGTERM exits 0, so
    the pod ends Succeeded (exec_control.go applyExecutionControl). Only the node's phase tells."""
    ns = namespace()
    pods = workflow_pods("v3.7.18", ns)
    stopped, shut = pods["fetch"], pods["features"]
    cluster.controller_marks_nodes = False
    async with running(cluster, store, policy) as recorder:
        for pod in (stopped, shut):
            await cluster.create_pod(pod)
            await cluster.finish_pod(pod)
            await cluster.report(pod, declared_outputs(pod))
        await cluster.mark_node(stopped, "Failed")
        await skipped(recorder, "node_not_succeeded")
        await cluster.mark_node(shut, "Succeeded", spec={"shutdown": "Stop"})
        await skipped(recorder, "workflow_stopped")
    assert await store.tracks(expected_key(stopped)) == {}
    assert await store.tracks(expected_key(shut)) == {}


async def test_a_step_waits_for_the_controller_to_mark_its_node(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    pod = workflow_pods("v4.1.2", ns)["fetch"]
    cluster.controller_marks_nodes = False
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod))
        await cluster.mark_node(pod, "Running")
        await asyncio.sleep(0.3)
        await recorder.housekeeping_pass()
        assert await store.tracks(expected_key(pod)) == {}
        await cluster.mark_node(pod, "Succeeded")
        await recorded(store, expected_key(pod))
    assert recorder.workflows.reads >= 2


async def test_a_step_past_its_deadline_is_not_recorded(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    pod = copy.deepcopy(workflow_pods("v3.7.18", ns)["fetch"])
    for container in pod["spec"]["containers"]:
        for env in container.get("env") or []:
            if env["name"] == "ARGO_DEADLINE":
                env["value"] = "2020-01-01T00:00:00Z"  # long before main finished
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod))
        await skipped(recorder, "deadline")
    assert await store.tracks(expected_key(pod)) == {}


async def test_artifacts_the_producers_artifact_gc_deletes_are_never_recorded(
    cluster: Cluster, store: CacheStore
) -> None:
    ns = namespace()
    pods = workflow_pods("v3.7.18", ns)
    pod = pods["fetch"]
    cluster.controller_marks_nodes = False
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod))
        await cluster.mark_node(pod, "Succeeded", spec={"artifactGC": {"strategy": "OnWorkflowCompletion"}})
        await skipped(recorder, "artifact_gc")
    assert await store.tracks(expected_key(pod)) == {}


async def test_a_replays_task_result_the_webhook_missed_is_restored_and_not_recorded(
    cluster: Cluster, store: CacheStore
) -> None:
    """The webhook could not answer at any write of a replayed step's task result: the recorder swaps the marker
    for the cached artifacts itself, so the node gets its artifacts (Argo 3.6.11+ holds the node until it does)."""
    ns = namespace()
    pod = copy.deepcopy(workflow_pods("v3.7.18", ns)["fetch"])
    pod["metadata"]["labels"][CACHE_HIT] = "true"
    cached = {"name": "raw", "path": "/data/raw.parquet", "s3": {"endpoint": "minio:9000", "bucket": "b", "key": "k"}}
    marker = marker_parameter("k" * 64, "entry-1", [cached])
    outputs = {"parameters": [{"name": "rows", "value": "7"},
                              {"name": MARKER_PARAMETER, "value": marker["valueFrom"]["default"]}]}
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, outputs)
        path = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns,
                             pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"])
        async with asyncio.timeout(HANG_GUARD):
            while MARKER_PARAMETER in orjson.dumps(await cluster.kube.get(path)).decode():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        stored = await cluster.kube.get(path)
        assert counter(recorder, "wfboost_recorder_replays_restored_total", object="workflowtaskresult") == 1
    assert stored["outputs"]["artifacts"] == [{**cached, "artifactGC": {"strategy": "Never"}}]
    assert stored["outputs"]["parameters"] == [{"name": "rows", "value": "7"}]
    assert await store.tracks(expected_key(pod)) == {}


async def test_argo_35_outputs_annotation_of_a_replay_is_restored(cluster: Cluster, store: CacheStore) -> None:
    """Argo 3.5 without task-result permissions reports outputs in the pod annotation `workflows.argoproj.io/outputs`
    (executor.go reportResult), which no webhook sees: the recorder puts the cached artifacts there."""
    ns = namespace()
    pod = copy.deepcopy(workflow_pods("v3.5.14", ns)["fetch"])
    pod["metadata"]["labels"][CACHE_HIT] = "true"
    cached = {"name": "raw", "path": "/data/raw.parquet", "s3": {"endpoint": "minio:9000", "bucket": "b", "key": "k"}}
    marker = marker_parameter("k" * 64, "entry-1", [cached])
    reported = {"parameters": [{"name": "rows", "value": "7"},
                               {"name": MARKER_PARAMETER, "value": marker["valueFrom"]["default"]}]}
    pod["metadata"]["annotations"]["workflows.argoproj.io/outputs"] = orjson.dumps(reported).decode()
    path = resource_path("", "v1", "pods", ns, pod["metadata"]["name"])
    async with running(cluster, store, policy):
        await cluster.create_pod(pod)
        async with asyncio.timeout(HANG_GUARD):
            while True:
                annotation = (await cluster.kube.get(path))["metadata"]["annotations"]["workflows.argoproj.io/outputs"]
                if MARKER_PARAMETER not in annotation:
                    break
                await asyncio.sleep(0.02)
    assert orjson.loads(annotation)["artifacts"] == [{**cached, "artifactGC": {"strategy": "Never"}}]


async def test_a_workflow_is_read_at_most_once_per_interval(cluster: Cluster) -> None:
    """However many of its steps finish at once, a Workflow (which can weigh megabytes) is read once per interval."""
    ns = namespace()
    pod = workflow_pods("v3.7.18", ns)["fetch"]
    await cluster.ensure_workflow(pod)
    now = [0.0]
    reader = WorkflowReader(cluster.kube, min_interval=10.0, clock=lambda: now[0])
    name = pod["metadata"]["labels"]["workflows.argoproj.io/workflow"]
    found = await asyncio.gather(*(reader.get(ns, name) for _ in range(20)))
    assert all(w is not None and w["metadata"]["name"] == name for w in found)
    assert reader.reads == 1
    now[0] = 9.0
    await reader.get(ns, name)
    assert reader.reads == 1
    now[0] = 10.5
    await reader.get(ns, name)
    assert reader.reads == 2
    assert await reader.get(ns, "no-such-workflow") is None  # deleted: None, not an error


async def test_an_entry_whose_artifact_another_run_wrote_over_is_invalidated(
    cluster: Cluster, store: CacheStore
) -> None:
    """A workflow re-created under the same name has the same pod names, so Argo's default key
    `{{workflow.name}}/{{pod.name}}` repeats: its run (here with other inputs, so another cache key) writes over the
    object the first run's entry points at. The entry must not be served any more."""
    ns = namespace()
    first = workflow_pods("v3.7.18", ns, name="train")["fetch"]
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(first)
        await cluster.finish_pod(first)
        await cluster.report(first, declared_outputs(first))
        await recorded(store, expected_key(first))
        # The workflow is deleted (its pods and task results go with it) and created again under its name.
        await cluster.delete_pod(first)
        await cluster.kube.delete(resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns,
                                                first["metadata"]["annotations"]["workflows.argoproj.io/node-id"]))
        again = with_args(workflow_pods("v3.7.18", ns, name="train")["fetch"], "fetch --lr 0.2")
        again["metadata"]["ownerReferences"][0]["uid"] = "uid-of-the-re-created-workflow"
        assert again["metadata"]["name"] == first["metadata"]["name"]  # same pod name: same artifact key
        assert expected_key(again) != expected_key(first)
        await cluster.create_pod(again)
        await cluster.finish_pod(again)
        await cluster.report(again, declared_outputs(again))
        await recorded(store, expected_key(again))
        async with asyncio.timeout(HANG_GUARD):
            while await store.tracks(expected_key(first)):  # noqa: ASYNC110 - the recorder invalidates it
                await asyncio.sleep(0.02)
        assert counter(recorder, "wfboost_recorder_keys_invalidated_total", reason="location_overwritten") == 1
    assert await store.tracks(expected_key(again))  # the run that wrote last is the one recorded


async def test_a_replays_restored_task_result_does_not_invalidate_the_entry_it_replayed(
    cluster: Cluster, store: CacheStore
) -> None:
    ns = namespace()
    first = workflow_pods("v3.7.18", ns)["fetch"]
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(first)
        await cluster.finish_pod(first)
        await cluster.report(first, declared_outputs(first))
        tracks = await recorded(store, expected_key(first))
        (entry,) = tracks.values()
        replay = copy.deepcopy(workflow_pods("v3.7.18", ns, name="second")["fetch"])
        replay["metadata"]["labels"][CACHE_HIT] = "true"
        await cluster.create_pod(replay)
        await cluster.finish_pod(replay)
        restored = {"parameters": entry["parameters"], "artifacts": entry["artifacts"]}
        result = stamped(task_result(replay, restored))
        result["metadata"]["annotations"] = {"wfboost.io/replayed": "true"}  # as the webhook leaves it
        await cluster.store_task_result(result, replay)
        await asyncio.sleep(0.3)
        await recorder.housekeeping_pass()
    assert await store.tracks(expected_key(first)) == tracks
