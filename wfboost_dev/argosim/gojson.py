"""Encode objects the way the Argo controller's Go code does: key order, always-present fields, HTML escaping.

Why bother: the controller sends Go-marshalled JSON, and two strings we reproduce are read byte for byte by
someone — the `ARGO_TEMPLATE` env value (a JSON document inside a string, which tools hash or diff) and the
pod body itself (fixtures are compared and patched). Go's `encoding/json`:

* writes struct fields in declaration order and map keys sorted;
* always writes non-pointer struct fields even with `omitempty` (so `"inputs":{}`, `"metadata":{}`,
  `"resources":{}`) and fields without `omitempty` (a container's `"name":""`);
* escapes `<`, `>`, `&`, U+2028 and U+2029 (`\\u003c` ...), leaves other non-ASCII as UTF-8, and writes no
  spaces.

The field orders below are copied from the Go type declarations (k8s.io/api core/v1 for pods, argo-workflows
`pkg/apis/workflow/v1alpha1/workflow_types.go` at v3.7.18 for templates). Keys we do not know keep their
relative order after the known ones: unknown to us does not mean unknown to Kubernetes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wfboost.argo.names import ARTIFACT_DRIVERS

__all__ = ["go_json", "go_order"]

_CONTAINER = (
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "volumeMounts",
    "volumeDevices",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
)
_CONTAINER_CHILDREN = {
    "env": "[]EnvVar",
    "resources": "ResourceRequirements",
    "volumeMounts": "[]VolumeMount",
}
_ARTIFACT_LOCATION = ("archiveLogs", *ARTIFACT_DRIVERS)

# type name -> (field order, {field: child type}); "[]T" is a list of T, "map" a map (keys sorted).
_TYPES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    # ---- Kubernetes core/v1 -------------------------------------------------------------------------------
    "Pod": (("kind", "apiVersion", "metadata", "spec", "status"), {"metadata": "ObjectMeta", "spec": "PodSpec"}),
    "ConfigMap": (
        ("kind", "apiVersion", "metadata", "immutable", "data", "binaryData"),
        {"metadata": "ObjectMeta", "data": "map", "binaryData": "map"},
    ),
    "ObjectMeta": (
        (
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ),
        {"labels": "map", "annotations": "map", "ownerReferences": "[]OwnerReference"},
    ),
    "OwnerReference": (("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"), {}),
    "PodSpec": (
        (
            "volumes",
            "initContainers",
            "containers",
            "ephemeralContainers",
            "restartPolicy",
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "dnsPolicy",
            "nodeSelector",
            "serviceAccountName",
            "serviceAccount",
            "automountServiceAccountToken",
            "nodeName",
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "shareProcessNamespace",
            "securityContext",
            "imagePullSecrets",
            "hostname",
            "subdomain",
            "affinity",
            "schedulerName",
            "tolerations",
            "hostAliases",
            "priorityClassName",
            "priority",
            "dnsConfig",
            "readinessGates",
            "runtimeClassName",
            "enableServiceLinks",
            "preemptionPolicy",
            "overhead",
            "topologySpreadConstraints",
            "setHostnameAsFQDN",
            "os",
            "hostUsers",
            "schedulingGates",
            "resourceClaims",
            "resources",
            "hostnameOverride",
        ),
        {
            "volumes": "[]Volume",
            "initContainers": "[]Container",
            "containers": "[]Container",
            "nodeSelector": "map",
            "resources": "ResourceRequirements",
        },
    ),
    "Container": (_CONTAINER, _CONTAINER_CHILDREN),
    "EnvVar": (("name", "value", "valueFrom"), {"valueFrom": "EnvVarSource"}),
    "EnvVarSource": (
        ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef", "fileKeyRef"),
        {"fieldRef": "ObjectFieldSelector"},
    ),
    "ObjectFieldSelector": (("apiVersion", "fieldPath"), {}),
    "ResourceRequirements": (("limits", "requests", "claims"), {"limits": "map", "requests": "map"}),
    "VolumeMount": (
        ("name", "readOnly", "recursiveReadOnly", "mountPath", "subPath", "mountPropagation", "subPathExpr"),
        {},
    ),
    "Volume": (
        (
            "name",
            "hostPath",
            "emptyDir",
            "gcePersistentDisk",
            "awsElasticBlockStore",
            "gitRepo",
            "secret",
            "nfs",
            "iscsi",
            "glusterfs",
            "persistentVolumeClaim",
            "rbd",
            "flexVolume",
            "cinder",
            "cephfs",
            "flocker",
            "downwardAPI",
            "fc",
            "azureFile",
            "configMap",
            "vsphereVolume",
            "quobyte",
            "azureDisk",
            "photonPersistentDisk",
            "projected",
            "portworxVolume",
            "scaleIO",
            "storageos",
            "csi",
            "ephemeral",
            "image",
        ),
        {
            "secret": "SecretVolumeSource",
            "configMap": "ConfigMapVolumeSource",
            "persistentVolumeClaim": "PersistentVolumeClaimVolumeSource",
            "image": "ImageVolumeSource",
        },
    ),
    "SecretVolumeSource": (("secretName", "items", "defaultMode", "optional"), {"items": "[]KeyToPath"}),
    "ConfigMapVolumeSource": (("name", "items", "defaultMode", "optional"), {"items": "[]KeyToPath"}),
    "KeyToPath": (("key", "path", "mode"), {}),
    "PersistentVolumeClaimVolumeSource": (("claimName", "readOnly"), {}),
    "ImageVolumeSource": (("reference", "pullPolicy"), {}),
    # ---- Argo v1alpha1 (workflow_types.go) ----------------------------------------------------------------
    "Template": (
        (
            "name",
            "inputs",
            "outputs",
            "nodeSelector",
            "affinity",
            "metadata",
            "daemon",
            "steps",
            "container",
            "containerSet",
            "script",
            "resource",
            "dag",
            "suspend",
            "data",
            "http",
            "plugin",
            "volumes",
            "initContainers",
            "sidecars",
            "archiveLocation",
            "activeDeadlineSeconds",
            "retryStrategy",
            "parallelism",
            "failFast",
            "tolerations",
            "schedulerName",
            "priorityClassName",
            "priority",
            "serviceAccountName",
            "automountServiceAccountToken",
            "executor",
            "hostAliases",
            "securityContext",
            "podSpecPatch",
            "metrics",
            "synchronization",
            "memoize",
            "timeout",
            "annotations",
            "pendingTimeout",
            "podResources",
            "resourceClaims",
        ),
        {
            "inputs": "Inputs",
            "outputs": "Outputs",
            "nodeSelector": "map",
            "metadata": "Metadata",
            "container": "Container",
            "containerSet": "ContainerSetTemplate",
            "script": "ScriptTemplate",
            "volumes": "[]Volume",
            "initContainers": "[]UserContainer",
            "sidecars": "[]UserContainer",
            "archiveLocation": "ArtifactLocation",
        },
    ),
    "Inputs": (("parameters", "artifacts"), {"parameters": "[]Parameter", "artifacts": "[]Artifact"}),
    "Outputs": (
        ("parameters", "artifacts", "result", "exitCode"),
        {"parameters": "[]Parameter", "artifacts": "[]Artifact"},
    ),
    "Parameter": (
        ("name", "default", "value", "valueFrom", "globalName", "enum", "description"),
        {"valueFrom": "ValueFrom"},
    ),
    "ValueFrom": (
        (
            "path",
            "jsonPath",
            "jqFilter",
            "event",
            "parameter",
            "supplied",
            "configMapKeyRef",
            "default",
            "expression",
        ),
        {},
    ),
    "Artifact": (
        (
            "name",
            "path",
            "mode",
            "from",
            *_ARTIFACT_LOCATION,
            "globalName",
            "archive",
            "optional",
            "subPath",
            "recurseMode",
            "fromExpression",
            "artifactGC",
            "deleted",
        ),
        {"s3": "S3Artifact"},
    ),
    "ArtifactLocation": (_ARTIFACT_LOCATION, {"s3": "S3Artifact"}),
    "S3Artifact": (
        (
            "endpoint",
            "bucket",
            "region",
            "insecure",
            "accessKeySecret",
            "secretKeySecret",
            "sessionTokenSecret",
            "roleARN",
            "useSDKCreds",
            "createBucketIfNotPresent",
            "encryptionOptions",
            "caSecret",
            "key",
        ),
        {"accessKeySecret": "SecretKeySelector", "secretKeySecret": "SecretKeySelector"},
    ),
    "SecretKeySelector": (("name", "key", "optional"), {}),
    "Metadata": (("annotations", "labels"), {"annotations": "map", "labels": "map"}),
    "ScriptTemplate": ((*_CONTAINER, "source"), _CONTAINER_CHILDREN),
    "UserContainer": ((*_CONTAINER, "mirrorVolumeMounts"), _CONTAINER_CHILDREN),
    "ContainerSetTemplate": (
        ("containers", "volumeMounts", "retryStrategy"),
        {"containers": "[]ContainerNode", "volumeMounts": "[]VolumeMount"},
    ),
    "ContainerNode": ((*_CONTAINER, "dependencies"), _CONTAINER_CHILDREN),
}

# Fields Go writes even when empty: non-pointer structs (omitempty has no effect on them) and fields declared
# without omitempty. Values are what an absent field marshals to.
_ALWAYS: dict[str, dict[str, Any]] = {
    "Template": {"inputs": {}, "outputs": {}, "metadata": {}},
    "Container": {"name": "", "resources": {}},
    "ScriptTemplate": {"name": "", "resources": {}},
    "UserContainer": {"name": "", "resources": {}},
    "ContainerNode": {"name": "", "resources": {}},
    "ObjectMeta": {"creationTimestamp": None},
    "Pod": {"metadata": {}, "spec": {}, "status": {}},
    "ConfigMap": {"metadata": {}},
}


def go_order(obj: Any, type_name: str) -> Any:
    """Return a copy of `obj` with keys in Go declaration order for `type_name`, plus always-written fields.

    `None` values of known fields are dropped (Go omits nil pointers/slices under `omitempty`), except the
    few fields Go writes as `null` (`creationTimestamp`).
    """
    if type_name == "map":
        if isinstance(obj, Mapping):
            return {k: obj[k] for k in sorted(obj)}
        return obj
    if type_name.startswith("[]"):
        if isinstance(obj, list):
            return [go_order(x, type_name[2:]) for x in obj]
        return obj
    if not isinstance(obj, Mapping):
        return obj
    spec = _TYPES.get(type_name)
    if spec is None:
        return dict(obj)
    order, children = spec
    always = _ALWAYS.get(type_name, {})
    out: dict[str, Any] = {}
    for key in order:
        if key in obj:
            value = obj[key]
            if value is None and key not in always:
                continue
            out[key] = go_order(value, children[key]) if key in children else value
        elif key in always:
            default = always[key]
            out[key] = go_order(default, children[key]) if key in children else default
    for key, value in obj.items():
        if key not in out and key not in order:
            out[key] = value
    return out


def go_json(obj: Any) -> str:
    """Serialise like Go's `json.Marshal`: compact, UTF-8 kept, HTML-significant characters escaped.

    Key order is the caller's business (see `go_order`); this only reproduces Go's byte-level choices.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
