"""The recorder against kmock's stateful Kubernetes emulator (real HTTP watches) and real Valkey.

Pods are built the way each Argo release's controller builds them (wfboost_dev.argosim.pods); the tests then play the
kubelet (pod status) and Argo's wait container (the WorkflowTaskResult) through the emulator's API, in the orders
a cluster produces, and read what the recorder wrote through the same store the webhook looks entries up in.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import socket
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import orjson
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.harness.emulated import (
    FINISHED_AT,
    FINISHED_MS,
    HANG_GUARD,
    IMAGE_ID,
    Cluster,
    node_id,
    recorded,
    running,
    stamped,
    task_result,
    terminated_status,
)
from wfboost.argo import names
from wfboost.argo.artifacts import relocate
from wfboost.argo.pods import parse_pod
from wfboost.cache import redis_client
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.marker import MARKER_PARAMETER, marker_parameter
from wfboost.cache.store import CacheStore
from wfboost.kube import resource_path
from wfboost.policy import Policy, load_policy
from wfboost.policy.controls import CACHE_HIT
from wfboost.recorder.join import MainExit, PendingStep, Refused, TaskOutputs, join
from wfboost.recorder.pending import PendingTable
from wfboost.recorder.watch import Recorder, RecorderSettings
from wfboost.shrink.refs import reference_for
from wfboost.webhook.runs import write_once_ops
from wfboost_dev.argosim.layouts import LAYOUTS, V3_7
from wfboost_dev.argosim.pods import build_pod
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import RedisProcess
from wfboost_dev.demo.runner import default_workflow_text

POLICY_TEXT = """
apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true}
memoize: {namespaces: ["team-*"]}
"""
P7D = 7 * 86400


def policy() -> Policy:
    return load_policy(POLICY_TEXT)


# --- building the cluster's objects --------------------------------------------------------------------------


def namespace() -> str:
    """A fresh namespace per test: the key includes it, so tests sharing one Valkey never see each other."""
    return f"team-{uuid.uuid4().hex[:10]}"


def workflow_pods(
    layout: str, ns: str, *, name: str | None = None, admitted: bool = True
) -> dict[str, dict[str, Any]]:
    """The demo pipeline's pods, by template: fetch-data (container; a parameter and an artifact), build-features
    (script; an artifact), train (three, by learning rate), report. `admitted`: as the webhook lets a memoizable
    miss through (its run named, its uploads under its own segment: webhook/runs.py), which is what the recorder
    finds in a cluster where wfboost is installed."""
    workflow = yaml.safe_load(default_workflow_text())
    if name is not None:
        workflow["metadata"] = {**workflow["metadata"], "name": name}
        workflow["metadata"].pop("generateName", None)
    run = "wfboost-run-" + uuid.uuid4().hex  # upstream outputs where a memoized run wrote them once
    upstream = {step: {"artifacts": {name: {"name": name, "s3": {"key": f"up/{run}/{name}.tgz"}}}}
                for step, name in (("fetch", "raw"), ("features", "features"))}
    plan = plan_workflow(workflow, layout, namespace=ns, outputs=upstream)
    pods: dict[str, dict[str, Any]] = {}
    for built in plan.pods:
        template = built.step.rsplit(".", 1)[-1]
        pods.setdefault(template, as_admitted(built.pod) if admitted else built.pod)
    return pods


def as_admitted(pod: dict[str, Any], configmap: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pod after the webhook's miss patch: `wfboost.io/run` and, with output artifacts, the archive key under
    the run's segment in every copy of the executor's template."""
    step = parse_pod(pod)
    if configmap is not None:
        step = step.with_offloaded(configmap["data"])
    run_id = uuid.uuid4().hex
    ops = [*write_once_ops(step, run_id),
           {"op": "add", "path": "/metadata/annotations/wfboost.io~1run", "value": run_id}]
    return jsonpatch.apply_patch(pod, ops)  # type: ignore[no-any-return]


def expected_key(pod: dict[str, Any], configmap: dict[str, Any] | None = None) -> str:
    step = parse_pod(pod)
    if configmap is not None:
        step = step.with_offloaded(configmap["data"])
    return cache_key(key_material(step))


