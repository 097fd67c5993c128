"""Cache key v3: what a step's result is a function of, made canonical and hashed.

The key is the sha256 of the RFC 8785 canonical JSON of `key_material(step, …)`. Everything that can change what the
main container computes goes in; everything that varies from run to run of the same computation stays out (pod and
workflow names and uids, node ids, deadlines, Argo's own env and volumes, resources, scheduling). docs/cache-key.md
explains each choice and carries test vectors; changing anything here changes every key, so the version goes up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, cast

import orjson
import rfc8785

from wfboost.argo import names
from wfboost.argo.artifacts import ArtifactLocationError, relocate
from wfboost.argo.pods import ArgoStep

KEY_SCHEMA = "wfboost.io/cache-key/v3"

# Env that Argo sets per run or per container (ARGO_*), and trace context: never part of what a step computes.
_VOLATILE_ENV_PREFIXES = ("ARGO_",)
_VOLATILE_ENV = frozenset({"TRACEPARENT", "TRACESTATE"})

# Where an output artifact is uploaded does not change what the step computed (and often embeds the pod name).
_ARTIFACT_LOCATIONS = frozenset({*names.ARTIFACT_DRIVERS, "archiveLogs", "artifactGC", "deleted", "globalName"})
# Fields of an input artifact that do not identify its content.
_INPUT_ARTIFACT_NOISE = frozenset({"artifactGC", "deleted", "globalName", "from", "fromExpression"})


class KeyMaterial(TypedDict):
    schema: str
    namespace: str | None
    containers: list[dict[str, Any]]
    initContainers: list[Any]
    sidecars: list[Any]
    script: str | None
    inputArtifacts: list[dict[str, Any]]
    outputs: dict[str, Any]
    resource: Any
    seed: str | None


def key_material(step: ArgoStep, *, share_across_namespaces: bool = False, seed: str | None = None) -> KeyMaterial:
    """The inputs of the key, as plain JSON; the step must be complete (no offloaded parts left)."""
    if step.offloads:
        raise ValueError(f"step {step.pod_name} still has offloaded parts: {', '.join(step.offloads)}")
    template = step.template or {}
    pod_spec = step.pod.get("spec") or {}
    volumes = {str(v.get("name")): v for v in pod_spec.get("volumes") or [] if isinstance(v, Mapping)}
    user_containers = [
        (i, c) for i, c in enumerate(pod_spec.get("containers") or [])
        if c.get("name") not in names.EXECUTOR_CONTAINERS and _is_emissary_wrapped(c)
    ]
    if step.template_kind != "containerSet":
        user_containers = [(step.main_index, step.main)]
    containers = [_container(step, i, c, volumes, _declared_env(template)) for i, c in user_containers]
    beside = {
        field: sorted(
            (_container(step, -1, c, volumes, _declared_env_of(template, field, str(c.get("name"))))
             for i, c in enumerate(pod_spec.get(field) or [])
             if isinstance(c, Mapping) and c.get("name") not in names.EXECUTOR_CONTAINERS
             and not (field == "containers" and (i == step.main_index or step.template_kind == "containerSet"))),
            key=lambda c: str(c.get("name")),
        )
        for field in ("initContainers", "containers")
    }
    script = (template.get("script") or {}).get("source")
    inputs = template.get("inputs") or {}
    outputs = template.get("outputs") or {}
    return {
        "schema": KEY_SCHEMA,
        "namespace": None if share_across_namespaces else step.namespace,
        "containers": containers,
        # Every other container of the pod runs beside main and may fetch or make what main reads: the template's
        # init containers and sidecars, and any that `podSpecPatch` or another webhook added. As the pod runs them
        # (volumes resolved to their sources), not as a template declares them.
        "initContainers": beside["initContainers"],
        "sidecars": beside["containers"],
        "script": script if isinstance(script, str) else None,
        "inputArtifacts": sorted(
            (_input_artifact(a, template.get("archiveLocation")) for a in inputs.get("artifacts") or []
             if isinstance(a, Mapping)),
            key=lambda a: str(a.get("name")),
        ),
        "outputs": {
            "parameters": sorted(
                (_output_parameter(p) for p in outputs.get("parameters") or [] if isinstance(p, Mapping)),
                key=lambda p: str(p.get("name")),
            ),
            "artifacts": sorted(
                (_without(a, _ARTIFACT_LOCATIONS) for a in outputs.get("artifacts") or [] if isinstance(a, Mapping)),
                key=lambda a: str(a.get("name")),
            ),
        },
        "resource": template.get("resource"),
        "seed": seed,
    }


def _input_artifact(artifact: Mapping[str, Any], archive_location: Any) -> dict[str, Any]:
    """An input artifact as the executor will fetch it: a key-only location resolves against the step's own artifact
    repository (`ArtifactLocation.Relocate`), so two steps reading `datasets/current.csv` from different buckets
    have different keys, and a re-pointed cached artifact (whole location) keys like the key-only original it
    stands for. `archiveLogs` comes with the repository, not with the artifact. When the location cannot be resolved
    the executor fails the step anyway; it is keyed as written."""
    resolved: Mapping[str, Any] = artifact
    if isinstance(archive_location, Mapping):
        try:
            resolved = relocate(artifact, archive_location)
        except ArtifactLocationError:
            resolved = artifact
    return _without(resolved, _INPUT_ARTIFACT_NOISE | {"archiveLogs"})


# The integers RFC 8785 serialises exactly (JSON numbers are IEEE doubles); beyond them it refuses.
_SAFE_INTEGER = 2**53 - 1


def canonical(material: KeyMaterial | Mapping[str, Any]) -> bytes:
    """The material as RFC 8785 canonical JSON (JCS).

    orjson with sorted keys writes exactly the same bytes for what key material holds — objects with ASCII keys
    (UTF-16 and UTF-8 orders agree on them), strings (both escape `"`, `\\`, the short forms and other control
    characters as lowercase `\\u00xx`, and leave everything else as UTF-8), booleans, null and safe integers — at a
    fraction of the reference implementation's cost on the admission path. Anything else (a float, a non-ASCII key,
    a lone surrogate, a huge integer) goes to the reference implementation, which also raises where JCS has no
    form. tests/test_keys.py checks the two agree on random values.
    """
    if _jcs_as_orjson(material):
        return orjson.dumps(material, option=orjson.OPT_SORT_KEYS)
    return bytes(rfc8785.dumps(cast(Any, material)))


def _jcs_as_orjson(value: Any) -> bool:
    if isinstance(value, str):
        return not _has_surrogate(value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _jcs_as_orjson(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_jcs_as_orjson(item) for item in value)
    return False


def _has_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    return any("\ud800" <= char <= "\udfff" for char in text)


def cache_key(material: KeyMaterial | Mapping[str, Any]) -> str:
    """The key: lowercase hex sha256 of the canonical material."""
    return hashlib.sha256(canonical(material)).hexdigest()


def _container(
    step: ArgoStep, index: int, container: Mapping[str, Any], volumes: Mapping[str, Any], declared: frozenset[str]
) -> dict[str, Any]:
    command = [str(c) for c in container.get("command") or []]
    if names.EMISSARY_SEPARATOR in command:
        command = command[command.index(names.EMISSARY_SEPARATOR) + 1 :]
    args = list(step.args or ()) if index == step.main_index else [str(a) for a in container.get("args") or []]
    env = [
        _without(e, frozenset())
        for e in container.get("env") or []
        if isinstance(e, Mapping) and not _volatile_env(str(e.get("name", "")), declared)
    ]
    mounts = []
    for mount in container.get("volumeMounts") or []:
        if not isinstance(mount, Mapping) or mount.get("name") in names.ARGO_VOLUMES:
            continue
        volume = volumes.get(str(mount.get("name")), {})
        source = _without(volume, frozenset({"name"}))
        mounts.append({**_without(mount, frozenset({"name"})), "volume": source})
    return {
        "name": container.get("name") if step.template_kind == "containerSet" or index < 0 else None,
        "image": container.get("image"),
        "command": command,
        "args": args,
        "workingDir": container.get("workingDir"),
        "env": sorted(env, key=lambda e: str(e.get("name"))),
        "envFrom": list(container.get("envFrom") or []),
        "volumeMounts": sorted(mounts, key=lambda m: (str(m.get("mountPath")), str(m.get("subPath", "")))),
    }


def _output_parameter(parameter: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in parameter.items() if k not in ("value", "globalName", "description")}


def _volatile_env(name: str, declared: frozenset[str]) -> bool:
    """Argo's own per-run variables; a variable the template itself declares is the user's, whatever its name."""
    if name in declared:
        return False
    return name in _VOLATILE_ENV or name.startswith(_VOLATILE_ENV_PREFIXES)


def _declared_env(template: Mapping[str, Any]) -> frozenset[str]:
    body = template.get("container") or template.get("script") or {}
    return frozenset(str(e.get("name")) for e in body.get("env") or [] if isinstance(e, Mapping))


def _declared_env_of(template: Mapping[str, Any], field: str, name: str) -> frozenset[str]:
    """The env names a template declares for one of its init containers or sidecars."""
    declared = template.get("initContainers" if field == "initContainers" else "sidecars") or []
    for container in declared:
        if isinstance(container, Mapping) and container.get("name") == name:
            return frozenset(str(e.get("name")) for e in container.get("env") or [] if isinstance(e, Mapping))
    return frozenset()


def _is_emissary_wrapped(container: Mapping[str, Any]) -> bool:
    command: Sequence[Any] = container.get("command") or []
    return names.EMISSARY_SEPARATOR in command


def _without(value: Mapping[str, Any], drop: frozenset[str]) -> dict[str, Any]:
    return {str(k): v for k, v in value.items() if k not in drop}
