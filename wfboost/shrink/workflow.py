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

from wfboost.argo.offload import go_json_size, offloads_container_args
from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.analysis import analyse_workflow_arguments, go_quotes_as_json, only_dollar_tags
from wfboost.shrink.bundling import TablePlan, plan_argument_tables
from wfboost.shrink.literals import MovedValue, plan_template_literals
from wfboost.shrink.refs import PATTERN, reference_for
from wfboost.shrink.restore import TEMPLATE_REFS_LABEL, TEMPLATE_REFS_UNREAD
from wfboost.structs.patch import PatchOp

__all__ = ["MAX_MOVED_BYTES", "RESTORE_LABEL", "SHRUNK_KINDS", "MovedValue", "WorkflowShrink", "label_ops", "malformed",
           "plan_workflow_shrink", "workflow_spec_of"]

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


@dataclass
class WorkflowShrink:
    ops: list[PatchOp] = field(default_factory=list)
    moved: list[MovedValue] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # argument name -> why it stays inline
    tables: list[TablePlan] = field(default_factory=list)
    untabled: dict[str, str] = field(default_factory=dict)  # called template -> why it has no argument table
    labelled: set[str] = field(default_factory=set)  # templates given the restore label (by name, as sent)
    size_before: int = 0
    size_after: int = 0

    def blobs(self) -> list[bytes]:
        """What to store before answering: each distinct value once (a literal repeated in many templates has one
        reference), and each table."""
        values = {moved.reference: moved.value.encode() for moved in self.moved}
        return [*values.values(), *(table.data for table in self.tables)]


@dataclass(frozen=True)
class _Shape:
    spec: str  # where the Workflow spec is in the object
    whole: bool  # every call and every reader of its arguments is in it: arguments, tables and input defaults may move


# A WorkflowTemplate's arguments are defaults a Workflow overrides, its templates are called from other objects
# (`templateRef`, without a row for a table) and the Workflows that run it may read its inputs in fields this object
# does not show: only what its templates copy into pods as text moves. A ClusterWorkflowTemplate runs in every
# namespace, and the side store keeps each value in one.
_SHAPES: Final = {
    "Workflow": _Shape("spec", whole=True),
    "CronWorkflow": _Shape("workflowSpec", whole=True),
    "WorkflowTemplate": _Shape("spec", whole=False),
}
SHRUNK_KINDS: Final = frozenset(_SHAPES)


def workflow_spec_of(obj: Mapping[str, Any]) -> Any:
    """The Workflow spec inside a Workflow, CronWorkflow or WorkflowTemplate (None for any other kind)."""
    shape = _SHAPES.get(str(obj.get("kind") or "Workflow"))
    outer = obj.get("spec")
    if shape is None or shape.spec == "spec":
        return outer if shape is not None else None
    return outer.get(shape.spec) if isinstance(outer, Mapping) else None


def malformed(obj: Mapping[str, Any]) -> str | None:
    """Why this object cannot be a Workflow, CronWorkflow or WorkflowTemplate as the API server stores one (its
    schema), or None. The webhook never sees such an object; a file given to `wfboost shrink` may be one."""
    if not isinstance(obj.get("metadata", {}), Mapping):
        return "metadata is not a mapping"
    if not isinstance(obj.get("spec", {}), Mapping):
        return "spec is not a mapping"
    spec = workflow_spec_of(obj)
    where = "spec.workflowSpec" if obj.get("kind") == "CronWorkflow" else "spec"
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        return f"{where} is not a mapping"
    for key, kind in (("templates", list), ("arguments", Mapping)):
        if key in spec and not isinstance(spec[key], kind):
            return f"{where}.{key} is not a {'list' if kind is list else 'mapping'}"
    parameters = (spec.get("arguments") or {}).get("parameters", [])
    if not isinstance(parameters, list):
        return f"{where}.arguments.parameters is not a list"
    for index, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, Mapping):
            return f"{where}.templates[{index}] is not a mapping"
        for key in ("metadata", "container", "script", "inputs", "outputs", "dag"):
            if key in template and template[key] is not None and not isinstance(template[key], Mapping):
                return f"{where}.templates[{index}].{key} is not a mapping"
        if "steps" in template and not isinstance(template["steps"], list):
            return f"{where}.templates[{index}].steps is not a list"
    return None