def declared_outputs(pod: dict[str, Any], configmap: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the wait container reports for a successful run: each declared parameter, and each artifact under the
    key the executor gives it in the pod's artifact repository (a key only: executor.go saveArtifactFromFile)."""
    step = parse_pod(pod)
    if configmap is not None:
        step = step.with_offloaded(configmap["data"])
    declared = (step.template or {}).get("outputs") or {}
    parameters = [{"name": p["name"], "value": f"value of {p['name']}"} for p in declared.get("parameters") or []]
    archive_key = ((step.template or {}).get("archiveLocation") or {}).get("s3", {}).get("key", "")
    artifacts = [
        {"name": a["name"], "path": a.get("path"), "s3": {"key": f"{archive_key}/{a['name']}.tgz"}}
        for a in declared.get("artifacts") or []
    ]
    return {"parameters": parameters, "artifacts": artifacts, "exitCode": "0"}


def located(pod: dict[str, Any], artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The artifacts with their whole location, resolved against the pod's artifact repository as Argo does."""
    archive = (parse_pod(pod).template or {}).get("archiveLocation")
    relocated = [relocate(a, archive) for a in artifacts]
    return [{k: v for k, v in a.items() if k != "archiveLogs"} for a in relocated]  # the repository's, not theirs


# --- fixtures ------------------------------------------------------------------------------------------------


def counter(recorder: Recorder, name: str, **labels: str) -> float:
    return recorder.metrics.registry.get_sample_value(name, labels) or 0.0


async def writes_done(recorder: Recorder, count: int) -> None:
    """The entry is visible in Redis a moment before the recorder has finished its bookkeeping."""
    name = "wfboost_recorder_entries_recorded_total"
    async with asyncio.timeout(HANG_GUARD):
        while counter(recorder, name, result="new") + counter(recorder, name, result="unchanged") < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# --- the tests -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [layout.name for layout in LAYOUTS])
async def test_a_finished_step_is_recorded_with_exactly_its_outputs(
    layout: str, cluster: Cluster, store: CacheStore
) -> None:
    ns = namespace()
    pod = workflow_pods(layout, ns)["fetch"]
    outputs = {**declared_outputs(pod), "result": "fetched 1204 rows\n"}
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, outputs)
        tracks = await recorded(store, expected_key(pod))
        await writes_done(recorder, 1)
    assert list(tracks) == [str(P7D)]
    entry = tracks[str(P7D)]
    meta = pod["metadata"]
    assert entry["key"] == expected_key(pod)
    assert entry["parameters"] == [{"name": "rows", "value": "value of rows"}]
    assert entry["artifacts"] == located(pod, outputs["artifacts"])
    assert entry["artifacts"][0]["s3"]["endpoint"] == "minio:9000"  # the whole location, not only the key
    assert entry["result"] == "fetched 1204 rows\n"
    assert (entry["finished_at"], entry["finished_ms"], entry["staleness_s"]) == (FINISHED_AT, FINISHED_MS, P7D)
    assert entry["image"].startswith("ghcr.io/example/data-tools:1.4.2@sha256:")
    assert entry["image_id"] == IMAGE_ID
    assert entry["producer"] == {
        "namespace": ns,
        "workflow": meta["labels"][names.LABEL_WORKFLOW],
        "workflow_uid": meta["ownerReferences"][0]["uid"],
        "node_id": node_id(pod),
        "node_name": meta["annotations"][names.ANNOTATION_NODE_NAME],
        "pod": meta["name"],
    }
    assert counter(recorder, "wfboost_recorder_entries_recorded_total", result="new") == 1
    assert counter(recorder, "wfboost_recorder_recorded_bytes_total") > 0


async def test_a_script_step_is_recorded_against_a_redis_cluster(
    cluster: Cluster, cluster_store: CacheStore
) -> None:
    ns = namespace()
    pod = workflow_pods("v4.1.2", ns)["features"]
    async with running(cluster, cluster_store, policy):
        await cluster.create_pod(pod)
        await cluster.report(pod, declared_outputs(pod))  # the task result first, this time
        await cluster.finish_pod(pod)
        tracks = await recorded(cluster_store, expected_key(pod))
    entry = tracks[str(P7D)]
    assert [a["name"] for a in entry["artifacts"]] == ["features"]
    assert entry["parameters"] == [] and "result" not in entry


async def test_the_task_result_may_arrive_before_the_pod_is_seen(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    pod = stamped(workflow_pods("v3.6.19", ns)["fetch"])  # created first (its wait container writes the result),
    async with running(cluster, store, policy) as recorder:  # but seen by the recorder after its task result
        await cluster.report(pod, declared_outputs(pod))
        async with asyncio.timeout(HANG_GUARD):
            while recorder.table.get((ns, node_id(pod))) is None:  # noqa: ASYNC110 - the other watch's task
                await asyncio.sleep(0.01)
        await cluster.create_pod({**pod, "status": terminated_status()})
        await recorded(store, expected_key(pod))


async def test_main_exiting_0_is_not_enough_the_pod_must_succeed(cluster: Cluster, store: CacheStore) -> None:
    """Argo's wait container may still fail (an artifact upload) after main exited 0: the pod then fails, and
    nothing is recorded; while wait runs, nothing is recorded yet."""
    ns = namespace()
    pods = workflow_pods("v3.7.18", ns)
    failing, slow = pods["fetch"], pods["features"]
    running_wait = {**terminated_status(), "phase": "Running"}
    running_wait["containerStatuses"][0] = {"name": "wait", "state": {"running": {"startedAt": FINISHED_AT}}}
    async with running(cluster, store, policy) as recorder:
        for pod in (failing, slow):
            await cluster.create_pod(pod)
            await cluster.report(pod, declared_outputs(pod))
            await cluster.kube.patch(
                resource_path("", "v1", "pods", ns, pod["metadata"]["name"]), {"status": running_wait}
            )
        await cluster.kube.patch(
            resource_path("", "v1", "pods", ns, failing["metadata"]["name"]),
            {"status": {**terminated_status(), "phase": "Failed"}},
        )
        def decided() -> str | None:
            state = recorder.table.get((ns, node_id(failing)))
            return state.done if state is not None else None

        async with asyncio.timeout(HANG_GUARD):
            while decided() is None:  # noqa: ASYNC110 - set by the recorder's watch task
                await asyncio.sleep(0.01)
        assert decided() == "failed"
        assert await store.tracks(expected_key(slow)) == {}  # wait is still saving outputs
        await cluster.finish_pod(slow)  # phase Succeeded
        await recorded(store, expected_key(slow))
    assert await store.tracks(expected_key(failing)) == {}


async def test_a_pod_garbage_collected_as_it_finishes_is_still_recorded(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    pod = workflow_pods("v3.7.18", ns)["fetch"]
    async with running(cluster, store, policy):
        await cluster.create_pod(pod)
        cluster.finish_silently(pod)
        await cluster.delete_pod(pod)  # the DELETED event carries the only status with main terminated
        await cluster.report(pod, declared_outputs(pod))  # and the task result comes after the pod is gone
        tracks = await recorded(store, expected_key(pod))
    assert tracks[str(P7D)]["finished_at"] == FINISHED_AT


def _failed_exit(pod: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any], bool]:
    return pod, 1, declared_outputs(pod), True


def _incomplete(pod: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any], bool]:
    return pod, 0, declared_outputs(pod), False


def _bad_exit_code_output(pod: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any], bool]:
    return pod, 0, {**declared_outputs(pod), "exitCode": "2"}, True


