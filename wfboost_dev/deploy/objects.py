"""Rendered objects: one type, a stable identity, and the YAML streams they come from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import yaml

Obj = dict[str, Any]

# Kinds that live outside any namespace (the ones an install of wfboost has).
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "PriorityClass", "CustomResourceDefinition",
})


def identity(obj: Obj) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): what the API server keys an object by."""
    metadata = obj.get("metadata") or {}
    return (str(obj.get("apiVersion")), str(obj.get("kind")), str(metadata.get("namespace") or ""),
            str(metadata.get("name")))


def label(obj: Obj) -> str:
    _, kind, namespace, name = identity(obj)
    return f"{kind}/{namespace + '/' if namespace else ''}{name}"


def load_stream(text: str) -> Iterator[Obj]:
    for doc in yaml.safe_load_all(text):
        if doc:
            if not isinstance(doc, dict):
                raise ValueError(f"not a Kubernetes object: {doc!r:.80}")
            yield doc


def by_identity(objects: Iterable[Obj]) -> dict[tuple[str, str, str, str], Obj]:
    found: dict[tuple[str, str, str, str], Obj] = {}
    for obj in objects:
        key = identity(obj)
        if key in found:
            raise ValueError(f"{label(obj)} is rendered twice")
        found[key] = obj
    return found


def pod_specs(objects: Iterable[Obj]) -> Iterator[tuple[str, Obj]]:
    """Every pod template's spec (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs) with its object's label."""
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        template = spec.get("template")
        if obj.get("kind") == "Pod":
            yield label(obj), spec
        elif isinstance(template, dict) and isinstance(template.get("spec"), dict):
            yield label(obj), template["spec"]


def containers(pod: Obj) -> Iterator[Obj]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from pod.get(field) or []


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) matches `labels`."""
    if not (selector.get("matchLabels") or {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if (operator == "In" and not (present and labels[key] in values)) or (
            operator == "NotIn" and present and labels[key] in values
        ) or (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
    return True
