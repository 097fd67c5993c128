"""A Kubernetes cluster's moving parts around the recorder, played through kmock's stateful emulator.

`Cluster` offers the verbs the controller (create pods; mark the node once the pod succeeded and its task result is
complete), the kubelet (pod status), Argo's wait container (task results) and the API server (a uid and a creation
time on every object created, which kmock does not set) use; `running` runs a real Recorder against it. Shared by
the recorder's tests and the full-cycle tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from wfboost.argo import names
from wfboost.cache.entries import CacheEntry
from wfboost.cache.store import CacheStore
from wfboost.kube import KubeApiError, KubeClient, resource_path
from wfboost.kube.informer import WatchSettings
from wfboost.policy import Policy
from wfboost.recorder.watch import Recorder, RecorderSettings

# An hour ago, to the second: entries expire `retention` after their finish time, so a fixed date would
# eventually be recorded already expired.
_FINISHED = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
FINISHED_AT = _FINISHED.strftime("%Y-%m-%dT%H:%M:%SZ")
FINISHED_MS = int(_FINISHED.timestamp() * 1000)
RAN_MS = 200_000  # main ran 3 min 20 s (the kubelet writes startedAt beside finishedAt)
STARTED_AT = (_FINISHED - timedelta(milliseconds=RAN_MS)).strftime("%Y-%m-%dT%H:%M:%SZ")
IMAGE_ID = "ghcr.io/example/data-tools@sha256:" + "ab" * 32
HANG_GUARD = 30  # seconds: only ever reached when something is broken


def node_id(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["annotations"][names.ANNOTATION_NODE_ID])


def terminated_status(exit_code: int = 0, finished_at: str = FINISHED_AT) -> dict[str, Any]:
    return {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {"name": "wait", "state": {"running": {"startedAt": "2026-03-04T05:00:00Z"}}, "imageID": "argoexec"},
            {
                "name": "main",
                "imageID": IMAGE_ID,
                "state": {"terminated": {"exitCode": exit_code, "startedAt": STARTED_AT, "finishedAt": finished_at,
                                         "reason": "Completed"}},
            },
        ],
    }


def task_result(pod: dict[str, Any], outputs: dict[str, Any], *, complete: bool = True) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTaskResult",
        "metadata": {
            "name": node_id(pod),
            "namespace": meta["namespace"],
            "labels": {
                names.LABEL_WORKFLOW: meta["labels"][names.LABEL_WORKFLOW],
                names.LABEL_REPORT_OUTPUTS_COMPLETED: "true" if complete else "false",
            },
            "ownerReferences": [
                {k: v for k, v in ref.items() if k in ("apiVersion", "kind", "name", "uid")}
                for ref in meta.get("ownerReferences") or []
            ],
        },
        "outputs": outputs,
    }


def stamped(obj: dict[str, Any], after: dict[str, Any] | None = None) -> dict[str, Any]:
    """The object as the API server stores it: with a uid and a creation time (kept when the test chose them).

    `after`: the pod whose wait container writes this task result. A real pod takes seconds from its creation to
    its wait container's first write (scheduling, pulling, the init container), and creation times have whole
    seconds: the task result is stamped at least a second after the pod, as it would be."""
    meta = obj.setdefault("metadata", {})
    if not meta.get("uid"):
        meta["uid"] = str(uuid.uuid4())
    when = datetime.now(UTC)
    pod_created = ((after or {}).get("metadata") or {}).get("creationTimestamp")
    if pod_created:
        when = max(when, datetime.fromisoformat(pod_created.replace("Z", "+00:00")) + timedelta(seconds=1))
    if not meta.get("creationTimestamp"):  # absent, or null as a client serialises an unset time
        meta["creationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj


class Cluster:
    """The emulator seen through the API, with the verbs the controller, kubelet and wait container use.

    `controller_marks_nodes`: like Argo's controller, mark a node Succeeded in its Workflow once its pod succeeded
    and its task result is complete (the recorder records only what the controller marked). Tests of the other
    outcomes turn it off and call `mark_node` themselves.
    """

    def __init__(self, kube: KubeClient, kmock: Any) -> None:
        self.kube = kube
        self.kmock = kmock
        self.controller_marks_nodes = True
        self._succeeded: set[tuple[str, str]] = set()
        self._reported: set[tuple[str, str]] = set()
        self._pods: dict[tuple[str, str], dict[str, Any]] = {}

    async def create_pod(self, pod: dict[str, Any]) -> None:
        stamped(pod)
        await self.kube.create(resource_path("", "v1", "pods", pod["metadata"]["namespace"]), pod)
        self._pods[(pod["metadata"]["namespace"], node_id(pod))] = pod
        await self.ensure_workflow(pod)
        if (pod.get("status") or {}).get("phase") == "Succeeded":  # created already finished (a relist's view)
            self._succeeded.add((pod["metadata"]["namespace"], node_id(pod)))
            await self._controller(pod)

    async def finish_pod(
        self, pod: dict[str, Any], exit_code: int = 0, *, metadata: dict[str, Any] | None = None,
        conditions: list[dict[str, Any]] | None = None, **status: Any,
    ) -> None:
        """The kubelet's final status write; `metadata` (a deletionTimestamp, say) and pod `conditions` in the same
        write (kmock removes a pod as soon as it has a deletionTimestamp, so the two must come together)."""
        meta = pod["metadata"]
        path = resource_path("", "v1", "pods", meta["namespace"], meta["name"])
        body: dict[str, Any] = {"status": terminated_status(exit_code, **status)}
        if conditions is not None:
            body["status"]["conditions"] = conditions
        if metadata is not None:
            body["metadata"] = metadata
        await self.kube.patch(path, body)
        if exit_code == 0:
            self._succeeded.add((meta["namespace"], node_id(pod)))
            await self._controller(pod)

    # --- the controller's Workflow ----------------------------------------------------------------------------

    @staticmethod
    def _workflow_path(namespace: str, name: str | None = None) -> str:
        return resource_path("argoproj.io", "v1alpha1", "workflows", namespace, name)

    async def ensure_workflow(self, pod: dict[str, Any]) -> None:
        """The Workflow that owns the pod, as the controller keeps it (created once, with the pod's owner uid)."""
        meta = pod["metadata"]
        name = meta["labels"][names.LABEL_WORKFLOW]
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == "Workflow"), {})
        try:
            existing = await self.kube.get(self._workflow_path(meta["namespace"], name))
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            existing = None
        if existing is not None and (existing.get("metadata") or {}).get("uid") == owner.get("uid"):
            return
        if existing is not None:  # the workflow was re-created under the same name: a new object, a new uid
            await self.kube.delete(self._workflow_path(meta["namespace"], name))
        body = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": name, "namespace": meta["namespace"], "uid": owner.get("uid", "")},
                "spec": {}, "status": {"phase": "Running", "nodes": {}}}
        await self.kube.create(self._workflow_path(meta["namespace"]), stamped(body))

    async def mark_node(self, pod: dict[str, Any], phase: str, **workflow: Any) -> None:
        """Set the node's phase in its Workflow (and any other top-level fields given, e.g. spec={...})."""
        meta = pod["metadata"]
        await self.ensure_workflow(pod)
        name = meta["labels"][names.LABEL_WORKFLOW]
        patch: dict[str, Any] = {"status": {"nodes": {node_id(pod): {"id": node_id(pod), "phase": phase}}}}
        patch.update(workflow)
        await self.kube.patch(self._workflow_path(meta["namespace"], name), patch)

    async def _controller(self, pod: dict[str, Any]) -> None:
        ident = (pod["metadata"]["namespace"], node_id(pod))
        if self.controller_marks_nodes and ident in self._succeeded and ident in self._reported:
            await self.mark_node(self._pods.get(ident, pod), "Succeeded")

    async def delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        await self.kube.delete(resource_path("", "v1", "pods", meta["namespace"], meta["name"]))

    def finish_silently(self, pod: dict[str, Any]) -> None:
        """The kubelet's status write that the recorder never sees as an event (it was disconnected, or the
        pod was deleted before the MODIFIED event was delivered): only the DELETED event will carry it."""
        key = ("v1/pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.kmock.objects[key] = {**self.kmock.objects[key].raw, "status": terminated_status()}
        self._succeeded.add((pod["metadata"]["namespace"], node_id(pod)))  # the controller saw it finish

    async def report(self, pod: dict[str, Any], outputs: dict[str, Any], *, complete: bool = True) -> None:
        ns = pod["metadata"]["namespace"]
        await self.ensure_workflow(pod)  # the controller created the workflow before any of its pods
        path = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns)
        await self.kube.create(path, stamped(task_result(pod, outputs, complete=complete), after=pod))
        if complete:
            self._reported.add((ns, node_id(pod)))
            await self._controller(pod)

    async def store_task_result(self, task_result: dict[str, Any], pod: dict[str, Any]) -> None:
        """A task result as the webhook answered it, stored as the API server stores it (then the controller acts)."""
        ns = task_result["metadata"]["namespace"]
        path = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns)
        await self.kube.create(path, stamped(task_result, after=pod))
        labels = task_result["metadata"].get("labels") or {}
        if labels.get(names.LABEL_REPORT_OUTPUTS_COMPLETED) == "true":
            self._reported.add((ns, node_id(pod)))
            await self._controller(pod)

    async def create_configmap(self, configmap: dict[str, Any]) -> None:
        await self.kube.create(resource_path("", "v1", "configmaps", configmap["metadata"]["namespace"]), configmap)


SETTINGS = RecorderSettings(watch=WatchSettings(resync=3600, watch_timeout=300, backoff_initial=0.05), tick=0.05,
                            purge_interval=0, workflow_read_interval=0.05)


@contextlib.asynccontextmanager
async def running(
    cluster: Cluster, store: CacheStore, policy: Callable[[], Policy], settings: RecorderSettings = SETTINGS
) -> AsyncIterator[Recorder]:
    recorder = Recorder(cluster.kube, store, policy, settings=settings)
    task = asyncio.create_task(recorder.run())
    try:
        async with asyncio.timeout(HANG_GUARD):
            while not recorder.synced:  # noqa: ASYNC110 - the informers set their events from their own tasks
                await asyncio.sleep(0.01)
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def recorded(store: CacheStore, key: str) -> dict[str, CacheEntry]:
    async with asyncio.timeout(HANG_GUARD):
        while not (tracks := await store.tracks(key)):  # noqa: ASYNC110 - polling what another task writes
            await asyncio.sleep(0.02)
    return tracks
