"""Which output parameters of a Workflow's steps only ever reach containers, and so may travel from a
WorkflowTaskResult to the pods that consume them as a reference.

A step's outputs go from its wait container into a WorkflowTaskResult; the controller copies them into the node's
status (operator.go `taskResultReconciliation`) and substitutes them wherever a later task or step names them
(`{{tasks.<t>.outputs.parameters.<p>}}`, `{{steps.<s>.outputs.parameters.<p>}}`: operator.go
`addOutputsToLocalScope`, v3.5.14 to v4.1.2). When every such use hands the value on as a task's or step's argument to
a template of this Workflow that only copies it into its container's strings (the same test as for a workflow
argument: wfboost.shrink.analysis), the value may be replaced in the task result by a reference and restored in the
consumers' pods. Anything else keeps every value of that name inline:

- a use in any other field (`when`, `withParam`, hooks' arguments, DAG or steps `outputs` `valueFrom`, artifacts…),
  inside a longer string, or outside a `{{…}}` tag;
- a producer called in a loop: Argo hands its outputs over aggregated as one JSON list (operator.go
  `processAggregateNodeOutputs`), where a restored value would lack JSON's escaping;
- a `globalName` (the value becomes `{{workflow.outputs.parameters.…}}`, readable anywhere);
- Argo's own `memoize` on the producer (its ConfigMap cache outlives the Workflow, and with it the blob);
- an expression that can read step outputs (`{{=…}}`, `expression:` naming `tasks`, `steps` or `outputs`), the
  whole-map form `{{tasks.<t>.outputs.parameters}}`, `templateDefaults` (merged into every template at run time),
  and everything that keeps a workflow argument inline in every template (`templateRef`, `workflowTemplateRef`…).

The verdict is per output *name*, whichever template declares it: a task result names its node, not its template.
At Workflow CREATE the templates that may receive a moved value get the restore label, like those receiving a moved
argument; at task-result time the verdict is made again on the Workflow as the API server stores it (read by the
webhook), where a name moves only if every receiving template still carries that label. Nothing is taken on trust
from the object: a copy with edited consumers, or an edit after CREATE, is judged as it is.
Pure: it reads the spec only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any, Final

from wfboost.argo.offload import go_json_size
from wfboost.shrink.analysis import (
    TAG,
    TextIndex,
    dotted,
    expression_field,
    expression_tags,
    go_quotes_as_json,
    mentions,
    mentions_bare,
    passed_argument,
    strings,
    template_at,
    text_index,
    uses_in_scope,
    whole_spec_reason,
)
from wfboost.shrink.refs import MARK
from wfboost.shrink.workflow import RESTORE_LABEL, label_ops
from wfboost.structs.patch import PatchOp

__all__ = ["OutputAnalysis", "OutputMarks", "analyse_task_outputs", "plan_output_marks", "why_output_stays"]

# Restored into one container string a value may not pass Linux's 128 KiB per-string limit (as for arguments:
# wfboost.shrink.workflow MAX_MOVED_BYTES); nothing offloads a task output Argo substitutes into a pod.
MAX_OUTPUT_BYTES: Final = 120 * 1024
# A receiving template near Argo's 128 KiB offload limit as it is written may be moved to a ConfigMap whatever its
# inputs (wfboost.shrink.workflow).
MAX_RECEIVER_TEMPLATE_BYTES: Final = 100 * 1024

_OUTPUT_TAG = re.compile(r"(?:tasks|steps)\.[^.{}\s]+\.outputs\.parameters\.(.+)")
_WHOLE_MAP = re.compile(r"(?:tasks|steps)\.[^.{}\s]+\.outputs\.parameters")
_READS_OUTPUTS = re.compile(r"\b(tasks|steps|outputs)\b|\$env")
_LOOPS: Final = ("withItems", "withParam", "withSequence")
# Templates whose pod's wait container reports outputs in a task result (executor.go ReportOutputs).
_POD_KINDS: Final = ("container", "script", "containerSet", "resource", "data")
# Templates a moved value may reach: their pods' container strings are restored (the executor never reads the
# copies in ARGO_TEMPLATE), or they pass it on.
_RECEIVER_KINDS: Final = ("container", "dag", "steps")


@dataclass
class OutputAnalysis:
    movable: dict[str, int] = field(default_factory=dict)  # output name -> the most bytes a moved value may have
    receivers: set[str] = field(default_factory=set)  # templates whose pods may receive a moved value
    kept: dict[str, str] = field(default_factory=dict)  # output name -> why its values stay inline


def analyse_task_outputs(spec: Any, *, stored: bool = False) -> OutputAnalysis:
    """The verdict on each output name. `stored`: the spec as the API server holds it (read back at task-result time):
    the references wfboost wrote are allowed, and a name moves only where every receiving template carries the
    restore label (which this module's CREATE gave them: a template without it, in a copy or an edit, is never
    restored, so nothing may reach it as a reference)."""
    analysis = OutputAnalysis()
    if not isinstance(spec, Mapping):
        return analysis
    templates = {t["name"]: t for t in spec.get("templates") or [] if isinstance(t, Mapping)
                 and isinstance(t.get("name"), str)}
    declared: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for name, template in templates.items():
        if not any(key in template for key in _POD_KINDS):
            continue  # a DAG's, steps' or suspend's outputs are the controller's own, never in a task result
        outputs = template.get("outputs")
        for parameter in (outputs.get("parameters") or [] if isinstance(outputs, Mapping) else []):
            if isinstance(parameter, Mapping) and isinstance(parameter.get("name"), str):
                declared.setdefault(parameter["name"], []).append((name, parameter))
    if not declared:
        return analysis
    whole = whole_spec_reason(spec, references_allowed=stored) or _whole_outputs_reason(spec)
    if whole is not None:
        analysis.kept = dict.fromkeys(declared, whole)
        return analysis
    looped = _looped_templates(templates)
    index = text_index(spec)
    for name, producers in sorted(declared.items()):
        receivers: set[str] = set()
        reason = _producer_reason(producers, templates, looped) or _consumer_reason(
            spec, templates, name, receivers, index)
        for receiver in sorted(receivers):
            if reason is not None:
                break
            reason = _receiver_reason(receiver, templates[receiver], stored)
        if reason is None:
            analysis.movable[name] = MAX_OUTPUT_BYTES
            analysis.receivers |= receivers
        else:
            analysis.kept[name] = reason
    return analysis


def _receiver_reason(name: str, template: Mapping[str, Any], stored: bool) -> str | None:
    """Why a receiving template cannot take a moved value, or None."""
    if "script" in template:
        # the executor reads a script's source from ARGO_TEMPLATE, which inputs arriving at run time can make any
        # size: Argo then moves it, source and references with it, to a ConfigMap restoring cannot reach
        return f"script {name} reads its inputs from a template Argo may move to a ConfigMap"
    if not any(key in template for key in _RECEIVER_KINDS):
        # a suspend template parses its inputs (a dynamic enum: operator.go resolveInputFieldsForSuspendNode), an
        # http or plugin template reaches its executor through the task set, where nothing restores it
        return f"template {name} is not a container, DAG or steps template"
    metadata = template.get("metadata")
    labels = metadata.get("labels") if isinstance(metadata, Mapping) else None
    if stored and (not isinstance(labels, Mapping) or labels.get(RESTORE_LABEL) != "true"):
        return f"template {name} is not marked for restoring"
    size = go_json_size(template)  # as the controller measures ARGO_TEMPLATE
    if size > MAX_RECEIVER_TEMPLATE_BYTES:
        return f"template {name} is {size} bytes, near the 128 KiB past which Argo offloads it"
    return None


def _whole_outputs_reason(spec: Mapping[str, Any]) -> str | None:
    if spec.get("templateDefaults"):
        return "spec.templateDefaults is merged into every template when the Workflow runs, unseen here"
    for path, text in strings(spec, ()):
        if "inline" in path:
            # a task's or step's own template (DAGTask.Inline, WorkflowStep.Inline): its outputs, loops and
            # consumers are not where this analysis looks
            return f"{dotted(path[:path.index('inline') + 1])}: an inline template"
        if "{{" in text:
            if any(_READS_OUTPUTS.search(tag) for tag in expression_tags(text)):
                return f"{dotted(path)}: an expression can read step outputs (`{{{{=…}}}}`)"
            for tag in TAG.findall(text):
                if _WHOLE_MAP.fullmatch(tag):
                    return f"{dotted(path)}: `{{{{{tag}}}}}` hands every output over at once, as JSON"
        if expression_field(path) and _READS_OUTPUTS.search(text):
            return f"{dotted(path)}: an expression can read step outputs"
    return None


def _looped_templates(templates: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Templates some task or step calls in a loop."""
    looped: set[str] = set()
    for template in templates.values():
        calls: list[Any] = list((template.get("dag") or {}).get("tasks") or []) if isinstance(
            template.get("dag"), Mapping) else []
        for group in template.get("steps") or [] if isinstance(template.get("steps"), list) else []:
            calls.extend(group if isinstance(group, list) else [])
        for call in calls:
            if (isinstance(call, Mapping) and any(call.get(loop) is not None for loop in _LOOPS)
                    and isinstance(call.get("template"), str)):
                looped.add(call["template"])
    return looped


