"""A hit uploads nothing: checked against pods and a wait container written from Argo's source (tests/argo_source),
not from wfboost's own model of Argo.

The first run's task result is what Argo's executor reports (key-only artifact locations under the default key
`{{workflow.name}}/{{pod.name}}`). The workflow is then re-created under the same name, so its pod, and so its
default upload key, is the same: the hit's replay must not upload anything there (it would overwrite the object the
entry points at). The replay runs under busybox after the kubelet's `$(VAR)` expansion; Argo's wait container, as
the independent model has it, reads the template the hit patch left, reports the replayed parameters and the replay
marker and no artifact; the webhook then puts the cached artifacts back into the task result. Without that rewrite
the artifacts are absent, never empty files.
"""

from __future__ import annotations

import copy
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.argo_source.pods import ControllerConfig, controller_pod
from tests.argo_source.taskresult import executor_template, task_result
from tests.conftest import REDIS_DEPLOYMENTS, StartWebhook, Webhook, redis_deployment
from tests.harness.kubelet import BUSYBOX, run_main, wait_reads
from wfboost.argo.pods import parse_pod
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.marker import MARKER_PARAMETER
from wfboost_dev.demo.processes import start_redis

needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox-static is not installed (make setup installs it)")
POLICY = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\nmemoize: {namespaces: [ml]}\n"
MINIO = {"s3": {"endpoint": "minio:9000", "bucket": "artifacts", "insecure": True,
                "accessKeySecret": {"name": "minio", "key": "accesskey"},
                "secretKeySecret": {"name": "minio", "key": "secretkey"}}}
TEMPLATE = {
    "name": "make-model",
    "container": {
        "image": "python@sha256:" + "3" * 64,
        "command": ["python", "-c"],
        "args": ["open('/tmp/rows','w').write('42'); open('/tmp/model.bin','w').write('weights')"],
    },
    "outputs": {
        "parameters": [{"name": "rows", "valueFrom": {"path": "/tmp/rows"}}],
        "artifacts": [{"name": "model", "path": "/tmp/model.bin"}],
    },
}
LAYOUTS = [("v3.5.14", False), ("v3.6.19", False), ("v3.7.18", False), ("v4.1.2", False), ("v4.1.2", True)]


@pytest.fixture(params=list(REDIS_DEPLOYMENTS))
def memo_webhook(request: pytest.FixtureRequest, start_webhook: StartWebhook, tmp_path: Path) -> Webhook:
    server = redis_deployment(request)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_webhook(settings={"policy_path": policy, "redis_url": server.url})


def pod_of(version: str, initless: bool, workflow_uid: str, seed: str) -> dict[str, Any]:
    config = ControllerConfig(initless=initless, artifact_repository=MINIO)
    created = controller_pod(version, "train", workflow_uid, "ml", TEMPLATE, "train[0].model", config=config)
    pod = copy.deepcopy(created.pod)
    pod["metadata"]["annotations"]["wfboost.io/cache-seed"] = seed
    return pod


def record_first_run(webhook: Webhook, version: str, pod: dict[str, Any], seed: str,
                     finished_ms: int = 1_900_000_000_000) -> dict[str, Any]:
    """The entry the recorder writes from the first run: the outputs Argo's executor reported."""
    reported = task_result(version, pod, {"parameters": {"rows": "42"}})["outputs"]
    step = parse_pod(pod)
    entry = {
        "key": cache_key(key_material(step, seed=seed)), "entry_id": "first-run", "finished_at": "2026-11-22T10:00:00Z",
        "finished_ms": finished_ms, "staleness_s": 604800,
        "parameters": [{"name": p["name"], "value": p["value"]} for p in reported["parameters"]],
        "artifacts": reported["artifacts"], "image": step.main["image"], "image_id": "sha256:" + "3" * 64,
        "producer": {"namespace": "ml", "workflow": "train", "workflow_uid": "uid-first", "node_id": step.node_id,
                     "node_name": step.node_name, "pod": step.pod_name},
        "recorded_at": "2026-11-22T10:00:01Z",
    }
    store = webhook.server.store
    assert store is not None
    webhook.running.call(lambda: store.record(entry, retention=timedelta(days=3650)))  # type: ignore[arg-type]
    return entry


