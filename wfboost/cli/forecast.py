"""Words for `wfboost review`: which steps of a Workflow, WorkflowTemplate or CronWorkflow would be memoized, and why.

The forecast itself is cache/forecast.py; this turns it into lines a user reads, one per template and context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wfboost.cache.forecast import StepForecast, forecast_workflow
from wfboost.policy import Policy
from wfboost.policy.iso8601 import format_duration

# Kinds whose spec holds templates that become step pods, and where that spec sits.
_SPEC_OF = {"Workflow": (), "WorkflowTemplate": (), "ClusterWorkflowTemplate": (), "CronWorkflow": ("workflowSpec",)}
_CALLS_SHOWN = 3


def memoize_forecast(
    doc: Mapping[str, Any], policy: Policy, namespace: str | None, labels: Mapping[str, str] | None
) -> list[str]:
    """`memoize: …` lines for a document holding templates; none for other kinds (a pod's review says it)."""
    if doc.get("kind") == "AdmissionReview":
        request = doc.get("request")
        found = request.get("object") if isinstance(request, Mapping) else None
        doc = found if isinstance(found, Mapping) else {}
    kind = doc.get("kind")
    if kind not in _SPEC_OF:
        return []
    spec: Any = doc.get("spec")
    for key in _SPEC_OF[str(kind)]:
        spec = spec.get(key) if isinstance(spec, Mapping) else None
    if not isinstance(spec, Mapping):
        return []
    metadata: Any = doc.get("metadata") if isinstance(doc.get("metadata"), Mapping) else {}
    where = str(metadata.get("namespace") or namespace or "")
    memoize = policy.memoize_settings_for(where, labels)
    if not policy.features.memoize:
        return ["memoize: off: the policy's features.memoize is off"]
    if not memoize.enabled:
        return [f"memoize: off in namespace {where or '(none: give --namespace)'}: " + _off_reason(policy, labels)]
    forecast = forecast_workflow(spec, memoize, policy.latch_settings_for(where, labels),
                                 whole_object=kind in ("Workflow", "CronWorkflow"))
    lines = [_line(step) for step in forecast.steps]
    for step in forecast.steps:
        lines += [f"memoize:   {step.template}: decided when the pod is created: {why}" for why in step.run_time]
    if not forecast.steps:
        lines.append("memoize: no step in this object creates a pod")
    if forecast.elsewhere:
        lines.append("memoize: decided where they are defined: " + ", ".join(forecast.elsewhere))
    if forecast.unreached:
        lines.append("memoize: never run from the entrypoint or an exit handler: " + ", ".join(forecast.unreached))
    return lines


def _line(step: StepForecast) -> str:
    where = "" if step.context == "run" else f" ({step.context.replace('_', ' ')})"
    shown = ", ".join(step.calls[:_CALLS_SHOWN])
    if len(step.calls) > _CALLS_SHOWN:
        shown += f" and {len(step.calls) - _CALLS_SHOWN} more"
    if step.memoized:
        verdict = "memoized, max staleness " + format_duration(step.staleness) if step.staleness is not None else (
            "memoized")
        verdict += ", latched (identical steps in flight run once)" if step.latched else ""
    else:
        verdict = f"not memoized ({step.reason}): {step.detail}"
    return f"memoize: {step.template}{where} [{shown}]: {verdict}"


def _off_reason(policy: Policy, labels: Mapping[str, str] | None) -> str:
    if policy.memoize.namespace_selector is not None and labels is None:
        return ("not in memoize.namespaces, and namespace labels are unknown offline (give --namespace-label for "
                "memoize.namespaceSelector)")
    return "the namespace is not in the policy's memoize scope (memoize.namespaces, namespaceSelector, overrides)"
