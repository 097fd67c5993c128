"""The recorder's decisions, without I/O: what a step pod is worth remembering, and when its result is whole.

Argo reports a step's result in three objects written by three processes: the kubelet writes the main container's
exit code, finish time and image digest into the pod's status; Argo's wait container writes the outputs into a
WorkflowTaskResult named after the node id and labels it complete; the controller, having seen both, marks the node
Succeeded in the Workflow's status. Either of the first two may reach the recorder first, and the pod may be
garbage-collected before the task result arrives, so the recorder keeps what it learnt from each side
(`PendingStep`, `MainExit`, `TaskOutputs`), pairs them only when they come from the same run (`belongs_to`), asks
the Workflow whether the controller agrees (`node_verdict`), and joins them here (`join`).

Everything the cache key depends on is decided by `prepare_step`, through the function the webhook calls at
admission (`wfboost.cache.eligibility.assess`): a recorded entry lands on the key a later identical pod is looked up
by, or memoization silently never hits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from wfboost.argo import names
from wfboost.argo.artifacts import ArtifactLocationError, get_key, has_location, relocate
from wfboost.argo.pods import ArgoStep, owner_workflow_uid
from wfboost.argo.workflow_status import (
    ARTIFACT_GC_NEVER,
    WorkflowStatusError,
    artifact_gc_strategy,
    is_shut_down,
    node_phase,
    node_statuses,
)
from wfboost.cache.eligibility import Skip, assess
from wfboost.cache.entries import CacheEntry, OutputParameter, Producer
from wfboost.cache.leases import owner_of_pod
from wfboost.cache.marker import REPLAYED_ANNOTATION, BadMarker, read_marker
from wfboost.cache.runs import RUN_ANNOTATION, is_run_id, written_by
from wfboost.policy import EffectiveMemoize
from wfboost.policy.controls import CACHE_HIT, CACHE_KEY
from wfboost.shrink.refs import references_in

# Argo's own archived container logs: the run's logs, not one of the step's outputs.
LOG_ARTIFACTS = frozenset({"main-logs"})
# ARGO_DEADLINE of a workflow without a deadline (the zero time.Time, operator.go getDeadline).
NO_DEADLINE = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class PendingStep:
    """A memoizable step seen at its pod: everything the entry needs that only the pod can tell."""

    namespace: str
    node_id: str
    key: str
    staleness_s: int
    entry_id: str
    pod_uid: str  # '' when the pod never went through an API server (then entry_id names the run)
    pod_created: str  # metadata.creationTimestamp, RFC 3339 ('' when unknown)
    workflow: str
    workflow_uid: str
    deadline: str  # ARGO_DEADLINE: a main still running then was stopped by the controller
    image: str
    main_container: str  # the container whose exit decides (main; a containerSet's first member)
    declared_parameters: tuple[str, ...]
    declared_artifacts: tuple[str, ...]  # the non-optional ones: a run without them failed
    archive_location: Mapping[str, Any] | None  # the step's artifact repository, as the executor resolves keys
    producer: Producer
    run_id: str = ""  # wfboost.io/run, set at admission: the run's artifacts lie under its segment (cache/runs.py)
    lease_owner: str = ""  # wfboost.io/lease: this pod leads its key's run (latching); '' when it does not
    lease_key: str = ""  # the key the lease was taken on: the one the webhook annotated (it computed it at admission)


@dataclass(frozen=True)
class MainExit:
    """The main container's terminated state, from the pod's status."""

    exit_code: int
    finished_at: str  # RFC 3339, as the kubelet wrote it
    image_id: str
    started_at: str = ""  # RFC 3339: main's start, for the compute time a hit saves


@dataclass(frozen=True)
class TaskOutputs:
    """A WorkflowTaskResult that Argo's wait container marked complete."""

    outputs: Mapping[str, Any]
    phase: str
    workflow_uid: str = ""  # its owner reference (taskresult.go createTaskResult)
    created: str = ""  # metadata.creationTimestamp: a task result is created by the run that reports into it
    uid: str = ""  # metadata.uid: one object per run (deleted with the workflow's completion or by `argo retry`)
    replayed: bool = False  # its outputs are the cache's, put back by wfboost: not this run's own


@dataclass(frozen=True)
class Refused:
    """The run finished but must not be cached; `reason` is a metric label, `detail` a log line."""

    reason: str
    detail: str


