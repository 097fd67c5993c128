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
from datetime import datetime, timedelta
from typing import Any

import orjson

from tests.harness.emulated import (
    FINISHED_AT,
    HANG_GUARD,
    Cluster,
    recorded,
    running,
    stamped,
    task_result,
    terminated_status,
)
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


async def test_an_earlier_runs_task_result_seen_while_recording_is_not_recorded(
    cluster: Cluster, store: CacheStore
) -> None:
    """The two watches run concurrently: while this run's entry is being written (the recorder reads the Workflow
    first), the task-result watch can hand over an earlier run's task result again (a replay after a reconnect,
    or its deletion). What is recorded is the task result that was checked to belong to this run."""
    ns = namespace()
    pod = workflow_pods("v3.7.18", ns)["fetch"]
    async with running(cluster, store, policy) as recorder:
        old_result = declared_outputs(pod)
        old_result["parameters"] = [{"name": "rows", "value": "from an earlier run"}]
        await cluster.report(pod, old_result)
        node = pod["metadata"]["annotations"]["workflows.argoproj.io/node-id"]
        path = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns, node)
        earlier = await cluster.kube.get(path)
        await asyncio.sleep(1.1)  # creation times have a resolution of one second
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await recorder.housekeeping_pass()
        read, gate = recorder.workflows.get, asyncio.Event()

        async def slow_read(*args: Any, **kwargs: Any) -> Any:
            await gate.wait()
            return await read(*args, **kwargs)

        recorder.workflows.get = slow_read  # type: ignore[method-assign]
        await cluster.kube.delete(path)
        await cluster.report(pod, declared_outputs(pod))  # this run's own: the recorder starts writing it
        for _ in range(200):
            if any(state.recording for _, state in recorder.table.items()):
                break
            await asyncio.sleep(0.01)
        await recorder.on_task_result("MODIFIED", earlier)  # the earlier run's, replayed meanwhile
        await recorder.on_task_result("DELETED", earlier)
        gate.set()
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


async def test_a_workflow_created_again_under_its_name_is_read_again(cluster: Cluster) -> None:
    """`kubectl delete` then `create` within the read interval: the new object's steps must not be judged by the old
    object's read (they would be refused as "re-created", and a cache that silently records nothing is the result)."""
    ns = namespace()
    pod = workflow_pods("v3.7.18", ns)["fetch"]
    await cluster.ensure_workflow(pod)
    now = [0.0]
    reader = WorkflowReader(cluster.kube, min_interval=10.0, clock=lambda: now[0])
    name = pod["metadata"]["labels"]["workflows.argoproj.io/workflow"]
    first_uid = pod["metadata"]["ownerReferences"][0]["uid"]
    assert (await reader.get(ns, name, uid=first_uid))["metadata"]["uid"] == first_uid  # type: ignore[index]
    again = copy.deepcopy(pod)
    again["metadata"]["ownerReferences"][0]["uid"] = "uid-of-the-new-object"
    await cluster.ensure_workflow(again)  # deleted and created again, a second later
    now[0] = 1.0
    assert (await reader.get(ns, name))["metadata"]["uid"] == first_uid  # type: ignore[index]  # no uid: cached
    fresh = await reader.get(ns, name, uid="uid-of-the-new-object")
    assert fresh is not None and fresh["metadata"]["uid"] == "uid-of-the-new-object" and reader.reads == 2
    await reader.get(ns, name, uid="uid-of-the-new-object")
    assert reader.reads == 2  # and that read serves the new object's steps for the interval


