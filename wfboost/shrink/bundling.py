"""Argument tables: the static arguments of every call of one template moved out together, one row per call.

Kubeflow v2 calls one template, `system-container-driver`, from a driver task per pipeline task, each passing the
component, the task spec JSON, the implementation and the task name; at 2,000 tasks those calls are most of the
Workflow. Moving each value alone would leave every call's parameter list in place. Here the template's inputs
whose every call passes a value known at CREATE become cells of a table in the side store (wfboost.shrink.tables),
one row per distinct call: each call passes only its row number, `wfboost-row: "<n>"`, beside the parameters it
keeps, and each `{{inputs.parameters.<input>}}` in the template's container strings becomes
`wfboost-ref:table-v1:<size>:<sha256>#{{inputs.parameters.wfboost-row}}[<input>]`. The controller substitutes the
row like any input, so a pod holds `…#<n>[<input>]` exactly where the value would have been, and restoring
(wfboost.shrink.restore) puts the cell back. Arguments that are the Workflow's own (`{{workflow.parameters.X}}`) move
into the template instead, one copy of it per set of such arguments (`_routes`).

A template gets a table only when all of this holds, else it is left as it is, with the reason:

- it is a container or script template of this Workflow, called only from DAG tasks and steps with `template:`
  (not the entrypoint, an exit handler, a hook or a call inside an `inline` template), every call passes every input
  without a default, so the Workflow was valid before, and none passes `wfboost-row` already;
- an input it carries is used only in the container strings the analysis recognises (wfboost.shrink.analysis: args,
  command, env values, the script source), each time as exactly `{{inputs.parameters.<input>}}` (as Argo's
  fasttemplate finds tags: `{{` to the next `}}`, nothing else inside), with no enum and no `valueFrom`;
- every call passes it a literal (one whose only tags are Kubeflow's `{{$…}}` placeholders, which Argo passes
  unchanged, outside loops: analysis.only_dollar_tags), or omits it where the input's `value`, else its `default`, is
  such a literal (workflow/common/util.go ProcessArgs: `overwriteWithDefaultParams`, then the argument). A
  `{{workflow.parameters.X}}` argument never goes into a row: the controller reads the Workflow's arguments at
  every step, and `argo retry -p`, `argo resubmit -p` or an edit change them after CREATE (workflow/util/util.go
  `overrideParameters`); it may move into a copy of the template instead (`_routes`). Go must quote the value as
  JSON (analysis.go_quotes_as_json: else the substitution fails inline, and must not be made to work), and it is not
  Argo's absent-optional marker;
- no cell is over 120 KiB (restored into one string it must stay under Linux's 128 KiB), nor a script source's
  input that would bring the template near the size Argo offloads to a ConfigMap;
- the Workflow refers to nothing outside itself and no Workflow-level field reads template inputs (the analysis's
  whole-object reasons), it has no `templateDefaults`, and the table saves at least `valueThresholdBytes`.

Every task name, dependency, `when`, loop, and every parameter the controller evaluates stays where it was. Pure: the
caller stores the tables before it answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from wfboost.argo import names
from wfboost.shrink.analysis import go_quotes_as_json, mentions, only_dollar_tags, uses_reason, whole_spec_reason
from wfboost.shrink.refs import MARK, Reference, table_reference_for
from wfboost.shrink.tables import FORMAT, ArgumentTable, TableRow
from wfboost.structs.patch import PatchOp

__all__ = ["BUNDLE_INPUT", "TablePlan", "plan_argument_tables"]

BUNDLE_INPUT: Final = "wfboost-row"
_NAME: Final = re.compile(r"[-A-Za-z0-9_]{1,253}")


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
    reads_failures: bool = False  # `{{workflow.failures}}` anywhere: it names each failed node's template and pod


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
    limits = _Limits(min_saved, max_cell, max_template, labels, "workflow.failures" in orjson.dumps(spec).decode())
    copies_left = MAX_TEMPLATES - len(spec.get("templates") or [])  # shared by every table's copies
    for index, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, Mapping) or not isinstance(template.get("name"), str):
            continue
        name = template["name"]
        if name not in calls:
            continue
        outcome = whole or _table(spec, templates, index, template, calls[name], name in elsewhere, limits,
                                  copies_left)
        if isinstance(outcome, str):
            plan.kept[name] = outcome
        else:
            plan.tables.append(outcome)
            copies_left -= sum(1 for op in outcome.ops if op["path"] == "/spec/templates/-")
    return plan


def _calls(spec: Mapping[str, Any]) -> tuple[dict[str, list[_Call]], set[str]]:
    """Each template's calls from DAG tasks and steps, and the templates run some other way (the entrypoint, exit
    handlers, hooks, and anything called from inside an `inline` template, whose calls have no path of their own
    here)."""
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

    def walk(template: Mapping[str, Any], base: str | None) -> None:
        dag = template.get("dag")
        holders = [(f"{base}/dag/tasks/{k}" if base else None, task)
                   for k, task in enumerate((dag.get("tasks") if isinstance(dag, Mapping) else None) or [])]
        holders += [(f"{base}/steps/{g}/{k}" if base else None, step)
                    for g, group in enumerate(template.get("steps") or []) if isinstance(group, list)
                    for k, step in enumerate(group)]
        for path, task in holders:
            if not isinstance(task, Mapping):
                continue
            exits(task)
            if isinstance(task.get("inline"), Mapping):
                walk(task["inline"], None)
            target = task.get("template")
            if not isinstance(target, str) or "templateRef" in task or "inline" in task:
                continue
            if path is None:
                elsewhere.add(target)
            else:
                calls.setdefault(target, []).append(_Call(path, task))

    exits(spec)
    for t, template in enumerate(spec.get("templates") or []):
        if isinstance(template, Mapping):
            walk(template, f"/spec/templates/{t}")
    return calls, elsewhere


_LOOPS: Final = ("withItems", "withParam", "withSequence")


def _static(call: Mapping[str, Any], entry: Mapping[str, Any] | None, declared: Mapping[str, Any]) -> str | None:
    """The value the controller gives this input for this call, when it is known now (ProcessArgs: the argument,
    else the input's `value`, else its `default`)."""
    if entry is None:
        value = declared["value"] if "value" in declared else declared.get("default")
    elif "valueFrom" in entry or not isinstance(entry.get("value"), str):
        return None
    else:
        value = entry["value"]
    return value if isinstance(value, str) and _passes_unchanged(call, value) else None


def _passes_unchanged(call: Mapping[str, Any], value: str) -> bool:
    """Argo's substitutions give this value to the pod as it is, wherever in a string it lands: no reference, not
    the absent-optional marker, Go quotes it as JSON, no `{` at its end or `}` at its start (with the text around
    it, a tag Argo resolves), no tag but Kubeflow's `{{$…}}`, and those only outside loops."""
    if MARK in value or value == names.ABSENT_OPTIONAL_OUTPUT or not go_quotes_as_json(value):
        return False
    if value.endswith("{") or value.startswith("}"):
        return False
    return "{{" not in value or (only_dollar_tags(value) and not any(key in call for key in _LOOPS))


def fast_tags(text: str) -> list[tuple[int, int, str]] | None:
    """(start, end, inside) of each `{{…}}` as Argo's fasttemplate finds it (`{{` to the next `}}`); None when a
    `{{` is never closed (Argo's substitution then fails: "Cannot find end tag")."""
    found = []
    position = 0
    while (start := text.find("{{", position)) >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            return None
        found.append((start, end + 2, text[start + 2:end]))
        position = end + 2
    return found


def _container_strings(template: Mapping[str, Any]) -> list[str]:
    strings: list[str] = []
    for key in ("container", "script"):
        body = template.get(key)
        if not isinstance(body, Mapping):
            continue
        for field_name in ("args", "command"):
            strings += [t for t in body.get(field_name) or [] if isinstance(t, str)]
        strings += [e["value"] for e in body.get("env") or []
                    if isinstance(e, Mapping) and isinstance(e.get("value"), str)]
        if isinstance(body.get("source"), str):
            strings.append(body["source"])
    return strings


def _substitutable(spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]], template: Mapping[str, Any],
                   parameter: Mapping[str, Any]) -> bool:
    """An input the controller only substitutes into container strings, each time as exactly its tag: one whose
    value may be a cell or a workflow argument's tag instead."""
    name = parameter["name"]
    if not _NAME.fullmatch(name) or "enum" in parameter or "valueFrom" in parameter:
        return False
    token = f"inputs.parameters.{name}"
    return uses_reason(spec, templates, token, template["name"]) is None and _exact_tags(template, token)


