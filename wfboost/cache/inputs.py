"""Inputs a cache key cannot see: what a step reads that its pod spec names but does not contain. Pure: no I/O.

The key holds the pod spec's words (an image reference, a ConfigMap's name, a volume claim), not what they point at.
When what they point at can change under the same words, a step's result is not provably a function of its key,
and a hit could replay the result of other inputs: the worst bug a cache can have. So such a step is not memoized,
with a reason, unless the policy says that kind of input never changes (`memoize.trustImageTags`,
`trustConfigMapsAndSecrets`, `trustReadOnlyVolumes`, `allowWritableVolumes`).

Every container of the step that runs beside the replay is checked, not only main: the template's own init
containers and sidecars run on a hit too, and what they fetch is what main would have read. Argo's own containers
and volumes are not the step's inputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from wfboost.argo import names
from wfboost.argo.artifacts import ArtifactLocationError, driver_of, get_key
from wfboost.cache.runs import written_once
from wfboost.policy import EffectiveMemoize

# A git revision that names one commit (SHA-1 or SHA-256 object name), not a branch or tag that can move.
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Volume sources whose content lives and dies with the pod.
_POD_LOCAL = frozenset({"emptyDir"})
# The token projection the ServiceAccount admission plugin adds to every pod: credentials, not data.
_TOKEN_CONFIGMAP = "kube-root-ca.crt"


def unseen_input(step_pod: Mapping[str, Any], settings: EffectiveMemoize) -> tuple[str, str] | None:
    """(reason, detail) for the first input of the pod's user containers the key cannot see; None when there is
    none the policy does not trust."""
    spec = step_pod.get("spec") or {}
    shared = [field for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field) is True]
    if shared:
        return "host_namespace", f"{', '.join(shared)}: the step can read the node's own state"
    volumes = {str(v.get("name")): v for v in spec.get("volumes") or [] if isinstance(v, Mapping)}
    for container in _user_containers(spec):
        found = _container_inputs(container, volumes, settings)
        if found is not None:
            reason, detail = found
            return reason, f"{container.get('name')}: {detail}"
    return None


def unpinned_artifact(template: Mapping[str, Any], settings: EffectiveMemoize) -> tuple[str, str] | None:
    """(reason, detail) for the first input artifact whose location can hold other content than the run the key
    was made from saw; None when each is pinned.

    Argo's artifact locations name a place (bucket and key, URL, git branch), never a version of what is there
    (none of `S3Artifact`, `GCSArtifact`, `HTTPArtifact`… has a version field in
    pkg/apis/workflow/v1alpha1/workflow_types.go), so the key can hold only the place. Pinned by content: `raw`
    (the content is the artifact), git at a full commit id, and any key under a `wfboost-run-<id>` segment, where
    a memoized run wrote once (cache/runs.py): that is how a step's outputs reach the steps after it.
    """
    if settings.trust_artifact_locations:
        return None
    for artifact in (template.get("inputs") or {}).get("artifacts") or []:
        if isinstance(artifact, Mapping):
            found = _artifact_input(artifact)
            if found is not None:
                return "reads_mutable_artifact", f"input artifact {artifact.get('name')}: {found}"
    return None


def publishing_artifact(template: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) for the first output artifact uploaded to a place of its own choosing (an explicit key or
    location): a publication that something outside the workflow may read, which a replay would not make, and a
    place that the next run writes again. Artifacts without a key go under the run's own archive key."""
    for artifact in (template.get("outputs") or {}).get("artifacts") or []:
        if not isinstance(artifact, Mapping):
            continue
        try:
            driver = driver_of(artifact)
            key = get_key(artifact) if driver not in (None, "git", "raw") else ""
        except ArtifactLocationError:
            key = ""
        if driver in ("git", "raw") or key:
            where = f"key {key}" if key else driver
            return "publishes_artifact", (
                f"output artifact {artifact.get('name')} is uploaded to {where}, a place of its own that a replay "
                "would not write and the next run writes again"
            )
    return None


