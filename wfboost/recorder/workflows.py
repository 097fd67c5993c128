"""Reading a step's Workflow, to learn what the controller decided about its node, without reading it per step.

Only the Workflow says whether the controller marked a node Succeeded (a stopped step can leave a Succeeded pod),
and what the producer's artifact GC will delete. A Workflow can weigh megabytes and may have thousands of steps
finishing, so reads are coalesced: one GET serves every step of a workflow for `min_interval` seconds, and a step
whose node is not marked yet asks again after that (the recorder's housekeeping). Watching every Workflow instead
would stream each of the controller's writes (it rewrites the whole object on every update) into the recorder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wfboost.kube import KubeApiError, KubeClient, resource_path

Workflow = dict[str, Any]


@dataclass
class _Read:
    at: float
    workflow: Workflow | None  # None: not found (deleted)


@dataclass
class WorkflowReader:
    kube: KubeClient
    min_interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    max_cached: int = 2048
    reads: int = 0  # GETs made, for metrics and tests
    _cache: dict[tuple[str, str], _Read] = field(default_factory=dict)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    async def get(self, namespace: str, name: str, *, fresh_after: float = 0.0, uid: str = "") -> Workflow | None:
        """The Workflow as read at most `min_interval` seconds ago (and, with `fresh_after`, read after that clock
        time); None when it does not exist. API errors other than 404 are raised (the caller retries later).

        With `uid` (the step's owner), a cached read of another object of that name (or of none) is read again: a
        Workflow deleted and created again under its name within `min_interval` (`kubectl delete` then `create`, a
        pipeline retried) is a new object, and the old one's read must not decide for it."""
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            now = self.clock()
            if (cached is not None and now - cached.at < self.min_interval and cached.at >= fresh_after
                    and (not uid or _uid(cached.workflow) == uid)):
                return cached.workflow
            try:
                workflow: Workflow | None = await self.kube.get(
                    resource_path("argoproj.io", "v1alpha1", "workflows", namespace, name)
                )
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
                workflow = None
            self.reads += 1
            self._cache[key] = _Read(self.clock(), workflow)
            self._trim()
            return workflow

    def _trim(self) -> None:
        while len(self._cache) > self.max_cached:
            oldest = min(self._cache, key=lambda k: self._cache[k].at)
            del self._cache[oldest]
            self._locks.pop(oldest, None)


def _uid(workflow: Workflow | None) -> str:
    metadata = (workflow or {}).get("metadata")
    return str(metadata.get("uid") or "") if isinstance(metadata, dict) else ""