def _exact_tags(template: Mapping[str, Any], token: str) -> bool:
    """Every mention of `token` in the container strings is a tag holding exactly it: what the rewrite replaces is
    what Argo would have substituted, no more (`{{ x }}`, `{{{x}}}` or `{{\nx}}` are left inline)."""
    for text in _container_strings(template):
        if token not in text:
            continue
        tags = fast_tags(text)
        if tags is None or any(inside != token for _, _, inside in tags if mentions(inside, token)):
            return False
    return True


def _table(
    spec: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    index: int,
    template: Mapping[str, Any],
    calls: Sequence[_Call],
    run_elsewhere: bool,
    limits: _Limits,
    copies_left: int,
) -> TablePlan | str:
    if run_elsewhere:
        return "it also runs as the entrypoint, an exit handler, a hook or from an inline template"
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
        if BUNDLE_INPUT in passed:
            return f"{call.path}: passes {BUNDLE_INPUT} already"
        by_name = {p["name"]: p for p in parameters if isinstance(p.get("name"), str)}
        missing = [p["name"] for p in declared
                   if p["name"] not in by_name and "default" not in p and "value" not in p]
        if missing:
            return f"{call.path}: does not pass {missing[0]}, which has no default"
        arguments.append(by_name)
    script_size = len(orjson.dumps(template)) if "script" in template else 0
    carried: list[str] = []
    values: list[list[str]] = [[] for _ in calls]
    for parameter in declared:
        input_name = parameter["name"]
        if not _substitutable(spec, templates, template, parameter):
            continue
        cells = [_static(call.task, by_name.get(input_name), parameter)
                 for call, by_name in zip(calls, arguments, strict=True)]
        if any(c is None or len(c.encode()) > limits.max_cell for c in cells):
            continue
        in_source = f"inputs.parameters.{input_name}" in str((template.get("script") or {}).get("source", ""))
        if in_source and script_size + max(len(c or "") for c in cells) > limits.max_template:
            continue
        carried.append(input_name)
        for row, value in zip(values, cells, strict=True):
            row.append(value or "")
    routes = _routes(spec, templates, template, calls, arguments, carried, copies_left, limits.reads_failures)
    if not carried and not routes:
        return "no input is given a value known now by every call and used only in container strings"
    routed = _build(spec, index, template, calls, arguments, carried, values, routes, limits) if routes else None
    plain = _build(spec, index, template, calls, arguments, carried, values, {}, limits) if carried else None
    # copies of the template pay for themselves only over enough calls: the better of the two, or why neither does
    built = [plan for plan in (routed, plain) if isinstance(plan, TablePlan)]
    if built:
        return max(built, key=lambda plan: plan.saved)
    return next(plan for plan in (routed, plain) if isinstance(plan, str))


