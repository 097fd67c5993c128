"""Splitting the DAGs of a Workflow (or of the spec inside a WorkflowTemplate, ClusterWorkflowTemplate or
CronWorkflow) that Argo 4's full CRDs would refuse: more than 200 tasks in a DAG.

A DAG over the limit is rewritten into nested groups (plan.py, rewrite.py) only when every step of the way keeps
the workflow's meaning; otherwise it is left as it is and the reason is reported, for an admission warning or the
CLI. Deterministic: the same spec gives the same result. Idempotent: a split DAG is within the limit.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from wfboost.split.depends import condition_of
from wfboost.split.graph import DagGraph, DagTask, NotSplittable, read_dag
from wfboost.split.plan import plan_groups
from wfboost.split.rewrite import rewrite_dag

__all__ = ["TASK_LIMIT", "TEMPLATE_LIMIT", "DagSplit", "SplitResult", "dags_over", "reads_workflow_failures", "spec_of",
           "split_spec"]

# workflow_types.go v4.1.2: `+kubebuilder:validation:MaxItems=200` on DAGTemplate.Tasks and WorkflowSpec.Templates.
TASK_LIMIT: Final = 200
TEMPLATE_LIMIT: Final = 200


@dataclass(frozen=True)
class DagSplit:
    """What happened to one DAG over the limit."""

    template: str
    tasks: int
    groups: tuple[int, ...] = ()  # tasks per group, in order
    entries: int = 0  # tasks of the DAG after the split
    critical_path: tuple[int, int] = (0, 0)  # longest chain of tasks, flat and split (a group counts its own)
    refused: str | None = None

    @property
    def parallelism_kept(self) -> float:
        """How much of the flat DAG's parallelism the split keeps: its longest chain over the split one's."""
        flat, split = self.critical_path
        return flat / split if split else 1.0

    def summary(self) -> str:
        if self.refused is not None:
            return f"{self.template}: {self.tasks} tasks, not split: {self.refused}"
        return (f"{self.template}: {self.tasks} tasks into {len(self.groups)} groups "
                f"({', '.join(map(str, self.groups))} tasks), {self.entries} entries, "
                f"parallelism kept {self.parallelism_kept:.0%}")

    def warning(self) -> str:
        """One line under 256 characters, for an admission warning."""
        return (f"wfboost did not split DAG template {self.template} ({self.tasks} tasks; Argo 4's CRDs allow "
                f"{TASK_LIMIT}): {self.refused}")[:256]


@dataclass
class SplitResult:
    spec: dict[str, Any] | None  # the new spec when something was split, else None
    dags: list[DagSplit] = field(default_factory=list)

    @property
    def refused(self) -> list[DagSplit]:
        return [dag for dag in self.dags if dag.refused is not None]


def spec_of(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, tuple[str, ...]]:
    """The Workflow spec inside an Argo object and where it is: spec, or spec.workflowSpec for a CronWorkflow."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return None, ()
    if obj.get("kind") == "CronWorkflow":
        inner = spec.get("workflowSpec")
        return (inner, ("spec", "workflowSpec")) if isinstance(inner, Mapping) else (None, ())
    return spec, ("spec",)


def dags_over(spec: Mapping[str, Any], limit: int) -> list[Mapping[str, Any]]:
    """The DAG templates of a spec with more tasks than `limit`: cheap, list lengths only."""
    templates = spec.get("templates")
    if not isinstance(templates, list):
        return []
    return [t for t in templates if isinstance(t, Mapping) and isinstance(t.get("dag"), Mapping)
            and isinstance(t["dag"].get("tasks"), list) and len(t["dag"]["tasks"]) > limit]


def reads_workflow_failures(text: str) -> bool:
    """`workflow.failures` lists every failed node, groups included: a spec (as text) that reads it would see the
    split."""
    return "workflow.failures" in text


