"""`wfboost.argo.workflow_status` against how Argo's controller stores and reads a Workflow.

Compressed node statuses are built here the way `packer.compressWorkflow` (workflow/packer/packer.go) and
`file.CompressEncodeString` (util/file/fileutil.go) build them: Go's `json.Marshal` of the nodes map (compact, keys
sorted), compressed (gzip; zstd or brotli on request at v4.1.2), then standard padded base64.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from typing import Any

import pytest
import zstandard

from wfboost.argo.workflow_status import (
    UnsupportedCompressionError,
    WorkflowStatusError,
    artifact_gc_strategy,
    is_shut_down,
    node_phase,
    node_statuses,
    owner_uid,
)

NODES: dict[str, dict[str, Any]] = {
    "steps-x7k2p": {"id": "steps-x7k2p", "name": "steps-x7k2p", "type": "Steps", "phase": "Running",
                    "children": ["steps-x7k2p-1234"]},
    "steps-x7k2p-1234": {"id": "steps-x7k2p-1234", "name": "steps-x7k2p[0].say", "type": "Pod",
                         "phase": "Succeeded", "outputs": {"artifacts": [{"name": "model", "s3": {"key": "k"}}]}},
    "steps-x7k2p-5678": {"id": "steps-x7k2p-5678", "name": "steps-x7k2p[1].wait", "type": "Pod"},
}


def go_json(value: Any) -> bytes:
    """Go's `json.Marshal` of a map: compact, keys sorted, non-ASCII as UTF-8."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def packed_gzip(nodes: Any) -> str:
    return base64.b64encode(gzip.compress(go_json(nodes))).decode()


def packed_zstd(nodes: Any) -> str:
    return base64.b64encode(zstandard.ZstdCompressor(level=3).compress(go_json(nodes))).decode()


def workflow(status: dict[str, Any] | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "steps-x7k2p", "namespace": "argo", "uid": "6f1c2f0e-7a4b-4c55-9d1e-0b7a3c2d1e00"},
            "spec": spec or {"entrypoint": "main"}, "status": status or {}}


# --- node_statuses ----------------------------------------------------------------------------------------------


def test_plain_nodes() -> None:
    assert node_statuses(workflow({"phase": "Running", "nodes": NODES})) == NODES


def test_gzip_compressed_nodes() -> None:
    assert node_statuses(workflow({"phase": "Running", "compressedNodes": packed_gzip(NODES)})) == NODES


def test_zstd_compressed_nodes() -> None:
    # v4.1.2 with WORKFLOW_COMPRESSION_ALGORITHM=zstd; recognised by the zstd magic.
    assert node_statuses(workflow({"compressedNodes": packed_zstd(NODES)})) == NODES


def test_several_zstd_frames_and_gzip_members() -> None:
    text = go_json(NODES)
    frames = zstandard.ZstdCompressor().compress(text[:10]) + zstandard.ZstdCompressor().compress(text[10:])
    assert node_statuses(workflow({"compressedNodes": base64.b64encode(frames).decode()})) == NODES
    members = gzip.compress(text[:10]) + gzip.compress(text[10:])
    assert node_statuses(workflow({"compressedNodes": base64.b64encode(members).decode()})) == NODES


def test_base64_line_breaks_are_ignored_as_go_does() -> None:
    packed = packed_gzip(NODES)
    wrapped = "\r\n".join(packed[i:i + 60] for i in range(0, len(packed), 60))
    assert node_statuses(workflow({"compressedNodes": wrapped})) == NODES


def test_plain_nodes_win_over_compressed_ones() -> None:
    # DecompressWorkflow only decompresses when `len(wf.Status.Nodes) == 0`.
    other = {"x": {"id": "x", "phase": "Failed"}}
    assert node_statuses(workflow({"nodes": NODES, "compressedNodes": packed_gzip(other)})) == NODES
    assert node_statuses(workflow({"nodes": {}, "compressedNodes": packed_gzip(other)})) == other


def test_no_nodes_yet() -> None:
    assert node_statuses(workflow()) == {}
    assert node_statuses({"metadata": {"name": "w"}}) == {}
    assert node_statuses(workflow({"nodes": None, "compressedNodes": ""})) == {}
    assert node_statuses(workflow({"compressedNodes": packed_gzip(None)})) == {}, "JSON null is an empty map"


