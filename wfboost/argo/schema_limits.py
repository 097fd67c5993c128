"""Argo 4's schema limits on a Workflow spec: what its full CRDs refuse, found before the API server refuses it.

Since v4.0 Argo's release manifests install full CRDs whose schema caps list lengths to bound the cost of their CEL
rules (`+kubebuilder:validation:MaxItems` in pkg/apis/workflow/v1alpha1/workflow_types.go at v4.1.2, "an artificial
limit to limit CEL validation costs"): `WorkflowSpec.Templates` 200, `DAGTemplate.Tasks` 200, `Inputs.Parameters` 500,
`Metrics.Prometheus` 100. The API server checks them after mutating admission, so a mutating webhook sees the object
first and can say what will be refused, and what to do, in a warning. v3.x installs minimal CRDs without these limits.

Pure and cheap: list lengths only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["LIMITS", "SchemaLimitExceeded", "schema_limits_exceeded"]

# (what, limit, advice), keyed by the list they bound.
LIMITS: Final = {
    "templates": (200, "move templates into WorkflowTemplates and reference them with templateRef"),
    "dag.tasks": (200, "split the DAG into nested DAG templates of at most 200 tasks each"),
    "inputs.parameters": (500, "pass related values as one JSON parameter"),
    "metrics.prometheus": (100, "emit fewer metrics per template"),
}


@dataclass(frozen=True)
class SchemaLimitExceeded:
    path: str  # e.g. spec.templates[3].dag.tasks
    count: int
    limit: int
    advice: str

    def warning(self) -> str:
        """One line, under the 256 characters past which the API server may truncate a warning."""
        return (
            f"Argo 4's Workflow schema allows at most {self.limit} items in {self.path}, this has {self.count}: "
            f"the API server refuses it where Argo 4's CRDs are installed; {self.advice}"
        )[:256]


def schema_limits_exceeded(spec: Any, where: str = "spec") -> list[SchemaLimitExceeded]:
    """Every list in a Workflow spec longer than Argo 4's schema allows."""
    if not isinstance(spec, Mapping):
        return []
    return list(_exceeded(spec, where))


def _exceeded(spec: Mapping[str, Any], where: str) -> Iterator[SchemaLimitExceeded]:
    templates = spec.get("templates")
    yield from _check(templates, f"{where}.templates", "templates")
    yield from _check(_at(spec, "metrics", "prometheus"), f"{where}.metrics.prometheus", "metrics.prometheus")
    if not isinstance(templates, list):
        return
    for index, template in enumerate(templates):
        if not isinstance(template, Mapping):
            continue
        at = f"{where}.templates[{index}]"
        for field in ("dag.tasks", "inputs.parameters", "metrics.prometheus"):
            yield from _check(_at(template, *field.split(".")), f"{at}.{field}", field)


def _check(items: Any, path: str, what: str) -> Iterator[SchemaLimitExceeded]:
    limit, advice = LIMITS[what]
    if isinstance(items, list) and len(items) > limit:
        yield SchemaLimitExceeded(path, len(items), limit, advice)


def _at(holder: Mapping[str, Any], *path: str) -> Any:
    value: Any = holder
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value
