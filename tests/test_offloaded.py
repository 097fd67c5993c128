"""Argo ≥ 3.6 moves a template over 128 KiB (and 3.7.10+ main args over 128 KiB) into a ConfigMap named after the
pod: the webhook reads it through the Kubernetes API (kmock's emulator here) and keys the step on its real content."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartWebhook
from wfboost.argo.podgen import build_pod
from wfboost.argo.podgen_layouts import V3_5, V3_7, ArgoLayout
from wfboost.argo.pods import parse_pod
from wfboost.cache.keys import cache_key, key_material
from wfboost.kube import KubeConfig

POLICY = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\nmemoize: {namespaces: [ml]}\n"
BIG = "# " + "x" * 140_000 + "\nprint('done')\n"


def big_workflow() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "big", "namespace": "ml"},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "script", "script": {"image": "python:3.11", "command": ["python"], "source": BIG},
             "outputs": {"parameters": [{"name": "n", "valueFrom": {"path": "/tmp/n"}}]}},
            {"name": "args", "container": {"image": "busybox", "command": ["echo"], "args": ["y" * 140_000]}},
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
