"""The recorder's decisions, without I/O: what a step pod is worth remembering, and when its result is whole.

Argo reports a step's result in two objects written by two processes: the kubelet writes the main container's exit
code, finish time and image digest into the pod's status; Argo's wait container writes the outputs into a
WorkflowTaskResult named after the node id and labels it complete. Either may reach the recorder first, and the pod
may be garbage-collected before the task result arrives, so the recorder keeps what it learnt from each side
(`PendingStep`, `MainExit`, `TaskOutputs`) and joins them here once both are present (`join`).

Everything the cache key depends on is decided by `prepare_step`, through the function the webhook calls at
admission (`wfboost.cache.eligibility.assess`): a recorded
entry lands on the key a later identical pod is looked up by, or memoization silently never hits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wfboost.argo import names
from wfboost.argo.pods import ArgoStep, owner_workflow_uid
from wfboost.cache.eligibility import Skip, assess
from wfboost.cache.entries import CacheEntry, OutputParameter, Producer
from wfboost.policy import EffectiveMemoize
from wfboost.policy.controls import CACHE_HIT


@dataclass(frozen=True)
class PendingStep:
    """A memoizable step seen at its pod: everything the entry needs that only the pod can tell."""

    namespace: str
    node_id: str
    key: str
    staleness_s: int
    entry_id: str
    image: str
    main_container: str  # the container whose exit decides (main; a containerSet's first member)
    declared_parameters: tuple[str, ...]
    declared_artifacts: tuple[str, ...]  # the non-optional ones: a run without them failed
    producer: Producer


@dataclass(frozen=True)
class MainExit:
    """The main container's terminated state, from the pod's status."""

    exit_code: int
    finished_at: str  # RFC 3339, as the kubelet wrote it
    image_id: str


@dataclass(frozen=True)
class TaskOutputs:
    """A WorkflowTaskResult that Argo's wait container marked complete."""

    outputs: Mapping[str, Any]
    phase: str


@dataclass(frozen=True)
class Refused:
    """The run finished but must not be cached; `reason` is a metric label, `detail` a log line."""

    reason: str
    detail: str


def pod_skip_reason(pod: Mapping[str, Any]) -> str | None:
    """Pods the recorder leaves alone before parsing them."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    # Set by the webhook on replayed pods: their outputs are the cached ones, and recording them again would only
    # renew an entry without a new run.
    if str(labels.get(CACHE_HIT, "")).lower() == "true":
        return "cache_hit"
    return None


def prepare_step(step: ArgoStep, settings: EffectiveMemoize) -> PendingStep | Skip:
    """The pending step, or why it is not memoized (the same reasons, from the same code, as at admission)."""
    assessment = assess(step, settings)
    if isinstance(assessment, Skip):
        return assessment
    outputs = (step.template or {}).get("outputs") or {}
    parameters = tuple(str(p.get("name")) for p in outputs.get("parameters") or [] if isinstance(p, Mapping))
    artifacts = tuple(
        str(a.get("name"))
        for a in outputs.get("artifacts") or []
        if isinstance(a, Mapping) and not a.get("optional")
    )
    return PendingStep(
        namespace=step.namespace,
        node_id=step.node_id,
        key=assessment.key,
        staleness_s=int(assessment.staleness.total_seconds()),
        entry_id=entry_id(step.pod, step.namespace, step.node_id),
        image=str(step.main.get("image") or ""),
        main_container=str(step.main.get("name") or names.CONTAINER_MAIN),
        declared_parameters=parameters,
        declared_artifacts=artifacts,
        producer={
            "namespace": step.namespace,
            "workflow": step.workflow,
            "workflow_uid": step.workflow_uid,
            "node_id": step.node_id,
            "node_name": step.node_name,
            "pod": step.pod_name,
        },
    )


def entry_id(pod: Mapping[str, Any], namespace: str, node_id: str) -> str:
    """Stable per run: the pod's uid when the API server gave one. A replayed watch event, a relist or a restarted
    recorder therefore writes the same entry id, which the store treats as the same result."""
    meta = pod.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    if uid:
        return uid
    # No uid (objects that never went through an API server, e.g. a test emulator): the run's identity by name.
    who = f"{namespace}/{meta.get('name', '')}/{node_id}/{owner_workflow_uid(pod)}"
    return hashlib.sha256(who.encode()).hexdigest()[:32]



def main_exit(pod: Mapping[str, Any], container: str) -> MainExit | None:
    """The terminated state of `container`, or None while it has not terminated."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if not isinstance(status, Mapping) or status.get("name") != container:
            continue
        terminated = (status.get("state") or {}).get("terminated")
        if not isinstance(terminated, Mapping):
            return None
        try:
            code = int(terminated.get("exitCode", -1))
        except (TypeError, ValueError):
            code = -1
        return MainExit(
            exit_code=code,
            finished_at=str(terminated.get("finishedAt") or ""),
            image_id=str(status.get("imageID") or ""),
        )
    return None