def _missing_parameter(pod: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any], bool]:
    return pod, 0, {**declared_outputs(pod), "parameters": []}, True


def _missing_artifact(pod: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any], bool]:
    return pod, 0, {**declared_outputs(pod), "artifacts": []}, True


def _labelled(label: str, value: str) -> Any:
    def case(pod: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any], bool]:
        changed = copy.deepcopy(pod)
        changed["metadata"]["labels"][label] = value
        return changed, 0, declared_outputs(pod), True

    return case


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (_failed_exit, "failed"),
        (_incomplete, None),
        (_bad_exit_code_output, "failed"),
        (_missing_parameter, "missing_output"),
        (_missing_artifact, "missing_output"),
        (_labelled(CACHE_HIT, "true"), "cache_hit"),
        (_labelled("wfboost.io/cache", "false"), "cache_off"),
        (_labelled("wfboost.io/cache", "maybe"), "bad_control"),
    ],
    ids=["exit-1", "incomplete-task-result", "outputs-exit-code", "missing-parameter", "missing-artifact",
         "replayed-hit", "cache-off", "bad-control"],
)
async def test_runs_that_must_not_be_cached_are_never_recorded(
    case: Any, reason: str | None, cluster: Cluster, store: CacheStore
) -> None:
    ns = namespace()
    pods = workflow_pods("v3.7.18", ns)
    pod, exit_code, outputs, complete = case(pods["fetch"])
    sentinel = pods["features"]  # recorded after the case's events on both watches: everything before was handled
    async with running(cluster, store, policy) as recorder:
        for step, code, out, done in ((pod, exit_code, outputs, complete), (sentinel, 0, None, True)):
            await cluster.create_pod(step)
            await cluster.finish_pod(step, code)
            await cluster.report(step, out if out is not None else declared_outputs(step), complete=done)
        await recorded(store, expected_key(sentinel))
        await writes_done(recorder, 1)
        await recorder.housekeeping_pass()
        assert await store.tracks(expected_key(pods["fetch"])) == {}
        if reason is not None:
            assert counter(recorder, "wfboost_recorder_steps_skipped_total", reason=reason) == 1
        else:
            # still waiting for the task result to complete
            assert recorder.metrics.registry.get_sample_value("wfboost_recorder_pending_steps") == 1
        assert counter(recorder, "wfboost_recorder_entries_recorded_total", result="new") == 1


