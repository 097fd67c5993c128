"""Turning a cache hit into a pod that Argo's own executor reports as the cached run.

Only the main container changes: everything up to and including emissary's `--` stays (drop it and the pod hangs,
argo-workflows #7406); what follows becomes a POSIX-shell replay that writes each cached output parameter to its
declared path, prints the cached stdout, and creates each declared artifact path. Emissary then copies the outputs
as usual and Argo's wait container reports them. The container runs a small busybox image with a Pod Security
"restricted" securityContext; output directories are emptyDirs so a non-root user can write them.

Values travel in env vars, split into chunks under Linux's 128 KiB limit per env string (MAX_ARG_STRLEN). The
kubelet expands `$(NAME)` and turns `$$` into `$` in env values, command and args: every `$` we write is doubled so
what reaches the shell is exactly what we meant.
`replay_plan` refuses (returns the reason) what cannot be replayed faithfully; the caller then treats it as a miss.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wfboost.argo import names
from wfboost.argo.pods import ArgoStep
from wfboost.cache.entries import CacheEntry
from wfboost.policy import ReplaySettings
from wfboost.structs.patch import PatchOp
from wfboost.webhook.errors import WebhookError

ENV_PREFIX = "WFBOOST_"
# Characters of a value per env chunk: at most 60,000 bytes of UTF-8 (or 30,000 after `$` doubling), well under the
# 131,072-byte limit per env string.
CHUNK = 15_000
MAX_PAYLOAD = 512 * 1024  # bytes of replayed values per pod; more would weigh on etcd: replay refused (miss)
REPLAY_UID = 65532
PLATFORM_LABELS = frozenset(
    {"kubernetes.io/os", "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch"}
)

# The replay program. Reads WFBOOST_PARAM_<i>_PATH + WFBOOST_PARAM_<i>_<j> (value chunks), WFBOOST_ARTIFACT_<i>_PATH,
# WFBOOST_STDOUT_<j>; busybox/dash/bash compatible (no arrays, no `local`). Each value is followed by one newline:
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
i=0
while eval "[ \"\${WFBOOST_ARTIFACT_${i}_PATH+set}\" = set ]"; do
  eval "a=\${WFBOOST_ARTIFACT_${i}_PATH}"
  if [ ! -e "$a" ]; then
    mkdir -p "$(dirname "$a")"
    : > "$a"
  fi
  i=$((i + 1))
done
if [ "${WFBOOST_STDOUT_0+set}" = set ]; then
  emit WFBOOST_STDOUT
fi
"""

RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": REPLAY_UID,
    "runAsGroup": REPLAY_UID,
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
    env: list[dict[str, str]]
    mount_points: list[str]  # emptyDirs for output directories


