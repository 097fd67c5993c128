"""Runs the real admission server on a loopback port in a background thread with its own event loop.

A thread (rather than the test's own loop) lets plain synchronous tests, including hypothesis tests, talk to it,
the way an API server talks to a webhook from outside; tests still reach the server object to inject faults.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from wfboost.webhook.server import WebhookServer


class RunningServer:
    def __init__(self, server: WebhookServer):
        self.server = server
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="wfboost-test-server", daemon=True)
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.server.load_now()
        await self.server.__aenter__()
        await self.server.tasks.start()
        self._runner = web.AppRunner(self.server.build_app(), shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.server.tls.context)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[attr-defined]
        self.port = sockets[0].getsockname()[1]

    async def _stop(self, runner: web.AppRunner) -> None:
        await runner.cleanup()
        await self.server.tasks.stop()
        await self.server.__aexit__(None, None, None)

    def start(self) -> RunningServer:
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a coroutine function on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(fn(), self.loop).result(30)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._stop(self._runner), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()