# The most templates Argo 4's full CRD schema accepts in one Workflow (argo/schema_limits.py).
MAX_TEMPLATES: Final = 200


def _routes(
    spec: Mapping[str, Any],
    templates: Mapping[str, Mapping[str, Any]],
    template: Mapping[str, Any],
    calls: Sequence[_Call],
    arguments: Sequence[Mapping[str, Mapping[str, Any]]],
    carried: list[str],
    copies_left: int,
    reads_failures: bool,
) -> dict[str, list[str]]:
    """Inputs every call passes as exactly `{{workflow.parameters.X}}` -> X for each call. Such an argument cannot go
    into a row (the Workflow's arguments can change after CREATE), but the tag can move into the template: calls
    that pass the same arguments share a copy of it whose strings hold `{{workflow.parameters.X}}` where they held
    the input, substituted by the controller from the Workflow's arguments as they are when the pod is made. Only
    where X's value passes Argo's substitutions unchanged (analysis.only_dollar_tags and go_quotes_as_json; not in a
    looped call when it holds tags), so that substituting it once, in the template, is what the two substitutions
    (into the call, then into the template) gave; and only in container templates, as long as the copies keep the
    Workflow within Argo 4's 200 templates (all tables' copies together).

    A copy is another template: its pods are named after it (workflow/util/pod_name.go `GeneratePodName`), so no
    copies where that could be read as a value: the template's own `{{pod.name}}`, `{{workflow.failures}}` anywhere
    (it lists each failed node's template and pod names), a looped call (a later `argo retry -p` value holding
    `{{item}}` would resolve differently), or a name that would pass Argo's 128 characters."""
    if "container" not in template or len(template["name"]) > 120:
        return {}
    if reads_failures or "pod.name" in orjson.dumps(template).decode():
        return {}
    if any(key in call.task for call in calls for key in _LOOPS):
        return {}
    literal = {p["name"]: p.get("value") for p in (spec.get("arguments") or {}).get("parameters") or []
               if isinstance(p, Mapping) and isinstance(p.get("name"), str) and "valueFrom" not in p}
    routes: dict[str, list[str]] = {}
    for parameter in (template.get("inputs") or {}).get("parameters") or []:
        input_name = parameter["name"]
        if input_name in carried or not _substitutable(spec, templates, template, parameter):
            continue
        targets = [_global_of(call.task, by_name.get(input_name), literal)
                   for call, by_name in zip(calls, arguments, strict=True)]
        if all(targets):
            routes[input_name] = [t for t in targets if t]
    groups = len({tuple(routes[n][i] for n in routes) for i in range(len(calls))}) if routes else 0
    if groups - 1 > copies_left:
        return {}
    return routes


