"""Redis Sentinel: the URL, and a real master, replica and sentinel (Valkey in sentinel mode) failing over.

Every component's own tests also run on Sentinel (tests/conftest.py REDIS_DEPLOYMENTS: the cache store, the
webhook with the recorder, replay; tests/test_sidestore_cluster.py: the side store's metadata). What is here is
what only Sentinel has: finding the master, following it when it moves, and the sentinels' own credentials.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.sidestore_fixtures import make_tls
from tests.test_store import P7D, RETENTION, T0, entry
from wfboost.cache import admin, redis_client
from wfboost.cache import keyspace as ks
from wfboost.cache.redis_client import SentinelUrl, check_url, redact
from wfboost.cache.store import CacheStore, Replication, Verdict
from wfboost_dev.demo.processes import RedisSentinel, start_redis_sentinel, valkey_command

WINDOW = 5.0  # seconds after a failover within which a running client must have left the old master


@pytest.fixture
def failing_over() -> Iterator[RedisSentinel]:
    """A deployment of this test's own: it is failed over."""
    deployment = start_redis_sentinel()
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.mark.parametrize(("url", "expected"), [
    ("redis+sentinel://s1/cache", SentinelUrl((("s1", 26379),), "cache")),
    ("redis+sentinel://wfboost:p%40ss@s1:26380,s2,[fd00::1]:5000/cache/3?sentinel_password=x%26y",
     SentinelUrl((("s1", 26380), ("s2", 26379), ("fd00::1", 5000)), "cache", 3, "wfboost", "p@ss",
                 options={"sentinel_password": "x&y"})),
    ("redis+sentinel://:only-a-password@s1/cache/", SentinelUrl((("s1", 26379),), "cache", 0, None,
                                                                "only-a-password")),
    ("rediss+sentinel://s1/cache?ssl_ca_certs=/etc/redis/ca.crt",
     SentinelUrl((("s1", 26379),), "cache", tls=True, options={"ssl_ca_certs": "/etc/redis/ca.crt"})),
])
def test_a_sentinel_url_names_the_sentinels_the_master_and_the_credentials(url: str, expected: SentinelUrl) -> None:
    assert SentinelUrl.parse(url) == expected
    assert check_url(url) == url


@pytest.mark.parametrize(("url", "reason"), [
    ("redis+sentinel://s1", "names the master"),
    ("redis+sentinel://s1/", "names the master"),
    ("redis+sentinel:///cache", "a list of host[:port]"),
    ("redis+sentinel://s1,/cache", "a list of host[:port]"),
    ("redis+sentinel://s1:port/cache", "a list of host[:port]"),
    ("redis+sentinel://s1:70000/cache", "a list of host[:port]"),
    ("redis+sentinel://[::1/cache", "a list of host[:port]"),
    ("redis+sentinel://s1/cache/zero", "is a number"),
    ("redis+sentinel://s1/cache/0/extra", "names the master"),
    ("redis+sentinel://s1/cache?cluster=true", "unknown Sentinel URL option 'cluster'"),
    ("redis+sentinel://s1/cache?ssl_ca_certs=/ca.crt", "need TLS"),
    ("sentinel://s1/cache", "a Redis URL starts"),
    ("s1:6379", "a Redis URL starts"),
])
def test_a_bad_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r".*") as refused:
        redis_client.connect(url)
    assert reason in str(refused.value)


