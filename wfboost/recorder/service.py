"""`wfboost recorder` as a process: the Kubernetes client, Redis, the policy file, /metrics, and a clean stop.

/metrics, /healthz and /readyz are served on a plain-HTTP port of their own (like the webhook's `--metrics-port`):
the recorder has no other endpoint, and Prometheus and the kubelet need no credentials for them. /readyz answers
200 once both resources have been listed, i.e. once every finished step will be seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wfboost.cache import redis_client
from wfboost.cache.redis_client import redact
from wfboost.cache.store import CacheStore
from wfboost.kube import KubeClient, KubeConfig
from wfboost.policy import PolicyWatcher
from wfboost.recorder.watch import Recorder, RecorderSettings
from wfboost.service.shell import Site, run_service, status_app
from wfboost.service.tasks import ServiceTasks

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


def recorder_tasks(recorder: Recorder, watcher: PolicyWatcher) -> ServiceTasks:
    """The recorder's loops: its watches and housekeeping, and the policy file's reload."""
    tasks = ServiceTasks("recorder")
    for name, loop in recorder.loops().items():
        tasks.add(name, loop)
    tasks.add("policy-reload", watcher.run)
    return tasks


def status_site(recorder: Recorder, host: str, port: int) -> Site:
    async def missing() -> Sequence[str]:
        return [] if recorder.synced else ["listing pods and task results"]

    async def refresh() -> None:
        recorder.metrics.pending.set(recorder.table.waiting())

    app = status_app(registry=recorder.metrics.registry, readiness=missing, before_metrics=refresh)
    return Site(app, host, port, None, "health and metrics")


async def serve_recorder(config: RecorderConfig, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set); raises OSError when the metrics port cannot be bound."""
    watcher = PolicyWatcher(config.policy_path, config.own_namespace, interval=config.policy_interval)
    if watcher.last_error:
        log.warning("policy %s refused at start, using defaults until fixed: %s", config.policy_path,
                    watcher.last_error)
    redis = redis_client.connect(config.redis_url, socket_timeout=STORE_SOCKET_TIMEOUT)
    try:
        async with KubeClient(config.kube) as kube:
            recorder = Recorder(kube, CacheStore(redis), lambda: watcher.current, settings=config.settings)
            sites = [status_site(recorder, config.metrics_host, config.metrics_port)] if config.metrics_port else []
            log.info("recorder: API %s, Redis %s", config.kube.server, redact(config.redis_url))
            await run_service("recorder", sites=sites, tasks=recorder_tasks(recorder, watcher), stop=stop)
    finally:
        await redis.aclose()
