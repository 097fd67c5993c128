"""Workflow CREATE: bulky workflow arguments replaced by references, and the pods that will receive them marked.

Which arguments may move is `analysis.analyse_workflow_arguments`; this module decides which of those are worth it
(policy thresholds) and builds the patch: one `replace` per moved value, and on every template whose pods can
receive one, the label `wfboost.io/restore: "true"` in the template's `metadata` (Argo copies a template's metadata
labels onto its pods), which routes those pods to the restoring webhook entry (`failurePolicy: Fail`). Templates
called many times with static arguments get an argument table (wfboost.shrink.bundling), planned on the object as
sent like the rest. Pure: the caller stores the values and tables in the side store before it answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from wfboost.argo.offload import offloads_container_args
from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.analysis import analyse_workflow_arguments, go_quotes_as_json, only_dollar_tags
from wfboost.shrink.bundling import TablePlan, plan_argument_tables
from wfboost.shrink.refs import PATTERN, Reference, reference_for
from wfboost.structs.patch import PatchOp

__all__ = ["MAX_MOVED_BYTES", "RESTORE_LABEL", "MovedValue", "WorkflowShrink", "plan_workflow_shrink"]

RESTORE_LABEL: Final = "wfboost.io/restore"
# One argv or env string is at most 128 KiB with its NUL (Linux MAX_ARG_STRLEN). A value longer than this, restored
# into a container string, would make the pod fail to start; such a value stays inline, where Argo 3.7.10+ can
# offload the container's arguments to its own ConfigMap.
MAX_MOVED_BYTES: Final = 120 * 1024
# A receiving template whose ARGO_TEMPLATE would come near 128 KiB restored (its own JSON, plus the value where it is
# a script source, which restoring writes back into it) is one Argo may offload to a ConfigMap, where restoring cannot
# reach: values for it stay inline (workflowpod.go createWorkflowPod offloads past 131072 bytes, v3.6.19 to v4.1.2).
MAX_RECEIVER_TEMPLATE_BYTES: Final = 100 * 1024
# Longer values move only where Argo offloads arguments (wfboost.argo.offload), and at most this much: the ConfigMap
# that carries them holds 1 MiB in all.
MAX_OFFLOADED_BYTES: Final = 900 * 1024


@dataclass(frozen=True)
class MovedValue:
    name: str
    reference: Reference
    value: str


@dataclass
class WorkflowShrink:
    ops: list[PatchOp] = field(default_factory=list)
    moved: list[MovedValue] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # argument name -> why it stays inline
    tables: list[TablePlan] = field(default_factory=list)
    untabled: dict[str, str] = field(default_factory=dict)  # called template -> why it has no argument table
    size_before: int = 0
    size_after: int = 0


def plan_workflow_shrink(workflow: Mapping[str, Any], settings: ShrinkSettings) -> WorkflowShrink | str:
    """The shrink of a Workflow at CREATE, or the reason nothing moves (an outcome label)."""
    spec = workflow.get("spec")
    if not isinstance(spec, Mapping):
        return "no_spec"
    size = len(orjson.dumps(workflow))
    if size < settings.object_threshold_bytes:
        return "workflow_small"
    tables = plan_argument_tables(spec, min_saved=settings.value_threshold_bytes, max_cell=MAX_MOVED_BYTES,
                                  max_template=MAX_RECEIVER_TEMPLATE_BYTES, labels={RESTORE_LABEL: "true"})
    plan = WorkflowShrink(tables=tables.tables, untabled=tables.kept, size_before=size)
    tabled = {table.template for table in tables.tables}
    receivers: set[str] = set()
    saved = sum(table.saved for table in tables.tables)
    parameters = (spec.get("arguments") or {}).get("parameters")
    analysis = analyse_workflow_arguments(spec)
    plan.kept = dict(analysis.kept)
    templates = {t["name"]: t for t in spec.get("templates") or [] if isinstance(t, Mapping) and "name" in t}
    serialized = orjson.dumps(spec.get("templates") or [])
    looped = any(f'"{key}":'.encode() in serialized for key in ("withItems", "withParam", "withSequence"))
    for index, parameter in enumerate(parameters if isinstance(parameters, list) else []):
        if not isinstance(parameter, Mapping) or parameter.get("name") not in analysis.movable:
            continue
        name, value = parameter["name"], parameter.get("value")
        why = _why_not_moved(value, settings, looped) or _receiver_too_big(value, analysis.movable[name], templates)
        if why:
            plan.kept[name] = why
            continue
        assert isinstance(value, str)
        reference = reference_for(value)
        plan.moved.append(MovedValue(name, reference, value))
        plan.ops.append({"op": "replace", "path": f"/spec/arguments/parameters/{index}/value", "value": reference.text})
        receivers |= analysis.movable[name]
        saved += len(orjson.dumps(value)) - len(orjson.dumps(reference.text))
    if not plan.moved and not plan.tables:
        return "nothing_to_move"
    labels = _label_ops(spec, receivers - tabled)
    plan.ops.extend(labels)
    plan.ops.extend(op for table in plan.tables for op in table.ops)
    plan.size_after = size - saved + sum(len(orjson.dumps(op)) for op in labels)
    return plan


def _why_not_moved(value: Any, settings: ShrinkSettings, looped: bool = True) -> str | None:
    """Why a movable argument's value stays inline, or None. `looped`: the Workflow has a looped task or step."""
    if not isinstance(value, str):
        return "no literal value (valueFrom, or not a string)"
    size = len(value.encode())
    if size < settings.value_threshold_bytes:
        return f"{size} bytes, under shrink.valueThresholdBytes"
    if size > MAX_OFFLOADED_BYTES or (size > MAX_MOVED_BYTES
                                      and not offloads_container_args(settings.controller_version)):
        return (f"{size} bytes: restored into one container string it would pass Linux's 128 KiB per-string limit"
                + ("" if size > MAX_OFFLOADED_BYTES else
                   " (Argo's offload of long arguments needs shrink.controllerVersion 3.7.10, 4.0.1 or later)"))
    if "{{" in value and not only_dollar_tags(value):
        return "holds `{{…}}`: the controller substitutes inside it"
    if "{{" in value and looped:
        return ("holds Kubeflow's `{{$…}}` placeholders and the Workflow loops: inline, a looped task carrying it "
                "fails (operator.go processItem); moved, it would not")
    if PATTERN.search(value):
        return "already holds a reference"
    if value.endswith("{") or value.startswith("}"):
        return ("starts with `}` or ends with `{`: inline, with the text around it in a string, the controller "
                "would read a tag there")
    if not go_quotes_as_json(value):
        return ("holds a character Argo's substitution cannot write as JSON (inline its pods fail; moved they "
                "would not)")
    return None


