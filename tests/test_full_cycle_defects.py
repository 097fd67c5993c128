"""The wrong-hit paths of issue 8, each through the whole cycle: pods built from Argo's source (tests/argo_source),
admitted over HTTPS (the API server's part played by the harness), stored in kmock's emulator, run (the kubelet's
part; a replay's program under busybox), reported by Argo's wait container as modelled from its source, admitted
again as task results, recorded by the real recorder, against real Valkey.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.argo_source.pods import ControllerConfig, controller_pod
from tests.argo_source.taskresult import task_result
from tests.conftest import StartWebhook, Webhook
from tests.harness.emulated import RAN_MS, Cluster, recorded, running
from tests.harness.kubelet import BUSYBOX, run_main
from wfboost.cache.store import CacheStore
from wfboost.kube import resource_path
from wfboost.policy import load_policy

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox-static is not installed (make setup installs it)")

POLICY = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\nmemoize: {namespaces: [def-*]}\n"
VERSION = "v3.7.18"
MINIO = {"s3": {"endpoint": "minio:9000", "bucket": "artifacts", "insecure": True,
                "accessKeySecret": {"name": "minio", "key": "accesskey"},
                "secretKeySecret": {"name": "minio", "key": "secretkey"}}}
TRAIN = {
    "name": "train",
    "inputs": {"parameters": [{"name": "lr"}]},
    "container": {"image": "ghcr.io/example/trainer:3@sha256:" + "e" * 64, "command": ["train"],
                  "args": ["--lr", "{{inputs.parameters.lr}}"]},
    "outputs": {"parameters": [{"name": "score", "valueFrom": {"path": "/tmp/score"}}],
                "artifacts": [{"name": "model", "path": "/tmp/model"}]},
}


@pytest.fixture
async def parts(cluster: Cluster, start_webhook: StartWebhook, valkey: Any, store: CacheStore,
                tmp_path: Path) -> Any:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    webhook = start_webhook(settings={"policy_path": policy_file, "redis_url": valkey.url})
    policy = load_policy(POLICY)
    async with running(cluster, store, lambda: policy) as recorder:
        yield webhook, cluster, store, recorder


def train_pod(ns: str, workflow: str, uid: str, lr: str, repository: dict[str, Any] = MINIO) -> dict[str, Any]:
    config = ControllerConfig(artifact_repository=repository)
    created = controller_pod(VERSION, workflow, uid, ns, TRAIN, f"{workflow}[0].train", inputs={"lr": lr},
                             config=config)
    return copy.deepcopy(created.pod)


async def run(webhook: Webhook, cluster: Cluster, pod: dict[str, Any], score: str, tmp_path: Path) -> dict[str, Any]:
    """The pod through admission, the kubelet and the wait container; returns the stored task result."""
    admitted = (await asyncio.to_thread(webhook.api.admit, "pods", pod)).object
    await cluster.create_pod(admitted)
    files = {"score": score + "\n"}
    if admitted["metadata"]["annotations"].get("wfboost.io/cache-outcome") == "hit":
        root = tmp_path / uuid.uuid4().hex
        main = next(c for c in admitted["spec"]["containers"] if c["name"] == "main")
        done = run_main(main, root)
        assert done.returncode == 0, done.stderr
        files = {"score": (root / "tmp" / "score").read_text()}
        assert not (root / "tmp" / "model").exists()
    await cluster.finish_pod(admitted)
    reported = task_result(VERSION, admitted, {"parameters": files})
    stored = (await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", reported)).object
    await cluster.store_task_result(stored, admitted)
    return {"pod": admitted, "task_result": stored}


async def delete_workflow(cluster: Cluster, ran: dict[str, Any]) -> None:
    """`kubectl delete workflow`: its pods and task results go with it (owner references)."""
    pod = ran["pod"]
    await cluster.delete_pod(pod)
    meta = ran["task_result"]["metadata"]
    await cluster.kube.delete(resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", meta["namespace"],
                                            meta["name"]))


def outcome(ran: dict[str, Any]) -> str:
    return str(ran["pod"]["metadata"]["annotations"]["wfboost.io/cache-outcome"])


async def test_a_workflow_re_created_under_its_name_is_replayed_and_the_cache_stays_whole(
    parts: Any, tmp_path: Path
) -> None:
    """Defect 1: the replay uploaded placeholders to `{{workflow.name}}/{{pod.name}}`, the very object the entry
    points at, when the workflow was re-created under the same name."""
    webhook, cluster, store, _ = parts
    ns = f"def-{uuid.uuid4().hex[:8]}"
    first = await run(webhook, cluster, train_pod(ns, "train", "uid-1", "0.1"), "0.91", tmp_path)
    key = first["pod"]["metadata"]["annotations"]["wfboost.io/cache-key"]
    (entry,) = (await recorded(store, key)).values()
    assert entry["ran_ms"] == RAN_MS  # main's run time, from the kubelet's startedAt/finishedAt: what a hit saves
    model = entry["artifacts"][0]
    run_id = first["pod"]["metadata"]["annotations"]["wfboost.io/run"]
    assert model["s3"]["key"] == f"train/{first['pod']['metadata']['name']}/wfboost-run-{run_id}/model.tgz"
    await delete_workflow(cluster, first)

    again = await run(webhook, cluster, train_pod(ns, "train", "uid-2", "0.1"), "unused", tmp_path)
    assert outcome(again) == "hit"
    outputs = again["task_result"]["outputs"]
    assert [a for a in outputs["artifacts"] if a["name"] == "model"] == [{**model, "artifactGC": {"strategy": "Never"}}]
    assert next(p["value"] for p in outputs["parameters"] if p["name"] == "score") == "0.91"
    await asyncio.sleep(0.3)  # the recorder has seen the replay's task result by now
    assert await store.tracks(key)  # the replay wrote over nothing, so nothing was invalidated
    await delete_workflow(cluster, again)
    third = await run(webhook, cluster, train_pod(ns, "train", "uid-3", "0.1"), "unused", tmp_path)
    assert outcome(third) == "hit"


async def test_a_run_with_other_inputs_never_writes_where_an_entry_points(parts: Any, tmp_path: Path) -> None:
    """Defect 1's class: a real run of other inputs (lr=0.2 after lr=0.1, the workflow re-created under its name)
    would upload to the same default key `{{workflow.name}}/{{pod.name}}` and overwrite the lr=0.1 entry's model.
    Each run uploads under its own segment instead: the lr=0.1 entry keeps pointing at lr=0.1's model."""
    webhook, cluster, store, _ = parts
    ns = f"def-{uuid.uuid4().hex[:8]}"
    first = await run(webhook, cluster, train_pod(ns, "train", "uid-1", "0.1"), "0.91", tmp_path)
    key_01 = first["pod"]["metadata"]["annotations"]["wfboost.io/cache-key"]
    (entry_01,) = (await recorded(store, key_01)).values()
    await delete_workflow(cluster, first)
    other = await run(webhook, cluster, train_pod(ns, "train", "uid-2", "0.2"), "0.87", tmp_path)
    assert outcome(other) == "miss: no_entry"
    (entry_02,) = (await recorded(store, other["pod"]["metadata"]["annotations"]["wfboost.io/cache-key"])).values()
    assert entry_02["artifacts"][0]["s3"]["key"] != entry_01["artifacts"][0]["s3"]["key"]
    await delete_workflow(cluster, other)
    back = await run(webhook, cluster, train_pod(ns, "train", "uid-3", "0.1"), "unused", tmp_path)
    assert outcome(back) == "hit"
    model = next(a for a in back["task_result"]["outputs"]["artifacts"] if a["name"] == "model")
    assert model["s3"] == entry_01["artifacts"][0]["s3"]  # lr=0.1's own model, which nothing wrote over


