"""Writing a planned split: the groups as DAG templates, the DAG that calls them, values carried across.

Each group becomes a DAG template `<dag>-part-<n>-<digest>` called by a task `part-<n>` of the original DAG, in the
place of its tasks. The digest (of the group template's content) gives a different plan different template names:
a Workflow that already stored some of a WorkflowTemplate's groups (Argo stores a `templateRef`'s templates one by
one, as it reaches them) cannot pick up a same-named group of a later plan that holds other tasks; it finds no such
template and fails loudly instead. The calling task waits for the group's way in: its members' terms on tasks
outside the group, a term on a task of another group becoming `<that group>.Succeeded` (plan.py says why that is
the same condition). Inside, each task keeps its terms on the group's own tasks.

Values cross a boundary only through a group's parameters, as Argo resolves them (operator.go
`getTemplateOutputsFromScope`, dag.go `resolveDependencyReferences`): a value a member reads from outside
(`{{tasks.X.outputs.parameters.P}}`, `{{tasks.X.outputs.result}}`, `{{inputs.parameters.Q}}` of the DAG) becomes an
input of the group, passed by the calling task; a value read from outside a group becomes one of its outputs,
`valueFrom.parameter: "{{tasks.X.outputs.parameters.P}}"`, read as `{{tasks.part-<n>.outputs.parameters.X--P}}`.
A group's outputs exist only when it succeeds, and every reader of them waits for that success (plan.py).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from wfboost.split.depends import Term, render_depends
from wfboost.split.graph import TAG, DagGraph, NotSplittable, ValueRef

__all__ = ["Rewritten", "rewrite_dag"]

# validate.go `workflowFieldMaxLength` (v4.1.2): template and task names.
MAX_NAME: Final = 128
_GROUP_NAME = re.compile(r"(?:wfboost-)?part-\d+")
_TASK_OUTPUT = re.compile(r"tasks\.([a-zA-Z0-9][-a-zA-Z0-9]*)\.(outputs\..+)")


@dataclass
class Rewritten:
    dag: dict[str, Any]  # the DAG template, its tasks replaced
    groups: list[dict[str, Any]]  # the new templates, in order
    group_tasks: list[str]  # the calling tasks' names, in order


@dataclass
class _Group:
    task: str
    template: str
    members: list[str]
    inputs: dict[str, str]  # source tag -> parameter name
    outputs: dict[ValueRef, str]  # member value read from outside -> output name


def rewrite_dag(template: Mapping[str, Any], graph: DagGraph, groups: Sequence[Sequence[str]],
                taken_templates: set[str]) -> Rewritten:
    prefix = "part" if not any(_GROUP_NAME.fullmatch(name) for name in graph.tasks) else "wfboost-part"
    if any(name.startswith(f"{prefix}-") and name[len(prefix) + 1:].isdigit() for name in graph.tasks):
        raise NotSplittable("task names already look like group names")
    width = len(str(len(groups)))
    owner: dict[str, _Group] = {}
    planned: list[_Group] = []
    taken_tasks = set(graph.tasks)
    consumed = {dep for task in graph.tasks.values() for dep in task.condition.names}
    number = 0
    for members in groups:
        leaves = sorted(m for m in members if m not in consumed)
        if leaves:  # it ends the DAG: named to sort where its first leaf does (workflow.py checks the order)
            task_name = _free(f"{leaves[0]}-part", taken_tasks)
        else:
            number += 1
            task_name = f"{prefix}-{number:0{width}d}"
        if len(task_name) > MAX_NAME:
            raise NotSplittable(f"a group named after its first leaf would be over Argo's {MAX_NAME} characters")
        taken_tasks.add(task_name)
        group = _Group(task_name, "", list(members), {}, {})  # its template is named after its content, below
        planned.append(group)
        for member in members:
            owner[member] = group
    for task in graph.tasks.values():  # every value read across a boundary is an output of its group
        reader = owner.get(task.name)
        for ref in sorted(task.reads):
            source = owner.get(ref.task)
            if source is not None and source is not reader and ref not in source.outputs:
                source.outputs[ref] = _unique(_value_name(ref), source.outputs.values())
    for group in planned:
        for member in group.members:
            task = graph.tasks[member]
            for ref in sorted(task.reads):
                if owner.get(ref.task) is not group:
                    group.inputs.setdefault(ref.tag(), _unique(_value_name(ref), group.inputs.values()))
            for name in sorted(task.inputs):
                group.inputs.setdefault(f"inputs.parameters.{name}", _unique(name, group.inputs.values()))

    def outside(tag: str, reader: _Group | None) -> str | None:
        """The tag a reader outside `tag`'s group uses for it, or None when it stays as it is."""
        if reader is not None:
            return f"inputs.parameters.{reader.inputs[tag]}" if tag in reader.inputs else None
        return _group_output(tag, owner)

    fail_fast = template["dag"].get("failFast")
    templates = []
    for group in planned:
        inner = [_rewritten_task(graph.tasks[m].raw, graph, owner, group, outside) for m in group.members]
        body: dict[str, Any] = {}
        if group.inputs:
            body["inputs"] = {"parameters": [{"name": name} for name in group.inputs.values()]}
        if group.outputs:
            body["outputs"] = {"parameters": [{"name": name, "valueFrom": {"parameter": "{{" + ref.tag() + "}}"}}
                                              for ref, name in group.outputs.items()]}
        body["dag"] = {"tasks": inner, **({"failFast": fail_fast} if fail_fast is not None else {})}
        group.template = _template_name(str(template["name"]), group.task, body, taken_templates)
        taken_templates.add(group.template)
        templates.append({"name": group.template, **body})

    new_tasks: list[dict[str, Any]] = []
    emitted: set[str] = set()
    for task in graph.tasks.values():
        holder = owner.get(task.name)
        if holder is None:
            new_tasks.append(_rewritten_task(task.raw, graph, owner, None, outside))
        elif holder.task not in emitted:
            emitted.add(holder.task)
            new_tasks.append(_calling_task(holder, graph, owner))
    dag = copy.deepcopy(dict(template))
    dag["dag"]["tasks"] = new_tasks
    return Rewritten(dag, templates, [g.task for g in planned])