def _receiver_too_big(value: Any, receivers: set[str], templates: Mapping[str, Mapping[str, Any]]) -> str | None:
    if isinstance(value, str) and len(value.encode()) > MAX_MOVED_BYTES:
        reason = _offload_reason(receivers, templates)
        if reason:
            return reason
    for receiver in sorted(receivers):
        template = templates.get(receiver) or {}
        size = len(orjson.dumps(template))
        if "script" in template and isinstance(value, str):
            size += len(orjson.dumps(value))
        if size > MAX_RECEIVER_TEMPLATE_BYTES:
            return (f"template {receiver} would be {size} bytes restored, near the 128 KiB past which Argo moves it to "
                    "a ConfigMap that restoring cannot reach")
    return None


def _offload_reason(receivers: set[str], templates: Mapping[str, Mapping[str, Any]]) -> str | None:
    """A value over 128 KiB may move only where it can land in a main container's arguments alone, which Argo (and
    restoring) offloads to a ConfigMap: not in a script source, a command or an env value, which no one offloads."""
    for receiver in sorted(receivers):
        template = templates.get(receiver) or {}
        container = template.get("container")
        if not isinstance(container, Mapping) or "script" in template:
            return f"over 128 KiB, and template {receiver} is not a container template whose arguments Argo offloads"
        others = orjson.dumps([container.get("command"), container.get("env")]).decode()
        if "parameters." in others:
            return f"over 128 KiB, and template {receiver}'s command or env may take it, which Argo never offloads"
    return None


def _label_ops(spec: Mapping[str, Any], receivers: set[str]) -> list[PatchOp]:
    """`wfboost.io/restore: "true"` on each receiving template's metadata labels, built against the object as sent."""
    ops: list[PatchOp] = []
    for index, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, Mapping) or template.get("name") not in receivers:
            continue
        base = f"/spec/templates/{index}/metadata"
        metadata = template.get("metadata")
        if not isinstance(metadata, Mapping):
            ops.append({"op": "add", "path": base, "value": {"labels": {RESTORE_LABEL: "true"}}})
        elif not isinstance(metadata.get("labels"), Mapping):
            ops.append({"op": "add", "path": f"{base}/labels", "value": {RESTORE_LABEL: "true"}})
        else:
            ops.append({"op": "add", "path": f"{base}/labels/{RESTORE_LABEL.replace('/', '~1')}", "value": "true"})
    return ops
