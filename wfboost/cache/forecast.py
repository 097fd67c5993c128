"""Which steps of a Workflow (or WorkflowTemplate, CronWorkflow) would be memoized, and why not: offline, no cluster.

The webhook decides on each pod, from the pod the controller creates; before a Workflow runs there is no pod. This
forecast applies the same rules (`eligibility.skip`, one definition) to each pod-creating template, seen as the
controller would place it in a pod: the workflow's `podMetadata` under the template's own metadata (workflowpod.go
addMetadata), its volumes with the workflow's and the claim templates', the node selector and affinity of the
template, else of the steps/DAG template it runs in, else of the workflow (addSchedulingConstraints), the workflow's
`hostNetwork`, and `templateDefaults` where the template sets nothing.

What only the pod can tell is said, not guessed: a value with `{{…}}` (an image chosen by a parameter, a control
set from an input), a `podSpecPatch`, an input artifact whose location the caller passes. The verdict stands unless
one of those says otherwise, and the webhook's own decision on the pod is the one that counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from wfboost.argo import names
from wfboost.argo.artifacts import ArtifactLocationError, driver_of
from wfboost.argo.pods import ArgoStep, TemplateKind, template_kind
from wfboost.cache.eligibility import BadControl, skip, step_controls
from wfboost.policy import EffectiveLatch, EffectiveMemoize

Context = Literal["run", "exit_handler", "hook"]
_POD_TEMPLATE_KINDS: frozenset[TemplateKind] = frozenset(
    {"container", "script", "containerSet", "resource", "data", "http", "plugin"}
)
BY_NAME = "called by name from other objects"
_ARGOEXEC_KINDS: frozenset[TemplateKind] = frozenset({"resource", "data"})
_SUBSTITUTED = re.compile(r"\{\{")


@dataclass(frozen=True)
class StepForecast:
    """One pod-creating template in one context (run, exit handler, hook): what the webhook would decide."""

    template: str
    context: Context
    calls: tuple[str, ...]  # how it is reached: `<steps/DAG template>/<step or task>`, or `entrypoint`, `onExit`
    memoized: bool
    reason: str  # the skip reason (a metric label); '' when memoized
    detail: str  # why, in words
    latched: bool = False
    staleness: timedelta | None = None
    run_time: tuple[str, ...] = ()  # what only the pod tells, which may change the verdict


@dataclass(frozen=True)
class WorkflowForecast:
    steps: tuple[StepForecast, ...]
    elsewhere: tuple[str, ...] = ()  # templates defined in other objects (templateRef, workflowTemplateRef)
    unreached: tuple[str, ...] = ()  # pod-creating templates nothing in this object calls


@dataclass
class _Walk:
    templates: Mapping[str, Mapping[str, Any]]
    # Keyed by template, context and the placement its steps/DAG template gives (node selector, affinity): one
    # template called from two steps/DAG templates that place pods differently gets two forecasts.
    calls: dict[tuple[str, Context, str], list[str]] = field(default_factory=dict)
    boundary: dict[tuple[str, Context, str], Mapping[str, Any]] = field(default_factory=dict)
    inline: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    elsewhere: set[str] = field(default_factory=set)
    seen: set[tuple[str, Context]] = field(default_factory=set)


def forecast_workflow(
    spec: Mapping[str, Any], memoize: EffectiveMemoize, latch: EffectiveLatch, *, whole_object: bool = True
) -> WorkflowForecast:
    """The forecast for a Workflow spec (a CronWorkflow's `workflowSpec`, a WorkflowTemplate's spec).

    `whole_object`: the entrypoint is where runs start (a Workflow, a CronWorkflow). A WorkflowTemplate's templates
    are also called by name from other objects, so there every pod-creating template is forecast as a step."""
    templates = {str(t.get("name")): t for t in _list(spec.get("templates"))}
    walk = _Walk(templates)
    if isinstance(spec.get("workflowTemplateRef"), Mapping):
        walk.elsewhere.add(f"workflowTemplateRef {spec['workflowTemplateRef'].get('name')}")
    if isinstance(spec.get("entrypoint"), str) and spec["entrypoint"]:
        _visit(walk, spec["entrypoint"], "run", "entrypoint", {})
    if isinstance(spec.get("onExit"), str) and spec["onExit"]:
        _visit(walk, spec["onExit"], "exit_handler", "onExit", {})
    for name, hook in _hooks(spec.get("hooks")):
        _reach(walk, hook, "exit_handler" if name == "exit" else "hook", f"hooks.{name}", {}, "workflow")
    unreached = sorted(n for n, t in templates.items() if template_kind(t) in _POD_TEMPLATE_KINDS
                       and not any(key[0] == n for key in walk.calls))
    if not whole_object:
        for name in unreached:
            walk.calls[(name, "run", "")] = [BY_NAME]
        unreached = []
    steps = [
        _forecast(spec, walk.inline.get(name) or templates[name], name, context, tuple(calls),
                  walk.boundary.get((name, context, placed), {}), memoize, latch)
        for (name, context, placed), calls in sorted(walk.calls.items())
    ]
    return WorkflowForecast(tuple(steps), tuple(sorted(walk.elsewhere)), tuple(unreached))


def _visit(walk: _Walk, name: str, context: Context, via: str, boundary: Mapping[str, Any]) -> None:
    template = walk.inline.get(name) or walk.templates.get(name)
    if template is None:
        if "{{" not in name:
            walk.elsewhere.add(f"template {name} (not in this object)")
        return
    if template_kind(template) in _POD_TEMPLATE_KINDS:
        key = (name, context, repr((boundary.get("nodeSelector"), boundary.get("affinity"))))
        walk.calls.setdefault(key, []).append(via)
        walk.boundary.setdefault(key, boundary)
    if (name, context) in walk.seen:
        return
    walk.seen.add((name, context))
    for child_via, child, hook_context in _children(template, name):
        _reach(walk, child, hook_context or context, child_via, template, name)


def _reach(walk: _Walk, call: Mapping[str, Any], context: Context, via: str, boundary: Mapping[str, Any],
           parent: str) -> None:
    """A step, task or hook: its template by name, inline, or from another object."""
    if isinstance(call.get("templateRef"), Mapping):
        ref = call["templateRef"]
        walk.elsewhere.add(f"templateRef {ref.get('name')}/{ref.get('template')}")
    elif isinstance(call.get("inline"), Mapping):
        name = f"{via} (inline)"
        walk.inline[name] = call["inline"]
        _visit(walk, name, context, via, boundary)
    elif isinstance(call.get("template"), str) and call["template"]:
        _visit(walk, call["template"], context, via, boundary)
    if isinstance(call.get("onExit"), str) and call["onExit"]:
        _visit(walk, call["onExit"], "exit_handler", f"{via}.onExit", boundary)
    for name, hook in _hooks(call.get("hooks")):
        _reach(walk, hook, "exit_handler" if name == "exit" else "hook", f"{via}.hooks.{name}", boundary, parent)


def _children(template: Mapping[str, Any], name: str) -> Iterator[tuple[str, Mapping[str, Any], Context | None]]:
    groups = template.get("steps")
    for group in groups if isinstance(groups, list) else []:
        for step in _list(group):
            yield f"{name}/{step.get('name')}", step, None
    for task in _list(_mapping(template.get("dag")).get("tasks")):
        yield f"{name}/{task.get('name')}", task, None


def _hooks(hooks: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(hooks, Mapping):
        for name, hook in sorted(hooks.items()):
            if isinstance(hook, Mapping):
                yield str(name), hook


def _forecast(
    spec: Mapping[str, Any], template: Mapping[str, Any], name: str, context: Context, calls: tuple[str, ...],
    boundary: Mapping[str, Any], memoize: EffectiveMemoize, latch: EffectiveLatch,
) -> StepForecast:
    """The rules assume what the API server and the controller checked (the webhook only sees their pods); a file
    given to review may hold a field of the wrong type, which is said instead."""
    try:
        return _forecast_checked(spec, template, name, context, calls, boundary, memoize, latch)
    except (TypeError, AttributeError, ValueError) as exc:
        return StepForecast(name, context, calls, False, "malformed",
                            f"a field has the wrong type ({type(exc).__name__}: {exc}); Argo could not run it as "
                            "written")


def _forecast_checked(
    spec: Mapping[str, Any], template: Mapping[str, Any], name: str, context: Context, calls: tuple[str, ...],
    boundary: Mapping[str, Any], memoize: EffectiveMemoize, latch: EffectiveLatch,
) -> StepForecast:
    kind = template_kind(template)
    defaults = spec.get("templateDefaults")
    if isinstance(defaults, Mapping):
        template = {**{k: v for k, v in defaults.items() if k not in template}, **template}
    step = _step(spec, template, name, context, boundary, kind)
    run_time = tuple(_run_time(spec, template, step.pod))
    if isinstance(defaults, Mapping) and defaults:
        run_time += ("the controller merges templateDefaults into the template field by field (a strategic merge "
                     "this forecast does not repeat)",)
    if calls == (BY_NAME,):
        run_time += ("called through templateRef, the calling Workflow's podMetadata, templateDefaults, volumes and "
                     "node selectors apply, not this object's",)
    if step.template_kind in _ARGOEXEC_KINDS:  # the webhook stops at the pod's command (webhook/pods.py read_step)
        return StepForecast(name, context, calls, False, "template_resource",
                            f"a {step.template_kind} step: Argo's executor runs it, not the user's container")
    try:
        controls = step_controls(step)
    except BadControl as exc:
        return StepForecast(name, context, calls, False, "bad_control", str(exc), run_time=run_time)
    skipped = skip(step, memoize, controls)
    if skipped is not None:
        return StepForecast(name, context, calls, False, skipped.reason, skipped.detail, run_time=run_time)
    staleness = memoize.staleness(controls.max_staleness)
    latched = latch.enabled and controls.latch is not False and staleness > timedelta(0)
    return StepForecast(name, context, calls, True, "", "its image, command and inputs make its key", latched,
                        staleness, run_time)


def _step(spec: Mapping[str, Any], template: Mapping[str, Any], name: str, context: Context,
          boundary: Mapping[str, Any], kind: TemplateKind) -> ArgoStep:
    """The parts of the step pod the eligibility rules read, placed as the controller places them."""
    pod_metadata, own = _mapping(spec.get("podMetadata")), _mapping(template.get("metadata"))
    labels = {**_mapping(pod_metadata.get("labels")), **_mapping(own.get("labels"))}
    if context == "exit_handler":
        labels[names.LABEL_ON_EXIT] = "true"
    main = {**_mapping(template.get("script" if kind == "script" else "container")), "name": "main"}
    claims = [{"name": _mapping(c.get("metadata")).get("name"), "persistentVolumeClaim": {
        "claimName": _mapping(c.get("metadata")).get("name")}} for c in _list(spec.get("volumeClaimTemplates"))]
    pod_spec: dict[str, Any] = {
        "containers": [main, *_list(template.get("sidecars"))],
        "initContainers": _list(template.get("initContainers")),
        # by name, the later wins: the template's, then the workflow's, then a claim (workflowpod.go
        # addVolumeReferences)
        "volumes": [*claims, *_list(spec.get("volumes")), *_list(template.get("volumes"))],
    }
    for key in ("nodeSelector", "affinity"):
        chosen = template.get(key) or boundary.get(key) or spec.get(key)
        if isinstance(chosen, Mapping) and chosen:
            pod_spec[key] = chosen
    if spec.get("hostNetwork") is True:
        pod_spec["hostNetwork"] = True
    annotations = {**_mapping(pod_metadata.get("annotations")), **_mapping(own.get("annotations"))}
    pod = {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec}
    command = main["command"] if isinstance(main.get("command"), list) else []
    args = main["args"] if isinstance(main.get("args"), list) else []
    return ArgoStep(
        pod=pod, namespace="", pod_name="", workflow="", node_id="",
        node_name=f"forecast.hooks.{name}" if context == "hook" else f"forecast.{name}", layout="v3.6+",
        template=template, main_index=0, emissary_prefix=(), command=tuple(str(c) for c in command),
        args=tuple(str(a) for a in args), include_script_output=False,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _run_time(spec: Mapping[str, Any], template: Mapping[str, Any], pod: Mapping[str, Any]) -> Iterator[str]:
    """What the pod decides that the spec cannot tell: substituted values in what the rules read, pod spec
    patches, input artifacts whose location a caller passes."""
    for where, value in _read_by_rules(pod):
        if _SUBSTITUTED.search(value):
            yield f"{where} is {value!r} when the pod is created"
    if spec.get("podSpecPatch") or template.get("podSpecPatch"):
        yield "a podSpecPatch changes the pod"
    for artifact in _list(_mapping(template.get("inputs")).get("artifacts")):
        try:
            located = driver_of(artifact) is not None
        except ArtifactLocationError:
            located = True  # the rules say what is wrong with it
        if not located:
            yield (f"input artifact {artifact.get('name')} comes from its caller: memoized only when that location "
                   "is pinned (a memoized step wrote it) or the policy trusts artifact locations")


def _read_by_rules(pod: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    metadata = pod.get("metadata") or {}
    for kind in ("labels", "annotations"):
        for key, value in (metadata.get(kind) or {}).items():
            if str(key).startswith("wfboost.io/"):
                yield f"{kind[:-1]} {key}", str(value)
    spec = pod.get("spec") or {}
    for field_name in ("containers", "initContainers"):
        for container in spec.get(field_name) or []:
            yield f"{container.get('name')} image", str(container.get("image") or "")
            for mount in container.get("volumeMounts") or []:
                if isinstance(mount, Mapping):
                    yield f"{container.get('name')} volume mount", str(mount.get("name") or "")
    for key in ("nodeSelector", "volumes"):
        if spec.get(key):
            yield key, repr(spec[key])