async def test_namespaces_without_memoization_are_ignored(cluster: Cluster, store: CacheStore) -> None:
    elsewhere = "elsewhere-" + uuid.uuid4().hex[:8]
    pods = workflow_pods("v3.5.14", elsewhere)
    sentinel = workflow_pods("v3.5.14", namespace())["fetch"]
    async with running(cluster, store, policy) as recorder:
        for pod in (pods["fetch"], sentinel):
            await cluster.create_pod(pod)
            await cluster.finish_pod(pod)
            await cluster.report(pod, declared_outputs(pod))
        await recorded(store, expected_key(sentinel))
        assert await store.tracks(expected_key(pods["fetch"])) == {}
        assert recorder.table.get((elsewhere, node_id(pods["fetch"]))) is None


async def test_replayed_events_and_a_second_recorder_change_nothing(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    pod = workflow_pods("v4.1.2-initless", ns)["fetch"]
    async with running(cluster, store, policy) as first:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod))
        before = await recorded(store, expected_key(pod))
        await writes_done(first, 1)
        stats = await store.stats()
        # The same events again, as a reconnecting watch delivers them.
        final = cluster.kmock.objects["v1/pods", ns, pod["metadata"]["name"]].raw
        await first.on_pod("MODIFIED", final)
        await first.on_task_result("ADDED", task_result(pod, declared_outputs(pod)))
    # A restarted recorder (empty memory) lists everything again and writes the same entry once more.
    async with running(cluster, store, policy) as second:
        async with asyncio.timeout(HANG_GUARD):
            while not counter(second, "wfboost_recorder_entries_recorded_total", result="unchanged"):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    assert await store.tracks(expected_key(pod)) == before
    assert (await store.stats())["recorded"] == stats["recorded"]
    assert counter(first, "wfboost_recorder_entries_recorded_total", result="new") == 1
    assert counter(second, "wfboost_recorder_entries_recorded_total", result="new") == 0