NodeVerdict = Literal["succeeded", "not_yet"]


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
    template = step.template or {}
    outputs = template.get("outputs") or {}
    parameters = tuple(
        str(p.get("name")) for p in outputs.get("parameters") or []
        if isinstance(p, Mapping) and (p.get("valueFrom") or {}).get("path")
    )
    artifacts = tuple(
        str(a.get("name"))
        for a in outputs.get("artifacts") or []
        if isinstance(a, Mapping) and not a.get("optional")
    )
    meta = step.pod.get("metadata") or {}
    archive = template.get("archiveLocation")
    run_id = str((meta.get("annotations") or {}).get(RUN_ANNOTATION) or "")
    return PendingStep(
        namespace=step.namespace,
        node_id=step.node_id,
        key=assessment.key,
        staleness_s=int(assessment.staleness.total_seconds()),
        entry_id=entry_id(step.pod, step.namespace, step.node_id),
        pod_uid=str(meta.get("uid") or ""),
        pod_created=str(meta.get("creationTimestamp") or ""),
        workflow=step.workflow,
        workflow_uid=step.workflow_uid,
        deadline=_env(step.main, "ARGO_DEADLINE") or NO_DEADLINE,
        image=str(step.main.get("image") or ""),
        main_container=str(step.main.get("name") or names.CONTAINER_MAIN),
        declared_parameters=parameters,
        declared_artifacts=artifacts,
        archive_location=archive if isinstance(archive, Mapping) else None,
        run_id=run_id if is_run_id(run_id) else "",
        lease_owner=owner_of_pod(step.pod, step),
        lease_key=str((meta.get("annotations") or {}).get(CACHE_KEY) or assessment.key),
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


def run_of(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(identity, creation time) of the run a pod is: its uid, else (no API server) its name-based entry id."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    uid = str(meta.get("uid") or "") or entry_id(pod, str(meta.get("namespace") or ""),
                                                  str(annotations.get(names.ANNOTATION_NODE_ID) or ""))
    return uid, str(meta.get("creationTimestamp") or "")


def belongs_to(outputs: TaskOutputs, step: PendingStep) -> bool:
    """The task result was written by this step's run: the same workflow (a re-created workflow has another uid;
    its task results are other objects), and created after the pod, strictly.

    A run's wait container creates its task result, or patches the one an earlier run of the node left
    (taskresult.go upsertTaskResult: create, then patch on AlreadyExists), which keeps that run's creation time. An
    earlier run's task result was created while its pod lived, so no later than this pod's creation; in the same
    second it would pass a `>=` (the times have whole seconds), so the comparison is strict: a run whose task
    result is created in its pod's first second loses its entry, never takes another's. Artifacts are paired
    exactly besides: they lie under the run's own segment (`join`)."""
    if outputs.workflow_uid and step.workflow_uid and outputs.workflow_uid != step.workflow_uid:
        return False
    if outputs.created and step.pod_created:
        return _time(outputs.created) > _time(step.pod_created)
    return True


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
            started_at=str(terminated.get("startedAt") or ""),
        )
    return None