@needs_busybox
@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=[f"{v}{'-initless' if i else ''}" for v, i in LAYOUTS])
def test_a_hit_uploads_nothing_and_its_task_result_points_at_the_cached_artifacts(
    memo_webhook: Webhook, version: str, initless: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    seed = request.node.nodeid
    first = pod_of(version, initless, "uid-first", seed)
    entry = record_first_run(memo_webhook, version, first, seed)
    cached = entry["artifacts"][0]
    assert cached["s3"]["key"].startswith(f"train/{first['metadata']['name']}/")  # the deterministic default key

    again = pod_of(version, initless, "uid-again", seed)  # re-created under the same name: the same pod name
    assert again["metadata"]["name"] == first["metadata"]["name"]
    answered = memo_webhook.api.admit("pods", again)
    hit = answered.object
    assert hit["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"

    template = executor_template(hit)  # what Argo's executor reads from the patched pod
    assert "artifacts" not in template["outputs"]  # so it archives and uploads nothing
    assert "artifacts" not in (template.get("inputs") or {})  # and downloads nothing
    main = next(c for c in hit["spec"]["containers"] if c["name"] == "main")
    done = run_main(main, tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "tmp" / "model.bin").exists()
    files = {"rows": (tmp_path / "tmp" / "rows").read_text()}

    raw = task_result(version, hit, {"parameters": files})
    assert "artifacts" not in raw["outputs"]  # nothing uploaded, nothing empty that could pass for the model
    assert [p["name"] for p in raw["outputs"]["parameters"]] == ["rows", MARKER_PARAMETER]

    stored = memo_webhook.api.admit("workflowtaskresults", raw).object
    assert stored["metadata"]["annotations"]["wfboost.io/replayed"] == "true"  # the cache's objects, not this run's
    outputs = stored["outputs"]
    assert outputs["parameters"] == raw["outputs"]["parameters"][:1]  # as Argo reported them, marker gone
    assert outputs["parameters"][0]["value"] == "42"
    assert outputs["artifacts"] == [{**cached, "artifactGC": {"strategy": "Never"}}]
    again_stored = memo_webhook.api.admit("workflowtaskresults", stored).object  # later writes: nothing more
    assert again_stored["outputs"] == outputs


def test_a_step_that_ran_for_real_keeps_what_it_reported(memo_webhook: Webhook, request: pytest.FixtureRequest) -> None:
    """No marker, no rewrite: whatever Redis knows about the node, a real run's task result is left alone."""
    pod = pod_of("v3.7.18", False, "uid-real", request.node.nodeid)
    assert memo_webhook.api.admit("pods", pod).object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == (
        "miss: no_entry"
    )
    reported = task_result("v3.7.18", pod, {"parameters": {"rows": "7"}})
    assert memo_webhook.api.admit("workflowtaskresults", reported).patch == []


@needs_busybox
def test_a_cache_restored_from_a_backup_replays_as_the_original_would(
    start_webhook: StartWebhook, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The full cycle through a backup: the first run recorded, `wfboost cache export`, `wfboost cache import` into
    a new Valkey, and a webhook on that one serves the re-created pod (written from Argo's source) a hit whose replay
    writes the cached value and whose task result points at the cached artifacts, as without the backup."""
    from wfboost.cli import main

    seed = request.node.nodeid
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    source, restored = start_redis(), start_redis()
    try:
        original = start_webhook(settings={"policy_path": policy, "redis_url": source.url})
        first = pod_of("v3.7.18", False, "uid-first", seed)
        entry = record_first_run(original, "v3.7.18", first, seed, finished_ms=int(time.time() * 1000) - 60_000)
        exported = tmp_path / "cache.jsonl"
        assert main(["cache", "export", "--redis-url", source.url, "-o", str(exported)]) == 0

        assert main(["cache", "import", "--redis-url", restored.url, str(exported)]) == 0
        webhook = start_webhook(settings={"policy_path": policy, "redis_url": restored.url})
        hit = webhook.api.admit("pods", pod_of("v3.7.18", False, "uid-again", seed)).object
        assert hit["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"
        main_container = next(c for c in hit["spec"]["containers"] if c["name"] == "main")
        done = run_main(main_container, tmp_path / "root")
        assert done.returncode == 0, done.stderr
        written = wait_reads((tmp_path / "root" / "tmp" / "rows").read_bytes())
        assert written == "42"
        raw = task_result("v3.7.18", hit, {"parameters": {"rows": written}})
        stored = webhook.api.admit("workflowtaskresults", raw).object
        assert stored["outputs"]["artifacts"] == [{**entry["artifacts"][0], "artifactGC": {"strategy": "Never"}}]
    finally:
        source.stop()
        restored.stop()
