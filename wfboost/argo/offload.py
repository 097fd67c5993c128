"""Argo's offload of a main container's arguments to a ConfigMap, as the controller does it (for restoring).

From v3.7.10, v4.0.1 and v4.1.0 on, when `json.Marshal(container.Args)` of a main container passes 131072 bytes, the
controller writes the JSON into a ConfigMap named after the pod (key `ARGO_CONTAINER_ARGS_FILE`; the Workflow's label,
the node's name and id as annotations, the Workflow as controller owner), clears the container's args, points env
`ARGO_CONTAINER_ARGS_FILE` at `/argo/config/ARGO_CONTAINER_ARGS_FILE` and mounts the ConfigMap there as volume
`argo-env-config`; the emissary reads the arguments back and hands each one over 131072 bytes to the process as
`@<file>` (workflow/controller/workflowpod.go `createWorkflowPod` at v3.7.18 and v4.0.10, the pod builder at v4.1.2;
cmd/argoexec/commands/emissary.go). Kubeflow's driver reads its component spec that way (`@` in
backend/src/v2/cmd/driver/main.go). Restoring a value that long does the same, so the process gets what it would have
got from the unshrunk Workflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from wfboost.argo import names

__all__ = ["ARGS_FILE", "MAX_ENV_VAR_LEN", "MOUNT_PATH", "args_configmap", "go_html_safe", "go_json_size",
           "go_json_strings", "offloads_container_args", "skips_container"]

MAX_ENV_VAR_LEN: Final = 131072  # workflow/common/common.go MaxEnvVarLen
MOUNT_PATH: Final = "/argo/config"  # EnvConfigMountPath
ARGS_FILE: Final = f"{MOUNT_PATH}/{names.ENV_CONTAINER_ARGS_FILE}"


def offloads_container_args(version: str | None) -> bool:
    """Whether every controller at or after `version` (the policy's `shrink.controllerVersion`) offloads long
    arguments; unknown (None, or `3.7` without its patch) counts as no."""
    match = re.fullmatch(r"v?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?", version or "")
    if match is None:
        return False
    major, minor, patch = int(match[1]), int(match[2]), int(match[3] or 0)
    if major == 3:
        return minor > 7 or (minor == 7 and patch >= 10)
    if major == 4 and minor == 0:
        return patch >= 1
    return major >= 4


def skips_container(name: str, version: str | None) -> bool:
    """Containers whose arguments the controller never offloads: `wait` (3.7, 4.0), and from 4.1 every Argo sidecar
    (`common.IsArgoSidecar`: wait, supervisor, artifact-plugin-*)."""
    if name == names.CONTAINER_WAIT:
        return True
    match = re.fullmatch(r"v?([0-9]+)\.([0-9]+)(?:\.[0-9]+)?", version or "")
    newer = match is not None and (int(match[1]), int(match[2])) >= (4, 1)
    return newer and (name == names.CONTAINER_SUPERVISOR or name.startswith("artifact-plugin-"))


# Go's encoding/json (1.22 on: Argo 3.7 and 4 build with 1.24 and later) escapes these (HTML-safe by default), and
# other control characters as \u00XX.
_GO_ESCAPES: Final = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b",
                      "\f": "\\f", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                      "\u2029": "\\u2029"}
_GO_SPECIAL: Final = re.compile('["\\\\<>&\u2028\u2029\x00-\x1f]')
# What Go escapes beyond what JSON encoders without HTML-safety (Python's json, orjson) write.
_GO_HTML: Final = {char: _GO_ESCAPES[char] for char in "<>&\u2028\u2029"}
_GO_HTML_CHARS: Final = re.compile("[<>&\u2028\u2029]")


def go_html_safe(json_text: str) -> str:
    """JSON written by Python's json (ensure_ascii off) or orjson, made what Go's encoding/json writes: `<`, `>`,
    `&`, U+2028 and U+2029 as `\\uXXXX` (the other escapes agree)."""
    return _GO_HTML_CHARS.sub(lambda m: _GO_HTML[m[0]], json_text)


def go_json_size(node: Any) -> int:
    """Bytes of `node` as Go's encoding/json writes it: how the controller sizes ARGO_TEMPLATE."""
    return len(go_html_safe(orjson.dumps(node).decode()).encode())


def go_json_strings(values: Sequence[str]) -> str:
    """`json.Marshal` of a []string as Go writes it: the bytes the controller measures and stores."""
    def escaped(text: str) -> str:
        return _GO_SPECIAL.sub(lambda m: _GO_ESCAPES.get(m[0]) or f"\\u{ord(m[0]):04x}", text)
    return "[" + ",".join(f'"{escaped(v)}"' for v in values) + "]"


def args_configmap(pod: Mapping[str, Any], args_json: str) -> dict[str, Any] | None:
    """The ConfigMap the controller would have made for this pod's offloaded arguments; None when the pod does not
    say enough (no name, no controlling Workflow) to make the same one."""
    metadata = pod.get("metadata") or {}
    owner = next((o for o in metadata.get("ownerReferences") or [] if o.get("controller")), None)
    name, namespace = metadata.get("name"), metadata.get("namespace")
    labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
    workflow = labels.get(names.LABEL_WORKFLOW)
    if not (name and namespace and owner and workflow):
        return None
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name, "namespace": namespace, "labels": {names.LABEL_WORKFLOW: workflow},
            "annotations": {key: annotations[key] for key in (names.ANNOTATION_NODE_NAME, names.ANNOTATION_NODE_ID)
                            if key in annotations},
            "ownerReferences": [dict(owner)],
        },
        "data": {names.ENV_CONTAINER_ARGS_FILE: args_json},
    }