async def test_runs_of_one_pod_name_upload_to_places_of_their_own(cluster: Cluster, store: CacheStore) -> None:
    """A workflow re-created under the same name has the same pod names, so Argo's default key
    `{{workflow.name}}/{{pod.name}}` repeats: a run with other inputs would write over the object the first run's
    entry points at. Admitted by the webhook, each run uploads under its own segment: both entries stand, each
    pointing at its own run's object."""
    ns = namespace()
    first = workflow_pods("v3.7.18", ns, name="train")["fetch"]
    async with running(cluster, store, policy):
        await cluster.create_pod(first)
        await cluster.finish_pod(first)
        await cluster.report(first, declared_outputs(first))
        (entry_1,) = (await recorded(store, expected_key(first))).values()
        await cluster.delete_pod(first)
        await cluster.kube.delete(resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns,
                                                first["metadata"]["annotations"]["workflows.argoproj.io/node-id"]))
        again = with_args(workflow_pods("v3.7.18", ns, name="train")["fetch"], "fetch --lr 0.2")
        again["metadata"]["ownerReferences"][0]["uid"] = "uid-of-the-re-created-workflow"
        assert again["metadata"]["name"] == first["metadata"]["name"]  # same pod name
        await cluster.create_pod(again)
        await cluster.finish_pod(again)
        await cluster.report(again, declared_outputs(again))
        (entry_2,) = (await recorded(store, expected_key(again))).values()
    assert entry_1["artifacts"][0]["s3"]["key"] != entry_2["artifacts"][0]["s3"]["key"]
    assert await store.tracks(expected_key(first))  # nothing wrote over the first run's object


async def test_artifacts_not_under_the_runs_own_key_are_never_recorded(cluster: Cluster, store: CacheStore) -> None:
    """A pod the webhook did not admit (it was unreachable, or the template would not fit) uploads to Argo's own
    key, which the next run of a same-named workflow writes again; and a task result whose artifacts lie under
    another run's segment is another run's. Neither is recorded; a parameter-only step needs no segment."""
    ns = namespace()
    unadmitted = workflow_pods("v3.7.18", ns, name="plain", admitted=False)
    other = workflow_pods("v3.7.18", ns, name="other")["fetch"]
    foreign = workflow_pods("v3.7.18", ns, name="foreign")["fetch"]
    async with running(cluster, store, policy) as recorder:
        for pod, outputs in ((unadmitted["fetch"], declared_outputs(unadmitted["fetch"])),
                             (foreign, declared_outputs(other))):
            await cluster.create_pod(pod)
            await cluster.finish_pod(pod)
            await cluster.report(pod, outputs)
        async with asyncio.timeout(HANG_GUARD):
            while counter(recorder, "wfboost_recorder_steps_skipped_total", reason="not_write_once") < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        report = unadmitted["report"]  # no output artifacts: recorded without being admitted
        await cluster.create_pod(report)
        await cluster.finish_pod(report)
        await cluster.report(report, declared_outputs(report))
        await recorded(store, expected_key(report))
    assert await store.tracks(expected_key(unadmitted["fetch"])) == {}
    assert await store.tracks(expected_key(foreign)) == {}


async def test_a_pod_stopped_by_its_deletion_or_a_disruption_is_not_recorded(
    cluster: Cluster, store: CacheStore
) -> None:
    """Deleting a pod (a drain, the eviction API, preemption) sends SIGTERM; Argo's wait then reports what there is
    and the controller, seeing only the pod's phase, marks the node Succeeded. Three traces tell such a run apart:
    its deletion was requested before main finished, a DisruptionTarget condition, an executor's message."""
    ns = namespace()
    pods = workflow_pods("v3.7.18", ns)
    asked = datetime.fromisoformat(FINISHED_AT.replace("Z", "+00:00")) - timedelta(seconds=10)  # before main ended
    deleted = {"deletionTimestamp": (asked + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "deletionGracePeriodSeconds": 30}
    disrupted = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]
    async with running(cluster, store, policy) as recorder:
        for step, change, reason in (("fetch", {"metadata": deleted}, "pod_deleted"),
                                     ("features", {"conditions": disrupted}, "pod_disrupted")):
            pod = pods[step]
            await cluster.create_pod(pod)
            await cluster.finish_pod(pod, **change)  # main finished after the deletion was asked for
            await cluster.report(pod, declared_outputs(pod))
            await skipped(recorder, reason)
        errored = pods["report"]
        await cluster.create_pod(errored)
        status = terminated_status()
        status["containerStatuses"][0] = {"name": "wait", "state": {"terminated": {
            "exitCode": 0, "message": "Step exceeded its deadline", "finishedAt": FINISHED_AT}}}
        await cluster.kube.patch(resource_path("", "v1", "pods", ns, errored["metadata"]["name"]), {"status": status})
        await cluster.report(errored, declared_outputs(errored))
        await skipped(recorder, "executor_error")
    for step in ("fetch", "features", "report"):
        assert await store.tracks(expected_key(pods[step])) == {}


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
