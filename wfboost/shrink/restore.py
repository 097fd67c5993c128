"""Pod CREATE: every reference in a pod's container strings put back, as the controller would have written the value.

A pod of a shrunk Workflow holds references where the controller substituted a moved value or copied a moved
template literal: in main's `args` and `command` (after emissary's `--`), in env values, inside `ARGO_TEMPLATE` (the
template as JSON), and in the annotations Argo copies from the template's metadata. These strings are restored by text
replacement (refs.py), so the container runs with exactly the strings the unshrunk Workflow's pod would have had, and
the pod is stored with the annotations it would have had.

In `ARGO_TEMPLATE` only `script.source` is restored: it is the one field able to hold a moved value that Argo's
executor reads (workflow/executor/executor.go reads the template's archive location, input artifacts, outputs, script
source, and the resource, HTTP and data fields — v3.5.14, v3.7.18, v4.1.2 — none of which the analysis lets a
reference reach except the script source). Its container args and env and its input parameter values are a copy of
the pod spec that no one reads from there; restoring them would put each value into that one env string up to three
times, where the unshrunk Workflow would have made Argo (3.6+) offload the template to a ConfigMap.

A reference anywhere else in the pod, or in a ConfigMap Argo offloaded the template or the arguments to, cannot be
restored; a restored string over Linux's per-string limit could not start. In both cases the pod is refused (a pod
never runs with a reference in place of its value), with a message saying which string and why. Pure: the caller
fetches the values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from wfboost.argo import names
from wfboost.argo.offload import (
    ARGS_FILE,
    MAX_ENV_VAR_LEN,
    MOUNT_PATH,
    args_configmap,
    go_html_safe,
    go_json_strings,
    skips_container,
)
from wfboost.shrink.refs import TABLE_PREFIX, Reference, references_in, replace_references
from wfboost.shrink.tables import ArgumentTable, TableError, replace_cells
from wfboost.structs.patch import PatchOp

__all__ = [
    "MAX_ARG_STRLEN",
    "TEMPLATE_REFS_LABEL",
    "TEMPLATE_REFS_UNREAD",
    "RestoreRefused",
    "Restored",
    "offloaded_slots",
    "pod_references",
    "restore_ops",
    "restore_pod",
]

# Linux's limit on one argv or environment string, its terminating NUL included (32 pages of 4 KiB).
MAX_ARG_STRLEN: Final = 131072
# Linux's limit on all of a process's argv and environment strings together: a quarter of the stack limit, 2 MiB
# under the usual 8 MiB (fs/exec.c).
MAX_ARGV_TOTAL: Final = 2 * 1024 * 1024
_CONTAINER_FIELDS: Final = ("initContainers", "containers")


class RestoreRefused(Exception):
    """The pod cannot get its values back; the message says which string and why. `transient`: a retry may work."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class _Slot:
    path: str  # JSON pointer of the string
    where: str  # for messages: containers[main].args[3]
    text: str
    env_name: str | None  # an env value: the kernel's string is NAME=value
    argv: bool = True  # a string exec passes to the process (not a pod annotation)


def pod_references(pod: Mapping[str, Any]) -> set[Reference]:
    """Every reference anywhere in the pod (restorable or not)."""
    return references_in(orjson.dumps(pod).decode())


# On a template that is not a script: no reference in its ARGO_TEMPLATE is ever read (the executor reads a script
# source there, never the copies of args, env, inputs and metadata), so Argo may offload it to a ConfigMap at run
# time (substituted inputs can make it pass 128 KiB) and the pod still runs right. Without it (a script, or a
# Workflow shrunk before this label existed) an offloaded template means refusing the pod.
TEMPLATE_REFS_LABEL: Final = "wfboost.io/template-refs"
TEMPLATE_REFS_UNREAD: Final = "unread"


def offloaded_slots(pod: Mapping[str, Any]) -> list[str]:
    """Containers that read their template or arguments from Argo's ConfigMap (`ARGO_TEMPLATE=offloaded`,
    `ARGO_CONTAINER_ARGS_FILE`) where what they read there may hold a reference: it is not in the pod and cannot be
    restored here."""
    found = []
    labels = (pod.get("metadata") or {}).get("labels")
    unread = isinstance(labels, Mapping) and labels.get(TEMPLATE_REFS_LABEL) == TEMPLATE_REFS_UNREAD
    for field in _CONTAINER_FIELDS:
        for container in (pod.get("spec") or {}).get(field) or []:
            for env in container.get("env") or []:
                template = (env.get("name") == names.ENV_TEMPLATE and env.get("value") == names.TEMPLATE_OFFLOADED
                            and not unread)
                if template or env.get("name") == names.ENV_CONTAINER_ARGS_FILE:
                    found.append(f"{field}[{container.get('name')}]")
    return found


@dataclass(frozen=True)
class Restored:
    ops: list[PatchOp]
    configmap: dict[str, Any] | None = None  # to create before the pod: its arguments, offloaded as Argo would


