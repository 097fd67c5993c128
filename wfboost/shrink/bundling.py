"""Argument tables: the static arguments of every call of one template moved out together, one row per call.

Kubeflow v2 calls one template, `system-container-driver`, from a driver task per pipeline task, each passing the
component, the task spec JSON, the implementation and the task name; at 2,000 tasks those calls are most of the
Workflow. Moving each value alone would leave every call's parameter list in place. Here the template's inputs
whose every call passes a value known at CREATE become one input, `wfboost-args`, whose value is a row of a table in
the side store (wfboost.shrink.tables); each call passes only `wfboost-args: wfboost-ref:table-v1:<size>:<sha256>#<row>`
beside the parameters it keeps, and each `{{inputs.parameters.<input>}}` in the template's container strings becomes
`{{inputs.parameters.wfboost-args}}[<input>]`. The controller substitutes that like any input, so a pod holds
`…#<row>[<input>]` exactly where the value would have been, and restoring (wfboost.shrink.restore) puts the cell back.

A template gets a table only when all of this holds, else it is left as it is, with the reason:

- it is a container or script template of this Workflow, called only from DAG tasks and steps with `template:`
  (not the entrypoint, an exit handler or a hook, whose arguments come from elsewhere), and every call passes every
  input without a default, so the Workflow was valid before;
- an input it carries is used only in the container strings the analysis recognises (wfboost.shrink.analysis: args,
  command, env values, the script source), with no enum and no `valueFrom`, and every call passes it a literal
  without `{{`, or exactly `{{workflow.parameters.X}}` for an argument of this Workflow with a literal whose only
  tags are Kubeflow's `{{$…}}` placeholders (wfboost.shrink.analysis.only_dollar_tags; not in a looped call) — the
  controller's substitution of a global parameter, done here once: a Workflow's arguments are fixed when it is
  created — or omits it where the input's default is such a literal; and Go quotes the value as JSON
  (analysis.go_quotes_as_json: else the controller's substitution fails inline, and must not be made to work);
- no cell is over 120 KiB (restored into one string it must stay under Linux's 128 KiB), nor a script source's
  input that would bring the template near the size Argo offloads to a ConfigMap;
- the Workflow refers to nothing outside itself (the analysis's whole-object reasons) and has no
  `templateDefaults`; and the table saves at least `valueThresholdBytes`.

Every task name, dependency, `when`, loop, and every parameter the controller evaluates stays where it was. Pure: the
caller stores the tables before it answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from wfboost.shrink.analysis import go_quotes_as_json, only_dollar_tags, uses_reason, whole_spec_reason
from wfboost.shrink.refs import MARK, Reference, table_reference_for
from wfboost.shrink.tables import FORMAT, ArgumentTable, TableRow
from wfboost.structs.patch import PatchOp

__all__ = ["BUNDLE_INPUT", "TablePlan", "plan_argument_tables"]

BUNDLE_INPUT: Final = "wfboost-args"
_NAME: Final = re.compile(r"[-A-Za-z0-9_]{1,253}")
_GLOBAL: Final = re.compile(r"\{\{\s*workflow\.parameters\.([-A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class TablePlan:
    template: str
    reference: Reference
    data: bytes
    ops: list[PatchOp]
    calls: int
    inputs: list[str]
    saved: int  # bytes, as JSON


@dataclass
class TablesPlan:
    tables: list[TablePlan] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # template name -> why it has no table


@dataclass(frozen=True)
class _Call:
    path: str  # JSON pointer of the task or step
    task: Mapping[str, Any]


@dataclass(frozen=True)
class _Limits:
    min_saved: int
    max_cell: int
    max_template: int
    labels: Mapping[str, str]


def plan_argument_tables(
    spec: Mapping[str, Any], *, min_saved: int, max_cell: int, max_template: int, labels: Mapping[str, str]
) -> TablesPlan:
    """The tables worth making for a Workflow's spec, and why the other called templates have none."""
    plan = TablesPlan()
    calls, elsewhere = _calls(spec)
    if not calls:
        return plan
    whole = whole_spec_reason(spec) or ("it has templateDefaults, merged into every template"
                                        if spec.get("templateDefaults") else None)
    templates = {t["name"]: t for t in spec.get("templates") or [] if isinstance(t, Mapping) and "name" in t}
    limits = _Limits(min_saved, max_cell, max_template, labels)
    globals_ = _literal_arguments(spec)
    for index, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, Mapping) or not isinstance(template.get("name"), str):
            continue
        name = template["name"]
        if name not in calls:
            continue
        outcome = whole or _table(spec, templates, index, template, calls[name], name in elsewhere, globals_, limits)
        if isinstance(outcome, str):
            plan.kept[name] = outcome
        else:
            plan.tables.append(outcome)
    return plan


