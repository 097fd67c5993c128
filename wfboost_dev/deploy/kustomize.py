"""deploy/base rendered as `kubectl kustomize` would, for the fields the base uses.

No kustomize binary is installable here, so this does what kustomize's namespace transformer does for our objects:
`metadata.namespace` on every namespaced object, the Namespace object renamed, ServiceAccount subjects of
(Cluster)RoleBindings, and the extra field specs the base lists under `configurations:` (kustomize's own format).
Any other kustomization field makes it refuse: a base that grows a feature this does not model must fail here, not
render differently from what users get.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .objects import CLUSTER_SCOPED, Obj, load_stream

_KNOWN = frozenset({"apiVersion", "kind", "namespace", "resources", "configurations"})


def _field_specs(base: Path, configurations: list[str]) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for name in configurations:
        document = yaml.safe_load((base / name).read_text()) or {}
        unknown = set(document) - {"namespace"}
        if unknown:
            raise ValueError(f"{name}: only namespace field specs are modelled, not {sorted(unknown)}")
        specs.extend(document["namespace"])
    return specs


def _set_path(node: Any, parts: list[str], value: str, create: bool) -> None:
    """Set `value` at `parts` below `node`, through lists (as kustomize's field specs do)."""
    if isinstance(node, list):
        for item in node:
            _set_path(item, parts, value, create)
        return
    if not isinstance(node, dict):
        return
    head, rest = parts[0], parts[1:]
    if not rest:
        if head in node or create:
            node[head] = value
        return
    if head in node:
        _set_path(node[head], rest, value, create)


def apply_namespace(objects: list[Obj], namespace: str, specs: Sequence[Mapping[str, Any]] = ()) -> list[Obj]:
    """kustomize's `namespace:` on rendered objects (in place; returned for chaining)."""
    old = {str((o.get("metadata") or {}).get("namespace")) for o in objects if o.get("kind") not in CLUSTER_SCOPED}
    for obj in objects:
        kind = obj.get("kind")
        metadata = obj.setdefault("metadata", {})
        if kind == "Namespace":
            metadata["name"] = namespace
        elif kind not in CLUSTER_SCOPED:
            metadata["namespace"] = namespace
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in old:
                    subject["namespace"] = namespace
        for spec in specs:
            if spec.get("kind") in (None, kind):
                _set_path(obj, str(spec["path"]).split("/"), namespace, bool(spec.get("create")))
    return objects


def render_base(base: Path, namespace: str | None = None) -> list[Obj]:
    """The objects `kubectl apply -k base` sends; `namespace` stands for an overlay that sets `namespace:`."""
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _KNOWN
    if unknown:
        raise ValueError(f"{base}/kustomization.yaml: fields not modelled here: {sorted(unknown)}")
    objects: list[Obj] = []
    for resource in kustomization.get("resources") or []:
        objects.extend(load_stream((base / resource).read_text()))
    specs = _field_specs(base, kustomization.get("configurations") or [])
    if kustomization.get("namespace"):
        apply_namespace(objects, kustomization["namespace"], specs)
    if namespace is not None:
        apply_namespace(objects, namespace, specs)
    return objects