def _global_of(call: Mapping[str, Any], entry: Mapping[str, Any] | None, literal: Mapping[str, Any]) -> str | None:
    if entry is None or "valueFrom" in entry or not isinstance(entry.get("value"), str):
        return None
    tags = fast_tags(entry["value"])
    if not tags or len(tags) != 1 or tags[0][:2] != (0, len(entry["value"])):
        return None
    inside = tags[0][2]
    name = inside.removeprefix("workflow.parameters.")
    value = literal.get(name)
    if name == inside or not _NAME.fullmatch(name) or not isinstance(value, str):
        return None
    return name if _passes_unchanged(call, value) else None


def _build(
    spec: Mapping[str, Any],
    index: int,
    template: Mapping[str, Any],
    calls: Sequence[_Call],
    arguments: Sequence[Mapping[str, Mapping[str, Any]]],
    carried: list[str],
    values: list[list[str]],
    routes: Mapping[str, list[str]],
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
    moved = set(carried) | set(routes)
    forms = [0 if not isinstance(call.task.get("arguments"), Mapping) else 1 if "parameters" not in call.task[
        "arguments"] else 2 for call in calls]  # no `arguments`, `arguments` alone, a `parameters` list
    for call, cells, form in zip(calls, values, forms, strict=True):
        parameters = (call.task.get("arguments") or {}).get("parameters") or []
        row: TableRow = {
            "cells": [intern(value) for value in cells],
            "removed": [[position, {k: v for k, v in p.items() if k != "value"}, intern(p["value"])]
                        for position, p in enumerate(parameters) if p.get("name") in moved],
            "form": form,
        }
        key = orjson.dumps(row)
        call_rows.append(row_of.setdefault(key, len(rows)))
        if call_rows[-1] == len(rows):
            rows.append(row)
    # the calls that pass the same workflow arguments share a copy; the first copy keeps the template's name
    groups: list[tuple[str, ...]] = []
    for i in range(len(calls)):
        group = tuple(routes[n][i] for n in routes)
        if group not in groups:
            groups.append(group)
    taken = {t.get("name") for t in spec.get("templates") or [] if isinstance(t, Mapping)}
    names = [template["name"]] + [f"{template['name']}-{k + 1}" for k in range(1, len(groups))]
    if any(n in taken for n in names[1:]):
        return f"a copy per set of workflow arguments would need a template name already taken ({names[1:]})"
    table: ArgumentTable = {"format": FORMAT, "template": template["name"], "inputs": carried, "strings": strings,
                            "rows": rows, "original": dict(template), "copies": names[1:]}
    data = orjson.dumps(table)
    reference = table_reference_for(data)
    copies = [_rewritten_template(template, set(carried), dict(zip(routes, group, strict=True)), name, limits.labels,
                                  reference.text) for name, group in zip(names, groups, strict=True)]
    ops: list[PatchOp] = [{"op": "replace", "path": f"/spec/templates/{index}", "value": copies[0]}]
    ops += [{"op": "add", "path": "/spec/templates/-", "value": copy} for copy in copies[1:]]
    saved = len(orjson.dumps(template)) - sum(len(orjson.dumps(copy)) + 1 for copy in copies) + 1
    for i, (call, row_number, form) in enumerate(zip(calls, call_rows, forms, strict=True)):
        parameters = (call.task.get("arguments") or {}).get("parameters") or []
        kept = [p for p in parameters if p.get("name") not in moved]
        kept.append({"name": BUNDLE_INPUT, "value": str(row_number)})
        saved += len(orjson.dumps(parameters)) - len(orjson.dumps(kept))
        if form == 0:
            ops.append({"op": "add", "path": f"{call.path}/arguments", "value": {"parameters": kept}})
        elif form == 1:
            ops.append({"op": "add", "path": f"{call.path}/arguments/parameters", "value": kept})
        else:
            ops.append({"op": "replace", "path": f"{call.path}/arguments/parameters", "value": kept})
        copy = names[groups.index(tuple(routes[n][i] for n in routes))]
        if copy != template["name"]:
            ops.append({"op": "replace", "path": f"{call.path}/template", "value": copy})
            saved -= len(copy) - len(template["name"])
    if saved < limits.min_saved:
        return f"a table would save {saved} bytes, under shrink.valueThresholdBytes"
    return TablePlan(template["name"], reference, data, ops, len(calls), carried + list(routes), saved)


def _rewritten_template(template: Mapping[str, Any], moved: set[str], routed: Mapping[str, str], name: str,
                        labels: Mapping[str, str], table: str) -> dict[str, Any]:
    """The template taking its row number (`wfboost-row`) in place of the carried inputs, each of which becomes the
    cell `<table>#{{inputs.parameters.wfboost-row}}[<input>]`, and the Workflow's own arguments where it took the
    routed ones; its pods labelled for restoring."""
    rewritten: dict[str, Any] = orjson.loads(orjson.dumps(template))
    rewritten["name"] = name
    inputs = rewritten.setdefault("inputs", {})
    inputs["parameters"] = [p for p in inputs.get("parameters") or [] if p["name"] not in moved | set(routed)]
    # the table named where a person (and `wfboost restore`) looks first, even when no cell of it is in the strings
    inputs["parameters"].append({"name": BUNDLE_INPUT, "description": f"this call's row of {table}"})
    replacements = {f"inputs.parameters.{n}": table + "#{{inputs.parameters." + BUNDLE_INPUT + "}}[" + n + "]"
                    for n in moved}
    replacements |= {f"inputs.parameters.{n}": "{{workflow.parameters." + x + "}}" for n, x in routed.items()}

    def cell(text: str) -> str:
        tags = fast_tags(text)
        if tags is None:
            return text
        parts, position = [], 0
        for start, end, inside in tags:
            if inside in replacements:
                parts += [text[position:start], replacements[inside]]
                position = end
        return "".join(parts) + text[position:]

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