def stopped(pod: Mapping[str, Any], exit_: MainExit) -> Refused | None:
    """Why a run that ended with every container at 0 was nevertheless stopped, or None.

    Deleting a pod (`kubectl delete`, a drain, the eviction API, preemption) sends SIGTERM, and Argo's wait
    container takes that as the end of the step: it captures outputs at once, falling back to parameters' defaults
    and leaving out optional artifacts (executor.go Wait treats context.Canceled as success; postmain.go PostMain),
    while the controller, which sees only the pod's phase, marks the node Succeeded (operator.go assessNodeStatus).
    A main that traps SIGTERM and exits 0 is then indistinguishable from a finished one, except here: the deletion
    was requested (deletionTimestamp minus the grace period) before main finished, or the pod has a
    DisruptionTarget condition, or the executor wrote a termination message (it writes one only for an error or
    an exceeded deadline: executor.go monitorDeadline and HandleError)."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "DisruptionTarget" and str(
            condition.get("status")
        ) == "True":
            return Refused("pod_disrupted", f"the pod was disrupted ({condition.get('reason') or 'no reason'})")
    deleted = parse_time(str(meta.get("deletionTimestamp") or ""))
    finished = parse_time(exit_.finished_at)
    if deleted is not None:
        try:
            grace = int(meta.get("deletionGracePeriodSeconds") or 0)
        except (TypeError, ValueError):
            grace = 0
        requested = deleted.timestamp() - grace
        if finished is None or finished.timestamp() >= requested:
            return Refused("pod_deleted", "the pod's deletion was requested before main finished: it was stopped")
    executors = (names.CONTAINER_WAIT, names.CONTAINER_SUPERVISOR)
    for container in status.get("containerStatuses") or []:
        if isinstance(container, Mapping) and container.get("name") in executors:
            terminated = (container.get("state") or {}).get("terminated")
            message = str(terminated.get("message") or "").strip() if isinstance(terminated, Mapping) else ""
            if message:
                return Refused("executor_error", f"Argo's {container.get('name')} container reported: {message}")
    return None


def pod_outcome(pod: Mapping[str, Any]) -> bool | None:
    """Did the whole pod succeed? True, False, or None while it is still running.

    Main exiting 0 is not enough: Argo's wait (or, init-less, supervisor) container may still fail to save an
    output. The pod's phase, or failing that the executor container's own exit, says whether the run succeeded.
    A pod can still end Succeeded when the controller stopped the step (a main that traps SIGTERM exits 0): that is
    what `node_verdict` is for.
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
    meta = task_result.get("metadata") or {}
    labels = meta.get("labels") or {}
    if str(labels.get(names.LABEL_REPORT_OUTPUTS_COMPLETED, "")).lower() != "true":
        return None
    outputs = task_result.get("outputs")
    phase = str(task_result.get("phase") or "")
    return TaskOutputs(
        outputs=outputs if isinstance(outputs, Mapping) else {},
        phase=phase,
        workflow_uid=owner_workflow_uid(task_result),
        created=str(meta.get("creationTimestamp") or ""),
        uid=str(meta.get("uid") or ""),
        replayed=(meta.get("annotations") or {}).get(REPLAYED_ANNOTATION) == "true",
    )


def node_verdict(workflow: Mapping[str, Any] | None, step: PendingStep) -> NodeVerdict | Refused:
    """Whether the controller marked this step's node Succeeded: the only proof that the run was not stopped
    (`argo stop`/`terminate` or a deadline signal the pod, and a main that traps SIGTERM exits 0, so the pod can end
    Succeeded while the node is Failed: exec_control.go applyExecutionControl). `not_yet` while the controller has
    not decided (the pod and task result usually reach the recorder first)."""
    if workflow is None:
        return Refused("workflow_gone", f"workflow {step.workflow} is gone: whether the step succeeded is unknown")
    uid = str((workflow.get("metadata") or {}).get("uid") or "")
    if uid and step.workflow_uid and uid != step.workflow_uid:
        return Refused("workflow_gone", f"workflow {step.workflow} was re-created (uid {uid})")
    try:
        if is_shut_down(workflow):
            return Refused("workflow_stopped", f"workflow {step.workflow} was stopped or terminated")
        if node_statuses(workflow) is None:
            return Refused("node_status_offloaded", "the node statuses are in Argo's database, not in the Workflow")
        phase = node_phase(workflow, step.node_id)
    except WorkflowStatusError as exc:
        return Refused("node_status_unreadable", str(exc))
    if phase == "Succeeded":
        return "succeeded"
    if phase in (None, "", "Pending", "Running"):
        return "not_yet"
    return Refused("node_not_succeeded", f"the controller marked node {step.node_id} {phase}")


