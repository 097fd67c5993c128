"""Shared fixtures: real Valkey, real certificates, the real server on loopback, and the API server's part."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.apiserver import ApiServer
from tests.harness.emulated import Cluster
from tests.harness.running import RunningServer
from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore
from wfboost.kube import KubeClient, KubeConfig
from wfboost.tls.certs import write_local_material
from wfboost.webhook.config import WebhookConfig
from wfboost.webhook.server import WebhookServer
from wfboost_dev.demo.processes import (
    RedisCluster,
    RedisProcess,
    RedisSentinel,
    start_redis,
    start_redis_cluster,
    start_redis_sentinel,
)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


@dataclass(frozen=True)
class TlsMaterial:
    directory: Path  # tls.crt, tls.key (what the server mounts)
    ca_bundle: Path  # what the API server trusts (the webhook configuration's caBundle)


def write_tls_material(directory: Path) -> TlsMaterial:
    bundle = directory.parent / f"{directory.name}-ca.crt"
    write_local_material(directory, bundle)
    return TlsMaterial(directory, bundle)


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return write_tls_material(tmp_path_factory.mktemp("tls") / "serving")


@pytest.fixture(scope="session")
def valkey() -> Iterator[RedisProcess]:
    """One Valkey for the session, started here on a free port; tests that need isolation flush it (it is ours)."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Webhook:
    running: RunningServer
    api: ApiServer

    @property
    def server(self) -> WebhookServer:
        return self.running.server


StartWebhook = Callable[..., Webhook]


@pytest.fixture
def start_webhook(tls_material: TlsMaterial, tmp_path: Path) -> Iterator[StartWebhook]:
    """Start the real server (HTTPS on loopback); keyword arguments override settings or inject parts."""
    started: list[RunningServer] = []

    def start(*, settings: dict[str, Any] | None = None, **parts: Any) -> Webhook:
        options: dict[str, Any] = {"cert_dir": tls_material.directory, "host": "127.0.0.1", "port": 0}
        options.update(settings or {})
        running = RunningServer(WebhookServer(WebhookConfig(**options), **parts)).start()
        started.append(running)
        return Webhook(running, ApiServer(running.port, tls_material.ca_bundle))

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def webhook(start_webhook: StartWebhook) -> Webhook:
    return start_webhook()


@pytest.fixture
async def cluster(kmock: Any) -> AsyncIterator[Cluster]:
    """kmock's emulator with the resources Argo steps involve, and a client for playing the cluster's parts."""
    for resource in ("v1/pods", "v1/configmaps", "argoproj.io/v1alpha1/workflowtaskresults",
                     "argoproj.io/v1alpha1/workflows"):
        kmock.resources[resource] = {}
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=10, watch_grace=1) as kube:
        yield Cluster(kube, kmock)


def corpus_dir(*parts: str) -> Path:
    """A folder of the shared corpus, or a clear skip when this checkout has none beside it."""
    path = CORPUS.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"the shared corpus is not present at {path} (a checkout outside the workplace)")
    return path


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[RedisCluster]:
    cluster = start_redis_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def valkey_sentinel() -> Iterator[RedisSentinel]:
    """A master, its replica and a sentinel, for the session; tests that fail over start their own."""
    deployment = start_redis_sentinel()
    try:
        yield deployment
    finally:
        deployment.stop()


# The Redis deployments every component must work on, by the fixture that starts each (tests parametrize over
# the keys and ask for `redis_deployment(request)`).
REDIS_DEPLOYMENTS = {"single": "valkey", "cluster": "valkey_cluster", "sentinel": "valkey_sentinel"}


def redis_deployment(request: pytest.FixtureRequest) -> RedisProcess | RedisCluster | RedisSentinel:
    server: RedisProcess | RedisCluster | RedisSentinel = request.getfixturevalue(REDIS_DEPLOYMENTS[request.param])
    return server


@pytest.fixture
async def store(valkey: RedisProcess) -> AsyncIterator[CacheStore]:
    client = redis_client.connect(valkey.url)
    try:
        yield CacheStore(client)
    finally:
        await client.aclose()


@pytest.fixture
async def cluster_store(valkey_cluster: RedisCluster) -> AsyncIterator[CacheStore]:
    client = redis_client.connect(valkey_cluster.url)
    try:
        yield CacheStore(client)
    finally:
        await client.aclose()