async def test_a_consumer_of_a_re_created_workflow_is_keyed_by_what_it_reads(parts: Any, tmp_path: Path) -> None:
    """The review's reproduction: `pipe` runs train(lr=0.1) -> evaluate, both recorded; re-created as `pipe` with
    lr=0.5, train runs for real and its new model must not be read by a replay of evaluate's lr=0.1 score."""
    webhook, cluster, store, _ = parts
    ns = f"def-{uuid.uuid4().hex[:8]}"
    scores = []
    for uid, lr, score in (("uid-1", "0.1", "0.91"), ("uid-2", "0.5", "0.42")):
        trained = await run(webhook, cluster, train_pod(ns, "pipe", uid, lr), "unused", tmp_path)
        await recorded(store, trained["pod"]["metadata"]["annotations"]["wfboost.io/cache-key"])
        model = next(a for a in trained["task_result"]["outputs"]["artifacts"] if a["name"] == "model")
        evaluate = {**TRAIN, "name": "evaluate", "inputs": {"artifacts": [{"name": "model", "path": "/tmp/in"}]},
                    "outputs": {"parameters": [{"name": "score", "valueFrom": {"path": "/tmp/score"}}]}}
        pod = controller_pod(VERSION, "pipe", uid, ns, evaluate, "pipe[1].evaluate", input_artifacts={
            "model": {"name": "model", "path": "/tmp/in", "s3": model["s3"]}},
            config=ControllerConfig(artifact_repository=MINIO)).pod
        evaluated = await run(webhook, cluster, copy.deepcopy(pod), score, tmp_path)
        scores.append((outcome(evaluated), next(
            p["value"] for p in evaluated["task_result"]["outputs"]["parameters"] if p["name"] == "score")))
        await recorded(store, evaluated["pod"]["metadata"]["annotations"]["wfboost.io/cache-key"])
        await delete_workflow(cluster, trained)
        await delete_workflow(cluster, evaluated)
    assert scores == [("miss: no_entry", "0.91"), ("miss: no_entry", "0.42")]


