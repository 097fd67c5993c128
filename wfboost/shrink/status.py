"""Node statuses stored compressed: `status.nodes` becomes `status.compressedNodes`, as the controller writes it.

Argo's controller already stores large node statuses this way, but only when the whole Workflow is over 1 MiB
(`packer.CompressWorkflowIfNeeded` in workflow/packer/packer.go, `MAX_WORKFLOW_SIZE`); below that every UPDATE writes
the full node tree to etcd. Doing the same from a lower threshold changes nothing for the controller, which reads
both forms everywhere it reads a Workflow (checked at v3.5.14, v3.7.18 and v4.1.2):

- `operate` starts by `hydrator.Hydrate`, whose `packer.DecompressWorkflow` fills `status.nodes` from
  `status.compressedNodes` when `nodes` is empty (workflow/hydrator/hydrator.go, workflow/packer/packer.go);
- after a successful UPDATE, `persistUpdates` (workflow/controller/operator.go) keeps working on the nodes it sent
  (`hydrator.HydrateWithNodes`), not on the object the API server returned; on a conflict `reapplyUpdate` hydrates
  the fresh copy it GETs before merging;
- the Argo server hydrates in GetWorkflow and WatchWorkflows (server/workflow/workflow_server.go), `argo watch`
  decompresses (cmd/argo/commands/common/watch.go), the archive and the estimator hydrate.

The transformation is pure and runs on the controller's hot path: no API call, no side-store write, one patch of two
operations. It leaves alone what the controller would not read back: offloaded statuses
(`offloadNodeStatusVersion`, nodes in Argo's database) and objects whose `status.nodes` is not a JSON object.

It also leaves alone the runs of Kubeflow Pipelines (label `pipeline/runid`): KFP's persistence agent reports such a
Workflow to the KFP API server, which takes the run's task details from `status.nodes` as it is, without
decompressing (backend/src/apiserver/server/report_server.go `reportTasksFromExecution`, `HasNodes` and
`NodeStatuses` in backend/src/common/util/workflow.go, kubeflow/pipelines at 7b70c7b95f): compressed, the KFP UI
would show a run without tasks. Only Argo's controller would be served; KFP's own database would lose data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from wfboost.argo.workflow_status import compressed_nodes
from wfboost.policy.model import NodeCompression
from wfboost.structs.patch import PatchOp

__all__ = ["KUBEFLOW_RUN_LABEL", "StatusCompression", "compress_status", "status_nodes_json"]

# `util.LabelKeyWorkflowRunId` in kubeflow/pipelines backend/src/common/util/consts.go: the Workflows KFP reports.
KUBEFLOW_RUN_LABEL = "pipeline/runid"


@dataclass(frozen=True)
class StatusCompression:
    """The patch that stores a Workflow's nodes compressed, and the bytes it saves."""

    ops: list[PatchOp]
    nodes_bytes: int  # `status.nodes` as JSON
    compressed_bytes: int  # `status.compressedNodes` as written


def status_nodes_json(workflow: Mapping[str, Any], threshold: int) -> bytes | str:
    """`status.nodes` as JSON when it should be compressed, else the reason it stays (an outcome label).

    Cheap enough to run on every UPDATE: one C serialisation of the nodes, only when there are nodes.
    """
    status = workflow.get("status")
    if not isinstance(status, Mapping):
        return "no_status"
    labels = (workflow.get("metadata") or {}).get("labels")
    if isinstance(labels, Mapping) and KUBEFLOW_RUN_LABEL in labels:
        return "kubeflow_reads_raw_nodes"
    if status.get("offloadNodeStatusVersion"):
        return "status_offloaded"
    nodes = status.get("nodes")
    if not nodes:
        return "no_nodes"
    if not isinstance(nodes, Mapping):
        return "status_not_understood"
    nodes_json = orjson.dumps(nodes)
    if len(nodes_json) < threshold:
        return "status_small"
    return nodes_json


def compress_status(nodes_json: bytes, compression: NodeCompression) -> StatusCompression:
    """The patch for nodes that `status_nodes_json` chose. CPU-bound (zlib-ng and zstd release the GIL, so the
    webhook runs it in a thread)."""
    text = compressed_nodes(nodes_json, compression)
    ops: list[PatchOp] = [
        {"op": "remove", "path": "/status/nodes"},
        # `add` replaces a stale value: the controller reads compressedNodes only while nodes is empty, and
        # `DecompressWorkflow` then clears it, so a value left from an earlier write is never current.
        {"op": "add", "path": "/status/compressedNodes", "value": text},
    ]
    return StatusCompression(ops, len(nodes_json), len(text))