async def test_two_recorders_at_once_record_each_run_once_and_restore_each_replay_once(
    cluster: Cluster, store: CacheStore
) -> None:
    """A rollout runs the old and the new recorder side by side for a while: both see every event. Each finished
    run is recorded once (the store's write is atomic: one `new`, the other `unchanged`), and a replayed step's
    task result that both find still marked ends as one restore leaves it."""
    ns = namespace()
    pods = workflow_pods("v3.7.18", ns)
    hit = copy.deepcopy(pods.pop("fetch"))
    hit["metadata"]["labels"][CACHE_HIT] = "true"
    cached = {"name": "raw", "path": "/data/raw.parquet", "s3": {"endpoint": "minio:9000", "bucket": "b", "key": "k"}}
    marker = marker_parameter("k" * 64, "entry-1", [cached])
    replayed = {"parameters": [{"name": "rows", "value": "7"},
                               {"name": MARKER_PARAMETER, "value": marker["valueFrom"]["default"]}]}
    path = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns,
                         hit["metadata"]["annotations"]["workflows.argoproj.io/node-id"])
    async with running(cluster, store, policy) as first, running(cluster, store, policy) as second:
        for pod in pods.values():
            await cluster.create_pod(pod)
            await cluster.finish_pod(pod)
            await cluster.report(pod, declared_outputs(pod))
        await cluster.create_pod(hit)
        await cluster.finish_pod(hit)
        await cluster.report(hit, replayed)
        for pod in pods.values():
            await recorded(store, expected_key(pod))
        async with asyncio.timeout(HANG_GUARD):
            while sum(counter(r, "wfboost_recorder_entries_recorded_total", result=result)  # noqa: ASYNC110
                      for r in (first, second) for result in ("new", "unchanged")) < 2 * len(pods):
                await asyncio.sleep(0.02)
            while MARKER_PARAMETER in orjson.dumps(await cluster.kube.get(path)).decode():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the slower recorder's restore, if it makes one, lands too
        stored = await cluster.kube.get(path)
    assert stored["outputs"]["artifacts"] == [{**cached, "artifactGC": {"strategy": "Never"}}]
    assert stored["outputs"]["parameters"] == [{"name": "rows", "value": "7"}]
    assert sum(counter(r, "wfboost_recorder_entries_recorded_total", result="new") for r in (first, second)) == len(
        pods)
    for pod in pods.values():  # (the store's own tally is shared with the other tests of the session)
        assert len(await store.tracks(expected_key(pod))) == 1
    assert await store.tracks(expected_key(hit)) == {}


async def test_a_watch_that_expires_lists_again_and_still_records(cluster: Cluster, store: CacheStore) -> None:
    gone = {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired", "message": "too old"}
    cluster.kmock["watch v1/pods"][:1] << 410 << gone
    cluster.kmock["watch argoproj.io/v1alpha1/workflowtaskresults"][:1] << 410 << gone
    ns = namespace()
    pod = workflow_pods("v3.7.18", ns)["fetch"]
    async with running(cluster, store, policy) as recorder:
        async with asyncio.timeout(HANG_GUARD):
            restarts = ("wfboost_recorder_watch_restarts_total", "workflowtaskresults", "expired")
            while counter(recorder, restarts[0], resource=restarts[1], reason=restarts[2]) < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod))
        await recorded(store, expected_key(pod))
    assert counter(recorder, "wfboost_recorder_watch_restarts_total", resource="pods", reason="expired") == 1


def offloading_workflow(ns: str) -> dict[str, Any]:
    source = "print('x')\n" + "# a long comment that makes the template big\n" * 3500  # > 128 KiB
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "big-script", "namespace": ns},
        "spec": {
            "entrypoint": "big",
            "templates": [{
                "name": "big",
                "script": {"image": "python:3.12-slim@sha256:" + "c" * 64, "command": ["python"], "source": source},
                "outputs": {"parameters": [{"name": "answer", "valueFrom": {"path": "/tmp/answer"}}]},
            }],
        },
    }