def plan_workflow_shrink(workflow: Mapping[str, Any], settings: ShrinkSettings) -> WorkflowShrink | str:
    """The shrink of a Workflow, CronWorkflow or WorkflowTemplate (an object without `kind` is taken for a
    Workflow), or the reason nothing moves (an outcome label)."""
    if malformed(workflow):
        return "malformed"
    kind = workflow.get("kind") or "Workflow"
    if kind == "ClusterWorkflowTemplate":
        return "cluster_scoped"
    shape = _SHAPES.get(str(kind))
    if shape is None:
        return "not_a_workflow"
    spec = workflow_spec_of(workflow)
    if not isinstance(spec, Mapping):
        return "no_spec"
    size = len(orjson.dumps(workflow))
    if size < settings.object_threshold_bytes:
        return "workflow_small"
    plan = _planned(spec, settings, shape.whole, size)
    if isinstance(plan, str) or shape.spec == "spec":
        return plan
    for op in plan.ops:  # written against /spec: a CronWorkflow's Workflow spec is one level down
        op["path"] = f"/spec/{shape.spec}" + op["path"][len("/spec"):]
    return plan


def _planned(spec: Mapping[str, Any], settings: ShrinkSettings, whole: bool, size: int) -> WorkflowShrink | str:
    if whole:
        tables = plan_argument_tables(spec, min_saved=settings.value_threshold_bytes, max_cell=MAX_MOVED_BYTES,
                                      max_template=MAX_RECEIVER_TEMPLATE_BYTES, labels={RESTORE_LABEL: "true"})
        plan = WorkflowShrink(tables=tables.tables, untabled=tables.kept, size_before=size)
    else:
        plan = WorkflowShrink(size_before=size)
    tabled = {table.template for table in plan.tables}
    receivers: set[str] = set()
    saved = sum(table.saved for table in plan.tables)
    if whole:
        saved += _moved_arguments(spec, settings, plan, receivers)
    literals = plan_template_literals(spec, min_bytes=settings.value_threshold_bytes, max_bytes=MAX_MOVED_BYTES,
                                      max_template=MAX_RECEIVER_TEMPLATE_BYTES, defaults=whole,
                                      skip=frozenset(tabled))
    plan.moved += literals.moved
    plan.ops += literals.ops
    plan.kept.update(literals.kept)
    receivers |= literals.receivers
    saved += literals.saved
    if not plan.moved and not plan.tables:
        return "nothing_to_move"
    labels = label_ops(spec, receivers - tabled)
    plan.labelled = receivers | tabled
    plan.ops.extend(labels)
    plan.ops.extend(op for table in plan.tables for op in table.ops)
    plan.size_after = size - saved + sum(len(orjson.dumps(op)) for op in labels)
    return plan


def _moved_arguments(spec: Mapping[str, Any], settings: ShrinkSettings, plan: WorkflowShrink,
                     receivers: set[str]) -> int:
    """Workflow arguments that only reach containers, moved (into `plan`); the bytes saved."""
    saved = 0
    parameters = (spec.get("arguments") or {}).get("parameters")
    analysis = analyse_workflow_arguments(spec)
    plan.kept.update(analysis.kept)
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
    return saved


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
        size = go_json_size(template)  # as the controller measures ARGO_TEMPLATE
        if "script" in template and isinstance(value, str):
            size += go_json_size(value)
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


def label_ops(spec: Mapping[str, Any], receivers: set[str]) -> list[PatchOp]:
    """`wfboost.io/restore: "true"` on each receiving template's metadata labels, built against the object as sent;
    on one that is not a script, also `wfboost.io/template-refs: unread` (restore.TEMPLATE_REFS_LABEL)."""
    ops: list[PatchOp] = []
    for index, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, Mapping) or template.get("name") not in receivers:
            continue
        added = {RESTORE_LABEL: "true"}
        if "script" not in template:
            added[TEMPLATE_REFS_LABEL] = TEMPLATE_REFS_UNREAD
        base = f"/spec/templates/{index}/metadata"
        metadata = template.get("metadata")
        if "script" in template and isinstance(metadata, Mapping) and isinstance(metadata.get("labels"), Mapping) \
                and TEMPLATE_REFS_LABEL in metadata["labels"]:
            # the executor reads a script's source from its template: a copied or written `unread` is not true here
            ops.append({"op": "remove", "path": f"{base}/labels/{TEMPLATE_REFS_LABEL.replace('/', '~1')}"})
        if not isinstance(metadata, Mapping):
            ops.append({"op": "add", "path": base, "value": {"labels": added}})
        elif not isinstance(metadata.get("labels"), Mapping):
            ops.append({"op": "add", "path": f"{base}/labels", "value": added})
        else:
            ops.extend({"op": "add", "path": f"{base}/labels/{key.replace('/', '~1')}", "value": value}
                       for key, value in added.items())
    return ops
