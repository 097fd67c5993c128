"""A DAG template read the way a split needs it: each task's condition, the values it reads from other tasks, and
why a task must stay where it is.

A task may move into a nested group only when moving it cannot change what Argo does with it (docs/split.md):
- its own fields are the plain ones (`name`, `template`, `arguments.parameters`, `depends`/`dependencies`):
  no `when` (it could be Skipped), no loop (an empty one is Skipped, and it becomes a TaskGroup), no `continueOn`
  (it reaches only dependants in the same DAG), no hooks or `onExit` (their nodes and timing change), no
  `templateRef`/`inline` (whether the template is a daemon is not known here), and its template is no daemon
  (daemons die with their group);
- its condition is a conjunction of terms, and every task that depends on it does so with a conjunction that
  only asks for its success (`X` or `X.Succeeded`): then "the group succeeded" says exactly what they asked;
- every value it reads is an output parameter or result of another task, a parameter of the DAG's inputs or a
  workflow variable (carried across a group boundary as group inputs and outputs), and nothing reads its node
  ID or its status, exit code, IP or times from elsewhere (a nested DAG node has none of them, and its ID follows
  its new name).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from wfboost.split.depends import Condition, DependsSyntaxError, condition_of

__all__ = ["TAG", "DagGraph", "DagTask", "NotSplittable", "ValueRef", "read_dag"]

TAG: Final = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TASK_VALUE = re.compile(r"tasks\.([a-zA-Z0-9][-a-zA-Z0-9]*)\.(outputs\.parameters\.[^.\s]+|outputs\.result)")
_TASK_ANY = re.compile(r"tasks\.([a-zA-Z0-9][-a-zA-Z0-9]*)\.(.+)")
_INPUT = re.compile(r"inputs\.parameters\.([^.\s]+)")

_TASK_KEYS: Final = frozenset({"name", "template", "arguments", "depends", "dependencies"})
_PARAMETER_KEYS: Final = frozenset({"name", "value", "default", "description"})


class NotSplittable(Exception):
    """The DAG as a whole cannot be split without changing what it means; the message says why."""


@dataclass(frozen=True, order=True)
class ValueRef:
    """A value one task reads from another: `tasks.<task>.<key>`."""

    task: str
    key: str  # outputs.parameters.<name> or outputs.result

    def tag(self) -> str:
        return f"tasks.{self.task}.{self.key}"


@dataclass
class DagTask:
    index: int
    name: str
    raw: Mapping[str, Any]
    condition: Condition
    reads: set[ValueRef] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)  # the DAG's input parameters it reads
    stays: str | None = None  # why it must stay in the DAG it is in


@dataclass
class DagGraph:
    tasks: dict[str, DagTask]  # in the DAG's order
    dependants: dict[str, list[str]]

    def terms(self, name: str) -> tuple[Any, ...]:
        conjunction = self.tasks[name].condition.conjunction
        return conjunction if conjunction is not None else ()


def read_dag(template: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]]) -> DagGraph:
    """Raises NotSplittable when the DAG as a whole must stay as it is."""
    _check_template(template)
    dag = template["dag"]
    declared = {p.get("name") for p in (template.get("inputs") or {}).get("parameters") or []
                if isinstance(p, Mapping)}
    tasks: dict[str, DagTask] = {}
    for index, raw in enumerate(dag["tasks"]):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("name"), str):
            raise NotSplittable(f"task {index} has no name")
        name = raw["name"]
        if name in tasks:
            raise NotSplittable(f"two tasks are named {name}")
        try:
            condition = condition_of(raw)
        except DependsSyntaxError as error:
            raise NotSplittable(f"task {name}: {error}") from None
        tasks[name] = DagTask(index, name, raw, condition)
    dependants: dict[str, list[str]] = {name: [] for name in tasks}
    for task in tasks.values():
        for dep in sorted(task.condition.names):
            if dep not in tasks:
                raise NotSplittable(f"task {task.name} depends on {dep}, which is not in the DAG")
            dependants[dep].append(task.name)
    cycle = _in_a_cycle(tasks, dependants)
    if cycle is not None:  # every walk below assumes an order exists
        raise NotSplittable(f"its dependencies form a cycle through {cycle} (Argo refuses such a DAG)")
    graph = DagGraph(tasks, dependants)
    for task in tasks.values():
        _read_task(graph, task, templates, declared)
    for _, text in _strings(template.get("outputs")):
        for tag in TAG.findall(text):
            match = _TASK_ANY.match(tag)
            if match and match.group(1) in tasks:
                _stay(tasks[match.group(1)], "the DAG's outputs read it")
    for task in tasks.values():
        for dependant in dependants[task.name]:
            conjunction = tasks[dependant].condition.conjunction
            if conjunction is None:
                _stay(task, f"{dependant}'s depends is not a conjunction")
            elif any(t.task == task.name and not t.positive for t in conjunction):
                _stay(task, f"{dependant} asks for more than its success")
    return graph


def _in_a_cycle(tasks: Mapping[str, DagTask], dependants: Mapping[str, list[str]]) -> str | None:
    """A task on a dependency cycle (the first left when Kahn's order stops), or None when the DAG has an order."""
    waiting = {name: len(task.condition.names) for name, task in tasks.items()}
    ready = [name for name, count in waiting.items() if count == 0]
    while ready:
        for dependant in dependants[ready.pop()]:
            waiting[dependant] -= 1
            if waiting[dependant] == 0:
                ready.append(dependant)
    return next((name for name, task in tasks.items() if waiting[name] > 0), None)


def _check_template(template: Mapping[str, Any]) -> None:
    extra = sorted(set(template) - {"name", "inputs", "outputs", "dag", "metadata"})
    if extra:
        raise NotSplittable(f"the DAG template has {', '.join(extra)}")
    dag = template.get("dag")
    if not isinstance(dag, Mapping) or not isinstance(dag.get("tasks"), list):
        raise NotSplittable("the template has no DAG tasks")
    extra = sorted(set(dag) - {"tasks", "failFast"})
    if extra:
        raise NotSplittable(f"the DAG has {', '.join(extra)}")
    if dag.get("failFast") not in (None, True):
        raise NotSplittable("the DAG sets failFast: false")
    for parameter in (template.get("inputs") or {}).get("parameters") or []:
        if not isinstance(parameter, Mapping) or not isinstance(parameter.get("name"), str):
            raise NotSplittable("an input parameter of the DAG has no name")
    if (template.get("inputs") or {}).get("artifacts"):
        raise NotSplittable("the DAG takes input artifacts")


def _read_task(graph: DagGraph, task: DagTask, templates: Mapping[str, Mapping[str, Any]],
               declared: set[Any]) -> None:
    raw = task.raw
    extra = sorted(set(raw) - _TASK_KEYS)
    if extra:
        _stay(task, f"it has {extra[0]}")
    template_name = raw.get("template")
    if not isinstance(template_name, str):
        _stay(task, "its template is not named in the workflow")
    elif template_name not in templates:
        _stay(task, f"template {template_name} is not in the workflow")
    elif templates[template_name].get("daemon"):
        _stay(task, "its template is a daemon")
    arguments = raw.get("arguments") or {}
    if not isinstance(arguments, Mapping) or set(arguments) - {"parameters"}:
        _stay(task, "it passes artifacts")
    else:
        for parameter in arguments.get("parameters") or []:
            if not isinstance(parameter, Mapping) or set(parameter) - _PARAMETER_KEYS or "value" not in parameter:
                _stay(task, "an argument is not a plain value")
    if task.condition.conjunction is None:
        _stay(task, "its depends is not a conjunction")
    for _, text in _strings(raw):
        if "{{=" in text.replace("{{ =", "{{="):
            if "tasks" in text:
                raise NotSplittable(f"task {task.name} reads other tasks in an expression")
            _stay(task, "it holds an expression")
        for tag in TAG.findall(text):
            _read_tag(graph, task, tag, declared)


def _read_tag(graph: DagGraph, task: DagTask, tag: str, declared: set[Any]) -> None:
    if tag.startswith("workflow."):
        if tag.startswith("workflow.failures"):
            raise NotSplittable("the workflow reads workflow.failures, which would list group nodes")
        return
    match = _INPUT.fullmatch(tag)
    if match:
        if match.group(1) in declared:
            task.inputs.add(match.group(1))
        else:
            _stay(task, f"it reads {tag}, which the DAG does not declare")
        return
    match = _TASK_VALUE.fullmatch(tag)
    if match and match.group(1) in graph.tasks:
        task.reads.add(ValueRef(match.group(1), match.group(2)))
        return
    match = _TASK_ANY.fullmatch(tag)
    if match and match.group(1) in graph.tasks:
        _stay(graph.tasks[match.group(1)], f"{task.name} reads its {match.group(2)}")
    _stay(task, f"it reads {{{{{tag}}}}}")


def _stay(task: DagTask, why: str) -> None:
    if task.stays is None:
        task.stays = why


def _strings(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, (*path, index))