async def test_an_offloaded_template_is_read_from_its_configmap(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    built = build_pod(offloading_workflow(ns), "big", "big-script", layout=V3_7)
    assert built.configmap is not None
    pod, configmap = built.pod, {**built.configmap, "metadata": {**built.configmap["metadata"], "namespace": ns}}
    key = expected_key(pod, configmap)
    async with running(cluster, store, policy):
        await cluster.create_configmap(configmap)  # the controller creates it before the pod
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod, configmap))
        tracks = await recorded(store, key)
    assert tracks[str(P7D)]["parameters"] == [{"name": "answer", "value": "value of answer"}]


async def test_an_offloaded_template_whose_configmap_is_gone_is_skipped(cluster: Cluster, store: CacheStore) -> None:
    ns = namespace()
    built = build_pod(offloading_workflow(ns), "big", "big-script", layout=V3_7)
    sentinel = workflow_pods("v3.7.18", ns)["fetch"]
    async with running(cluster, store, policy) as recorder:
        for pod in (built.pod, sentinel):
            await cluster.create_pod(pod)
            await cluster.finish_pod(pod)
        await cluster.report(sentinel, declared_outputs(sentinel))
        await recorded(store, expected_key(sentinel))
        assert counter(recorder, "wfboost_recorder_steps_skipped_total", reason="offload_missing") == 1


async def test_p0d_is_recorded_on_its_own_track_and_purge_runs_in_the_background(
    cluster: Cluster, store: CacheStore
) -> None:
    ns = namespace()
    pod = copy.deepcopy(workflow_pods("v3.6.19", ns)["fetch"])
    pod["metadata"]["annotations"]["wfboost.io/max-staleness"] = "P0D"
    async with running(cluster, store, policy) as recorder:
        await cluster.create_pod(pod)
        await cluster.finish_pod(pod)
        await cluster.report(pod, declared_outputs(pod))
        tracks = await recorded(store, expected_key(pod))
        assert list(tracks) == ["0"]
        assert await recorder.purge_once() >= 0  # the entry is young: nothing of it goes
        assert await store.tracks(expected_key(pod)) == tracks


# --- the pure parts -----------------------------------------------------------------------------------------


PENDING = PendingStep(
    namespace="team-a", node_id="wf-1", key="k" * 64, staleness_s=P7D, entry_id="uid-1", pod_uid="uid-1",
    pod_created="2026-03-04T05:00:00Z", workflow="wf", workflow_uid="u", deadline="0001-01-01T00:00:00Z",
    image="busybox", main_container="main", declared_parameters=("rows",), declared_artifacts=("raw",),
    archive_location={"s3": {"endpoint": "minio:9000", "bucket": "b", "key": "wf/wf-a-1"}},
    producer={"namespace": "team-a", "workflow": "wf", "workflow_uid": "u", "node_id": "wf-1", "node_name": "wf.a",
              "pod": "wf-a-1"},
    run_id="0123456789abcdef" * 2,
)
GOOD_OUTPUTS = {"parameters": [{"name": "rows", "value": "3"}],
                "artifacts": [{"name": "raw", "s3": {"key": f"wf/wf-a-1/wfboost-run-{PENDING.run_id}/raw.tgz"}}]}


@given(exit_code=st.integers(min_value=-255, max_value=255), phase=st.sampled_from(["", "Succeeded", "Failed"]),
       reported_exit=st.sampled_from([None, "0", "1", "137"]))
def test_only_clean_exits_are_ever_joined_into_an_entry(exit_code: int, phase: str, reported_exit: str | None) -> None:
    outputs = {**GOOD_OUTPUTS, **({"exitCode": reported_exit} if reported_exit is not None else {})}
    joined = join(PENDING, MainExit(exit_code, FINISHED_AT, IMAGE_ID), TaskOutputs(outputs, phase),
                  now=datetime(2026, 3, 4, tzinfo=UTC))
    clean = exit_code == 0 and phase != "Failed" and reported_exit in (None, "0")
    assert isinstance(joined, dict) == clean