def join(
    step: PendingStep,
    exit_: MainExit,
    result: TaskOutputs,
    *,
    now: datetime,
    workflow: Mapping[str, Any] | None = None,
) -> CacheEntry | Refused:
    """The entry for a finished run, or why the run must not be cached. `workflow` (the step's Workflow, read once
    the controller marked the node) decides the artifacts' garbage collection."""
    try:
        marker = read_marker(result.outputs)
    except BadMarker:
        return Refused("cache_hit", "the task result carries a malformed replay marker")
    if marker is not None or result.replayed:
        return Refused("cache_hit", "a replayed step's task result")
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
    deadline = parse_time(step.deadline)
    if step.deadline != NO_DEADLINE and deadline is not None and finished >= deadline:
        return Refused("deadline", f"main finished at {exit_.finished_at}, past the step's deadline {step.deadline}")
    parameters: list[OutputParameter] = []
    reported = {
        str(p.get("name")): p for p in result.outputs.get("parameters") or [] if isinstance(p, Mapping)
    }
    for name in step.declared_parameters:
        value = reported.get(name, {}).get("value")
        if value is None:
            return Refused("missing_output", f"output parameter {name!r} was not reported")
        parameters.append({"name": name, "value": str(value)})
    moved = [p["name"] for p in parameters if references_in(p["value"])]
    if moved:
        # shrinkTaskResults moved them (wfboost.webhook.taskresults): the blobs are held by this Workflow's uid and
        # collected after it, while an entry would replay the references for months
        return Refused("outputs_in_sidestore", f"output parameter(s) {', '.join(moved)} hold side-store references, "
                       "which live only as long as their Workflow")
    produced = [a for a in result.outputs.get("artifacts") or [] if isinstance(a, Mapping)]
    have = {str(a.get("name")) for a in produced}
    for name in step.declared_artifacts:
        if name not in have:
            return Refused("missing_output", f"output artifact {name!r} was not reported")
    outputs_of_step = [a for a in produced if str(a.get("name")) not in LOG_ARTIFACTS]
    not_own = not_written_by_run(outputs_of_step, step.run_id)
    if not_own is not None:
        return not_own
    located = locate_artifacts(outputs_of_step, step.archive_location)
    if isinstance(located, Refused):
        return located
    if workflow is not None:
        collected = collected_artifacts(workflow, outputs_of_step)
        if collected:
            return Refused("artifact_gc", f"the producer's artifact GC deletes {', '.join(collected)}")
    entry: CacheEntry = {
        "key": step.key,
        "entry_id": step.entry_id,
        "finished_at": exit_.finished_at,
        "finished_ms": int(finished.timestamp() * 1000),
        "staleness_s": step.staleness_s,
        "parameters": parameters,
        "artifacts": located,
        "image": step.image,
        "image_id": exit_.image_id,
        "producer": step.producer,
        "recorded_at": rfc3339(now),
    }
    started = parse_time(exit_.started_at) if exit_.started_at else None
    if started is not None and started <= finished:
        entry["ran_ms"] = int((finished - started).total_seconds() * 1000)  # what each hit saves (cache stats)
    stdout = result.outputs.get("result")
    if isinstance(stdout, str):
        entry["result"] = stdout
    return entry


def locate_artifacts(
    artifacts: Sequence[Mapping[str, Any]], archive_location: Mapping[str, Any] | None
) -> list[dict[str, Any]] | Refused:
    """Each artifact with its whole location, as the executor resolves a key-only one against the producer's
    artifact repository (`ArtifactLocation.Relocate`). A cached artifact is read by later runs of other workflows,
    maybe against another repository: a key alone would resolve there, to another object."""
    located = []
    for artifact in artifacts:
        try:
            whole = relocate(artifact, archive_location)
        except ArtifactLocationError as exc:
            return Refused("artifact_location_unresolved", f"artifact {artifact.get('name')!r}: {exc}")
        if not has_location(whole):
            return Refused("artifact_location_unresolved", f"artifact {artifact.get('name')!r} has no full location")
        whole.pop("archiveLogs", None)  # the repository's setting, copied by Relocate; not the artifact's
        located.append(whole)
    return located


def collected_artifacts(workflow: Mapping[str, Any], artifacts: Sequence[Mapping[str, Any]]) -> list[str]:
    """The artifacts the producer's own artifact GC will delete (any strategy but Never): never served, or a hit
    would point at deleted data once the producing workflow completes or is deleted."""
    doomed = []
    for artifact in artifacts:
        try:
            strategy = artifact_gc_strategy(workflow, artifact)
        except WorkflowStatusError:
            strategy = "unknown"
        if strategy not in ("", ARTIFACT_GC_NEVER):
            doomed.append(f"{artifact.get('name')} ({strategy})")
    return doomed


def not_written_by_run(artifacts: Sequence[Mapping[str, Any]], run_id: str) -> Refused | None:
    """Why the run's artifacts are not its own to cache, or None: each must lie under the run's own segment
    (cache/runs.py), or the next run of a same-named workflow writes other content to the same place and this entry
    would replay it. That also pairs artifacts with their run exactly, whatever task result carried them."""
    for artifact in artifacts:
        try:
            key = get_key(artifact)
        except ArtifactLocationError:
            key = ""
        if not written_by(key, run_id):
            why = "the webhook did not admit this run" if not run_id else "it is not under this run's own key"
            return Refused("not_write_once", f"artifact {artifact.get('name')!r} at {key or 'no key'}: {why}, so "
                           "another run can write over it")
    return None


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


def _time(text: str) -> datetime:
    return parse_time(text) or datetime.min.replace(tzinfo=UTC)


def _env(container: Mapping[str, Any], name: str) -> str | None:
    for env in container.get("env") or []:
        if isinstance(env, Mapping) and env.get("name") == name:
            return str(env.get("value") or "")
    return None