def test_offloaded_nodes() -> None:
    assert node_statuses(workflow({"offloadNodeStatusVersion": "fnv:1234567890"})) is None
    assert node_statuses(workflow({"offloadNodeStatusVersion": "fnv:1", "nodes": {}})) is None
    # `hydrator.Hydrate` replaces any nodes the object holds with the database's when a version is set.
    assert node_statuses(workflow({"offloadNodeStatusVersion": "fnv:1", "nodes": NODES})) is None
    assert node_statuses(workflow({"offloadNodeStatusVersion": "", "nodes": NODES})) == NODES


def test_brotli_is_named_and_refused() -> None:
    # Not zstd and not gzip: v4.1.2 decodes it as brotli (which has no magic bytes).
    packed = base64.b64encode(b"\x1b\x03\x00\xf8\xa5\x00\x00\x00").decode()
    with pytest.raises(UnsupportedCompressionError, match="brotli"):
        node_statuses(workflow({"compressedNodes": packed}))


@pytest.mark.parametrize(
    ("compressed", "message"),
    [
        ("not base64!", "not valid base64"),
        (packed_gzip(NODES)[:-1], "not valid base64"),  # Go's StdEncoding needs the padding
        (base64.b64encode(gzip.compress(go_json(NODES))[:-8]).decode(), "not valid gzip"),
        (base64.b64encode(zstandard.ZstdCompressor().compress(go_json(NODES))[:-4]).decode(), "not valid zstd"),
        (base64.b64encode(gzip.compress(b"{not json")).decode(), "does not hold JSON"),
        (packed_gzip(["a", "list"]), "must be an object"),
        (packed_gzip({"x": "not a node"}), "must be an object"),
    ],
)
def test_unreadable_compressed_nodes(compressed: str, message: str) -> None:
    with pytest.raises(WorkflowStatusError, match=message):
        node_statuses(workflow({"compressedNodes": compressed}))


# --- node_phase -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [{"nodes": NODES}, {"compressedNodes": packed_gzip(NODES)}],
                         ids=["plain", "compressed"])
def test_node_phase(status: dict[str, Any]) -> None:
    wf = workflow(status)
    assert node_phase(wf, "steps-x7k2p") == "Running"
    assert node_phase(wf, "steps-x7k2p-1234") == "Succeeded"
    assert node_phase(wf, "steps-x7k2p-5678") == "", "the node exists without a phase"
    assert node_phase(wf, "steps-x7k2p-0000") is None
    assert node_phase(wf, "steps-x7k2p[0].say") is None, "nodes are looked up by ID, not by name"


def test_node_phase_when_offloaded() -> None:
    assert node_phase(workflow({"offloadNodeStatusVersion": "fnv:1"}), "steps-x7k2p") is None


# --- is_shut_down -----------------------------------------------------------------------------------------------

REF = {"workflowTemplateRef": {"name": "train"}}


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({"entrypoint": "main"}, {}, False),
        ({"shutdown": ""}, {}, False),
        ({"shutdown": None}, {}, False),
        ({"shutdown": "Stop"}, {}, True),
        ({"shutdown": "Terminate"}, {}, True),
        ({"shutdown": "Whatever"}, {}, True),  # ShutdownStrategy.Enabled: any non-empty value
        # A stored spec is only executed for a workflowTemplateRef; re-merged with spec when `shutdown` differs.
        ({}, {"storedWorkflowTemplateSpec": {"shutdown": "Stop"}}, False),
        (REF, {"storedWorkflowTemplateSpec": {"shutdown": "Stop"}}, True),
        (REF, {"storedWorkflowTemplateSpec": {"shutdown": ""}}, False),
        ({**REF, "shutdown": "Terminate"}, {"storedWorkflowTemplateSpec": {}}, True),
        ({**REF, "shutdown": "Terminate"}, {}, True),
        (REF, {}, False),
    ],
)
def test_is_shut_down(spec: dict[str, Any], status: dict[str, Any], expected: bool) -> None:
    assert is_shut_down(workflow(status, spec)) is expected


# --- artifact_gc_strategy ---------------------------------------------------------------------------------------


def gc(strategy: str | None) -> dict[str, Any]:
    return {} if strategy is None else {"artifactGC": {"strategy": strategy}}


