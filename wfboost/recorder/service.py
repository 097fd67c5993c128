"""`wfboost recorder` as a process: the Kubernetes client, Redis, the policy file, /metrics, and a clean stop.

/metrics, /healthz and /readyz are served on a plain-HTTP port of their own (like the webhook's `--metrics-port`):
the recorder has no other endpoint, and Prometheus and the kubelet need no credentials for them. /readyz answers
200 once both resources have been listed, i.e. once every finished step will be seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wfboost.cache import redis_client
from wfboost.cache.redis_client import redact
from wfboost.cache.store import CacheStore
from wfboost.kube import KubeClient, KubeConfig
from wfboost.policy import PolicyWatcher
from wfboost.recorder.watch import Recorder, RecorderSettings, stop_tasks

log = logging.getLogger(__name__)

# Redis work of the recorder is off the admission path: it can wait longer than the webhook's half second.
STORE_SOCKET_TIMEOUT = 5.0


@dataclass(frozen=True)
class RecorderConfig:
    kube: KubeConfig
    redis_url: str
    policy_path: Path | None = None
    own_namespace: str | None = None
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 0  # 0: no HTTP endpoint
    policy_interval: float = 10.0
    settings: RecorderSettings = field(default_factory=RecorderSettings)


def metrics_app(recorder: Recorder) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        recorder.metrics.pending.set(recorder.table.waiting())
        body = generate_latest(recorder.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if recorder.synced:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="listing pods and task results\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve_recorder(config: RecorderConfig, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set); raises OSError when the metrics port cannot be bound."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    watcher = PolicyWatcher(config.policy_path, config.own_namespace, interval=config.policy_interval)
    if watcher.last_error:
        log.warning("policy %s refused at start, using defaults until fixed: %s", config.policy_path,
                    watcher.last_error)
    redis = redis_client.connect(config.redis_url, socket_timeout=STORE_SOCKET_TIMEOUT)
    runner: web.AppRunner | None = None
    try:
        async with KubeClient(config.kube) as kube:
            recorder = Recorder(kube, CacheStore(redis), lambda: watcher.current, settings=config.settings)
            if config.metrics_port:
                runner = web.AppRunner(metrics_app(recorder))
                await runner.setup()
                await web.TCPSite(runner, config.metrics_host, config.metrics_port).start()
            tasks = [asyncio.create_task(recorder.run()), asyncio.create_task(watcher.run())]
            log.info("recorder started (API %s, Redis %s)", config.kube.server, redact(config.redis_url))
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
            await stop_tasks([stopped, *tasks])
            for task in tasks:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error
            log.info("recorder stopped")
    finally:
        if runner is not None:
            await runner.cleanup()
        await redis.aclose()
        for sig in installed:
            loop.remove_signal_handler(sig)
