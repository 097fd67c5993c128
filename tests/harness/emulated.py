"""A Kubernetes cluster's moving parts around the recorder, played through kmock's stateful emulator.

`Cluster` offers the verbs the controller (create pods), the kubelet (pod status) and Argo's wait container (task
results) use; `running` runs a real Recorder against it. Shared by the recorder's tests and the full-cycle tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from wfboost.argo import names
from wfboost.cache.entries import CacheEntry
from wfboost.cache.store import CacheStore
from wfboost.kube import KubeClient, resource_path
from wfboost.kube.informer import WatchSettings
from wfboost.policy import Policy
from wfboost.recorder.watch import Recorder, RecorderSettings

# An hour ago, to the second: entries expire `retention` after their finish time, so a fixed date would
# eventually be recorded already expired.
_FINISHED = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
FINISHED_AT = _FINISHED.strftime("%Y-%m-%dT%H:%M:%SZ")
FINISHED_MS = int(_FINISHED.timestamp() * 1000)
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
                "state": {"terminated": {"exitCode": exit_code, "finishedAt": finished_at, "reason": "Completed"}},
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


class Cluster:
    """The emulator seen through the API, with the verbs the controller, kubelet and wait container use."""

    def __init__(self, kube: KubeClient, kmock: Any) -> None:
        self.kube = kube
        self.kmock = kmock

    async def create_pod(self, pod: dict[str, Any]) -> None:
        await self.kube.create(resource_path("", "v1", "pods", pod["metadata"]["namespace"]), pod)

    async def finish_pod(self, pod: dict[str, Any], exit_code: int = 0, **status: Any) -> None:
        meta = pod["metadata"]
        path = resource_path("", "v1", "pods", meta["namespace"], meta["name"])
        await self.kube.patch(path, {"status": terminated_status(exit_code, **status)})

    async def delete_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        await self.kube.delete(resource_path("", "v1", "pods", meta["namespace"], meta["name"]))

    def finish_silently(self, pod: dict[str, Any]) -> None:
        """The kubelet's status write that the recorder never sees as an event (it was disconnected, or the
        pod was deleted before the MODIFIED event was delivered): only the DELETED event will carry it."""
        key = ("v1/pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        self.kmock.objects[key] = {**self.kmock.objects[key].raw, "status": terminated_status()}

    async def report(self, pod: dict[str, Any], outputs: dict[str, Any], *, complete: bool = True) -> None:
        ns = pod["metadata"]["namespace"]
        path = resource_path("argoproj.io", "v1alpha1", "workflowtaskresults", ns)
        await self.kube.create(path, task_result(pod, outputs, complete=complete))

    async def create_configmap(self, configmap: dict[str, Any]) -> None:
        await self.kube.create(resource_path("", "v1", "configmaps", configmap["metadata"]["namespace"]), configmap)


SETTINGS = RecorderSettings(watch=WatchSettings(resync=3600, watch_timeout=300, backoff_initial=0.05), tick=0.05,
                            purge_interval=0)


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