async def test_a_pod_replaced_before_it_ran_is_recorded_under_its_replacements_key(
    parts: Any, tmp_path: Path
) -> None:
    """Defect 2: the first pod seen for a node gave the key; a lookup for lr=0.1 returned lr=0.2's score."""
    webhook, cluster, store, _ = parts
    ns = f"def-{uuid.uuid4().hex[:8]}"
    pending = train_pod(ns, "sweep", "uid-1", "0.2")
    admitted = (await asyncio.to_thread(webhook.api.admit, "pods", pending)).object
    await cluster.create_pod(admitted)
    await cluster.delete_pod(admitted)  # deleted while Pending; the node's pod is created again, with lr=0.1
    ran = await run(webhook, cluster, train_pod(ns, "sweep", "uid-1", "0.1"), "0.91", tmp_path)
    (entry,) = (await recorded(store, ran["pod"]["metadata"]["annotations"]["wfboost.io/cache-key"])).values()
    assert entry["parameters"] == [{"name": "score", "value": "0.91"}]
    assert not await store.tracks(admitted["metadata"]["annotations"]["wfboost.io/cache-key"])


async def test_a_stopped_step_is_never_served(parts: Any, tmp_path: Path) -> None:
    """Defect 6: `argo stop` marks the node Failed; a main that exits 0 on SIGTERM leaves a Succeeded pod."""
    webhook, cluster, _, recorder = parts
    ns = f"def-{uuid.uuid4().hex[:8]}"
    cluster.controller_marks_nodes = False
    stopped = await run(webhook, cluster, train_pod(ns, "stopme", "uid-1", "0.1"), "partial", tmp_path)
    await cluster.mark_node(stopped["pod"], "Failed")
    async with asyncio.timeout(30):
        while not recorder.metrics.registry.get_sample_value(  # noqa: ASYNC110
            "wfboost_recorder_steps_skipped_total", {"reason": "node_not_succeeded"}
        ):
            await asyncio.sleep(0.02)
    cluster.controller_marks_nodes = True
    await delete_workflow(cluster, stopped)
    again = await run(webhook, cluster, train_pod(ns, "stopme", "uid-2", "0.1"), "0.91", tmp_path)
    assert outcome(again) == "miss: no_entry"


async def test_the_same_key_only_input_in_two_repositories_is_two_keys(parts: Any) -> None:
    """Defect 3: key-only input artifacts resolve against the consuming pod's artifact repository."""
    webhook, _, _, _ = parts
    ns = f"def-{uuid.uuid4().hex[:8]}"
    reader = {**TRAIN, "name": "read", "inputs": {"artifacts": [{"name": "data", "path": "/data/in.csv"}]}}
    other_bucket = {"s3": {**MINIO["s3"], "bucket": "other-team"}}
    keys = []
    for repository in (MINIO, other_bucket):
        written = "datasets/wfboost-run-" + "0123456789abcdef" * 2 + "/in.csv"  # written once by a memoized run
        pod = controller_pod(VERSION, "reader", "uid-r", ns, {**reader, "inputs": {"artifacts": [
            {"name": "data", "path": "/data/in.csv", "s3": {"key": written}}]}}, "reader[0].read",
            config=ControllerConfig(artifact_repository=repository)).pod
        answered = await asyncio.to_thread(webhook.api.admit, "pods", pod)
        keys.append(answered.object["metadata"]["annotations"]["wfboost.io/cache-key"])
    assert keys[0] != keys[1]