def _producer_reason(producers: list[tuple[str, Mapping[str, Any]]], templates: Mapping[str, Mapping[str, Any]],
                     looped: set[str]) -> str | None:
    for template_name, parameter in producers:
        if parameter.get("globalName"):
            return f"{template_name} also exports it as a global output (globalName)"
        if templates[template_name].get("memoize"):
            return f"{template_name} has Argo's memoize: its cache would keep a reference past the Workflow"
        if template_name in looped:
            return f"{template_name} runs in a loop: its outputs reach consumers aggregated as one JSON list"
    return None


def _consumer_reason(spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]], name: str,
                     receivers: set[str], index: TextIndex) -> str | None:
    """None when every mention of `outputs.parameters.<name>` is a whole task or step argument passed to a template
    here whose input is only used in container strings (followed as for a workflow argument)."""
    token = f"outputs.parameters.{name}"
    visited: set[tuple[str, str]] = set()
    for path, text in index[None]:
        if not mentions(text, token):
            continue
        where = dotted(path)
        tags = [tag for tag in TAG.findall(text) if mentions(tag, token)]
        if mentions_bare(text, token) or any(
                (m := _OUTPUT_TAG.fullmatch(tag)) is None or m[1] != name for tag in tags):
            return f"{where}: used other than as `{{{{tasks.<task>.{token}}}}}`"
        if TAG.fullmatch(text.strip()) is None:
            return f"{where}: passed inside a longer string"
        template = template_at(path, templates)
        passed = passed_argument(path[2:], templates[template]) if template is not None else None
        if passed is None:
            return f"{where}: a field the controller evaluates or that is not a task's argument"
        task, argument = passed
        target = task.get("template")
        if "templateRef" in task or not isinstance(target, str) or target not in templates:
            return f"{where}: passed to a template not defined in this Workflow"
        inputs = templates[target].get("inputs")
        declared = [p for p in (inputs.get("parameters") or [] if isinstance(inputs, Mapping) else [])
                    if isinstance(p, Mapping) and p.get("name") == argument]
        if not declared:
            return f"{where}: passed as `{argument}`, which {target} does not declare"
        if "enum" in declared[0]:
            return f"{where}: {target}'s input `{argument}` has an enum the controller checks"
        receivers.add(target)
        if (target, argument) in visited:
            continue
        visited.add((target, argument))
        reason = uses_in_scope(spec, templates, f"inputs.parameters.{argument}", target, receivers, visited, index)
        if reason is not None:
            return reason
    return None