def restore_ops(
    pod: Mapping[str, Any], values: Mapping[Reference, str], tables: Mapping[Reference, ArgumentTable] | None = None
) -> list[PatchOp]:
    """The operations that put every value (and every cell of an argument table) back; RestoreRefused when one
    cannot be (here, an argument over Linux's limit: see `restore_pod` for Argo's offload)."""
    return restore_pod(pod, values, tables).ops


def restore_pod(
    pod: Mapping[str, Any],
    values: Mapping[Reference, str],
    tables: Mapping[Reference, ArgumentTable] | None = None,
    *,
    offload_args: bool = False,
    controller_version: str | None = None,
) -> Restored:
    """What puts every value back. With `offload_args` (every controller offloads long arguments, wfboost.argo.offload),
    a main container whose restored arguments pass Argo's limit gets them the controller's way: in a ConfigMap
    named after the pod, which the caller creates first."""
    restored: list[tuple[_Slot, str]] = []
    for slot in (slot for slot in _slots(pod) if references_in(slot.text)):
        try:
            if slot.env_name == names.ENV_TEMPLATE:
                text = _restored_template(slot, values, tables or {})
                if text == slot.text:
                    continue
            else:
                text = _restored_text(slot.text, values, tables or {})
                if references_in(text):  # e.g. a table's row outside a cell: nothing says which value it is
                    raise RestoreRefused(f"{slot.where} holds a wfboost reference that names no value")
        except TableError as exc:
            raise RestoreRefused(f"{slot.where}: {exc}") from None
        restored.append((slot, text))
    offloaded = _offloaded_container(pod, restored, controller_version) if offload_args else None
    ops: list[PatchOp] = []
    for slot, text in restored:
        if offloaded is not None and slot.path.startswith(f"/spec/containers/{offloaded[0]}/args/"):
            continue
        size = len(text.encode()) + 1 + (len(slot.env_name.encode()) + 1 if slot.env_name is not None else 0)
        if slot.argv and size > MAX_ARG_STRLEN:
            what = "environment string" if slot.env_name is not None else "argument"
            raise RestoreRefused(f"{slot.where} would be {size} bytes restored, over Linux's {MAX_ARG_STRLEN}-byte "
                                 f"limit on one {what}")
        ops.append({"op": "replace", "path": slot.path, "value": text})
    _check_totals(pod, ops, skip=offloaded[0] if offloaded else None)
    if _outside_slots(pod):
        raise RestoreRefused("the pod holds a wfboost reference outside its containers' arguments, commands and env "
                             "values and its annotations, where it cannot be restored")
    if offloaded is None:
        return Restored(ops)
    index, args_json = offloaded
    configmap = args_configmap(pod, args_json)
    if configmap is None:
        raise RestoreRefused("its arguments need Argo's offload ConfigMap, and the pod lacks the name, Workflow label "
                             "or controlling owner to make it")
    if len(args_json.encode()) > MAX_CONFIGMAP_BYTES:
        raise RestoreRefused(f"its arguments would be {len(args_json.encode())} bytes, over what one ConfigMap holds")
    return Restored(ops + _offload_ops(pod, index), configmap)


# A ConfigMap's data is at most 1 MiB (k8s.io/api core/v1 ConfigMap); room is left for its metadata.
MAX_CONFIGMAP_BYTES: Final = 1024 * 1024 - 16 * 1024


def _offloaded_container(
    pod: Mapping[str, Any], restored: list[tuple[_Slot, str]], version: str | None
) -> tuple[int, str] | None:
    """(index, arguments as Go's JSON) of the first container whose restored arguments pass MaxEnvVarLen, as the
    controller picks it (createWorkflowPod: `wait`, and on 4.1 every Argo sidecar, skipped; first one over)."""
    replaced = {slot.path: text for slot, text in restored}
    for index, container in enumerate((pod.get("spec") or {}).get("containers") or []):
        if skips_container(str(container.get("name")), version):
            continue
        args = container.get("args")
        if not isinstance(args, list):
            continue
        current = [replaced.get(f"/spec/containers/{index}/args/{i}", a) for i, a in enumerate(args)]
        if not any(f"/spec/containers/{index}/args/{i}" in replaced for i in range(len(args))):
            continue  # not changed by restoring: the controller already decided about it
        encoded = go_json_strings([str(a) for a in current])
        if len(encoded.encode()) > MAX_ENV_VAR_LEN:
            return index, encoded
    return None


def _offload_ops(pod: Mapping[str, Any], index: int) -> list[PatchOp]:
    """The container's arguments cleared, the file's env and mount added, the ConfigMap's volume added: what
    createWorkflowPod does to the pod."""
    container = pod["spec"]["containers"][index]
    base = f"/spec/containers/{index}"
    env = {"name": names.ENV_CONTAINER_ARGS_FILE, "value": ARGS_FILE}
    mount = {"name": names.VOLUME_ENV_CONFIG, "mountPath": MOUNT_PATH}
    volume = {"name": names.VOLUME_ENV_CONFIG, "configMap": {"name": pod["metadata"]["name"]}}
    ops: list[PatchOp] = [{"op": "remove", "path": f"{base}/args"}]
    ops.append({"op": "add", "path": f"{base}/env/-", "value": env} if isinstance(container.get("env"), list)
               else {"op": "add", "path": f"{base}/env", "value": [env]})
    ops.append({"op": "add", "path": f"{base}/volumeMounts/-", "value": mount}
               if isinstance(container.get("volumeMounts"), list)
               else {"op": "add", "path": f"{base}/volumeMounts", "value": [mount]})
    ops.append({"op": "add", "path": "/spec/volumes/-", "value": volume} if isinstance(pod["spec"].get("volumes"), list)
               else {"op": "add", "path": "/spec/volumes", "value": [volume]})
    return ops


