"""A stand-in for kube-apiserver in the demo (`make run`): kmock's stateful Kubernetes emulator on a loopback port.

No kube-apiserver can run where the demo runs. The emulator stores objects, serves list and watch, and merges
patches, which is all the recorder needs; the demo plays the API server (admission), the kubelet (pod status) and
Argo's wait container (task results) against it over plain HTTP. kmock is a development dependency: `make setup`
installs it.

kmock 0.8 cannot parse the path of the cluster-scoped `namespaces` resource (`/api/v1/namespaces` answers 500), so
a small front answers its list and watch from the demo's fixed namespaces, with their labels, and passes every
other request to the emulator: the webhook's namespace watch then syncs and label-gated policy rules work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

RESOURCES = ("v1/pods", "v1/configmaps", "argoproj.io/v1alpha1/workflowtaskresults", "argoproj.io/v1alpha1/workflows")


class EmulatedCluster:
    def __init__(self, namespaces: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.namespaces = dict(namespaces or {})
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="wfboost-demo-apiserver", daemon=True)

    def start(self) -> EmulatedCluster:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per emulated API call: noise
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        import kmock  # a development dependency, only the demo needs it

        self._stop = asyncio.Event()
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server, \
                aiohttp.ClientSession(str(server.url).rstrip("/")) as upstream:
            for resource in RESOURCES:
                emulator.resources[resource] = {}  # type: ignore[assignment]  # kmock accepts a plain dict
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_get("/api/v1/namespaces", self._namespaces)
            app.router.add_route("*", "/{path:.*}", lambda request: self._forward(request, upstream))
            # Watches held open (forwarded, or the namespaces' sleeping one) end with the loop: without a short
            # shutdown timeout, cleanup waited for them past stop()'s 10 s join, on every Ctrl-C of the demo.
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.url = f"http://127.0.0.1:{port}"
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

    async def _namespaces(self, request: web.Request) -> web.StreamResponse:
        """The fixed namespaces as a list; a watch stays open with no events until its timeout or the client goes."""
        if request.query.get("watch") in ("true", "1"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await asyncio.sleep(min(float(request.query.get("timeoutSeconds") or 300), 300))
            return response
        items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": name, "labels": dict(labels), "resourceVersion": "1", "uid": f"namespace-{name}"}}
            for name, labels in sorted(self.namespaces.items())]
        return web.json_response({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {"resourceVersion": "1"},
                                  "items": items})

    async def _forward(self, request: web.Request, upstream: aiohttp.ClientSession) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")}
        async with upstream.request(request.method, request.path_qs, data=await request.read(),
                                    headers=headers) as answer:
            response = web.StreamResponse(status=answer.status, headers={
                "Content-Type": answer.headers.get("Content-Type", "application/json")})
            await response.prepare(request)
            async for chunk in answer.content.iter_any():  # a watch streams: pass each event on as it comes
                await response.write(chunk)
            await response.write_eof()
            return response

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def write_kubeconfig(self, path: Path) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "demo",
            "clusters": [{"name": "demo", "cluster": {"server": self.url}}],
            "users": [{"name": "demo", "user": {"token": "demo"}}],
            "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}],
        }
        path.write_text(json.dumps(config))
        return path

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", path, obj, "application/json")

    def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("PATCH", path, body, "application/merge-patch+json")

    def _send(self, method: str, path: str, body: dict[str, Any], content_type: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method=method, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result