def pod_outcome(pod: Mapping[str, Any]) -> bool | None:
    """Did the whole pod succeed? True, False, or None while it is still running.

    Main exiting 0 is not enough: Argo's wait (or, init-less, supervisor) container may still fail to save an
    output (an optional artifact's upload, say), and a main that traps SIGTERM can exit 0 on `argo stop` or a
    deadline. The pod's phase, or failing that the executor container's own exit, says whether the run succeeded.
    """
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return True
    if phase in ("Failed", "Error"):
        return False
    executors = (names.CONTAINER_WAIT, names.CONTAINER_SUPERVISOR)
    for container in status.get("containerStatuses") or []:
        if isinstance(container, Mapping) and container.get("name") in executors:
            terminated = (container.get("state") or {}).get("terminated")
            if isinstance(terminated, Mapping):
                return terminated.get("exitCode") == 0
    return None


def task_outputs(task_result: Mapping[str, Any]) -> TaskOutputs | None:
    """The outputs of a task result once the wait container says they are all there, else None."""
    labels = (task_result.get("metadata") or {}).get("labels") or {}
    if str(labels.get(names.LABEL_REPORT_OUTPUTS_COMPLETED, "")).lower() != "true":
        return None
    outputs = task_result.get("outputs")
    phase = str(task_result.get("phase") or "")
    return TaskOutputs(outputs=outputs if isinstance(outputs, Mapping) else {}, phase=phase)


def join(step: PendingStep, exit_: MainExit, result: TaskOutputs, *, now: datetime) -> CacheEntry | Refused:
    """The entry for a finished run, or why the run must not be cached."""
    if exit_.exit_code != 0:
        return Refused("failed", f"main exited {exit_.exit_code}")
    if result.phase in ("Failed", "Error"):
        return Refused("failed", f"task result phase {result.phase}")
    exit_code = result.outputs.get("exitCode")
    if exit_code is not None and str(exit_code) != "0":
        return Refused("failed", f"outputs.exitCode is {exit_code}")
    finished = parse_time(exit_.finished_at)
    if finished is None:
        return Refused("no_finish_time", f"finishedAt {exit_.finished_at!r} is not RFC 3339")
    parameters: list[OutputParameter] = []
    reported = {
        str(p.get("name")): p for p in result.outputs.get("parameters") or [] if isinstance(p, Mapping)
    }
    for name in step.declared_parameters:
        value = reported.get(name, {}).get("value")
        if value is None:
            return Refused("missing_output", f"output parameter {name!r} was not reported")
        parameters.append({"name": name, "value": str(value)})
    artifacts = [dict(a) for a in result.outputs.get("artifacts") or [] if isinstance(a, Mapping)]
    have = {str(a.get("name")) for a in artifacts}
    for name in step.declared_artifacts:
        if name not in have:
            return Refused("missing_output", f"output artifact {name!r} was not reported")
    entry: CacheEntry = {
        "key": step.key,
        "entry_id": step.entry_id,
        "finished_at": exit_.finished_at,
        "finished_ms": int(finished.timestamp() * 1000),
        "staleness_s": step.staleness_s,
        "parameters": parameters,
        "artifacts": artifacts,
        "image": step.image,
        "image_id": exit_.image_id,
        "producer": step.producer,
        "recorded_at": rfc3339(now),
    }
    stdout = result.outputs.get("result")
    if isinstance(stdout, str):
        entry["result"] = stdout
    return entry


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
