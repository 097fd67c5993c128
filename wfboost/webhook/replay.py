"""Turning a cache hit into a pod that Argo's own executor reports as the cached run, without uploading anything.

Only the main container changes, plus the template Argo's executor reads:

- main: everything up to and including emissary's `--` stays (drop it and the pod hangs, argo-workflows #7406); what
  follows becomes a POSIX-shell replay that writes each cached output parameter to its declared path and prints the
  cached stdout. Emissary then copies the outputs as usual and Argo's wait container reports them. The container
  runs a small busybox image (its own numeric non-root user) with a Pod Security "restricted" securityContext;
  output directories are emptyDirs so that user can write them.
- the executor's template (every copy of `ARGO_TEMPLATE`, executor_template.py): without the input artifacts
  (nothing is downloaded), without the output artifacts and with `archiveLogs` off (nothing is archived or
  uploaded, so no upload can overwrite the cached object, and a replay whose task result nobody restores reports no
  artifact at all, which holds its node: operator.go assessNodeStatus, from 3.6.11/3.7.2), plus one output
  parameter, the replay marker (wfboost.cache.marker), that carries the cached artifacts into the step's own task
  result, where they are put back.

Everything else stays, scheduling included: nodeSelector and affinity also carry what admission plugins that ran
before this webhook enforce (a RuntimeClass's node selector, a namespace's node restriction), and a replay on a
node without the pod's runtime handler would never start.

Values travel in env vars, split into chunks under Linux's 128 KiB limit per env string (MAX_ARG_STRLEN). The
kubelet expands `$(NAME)` and turns `$$` into `$` in env values, command and args: every `$` we write is doubled so
what reaches the shell is exactly what we meant.
`replay_plan` refuses (NotReplayable, with the reason) what cannot be replayed faithfully; the caller then treats it
as a miss.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wfboost.argo import names
from wfboost.argo.artifacts import LOCATION_FIELDS, ArtifactLocationError, location_of
from wfboost.argo.pods import ArgoStep
from wfboost.cache.entries import CacheEntry
from wfboost.cache.marker import MARKER_PARAMETER, marker_parameter
from wfboost.policy import ReplaySettings
from wfboost.structs.patch import PatchOp
from wfboost.webhook.errors import WebhookError
from wfboost.webhook.executor_template import (
    EnvSlot,
    TemplateTooLarge,
    kubelet_literal,
    rewritten_values,
    value_ops,
)

ENV_PREFIX = "WFBOOST_"
# Characters of a value per env chunk: at most 60,000 bytes of UTF-8 (or 30,000 after `$` doubling), well under the
# 131,072-byte limit per env string.
CHUNK = 15_000
# Bytes a replay adds to the pod (values as the kubelet reads them, `$` doubled, and every copy of the executor's
# template): more would weigh on etcd and could push the pod past the API server's request limit: a miss.
MAX_PAYLOAD = 512 * 1024
# Directories an output parameter's emptyDir must not cover: the replay's shell and the executor live there.
_SYSTEM_PATHS = ("/bin", "/sbin", "/lib", "/lib64", "/usr", "/etc", "/dev", "/proc", "/sys", "/var/run/argo",
                 "/argo-bin", "/var/run/wfboost")

# The replay program. Reads WFBOOST_PARAM_<i>_PATH + WFBOOST_PARAM_<i>_<j> (value chunks) and WFBOOST_STDOUT_<j>;
# busybox/dash/bash compatible (no arrays, no `local`). Each value is followed by one newline:
# Argo's wait container strips one trailing newline from output files and from stdout, and the recorded values are
# what it reported, so value + "\n" reads back as exactly the value.
REPLAY_SCRIPT = r"""set -eu
emit() {
  j=0
  while eval "[ \"\${$1_$j+set}\" = set ]"; do
    eval "printf '%s' \"\${$1_$j}\""
    j=$((j + 1))
  done
  printf '\n'
}
i=0
while eval "[ \"\${WFBOOST_PARAM_${i}_PATH+set}\" = set ]"; do
  eval "p=\${WFBOOST_PARAM_${i}_PATH}"
  mkdir -p "$(dirname "$p")"
  emit "WFBOOST_PARAM_${i}" > "$p"
  i=$((i + 1))