def test_a_bad_url_is_one_line_from_the_command_line() -> None:
    """Before any server starts: the reason, not a stack trace or "a bug: please report it"."""
    done = subprocess.run([sys.executable, "-m", "wfboost", "serve", "--redis-url", "redis+sentinel://s1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(
        "argument --redis-url: a Sentinel URL names the master after the hosts: "
        "redis+sentinel://host:26379/mymaster[/db]: redis+sentinel://s1")
    assert "Traceback" not in done.stderr and "bug" not in done.stderr


@pytest.mark.parametrize(("url", "secret"), [
    ("redis+sentinel://u:p@ss@h1,h2/m", "p@ss"),  # an unencoded @: the parse splits at the last one
    ("redis://:s3cr/et@host:6379/0", "s3cr/et"),
    ("redis://user:ab?cd@host:6379", "ab?cd"),
    ("unix:///run/redis.sock?password=s3cret", "s3cret"),
    ("rediss://host?ssl_password=s3cret", "s3cret"),
    ("redis+sentinel://h1/m?sentinel%5Fpassword=s3cret", "s3cret"),
])
def test_redaction_hides_every_password_form(url: str, secret: str) -> None:
    assert secret not in redact(url)


@pytest.mark.parametrize("url", ["redis+sentinel://u:sec/ret@h1/m", "redis+sentinel://u:p?w@h1/m",
                                 "redis+sentinel://u:123?x@h1/m", "redis+sentinel://u:a/b@h/c"])
def test_a_malformed_url_is_refused_without_showing_its_password(url: str) -> None:
    secret = url.split("u:", 1)[1].rsplit("@", 1)[0]
    with pytest.raises(ValueError, match="redis") as refused:
        redis_client.connect(url)
    assert secret not in str(refused.value) and "u:***@" in str(refused.value)


@given(user=st.text(min_size=1, max_size=12), secret=st.text(min_size=1, max_size=24),
       sentinel_secret=st.text(min_size=1, max_size=24))
def test_credentials_survive_percent_encoding_and_never_reach_a_log(user: str, secret: str,
                                                                    sentinel_secret: str) -> None:
    password, sentinel_password = "pw-" + secret, "spw-" + sentinel_secret
    url = (f"redis+sentinel://{quote(user, safe='')}:{quote(password, safe='')}@s1:26379/cache/0"
           f"?sentinel_password={quote(sentinel_password, safe='')}")
    parsed = SentinelUrl.parse(url)
    assert (parsed.username, parsed.password) == (user, password)
    assert parsed.options["sentinel_password"] == sentinel_password
    shown = redact(url)
    assert quote(password, safe="") not in shown and quote(sentinel_password, safe="") not in shown
    assert shown.endswith("@s1:26379/cache/0?sentinel_password=***")


async def test_the_master_is_found_through_the_sentinels(valkey_sentinel: RedisSentinel) -> None:
    client = redis_client.connect(valkey_sentinel.url_for(5))
    try:
        await client.set("wfboost-test:found", "yes")
        assert await client.get("wfboost-test:found") == b"yes"
        assert tuple(client.connection_pool.master_address) == ("127.0.0.1", valkey_sentinel.current_master_port())
        info = valkey_command(valkey_sentinel.master.port, "INFO", "keyspace")
        assert b"db5:keys=" in info  # the database of the URL, on the master the sentinel named
    finally:
        await client.aclose()
        await _flush(valkey_sentinel, 5)


async def _flush(deployment: RedisSentinel, db: int) -> None:
    client = redis_client.connect(deployment.url_for(db))
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def promote_the_replica_behind_the_old_masters_back(deployment: RedisSentinel) -> int:
    """A failover the old master has not heard of, as when a partition cuts it off from the sentinels but not from
    its clients: the replica becomes a master and the sentinels are told to watch it, while the old master stays a
    master and keeps taking writes. (A real `SENTINEL FAILOVER` leaves the same window open until the sentinels'
    next look at the old master, up to 10 s later: too random to test against.)"""
    new = deployment.replica.port
    valkey_command(new, "REPLICAOF", "NO", "ONE")
    for sentinel in deployment.sentinels:
        valkey_command(sentinel.port, "SENTINEL", "REMOVE", deployment.master_name)
        valkey_command(sentinel.port, "SENTINEL", "MONITOR", deployment.master_name, "127.0.0.1", str(new), "1")
    assert deployment.current_master_port() == new
    return new


async def test_a_running_client_leaves_a_master_the_sentinels_no_longer_name(failing_over: RedisSentinel) -> None:
    """A client that stayed on the old master would miss what is written on the new one meanwhile: an
    invalidation there, and a lookup on the old master is a hit on an entry the user has invalidated. The client
    asks the sentinels every MASTER_CHECK_INTERVAL, so it moves within a couple of intervals."""
    webhook = CacheStore(redis_client.connect(failing_over.url, socket_timeout=2.0))
    key = "f" * 64
    try:
        assert await webhook.record(entry(key, "a", T0, P7D), retention=RETENTION)
        assert (await webhook.lookup(key, staleness=P7D, adopt=False, at_ms=T0)).verdict is Verdict.HIT
        old = failing_over.master.port
        new = promote_the_replica_behind_the_old_masters_back(failing_over)
        # The operator invalidates, with a client of its own (the CLI): it asks the sentinels, finds the new master.
        operator = CacheStore(redis_client.connect(failing_over.url, socket_timeout=2.0))
        try:
            assert await operator.invalidate_keys([key]) == 1
        finally:
            await operator.redis.aclose()
        assert valkey_command(old, "EXISTS", ks.tracks_key(key)) == b":1\r\n"  # where a stale hit would come from
        assert 3 * redis_client.MASTER_CHECK_INTERVAL < WINDOW
        deadline = time.monotonic() + WINDOW
        verdicts: list[str] = []
        while time.monotonic() < deadline:
            try:
                verdict = (await webhook.lookup(key, staleness=P7D, adopt=False, at_ms=T0)).verdict
            except (RedisConnectionError, RedisTimeoutError):
                verdict = "error"  # an admission that fails open: allowed, unmemoized
            verdicts.append(verdict)
            if verdict is Verdict.MISS:
                break
            await asyncio.sleep(0.05)
        assert verdicts[-1] is Verdict.MISS, verdicts
        assert "error" not in verdicts  # the move is quiet: the old master never refused anything
        assert tuple(webhook.redis.connection_pool.master_address) == ("127.0.0.1", new)
        # Writes land on the new master too.
        assert await webhook.record(entry(key, "b", T0, P7D), retention=RETENTION)
        found = await webhook.lookup(key, staleness=P7D, adopt=False, at_ms=T0)
        assert found.entry is not None and found.entry["entry_id"] == "b"
        assert valkey_command(new, "EXISTS", ks.tracks_key(key)) == b":1\r\n"
    finally:
        await webhook.redis.aclose()


async def test_commands_go_on_after_a_sentinel_failover(failing_over: RedisSentinel) -> None:
    """A real `SENTINEL FAILOVER`, until the old master follows the new one: the client's commands fail at most
    briefly, as connection errors (admissions that fail open), and then reach the new master."""
    client = redis_client.connect(failing_over.url, socket_timeout=2.0)
    try:
        await client.set("before", "1")
        new = failing_over.fail_over()
        outcomes: list[str] = []
        for attempt in range(20):
            try:
                await client.set("after", str(attempt))
                outcomes.append("ok")
                break
            except (RedisConnectionError, RedisTimeoutError):
                outcomes.append("error")
                await asyncio.sleep(0.1)
        assert outcomes[-1] == "ok" and outcomes.count("error") <= 2, outcomes
        assert tuple(client.connection_pool.master_address) == ("127.0.0.1", new)
        assert await client.get("before") == b"1"  # replicated before the failover
        assert b"role:master" in valkey_command(new, "INFO", "replication")
    finally:
        await client.aclose()


async def test_sentinels_that_require_a_password_get_it_from_the_url() -> None:
    deployment = start_redis_sentinel(password="s3cret-for-test")
    try:
        client = redis_client.connect(deployment.url)
        try:
            await client.set("k", "v")
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()
        without = redis_client.connect(deployment.url.partition("?")[0])  # the master's password only
        try:
            with pytest.raises(RedisConnectionError, match="No master found"):
                await without.get("k")  # redis-py's MasterNotFoundError: the admission fails open
        finally:
            await without.aclose()
    finally:
        deployment.stop()


async def test_an_invalidation_waits_for_the_replicas(valkey_sentinel: RedisSentinel) -> None:
    store = CacheStore(redis_client.connect(valkey_sentinel.url, socket_timeout=10.0))
    key = uuid.uuid4().hex * 2
    try:
        assert await store.record(entry(key, "x", T0, P7D), retention=RETENTION)
        confirmed = await admin.invalidate(store, keys=[key])
        assert confirmed.removed == 1
        assert confirmed.replication == Replication(acknowledged=1, connected=1)
        assert confirmed.as_json()["replicas"] == {"acknowledged": 1, "connected": 1}
    finally:
        await store.redis.aclose()


async def _record(url: str, *keys: str) -> None:
    store = CacheStore(redis_client.connect(url, socket_timeout=10.0))
    try:
        for key in keys:
            assert await store.record(entry(key, "x", T0, P7D), retention=RETENTION)
    finally:
        await store.redis.aclose()


def test_an_invalidation_a_replica_did_not_confirm_is_a_warning(failing_over: RedisSentinel) -> None:
    """Replication is asynchronous: an invalidation the replica never got is undone by a failover to it. The
    command waits for the replicas and says when one did not confirm (here: the replica is frozen)."""
    first, second = "a" * 64, "b" * 64
    asyncio.run(_record(failing_over.url, first, second))
    env = {**os.environ, "WFBOOST_REDIS_URL": failing_over.url}
    failing_over.replica.process.send_signal(signal.SIGSTOP)
    try:
        as_json, as_text = (
            subprocess.run([sys.executable, "-m", "wfboost", "cache", "invalidate", "--key", key, *extra],
                           capture_output=True, text=True, timeout=60, env=env)
            for key, extra in ((first, ["--json"]), (second, []))
        )
    finally:
        failing_over.replica.process.send_signal(signal.SIGCONT)
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    assert json.loads(as_json.stdout)["replicas"] == {"acknowledged": 0, "connected": 1}
    assert as_text.stdout.splitlines()[-1] == (
        "warning: 0 of 1 replicas confirmed the removal within 3 s; a failover to one that did not would serve the "
        "removed entries again: run the command again once the replicas are back")
    assert valkey_command(failing_over.master.port, "EXISTS", ks.tracks_key(first), ks.tracks_key(second)) == (
        b":0\r\n")  # removed on the master all the same


async def test_a_server_without_replicas_waits_for_nothing(store: CacheStore) -> None:
    assert await store.replicated(5000) is None


async def test_tls_to_the_sentinels_and_the_master(tmp_path: Path) -> None:
    """rediss+sentinel://: the sentinel and the master it names are both reached over TLS, checked against the CA
    of the URL; a client that does not trust that CA reaches nothing."""
    tls = make_tls(tmp_path / "tls")
    deployment = start_redis_sentinel(tls_dir=tls.cert_dir)
    try:
        assert deployment.url.startswith("rediss+sentinel://")
        store = CacheStore(redis_client.connect(deployment.url, socket_timeout=5.0))
        key = "e" * 64
        try:
            assert await store.record(entry(key, "x", T0, P7D), retention=RETENTION)
            assert (await store.lookup(key, staleness=P7D, adopt=False, at_ms=T0)).verdict is Verdict.HIT
            assert tuple(store.redis.connection_pool.master_address)[1] != deployment.master.port  # its TLS port
        finally:
            await store.redis.aclose()
        other = make_tls(tmp_path / "other")
        untrusting = redis_client.connect(deployment.url.replace(str(tls.ca_file), str(other.ca_file)),
                                          socket_timeout=5.0)
        try:
            with pytest.raises(RedisConnectionError):
                await untrusting.get("k")
        finally:
            await untrusting.aclose()
    finally:
        deployment.stop()


async def test_a_connection_whose_disconnect_fails_goes_back_to_the_pool(valkey_sentinel: RedisSentinel) -> None:
    """Leaving the old master's connection must not lose the pool's slot when the disconnect fails (a TLS close
    that times out, a cancelled admission): 100 such losses and every admission would fail open."""
    client = redis_client.connect(valkey_sentinel.url)
    try:
        await client.ping()
        pool = client.connection_pool
        connection = await pool.get_connection()

        async def failing_disconnect(*args: object, **kwargs: object) -> None:
            raise RedisTimeoutError("Timed out closing connection")

        connection.disconnect = failing_disconnect
        pool.master_address = ("127.0.0.1", 1)  # the sentinels named another master meanwhile
        with pytest.raises(RedisTimeoutError):
            await pool.release(connection)
        assert connection not in pool._in_use_connections
        del connection.disconnect  # its own again, for the client's close
    finally:
        await client.aclose()