def test_a_run_whose_outputs_were_moved_to_the_side_store_is_not_recorded() -> None:
    """shrinkTaskResults replaced the value by a reference held by the Workflow's uid: an entry would outlive it."""
    outputs = {**GOOD_OUTPUTS, "parameters": [{"name": "rows", "value": reference_for("3" * 5000).text}]}
    joined = join(PENDING, MainExit(0, FINISHED_AT, IMAGE_ID), TaskOutputs(outputs, "Succeeded"),
                  now=datetime(2026, 3, 4, tzinfo=UTC))
    assert isinstance(joined, Refused) and joined.reason == "outputs_in_sidestore"
    assert "rows" in joined.detail


def test_the_pending_table_is_bounded_and_expires() -> None:
    table = PendingTable(ttl=10, capacity=2)
    table.touch(("ns", "a"), now=0)
    table.touch(("ns", "b"), now=1)
    table.touch(("ns", "a"), now=2)  # renewed: now the newest
    table.touch(("ns", "c"), now=3)  # over capacity: the least recently seen (b) goes
    assert table.get(("ns", "b")) is None and table.evicted == 1
    dropped = table.expire(now=12.5)
    assert [ident for ident, _ in dropped] == [("ns", "a")]
    assert table.get(("ns", "c")) is not None and table.expired == 1


