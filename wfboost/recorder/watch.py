"""The recorder: turns successful Argo steps into cache entries, from the Kubernetes API, outside admission.

Why a separate process watching the API rather than something in the webhook: a step's result exists only after
the pod ran, in two places the webhook never sees together (the pod's status, written by the kubelet, and the
WorkflowTaskResult, written by Argo's wait container). A watch sees both, in any order, including the final state
of a pod that is garbage-collected the moment it finishes (the DELETED event carries it), which is where Kubeflow's
cache records nothing.

The key is recomputed from the pod (join.prepare_step, the webhook's own `assess`), never read from the
`wfboost.io/cache-key` annotation: a pod's annotations can be written by anyone who can create pods, and an entry
recorded under a key it does not belong to would replay wrong outputs into someone else's workflow.

Writes are idempotent (a stable entry id per pod; the store keeps a track on the newest result), so replayed watch
events, relists and restarts are harmless. See docs/recorder.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from redis.exceptions import RedisError

from wfboost.argo import names
from wfboost.argo.pods import NotAnArgoStep, is_argo_step_pod, parse_pod
from wfboost.cache.eligibility import Skip, retention
from wfboost.cache.leases import LEASE_ANNOTATION, owner_of_pod
from wfboost.cache.marker import REPLAYED_ANNOTATION, BadMarker, restored_outputs
from wfboost.cache.store import CacheStore
from wfboost.kube import KubeApiError, KubeClient, KubeError, resource_path
from wfboost.kube.informer import Informer, WatchSettings
from wfboost.kube.namespaces import NamespaceLabels
from wfboost.policy import EffectiveMemoize, Policy
from wfboost.policy.controls import CACHE_KEY
from wfboost.recorder.join import (
    PendingStep,
    Refused,
    TaskOutputs,
    belongs_to,
    join,
    main_exit,
    node_verdict,
    pod_outcome,
    pod_skip_reason,
    prepare_step,
    run_of,
    stopped,
    task_outputs,
)
from wfboost.recorder.metrics import RecorderMetrics
from wfboost.recorder.pending import PendingTable, StepId, StepState
from wfboost.recorder.workflows import WorkflowReader
from wfboost.service.tasks import ServiceTasks

# How long a finished leader's lease is still renewed while its record is pending (task result, node verdict).
FINISHED_GRACE = 120.0
# Seconds between counts of leases held and followers waiting (a SCAN of the keyspace).
INFLIGHT_INTERVAL = 60.0


def shortest_heartbeat(policy: Policy) -> timedelta:
    """The heartbeat the recorder keeps: the shortest any namespace's settings ask for (overrides included)."""
    beats = [policy.latch.heartbeat]
    beats += [o.latch.heartbeat for o in policy.overrides if o.latch.heartbeat is not None]
    beats += [o.latch.lease_ttl / 3 for o in policy.overrides if o.latch.lease_ttl is not None]
    return max(min(beats), timedelta(milliseconds=100))

log = logging.getLogger(__name__)

PODS = resource_path("", "v1", "pods")
TASK_RESULTS = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults")
POD_SELECTOR = names.LABEL_WORKFLOW
# Only complete task results matter; the label flips to "true" once, which a selector watch reports as ADDED.
TASK_RESULT_SELECTOR = f"{names.LABEL_REPORT_OUTPUTS_COMPLETED}=true"
# Argo 3.5's outputs on the pod, for executors that may not write task results (removed in 3.6, #13100).
OUTPUTS_ANNOTATION = "workflows.argoproj.io/outputs"


@dataclass(frozen=True)
class RecorderSettings:
    watch: WatchSettings = field(default_factory=WatchSettings)
    pending_ttl: float = 6 * 3600.0  # seconds a half-seen step waits for news (every event or relist renews it)
    max_pending: int = 100_000
    tick: float = 10.0  # seconds between housekeeping passes: expire, retry failed writes, update the gauge
    purge_interval: float = 900.0  # seconds between background purges of stale tracks (0: never)
    workflow_read_interval: float = 10.0  # a Workflow is read at most this often (recorder/workflows.py)


