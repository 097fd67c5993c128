"""Go's encoding/json as the controller applies it to a wfv1.Template (wfv1.MustMarshallJSON in createWorkflowPod).

The bytes matter: the 3.6+ offload decision compares `len(ARGO_TEMPLATE)` with 131072, and 3.7.10+ compares
`len(json.Marshal(container.Args))`. So this mirrors the three things that change the length:

* Go escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings (encoding/json HTMLEscape, on by default in Marshal);
* struct fields without `omitempty`, and struct-typed fields (omitempty never drops a struct), are always written:
  Template.inputs/outputs/metadata, Container.name/resources, ScriptTemplate.source, Parameter.name, Artifact.name,
  EnvVar.name, VolumeMount.name/mountPath, Volume.name (pkg/apis/workflow/v1alpha1/workflow_types.go and
  k8s.io/api/core/v1/types.go at each tag);
* the round trip through Go types drops what the types do not know and turns a parameter's value into a string
  (AnyString).

Field order follows the Go struct declarations (it does not change the length, only readability of fixtures);
map-typed fields are written with sorted keys as Go does. Fields this module does not know are kept as given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# workflow_types.go `type Template struct` field order (v4.1.2 superset; fields absent at a tag are never set here)
_TEMPLATE_FIELDS = (
    "name", "inputs", "outputs", "nodeSelector", "affinity", "metadata", "daemon", "steps", "container",
    "containerSet", "script", "resource", "dag", "suspend", "data", "http", "plugin", "volumes", "initContainers",
    "sidecars", "archiveLocation", "activeDeadlineSeconds", "retryStrategy", "parallelism", "failFast", "tolerations",
    "schedulerName", "priorityClassName", "priority", "serviceAccountName", "automountServiceAccountToken",
    "executor", "hostAliases", "securityContext", "podSpecPatch", "metrics", "synchronization", "memoize", "timeout",
    "annotations", "pendingTimeout", "podResources", "resourceClaims",
)
# k8s.io/api/core/v1 `type Container struct`
_CONTAINER_FIELDS = (
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
    "restartPolicy", "restartPolicyRules", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe",
    "startupProbe", "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
    "securityContext", "stdin", "stdinOnce", "tty",
)
_PARAMETER_FIELDS = ("name", "default", "value", "valueFrom", "globalName", "enum", "description")
_ARTIFACT_FIELDS = (
    "name", "path", "mode", "from", "archiveLogs", "s3", "git", "http", "artifactory", "hdfs", "raw", "oss", "gcs",
    "azure", "plugin", "globalName", "archive", "optional", "subPath", "recurseMode", "fromExpression", "artifactGC",
    "deleted",
)
_ARTIFACT_LOCATION_FIELDS = (
    "archiveLogs", "s3", "git", "http", "artifactory", "hdfs", "raw", "oss", "gcs", "azure", "plugin",
)
_S3_FIELDS = (
    "endpoint", "bucket", "region", "insecure", "accessKeySecret", "secretKeySecret", "sessionTokenSecret", "roleARN",
    "useSDKCreds", "createBucketIfNotPresent", "encryptionOptions", "caSecret", "addressingStyle", "key",
)
_VALUE_FROM_FIELDS = (
    "path", "jsonPath", "jqFilter", "event", "parameter", "supplied", "configMapKeyRef", "default", "expression",
)
_RETRY_FIELDS = ("limit", "retryPolicy", "backoff", "affinity", "expression")
_ENV_FIELDS = ("name", "value", "valueFrom")
_MOUNT_FIELDS = (
    "name", "readOnly", "recursiveReadOnly", "mountPath", "subPath", "mountPropagation", "subPathExpr",
)


def _ordered(obj: Mapping[str, Any], order: Sequence[str]) -> dict[str, Any]:
    out = {k: obj[k] for k in order if k in obj}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


def _omit_empty(obj: Mapping[str, Any], keep: Sequence[str] = (), bools: Sequence[str] = ()) -> dict[str, Any]:
    """`omitempty`: drop nil, "", empty slices and maps; `false` only for the plain (non-pointer) bools in `bools`."""

    def empty(key: str, value: Any) -> bool:
        if value is None or (isinstance(value, str) and value == "") or (isinstance(value, (list, dict)) and not value):
            return True
        return value is False and key in bools

    return {k: v for k, v in obj.items() if k in keep or not empty(k, v)}


def any_string(value: Any) -> str:
    # wfv1.AnyString: JSON numbers and booleans are read as their text
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parameter(p: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(p)
    for key in ("default", "value", "description"):
        if key in out and out[key] is not None:
            out[key] = any_string(out[key])
    if isinstance(out.get("enum"), list):
        out["enum"] = [any_string(e) for e in out["enum"]]
    if isinstance(out.get("valueFrom"), Mapping):
        vf = dict(out["valueFrom"])
        if vf.get("default") is not None:
            vf["default"] = any_string(vf["default"])
        out["valueFrom"] = _ordered(_omit_empty(vf), _VALUE_FROM_FIELDS)
    out.setdefault("name", "")
    return _ordered(_omit_empty(out, keep=("name",)), _PARAMETER_FIELDS)


def artifact_location(loc: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(loc)
    if isinstance(out.get("s3"), Mapping):
        out["s3"] = _ordered(_omit_empty(out["s3"], bools=("useSDKCreds",)), _S3_FIELDS)
    return out


def artifact(a: Mapping[str, Any]) -> dict[str, Any]:
    out = artifact_location(a)
    out.setdefault("name", "")
    return _ordered(_omit_empty(out, keep=("name",), bools=("optional", "deleted")), _ARTIFACT_FIELDS)


def env_var(e: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(e)
    out.setdefault("name", "")
    return _ordered(_omit_empty(out, keep=("name",)), _ENV_FIELDS)


def volume_mount(m: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(m)
    out.setdefault("name", "")
    out.setdefault("mountPath", "")
    return _ordered(_omit_empty(out, keep=("name", "mountPath"), bools=("readOnly",)), _MOUNT_FIELDS)


def volume(v: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(v)
    out.setdefault("name", "")
    return _ordered(out, ("name",))


def container(c: Mapping[str, Any]) -> dict[str, Any]:
    """core/v1 Container as Go writes it: `name` even when empty, `resources` even when {}."""
    out = dict(c)
    out.setdefault("name", "")
    out.setdefault("resources", {})
    if isinstance(out.get("env"), list):
        out["env"] = [env_var(e) for e in out["env"]]
    if isinstance(out.get("volumeMounts"), list):
        out["volumeMounts"] = [volume_mount(m) for m in out["volumeMounts"]]
    shaped = _omit_empty(out, keep=("name", "resources"), bools=("stdin", "stdinOnce", "tty"))
    return _ordered(shaped, _CONTAINER_FIELDS)


def _sorted_map(m: Any) -> Any:
    return {k: m[k] for k in sorted(m)} if isinstance(m, Mapping) else m


def template(t: Mapping[str, Any]) -> dict[str, Any]:
    """A wfv1.Template after the controller's Go round trips (ProcessArgs unmarshals, DeepCopy, MustMarshallJSON)."""
    out = dict(t)
    inputs = dict(out.get("inputs") or {})
    if inputs.get("parameters"):
        inputs["parameters"] = [parameter(p) for p in inputs["parameters"]]
    if inputs.get("artifacts"):
        inputs["artifacts"] = [artifact(a) for a in inputs["artifacts"]]
    out["inputs"] = _ordered(_omit_empty(inputs), ("parameters", "artifacts"))
    outputs = dict(out.get("outputs") or {})
    if outputs.get("parameters"):
        outputs["parameters"] = [parameter(p) for p in outputs["parameters"]]
    if outputs.get("artifacts"):
        outputs["artifacts"] = [artifact(a) for a in outputs["artifacts"]]
    out["outputs"] = _ordered(_omit_empty(outputs), ("parameters", "artifacts", "result", "exitCode"))
    metadata = {k: _sorted_map(v) for k, v in (out.get("metadata") or {}).items()}
    out["metadata"] = _ordered(_omit_empty(metadata), ("annotations", "labels"))
    if "nodeSelector" in out:
        out["nodeSelector"] = _sorted_map(out["nodeSelector"])
    if isinstance(out.get("container"), Mapping):
        out["container"] = container(out["container"])
    if isinstance(out.get("script"), Mapping):
        script = dict(out["script"])
        source = script.pop("source", "")
        out["script"] = {**container(script), "source": source}  # ScriptTemplate: Container inline, then `source`
    for key in ("initContainers", "sidecars"):
        if isinstance(out.get(key), list):
            out[key] = [container(c) for c in out[key]]
    if isinstance(out.get("volumes"), list):
        out["volumes"] = [volume(v) for v in out["volumes"]]
    if isinstance(out.get("archiveLocation"), Mapping):
        out["archiveLocation"] = _ordered(artifact_location(out["archiveLocation"]), _ARTIFACT_LOCATION_FIELDS)
    if isinstance(out.get("retryStrategy"), Mapping):
        out["retryStrategy"] = _ordered(out["retryStrategy"], _RETRY_FIELDS)
    return _ordered(_omit_empty(out, keep=("inputs", "outputs", "metadata")), _TEMPLATE_FIELDS)


_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def marshal(value: Any) -> str:
    """encoding/json.Marshal: compact, UTF-8 (not ASCII-escaped), HTML-escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # <, >, & and the two separators only ever occur inside JSON strings, so a textual replacement is exact
    for raw, escaped in _HTML_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def byte_len(text: str) -> int:
    # Go's len(string) counts bytes
    return len(text.encode("utf-8"))