def _artifact_input(artifact: Mapping[str, Any]) -> str | None:
    try:
        driver = driver_of(artifact)
    except ArtifactLocationError as exc:
        return str(exc)
    if driver is None or driver == "raw":
        return None  # nothing to fetch (an optional input left out), or the content itself
    if driver == "git":
        git = artifact.get("git") or {}
        revision = str(git.get("revision") or "")
        if _COMMIT.fullmatch(revision.lower()):
            return None
        at = f"revision {revision}" if revision else "its default branch"
        return f"git {git.get('repo')} at {at}, which can move: pin a commit id, or set memoize.trustArtifactLocations"
    try:
        key = get_key(artifact)
    except ArtifactLocationError as exc:
        return str(exc)
    if written_once(key):
        return None
    return (
        f"{driver} key {key} can hold other content later (Argo's locations have no version): artifacts written by "
        "memoized steps are pinned; for others set memoize.trustArtifactLocations, or mark the step "
        "wfboost.io/cache: \"false\""
    )


def _user_containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            if isinstance(container, Mapping) and container.get("name") not in names.EXECUTOR_CONTAINERS:
                yield container


def _container_inputs(
    container: Mapping[str, Any], volumes: Mapping[str, Mapping[str, Any]], settings: EffectiveMemoize
) -> tuple[str, str] | None:
    image = _image(str(container.get("image") or ""), str(container.get("imagePullPolicy") or ""), settings)
    if image is not None:
        return image
    if container.get("volumeDevices"):
        return "block_device", "writes or reads a raw block device, which a replay cannot reproduce"
    for env in container.get("env") or []:
        found = _env_source(env.get("valueFrom") if isinstance(env, Mapping) else None, settings)
        if found is not None:
            return found[0], f"env {env.get('name')}: {found[1]}"
    for source in container.get("envFrom") or []:
        if not isinstance(source, Mapping):
            continue
        if "configMapRef" in source and not settings.trust_config_maps_and_secrets:
            return "reads_configmap", f"envFrom ConfigMap {(source['configMapRef'] or {}).get('name')}"
        if "secretRef" in source and not settings.trust_config_maps_and_secrets:
            return "reads_secret", f"envFrom Secret {(source['secretRef'] or {}).get('name')}"
    for mount in container.get("volumeMounts") or []:
        if not isinstance(mount, Mapping) or mount.get("name") in names.ARGO_VOLUMES:
            continue
        volume = volumes.get(str(mount.get("name")), {})
        found = _volume(volume, read_only=bool(mount.get("readOnly")), settings=settings)
        if found is not None:
            return found[0], f"volume {mount.get('name')} at {mount.get('mountPath')}: {found[1]}"
    return None


def _image(image: str, pull_policy: str, settings: EffectiveMemoize) -> tuple[str, str] | None:
    """An image pinned by digest is always the same; a tag can be pushed again."""
    if "@sha256:" in image:
        return None
    if not settings.trust_image_tags:
        return "image_not_pinned", (
            f"image {image} is a tag, which can move to another image: pin it by digest (@sha256:…), or set the "
            "policy's memoize.trustImageTags"
        )
    if pull_policy == "Always":
        return "image_pull_always", f"image {image} is pulled again on every run (imagePullPolicy: Always)"
    if _tag(image) in ("", "latest"):
        return "image_tag_latest", f"image {image} has no fixed tag (latest moves by design)"
    return None


def _tag(image: str) -> str:
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[colon + 1 :] if colon > slash else ""


def _env_source(value_from: Any, settings: EffectiveMemoize) -> tuple[str, str] | None:
    if not isinstance(value_from, Mapping):
        return None
    if "configMapKeyRef" in value_from and not settings.trust_config_maps_and_secrets:
        return "reads_configmap", f"ConfigMap {(value_from['configMapKeyRef'] or {}).get('name')}"
    if "secretKeyRef" in value_from and not settings.trust_config_maps_and_secrets:
        return "reads_secret", f"Secret {(value_from['secretKeyRef'] or {}).get('name')}"
    if "fieldRef" in value_from:
        return _pod_field(str((value_from["fieldRef"] or {}).get("fieldPath") or ""), settings)
    if "resourceFieldRef" in value_from:
        return "reads_pod_field", "the container's resources (not part of the key)"
    return None