def replay_plan(step: ArgoStep, entry: CacheEntry) -> ReplayPlan:
    """What the replay container must write; NotReplayable when the entry cannot be replayed faithfully."""
    template = step.template or {}
    outputs = template.get("outputs") or {}
    declared_params = [p for p in outputs.get("parameters") or [] if isinstance(p, Mapping)]
    declared_artifacts = [a for a in outputs.get("artifacts") or [] if isinstance(a, Mapping)]
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
            raise NotReplayable("entry_missing_parameter", str(name))
        if "\x00" in cached[name]:
            raise NotReplayable("value_has_nul", str(name))  # an env var cannot carry it
        _check_path(str(path), user_mounts, input_paths)
        parent = posixpath.dirname(posixpath.normpath(str(path)))
        if parent == "/":
            raise NotReplayable("output_at_root", str(path))
        points.append(parent)
        env.append({"name": f"{ENV_PREFIX}PARAM_{index}_PATH", "value": kubelet_literal(str(path))})
        env.extend(_chunks(f"{ENV_PREFIX}PARAM_{index}", cached[name]))
        payload += len(cached[name].encode())
        index += 1
    recorded = {a.get("name") for a in entry["artifacts"]}
    for number, artifact in enumerate(declared_artifacts):
        path = artifact.get("path")
        if not path:
            continue
        if artifact.get("name") not in recorded:
            if artifact.get("optional"):
                continue  # the first run did not produce it: the replay must not either
            raise NotReplayable("entry_missing_artifact", str(artifact.get('name')))
        _check_path(str(path), user_mounts, input_paths)
        points.append(posixpath.normpath(str(path)))
        env.append({"name": f"{ENV_PREFIX}ARTIFACT_{number}_PATH", "value": kubelet_literal(str(path))})
    if step.include_script_output:
        if "result" not in entry:
            raise NotReplayable("entry_missing_stdout")
        if "\x00" in entry["result"]:
            raise NotReplayable("value_has_nul", "stdout")
        env.extend(_chunks(f"{ENV_PREFIX}STDOUT", entry["result"]))
        payload += len(entry["result"].encode())
    if payload > MAX_PAYLOAD:
        raise NotReplayable("outputs_too_large")
    return ReplayPlan(env=env, mount_points=_outermost(points))


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
    argo_env = [
        _without_input_artifacts(e) if e.get("name") == names.ENV_TEMPLATE else e
        for e in main.get("env") or []
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
    others = [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]
    still_used = {m.get("name") for c in others if c is not main for m in c.get("volumeMounts") or []}
    still_used |= {m["name"] for m in mounts}
    kept_volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") in still_used]
    new_volumes = [*kept_volumes, *volumes]
    if "volumes" in pod_spec:
        ops.append({"op": "replace", "path": "/spec/volumes", "value": new_volumes})
    else:
        ops.append({"op": "add", "path": "/spec/volumes", "value": new_volumes})
    # Scheduling constraints chose accelerator nodes; the replay needs none. `remove` of an absent path fails the
    # request, so only what is there is removed. The OS and architecture stay: the init and wait containers (and
    # any sidecar) still run and must land where their images run.
    if "affinity" in pod_spec:
        ops.append({"op": "remove", "path": "/spec/affinity"})
    if "nodeSelector" in pod_spec:
        kept_selector = {k: v for k, v in (pod_spec["nodeSelector"] or {}).items() if k in PLATFORM_LABELS}
        if kept_selector:
            ops.append({"op": "replace", "path": "/spec/nodeSelector", "value": kept_selector})
        else:
            ops.append({"op": "remove", "path": "/spec/nodeSelector"})
    ops.extend(_skip_input_downloads(step))
    ops.extend(metadata_ops(step.pod, labels=labels, annotations=annotations))
    return ops


def _skip_input_downloads(step: ArgoStep) -> list[PatchOp]:
    """A replay reads none of the step's inputs: take the input artifacts out of the template the executor containers
    read (init, or wait/supervisor), so they download nothing, however big. Outputs that sit on or under an input
    artifact's path are never replayed (`_check_path`), so what the wait container reads does not change. An
    offloaded template (in the ConfigMap) is left as it is: the downloads then still happen."""
    ops: list[PatchOp] = []
    spec = step.pod.get("spec") or {}
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or []):
            if field == "containers" and index == step.main_index:
                continue  # replaced whole
            for position, env in enumerate(container.get("env") or []):
                if env.get("name") != names.ENV_TEMPLATE or env.get("value") in (None, names.TEMPLATE_OFFLOADED):
                    continue
                lighter = _without_input_artifacts(env)
                if lighter is not env:
                    path = f"/spec/{field}/{index}/env/{position}/value"
                    ops.append({"op": "replace", "path": path, "value": lighter["value"]})
    return ops


def _without_input_artifacts(env: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ARGO_TEMPLATE env entry without `inputs.artifacts` (the same entry when there are none or it is not
    JSON; string values keep every `$` as they were, so the kubelet's expansion treats them as before)."""
    try:
        template = json.loads(str(env.get("value")))
    except ValueError:
        return env
    inputs = template.get("inputs") if isinstance(template, dict) else None
    if not isinstance(inputs, dict) or not inputs.get("artifacts"):
        return env
    template["inputs"] = {k: v for k, v in inputs.items() if k != "artifacts"}
    return {**env, "value": json.dumps(template, separators=(",", ":"), ensure_ascii=False)}


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


def kubelet_literal(text: str) -> str:
    """`text` such that the kubelet's `$(VAR)` expansion hands it over unchanged (`$$` is its escape for `$`)."""
    return text.replace("$", "$$")


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
    normal = posixpath.normpath(path)
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
