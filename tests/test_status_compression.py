"""Node statuses stored compressed, checked the way Argo's controller reads them back.

The reader here is not wfboost's: it is Python's standard base64 and gzip (and zstandard for zstd) followed by the
rule of `packer.DecompressWorkflow` (workflow/packer/packer.go, v3.5.14 to v4.1.2): when `status.nodes` is empty and
`status.compressedNodes` is not, the nodes are the JSON that the decoded text holds.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest
import yaml
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import StartWebhook, Webhook, corpus_dir
from tests.harness.validate import schema_violations
from tests.test_server import metric
from wfboost.policy import Policy, load_policy
from wfboost.policy.errors import PolicyError
from wfboost.shrink.status import compress_status, status_nodes_json
from wfboost_dev.argosim.status import kubeflow_run_nodes

POLICY = """apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {compressStatus: true}
namespaces: {exclude: [quiet]}
shrink: {statusThresholdBytes: 1024}
"""


def nodes_as_the_controller_reads_them(workflow: dict[str, Any]) -> Any:
    """`hydrator.Hydrate` without a database: `packer.DecompressWorkflow`, with standard decoders."""
    status = workflow.get("status") or {}
    if status.get("nodes") or not status.get("compressedNodes"):
        return status.get("nodes")
    packed = base64.b64decode(status["compressedNodes"], validate=True)
    if packed.startswith(b"\x1f\x8b"):
        return json.loads(gzip.decompress(packed))
    return json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(packed))


def workflow_with(nodes: Any, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "train-x7k2p", "namespace": "ml", "uid": "5f1c0d2e-0000-4000-8000-000000000001"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "busybox"}}]},
        "status": {"phase": "Running", "nodes": nodes, **status},
    }


@pytest.fixture
def shrinking(start_webhook: StartWebhook, tmp_path: Path) -> Webhook:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_webhook(settings={"policy_path": policy})


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
node_maps = st.dictionaries(
    st.text(min_size=1, max_size=30), st.dictionaries(st.text(max_size=15), json_values, max_size=6), min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(nodes=node_maps, compression=st.sampled_from(["gzip", "zstd"]))
def test_compressed_nodes_read_back_as_the_nodes(nodes: dict[str, Any], compression: Any) -> None:
    workflow = workflow_with(nodes)
    nodes_json = status_nodes_json(workflow, threshold=1)
    assert isinstance(nodes_json, bytes)
    stored = jsonpatch.JsonPatch(compress_status(nodes_json, compression).ops).apply(copy.deepcopy(workflow))
    assert "nodes" not in stored["status"]
    assert nodes_as_the_controller_reads_them(stored) == nodes
    assert {k: v for k, v in stored.items() if k != "status"} == {k: v for k, v in workflow.items() if k != "status"}


def test_every_corpus_workflow_with_status_keeps_its_nodes(shrinking: Webhook) -> None:
    """The controller's UPDATE of each published Workflow with status, played through HTTPS admission. Many of these
    objects come from Argo's unit tests and are partial (nodes without ids), so the check against Argo's Workflow
    schema is that the patch adds no problem to those the object already has."""
    shrinking.api.validate = None
    compressed = unchanged = 0
    for path in sorted(corpus_dir("workflows-with-status").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") != "Workflow":
                continue
            document.setdefault("metadata", {}).setdefault("name", path.stem[:60].lower().replace("_", "-"))
            document = orjson.loads(orjson.dumps(document))  # as the API server holds it: times are strings
            admitted = shrinking.api.admit("workflows", document, operation="UPDATE", old_object=document,
                                           namespace="argo")
            before = (document.get("status") or {}).get("nodes")
            assert nodes_as_the_controller_reads_them(admitted.object) == before, path.name
            assert set(schema_violations(admitted.object)) <= set(schema_violations(document)), path.name
            if admitted.patch:
                assert [op["path"] for op in admitted.patch] == ["/status/nodes", "/status/compressedNodes"]
                assert len(orjson.dumps(admitted.object)) < len(orjson.dumps(document)), path.name
                compressed += 1
            else:
                assert admitted.object == document
                unchanged += 1
    assert compressed >= 5 and unchanged >= 1, (compressed, unchanged)


def test_a_kubeflow_run_of_a_thousand_tasks_is_stored_a_tenth_of_its_size(shrinking: Webhook) -> None:
    nodes = kubeflow_run_nodes(1000)
    workflow = workflow_with(nodes)
    size = len(orjson.dumps(workflow))
    assert size > 2 << 20  # over etcd's 1.5 MiB: the controller would have compressed it itself only past 1 MiB
    admitted = shrinking.api.admit("workflows", workflow, operation="UPDATE", old_object=workflow)
    assert nodes_as_the_controller_reads_them(admitted.object) == nodes
    stored = len(orjson.dumps(admitted.object))
    assert stored * 10 < size, (stored, size)
    saved = metric(shrinking, "wfboost_shrink_saved_bytes_total", what="status")
    assert saved == len(orjson.dumps(nodes)) - len(admitted.object["status"]["compressedNodes"])
    assert metric(shrinking, "wfboost_admission_requests_total", route="workflows", outcome="status_compressed") == 1


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ({"nodes": {"a": {"id": "a", "name": "a", "type": "Pod", "phase": "Running"}}}, "status_small"),
        ({"nodes": {}}, "no_nodes"),
        ({"nodes": None, "compressedNodes": "H4sIAAAAAAAA/6uuBQBDv6ajAgAAAA=="}, "no_nodes"),
        ({"nodes": kubeflow_run_nodes(20), "offloadNodeStatusVersion": "fnv:1234"}, "status_offloaded"),
        ({"nodes": ["not", "a", "map"] * 400}, "status_not_understood"),
    ],
)
def test_what_the_controller_would_not_read_back_stays(
    shrinking: Webhook, status: dict[str, Any], outcome: str
) -> None:
    status = dict(status)
    workflow = workflow_with(status.pop("nodes"), **status)
    if outcome == "status_not_understood":
        shrinking.api.validate = None  # Argo's full schema refuses it; the minimal CRD most installs use stores it
    admitted = shrinking.api.admit("workflows", workflow, operation="UPDATE", old_object=workflow, namespace="ml")
    assert admitted.patch == [] and admitted.object == workflow
    assert metric(shrinking, "wfboost_admission_requests_total", route="workflows", outcome=outcome) == 1


def test_a_kubeflow_run_is_left_as_kfp_reads_it(shrinking: Webhook) -> None:
    """KFP's API server takes a run's task details from the reported Workflow's raw `status.nodes`."""
    workflow = workflow_with(kubeflow_run_nodes(50))
    workflow["metadata"]["labels"] = {"pipeline/runid": "0e4c3b2a-1f6d-4a8e-9b7c-5d2e1f0a3b4c"}
    admitted = shrinking.api.admit("workflows", workflow, operation="UPDATE", old_object=workflow)
    assert admitted.patch == []
    outcome = "kubeflow_reads_raw_nodes"
    assert metric(shrinking, "wfboost_admission_requests_total", route="workflows", outcome=outcome) == 1


