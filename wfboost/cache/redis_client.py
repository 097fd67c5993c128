"""Connecting to Redis/Valkey with timeouts that fit inside an admission deadline.

A webhook that waits for a dead Redis blocks pod creation across the cluster; every socket operation is bounded
well below the webhook timeout, and a failure surfaces as a redis ConnectionError/TimeoutError, which the
admission pipeline turns into "allow, no patch" (reason store_unavailable).

Three deployments, one URL each (docs/redis.md):

- one server: `redis://`, `rediss://` (TLS) or `unix://`, as redis-py reads them;
- Redis Cluster: the same with `?cluster=true`;
- Redis Sentinel: `redis+sentinel://` or `rediss+sentinel://`, naming the sentinels and the monitored master
  (`SentinelUrl`). Every command goes to the current master; replicas are never read, since a replica that lags
  could answer a lookup with an entry already invalidated on the master.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

import redis.asyncio as aioredis
import redis.exceptions as redis_exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

DEFAULT_SOCKET_TIMEOUT = 0.5  # seconds; one round trip on a healthy Redis is well under a millisecond
# Connections per client. Past it, a request waits (at most the socket timeout) for one to come free rather than
# fail at once: redis-py's default pool raises "Too many connections" on the 101st concurrent admission, which
# would admit a burst of pods unmemoized (store_unavailable) while Redis is healthy.
MAX_CONNECTIONS = 100
# redis-py's cluster pools cannot wait for a connection: they get room for a burst instead (per node; Valkey's
# default maxclients is 10,000).
CLUSTER_MAX_CONNECTIONS = 1000
# How often a Sentinel client asks the sentinels where the master is, besides on every new connection: in the
# background while commands flow, and before the first command after IDLE_MASTER_CHECK without any.
MASTER_CHECK_INTERVAL = 1.0
IDLE_MASTER_CHECK = 5.0
SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme -> TLS
DEFAULT_SENTINEL_PORT = 26379
# Query options of a Sentinel URL: the sentinels' own credentials (when they require any), and for TLS the files
# redis-py's `rediss://` takes, used for the sentinels and the master alike.
SENTINEL_CREDENTIALS = ("sentinel_username", "sentinel_password")
SENTINEL_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")


@dataclass(frozen=True)
class SentinelUrl:
    """`redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/master[/db][?option=value...]`.

    The user and password are the master's (an ACL user, or only a password for `requirepass`); sentinels that
    require credentials of their own get them from `sentinel_username`/`sentinel_password`. Ports default to
    26379, the database to 0. Values are percent-decoded, as in redis-py's URLs.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """ValueError for a URL that is not one; its message shows the URL redacted, never a piece of it (a
        password with an unencoded `/`, `?` or `@` is cut wherever the parse goes wrong)."""

        def bad(reason: str) -> ValueError:
            return ValueError(f"{reason}: {redact(url)}")

        scheme, _, rest = url.partition("://")
        if scheme.lower() not in SENTINEL_SCHEMES:
            raise bad("not a Sentinel URL: use redis+sentinel:// or rediss+sentinel://")
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        credentials, _, hosts = netloc.rpartition("@")
        username = password = None
        if credentials:
            user, has_password, secret = credentials.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if has_password else None
        sentinels = []
        for part in hosts.split(","):
            address = _host_port(part)
            if address is None:
                raise bad("a Sentinel URL needs a list of host[:port] (percent-encode / ? @ in a password)")
            sentinels.append(address)
        segments = [unquote(s) for s in path.split("/")] if path else []
        if not segments or not segments[0] or len(segments) > 2:
            raise bad("a Sentinel URL names the master after the hosts: redis+sentinel://host:26379/mymaster[/db]")
        db = 0
        if len(segments) == 2 and segments[1]:
            if not segments[1].isdigit():
                raise bad("the database after the master is a number")
            db = int(segments[1])
        options: dict[str, str] = {}
        known = SENTINEL_CREDENTIALS + SENTINEL_TLS_OPTIONS
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name not in known:
                what = f"option {name!r}" if re.fullmatch(r"[a-z_]{1,40}", name) else "option"
                raise bad(f"unknown Sentinel URL {what} (known: {', '.join(known)})")
            options[name] = value
        tls = SENTINEL_SCHEMES[scheme.lower()]
        if not tls and any(name in options for name in SENTINEL_TLS_OPTIONS):
            raise bad("ssl_* options need TLS: use rediss+sentinel://")
        return cls(tuple(sentinels), segments[0], db, username, password, tls, options)

    def connection_options(self, socket_timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
        """The keyword arguments for the master's connections and for the sentinels' (redis-py's `Sentinel`)."""
        common: dict[str, Any] = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout}
        if self.tls:
            common["ssl"] = True
            common.update({k: v for k, v in self.options.items() if k in SENTINEL_TLS_OPTIONS})
        master = {**common, "db": self.db, "username": self.username, "password": self.password}
        sentinel = {**common, "username": self.options.get("sentinel_username") or None,
                    "password": self.options.get("sentinel_password") or None}
        return master, sentinel


