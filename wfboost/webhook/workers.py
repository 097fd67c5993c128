"""`wfboost serve --workers N`: N admission processes behind one port, for more than one core per pod.

One Python process admits on one core (the event loop; orjson and the patch check are CPU work). With N > 1 the
parent forks N workers before it starts any event loop; each is a whole webhook (its own Redis pool, policy and
certificate reloads, namespace watch, tally) that binds the admission port with SO_REUSEPORT, so the kernel spreads
connections over them (Linux hashes each new connection to one listener; a keep-alive connection stays with its
worker). The parent admits nothing: it serves the public status port from what the workers say on their private
Unix sockets (abstract namespace: no file to write on a read-only root filesystem):

- `/healthz`: every worker is alive;
- `/readyz`: every worker is ready (else 503 naming each worker's missing parts);
- `/metrics`: one page for the pod; counters and histograms summed over the workers, each gauge labelled with its
  `worker`.

A worker that exits is not replaced: the parent stops the others and exits 1, and Kubernetes restarts the pod (a
half-sized webhook that looks healthy would be worse). SIGTERM and SIGINT go on to the workers, which drain as one
server does; the parent exits when they have.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import secrets
import signal
from collections.abc import Callable, Iterable
from dataclasses import replace
from multiprocessing.process import BaseProcess
from typing import Final

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from wfboost.service.shell import Site, run_service, status_app
from wfboost.service.tasks import ServiceTasks
from wfboost.webhook.config import WebhookConfig

log = logging.getLogger(__name__)

_SUMMED = frozenset({"counter", "histogram", "summary", "unknown"})
# Under the kubelet's default 1 s probe timeout: a busy worker answers late rather than making the probe fail.
_STATUS_TIMEOUT = aiohttp.ClientTimeout(total=0.8)


def serve_workers(config: WebhookConfig, workers: int, start_worker: Callable[[WebhookConfig], None]) -> int:
    """Fork `workers` processes that each run `start_worker(config-for-that-worker)`, supervise them, and serve the
    status port; the exit status for the command (0 after a stop that every worker drained, 1 otherwise)."""
    context = multiprocessing.get_context("fork")  # before any event loop or thread: nothing half-copied
    # Abstract names are per network namespace: a random part keeps two webhooks in one (hostNetwork, two
    # containers of a pod, both usually PID 1) apart.
    run = secrets.token_hex(8)
    sockets = [f"\0wfboost-webhook-{run}-{index}" for index in range(workers)]
    processes: list[BaseProcess] = []
    for index, socket_path in enumerate(sockets):
        worker_config = replace(config, reuse_port=True, metrics_port=0, status_socket=socket_path)
        process = context.Process(target=_run_worker, args=(start_worker, worker_config, os.getpid()),
                                  name=f"wfboost-webhook-{index}")
        process.start()
        processes.append(process)
    log.info("webhook: %d worker processes on port %d (pids %s)", workers, config.port,
             ", ".join(str(p.pid) for p in processes))
    return asyncio.run(_supervise(config, processes, sockets))


_PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


def _run_worker(start_worker: Callable[[WebhookConfig], None], config: WebhookConfig, parent: int) -> None:
    """A worker that ends with its parent: killed parents (SIGKILL, an OOM kill) run no `finally`, and workers left
    behind would go on serving the port with what they loaded, unsupervised and out of every probe's sight. Linux
    sends SIGTERM (a drain) when the parent dies; elsewhere the worker runs as before. (As a container's PID 1 the
    parent takes its whole PID namespace with it anyway; this matters under tini, a shared process namespace, or
    outside containers.) The parent forks from its main thread, which lives as long as it does: the signal is tied
    to the forking thread."""
    _die_with_parent(parent)
    start_worker(config)


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError) as exc:
        log.warning("webhook: this worker will not stop by itself if its parent is killed (%s)", exc)
        return
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(0)


async def _supervise(config: WebhookConfig, processes: list[BaseProcess], sockets: list[str]) -> int:
    stop = asyncio.Event()
    gone: list[BaseProcess] = []

    async def watch_workers() -> None:
        while not stop.is_set():
            gone.extend(p for p in processes if not p.is_alive() and p not in gone)
            if gone:
                log.error("webhook: worker %s exited (status %s); stopping the others", gone[0].name,
                          gone[0].exitcode)
                stop.set()
                return
            await asyncio.sleep(0.5)

    tasks = ServiceTasks("webhook workers")
    tasks.add("worker-watch", watch_workers)
    status = WorkerStatus(sockets)
    sites = []
    if config.metrics_port:
        app = status_app(registry=status.registry, readiness=status.missing, before_metrics=status.refresh,
                         liveness=lambda: [f"{p.name} exited" for p in processes if not p.is_alive()])
        sites.append(Site(app, config.host, config.metrics_port, None, "health and metrics of the workers"))
    try:
        await run_service("webhook parent", sites=sites, tasks=tasks, stop=stop)
    finally:
        await status.close()
        _stop_all(processes, config.shutdown_timeout + 5)
    # SIGTERM's default action is a clean end here: a worker that drained and removed its handler can still get
    # the parent's SIGTERM when the whole process group was signalled (Ctrl-C, systemd, tini -g).
    return 0 if not gone and all(p.exitcode in (0, -signal.SIGTERM) for p in processes) else 1


def _stop_all(processes: Iterable[BaseProcess], timeout: float) -> None:
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        if process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in alive:
        process.join(timeout)
        if process.is_alive():
            log.error("webhook: worker %s did not stop within %.0f s; killed", process.name, timeout)
            process.kill()
            process.join()


class WorkerStatus:
    """The workers' readiness and metrics, asked over their status sockets."""

    def __init__(self, sockets: list[str]) -> None:
        self.sockets = sockets
        self.registry = CollectorRegistry(auto_describe=False)
        self._merged: list[Metric] = []
        self._pages: dict[int, str] = {}  # each worker's last page: a late answer must not make counters go back
        self.registry.register(self)  # a collector: collect() below
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def collect(self) -> list[Metric]:
        return self._merged

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()

    async def _get(self, socket_path: str, path: str) -> tuple[int, str]:
        session = self._sessions.get(socket_path)
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path),
                                            timeout=_STATUS_TIMEOUT)
            self._sessions[socket_path] = session
        async with session.get(f"http://worker{path}") as answer:
            return answer.status, await answer.text()

    async def missing(self) -> list[str]:
        answers = await asyncio.gather(*(self._get(s, "/readyz") for s in self.sockets), return_exceptions=True)
        missing = []
        for index, answer in enumerate(answers):
            if isinstance(answer, BaseException):
                missing.append(f"worker {index}: no answer ({type(answer).__name__})")
            elif answer[0] != 200:
                missing.append(f"worker {index}: {answer[1].strip().removeprefix('not ready: ')}")
        return missing

    async def refresh(self) -> None:
        answers = await asyncio.gather(*(self._get(s, "/metrics") for s in self.sockets), return_exceptions=True)
        for index, answer in enumerate(answers):
            if not isinstance(answer, BaseException) and answer[0] == 200:
                self._pages[index] = answer[1]
        self._merged = merge_metrics(self._pages)


def merge_metrics(pages: dict[int, str]) -> list[Metric]:
    """One set of families from each worker's page: counters, histograms and summaries summed sample by sample
    (the same name and labels), gauges kept per worker with a `worker` label (a sum of, say, a certificate's expiry
    time would mean nothing)."""
    families: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for index, page in sorted(pages.items()):
        for family in text_string_to_metric_families(page):
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            if family.type in _SUMMED:
                total = sums.setdefault(family.name, {})
                for sample in family.samples:
                    at = (sample.name, tuple(sorted(sample.labels.items())))
                    total[at] = total.get(at, 0.0) + sample.value
            else:
                merged.samples.extend(
                    Sample(s.name, {**s.labels, "worker": str(index)}, s.value, s.timestamp, s.exemplar)
                    for s in family.samples
                )
    for name, total in sums.items():
        families[name].samples.extend(Sample(sample, dict(labels), value) for (sample, labels), value in total.items())
    return list(families.values())
