"""The CEL rules and list limits of Argo v4.1.2's full Workflow CRD on what a DAG split writes.

Taken from `manifests/base/crds/full/argoproj.io_workflows.yaml` at v4.1.2 (generated from the kubebuilder markers
in pkg/apis/workflow/v1alpha1/workflow_types.go): the `x-kubernetes-validations` and `maxItems` on
`spec.templates` and `spec.templates[].dag.tasks`, the two lists a split writes to. The rules are evaluated here
with a CEL interpreter (cel-python), as the API server evaluates them after mutating admission.
`tests/test_split.py::test_the_rules_are_argos` compares them with the CRD when a copy of Argo's repository is at
hand. WorkflowTemplate and ClusterWorkflowTemplate CRDs carry the same rules on their `spec`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import celpy

# (where, maxItems) and (where, rule, message); where is a path with [] for every item of a list.
MAX_ITEMS: Final = {
    "spec.templates": 200,
    "spec.templates[].dag.tasks": 200,
    "spec.templates[].inputs.parameters": 500,
}
RULES: Final = [
    ("spec.templates",
     "self.all(t, (has(t.container) ? 1 : 0) + (has(t.script) ? 1 : 0) + (has(t.dag) ? 1 : 0) + (has(t.steps) ? 1 : 0)"
     " + (has(t.resource) ? 1 : 0) + (has(t.suspend) ? 1 : 0) + (has(t.containerSet) ? 1 : 0) + (has(t.data) ? 1 : 0)"
     " + (has(t.http) ? 1 : 0) + (has(t.plugin) ? 1 : 0) <= 1)",
     "template must have at most one template type"),
    ("spec.templates",
     'self.all(t, !(has(t.timeout) && t.timeout != "" && (has(t.steps) || has(t.dag))))',
     "timeout cannot be applied to steps or dag templates"),
    ("spec.templates",
     "self.all(t, !(has(t.activeDeadlineSeconds) && (has(t.steps) || has(t.dag))))",
     "activeDeadlineSeconds is only valid for leaf templates"),
    ("spec.templates[].dag.tasks[]", "!has(self.depends) || !has(self.dependencies)",
     "cannot use both 'depends' and 'dependencies'"),
    ("spec.templates[].dag.tasks[]", "!has(self.depends) || !has(self.continueOn)",
     "cannot use 'continueOn' when using 'depends'"),
    ("spec.templates[].dag.tasks[]", "!(has(self.depends) || has(self.dependencies)) || !self.name.matches('^[0-9]')",
     "task name cannot begin with a digit when using 'depends' or 'dependencies'"),
]

_ENVIRONMENT = celpy.Environment()
_PROGRAMS = {rule: _ENVIRONMENT.program(_ENVIRONMENT.compile(rule)) for _, rule, _ in RULES}


def crd_violations(obj: Mapping[str, Any], spec_path: str = "spec") -> list[str]:
    """What the API server would refuse in `obj` under these rules: `<path>: <message>` per failure."""
    problems: list[str] = []
    for where, limit in MAX_ITEMS.items():
        for path, value in _at(obj, where, spec_path):
            if isinstance(value, list) and len(value) > limit:
                problems.append(f"{path}: {len(value)} items, at most {limit}")
    for where, rule, message in RULES:
        for path, value in _at(obj, where, spec_path):
            if not bool(_PROGRAMS[rule].evaluate({"self": celpy.json_to_cel(value)})):
                problems.append(f"{path}: {message}")
    return problems


def _at(obj: Mapping[str, Any], where: str, spec_path: str) -> Iterator[tuple[str, Any]]:
    parts = where.split(".")
    root: Any = obj
    for key in spec_path.split("."):
        root = root.get(key) if isinstance(root, Mapping) else None
    yield from _walk(root, parts[1:], spec_path)


def _walk(node: Any, parts: list[str], path: str) -> Iterator[tuple[str, Any]]:
    if node is None:
        return
    if not parts:
        yield path, node
        return
    key, rest = parts[0], parts[1:]
    each = key.endswith("[]")
    key = key.removesuffix("[]")
    value = node.get(key) if isinstance(node, Mapping) else None
    if value is None:
        return
    if each:
        if not isinstance(value, list):
            return
        for index, item in enumerate(value):
            yield from _walk(item, rest, f"{path}.{key}[{index}]")
    else:
        yield from _walk(value, rest, f"{path}.{key}")