def _host_port(text: str) -> tuple[str, int] | None:
    """`host`, `host:port` or `[ipv6]:port`; None for anything else."""
    if text.startswith("["):
        host, closed, port = text[1:].partition("]")
        if not closed or (port and not port.startswith(":")):
            return None
        port = port[1:]
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        return None
    return host, int(port) if port else DEFAULT_SENTINEL_PORT


class WaitingPool(aioredis.BlockingConnectionPool):
    """A pool that waits for a free connection on a burst, and costs what the plain pool costs otherwise.

    redis-py's blocking pool takes an asyncio.Condition and a timeout on every command, even with connections
    idle; on the admission path that was a fifth of a lookup's client time (`make bench`). Here a command takes
    the plain pool's path while nobody waits and a connection is free, and the blocking path (with its
    notification on release) only while someone waits.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting = 0

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._waiting == 0 and self.can_get_connection():
            try:
                return await aioredis.ConnectionPool.get_connection(self)  # type: ignore[no-untyped-call]
            except RedisConnectionError as exc:
                # Others took the last free connections while this one waited for the pool's lock: wait too.
                if not _pool_exhausted(exc):
                    raise
        self._waiting += 1
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        finally:
            self._waiting -= 1

    async def release(self, connection: Any) -> None:
        if self._waiting == 0:
            await aioredis.ConnectionPool.release(self, connection)
        else:
            await super().release(connection)


def _pool_exhausted(exc: Exception) -> bool:
    """redis-py's "no connection left" (MaxConnectionsError since 5.1; a plain ConnectionError before)."""
    exhausted = getattr(redis_exceptions, "MaxConnectionsError", None)
    return (exhausted is not None and isinstance(exc, exhausted)) or str(exc) == "Too many connections"