done
if [ "${WFBOOST_STDOUT_0+set}" = set ]; then
  emit WFBOOST_STDOUT
fi
"""

# No runAsUser: the image runs as its own numeric non-root user, and platforms that assign users from a range
# (OpenShift's restricted SCCs) refuse a fixed one.
RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}

# Argo volumes emissary needs in the replayed main container; everything else the step mounted is dropped.
_KEPT_MOUNTS = frozenset({names.VOLUME_VAR_RUN_ARGO, names.VOLUME_ARGOEXEC_BIN})
_REPLAY_VOLUME = "wfboost-replay-"


class NotReplayable(WebhookError, ValueError):
    """The hit cannot be replayed faithfully: `reason` is the miss reason (a metric label), `detail` names what."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class ReplayPlan:
    env: list[dict[str, str]]  # the replay program's values
    mount_points: list[str]  # emptyDirs for output parameter directories
    marker: dict[str, Any]  # the output parameter that carries the cached artifacts (wfboost.cache.marker)
    payload: int  # bytes the replay adds to the pod
    templates: dict[EnvSlot, str]  # every copy of the executor's template, rewritten


def replay_plan(step: ArgoStep, entry: CacheEntry) -> ReplayPlan:
    """What the replay must produce; NotReplayable when the entry cannot be replayed faithfully."""
    template = step.template or {}
    outputs = template.get("outputs") or {}
    declared_params = [p for p in outputs.get("parameters") or [] if isinstance(p, Mapping)]
    declared_artifacts = [a for a in outputs.get("artifacts") or [] if isinstance(a, Mapping)]
    if any(p.get("name") == MARKER_PARAMETER for p in declared_params):
        raise NotReplayable("reserved_parameter_name", MARKER_PARAMETER)
    cached = {p["name"]: p["value"] for p in entry["parameters"]}
    user_mounts = _template_mount_paths(template)
    inputs = (template.get("inputs") or {}).get("artifacts") or []
    input_paths = {a.get("path") for a in inputs if isinstance(a, Mapping)}

    env: list[dict[str, str]] = []
    points: list[str] = []
    payload = 0
    index = 0
    for param in declared_params:
        path = (param.get("valueFrom") or {}).get("path")
        if not path:
            continue  # supplied/expression/configMap parameters are not produced by the container
        name = str(param.get("name"))
        if name not in cached:
            raise NotReplayable("entry_missing_parameter", name)
        if "\x00" in cached[name]:
            raise NotReplayable("value_has_nul", name)  # an env var cannot carry it
        _check_path(str(path), user_mounts, input_paths)
        parent = posixpath.dirname(posixpath.normpath(str(path)))
        points.append(parent)
        env.append({"name": f"{ENV_PREFIX}PARAM_{index}_PATH", "value": str(path)})
        env.extend(_chunks(f"{ENV_PREFIX}PARAM_{index}", cached[name]))
        index += 1
    recorded = {str(a.get("name")): a for a in entry["artifacts"]}
    artifacts = []
    for artifact in declared_artifacts:
        name = str(artifact.get("name"))
        if name not in recorded:
            if artifact.get("optional"):
                continue  # the first run did not produce it: the replay must not either
            raise NotReplayable("entry_missing_artifact", name)
        artifacts.append(_as_declared(artifact, recorded[name]))
    if step.include_script_output:
        if "result" not in entry:
            raise NotReplayable("entry_missing_stdout")
        if "\x00" in entry["result"]:
            raise NotReplayable("value_has_nul", "stdout")
        env.extend(_chunks(f"{ENV_PREFIX}STDOUT", entry["result"]))
    marker = marker_parameter(entry["key"], entry["entry_id"], artifacts)
    try:
        templates = rewritten_values(step, lambda t: executor_template(t, marker))
    except TemplateTooLarge as exc:
        raise NotReplayable("template_too_large", str(exc)) from None
    payload = sum(len(e["value"].encode()) for e in env) + sum(len(v.encode()) for v in templates.values())
    if payload > MAX_PAYLOAD:
        raise NotReplayable("outputs_too_large", f"the replay would add {payload} bytes to the pod")
    return ReplayPlan(
        env=env, mount_points=_outermost(points), marker=marker, payload=payload, templates=templates
    )