@pytest.mark.parametrize(
    ("artifact", "spec", "stored", "expected"),
    [
        # Nothing anywhere: Never.
        (None, None, None, "Never"),
        ("", "", None, "Never"),
        # The artifact's own strategy wins, Never included.
        ("OnWorkflowDeletion", "OnWorkflowCompletion", None, "OnWorkflowDeletion"),
        ("Never", "OnWorkflowCompletion", None, "Never"),
        # An empty artifact strategy is undefined, not Never: the workflow's applies.
        ("", "OnWorkflowCompletion", None, "OnWorkflowCompletion"),
        (None, "OnWorkflowDeletion", None, "OnWorkflowDeletion"),
        # Without workflowTemplateRef the stored spec is not what the controller executes.
        (None, None, "OnWorkflowCompletion", "Never"),
        (None, "OnWorkflowDeletion", "OnWorkflowCompletion", "OnWorkflowDeletion"),
    ],
)
def test_artifact_gc_without_a_template_ref(artifact: str | None, spec: str | None, stored: str | None,
                                            expected: str) -> None:
    status = {} if stored is None else {"storedWorkflowTemplateSpec": {"entrypoint": "main", **gc(stored)}}
    wf = workflow(status, {"entrypoint": "main", **gc(spec)})
    assert artifact_gc_strategy(wf, {"name": "model", "s3": {"key": "k"}, **gc(artifact)}) == expected


def ref_workflow(spec: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    status = {} if stored is None else {"storedWorkflowTemplateSpec": {"entrypoint": "main", **stored}}
    return workflow(status, {**REF, **spec})


@pytest.mark.parametrize(
    ("artifact", "spec", "stored", "expected"),
    [
        # The stored (merged) spec's strategy is the workflow level.
        (None, {}, gc("OnWorkflowCompletion"), "OnWorkflowCompletion"),
        ("OnWorkflowDeletion", {}, gc("OnWorkflowCompletion"), "OnWorkflowDeletion"),
        ("Never", {}, gc("OnWorkflowCompletion"), "Never"),
        (None, {}, gc(""), "Never"),
        (None, {}, {}, "Never"),
        # The Workflow's own strategy went into the stored spec when it was merged; a later change to spec is only
        # merged again when needsStoredWfSpecUpdate holds.
        (None, gc("OnWorkflowDeletion"), gc("OnWorkflowCompletion"), "OnWorkflowCompletion"),
        (None, {**gc("OnWorkflowDeletion"), "shutdown": "Stop"}, gc("OnWorkflowCompletion"), "OnWorkflowDeletion"),
        (None, {**gc("OnWorkflowDeletion"), "suspend": False}, gc("OnWorkflowCompletion"), "OnWorkflowDeletion"),
        (None, gc("OnWorkflowDeletion"), {**gc("OnWorkflowCompletion"), "suspend": True}, "OnWorkflowDeletion"),
        (None, {**gc("OnWorkflowDeletion"), "entrypoint": "main"}, {**gc("OnWorkflowCompletion"), "entrypoint": ""},
         "OnWorkflowDeletion"),
        # A re-merge does not let an empty strategy in spec clear the stored one (the merge skips empty fields).
        (None, {**gc(""), "shutdown": "Stop"}, gc("OnWorkflowCompletion"), "OnWorkflowCompletion"),
        # Before the controller stored a spec, only the Workflow's own strategy is known.
        (None, gc("OnWorkflowDeletion"), None, "OnWorkflowDeletion"),
        (None, {}, None, "Never"),
    ],
)
def test_artifact_gc_with_a_template_ref(artifact: str | None, spec: dict[str, Any], stored: dict[str, Any] | None,
                                         expected: str) -> None:
    wf = ref_workflow(spec, stored)
    assert artifact_gc_strategy(wf, {"name": "model", **gc(artifact)}) == expected


def test_an_empty_template_ref_still_counts() -> None:
    # `spec.workflowTemplateRef != nil`: `{}` is a reference (validation rejects it later, the branch is taken).
    wf = workflow({"storedWorkflowTemplateSpec": gc("OnWorkflowCompletion")}, {"workflowTemplateRef": {}})
    assert artifact_gc_strategy(wf, {"name": "model"}) == "OnWorkflowCompletion"


def test_a_malformed_artifact_gc_is_an_error() -> None:
    with pytest.raises(WorkflowStatusError, match=re.escape("artifact.artifactGC")):
        artifact_gc_strategy(workflow(), {"name": "model", "artifactGC": "Never"})


# --- owner_uid --------------------------------------------------------------------------------------------------


def test_owner_uid() -> None:
    assert owner_uid(workflow()) == "6f1c2f0e-7a4b-4c55-9d1e-0b7a3c2d1e00"
    assert owner_uid({"metadata": {"name": "not-created-yet"}}) == ""
    assert owner_uid({}) == ""
