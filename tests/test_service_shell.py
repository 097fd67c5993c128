"""The service shell every long-running process runs in: loops that finish, loops that fail, a stop in order."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from wfboost.service.shell import ServiceFailed, Site, run_service, status_app
from wfboost.service.tasks import ServiceTasks

HANG_GUARD = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_loop_that_returns_does_not_stop_the_service() -> None:
    """A policy watcher with no file to watch returns at once; the service must keep running (it used to exit)."""
    tasks = ServiceTasks("test")
    finished = asyncio.Event()

    async def done_at_once() -> None:
        finished.set()

    tasks.add("nothing-to-do", done_at_once)
    stop = asyncio.Event()
    service = asyncio.create_task(run_service("test", sites=(), tasks=tasks, stop=stop))
    async with asyncio.timeout(HANG_GUARD):
        await finished.wait()
    await asyncio.sleep(0.1)
    assert not service.done()
    stop.set()
    async with asyncio.timeout(HANG_GUARD):
        await service


async def test_a_loop_that_raises_stops_the_service_loudly() -> None:
    tasks = ServiceTasks("test")
    stopped = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("lost the watch")

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    tasks.add("watch", broken)
    tasks.add("reload", forever)
    with pytest.raises(ServiceFailed, match="test: watch failed: lost the watch"):
        async with asyncio.timeout(HANG_GUARD):
            await run_service("test", sites=(), tasks=tasks)
    assert stopped.is_set()  # the other loops were cancelled, not left running


async def test_sites_serve_status_routes_and_stop_before_the_loops() -> None:
    registry = CollectorRegistry()
    Counter("shell_test_events", "events", registry=registry).inc()
    missing: list[str] = ["not listed yet"]

    async def readiness() -> list[str]:
        return list(missing)

    order: list[str] = []
    tasks = ServiceTasks("test")

    async def loop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            order.append("loop stopped")

    tasks.add("loop", loop)
    app = status_app(registry=registry, readiness=readiness)

    async def on_cleanup(app: object) -> None:
        order.append("site stopped")

    app.on_cleanup.append(on_cleanup)
    port = free_port()
    stop = asyncio.Event()
    service = asyncio.create_task(
        run_service("test", sites=[Site(app, "127.0.0.1", port, shutdown_timeout=1.0)], tasks=tasks, stop=stop)
    )
    async with aiohttp.ClientSession() as http, asyncio.timeout(HANG_GUARD):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    assert answer.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
            assert answer.status == 503 and "not listed yet" in await answer.text()
        missing.clear()
        async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
            assert answer.status == 200
        async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
            assert "shell_test_events_total 1.0" in await answer.text()
    stop.set()
    async with asyncio.timeout(HANG_GUARD):
        await service
    assert order == ["site stopped", "loop stopped"]


async def test_a_port_that_cannot_be_bound_is_an_oserror_before_any_loop_starts() -> None:
    started = asyncio.Event()
    tasks = ServiceTasks("test")

    async def loop() -> None:
        started.set()

    tasks.add("loop", loop)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = status_app(registry=CollectorRegistry(), readiness=lambda: asyncio.sleep(0, []))
        with pytest.raises(OSError) as raised:  # noqa: PT011 - the errno differs by platform; any bind error
            await run_service("test", sites=[Site(app, "127.0.0.1", port)], tasks=tasks)
    assert raised.value.errno is not None
    assert not started.is_set()


def test_a_loop_name_is_added_once() -> None:
    tasks = ServiceTasks("test")
    tasks.add("reload", asyncio.sleep)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already added"):
        tasks.add("reload", asyncio.sleep)  # type: ignore[arg-type]
