"""Which objects that can hold side-store references exist right now, and which references their text holds, kept
current by a list + watch of each kind: Workflows, and the WorkflowTemplates and CronWorkflows whose templates
shrinking may have changed (every Workflow made from them copies their references).

The sweeper may delete a blob only when this view is trustworthy: `synced` is True only after a complete list of
every kind and while the watches that follow are unbroken. Any failure (transport error, 410 Gone) clears it until
a fresh list succeeds, so a blind spot in the view never looks like "that workflow is gone". A kind the API server
does not serve (404: its CRD is not installed) holds nothing, so it counts as listed and empty; it is listed again
every `retry_seconds * 12`, well inside the side store's grace for a new blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import orjson

from wfboost.kube import KubeApiError, KubeClient, KubeError, WatchEvent, WatchExpired, resource_path
from wfboost.shrink.refs import references_in

log = logging.getLogger(__name__)

WORKFLOWS = resource_path("argoproj.io", "v1alpha1", "workflows")
WORKFLOW_TEMPLATES = resource_path("argoproj.io", "v1alpha1", "workflowtemplates")
CRON_WORKFLOWS = resource_path("argoproj.io", "v1alpha1", "cronworkflows")
HOLDERS = (WORKFLOWS, WORKFLOW_TEMPLATES, CRON_WORKFLOWS)
# How long a release time is remembered: far past any grace period.
_RELEASED_KEPT_SECONDS = 86400.0


class LiveWorkflows:
    def __init__(self, clock: Callable[[], float] = time.time, resources: Sequence[str] = HOLDERS) -> None:
        self.clock = clock
        self.resources = tuple(resources)
        self.relists = 0
        self._uids_of: dict[str, set[str]] = {resource: set() for resource in self.resources}  # the live objects
        self._listed: set[str] = set()  # resources listed, and watched unbroken since
        self._versions: dict[str, str | None] = {}
        self._held_by: dict[str, frozenset[tuple[str, str]]] = {}  # uid -> (namespace, digest) it references
        self._holders: dict[tuple[str, str], dict[str, str]] = {}  # (namespace, digest) -> uid -> "ns/name"
        # (namespace, digest) -> when its last holder went: a Workflow deleted and created again from its own YAML
        # (`kubectl get -o yaml`, then delete, then create) must find its values still there.
        self._released: dict[tuple[str, str], float] = {}

    def is_live(self, uid: str) -> bool:
        return any(uid in uids for uids in self._uids_of.values())

    def holder_of(self, namespace: str, digest: str) -> str | None:
        """A live Workflow whose text holds the reference to this blob (its "namespace/name"), if any."""
        holders = self._holders.get((namespace, digest))
        return next(iter(holders.values())) if holders else None

    def released_at(self, namespace: str, digest: str) -> float | None:
        """When the last live Workflow holding this blob's reference went, if one did and none holds it now."""
        return None if (namespace, digest) in self._holders else self._released.get((namespace, digest))

    @property
    def synced(self) -> bool:
        return self._listed.issuperset(self.resources)

    def replace(self, items: Iterable[dict[str, object]], resource_version: str | None,
                resource: str | None = None) -> None:
        """The complete list of one kind (`resource`), or with None of every kind at once."""
        items = list(items)
        kinds = self.resources if resource is None else (resource,)
        before = set(self._holders)
        for kind in kinds:
            for gone in self._uids_of.get(kind, set()):
                self._release(gone, mark=False)  # released below, if no new item holds them
            self._uids_of[kind] = set()
        target = self._uids_of[kinds[0]]
        for item in items:
            if uid := _uid(item):
                target.add(uid)
                self._hold(item)
        now = self.clock()
        for key in before - set(self._holders):
            self._released[key] = now
        self._released = {key: at for key, at in self._released.items() if now - at < _RELEASED_KEPT_SECONDS}
        for kind in kinds:
            self._versions[kind] = resource_version
            self._listed.add(kind)

    def mark_unsynced(self, resource: str | None = None) -> None:
        """The view of one kind (None: all) may have missed events: no sweep until it is listed again."""
        self._listed.difference_update(self.resources if resource is None else (resource,))

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

    def _release(self, uid: str, *, mark: bool = True) -> None:
        """The uid holds nothing any more; with `mark`, a blob it was the last holder of starts its grace now."""
        for key in self._held_by.pop(uid, frozenset()):
            holders = self._holders.get(key)
            if holders is not None:
                holders.pop(uid, None)
                if not holders:
                    del self._holders[key]
                    if mark:
                        self._released[key] = self.clock()

    def apply(self, event: WatchEvent, resource: str | None = None) -> None:
        resource = resource or self.resources[0]
        obj = event["object"]
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._versions[resource] = str(version)
        uid = _uid(obj)
        if event["type"] in ("ADDED", "MODIFIED") and uid:
            self._uids_of.setdefault(resource, set()).add(uid)
            self._hold(obj)
        elif event["type"] == "DELETED" and uid:
            self._uids_of.setdefault(resource, set()).discard(uid)
            self._release(uid)

    async def run(self, kube: KubeClient, *, watch_seconds: int = 300, retry_seconds: float = 5.0) -> None:
        """Follow every kind at once, forever."""
        await asyncio.gather(*(self._follow(kube, resource, watch_seconds, retry_seconds)
                               for resource in self.resources))

    async def _follow(self, kube: KubeClient, resource: str, watch_seconds: int, retry_seconds: float) -> None:
        """List, then watch from the list's resourceVersion, forever; relist after 410 or any failure."""
        kind = resource.rsplit("/", 1)[-1]
        while True:
            try:
                listed = await kube.list(resource)
                self.replace(listed["items"], listed["metadata"].get("resourceVersion"), resource)
                self.relists += 1
                while True:
                    events = kube.watch(resource, self._versions.get(resource), timeout_seconds=watch_seconds)
                    async with contextlib.aclosing(events):
                        async for event in events:
                            self.apply(event, resource)
            except WatchExpired:
                self.mark_unsynced(resource)
                log.info("%s watch expired (410): listing again", kind)
                await asyncio.sleep(retry_seconds / 50)  # relist at once, but never spin on a server that keeps 410ing
            except KubeApiError as exc:
                if exc.status != 404:
                    self.mark_unsynced(resource)
                    log.warning("%s list/watch failed, GC of workflow blobs paused: %s", kind, exc)
                    await asyncio.sleep(retry_seconds)
                    continue
                self.replace([], None, resource)  # not served here: no object of this kind holds anything
                self.relists += 1
                log.info("%s are not served by this API server (404): none holds a reference", kind)
                await asyncio.sleep(retry_seconds * 12)
            except KubeError as exc:
                self.mark_unsynced(resource)
                log.warning("%s list/watch failed, GC of workflow blobs paused: %s", kind, exc)
                await asyncio.sleep(retry_seconds)


def _uid(obj: dict[str, object]) -> str | None:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        uid = metadata.get("uid")
        if isinstance(uid, str) and uid:
            return uid
    return None
