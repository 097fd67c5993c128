"""Which outputs of a Workflow's steps may move, decided on the Workflow as the API server stores it
(wfboost.shrink.outputs with `stored=True`), for the task results of its steps.

A task result names its Workflow (owner reference: name and uid; taskresult.go `createTaskResult`), not the
template of its node, so the verdict is per output name, made on the whole stored spec: one GET of the Workflow,
kept by uid for a short while (a Workflow's steps write their task results within seconds of each other, several
times each), and the analysis itself kept by the spec's digest, so that a Workflow is analysed once per version of
its spec (a 2,000-task Kubeflow spec takes about a second: it runs in a thread). Nothing is taken from the object's
annotations: a copy with edited consumers, or a spec edited after CREATE, is judged as it is now. A Workflow that is
gone, or whose uid is not the task result's owner (deleted and created again under its name), moves nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from wfboost.kube import KubeApiError, KubeError, ObjectApi, resource_path
from wfboost.shrink.outputs import analyse_task_outputs
from wfboost.webhook.errors import KubeUnavailable

__all__ = ["MovableOutputs"]

DEFAULT_TTL_SECONDS: Final = 15.0
DEFAULT_MAX_WORKFLOWS: Final = 4096
# Below this, analysing in the event loop is cheaper than handing the work to a thread.
_INLINE_BYTES: Final = 64 * 1024


class MovableOutputs:
    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, max_workflows: int = DEFAULT_MAX_WORKFLOWS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_workflows = max_workflows
        self.clock = clock
        self.reads = 0  # GETs made
        self.analyses = 0  # specs analysed
        self._seen: OrderedDict[str, tuple[float, str, dict[str, int]]] = OrderedDict()  # uid -> (when, digest, …)
        self._reading: dict[str, asyncio.Task[dict[str, int]]] = {}  # uid -> the read under way

    async def of(self, kube: ObjectApi | None, namespace: str, name: str, uid: str) -> dict[str, int]:
        """Output name → the most bytes a moved value may have, for the Workflow `namespace/name` with `uid`.
        KubeUnavailable when the API cannot be read (the caller moves nothing then). Task results of one Workflow
        arriving together share one read and one analysis (a fan-out's steps finish together)."""
        seen = self._seen.get(uid)
        if seen is not None and self.clock() - seen[0] < self.ttl:
            return seen[2]
        reading = self._reading.get(uid)
        if reading is None:
            reading = asyncio.ensure_future(self._read(kube, namespace, name, uid))
            self._reading[uid] = reading
            reading.add_done_callback(lambda _: self._reading.pop(uid, None))
        return await asyncio.shield(reading)  # one caller's deadline does not cancel the others' read

    async def _read(self, kube: ObjectApi | None, namespace: str, name: str, uid: str) -> dict[str, int]:
        now = self.clock()
        seen = self._seen.get(uid)
        if kube is None:
            raise KubeUnavailable("task outputs may move only where the webhook can read Workflows (no API access)")
        self.reads += 1
        try:
            workflow = await kube.get(resource_path("argoproj.io", "v1alpha1", "workflows", namespace, name))
        except KubeApiError as exc:
            if exc.status != 404:
                raise KubeUnavailable(f"reading Workflow {namespace}/{name}: {exc}") from exc
            workflow = {}
        except KubeError as exc:
            raise KubeUnavailable(f"reading Workflow {namespace}/{name}: {exc}") from exc
        metadata = workflow.get("metadata")
        spec = workflow.get("spec")
        if not isinstance(metadata, dict) or metadata.get("uid") != uid or not isinstance(spec, dict):
            digest, verdict = "", {}
        else:
            text = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
            digest = hashlib.sha256(text).hexdigest()
            if seen is not None and seen[1] == digest:
                verdict = seen[2]
            else:
                self.analyses += 1
                verdict = await _analysed(spec, len(text))
        self._seen[uid] = (now, digest, verdict)
        self._seen.move_to_end(uid)
        while len(self._seen) > self.max_workflows:
            self._seen.popitem(last=False)
        return verdict


async def _analysed(spec: Mapping[str, Any], size: int) -> dict[str, int]:
    if size < _INLINE_BYTES:
        return analyse_task_outputs(spec, stored=True).movable
    return (await asyncio.to_thread(analyse_task_outputs, spec, stored=True)).movable
