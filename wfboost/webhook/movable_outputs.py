"""Which outputs of a Workflow's steps may move, as its CREATE wrote them (wfboost.shrink.outputs), read once per
Workflow for the task results of its steps.

A task result names its Workflow (owner reference: name and uid; taskresult.go `createTaskResult`), not the
template of its node, so the verdict is the Workflow's annotation. Reading it costs one GET of the Workflow; the
answer is kept by uid for a short while (a Workflow's steps write their task results within seconds of each other,
several times each), and no longer: the annotation is removed when the Workflow's spec changes, and a verdict kept
past that could move values its changed consumers no longer restore. A Workflow that is gone, or whose uid is not
the task result's owner (deleted and created again under its name), moves nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from wfboost.kube import KubeApiError, KubeError, ObjectApi, resource_path
from wfboost.shrink.outputs import movable_outputs_of
from wfboost.webhook.errors import KubeUnavailable

__all__ = ["MovableOutputs"]

DEFAULT_TTL_SECONDS: Final = 15.0
DEFAULT_MAX_WORKFLOWS: Final = 4096


class MovableOutputs:
    def __init__(self, ttl: float = DEFAULT_TTL_SECONDS, max_workflows: int = DEFAULT_MAX_WORKFLOWS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_workflows = max_workflows
        self.clock = clock
        self.reads = 0  # GETs made, for tests and metrics
        self._verdicts: OrderedDict[str, tuple[float, dict[str, int]]] = OrderedDict()

    async def of(self, kube: ObjectApi | None, namespace: str, name: str, uid: str) -> dict[str, int]:
        """Output name → the most bytes a moved value may have, for the Workflow `namespace/name` with `uid`.
        KubeUnavailable when the API cannot be read (the caller moves nothing then)."""
        now = self.clock()
        cached = self._verdicts.get(uid)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        if kube is None:
            raise KubeUnavailable("task outputs may move only where the webhook can read Workflows (no API access)")
        self.reads += 1
        try:
            workflow = await kube.get(resource_path("argoproj.io", "v1alpha1", "workflows", namespace, name))
        except KubeApiError as exc:
            if exc.status != 404:
                raise KubeUnavailable(f"reading Workflow {namespace}/{name}: {exc}") from exc
            verdict: dict[str, int] = {}
        except KubeError as exc:
            raise KubeUnavailable(f"reading Workflow {namespace}/{name}: {exc}") from exc
        else:
            metadata = workflow.get("metadata")
            if not isinstance(metadata, dict) or metadata.get("uid") != uid:
                verdict = {}
            else:
                verdict = movable_outputs_of(metadata.get("annotations"))
        self._verdicts[uid] = (now, verdict)
        self._verdicts.move_to_end(uid)
        while len(self._verdicts) > self.max_workflows:
            self._verdicts.popitem(last=False)
        return verdict