def _as_declared(declared: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The artifact as this template declares it (name, path, globalName, archive, mode…) at the cached object's
    location: the producer's own `globalName` would publish the artifact under a workflow output this step does not
    name (operator.go addArtifactToGlobalScope overwrites a global output of that name)."""
    try:
        location = location_of(recorded)
    except ArtifactLocationError as exc:
        raise NotReplayable("entry_artifact_unreadable", f"{declared.get('name')}: {exc}") from None
    return {**{k: v for k, v in declared.items() if k not in LOCATION_FIELDS}, **location}


def hit_patch(
    step: ArgoStep, plan: ReplayPlan, replay: ReplaySettings, *, labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> list[PatchOp]:
    """Few, coarse operations, each valid against the pod as received (see argo-facts.md on patch cost)."""
    pod_spec = step.pod.get("spec") or {}
    main = step.main
    volumes = [{"name": f"{_REPLAY_VOLUME}{i}", "emptyDir": {}} for i in range(len(plan.mount_points))]
    mounts = [m for m in main.get("volumeMounts") or [] if m.get("name") in _KEPT_MOUNTS]
    mounts += [{"name": v["name"], "mountPath": p} for v, p in zip(volumes, plan.mount_points, strict=True)]
    main_slot = ("containers", step.main_index)
    argo_env = [
        {"name": names.ENV_TEMPLATE, "value": plan.templates[(*main_slot, position)]}
        if e.get("name") == names.ENV_TEMPLATE else e
        for position, e in enumerate(main.get("env") or [])
        if str(e.get("name", "")).startswith("ARGO_") and e.get("name") != names.ENV_CONTAINER_ARGS_FILE
    ]
    container: dict[str, Any] = {
        "name": main.get("name"),
        "image": replay.image,
        "imagePullPolicy": replay.image_pull_policy,
        "command": [*step.emissary_prefix, "/bin/sh", "-c", kubelet_literal(REPLAY_SCRIPT), "wfboost-replay"],
        "env": [*argo_env, *plan.env],
        "resources": replay.resources.as_kubernetes(),
        "securityContext": dict(RESTRICTED_SECURITY_CONTEXT),
        "volumeMounts": mounts,
    }
    for kept in ("terminationMessagePath", "terminationMessagePolicy"):
        if kept in main:
            container[kept] = main[kept]
    ops: list[PatchOp] = [{"op": "replace", "path": f"/spec/containers/{step.main_index}", "value": container}]
    # Volumes only the original main used (a PVC, a GPU device plugin volume) would still be attached: drop them.
    # A volume another container uses, by a mount or as a raw block device, stays (the API server refuses a
    # device or mount whose volume is gone).
    others = [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]
    still_used = {
        used.get("name")
        for c in others if c is not main
        for used in [*(c.get("volumeMounts") or []), *(c.get("volumeDevices") or [])]
    }
    still_used |= {m["name"] for m in mounts}
    kept_volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") in still_used]
    new_volumes = [*kept_volumes, *volumes]
    if "volumes" in pod_spec:
        ops.append({"op": "replace", "path": "/spec/volumes", "value": new_volumes})
    else:
        ops.append({"op": "add", "path": "/spec/volumes", "value": new_volumes})
    ops.extend(value_ops(plan.templates, skip_container=main_slot))
    ops.extend(metadata_ops(step.pod, labels=labels, annotations=annotations))
    return ops


def executor_template(template: Mapping[str, Any], marker: Mapping[str, Any]) -> dict[str, Any]:
    """The template Argo's executor works from on a hit: no input artifacts to download, no output artifacts to
    archive or upload, no logs to archive, and the replay marker among the output parameters."""
    view = dict(template)
    inputs = view.get("inputs")
    if isinstance(inputs, Mapping) and "artifacts" in inputs:
        view["inputs"] = {k: v for k, v in inputs.items() if k != "artifacts"}
    outputs = dict(view.get("outputs") or {})
    outputs.pop("artifacts", None)
    outputs["parameters"] = [*(outputs.get("parameters") or []), dict(marker)]
    view["outputs"] = outputs
    archive = view.get("archiveLocation")
    if isinstance(archive, Mapping):
        view["archiveLocation"] = {**archive, "archiveLogs": False}
    return view


def metadata_ops(pod: Mapping[str, Any], *, labels: Mapping[str, str], annotations: Mapping[str, str]) -> list[PatchOp]:
    """Add labels/annotations, creating the maps when the pod has none (Argo pods always have both)."""
    meta = pod.get("metadata") or {}
    ops: list[PatchOp] = []
    for field, values in (("labels", labels), ("annotations", annotations)):
        if not values:
            continue
        if field not in meta or meta[field] is None:
            ops.append({"op": "add", "path": f"/metadata/{field}", "value": dict(values)})
            continue
        for name, value in values.items():
            ops.append({"op": "add", "path": f"/metadata/{field}/{_escape(name)}", "value": value})
    return ops


def _chunks(prefix: str, value: str) -> list[dict[str, str]]:
    """Split first, then escape each piece, so a doubled `$$` never straddles two chunks."""
    pieces = [value[i : i + CHUNK] for i in range(0, len(value), CHUNK)] or [""]
    return [{"name": f"{prefix}_{j}", "value": kubelet_literal(piece)} for j, piece in enumerate(pieces)]


def from_kubelet_literal(text: str) -> str:
    """The inverse of `kubelet_literal`, for readers of a replayed pod (the demo, `wfboost review` users)."""
    return text.replace("$$", "$")


def _template_mount_paths(template: Mapping[str, Any]) -> list[str]:
    body = template.get("container") or template.get("script") or {}
    return [str(m.get("mountPath")) for m in body.get("volumeMounts") or [] if isinstance(m, Mapping)]


def _check_path(path: str, user_mounts: Sequence[str], input_paths: set[Any]) -> None:
    """Argo's wait container reads outputs that sit on a volume, or on or under an input artifact's path, from that
    volume, not from what emissary copied: a replay would hand it old content or nothing. Such steps are never
    replayed. Relative paths resolve against the step's working directory, which the replay does not keep."""
    if not path.startswith("/"):
        raise NotReplayable("relative_output_path", str(path))
    if "$" in path:
        # The kubelet expanded `$(NAME)` and `$$` in the executor's copy of the path but would not in an inlined
        # one: the replay and the wait container could disagree on where the file is.
        raise NotReplayable("output_path_has_dollar", str(path))
    normal = posixpath.normpath(path)
    parent = posixpath.dirname(normal)
    if any(_within(system, parent) or _within(parent, system) for system in _SYSTEM_PATHS) or parent == "/":
        raise NotReplayable("output_in_system_directory", f"{path}: an emptyDir at {parent} would hide what the "
                            "replay needs there")
    for mount in user_mounts:
        if _within(normal, mount):
            raise NotReplayable("output_on_volume", str(path))
    for input_path in input_paths:
        if isinstance(input_path, str) and _within(normal, input_path):
            raise NotReplayable("output_in_input_artifact", str(path))


def _within(path: str, root: str) -> bool:
    root = posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _outermost(points: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for point in sorted(set(points)):
        if not any(point == c or point.startswith(c.rstrip("/") + "/") for c in chosen):
            chosen.append(point)
    return chosen


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