class Recorder:
    """Watches pods and task results and records finished steps. `await run()` until cancelled."""

    def __init__(
        self,
        kube: KubeClient,
        store: CacheStore,
        policy: Callable[[], Policy],
        *,
        settings: RecorderSettings = RecorderSettings(),
        metrics: RecorderMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.store = store
        self.policy = policy
        self.settings = settings
        self.metrics = metrics or RecorderMetrics()
        self.clock = clock
        self.table = PendingTable(ttl=settings.pending_ttl, capacity=settings.max_pending)
        self._background: set[asyncio.Task[None]] = set()
        self._inflight_counted = -INFLIGHT_INTERVAL
        self.workflows = WorkflowReader(kube, min_interval=settings.workflow_read_interval, clock=clock)
        watch = settings.watch
        self.namespaces = NamespaceLabels(kube, watch)  # for policies that turn memoization on by namespace label
        self.informers = (
            Informer(kube, PODS, name="pods", handler=self.on_pod, label_selector=POD_SELECTOR, settings=watch,
                     on_restart=self._restarted("pods"), on_handler_error=self._handler_error),
            Informer(kube, TASK_RESULTS, name="workflowtaskresults", handler=self.on_task_result,
                     label_selector=TASK_RESULT_SELECTOR, settings=watch,
                     on_restart=self._restarted("workflowtaskresults"), on_handler_error=self._handler_error),
        )

    @property
    def synced(self) -> bool:
        """Both resources listed once: from here on, every finished step is seen."""
        return all(informer.synced.is_set() for informer in self.informers)

    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """The recorder's background loops by name, for the service shell (wfboost.service)."""
        loops: dict[str, Callable[[], Awaitable[None]]] = {informer.name: informer.run for informer in self.informers}
        loops["namespace-labels"] = self.namespaces.run
        loops["housekeeping"] = self._housekeeping
        loops["lease-heartbeat"] = self._heartbeat
        if self.settings.purge_interval > 0:
            loops["purge"] = self._purge_loop
        return loops

    async def run(self) -> None:
        """The loops on their own, until cancelled or one of them fails (which is raised): for tests and embedding;
        `wfboost recorder` runs them through the service shell instead."""
        tasks = ServiceTasks("recorder")
        for name, loop in self.loops().items():
            tasks.add(name, loop)
        await tasks.start()
        try:
            await tasks.failed.wait()
        finally:
            await tasks.stop()
        if tasks.error is not None:
            raise tasks.error

    # --- events -----------------------------------------------------------------------------------------------

    async def on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        if not is_argo_step_pod(pod):
            return
        await self._restore_outputs_annotation(pod)
        ident = _step_id(pod, (pod.get("metadata") or {}).get("annotations", {}).get(names.ANNOTATION_NODE_ID))
        run, created = run_of(pod)
        known = self.table.get(ident)
        if known is not None and known.pod and known.pod != run:
            if created and known.pod_created and created < known.pod_created:
                return  # an older pod of the node (a replayed event): the newer run is the one that counts
        elif known is not None and known.done is not None:
            known.touched = self.clock()
            return
        settings = self.policy().memoize_settings_for(ident[0], self.namespaces.labels(ident[0]))
        if not settings.enabled:
            return
        state = self.table.touch(ident, self.clock())
        if state.pod != run:
            state.new_run(run, created)  # the first pod of the node, or a newer one: a run of its own
        if event_type == "DELETED":
            state.pod_gone = True
        if state.step is None:
            reason = pod_skip_reason(pod)
            prepared = reason if reason is not None else await self._prepare(pod, settings)
            if isinstance(prepared, str):
                self._give_up(state, prepared)
                self._release_for_pod(pod, prepared)
                return
            if prepared is None:
                return  # transient (the ConfigMap could not be read): the next event or relist tries again
            state.step = prepared
            if self._changed_after_admission(pod, prepared):
                self._give_up(state, "changed_after_admission")
                return
        exit_ = main_exit(pod, state.step.main_container)
        if exit_ is None:
            return
        state.exit = exit_
        state.finished_seen = state.finished_seen or self.clock()
        if exit_.exit_code != 0:
            self._give_up(state, "failed")
            return
        succeeded = pod_outcome(pod)
        if succeeded is False:
            self._give_up(state, "failed")
            return
        interrupted = stopped(pod, exit_)
        if interrupted is not None:
            log.info("%s/%s not recorded: %s", ident[0], ident[1], interrupted.detail)
            self._give_up(state, interrupted.reason)
            return
        state.pod_succeeded = bool(succeeded)
        await self._try_record(ident, state)

    async def on_task_result(self, event_type: str, task_result: dict[str, Any]) -> None:
        if event_type == "DELETED":
            return  # what a deleted task result said is no run's report (a later run's may take its name)
        outputs = task_outputs(task_result)
        if outputs is None:
            return
        if await self._restore_task_result(task_result, outputs):
            return  # a replayed step's: its outputs are the cache's own, never recorded again
        ident = _step_id(task_result, (task_result.get("metadata") or {}).get("name"))
        known = self.table.get(ident)
        if known is not None and known.done is not None and known.step is not None and belongs_to(
            outputs, known.step
        ):
            return
        if not self.policy().memoize_settings_for(ident[0], self.namespaces.labels(ident[0])).enabled:
            return
        state = self.table.touch(ident, self.clock())
        state.outputs = outputs
        await self._try_record(ident, state)

    # --- replays whose outputs the webhook could not put back ----------------------------------------------------

    async def _restore_task_result(self, task_result: dict[str, Any], outputs: TaskOutputs) -> bool:
        """A complete task result that still carries the replay marker (the webhook was unreachable at each of its
        writes): swap the marker for the cached artifacts here, as the webhook would have. True for a replay's."""
        try:
            restored = restored_outputs(outputs.outputs)
        except BadMarker as exc:
            log.warning("task result %s: %s", _name(task_result), exc)
            return True
        if restored is None:
            return False
        meta = task_result.get("metadata") or {}
        path = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", meta.get("namespace"), meta.get("name"))
        ops: list[dict[str, Any]] = [{"op": "replace", "path": "/outputs", "value": restored}]
        if meta.get("annotations"):
            ops.append({"op": "add", "path": "/metadata/annotations/" + REPLAYED_ANNOTATION.replace("/", "~1"),
                        "value": "true"})
        else:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": {REPLAYED_ANNOTATION: "true"}})
        if meta.get("resourceVersion"):
            ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]})
        try:
            await self.kube.patch(path, ops, "json")
        except KubeError as exc:  # changed meanwhile (the next event brings it back) or the API is down (resync)
            self.metrics.errors.labels(kind="restore").inc()
            log.warning("task result %s: putting the cached artifacts back failed: %s", _name(task_result), exc)
            return True
        self.metrics.restored.labels(object="workflowtaskresult").inc()
        log.info("task result %s: the cached artifacts put back (the webhook had not)", _name(task_result))
        return True

    async def _restore_outputs_annotation(self, pod: dict[str, Any]) -> None:
        """Argo 3.5 reports outputs in the pod annotation `workflows.argoproj.io/outputs` when its executor may not
        write task results (executor.go reportResult, on Forbidden): a replayed pod's marker is swapped there."""
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        text = annotations.get(OUTPUTS_ANNOTATION)
        if not text or not pod_skip_reason(pod):
            return
        try:
            reported = orjson.loads(text)
            restored = restored_outputs(reported) if isinstance(reported, dict) else None
        except (orjson.JSONDecodeError, BadMarker) as exc:
            log.warning("pod %s: %s annotation: %s", _pod_name(pod), OUTPUTS_ANNOTATION, exc)
            return
        if restored is None:
            return
        meta = pod.get("metadata") or {}
        path = resource_path("", "v1", "pods", meta.get("namespace"), meta.get("name"))
        try:
            await self.kube.patch(path, {"metadata": {"annotations": {
                OUTPUTS_ANNOTATION: orjson.dumps(restored).decode()}}}, "merge")
        except KubeError as exc:
            self.metrics.errors.labels(kind="restore").inc()
            log.warning("pod %s: putting the cached artifacts back failed: %s", _pod_name(pod), exc)
            return
        self.metrics.restored.labels(object="pod").inc()

    # --- recording --------------------------------------------------------------------------------------------

    async def _prepare(self, pod: dict[str, Any], settings: EffectiveMemoize) -> PendingStep | str | None:
        """The pending step, a skip reason, or None when it could not be decided yet."""
        try:
            step = parse_pod(pod)
        except NotAnArgoStep as exc:
            log.info("pod %s: %s", _pod_name(pod), exc)
            return "not_argo_layout"
        if step.offloads:
            path = resource_path("", "v1", "configmaps", step.namespace, step.pod_name)
            try:
                configmap = await self.kube.get(path)
                step = step.with_offloaded(configmap.get("data") or {})
            except KubeApiError as exc:
                if exc.status != 404:
                    self.metrics.errors.labels(kind="configmap").inc()
                    log.warning("pod %s: reading ConfigMap %s: %s", _pod_name(pod), path, exc)
                    return None
                return "offload_missing"  # garbage-collected with its pod before we saw it
            except KubeError as exc:
                self.metrics.errors.labels(kind="configmap").inc()
                log.warning("pod %s: reading ConfigMap %s: %s", _pod_name(pod), path, exc)
                return None
            except NotAnArgoStep as exc:
                log.info("pod %s: %s", _pod_name(pod), exc)
                return "not_argo_layout"
        prepared = prepare_step(step, settings)
        if isinstance(prepared, Skip):
            if prepared.reason == "bad_control":
                log.info("pod %s: %s", _pod_name(pod), prepared.detail)
            return prepared.reason
        return prepared

    async def _try_record(self, ident: StepId, state: StepState) -> None:
        if not state.ready:
            return
        assert state.step is not None and state.exit is not None and state.outputs is not None
        step, outputs = state.step, state.outputs
        if not belongs_to(outputs, step):
            return  # an earlier run's task result: this run's own is still to come
        state.recording = True
        try:
            await self._record(ident, state, step, outputs)
        finally:
            state.recording = False

    async def _record(self, ident: StepId, state: StepState, step: PendingStep, outputs: TaskOutputs) -> None:
        """Record `outputs`, the task result checked to belong to this run. Never `state.outputs` after an await:
        the task-result watch runs concurrently and may set it to another object meanwhile (an earlier run's,
        replayed after a reconnect), whose outputs would then be filed under this run's key."""
        assert state.exit is not None
        try:
            workflow = await self.workflows.get(step.namespace, step.workflow, uid=step.workflow_uid)
        except KubeError as exc:
            state.awaiting_node = True
            self.metrics.errors.labels(kind="workflow").inc()
            log.warning("%s/%s: reading workflow %s failed (will retry): %s", *ident, step.workflow, exc)
            return
        verdict = node_verdict(workflow, step)
        if verdict == "not_yet":
            state.awaiting_node = True  # the housekeeping tick asks again
            return
        state.awaiting_node = False
        joined = verdict if isinstance(verdict, Refused) else join(
            step, state.exit, outputs, now=datetime.now(UTC), workflow=workflow
        )
        if isinstance(joined, Refused):
            log.info("%s/%s not recorded: %s", ident[0], ident[1], joined.detail)
            self._give_up(state, joined.reason)
            return
        try:
            moved, released = await self.store.record_run(
                joined, retention=retention(self.policy()), lease_owner=step.lease_owner
            )
        except (RedisError, OSError) as exc:
            state.write_failed = True
            self.metrics.errors.labels(kind="store").inc()
            log.warning("%s/%s: writing the entry failed (will retry): %s", ident[0], ident[1], exc)
            return
        state.done, state.write_failed, state.outputs = "recorded", False, None
        if released:
            self.metrics.leases_released.labels(cause="recorded").inc()
        self.metrics.recorded.labels(result="new" if moved else "unchanged").inc()
        if moved:
            self.metrics.recorded_bytes.inc(len(orjson.dumps(joined)))
        log.info("recorded %s/%s (%s) as %s on track %ss", ident[0], step.producer["node_name"],
                 step.producer["pod"], joined["key"][:16], joined["staleness_s"])

    def _changed_after_admission(self, pod: dict[str, Any], step: PendingStep) -> bool:
        """The key is always recomputed, never taken from the pod; the webhook's annotation serves to notice when
        the two disagree. Then the pod ran otherwise than wfboost admitted it (a later mutating webhook added a
        container, or changed one): its result is not a function of the key a lookup computes, so it is not
        recorded."""
        annotated = ((pod.get("metadata") or {}).get("annotations") or {}).get(CACHE_KEY)
        if not annotated or annotated == step.key:
            return False
        self.metrics.key_mismatches.inc()
        log.warning("pod %s not recorded: key %s recomputed, %s annotated at admission: the pod changed after "
                    "wfboost admitted it (another mutating webhook?)", _pod_name(pod), step.key[:16], annotated[:16])
        return True

    def _give_up(self, state: StepState, reason: str, *, release: bool = True) -> None:
        state.done, state.outputs = reason, None
        self.metrics.skipped.labels(reason=reason).inc()
        if release and state.step is not None and state.step.lease_owner:
            # The leader will not be recorded: the next attempt of a follower may lead (latching).
            self._in_background(self._release(state.step, reason))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without waiting for it, keeping a reference so the task is not collected half-way."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, step: PendingStep, cause: str) -> None:
        await self._release_lease(step.lease_key or step.key, step.lease_owner, cause, step.producer["pod"])

    async def _release_lease(self, key: str, owner: str, cause: str, pod: str) -> None:
        try:
            released = await self.store.release_lease(key, owner)
        except (RedisError, OSError) as exc:
            self.metrics.errors.labels(kind="store").inc()
            log.warning("releasing the lease of %s failed (it lapses by itself): %s", key[:16], exc)
            return
        if released:
            self.metrics.leases_released.labels(cause=cause).inc()
            log.info("released the lease of %s held by %s (%s)", key[:16], pod, cause)

    def _release_for_pod(self, pod: dict[str, Any], cause: str) -> None:
        """A leader pod given up before it was prepared (a skip reason of the recorder's own): its lease, from the
        annotations the webhook wrote, when they name this very pod."""
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        owner, key = annotations.get(LEASE_ANNOTATION), annotations.get(CACHE_KEY)
        if not isinstance(owner, str) or not isinstance(key, str) or not owner or not key:
            return
        try:
            step = parse_pod(pod)
        except NotAnArgoStep:
            return
        if owner_of_pod(pod, step):
            self._in_background(self._release_lease(key, owner, cause, step.pod_name))

    async def heartbeat_pass(self) -> None:
        """Renew the lease of every leader that still runs; let go of the others.

        - Running, as far as events tell: renewed, after checking that the pod still exists (a deletion the watch
          missed, across a relist or a 410, must not hold followers for hours): one GET per leader per heartbeat.
        - Finished (main terminated): renewed for FINISHED_GRACE while its record is pending (the task result and
          the controller's node verdict come after), then left to lapse.
        - Gone before it succeeded: released at once.

        A lease lives `latch.leaseTTL` from its last renewal: a leader pod never created lets it lapse by itself,
        and so does a recorder that is down (followers then lead in turn: a repeated run, never a wrong result)."""
        now = self.clock()
        await self._count_inflight()
        for _, state in list(self.table.items()):
            step = state.step
            if step is None or not step.lease_owner or state.done is not None:
                continue
            succeeded = state.exit is not None and state.exit.exit_code == 0
            if state.exit is None and not state.pod_gone:
                state.pod_gone = await self._pod_missing(step)
            if state.pod_gone and not succeeded:
                self._give_up(state, "pod_deleted", release=False)
                await self._release(step, "pod_deleted")
                continue
            if state.exit is not None and now - state.finished_seen > FINISHED_GRACE:
                continue  # its record is overdue: the lease lapses, a follower may lead
            ttl = self.policy().latch_settings_for(step.namespace, self.namespaces.labels(step.namespace)).lease_ttl
            try:
                if await self.store.extend_lease(step.lease_key or step.key, step.lease_owner, ttl):
                    self.metrics.leases_extended.inc()
            except (RedisError, OSError) as exc:
                self.metrics.errors.labels(kind="store").inc()
                log.warning("renewing the lease of %s failed: %s", step.key[:16], exc)

    async def _count_inflight(self) -> None:
        """The leases and waiting followers gauges: a SCAN of the keyspace, so at most once a minute."""
        if not self.policy().features.latch or self.clock() - self._inflight_counted < INFLIGHT_INTERVAL:
            return
        self._inflight_counted = self.clock()
        try:
            inflight = await self.store.inflight()
        except (RedisError, OSError) as exc:
            self.metrics.errors.labels(kind="store").inc()
            log.warning("counting leases failed: %s", exc)
            return
        self.metrics.leases_in_flight.set(len(inflight))
        self.metrics.followers_waiting.set(sum(len(item.waiting) for item in inflight))

    async def _pod_missing(self, step: PendingStep) -> bool:
        """True when the API server says the leader's pod no longer exists (unknown counts as there)."""
        try:
            await self.kube.get(resource_path("", "v1", "pods", step.namespace, step.producer["pod"]))
        except KubeApiError as exc:
            return exc.status == 404
        except KubeError:
            return False
        return False

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(shortest_heartbeat(self.policy()).total_seconds())
            await self.heartbeat_pass()

    # --- background -------------------------------------------------------------------------------------------

    async def housekeeping_pass(self) -> None:
        """Expire old waits, retry writes that failed, refresh the gauge (exposed for tests and the tick)."""
        for ident, state in self.table.expire(self.clock()):
            self.metrics.skipped.labels(reason="expired").inc()
            have = "pod status" if state.exit else "task result" if state.outputs else "pod"
            log.info("%s/%s: gave up waiting (had only the %s)", ident[0], ident[1], have)
        for ident, state in self.table.items():
            if state.write_failed or state.awaiting_node:
                await self._try_record(ident, state)
        self.metrics.pending.set(self.table.waiting())

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick)
            await self.housekeeping_pass()

    async def purge_once(self) -> int:
        try:
            removed = await self.store.purge(retention=retention(self.policy()))
        except (RedisError, OSError) as exc:
            self.metrics.errors.labels(kind="purge").inc()
            log.warning("purge failed (next in %.0fs): %s", self.settings.purge_interval, exc)
            return 0
        self.metrics.purged.inc(removed)
        if removed:
            log.info("purged %d stale tracks", removed)
        return removed

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purge_interval)
            await self.purge_once()

    def _restarted(self, resource: str) -> Callable[[str], None]:
        def count(reason: str) -> None:
            self.metrics.watch_restarts.labels(resource=resource, reason=reason).inc()

        return count

    def _handler_error(self) -> None:
        self.metrics.errors.labels(kind="handler").inc()


def _step_id(obj: dict[str, Any], node_id: Any) -> StepId:
    return (str((obj.get("metadata") or {}).get("namespace") or ""), str(node_id or ""))


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _pod_name(pod: dict[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