def _template_name(dag: str, task: str, body: Mapping[str, Any], taken: set[str]) -> str:
    """`<dag>-<task>-<8 hex of the content>`, within Argo's length limit (the DAG's name shortened if need be)."""
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]
    tail = f"-{task}-{digest}"
    name = _free(dag[:max(1, MAX_NAME - len(tail) - 3)] + tail, taken)  # room for _free's "-<n>"
    if len(name) > MAX_NAME:
        raise NotSplittable(f"a group template's name would be over Argo's {MAX_NAME} characters")
    return name


def _calling_task(group: _Group, graph: DagGraph, owner: Mapping[str, _Group]) -> dict[str, Any]:
    members = set(group.members)
    terms: list[Term] = []
    for member in group.members:
        for term in graph.terms(member):
            if term.task in members:
                continue
            mapped = Term(owner[term.task].task, "Succeeded") if term.task in owner else term
            if mapped not in terms:
                terms.append(mapped)
    task: dict[str, Any] = {"name": group.task, "template": group.template}
    if terms:
        task["depends"] = render_depends(terms)
    if group.inputs:
        parameters = []
        for tag, name in group.inputs.items():
            parameters.append({"name": name, "value": "{{" + (_group_output(tag, owner) or tag) + "}}"})
        task["arguments"] = {"parameters": parameters}
    return task


def _group_output(tag: str, owner: Mapping[str, _Group]) -> str | None:
    """`tasks.X.outputs...` of a grouped task X as read from outside its group: its group's output; else None."""
    match = _TASK_OUTPUT.fullmatch(tag)
    if match is None or match.group(1) not in owner:
        return None
    source = owner[match.group(1)]
    return f"tasks.{source.task}.outputs.parameters.{source.outputs[ValueRef(match.group(1), match.group(2))]}"


def _rewritten_task(raw: Mapping[str, Any], graph: DagGraph, owner: Mapping[str, _Group], group: _Group | None,
                    outside: Any) -> dict[str, Any]:
    task: dict[str, Any] = _substituted(copy.deepcopy(dict(raw)), group, outside)
    condition = graph.tasks[raw["name"]].condition
    members = set(group.members) if group is not None else set()
    crossing = condition.names - members if group is not None else condition.names & set(owner)
    if not crossing:
        return task
    terms: list[Term] = []
    for term in condition.conjunction or ():
        if group is not None:
            if term.task in members:
                terms.append(term)
            continue
        mapped = Term(owner[term.task].task, "" if condition.legacy else "Succeeded") if term.task in owner else term
        if mapped not in terms:
            terms.append(mapped)
    task.pop("depends", None)
    task.pop("dependencies", None)
    if terms:  # already without repeats
        if condition.legacy:
            task["dependencies"] = [term.task for term in terms]
        else:
            task["depends"] = render_depends(terms)
    return task


def _substituted(node: Any, group: _Group | None, outside: Any) -> Any:
    if isinstance(node, str):
        def replace(match: re.Match[str]) -> str:
            new = outside(match.group(1), group)
            return match.group(0) if new is None else "{{" + new + "}}"
        return TAG.sub(replace, node)
    if isinstance(node, dict):
        return {key: _substituted(value, group, outside) for key, value in node.items()}
    if isinstance(node, list):
        return [_substituted(value, group, outside) for value in node]
    return node


def _value_name(ref: ValueRef) -> str:
    key = ref.key.removeprefix("outputs.parameters.") if ref.key != "outputs.result" else "result"
    return f"{ref.task}--{key}"


def _unique(name: str, taken: Any) -> str:
    used = set(taken)
    candidate, number = name, 2
    while candidate in used:
        candidate, number = f"{name}-{number}", number + 1
    return candidate


def _free(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    return candidate