def _events(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "ADDED", pod
    yield "MODIFIED", {**pod, "status": terminated_status()}


async def test_the_recorded_key_is_the_one_the_webhook_annotates(
    valkey: RedisProcess, cluster: Cluster, store: CacheStore
) -> None:
    from wfboost.webhook.review import offline_admission, review_all

    ns = namespace()
    pod = workflow_pods("v4.1.2", ns, admitted=False)["fetch"]
    async with offline_admission(policy(), valkey.url) as admission:
        [reviewed] = await review_all([pod], admission)
    assert reviewed.patched_object is not None
    annotated = reviewed.patched_object["metadata"]["annotations"]["wfboost.io/cache-key"]
    async with running(cluster, store, policy):
        await cluster.create_pod(reviewed.patched_object)
        await cluster.finish_pod(reviewed.patched_object)
        await cluster.report(reviewed.patched_object, declared_outputs(reviewed.patched_object))
        assert list(await recorded(store, annotated)) == [str(P7D)]


async def test_step_without_outputs_after_expiry_is_counted(store: CacheStore) -> None:
    now = [0.0]
    recorder = Recorder(None, store, policy, settings=RecorderSettings(pending_ttl=60),  # type: ignore[arg-type]
                        clock=lambda: now[0])
    pod = workflow_pods("v3.5.14", namespace())["fetch"]
    await recorder.on_pod("ADDED", {**pod, "status": terminated_status()})
    assert recorder.table.waiting() == 1
    now[0] = 61.0
    await recorder.housekeeping_pass()
    assert recorder.table.waiting() == 0
    assert counter(recorder, "wfboost_recorder_steps_skipped_total", reason="expired") == 1
    assert recorder.metrics.registry.get_sample_value("wfboost_recorder_pending_steps") == 0


# --- the command ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_recorder_command_serves_metrics_and_stops_on_sigterm(
    cluster: Cluster, valkey: RedisProcess, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(cluster.kmock.url).rstrip("/")}}],
        "users": [{"name": "me", "user": {}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "me"}}],
    }))
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY_TEXT)
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wfboost", "recorder", "--kubeconfig", str(kubeconfig), "--redis-url", valkey.url,
        "--policy", str(policy_file), "--metrics-port", str(port), "--retry-interval", "0.1",
        "--workflow-read-interval", "0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(HANG_GUARD):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.05)
            ns = namespace()
            pod = workflow_pods("v3.7.18", ns)["fetch"]
            await cluster.create_pod(pod)
            await cluster.finish_pod(pod)
            await cluster.report(pod, declared_outputs(pod))
            client = redis_client.connect(valkey.url)
            try:
                await recorded(CacheStore(client), expected_key(pod))
            finally:
                await client.aclose()
            wanted = 'wfboost_recorder_entries_recorded_total{result="new"} 1.0'
            metrics = ""
            while wanted not in metrics:  # the counter moves just after the write Redis already shows
                async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                    metrics = await response.text()
                await asyncio.sleep(0.02)
        assert wanted in metrics
        assert "wfboost_recorder_pending_steps" in metrics
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(HANG_GUARD):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        assert b"recorder stopped" in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_recorder_command_without_a_policy_file_keeps_running(
    cluster: Cluster, valkey: RedisProcess, tmp_path: Path
) -> None:
    """With no --policy the policy watcher has nothing to watch and returns; the recorder must not exit with it
    (found on a real API server: it exited 0 at once)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(cluster.kmock.url).rstrip("/")}}],
        "users": [{"name": "me", "user": {}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "me"}}],
    }))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "WFBOOST_POLICY"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wfboost", "recorder", "--kubeconfig", str(kubeconfig), "--redis-url", valkey.url,
        "--metrics-port", str(port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(HANG_GUARD):
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                assert process.returncode is None, "the recorder exited"
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert process.returncode is None
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(HANG_GUARD):
            _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_the_recorder_command_needs_redis(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from wfboost.cli import main

    monkeypatch.delenv("WFBOOST_REDIS_URL", raising=False)
    assert main(["recorder"]) == 1
    assert capsys.readouterr().err == (
        "wfboost recorder: --redis-url (or WFBOOST_REDIS_URL) is required: entries are written to Redis/Valkey\n"
    )


async def test_a_pod_changed_after_admission_is_not_recorded(cluster: Cluster, store: CacheStore) -> None:
    """The annotation is never trusted as the key; a recomputed key that differs from it means the pod ran otherwise
    than admitted (a later webhook added or changed a container), so nothing is recorded under either key."""
    ns = namespace()
    pods = workflow_pods("v3.7.18", ns)
    pod = copy.deepcopy(pods["fetch"])
    pod["metadata"]["annotations"]["wfboost.io/cache-key"] = "0" * 64  # what admission saw was another pod
    sentinel = pods["features"]  # recorded after the pod's events: everything before was handled
    async with running(cluster, store, policy) as recorder:
        for step in (pod, sentinel):
            await cluster.create_pod(step)
            await cluster.finish_pod(step)
            await cluster.report(step, declared_outputs(step))
        await recorded(store, expected_key(sentinel))
        assert await store.tracks(expected_key(pod)) == {} and await store.tracks("0" * 64) == {}
        assert counter(recorder, "wfboost_recorder_key_mismatches_total") == 1.0
        assert counter(recorder, "wfboost_recorder_steps_skipped_total", reason="changed_after_admission") == 1


def test_a_deletion_after_main_finished_is_pod_gc_not_a_stop() -> None:
    from wfboost.recorder.join import stopped

    finished = MainExit(0, "2026-03-04T05:00:10Z", IMAGE_ID)

    def pod(deletion: str, grace: int) -> dict[str, Any]:
        return {"metadata": {"deletionTimestamp": deletion, "deletionGracePeriodSeconds": grace}, "status": {}}

    assert stopped(pod("2026-03-04T05:00:41Z", 30), finished) is None  # asked at :11, after main finished
    assert stopped(pod("2026-03-04T05:00:11Z", 0), finished) is None  # a force delete after the end
    refused = stopped(pod("2026-03-04T05:00:40Z", 30), finished)  # asked at :10, the second main finished in
    assert refused is not None and refused.reason == "pod_deleted"
    assert stopped({"metadata": {}, "status": {"conditions": [
        {"type": "DisruptionTarget", "status": "False"}]}}, finished) is None


def test_a_task_result_is_this_runs_only_when_created_after_its_pod() -> None:
    from wfboost.recorder.join import belongs_to

    for created, ours in (("2026-03-04T05:00:01Z", True), ("2026-03-04T05:00:00Z", False),
                          ("2026-03-04T04:59:59Z", False)):
        outputs = TaskOutputs(GOOD_OUTPUTS, "", workflow_uid="u", created=created)
        assert belongs_to(outputs, PENDING) is ours, created  # the pod was created at 05:00:00
    assert not belongs_to(TaskOutputs(GOOD_OUTPUTS, "", workflow_uid="other", created="2026-03-05T00:00:00Z"),
                          PENDING)