@dataclass
class OutputMarks:
    """The patch that marks a Workflow at CREATE: the restore label on each template that may receive a moved
    output, unless the same admission's own shrink labelled it already (`labelled`)."""

    ops: list[PatchOp]
    analysis: OutputAnalysis


def plan_output_marks(workflow: Mapping[str, Any], labelled: Set[str] = frozenset()) -> OutputMarks:
    """Against the object as sent. Nothing else is written: at task-result time the verdict is made again on the
    Workflow as stored, whose marks this patch put there (so a copy, an edit or a forged note cannot widen it)."""
    spec = workflow.get("spec")
    analysis = analyse_task_outputs(spec)
    if not analysis.movable or not isinstance(spec, Mapping):
        return OutputMarks([], analysis)
    return OutputMarks(label_ops(spec, analysis.receivers - set(labelled)), analysis)


def why_output_stays(value: object, most: int, threshold: int) -> str | None:
    """Why one reported value of a movable output stays inline in its task result, or None. `most` is the
    annotation's bound for its name, `threshold` the policy's valueThresholdBytes."""
    if not isinstance(value, str):
        return "not a string"
    size = len(value.encode())
    if size < threshold:
        return "under shrink.valueThresholdBytes"
    if size > most:
        return f"{size} bytes, over the {most} its consumers can take restored"
    if "{{" in value:
        return "holds `{{`: the controller may substitute inside it"
    if MARK in value:
        return "already holds reference text"
    if value.endswith("{") or value.startswith("}"):
        return "starts with `}` or ends with `{`: with the text around it, the controller could read a tag there"
    if not go_quotes_as_json(value):
        return "holds a character Argo's substitution cannot write as JSON (inline its consumers fail)"
    return None