class _WaitingSentinelPool(SentinelConnectionPool, WaitingPool):
    """The master's connections, found through the sentinels.

    Two things redis-py's SentinelConnectionPool does not do. It waits for a free connection on a burst, as the
    single-server pool does (the Sentinel pool alone raises "Too many connections"): redis-py's pools cooperate,
    the Sentinel pool picks the address, `WaitingPool` the waiting. And it asks the sentinels again every
    `MASTER_CHECK_INTERVAL` (in the background; before the command after an idle spell), leaving the old
    master's connections as soon as the answer changes. Without that a pooled connection keeps talking to a
    demoted master for as long as it still accepts writes (about 10 s after a manual failover, until the sentinels
    reconfigure it; for good when a partition cuts it off from them), and a lookup there would not see an
    invalidation made on the new master meanwhile.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._checked_at = time.monotonic()
        self._check: asyncio.Task[None] | None = None

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        since = now - self._checked_at
        if since >= MASTER_CHECK_INTERVAL and (self._check is None or self._check.done()):
            self._checked_at = now
            if since >= IDLE_MASTER_CHECK:
                await self._recheck_master()  # after a quiet spell, before the first command, not beside it
            else:
                self._check = asyncio.get_running_loop().create_task(self._recheck_master())
        return await super().get_connection(*args, **kwargs)

    async def _recheck_master(self) -> None:
        # Sentinels down (or refusing) while the master is up: keep the address known (commands still work), ask
        # again later.
        with contextlib.suppress(redis_exceptions.RedisError, OSError):
            await self.get_master_address()  # type: ignore[no-untyped-call]

    async def release(self, connection: Any) -> None:
        try:
            if self.master_address is not None and (connection.host, connection.port) != tuple(self.master_address):
                await connection.disconnect(nowait=True)  # it reconnects, through the sentinels, when next used
        finally:
            await super().release(connection)  # whatever the disconnect did: a lost connection is a lost slot

    async def stop_checks(self) -> None:
        if self._check is not None and not self._check.done():
            self._check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._check


class _SentinelMaster(aioredis.Redis):
    """The master's client; closing it also closes its connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        assert isinstance(pool, _WaitingSentinelPool)
        try:
            await pool.stop_checks()
            await super().aclose(close_connection_pool)
        finally:
            await pool.sentinel_manager.aclose()


def check_url(url: str) -> str:
    """`url` when it is a Redis URL that `connect` takes, else ValueError with the reason (a one-line CLI error)."""
    base = url.partition("?")[0]
    scheme = base.partition("://")[0].lower()
    if scheme in SENTINEL_SCHEMES:
        SentinelUrl.parse(url)
    elif scheme not in ("redis", "rediss", "unix") or "://" not in base:
        raise ValueError(f"{redact(url)}: a Redis URL starts redis://, rediss://, unix://, redis+sentinel:// or "
                         "rediss+sentinel://")
    return url


def connect(url: str, *, socket_timeout: float = DEFAULT_SOCKET_TIMEOUT) -> Any:
    """A client for the URL (see the module's docstring); ValueError for one that is not a Redis URL.

    The client connects lazily: creating it never blocks, so a server starts even while Redis is down.
    """
    check_url(url)
    if url.partition("://")[0].lower() in SENTINEL_SCHEMES:
        return _sentinel_master(SentinelUrl.parse(url), socket_timeout)
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
    pool = WaitingPool.from_url(
        clean, max_connections=MAX_CONNECTIONS, timeout=socket_timeout, retry_on_timeout=False, **options
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


def _sentinel_master(parsed: SentinelUrl, socket_timeout: float) -> aioredis.Redis:
    """The current master of `parsed.master`. After a failover the old master's connections fail once (redis-py
    turns its READONLY into a ConnectionError, an admission that fails open) and the next command asks the
    sentinels again."""
    master_options, sentinel_options = parsed.connection_options(socket_timeout)
    sentinels = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call, unused-ignore]
    client: aioredis.Redis = sentinels.master_for(
        parsed.master, redis_class=_SentinelMaster, connection_pool_class=_WaitingSentinelPool,
        max_connections=MAX_CONNECTIONS, timeout=socket_timeout, retry_on_timeout=False, **master_options,
    )
    return client


def redact(url: str) -> str:
    """A Redis URL without its passwords, for logs and error messages: the user's (everything between `://` and
    the last `@`, but the user name) and any query option whose name says password. A malformed URL is hidden
    more, never less."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    shown = ""
    at = rest.rfind("@")
    if at >= 0:
        credentials, rest = rest[:at], rest[at + 1:]
        user, has_password, _ = credentials.partition(":")
        shown = f"{user}:***@" if has_password else "***@"
    rest, qsep, query = rest.partition("?")
    if query:
        query = "&".join(
            f"{name}=***" if eq and "password" in unquote(name).lower() else f"{name}{eq}{value}"
            for name, eq, value in (part.partition("=") for part in query.split("&"))
        )
    return f"{scheme}://{shown}{rest}{qsep}{query}"