def _check_totals(pod: Mapping[str, Any], ops: list[PatchOp], *, skip: int | None = None) -> None:
    """Every container's argv and environment together within what exec accepts, with the values restored (the
    arguments of a container whose arguments are offloaded are read from a file, not passed to exec)."""
    replaced = {op["path"]: op.get("value") for op in ops}
    spec = pod.get("spec") or {}
    for field in _CONTAINER_FIELDS:
        for index, container in enumerate(spec.get(field) or []):
            total = 0
            for key in ("command", "args"):
                if key == "args" and field == "containers" and index == skip:
                    continue
                for position, text in enumerate(container.get(key) or []):
                    total += len(str(replaced.get(f"/spec/{field}/{index}/{key}/{position}", text)).encode()) + 1
            for position, env in enumerate(container.get("env") or []):
                value = replaced.get(f"/spec/{field}/{index}/env/{position}/value", env.get("value") or "")
                total += len(str(env.get("name"))) + len(str(value).encode()) + 2
            if total > MAX_ARGV_TOTAL:
                raise RestoreRefused(f"{field}[{container.get('name')}] would get {total} bytes of arguments and "
                                     f"environment restored, over the {MAX_ARGV_TOTAL} bytes exec accepts")


def _restored_text(text: str, values: Mapping[Reference, str], tables: Mapping[Reference, ArgumentTable]) -> str:
    """Cells first: a cell's text begins with its table's reference, which is not a value of its own. A table
    reference outside a cell is left as it is here (the caller refuses it outside ARGO_TEMPLATE, where the template's
    `wfboost-row` input names it and nothing in the pod reads it)."""
    return replace_references(replace_cells(text, tables) if TABLE_PREFIX in text else text, values)


def _restored_template(slot: _Slot, values: Mapping[Reference, str], tables: Mapping[Reference, ArgumentTable]) -> str:
    """ARGO_TEMPLATE with its script source restored, written back with Go's HTML-safe escaping."""
    try:
        template = json.loads(slot.text)
    except ValueError as exc:
        raise RestoreRefused(f"{slot.where} is not JSON: {exc}") from None
    script = template.get("script") if isinstance(template, dict) else None
    source = script.get("source") if isinstance(script, dict) else None
    if not isinstance(source, str) or not references_in(source):
        return slot.text
    assert isinstance(script, dict)
    script["source"] = _restored_text(source, values, tables)
    return go_html_safe(json.dumps(template, ensure_ascii=False, separators=(",", ":")))


def _outside_slots(pod: Mapping[str, Any]) -> bool:
    """A reference somewhere other than the strings `_slots` covers (the same reference may also be in a slot)."""
    spec = dict(pod.get("spec") or {})
    metadata = dict(pod.get("metadata") or {})
    if isinstance(metadata.get("annotations"), Mapping):
        metadata["annotations"] = list(metadata["annotations"])  # the keys stay, the values are slots
    stripped = {**pod, "spec": spec, "metadata": metadata}
    for field in _CONTAINER_FIELDS:
        if field in spec:
            spec[field] = [
                {k: v for k, v in container.items() if k not in ("args", "command")}
                | {"env": [{k: v for k, v in env.items() if k != "value"} for env in container.get("env") or []]}
                for container in spec[field]
            ]
    return bool(pod_references(stripped))


def _slots(pod: Mapping[str, Any]) -> Iterator[_Slot]:
    annotations = (pod.get("metadata") or {}).get("annotations")
    for key, text in (annotations.items() if isinstance(annotations, Mapping) else ()):
        if isinstance(text, str):
            yield _Slot(f"/metadata/annotations/{str(key).replace('~', '~0').replace('/', '~1')}",
                        f"metadata.annotations[{key}]", text, None, argv=False)
    spec = pod.get("spec") or {}
    for field in _CONTAINER_FIELDS:
        for index, container in enumerate(spec.get(field) or []):
            name = container.get("name")
            for key in ("command", "args"):
                for position, text in enumerate(container.get(key) or []):
                    if isinstance(text, str):
                        yield _Slot(f"/spec/{field}/{index}/{key}/{position}", f"{field}[{name}].{key}[{position}]",
                                    text, None)
            for position, env in enumerate(container.get("env") or []):
                text = env.get("value")
                if isinstance(text, str):
                    yield _Slot(f"/spec/{field}/{index}/env/{position}/value",
                                f"{field}[{name}].env[{env.get('name')}]", text, str(env.get("name")))
