"""Settings of one side store service, and turning backend specs into backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfboost.sidestore.backends import Backend
from wfboost.sidestore.backends.filesystem import FilesystemBackend
from wfboost.sidestore.backends.redis import RedisBackend
from wfboost.sidestore.store import StoreSettings


@dataclass(frozen=True)
class SideStoreConfig:
    redis_url: str
    clients_file: Path
    host: str = "0.0.0.0"
    port: int = 8443
    metrics_port: int = 0  # plain HTTP /healthz /readyz /metrics without credentials; 0 disables it
    backend: str = "redis"  # "redis", "file:///path" or "s3://bucket?..."
    large_backend: str | None = None  # where blobs over the threshold and multipart uploads go
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: str | None = None
    insecure_http: bool = False  # only for local experiments: tokens travel in clear text
    policy_path: Path | None = None
    kube_url: str | None = None  # an explicit API server URL (tests); otherwise in-cluster or kubeconfig
    kubeconfig: str | None = None
    gc_interval: float = 300.0
    reload_interval: float = 10.0
    store: StoreSettings = field(default_factory=StoreSettings)


def backend_name(spec: str) -> str:
    if spec == "redis":
        return "redis"
    if spec.startswith("s3://"):
        return "s3"
    if spec.startswith(("file://", "/")):
        return "fs"
    raise ValueError(f"unknown backend {spec!r}: use redis, file:///path or s3://bucket?endpoint=...")


def make_backend(spec: str, redis: Any) -> Backend:
    name = backend_name(spec)
    if name == "redis":
        return RedisBackend(redis)
    if name == "fs":
        return FilesystemBackend(spec.removeprefix("file://"))
    from wfboost.sidestore.backends.s3 import S3Backend

    return S3Backend(spec)
