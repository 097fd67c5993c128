"""Running one wfboost service: its HTTP sites, its background loops, signals, and a stop in order.

The webhook, the recorder and the side store each describe what they serve (`Site`s: an aiohttp application on a
port, with TLS or not) and which loops they run (`ServiceTasks`); `run_service` does the rest the same way for all
three:

1. one handler for SIGTERM and SIGINT (as arq does): the first one asks for a stop; Kubernetes sends SIGTERM on
   rollout and scale-down;
2. the sites start (a port that cannot be bound raises OSError before anything else runs);
3. the loops start; the service runs until a stop is asked for or a loop fails;
4. the sites stop first (no new requests; aiohttp drains the ones in flight and runs each app's `cleanup_ctx`),
   then the loops are cancelled; a failed loop's error is raised as `ServiceFailed`.

Resources the service holds (Redis pools, API clients) are opened and closed by the caller around this call, in
one `async with`, so they outlive both the sites and the loops that use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, disable_created_metrics, generate_latest

from wfboost.service.tasks import ServiceTasks

log = logging.getLogger(__name__)

# A `_created` series beside every counter doubles what Prometheus stores, for a timestamp no alert uses.
disable_created_metrics()  # type: ignore[no-untyped-call]

Readiness = Callable[[], Awaitable[Sequence[str]]]  # what is still missing; empty when ready


class ServiceFailed(RuntimeError):
    """A background loop of the service raised; the service stopped. The message names the loop and the error."""


@dataclass(frozen=True)
class Site:
    """One listening port of a service."""

    app: web.Application
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    what: str = "HTTP"  # for the log line: "admission", "health and metrics"…
    shutdown_timeout: float = 5.0
    reuse_port: bool = False  # several worker processes accept on the same port (SO_REUSEPORT)
    unix_path: str | None = None  # a Unix socket instead of host:port (a worker's status, for its parent)

    @property
    def url(self) -> str:
        if self.unix_path is not None:
            return "unix:" + self.unix_path.replace("\0", "@")
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"


async def run_service(
    name: str, *, sites: Sequence[Site], tasks: ServiceTasks, stop: asyncio.Event | None = None
) -> None:
    """Serve and run until SIGTERM/SIGINT or `stop` is set, then stop in order (see the module docstring)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    runners: list[web.AppRunner] = []
    try:
        for site in sites:
            runner = web.AppRunner(site.app, access_log=None, shutdown_timeout=site.shutdown_timeout)
            await runner.setup()
            runners.append(runner)
            if site.unix_path is not None:
                await web.UnixSite(runner, site.unix_path).start()
            else:
                await web.TCPSite(runner, site.host, site.port, ssl_context=site.ssl_context,
                                  reuse_port=site.reuse_port or None).start()
            log.info("%s: serving %s on %s", name, site.what, site.url)
        await tasks.start()
        log.info("%s started", name)
        stopped = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(tasks.failed.wait())
        try:
            await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            failed.cancel()
    finally:
        log.info("%s: stopping", name)
        for runner in reversed(runners):
            await runner.cleanup()
        await tasks.stop()
        for sig in installed:
            loop.remove_signal_handler(sig)
    if tasks.error is not None:
        raise ServiceFailed(f"{name}: {tasks.failed_task} failed: {tasks.error}") from tasks.error
    log.info("%s stopped", name)


def add_status_routes(
    app: web.Application,
    *,
    registry: CollectorRegistry,
    readiness: Readiness,
    before_metrics: Callable[[], Awaitable[None]] | None = None,
    liveness: Callable[[], Sequence[str]] | None = None,
) -> None:
    """`GET /healthz` (the process answers; with `liveness`, 503 naming what is dead), `/readyz` (200 once nothing
    is missing, else 503 naming what is) and `/metrics` (the service's own registry; `before_metrics` refreshes
    what is read from elsewhere first)."""

    async def healthz(request: web.Request) -> web.StreamResponse:
        dead = list(liveness()) if liveness is not None else []
        if dead:
            return web.Response(status=503, text="not alive: " + "; ".join(dead) + "\n")
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.StreamResponse:
        missing = list(await readiness())
        if not missing:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: " + "; ".join(missing) + "\n")

    async def metrics(request: web.Request) -> web.StreamResponse:
        if before_metrics is not None:
            await before_metrics()
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")


def status_app(
    *,
    registry: CollectorRegistry,
    readiness: Readiness,
    before_metrics: Callable[[], Awaitable[None]] | None = None,
    middlewares: Sequence[Callable[..., Awaitable[web.StreamResponse]]] = (),
    liveness: Callable[[], Sequence[str]] | None = None,
) -> web.Application:
    """An application with only the status routes: the plain-HTTP port kubelets and Prometheus use."""
    app = web.Application(middlewares=list(middlewares))
    add_status_routes(app, registry=registry, readiness=readiness, before_metrics=before_metrics, liveness=liveness)
    return app
