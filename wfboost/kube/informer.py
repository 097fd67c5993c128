"""List, then watch, forever: a view of one resource across all namespaces (the recorder's pods and task results,
the webhook's namespace labels).

The loop is the one every Kubernetes controller runs: list (every item is handed over as a `SYNC` event), watch from
the list's resourceVersion, keep the newest resourceVersion seen (BOOKMARK events carry fresh ones), watch again
when the server ends a watch, list again on 410 Gone (the events in between are lost; the list brings back the
state) and every `resync` seconds (a safety net for anything missed, and what retries a step whose handling failed
for a transient reason). Transport and API errors back off exponentially with jitter, up to `backoff_max`.

The handler sees every event at most once per delivery but may see the same object many times (relists, replays
after a reconnect): it must be idempotent. A handler that raises is logged and counted; the watch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from wfboost.kube.client import KubeClient, WatchExpired
from wfboost.kube.config import KubeError

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[None]]

SYNC = "SYNC"  # an item of a (re)list, handled like ADDED


@dataclass(frozen=True)
class WatchSettings:
    resync: float = 600.0  # seconds between full relists
    watch_timeout: int = 300  # seconds asked of the server per watch request
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class Informer:
    """One resource, all namespaces. `synced` is set once the first list has been handled (readiness)."""

    def __init__(
        self,
        kube: KubeClient,
        path: str,
        *,
        name: str,
        handler: Handler,
        label_selector: str | None = None,
        settings: WatchSettings = WatchSettings(),
        on_restart: Callable[[str], None] | None = None,
        on_handler_error: Callable[[], None] | None = None,
    ) -> None:
        self.kube = kube
        self.path = path
        self.name = name
        self.handler = handler
        self.label_selector = label_selector
        self.settings = settings
        self.synced = asyncio.Event()
        self._on_restart = on_restart or (lambda reason: None)
        self._on_handler_error = on_handler_error or (lambda: None)

    async def run(self) -> None:
        """Until cancelled."""
        loop = asyncio.get_running_loop()
        delay = self.settings.backoff_initial
        while True:
            try:
                version = await self._list()
                delay = self.settings.backoff_initial
                relist_at = loop.time() + self.settings.resync
                while (remaining := relist_at - loop.time()) > 0:
                    started = loop.time()
                    version = await self._watch(version, max(1, min(self.settings.watch_timeout, int(remaining))))
                    if loop.time() - started < 1.0:  # a server or proxy that ends watches at once: do not spin
                        await asyncio.sleep(self.settings.backoff_initial)
                self._on_restart("resync")
            except WatchExpired:
                log.info("%s: watch expired (410), listing again", self.name)
                self._on_restart("expired")
            except KubeError as exc:
                log.warning("%s: %s; retrying in %.1fs", self.name, exc, delay)
                self._on_restart("error")
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.settings.backoff_max)

    async def _list(self) -> str | None:
        listed = await self.kube.list(self.path, self.label_selector)
        for item in listed["items"]:
            await self._handle(SYNC, item)
        self.synced.set()
        return listed["metadata"].get("resourceVersion")

    async def _watch(self, version: str | None, seconds: int) -> str | None:
        events = self.kube.watch(self.path, version, seconds, label_selector=self.label_selector)
        async with contextlib.aclosing(events):
            async for event in events:
                seen = (event["object"].get("metadata") or {}).get("resourceVersion")
                if seen:
                    version = str(seen)
                if event["type"] != "BOOKMARK":
                    await self._handle(event["type"], event["object"])
        return version

    async def _handle(self, event_type: str, obj: dict[str, Any]) -> None:
        try:
            await self.handler(event_type, obj)
        except asyncio.CancelledError:
            raise
        except Exception:  # one odd object must not stop the recorder for every other step
            meta = obj.get("metadata") or {}
            log.exception("%s: handling %s %s/%s failed", self.name, event_type, meta.get("namespace"),
                          meta.get("name"))
            self._on_handler_error()
