"""Whether a step may be memoized, and with which per-step controls. Pure: no I/O.

Shared by the webhook (before a lookup) and the recorder (before recording), so both apply the same rules.

Memoization must never change what a step computes, so anything whose result is not provably a function of its key
is left alone, with a reason: resource/HTTP/plugin/data steps; steps whose meaning is not their outputs (exit
handlers, lifecycle hooks, daemons, templates with Argo's own memoize); Kubeflow v2 driver pods (they read Kubeflow's
metadata store); steps that read what the key cannot see (cache/inputs.py: images by tag, ConfigMaps, Secrets, the
pod's own fields, persistent volumes, block devices) unless the policy trusts that kind of input; Windows pods (the
replay image is Linux); steps marked off, or not opted in where the policy asks for opt-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from wfboost.argo import names
from wfboost.argo.pods import ArgoStep
from wfboost.cache.errors import CacheError
from wfboost.cache.inputs import publishing_artifact, unpinned_artifact, unseen_input
from wfboost.cache.keys import KeyMaterial, cache_key, key_material
from wfboost.cache.keyspace import DEFAULT_RETENTION
from wfboost.policy import (
    CACHE,
    CACHE_SEED,
    LATCH,
    MAX_STALENESS,
    DurationError,
    EffectiveMemoize,
    Policy,
    parse_duration,
)

KFP_RUNTIME_ROLE = "pipelines.kubeflow.org/runtime-role"
_OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")
_MEMOIZABLE_KINDS = ("container", "script")


class BadControl(CacheError, ValueError):
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
    skipped = skip(step, settings, controls)
    if skipped is not None:
        return skipped
    material = key_material(step, share_across_namespaces=settings.share_across_namespaces, seed=controls.seed)
    return Candidate(cache_key(material), material, settings.staleness(controls.max_staleness), controls)


SKIP_DETAILS = {
    "cache_off": "the step says wfboost.io/cache: \"false\"",
    "not_opted_in": "the policy memoizes only steps that say wfboost.io/cache: \"true\" (memoize.optIn)",
    "kfp_driver": "a Kubeflow driver pod (reads Kubeflow's metadata store, not a function of its spec)",
    "exit_handler": "an exit handler: it runs for its effect when the workflow ends, not for its outputs",
    "lifecycle_hook": "a lifecycle hook: it runs for its effect, not for its outputs",
    "daemon": "a daemon step: a replay would exit at once and the steps that talk to it would fail",
    "argo_memoize": "the template has Argo's own memoize, which decides about it first",
    "windows_node": "a Windows pod: the replay image is Linux",
}


@dataclass(frozen=True)
class StepControls:
    cache: bool | None  # None: not set on the step
    max_staleness: timedelta | None
    seed: str | None
    latch: bool | None = None  # wfboost.io/latch; None: not set on the step


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
    latch = values.get(LATCH)
    if latch is not None and latch.strip().lower() not in ("true", "false"):
        raise BadControl(f"{LATCH} must be \"true\" or \"false\", not {latch!r}")
    return StepControls(
        cache=None if cache is None else cache.strip().lower() == "true",
        max_staleness=parsed,
        seed=values.get(CACHE_SEED),
        latch=None if latch is None else latch.strip().lower() == "true",
    )


def skip(step: ArgoStep, settings: EffectiveMemoize, controls: StepControls) -> Skip | None:
    """Why this step is not memoized (the reason and what exactly), or None when it may be."""
    reason = _kind_reason(step, settings, controls)
    if reason is not None:
        return Skip(reason, SKIP_DETAILS.get(reason, f"not a memoizable step ({reason})"))
    template = step.template or {}
    for found in (
        unseen_input(step.pod, settings), unpinned_artifact(template, settings), publishing_artifact(template)
    ):
        if found is not None:
            return Skip(*found)
    return None


def skip_reason(step: ArgoStep, settings: EffectiveMemoize, controls: StepControls) -> str | None:
    """Why this step is not memoized, as a metric label, or None when it may be."""
    skipped = skip(step, settings, controls)
    return skipped.reason if skipped is not None else None


def _kind_reason(step: ArgoStep, settings: EffectiveMemoize, controls: StepControls) -> str | None:
    if controls.cache is False:
        return "cache_off"
    if settings.opt_in and controls.cache is not True:
        return "not_opted_in"
    if step.template_kind not in _MEMOIZABLE_KINDS:
        return f"template_{step.template_kind.lower()}"
    template = step.template or {}
    if step.labels.get(names.LABEL_ON_EXIT) == "true":
        return "exit_handler"  # workflow-level and step/task-level onExit, and everything under them
    if ".hooks." in step.node_name:
        return "lifecycle_hook"  # `<parent>.hooks.<name>` (exit hooks carry the on-exit label too)
    if template.get("daemon"):
        return "daemon"
    if template.get("memoize"):
        return "argo_memoize"
    if _is_kfp_driver(step):
        return "kfp_driver"
    if _runs_on_windows(step.pod):
        return "windows_node"
    return None


def _runs_on_windows(pod: Mapping[str, Any]) -> bool:
    """Windows is chosen by nodeSelector (the template's or the workflow's) or by node affinity."""
    spec = pod.get("spec") or {}
    selector = spec.get("nodeSelector") or {}
    if any(selector.get(label) == "windows" for label in _OS_LABELS):
        return True
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for expression in (term or {}).get("matchExpressions") or []:
            if expression.get("key") in _OS_LABELS and "windows" in (expression.get("values") or []):
                return True
    return False


def _is_kfp_driver(step: ArgoStep) -> bool:
    if step.annotations.get(KFP_RUNTIME_ROLE) == "driver":
        return True
    program = step.command[0].rsplit("/", 1)[-1] if step.command else ""
    return program == "driver" and "--type" in (step.args or ())


def retention(policy: Policy) -> timedelta:
    """How long entries are kept: the admin maximum staleness (no lookup may accept older), else a default."""
    return policy.memoize.max_staleness_limit or DEFAULT_RETENTION
