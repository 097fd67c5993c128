"""The webhook's few reads of the Kubernetes API (kmock's emulator here, or a small HTTP API where kmock cannot serve):
an offloaded Argo template (≥ 3.6 moves one over 128 KiB, and 3.7.10+ main args over 128 KiB, into a ConfigMap named
after the pod), namespace labels for label-gated policies, and a replayed pod's cached artifacts when Redis cannot
answer at its task result."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import StartWebhook
from wfboost.argo.pods import parse_pod
from wfboost.cache.keys import cache_key, key_material
from wfboost.kube import KubeConfig
from wfboost.webhook.runs import write_once_ops
from wfboost_dev.argosim.layouts import V3_5, V3_7, ArgoLayout
from wfboost_dev.argosim.pods import build_pod

POLICY = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\nmemoize: {namespaces: [ml]}\n"
BIG = "# " + "x" * 140_000 + "\nprint('done')\n"


PINNED_PYTHON = "python:3.11@sha256:" + "c" * 64  # pinned by digest: a tag is not memoized by default
PINNED_BUSYBOX = "busybox:1.36@sha256:" + "c" * 64

def big_workflow() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "big", "namespace": "ml"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "script", "script": {"image": PINNED_PYTHON, "command": ["python"], "source": BIG},
             "outputs": {"parameters": [{"name": "n", "valueFrom": {"path": "/tmp/n"}}]}},
            {"name": "args", "container": {"image": PINNED_BUSYBOX, "command": ["echo"], "args": ["y" * 140_000]}},
        ]},
    }


def built(template: str, layout: ArgoLayout) -> tuple[dict[str, Any], dict[str, Any] | None]:
    pod = build_pod(big_workflow(), template, f"big.{template}", layout=layout)
    return pod.pod, pod.configmap


@pytest.mark.parametrize("template", ["script", "args"])
async def test_an_offloaded_template_is_read_from_its_configmap(
    template: str, kmock: Any, start_webhook: StartWebhook, valkey: Any, tmp_path: Path
) -> None:
    pod, configmap = built(template, V3_7)
    assert configmap is not None, "the builder must offload at this size"
    kmock.objects["v1/configmaps", "ml", configmap["metadata"]["name"]] = configmap
    expected = cache_key(key_material(parse_pod(pod).with_offloaded(configmap["data"])))
    # The same step under 3.5 carries everything inline: the offload must not change the key.
    inline, none = built(template, V3_5)
    assert none is None and cache_key(key_material(parse_pod(inline))) == expected

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    kube = KubeConfig.from_url(str(kmock.url))
    webhook = start_webhook(settings={"policy_path": policy, "redis_url": valkey.url, "kube_config": kube})
    # kmock serves from this test's loop: the API server's part runs in a thread meanwhile.
    answered = await asyncio.to_thread(webhook.api.admit, "pods", pod)
    annotations = answered.object["metadata"]["annotations"]
    assert annotations["wfboost.io/cache-key"] == expected
    assert annotations["wfboost.io/cache-outcome"] == "miss: no_entry"


async def test_an_offloaded_template_with_output_artifacts_is_not_made_write_once(
    kmock: Any, start_webhook: StartWebhook, valkey: Any, tmp_path: Path
) -> None:
    """Inlining a template Argo moved to its ConfigMap would make the executor's template differ from what the
    recorder keys (every `$` doubled) and copy up to 128 KiB into each executor container: the miss is admitted
    without the write-once segment, so its artifacts are never recorded (docs/memoization.md)."""
    workflow = big_workflow()
    script = workflow["spec"]["templates"][0]
    script["outputs"]["artifacts"] = [{"name": "model", "path": "/tmp/model"}]
    script["archiveLocation"] = {"s3": {"bucket": "models", "endpoint": "minio:9000", "key": "big/run"}}
    # Go's JSON writes each `&` as \u0026: Argo offloads this template (over 128 KiB as Go encodes it), while the
    # compact form wfboost would inline fits in one env string.
    script["script"]["source"] = "echo $HOME && " * 8000
    inline = build_pod(workflow, "script", "big.script", layout=V3_5)
    assert inline.configmap is None and write_once_ops(parse_pod(inline.pod), "a" * 32)  # inline: made write-once
    pod_built = build_pod(workflow, "script", "big.script", layout=V3_7)
    pod, configmap = pod_built.pod, pod_built.configmap
    assert configmap is not None
    kmock.objects["v1/configmaps", "ml", configmap["metadata"]["name"]] = configmap
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    kube = KubeConfig.from_url(str(kmock.url))
    webhook = start_webhook(settings={"policy_path": policy, "redis_url": valkey.url, "kube_config": kube})
    answered = await asyncio.to_thread(webhook.api.admit, "pods", pod)
    annotations = answered.object["metadata"]["annotations"]
    assert annotations["wfboost.io/cache-outcome"] == "miss: no_entry"
    assert not [op for op in answered.patch if "/env/" in op["path"]]  # every ARGO_TEMPLATE left as Argo wrote it
    assert "wfboost-run-" not in json.dumps(answered.object)


async def test_an_offloaded_template_without_api_access_fails_open(
    start_webhook: StartWebhook, valkey: Any, tmp_path: Path
) -> None:
    pod, _ = built("script", V3_7)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    webhook = start_webhook(settings={"policy_path": policy, "redis_url": valkey.url})
    answered = await asyncio.to_thread(webhook.api.admit, "pods", pod)
    assert answered.patch == []
    page = webhook.api.request("GET", "/metrics").body.decode()
    assert 'wfboost_fail_open_total{reason="kube_unavailable"} 1.0' in page


@pytest.fixture
async def namespaces_api() -> Any:
    """Namespaces over HTTP: list, then a watch that adds a label later. kmock cannot serve this path (its URL parser
    takes `/api/v1/namespaces` for the prefix of a namespaced URL and fails with a 500), so a small aiohttp app
    plays the API server for this one resource, speaking its real list and watch formats."""
    from aiohttp import web

    added = asyncio.Event()

    async def namespaces(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response({"kind": "NamespaceList", "metadata": {"resourceVersion": "10"}, "items": [
                {"metadata": {"name": "team-a", "labels": {"cache": "on"}}},
                {"metadata": {"name": "team-b"}},
            ]})
        response = web.StreamResponse()
        await response.prepare(request)
        if not added.is_set():
            added.set()
            event = {"type": "ADDED", "object": {"metadata": {"name": "team-c", "labels": {"cache": "on"},
                                                              "resourceVersion": "11"}}}
            await response.write(json.dumps(event).encode() + b"\n")
        await asyncio.sleep(float(request.query.get("timeoutSeconds", "1")))
        return response

    app = web.Application()
    app.router.add_get("/api/v1/namespaces", namespaces)
    runner = web.AppRunner(app, shutdown_timeout=0.5)  # open watches are cut at the end of the test
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_memoization_turned_on_by_a_namespace_label(
    namespaces_api: str, start_webhook: StartWebhook, valkey: Any, tmp_path: Path
) -> None:
    """The policy's memoize.namespaceSelector matches the labels of the namespace, which the webhook watches."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                      "memoize: {namespaceSelector: {matchLabels: {cache: 'on'}}}\n")
    webhook = start_webhook(settings={"policy_path": policy, "redis_url": valkey.url,
                                      "kube_config": KubeConfig.from_url(namespaces_api)})
    namespaces = webhook.server.namespaces
    assert namespaces is not None
    for _ in range(250):
        if namespaces.labels("team-c") is not None:
            break
        await asyncio.sleep(0.02)
    assert namespaces.labels("team-a") == {"cache": "on"} and namespaces.labels("team-b") == {}
    assert namespaces.labels("team-c") == {"cache": "on"}  # from the watch, after the list

    def step_pod(namespace: str) -> dict[str, Any]:
        workflow = {**big_workflow(), "metadata": {"name": "small", "namespace": namespace}}
        workflow["spec"]["templates"][0]["script"]["source"] = "print(1)"
        return build_pod(workflow, "script", "small.script", layout=V3_7).pod

    for namespace in ("team-a", "team-c"):
        labelled = await asyncio.to_thread(webhook.api.admit, "pods", step_pod(namespace))
        assert labelled.object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "miss: no_entry"
    unlabelled = await asyncio.to_thread(webhook.api.admit, "pods", step_pod("team-b"))
    assert unlabelled.patch == []


