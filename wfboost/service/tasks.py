"""The background loops of one service, started together, each guarded, stopped together.

Every long-running wfboost process (webhook, recorder, side store) has a few loops beside its server: reloading
certificates and policy, watching the API, sweeping. They follow one rule here, written once (after kopf's
`aiokits/aiotasks.py`):

- a loop that **returns** has finished its job (a policy watcher with no file to watch): that is not a reason to
  stop the service;
- a loop that **raises** is a bug or a lost dependency the loop could not handle: it is logged with its traceback,
  `failed` is set, and the shell stops the whole service with that error, so the process exits loudly instead of
  running on without a part of itself;
- stopping cancels every loop until it is done (see `cancel_until_done` for why not a TaskGroup).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

LoopFactory = Callable[[], Awaitable[None]]


@dataclass
class ServiceTasks:
    """Named loops of one service. `add` them, then `start()` once and `stop()` once."""

    service: str
    _factories: dict[str, LoopFactory] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None
    failed_task: str = ""

    def add(self, name: str, factory: LoopFactory) -> None:
        if name in self._factories:
            raise ValueError(f"{self.service}: a task named {name!r} is already added")
        self._factories[name] = factory

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    async def start(self) -> None:
        for name, factory in self._factories.items():
            self._tasks.append(asyncio.create_task(self._guarded(name, factory), name=f"{self.service}:{name}"))

    async def stop(self) -> None:
        await cancel_until_done(self._tasks)
        self._tasks.clear()

    async def _guarded(self, name: str, factory: LoopFactory) -> None:
        try:
            await factory()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s: task %s failed; stopping the service", self.service, name)
            if self.error is None:
                self.error, self.failed_task = exc, name
            self.failed.set()
        else:
            log.debug("%s: task %s finished", self.service, name)


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel until every task is done. Not a TaskGroup: on Python 3.11 `asyncio.wait_for` can swallow a
    cancellation that races with a watch chunk arriving (fixed in 3.12), and a TaskGroup cancels its children only
    once, which would leave shutdown waiting for the watch's timeout."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
