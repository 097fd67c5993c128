"""A stand-in for kube-apiserver in the demo (`make run`): kmock's stateful Kubernetes emulator on a loopback port.

No kube-apiserver can run where the demo runs. The emulator stores objects, serves list and watch, and merges
patches, which is all the recorder needs; the demo plays the API server (admission), the kubelet (pod status) and
Argo's wait container (task results) against it over plain HTTP. kmock is a development dependency: `make setup`
installs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import urllib.request
from pathlib import Path
from typing import Any

RESOURCES = ("v1/pods", "v1/configmaps", "argoproj.io/v1alpha1/workflowtaskresults", "argoproj.io/v1alpha1/workflows")


class EmulatedCluster:
    def __init__(self) -> None:
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
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
            for resource in RESOURCES:
                emulator.resources[resource] = {}  # type: ignore[assignment]  # kmock accepts a plain dict
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

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
