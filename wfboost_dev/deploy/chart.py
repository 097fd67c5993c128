"""deploy/chart/wfboost rendered and linted by real Helm code (helm-python-sdk: the Helm v4 SDK, offline), as
`helm template` and `helm lint` would; there is no helm binary in the package registries."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python

from .objects import Obj, load_stream

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart" / "wfboost"


def render_chart(values: Mapping[str, Any] | None = None, chart: Path = CHART) -> list[Obj]:
    """The objects of the chart for `values` (merged over values.yaml, as `helm template --values` does)."""
    loaded = helm_python.Chart.load(chart)
    try:
        rendered: Mapping[str, str] = loaded.render(dict(values or {}), name="wfboost", is_install=True)
    finally:
        loaded.close()
    objects: list[Obj] = []
    for path in sorted(rendered):
        if path.endswith((".yaml", ".yml")):
            objects.extend(load_stream(rendered[path]))
    return objects


def lint_chart(values: Mapping[str, Any] | None = None, chart: Path = CHART) -> list[str]:
    """`helm lint --strict` findings (warnings count), as `severity path: message` lines."""
    report = helm_python.lint(chart, dict(values or {}), strict=True)
    names = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}
    found = [f"{names.get(m['severity'], m['severity'])} {m['path']}: {m['error']}" for m in report["messages"]
             if m["severity"] >= 2]
    return found + [str(e) for e in report.get("errors") or []]


def values_file(chart: Path = CHART) -> Path:
    return chart / "values.yaml"


def user_provided_values(chart: Path = CHART) -> list[tuple[str, ...]]:
    """The value paths values.yaml documents as naming a user-provided Secret: those whose comment block (the
    comment lines right above the key) says "user-provided"."""
    paths: list[tuple[str, ...]] = []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in values_file(chart).read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        key = re.match(r"^(\s*)([A-Za-z][\w-]*):", line)
        if key is None:
            comment = []
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(2)))
        if any("user-provided" in c for c in comment):
            paths.append(tuple(name for _, name in stack))
        comment = []
    return paths


def values_at(values: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    """The Secret names a value path holds in `values` (a name, or a list of names); none when unset."""
    node: Any = values
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return []
        node = node[part]
    names = node if isinstance(node, list) else [node]
    return [str(name) for name in names if name]
