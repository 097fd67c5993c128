"""Whether a step may be memoized, and with which per-step controls. Pure: no I/O.

Shared by the webhook (before a lookup) and the recorder (before recording), so both apply the same rules.

Memoization must never change what a step computes, so anything that is not a function of the pod's spec is left
alone: resource/HTTP/plugin/data steps, Kubeflow v2 driver pods (they read Kubeflow's metadata store), steps that
write a persistent volume (unless the policy allows it), steps marked off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from wfboost.argo.pods import ArgoStep
from wfboost.cache.keys import KeyMaterial, cache_key, key_material
from wfboost.cache.keyspace import DEFAULT_RETENTION
from wfboost.policy import CACHE, CACHE_SEED, MAX_STALENESS, DurationError, EffectiveMemoize, Policy, parse_duration

KFP_RUNTIME_ROLE = "pipelines.kubeflow.org/runtime-role"
_MEMOIZABLE_KINDS = ("container", "script")


class BadControl(ValueError):
    """A per-step control has a value we cannot use; the step is left alone and the pod says why."""


@dataclass(frozen=True)
class Skip:
    """The step is not memoized: `reason` is a metric label, `detail` a sentence for the pod and `cache explain`."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Candidate:
    """The step may be memoized: its key, what the key was made of, and how old a result it accepts."""

    key: str
    material: KeyMaterial
    staleness: timedelta
    controls: StepControls


def assess(step: ArgoStep, settings: EffectiveMemoize) -> Skip | Candidate:
    """Whether and how a step is memoized: the one decision the webhook (before a lookup), the recorder (before
    recording) and `wfboost cache explain` all make, from the same code. The step must be complete (no offloaded
    parts left)."""
    try:
        controls = step_controls(step)
    except BadControl as exc:
        return Skip("bad_control", str(exc))
    reason = skip_reason(step, settings, controls)
    if reason is not None:
        return Skip(reason, SKIP_DETAILS.get(reason, f"not a memoizable step ({reason})"))
    material = key_material(step, share_across_namespaces=settings.share_across_namespaces, seed=controls.seed)
    return Candidate(cache_key(material), material, settings.staleness(controls.max_staleness), controls)


SKIP_DETAILS = {
    "cache_off": "the step says wfboost.io/cache: \"false\"",
    "kfp_driver": "a Kubeflow driver pod (reads Kubeflow's metadata store, not a function of its spec)",
    "writable_volume": "main mounts a writable persistent volume (the policy's allowWritableVolumes is off)",
    "image_not_pinned": "the policy requires digest-pinned images and main's image has no @sha256:",
}


@dataclass(frozen=True)
class StepControls:
    cache: bool | None  # None: not set on the step
    max_staleness: timedelta | None
    seed: str | None


def step_controls(step: ArgoStep) -> StepControls:
    """Controls from pod labels or annotations (template `metadata` copies both onto the pod)."""
    values = {**step.labels, **step.annotations}
    cache = values.get(CACHE)
    if cache is not None and cache.strip().lower() not in ("true", "false"):
        raise BadControl(f"{CACHE} must be \"true\" or \"false\", not {cache!r}")
    staleness = values.get(MAX_STALENESS)
    parsed = None
    if staleness is not None:
        try:
            parsed = parse_duration(staleness.strip())
        except DurationError as exc:
            raise BadControl(f"{MAX_STALENESS}: {exc}") from None
    return StepControls(
        cache=None if cache is None else cache.strip().lower() == "true",
        max_staleness=parsed,
        seed=values.get(CACHE_SEED),
    )


def skip_reason(step: ArgoStep, settings: EffectiveMemoize, controls: StepControls) -> str | None:
    """Why this step is not memoized, or None when it may be."""
    if controls.cache is False:
        return "cache_off"
    if step.template_kind not in _MEMOIZABLE_KINDS:
        return f"template_{step.template_kind.lower()}"
    if _is_kfp_driver(step):
        return "kfp_driver"
    if not settings.allow_writable_volumes and _writes_persistent_volume(step):
        return "writable_volume"
    if settings.require_digest_pinned_images and "@sha256:" not in str(step.main.get("image", "")):
        return "image_not_pinned"
    return None


def _is_kfp_driver(step: ArgoStep) -> bool:
    if step.annotations.get(KFP_RUNTIME_ROLE) == "driver":
        return True
    program = step.command[0].rsplit("/", 1)[-1] if step.command else ""
    return program == "driver" and "--type" in (step.args or ())


# Volume sources whose content lives and dies with the pod, or that are read-only by nature: writing them leaves
# nothing behind that a replay would fail to reproduce.
_POD_LOCAL_SOURCES = frozenset({"emptyDir", "configMap", "secret", "downwardAPI", "projected", "image"})


def _writes_persistent_volume(step: ArgoStep) -> bool:
    """A read-write mount of anything that outlives the pod (a PVC, NFS, hostPath, CSI, …): the step's effect there
    would not happen on a replay, so a later step reading that volume would see another run's data."""
    volumes: dict[str, Mapping[str, Any]] = {
        str(v.get("name")): v for v in (step.pod.get("spec") or {}).get("volumes") or []
    }
    for mount in step.main.get("volumeMounts") or []:
        if mount.get("readOnly"):
            continue
        volume = volumes.get(str(mount.get("name")), {})
        sources = [key for key in volume if key != "name"]
        if not sources or all(source in _POD_LOCAL_SOURCES for source in sources):
            continue
        claim = volume.get("persistentVolumeClaim")
        if claim is not None and claim.get("readOnly"):
            continue
        return True
    return False


def retention(policy: Policy) -> timedelta:
    """How long entries are kept: the admin maximum staleness (no lookup may accept older), else a default."""
    return policy.memoize.max_staleness_limit or DEFAULT_RETENTION
