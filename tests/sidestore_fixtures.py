"""Real parts for the side store tests: a Valkey database of its own, TLS material, a clients file, a moto S3
server on loopback (started here, stopped by its PID), and the service itself on a loopback port.

Plain helpers (not fixtures): each test module wraps the ones it needs in fixtures of its own scope.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wfboost.blobs.client import ClientSettings, SideStoreClient
from wfboost.cache import redis_client
from wfboost.sidestore import keyspace
from wfboost.sidestore.config import SideStoreConfig, make_backend
from wfboost.sidestore.live_workflows import LiveWorkflows
from wfboost.sidestore.server import SideStoreServer
from wfboost.sidestore.store import BlobStore, StoreSettings
from wfboost.tls.certs import CertKeyPair, create_ca, create_serving_cert, load_private_key, service_names
from wfboost_dev.demo.processes import RedisCluster, RedisProcess, RedisSentinel, free_port

SERVER_NAME = "wfboost-sidestore.wfboost.svc"
SIDESTORE_DB = 7  # a database of the session's Valkey used only by these tests (flushed by them)

TOKENS = {
    "admin": "admin-token-0123456789abcdef",
    "team-a": "team-a-token-0123456789abcdef",
    "team-b": "team-b-token-0123456789abcdef",
}


@dataclass(frozen=True)
class SideStoreTls:
    cert_dir: Path
    ca_file: Path
    ca: CertKeyPair


def mint_client_cert(ca: CertKeyPair, common_name: str) -> CertKeyPair:
    """A client certificate (clientAuth) signed by the test CA, for mTLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key: Any = load_private_key(ca.key_pem)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return CertKeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def make_tls(directory: Path) -> SideStoreTls:
    """A CA and a serving certificate for the service's DNS names and 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = create_ca()
    serving = create_serving_cert(ca, service_names("wfboost-sidestore", "wfboost", extra_ips=["127.0.0.1"]))
    (directory / "tls.crt").write_bytes(serving.cert_pem)
    (directory / "tls.key").write_bytes(serving.key_pem)
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    return SideStoreTls(directory, directory / "ca.crt", ca)


def write_clients_file(path: Path, extra: list[dict[str, Any]] | None = None) -> Path:
    clients: list[dict[str, Any]] = [
        {"name": "webhook", "token": TOKENS["admin"], "namespaces": ["*"]},
        {
            "name": "team-a",
            "tokenSha256": hashlib.sha256(TOKENS["team-a"].encode()).hexdigest(),
            "namespaces": ["team-a"],
        },
        {"name": "team-b", "token": TOKENS["team-b"], "namespaces": ["team-b"]},
        {"name": "recorder", "certificateSubject": "recorder.wfboost", "namespaces": ["*"]},
    ]
    path.write_text(yaml.safe_dump({"clients": clients + (extra or [])}))
    return path


def sidestore_redis_url(valkey: RedisProcess) -> str:
    return f"redis://127.0.0.1:{valkey.port}/{SIDESTORE_DB}"


@dataclass
class Running:
    server: SideStoreServer
    url: str
    tls: SideStoreTls
    clock: list[float] = field(default_factory=lambda: [1_000_000.0])

    def client(self, token: str | None = "admin", **kwargs: Any) -> SideStoreClient:
        settings = kwargs.pop("settings", ClientSettings(timeout=30.0, retries=1))
        return SideStoreClient(
            self.url,
            token=TOKENS[token] if token else None,
            ca_file=str(self.tls.ca_file),
            settings=settings,
            **kwargs,
        )

    @property
    def store(self) -> BlobStore:
        return self.server.store


@contextlib.asynccontextmanager
async def run_sidestore(
    valkey: RedisProcess | RedisCluster | RedisSentinel,
    tls: SideStoreTls,
    tmp_path: Path,
    *,
    backend: str = "redis",
    large: str | None = None,
    settings: StoreSettings | None = None,
    quota: int | None = None,
    client_ca: bool = False,
    live: LiveWorkflows | None = None,
) -> AsyncIterator[Running]:
    """The service in this test's event loop, HTTPS on a loopback port, with a settable clock. `valkey` may be a
    Redis Cluster (the session's, shared with other tests: only the side store's keys are removed, not flushed) or
    a Sentinel deployment (its master's side-store database is flushed: the session started it)."""
    cluster = isinstance(valkey, RedisCluster)
    if isinstance(valkey, RedisSentinel):
        url = valkey.url_for(SIDESTORE_DB)
        redis = redis_client.connect(url, socket_timeout=10.0)
    else:
        url = valkey.url if cluster else sidestore_redis_url(valkey)
        redis = redis_client.connect(url, socket_timeout=10.0) if cluster else aioredis.from_url(url)
    await _clean(redis, valkey)
    clients = write_clients_file(tmp_path / "clients.yaml")
    config = SideStoreConfig(
        redis_url=url,
        clients_file=clients,
        tls_cert=tls.cert_dir / "tls.crt",
        tls_key=tls.cert_dir / "tls.key",
        client_ca=str(tls.ca_file) if client_ca else None,
        gc_interval=0,
        backend=backend,
        large_backend=large,
    )
    clock = [1_000_000.0]
    backends = {"redis": make_backend("redis", redis)}
    default = "redis"
    large_name = None
    for spec in (backend, large):
        if spec and spec != "redis":
            made = make_backend(spec, redis)
            backends[made.name] = made
            if spec == backend:
                default = made.name
            else:
                large_name = made.name
    store = BlobStore(
        redis,
        backends,
        default=default,
        large=large_name,
        settings=settings or StoreSettings(),
        quota_for=lambda namespace: quota,
        clock=lambda: clock[0],
    )
    live = live or LiveWorkflows()
    server = SideStoreServer(config, store=store, live=live)
    app = server.build_app()
    # The server's loops (kube watch, timers) are not started: the tests drive time and workflows themselves.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=server.tls.context if server.tls else None)
    await site.start()
    running = Running(server, f"https://127.0.0.1:{sock.getsockname()[1]}", tls, clock)
    try:
        yield running
    finally:
        await runner.cleanup()
        await _clean(redis, valkey)
        await redis.aclose()


async def _clean(redis: Any, server: RedisProcess | RedisCluster | RedisSentinel) -> None:
    if not isinstance(server, RedisCluster):
        await redis.flushdb()  # the side store's own database of a server the session started
        return
    stale = [key async for key in redis.scan_iter(match=keyspace.PREFIX + "*", count=1000)]
    if stale:
        await redis.delete(*stale)


# --- moto: a real S3-compatible server on loopback -----------------------------------------------------------


@dataclass
class S3Server:
    url: str
    process: subprocess.Popen[bytes]

    def bucket_spec(self, bucket: str) -> str:
        return f"s3://{bucket}?endpoint={self.url}&region=us-east-1&allow_http=true"

    def create_bucket(self, bucket: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/{bucket}", method="PUT"), timeout=10).close()


@contextlib.contextmanager
def s3_server_process() -> Iterator[S3Server]:
    """moto's standalone server on a free loopback port, stopped by the PID started here."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("moto server did not start within 60 s")
        time.sleep(0.05)
    # obstore reads credentials from the environment; moto accepts any.
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = "testing", "testing"
    try:
        yield S3Server(f"http://127.0.0.1:{port}", process)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
