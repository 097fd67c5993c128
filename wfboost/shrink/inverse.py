"""A shrunk Workflow made whole again, for inspection or for taking it out of the cluster (`wfboost restore`).

The inverse of what the webhook (and `wfboost shrink`) does to a Workflow: every reference in the object's strings is
replaced by its value, the `wfboost.io/restore` label shrinking put on templates is taken off (with the `labels` map
it may have created, when that is left empty), and `status.compressedNodes` becomes `status.nodes` again. The result
is the original as every consumer reads it (a template's `metadata: {}` that shrinking had to create stays). Pure:
the caller fetches the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from wfboost.argo.workflow_status import node_statuses
from wfboost.shrink.refs import MARK, Reference, references_in, replace_references
from wfboost.shrink.workflow import RESTORE_LABEL

__all__ = ["object_references", "restored_workflow"]


def object_references(obj: Mapping[str, Any]) -> set[Reference]:
    return references_in(orjson.dumps(obj).decode())


def restored_workflow(workflow: Mapping[str, Any], values: Mapping[Reference, str]) -> dict[str, Any]:
    """The Workflow with every value back; KeyError for a reference without a value."""
    restored: dict[str, Any] = _replaced(orjson.loads(orjson.dumps(workflow)), values)
    for template in (restored.get("spec") or {}).get("templates") or []:
        metadata = template.get("metadata") if isinstance(template, dict) else None
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        if isinstance(labels, dict) and labels.pop(RESTORE_LABEL, None) is not None and not labels:
            del metadata["labels"]  # type: ignore[union-attr]
    status = restored.get("status")
    if isinstance(status, dict) and status.get("compressedNodes") and not status.get("nodes"):
        status["nodes"] = _replaced(node_statuses(restored), values)
        del status["compressedNodes"]
    return restored


def _replaced(node: Any, values: Mapping[Reference, str]) -> Any:
    if isinstance(node, str):
        return replace_references(node, values) if MARK in node else node
    if isinstance(node, dict):
        return {key: _replaced(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_replaced(item, values) for item in node]
    return node