async def test_a_label_selecting_policy_waits_for_namespaces_before_ready(
    namespaces_api: str, start_webhook: StartWebhook, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ready only once the namespaces are listed (sooner, every label-gated namespace would get "off"), and ready
    anyway after a grace period when they cannot be listed (here an address nothing answers on), so that a broken
    watch never takes the webhook down; a policy without selectors does not wait."""
    from wfboost.webhook import server as server_module

    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                      "memoize: {namespaceSelector: {matchLabels: {cache: 'on'}}}\n")
    listed = start_webhook(settings={"policy_path": policy, "kube_config": KubeConfig.from_url(namespaces_api)})
    for _ in range(250):
        if not await listed.server.missing():
            break
        await asyncio.sleep(0.02)
    assert await listed.server.missing() == []
    assert listed.server.namespaces is not None and listed.server.namespaces.synced
    unlisted = start_webhook(settings={"policy_path": policy, "kube_config": KubeConfig.from_url("http://127.0.0.1:1")})
    assert await unlisted.server.missing() == ["namespace labels not listed yet (the policy selects namespaces by "
                                               "label)"]
    monkeypatch.setattr(server_module, "NAMESPACE_SYNC_GRACE", 0.0)
    assert await unlisted.server.missing() == []
    monkeypatch.setattr(server_module, "NAMESPACE_SYNC_GRACE", 30.0)
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                      "memoize: {namespaces: [team-a]}\n")
    plain = start_webhook(settings={"policy_path": policy, "kube_config": KubeConfig.from_url("http://127.0.0.1:1")})
    assert await plain.server.missing() == []


async def test_a_replayed_steps_task_result_is_restored_even_when_redis_is_gone(
    kmock: Any, start_webhook: StartWebhook, tmp_path: Path
) -> None:
    """Redis lost between the pod's admission and its task result: the task result itself carries the cached
    artifacts (the replay marker), so no Redis and no API read is needed to put them back."""
    from tests.harness.emulated import task_result
    from wfboost.cache import redis_client
    from wfboost.cache.store import CacheStore
    from wfboost_dev.demo.plan import plan_workflow
    from wfboost_dev.demo.processes import redis_server
    from wfboost_dev.demo.runner import default_workflow_text

    kmock.resources["v1/pods"] = {}
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)

    def fetch_pod(name: str) -> dict[str, Any]:
        workflow = yaml.safe_load(default_workflow_text())
        workflow["metadata"] = {"name": name, "namespace": "ml"}
        return next(p.pod for p in plan_workflow(workflow, "v3.7.18", namespace="ml").pods if ".fetch" in p.step)

    cached = [{"name": "raw", "path": "/data/raw.parquet", "s3": {"key": "first/fetch/raw.tgz"}}]
    with redis_server() as valkey:
        client = redis_client.connect(valkey.url)
        step = parse_pod(fetch_pod("first"))
        await CacheStore(client).record({
            "key": cache_key(key_material(step)), "entry_id": "e", "finished_at": "2026-11-22T10:00:00Z",
            "finished_ms": int(time.time() * 1000), "staleness_s": 604800,
            "parameters": [{"name": "rows", "value": "7"}], "artifacts": cached, "image": "x", "image_id": "",
            "recorded_at": "2026-11-22T10:00:00Z",
            "producer": {"namespace": "ml", "workflow": "first", "workflow_uid": "u", "node_id": "n",
                         "node_name": "first.fetch", "pod": "p"},
        }, retention=timedelta(days=1))
        await client.aclose()
        webhook = start_webhook(settings={"policy_path": policy, "redis_url": valkey.url,
                                          "kube_config": KubeConfig.from_url(str(kmock.url))})
        second = fetch_pod("second")
        hit = await asyncio.to_thread(webhook.api.admit, "pods", second)
        assert hit.object["metadata"]["labels"]["wfboost.io/cache-hit"] == "true"
        kmock.objects["v1/pods", "ml", second["metadata"]["name"]] = hit.object
    # Redis is gone now. Argo's wait container reports the parameter and the marker its template declares.
    template = json.loads(next(e["value"] for c in hit.object["spec"]["initContainers"] if c["name"] == "init"
                               for e in c["env"] if e["name"] == "ARGO_TEMPLATE"))
    marker = next(p for p in template["outputs"]["parameters"] if p["name"] == "wfboost-replay")
    reported = task_result(second, {"parameters": [
        {"name": "rows", "value": "7"}, {"name": "wfboost-replay", "value": marker["valueFrom"]["default"]}]})
    answered = await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", reported)
    assert answered.object["outputs"]["artifacts"] == [{**cached[0], "artifactGC": {"strategy": "Never"}}]