def _pod_field(path: str, settings: EffectiveMemoize) -> tuple[str, str] | None:
    """The pod's own name, uid, labels, node or IP differ on every run; its namespace is in the key (unless shared)."""
    if path == "metadata.namespace" and not settings.share_across_namespaces:
        return None
    return "reads_pod_field", f"the pod's {path}, which is not part of the key"


def _volume(volume: Mapping[str, Any], *, read_only: bool, settings: EffectiveMemoize) -> tuple[str, str] | None:
    sources = [key for key in volume if key != "name"]
    if not sources or all(source in _POD_LOCAL for source in sources):
        return None
    if "configMap" in volume:
        if settings.trust_config_maps_and_secrets or volume["configMap"].get("name") == _TOKEN_CONFIGMAP:
            return None
        return "reads_configmap", f"ConfigMap {volume['configMap'].get('name')}"
    if "secret" in volume:
        return None if settings.trust_config_maps_and_secrets else (
            "reads_secret", f"Secret {volume['secret'].get('secretName')}"
        )
    if "downwardAPI" in volume:
        return _downward(volume["downwardAPI"].get("items") or [], settings)
    if "projected" in volume:
        return _projected(volume["projected"].get("sources") or [], settings)
    if "image" in volume:
        reference = volume["image"] or {}
        return _image(str(reference.get("reference") or ""), str(reference.get("pullPolicy") or ""), settings)
    claim = volume.get("persistentVolumeClaim")
    writable = not read_only and not (isinstance(claim, Mapping) and claim.get("readOnly"))
    kind = sources[0]
    if writable:
        return None if settings.allow_writable_volumes else (
            "writable_volume", f"a writable {kind} volume, which outlives the pod (the replay would not write it)"
        )
    return None if settings.trust_read_only_volumes else (
        "reads_persistent_volume", f"a {kind} volume whose content can change under the same name"
    )


def _downward(items: Any, settings: EffectiveMemoize) -> tuple[str, str] | None:
    for item in items or []:
        if not isinstance(item, Mapping):
            continue
        if "fieldRef" in item:
            found = _pod_field(str((item["fieldRef"] or {}).get("fieldPath") or ""), settings)
            if found is not None:
                return found
        if "resourceFieldRef" in item:
            return "reads_pod_field", "the container's resources (not part of the key)"
    return None


def _projected(sources: Any, settings: EffectiveMemoize) -> tuple[str, str] | None:
    if _is_token_projection(sources):
        return None
    for source in sources or []:
        if not isinstance(source, Mapping):
            continue
        if "configMap" in source:
            name = (source["configMap"] or {}).get("name")
            if name != _TOKEN_CONFIGMAP and not settings.trust_config_maps_and_secrets:
                return "reads_configmap", f"ConfigMap {name}"
        if "secret" in source and not settings.trust_config_maps_and_secrets:
            return "reads_secret", f"Secret {(source['secret'] or {}).get('name')}"
        if "downwardAPI" in source:
            found = _downward((source["downwardAPI"] or {}).get("items"), settings)
            if found is not None:
                return found
    return None  # serviceAccountToken, clusterTrustBundle: credentials, not data


def _is_token_projection(sources: Any) -> bool:
    """The `kube-api-access-*` volume the ServiceAccount admission plugin adds to every pod (plugin/pkg/admission/
    serviceaccount TokenVolumeSource): a token, the cluster's CA bundle and the namespace, which are how a client
    reaches the API server, not data a step computes from. Only that exact shape: a projection that adds anything
    else is checked source by source."""
    kinds: list[str] = []
    for source in sources or []:
        if not isinstance(source, Mapping) or len(source) != 1:
            return False
        kind, body = next(iter(source.items()))
        if not _token_projection_part(kind, body or {}):
            return False
        kinds.append(kind)
    return "serviceAccountToken" in kinds


def _token_projection_part(kind: str, body: Mapping[str, Any]) -> bool:
    if kind == "serviceAccountToken":
        return True
    if kind == "configMap":
        return body.get("name") == _TOKEN_CONFIGMAP
    if kind == "downwardAPI":
        return all(
            isinstance(item, Mapping) and (item.get("fieldRef") or {}).get("fieldPath") == "metadata.namespace"
            for item in body.get("items") or []
        )
    return False
