"""A small strategic-merge-patch, enough for the three places the controller uses one on a pod or template.

The controller calls `strategicpatch.StrategicMergePatch` for `podSpecPatch` (`util.ApplyPodSpecPatch`,
v3.7.18 workflow/util/util.go:1565-1595), for the `mainContainer` defaults of the controller config
(workflowpod.go `createWorkflowPod`) and for `spec.templateDefaults` (`mergedTemplateDefaultsInto`).
Re-implementing all of apimachinery's strategic merge is out of scope; what matters for those three uses:

* maps merge recursively, a `null` in the patch deletes the key;
* lists with a patch merge key (containers and volumes by `name`, env by `name`, volumeMounts by
  `mountPath` ...) merge element-wise: matching elements merge, new ones are appended in patch order;
* `$patch: delete` on a keyed element removes it; `$patch: replace` on a map replaces it;
* every other list is replaced whole.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["strategic_merge"]

_CONTAINER_KEYS: dict[str, tuple[str, str | None]] = {
    "env": ("name", None),
    "volumeMounts": ("mountPath", None),
    "ports": ("containerPort", None),
    "volumeDevices": ("devicePath", None),
}
# type -> {list field: (merge key, element type)}; map-valued fields -> (field type) in _MAP_CHILDREN.
_LIST_KEYS: dict[str, dict[str, tuple[str, str | None]]] = {
    "PodSpec": {
        "containers": ("name", "Container"),
        "initContainers": ("name", "Container"),
        "ephemeralContainers": ("name", "Container"),
        "volumes": ("name", None),
        "imagePullSecrets": ("name", None),
        "hostAliases": ("ip", None),
        "resourceClaims": ("name", None),
        "topologySpreadConstraints": ("topologyKey", None),
    },
    "Container": _CONTAINER_KEYS,
    "Template": {
        "volumes": ("name", None),
        "initContainers": ("name", "Container"),
        "sidecars": ("name", "Container"),
        "tolerations": ("key", None),
        "hostAliases": ("ip", None),
    },
}
_MAP_CHILDREN: dict[str, dict[str, str]] = {
    "Template": {"container": "Container", "script": "Container"},
}


def strategic_merge(original: Any, patch: Any, type_name: str = "") -> Any:
    """Merge `patch` into a copy of `original` following the patch-merge keys of `type_name`."""
    if not isinstance(patch, Mapping) or not isinstance(original, Mapping):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out: dict[str, Any] = copy.deepcopy(dict(original))
    list_keys = _LIST_KEYS.get(type_name, {})
    map_children = _MAP_CHILDREN.get(type_name, {})
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif key in list_keys and isinstance(value, list) and isinstance(out.get(key), list):
            merge_key, elem_type = list_keys[key]
            out[key] = _merge_list(out[key], value, merge_key, elem_type or "")
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = strategic_merge(out[key], value, map_children.get(key, ""))
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(original: list[Any], patch: list[Any], merge_key: str, elem_type: str) -> list[Any]:
    out = [copy.deepcopy(x) for x in original]
    for item in patch:
        if not isinstance(item, Mapping) or merge_key not in item:
            out.append(copy.deepcopy(item))
            continue
        index = next(
            (i for i, x in enumerate(out) if isinstance(x, Mapping) and x.get(merge_key) == item[merge_key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
            continue
        if index is None:
            out.append({k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("$")})
        else:
            out[index] = strategic_merge(out[index], item, elem_type)
    return out