def _calls(spec: Mapping[str, Any]) -> tuple[dict[str, list[_Call]], set[str]]:
    """Each template's calls from DAG tasks and steps, and the templates run some other way."""
    calls: dict[str, list[_Call]] = {}
    elsewhere: set[str] = set()
    if isinstance(spec.get("entrypoint"), str):
        elsewhere.add(spec["entrypoint"])

    def exits(holder: Mapping[str, Any]) -> None:
        if isinstance(holder.get("onExit"), str):
            elsewhere.add(holder["onExit"])
        hooks = holder.get("hooks")
        for hook in hooks.values() if isinstance(hooks, Mapping) else ():
            if isinstance(hook, Mapping) and isinstance(hook.get("template"), str):
                elsewhere.add(hook["template"])

    def called(path: str, task: Any) -> None:
        if not isinstance(task, Mapping):
            return
        exits(task)
        target = task.get("template")
        if isinstance(target, str) and "templateRef" not in task and "inline" not in task:
            calls.setdefault(target, []).append(_Call(path, task))

    exits(spec)
    for t, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, Mapping):
            continue
        dag = template.get("dag")
        for k, task in enumerate((dag.get("tasks") if isinstance(dag, Mapping) else None) or []):
            called(f"/spec/templates/{t}/dag/tasks/{k}", task)
        for g, group in enumerate(template.get("steps") or []):
            for s, step in enumerate(group if isinstance(group, list) else []):
                called(f"/spec/templates/{t}/steps/{g}/{s}", step)
    return calls, elsewhere