def split_spec(spec: Mapping[str, Any], *, task_limit: int = TASK_LIMIT, template_limit: int = TEMPLATE_LIMIT,
               refused: str | None = None) -> SplitResult:
    """`refused`: a reason from outside the spec that no DAG of it may be split (reported for each DAG over the
    limit), such as controller defaults that would apply to the groups."""
    over = dags_over(spec, task_limit)
    if not over:
        return SplitResult(None)
    templates: list[Any] = spec["templates"]
    by_name = {t["name"]: t for t in templates if isinstance(t, Mapping) and isinstance(t.get("name"), str)}
    spec_reason = refused or _spec_reason(spec)
    result = SplitResult(None)
    new_templates: list[Any] = list(templates)
    taken = set(by_name)
    added = 0
    for template in over:
        name = str(template.get("name"))
        count = len(template["dag"]["tasks"])
        try:
            if spec_reason:
                raise NotSplittable(spec_reason)
            graph = read_dag(template, by_name)
            groups = plan_groups(graph, task_limit)
            entries = count - sum(len(g) for g in groups) + len(groups)
            if entries > task_limit:
                stays = [t for t in graph.tasks.values() if t.stays is not None]
                why = f"; e.g. {stays[0].name} stays: {stays[0].stays}" if stays else ""
                raise NotSplittable(f"only {count - entries} of its tasks can be grouped without changing what "
                                    f"the workflow does ({entries} would remain){why}")
            if len(templates) + added + len(groups) > template_limit:
                raise NotSplittable(f"{len(groups)} group templates would take the workflow over "
                                    f"{template_limit} templates")
            rewritten = rewrite_dag(template, graph, groups, taken)
            if _leaves(rewritten.dag["dag"]["tasks"], {g["name"]: g for g in rewritten.groups}) != \
                    _leaves(template["dag"]["tasks"], {}):
                raise NotSplittable("its groups cannot be named so that Argo meets its leaves in the same order "
                                    "(the order decides whether a failed workflow is Failed or Error)")
        except NotSplittable as error:
            result.dags.append(DagSplit(name, count, refused=str(error)))
            continue
        added += len(rewritten.groups)
        index = next(i for i, t in enumerate(new_templates) if t is template)
        new_templates[index] = rewritten.dag
        new_templates.extend(rewritten.groups)
        result.dags.append(DagSplit(
            name, count, tuple(len(g) for g in groups), len(rewritten.dag["dag"]["tasks"]),
            (_longest(graph, {}), _longest_split(rewritten.dag, rewritten.groups))))
    if added:
        new_spec = copy.copy(dict(spec))
        new_spec["templates"] = new_templates
        result.spec = new_spec
    return result


def _spec_reason(spec: Mapping[str, Any]) -> str | None:
    if spec.get("templateDefaults"):
        return "spec.templateDefaults would apply to the groups too"
    if reads_workflow_failures(repr(spec)):  # repr: a YAML spec from the CLI may hold what JSON cannot
        return "the workflow reads workflow.failures, which would list the groups' nodes"
    return None


def _leaves(tasks: Sequence[Mapping[str, Any]], groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The DAG's targets in the order assessDAGPhase meets them (sorted leaf names, dag.go `findLeafTaskNames`),
    a group's own targets in its place."""
    depended = {name for task in tasks for name in condition_of(task).names}
    template_of = {str(task["name"]): str(task.get("template")) for task in tasks}
    order: list[str] = []
    for name in sorted(name for name in template_of if name not in depended):
        group = groups.get(template_of[name])
        order.extend(_leaves(group["dag"]["tasks"], {}) if group is not None else [name])
    return order


def _longest(graph: DagGraph, weight: Mapping[str, int]) -> int:
    depth: dict[str, int] = {}
    for name in graph.tasks:  # a DAG lists tasks in any order: resolve on demand
        _depth(name, graph, weight, depth)
    return max(depth.values(), default=0)


def _depth(name: str, graph: DagGraph, weight: Mapping[str, int], depth: dict[str, int]) -> int:
    stack = [name]
    while stack:
        current = stack[-1]
        if current in depth:
            stack.pop()
            continue
        pending = [d for d in graph.tasks[current].condition.names if d not in depth]
        if pending:
            stack.extend(pending)
            continue
        depth[current] = weight.get(current, 1) + max((depth[d] for d in graph.tasks[current].condition.names),
                                                      default=0)
        stack.pop()
    return depth[name]


def _longest_split(dag: Mapping[str, Any], groups: Sequence[Mapping[str, Any]]) -> int:
    by_template = {g["name"]: g for g in groups}
    weight = {}
    for task in dag["dag"]["tasks"]:
        group = by_template.get(task.get("template"))
        if group is not None:
            weight[task["name"]] = _plain_longest(group["dag"]["tasks"])
    return _plain_longest(dag["dag"]["tasks"], weight)


def _plain_longest(tasks: Sequence[Mapping[str, Any]], weight: Mapping[str, int] | None = None) -> int:
    graph = DagGraph({t["name"]: DagTask(i, t["name"], t, condition_of(t)) for i, t in enumerate(tasks)}, {})
    return _longest(graph, weight or {})