def test_nothing_changes_where_the_switch_is_off(shrinking: Webhook, webhook: Webhook) -> None:
    workflow = workflow_with(kubeflow_run_nodes(50))
    assert webhook.api.admit("workflows", workflow, operation="UPDATE", old_object=workflow).patch == []
    quiet = {**workflow, "metadata": {**workflow["metadata"], "namespace": "quiet"}}
    assert shrinking.api.admit("workflows", quiet, operation="UPDATE", old_object=quiet).patch == []
    assert shrinking.api.admit("workflows", workflow, operation="UPDATE", old_object=workflow).patch != []


def test_a_stale_compressed_value_is_replaced_by_the_current_nodes(shrinking: Webhook) -> None:
    """nodes win over compressedNodes when both are set (DecompressWorkflow reads compressedNodes only while nodes is
    empty), so the value written must be the nodes, not the old text."""
    nodes = kubeflow_run_nodes(30, seed=1)
    stale = workflow_with(nodes, compressedNodes=base64.b64encode(gzip.compress(b'{"old":{}}')).decode())
    admitted = shrinking.api.admit("workflows", stale, operation="UPDATE", old_object=stale)
    assert nodes_as_the_controller_reads_them(admitted.object) == nodes


def test_zstd_is_refused_unless_every_controller_reads_it() -> None:
    base = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {compressStatus: true}\n"
    with pytest.raises(PolicyError, match=r"shrink\.statusCompression: zstd is read only by Argo controllers"):
        load_policy(base + "shrink: {statusCompression: zstd}\n")
    with pytest.raises(PolicyError, match=r"from v4\.1 on"):
        load_policy(base + "shrink: {statusCompression: zstd, controllerVersion: '4.0'}\n")
    with pytest.raises(PolicyError, match=r"is not an Argo version such as 4\.1"):
        load_policy(base + "shrink: {controllerVersion: latest}\n")
    policy = load_policy(base + "shrink: {statusCompression: zstd, controllerVersion: v4.1.2}\n")
    assert policy.shrink.status_compression == "zstd" and policy.compress_status_in("ml")
    assert not Policy.default().compress_status_in("ml")


def test_zstd_nodes_are_read_back(tmp_path: Path, start_webhook: StartWebhook) -> None:
    policy = tmp_path / "policy.yaml"
    zstd = "statusThresholdBytes: 1024, statusCompression: zstd, controllerVersion: '4.1'"
    policy.write_text(POLICY.replace("statusThresholdBytes: 1024", zstd))
    webhook = start_webhook(settings={"policy_path": policy})
    nodes = kubeflow_run_nodes(40)
    admitted = webhook.api.admit("workflows", workflow_with(nodes), operation="UPDATE", old_object=workflow_with(nodes))
    assert base64.b64decode(admitted.object["status"]["compressedNodes"]).startswith(b"\x28\xb5\x2f\xfd")
    assert nodes_as_the_controller_reads_them(admitted.object) == nodes