def _literal_arguments(spec: Mapping[str, Any]) -> dict[str, str]:
    """The Workflow's arguments with a literal value the controller substitutes as it is."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    for parameter in (spec.get("arguments") or {}).get("parameters") or []:
        if not isinstance(parameter, Mapping) or not isinstance(parameter.get("name"), str):
            continue
        name, value = parameter["name"], parameter.get("value")
        if name in seen:
            found.pop(name, None)
            continue
        seen.add(name)
        if isinstance(value, str) and "valueFrom" not in parameter and MARK not in value and go_quotes_as_json(value):
            found[name] = value  # `{{…}}` inside is checked where it is used: only `$` tags, not in a loop
    return found


_LOOPS: Final = ("withItems", "withParam", "withSequence")


def _static(call: Mapping[str, Any], entry: Mapping[str, Any] | None, declared: Mapping[str, Any],
            globals_: Mapping[str, str]) -> str | None:
    """The value the controller gives this input for this call, when it is known now."""
    if entry is None:
        value = declared.get("default")
    elif "valueFrom" in entry or not isinstance(entry.get("value"), str):
        return None
    else:
        value = entry["value"]
        whole = _GLOBAL.fullmatch(value)
        if whole:
            value = globals_.get(whole[1])
            if value is not None and "{{" in value and (not only_dollar_tags(value) or any(k in call for k in _LOOPS)):
                return None
            return value
    if not isinstance(value, str) or "{{" in value or MARK in value or not go_quotes_as_json(value):
        return None
    return value


def _table(
    spec: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    index: int,
    template: Mapping[str, Any],
    calls: Sequence[_Call],
    run_elsewhere: bool,
    globals_: Mapping[str, str],
    limits: _Limits,
) -> TablePlan | str:
    name = template["name"]
    if run_elsewhere:
        return "it also runs as the entrypoint, an exit handler or a hook, with arguments from elsewhere"
    if "container" not in template and "script" not in template:
        return "not a container or script template"
    if not isinstance(template.get("metadata", {}), Mapping):
        return "its metadata is not a map"
    declared = (template.get("inputs") or {}).get("parameters") or []
    names = [p.get("name") if isinstance(p, Mapping) else None for p in declared]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names) or BUNDLE_INPUT in names:
        return "its input parameters are not uniquely named"
    arguments: list[dict[str, Mapping[str, Any]]] = []
    for call in calls:
        parameters = (call.task.get("arguments") or {}).get("parameters") or []
        if not isinstance(parameters, list) or not all(isinstance(p, Mapping) for p in parameters):
            return f"{call.path}: its arguments are not a list of parameters"
        passed = [p.get("name") for p in parameters]
        if len(set(passed)) != len(passed):
            return f"{call.path}: passes a parameter twice"
        by_name = {p["name"]: p for p in parameters if isinstance(p.get("name"), str)}
        missing = [p["name"] for p in declared if p["name"] not in by_name and "default" not in p]
        if missing:
            return f"{call.path}: does not pass {missing[0]}, which has no default"
        arguments.append(by_name)
    script_size = len(orjson.dumps(template)) if "script" in template else 0
    carried: list[str] = []
    values: list[list[str]] = [[] for _ in calls]
    for parameter in declared:
        input_name = parameter["name"]
        if not _NAME.fullmatch(input_name) or "enum" in parameter or "valueFrom" in parameter:
            continue
        if uses_reason(spec, templates, f"inputs.parameters.{input_name}", name) is not None:
            continue
        cells = [_static(call.task, by_name.get(input_name), parameter, globals_)
                 for call, by_name in zip(calls, arguments, strict=True)]
        if any(c is None or len(c.encode()) > limits.max_cell for c in cells):
            continue
        in_source = f"inputs.parameters.{input_name}" in str((template.get("script") or {}).get("source", ""))
        if in_source and script_size + max(len(c or "") for c in cells) > limits.max_template:
            continue
        carried.append(input_name)
        for row, value in zip(values, cells, strict=True):
            row.append(value or "")
    if not carried:
        return "no input is given a value known now by every call and used only in container strings"
    return _build(index, template, calls, arguments, carried, values, limits)


def _build(
    index: int,
    template: Mapping[str, Any],
    calls: Sequence[_Call],
    arguments: Sequence[Mapping[str, Mapping[str, Any]]],
    carried: list[str],
    values: list[list[str]],
    limits: _Limits,
) -> TablePlan | str:
    strings: list[str] = []
    interned: dict[str, int] = {}

    def intern(text: str) -> int:
        if text not in interned:
            interned[text] = len(strings)
            strings.append(text)
        return interned[text]

    rows: list[TableRow] = []
    row_of: dict[bytes, int] = {}
    call_rows: list[int] = []
    moved = set(carried)
    for call, cells in zip(calls, values, strict=True):
        parameters = (call.task.get("arguments") or {}).get("parameters") or []
        row: TableRow = {
            "cells": [intern(value) for value in cells],
            "removed": [[position, {k: v for k, v in p.items() if k != "value"}, intern(p["value"])]
                        for position, p in enumerate(parameters) if p.get("name") in moved],
        }
        key = orjson.dumps(row)
        call_rows.append(row_of.setdefault(key, len(rows)))
        if call_rows[-1] == len(rows):
            rows.append(row)
    table: ArgumentTable = {"format": FORMAT, "template": template["name"], "inputs": carried, "strings": strings,
                            "rows": rows, "original": dict(template)}
    data = orjson.dumps(table)
    reference = table_reference_for(data)
    rewritten = _rewritten_template(template, moved, limits.labels)
    ops: list[PatchOp] = [{"op": "replace", "path": f"/spec/templates/{index}", "value": rewritten}]
    saved = len(orjson.dumps(template)) - len(orjson.dumps(rewritten))
    for call, row_number in zip(calls, call_rows, strict=True):
        parameters = (call.task.get("arguments") or {}).get("parameters") or []
        kept = [p for p in parameters if p.get("name") not in moved]
        kept.append({"name": BUNDLE_INPUT, "value": f"{reference.text}#{row_number}"})
        saved += len(orjson.dumps(parameters)) - len(orjson.dumps(kept))
        existing = call.task.get("arguments")
        if not isinstance(existing, Mapping):
            ops.append({"op": "add", "path": f"{call.path}/arguments", "value": {"parameters": kept}})
        elif "parameters" not in existing:
            ops.append({"op": "add", "path": f"{call.path}/arguments/parameters", "value": kept})
        else:
            ops.append({"op": "replace", "path": f"{call.path}/arguments/parameters", "value": kept})
    if saved < limits.min_saved:
        return f"a table would save {saved} bytes, under shrink.valueThresholdBytes"
    return TablePlan(template["name"], reference, data, ops, len(calls), carried, saved)


def _rewritten_template(template: Mapping[str, Any], moved: set[str], labels: Mapping[str, str]) -> dict[str, Any]:
    """The template taking `wfboost-args` in place of the carried inputs, its pods labelled for restoring."""
    rewritten: dict[str, Any] = orjson.loads(orjson.dumps(template))
    inputs = rewritten.setdefault("inputs", {})
    inputs["parameters"] = [p for p in inputs.get("parameters") or [] if p["name"] not in moved]
    inputs["parameters"].append({"name": BUNDLE_INPUT})
    tags = re.compile(r"\{\{\s*inputs\.parameters\.(" + "|".join(map(re.escape, sorted(moved))) + r")\s*\}\}")

    def cell(text: str) -> str:
        return tags.sub(lambda m: "{{inputs.parameters." + BUNDLE_INPUT + "}}[" + m[1] + "]", text)

    for key in ("container", "script"):
        body = rewritten.get(key)
        if not isinstance(body, dict):
            continue
        for field_name in ("args", "command"):
            if isinstance(body.get(field_name), list):
                body[field_name] = [cell(t) if isinstance(t, str) else t for t in body[field_name]]
        for env in body.get("env") or []:
            if isinstance(env, dict) and isinstance(env.get("value"), str):
                env["value"] = cell(env["value"])
        if key == "script" and isinstance(body.get("source"), str):
            body["source"] = cell(body["source"])
    metadata = rewritten.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    return rewritten
