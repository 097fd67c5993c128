"""Which Workflows exist right now, and which side-store values their text references, kept current by a list +
watch of argoproj.io/v1alpha1 workflows.

The sweeper may delete a workflow's blobs only when this view is trustworthy: `synced` is True only after a
complete list and while the watch that follows it is unbroken. Any failure (transport error, 410 Gone) clears it
until a fresh list succeeds, so a blind spot in the view never looks like "that workflow is gone".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import orjson

from wfboost.kube import KubeClient, KubeError, WatchEvent, WatchExpired, resource_path
from wfboost.shrink.refs import references_in

log = logging.getLogger(__name__)

WORKFLOWS = resource_path("argoproj.io", "v1alpha1", "workflows")
# How long a release time is remembered: far past any grace period.
_RELEASED_KEPT_SECONDS = 86400.0


class LiveWorkflows:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.uids: set[str] = set()
        self.synced = False
        self.resource_version: str | None = None
        self.relists = 0
        self._held_by: dict[str, frozenset[tuple[str, str]]] = {}  # uid -> (namespace, digest) it references
        self._holders: dict[tuple[str, str], dict[str, str]] = {}  # (namespace, digest) -> uid -> "ns/name"
        # (namespace, digest) -> when its last holder went: a Workflow deleted and created again from its own YAML
        # (`kubectl get -o yaml`, then delete, then create) must find its values still there.
        self._released: dict[tuple[str, str], float] = {}

    def is_live(self, uid: str) -> bool:
        return uid in self.uids

    def holder_of(self, namespace: str, digest: str) -> str | None:
        """A live Workflow whose text holds the reference to this blob (its "namespace/name"), if any."""
        holders = self._holders.get((namespace, digest))
        return next(iter(holders.values())) if holders else None

    def released_at(self, namespace: str, digest: str) -> float | None:
        """When the last live Workflow holding this blob's reference went, if one did and none holds it now."""
        return None if (namespace, digest) in self._holders else self._released.get((namespace, digest))

    def replace(self, items: Iterable[dict[str, object]], resource_version: str | None) -> None:
        items = list(items)
        before = set(self._holders)
        self.uids = {uid for item in items if (uid := _uid(item))}
        self._held_by, self._holders = {}, {}
        for item in items:
            self._hold(item)
        now = self.clock()
        for key in before - set(self._holders):
            self._released[key] = now
        self._released = {key: at for key, at in self._released.items() if now - at < _RELEASED_KEPT_SECONDS}
        self.resource_version = resource_version
        self.synced = True

    def _hold(self, obj: dict[str, object]) -> None:
        uid = _uid(obj)
        if not uid:
            return
        self._release(uid)
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(metadata, dict)
        namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
        held = frozenset((namespace, ref.digest) for ref in references_in(orjson.dumps(obj).decode()))
        if held:
            self._held_by[uid] = held
            for key in held:
                self._holders.setdefault(key, {})[uid] = f"{namespace}/{name}"

    def _release(self, uid: str) -> None:
        for key in self._held_by.pop(uid, frozenset()):
            holders = self._holders.get(key)
            if holders is not None:
                holders.pop(uid, None)
                if not holders:
                    del self._holders[key]
                    self._released[key] = self.clock()

    def apply(self, event: WatchEvent) -> None:
        obj = event["object"]
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)
        uid = _uid(obj)
        if event["type"] in ("ADDED", "MODIFIED") and uid:
            self.uids.add(uid)
            self._hold(obj)
        elif event["type"] == "DELETED" and uid:
            self.uids.discard(uid)
            self._release(uid)

    async def run(self, kube: KubeClient, *, watch_seconds: int = 300, retry_seconds: float = 5.0) -> None:
        """List, then watch from the list's resourceVersion, forever; relist after 410 or any failure."""
        while True:
            try:
                listed = await kube.list(WORKFLOWS)
                self.replace(listed["items"], listed["metadata"].get("resourceVersion"))
                self.relists += 1
                while True:
                    events = kube.watch(WORKFLOWS, self.resource_version, timeout_seconds=watch_seconds)
                    async with contextlib.aclosing(events):
                        async for event in events:
                            self.apply(event)
            except WatchExpired:
                self.synced = False
                log.info("workflow watch expired (410): listing again")
                await asyncio.sleep(retry_seconds / 50)  # relist at once, but never spin on a server that keeps 410ing
            except KubeError as exc:
                self.synced = False
                log.warning("workflow list/watch failed, GC of workflow blobs paused: %s", exc)
                await asyncio.sleep(retry_seconds)


def _uid(obj: dict[str, object]) -> str | None:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        uid = metadata.get("uid")
        if isinstance(uid, str) and uid:
            return uid
    return None
