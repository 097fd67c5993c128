"""Connecting to Redis/Valkey with timeouts that fit inside an admission deadline.

A webhook that waits for a dead Redis blocks pod creation across the cluster; every socket operation is bounded
well below the webhook timeout, and a failure surfaces as a redis ConnectionError/TimeoutError, which the
admission pipeline turns into "allow, no patch" (reason store_unavailable).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

DEFAULT_SOCKET_TIMEOUT = 0.5  # seconds; one round trip on a healthy Redis is well under a millisecond
# Connections per client. Past it, a request waits (at most the socket timeout) for one to come free rather than
# fail at once: redis-py's default pool raises "Too many connections" on the 101st concurrent admission, which
# would admit a burst of pods unmemoized (store_unavailable) while Redis is healthy.
MAX_CONNECTIONS = 100
# redis-py's cluster pools cannot wait for a connection: they get room for a burst instead (per node; Valkey's
# default maxclients is 10,000).
CLUSTER_MAX_CONNECTIONS = 1000


def connect(url: str, *, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT) -> Any:
    """A client for `redis://`, `rediss://` or `unix://` URLs; `?cluster=true` selects Redis Cluster mode.

    The client connects lazily: creating it never blocks, so a server starts even while Redis is down.
    """
    base, _, query = url.partition("?")
    params = [p for p in query.split("&") if p]
    cluster = any(p.lower() in ("cluster=true", "cluster=1", "cluster=yes") for p in params)
    rest = "&".join(p for p in params if not p.lower().startswith("cluster="))
    clean = base + ("?" + rest if rest else "")
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
    }
    if cluster:
        return RedisCluster.from_url(clean, max_connections=CLUSTER_MAX_CONNECTIONS, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        clean, max_connections=MAX_CONNECTIONS, timeout=socket_timeout, retry_on_timeout=False, **options
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


def redact(url: str) -> str:
    """A Redis URL without its password, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    credentials, host = rest.split("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in credentials else '***'}@{host}"
