"""Latching's leases: who leads a cache key's run, named so that a follower's refusal can say whom it waits for.

A lease's value is its owner: the leader pod as the webhook saw it at CREATE (no uid exists yet), as compact JSON
with sorted keys, so the same pod admitted again (a create the API server retried) is the same owner and leads
again. The webhook writes it on the leader pod (annotation `wfboost.io/lease`); the recorder reads it back there,
checks it names that very pod, and renews or releases the lease with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from wfboost.argo.pods import ArgoStep

__all__ = ["LEASE_ANNOTATION", "describe_owner", "lease_owner", "owner_of_pod"]

LEASE_ANNOTATION: Final = "wfboost.io/lease"


def lease_owner(step: ArgoStep) -> str:
    """The owner string for a leader pod."""
    return orjson.dumps(
        {"namespace": step.namespace, "node": step.node_name, "pod": step.pod_name, "workflow": step.workflow},
        option=orjson.OPT_SORT_KEYS,
    ).decode()


def owner_of_pod(pod: Mapping[str, Any], step: ArgoStep) -> str:
    """The lease this pod leads, when its annotation names it (and names this pod, not one it was copied from)."""
    annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(LEASE_ANNOTATION)
    return annotated if isinstance(annotated, str) and annotated == lease_owner(step) else ""


def describe_owner(owner: str, viewer: str | None = None) -> str:
    """`pod P of workflow W (namespace N), node X` for a follower's refusal; the raw text when it is not ours. For a
    `viewer` in another namespace (entries shared across namespaces), only that it is another namespace's: the
    refusal lands in the follower's Workflow status, which its own tenant reads."""
    try:
        parsed = orjson.loads(owner)
    except orjson.JSONDecodeError:
        return owner or "another run"
    if not isinstance(parsed, dict):
        return owner
    if viewer is not None and parsed.get("namespace") != viewer:
        return "a run in another namespace"
    return (f"pod {parsed.get('pod')} of workflow {parsed.get('workflow')} (namespace {parsed.get('namespace')}), "
            f"node {parsed.get('node')}")
