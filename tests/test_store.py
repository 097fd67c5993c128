"""The cache store against real Valkey: one server and a three-node cluster, same code, same answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_DEPLOYMENTS, redis_deployment
from wfboost.cache import keyspace as ks
from wfboost.cache import redis_client
from wfboost.cache.entries import CacheEntry
from wfboost.cache.store import CacheStore, LeaseRequest, Verdict
from wfboost_dev.demo.processes import RedisProcess

DAY = 86_400_000
T0 = 1_790_000_000_000  # a fixed "now" in ms, so staleness arithmetic is exact
P1D, P7D, P30D = timedelta(days=1), timedelta(days=7), timedelta(days=30)
RETENTION = timedelta(days=90)


def entry(key: str, entry_id: str, finished_ms: int, staleness: timedelta, **extra: Any) -> CacheEntry:
    value: dict[str, Any] = {
        "key": key,
        "entry_id": entry_id,
        "finished_at": "2026-09-21T00:00:00Z",
        "finished_ms": finished_ms,
        "staleness_s": int(staleness.total_seconds()),
        "parameters": [{"name": "rows", "value": entry_id}],
        "artifacts": [],
        "image": "busybox:1.36",
        "image_id": "docker.io/library/busybox@sha256:" + "0" * 64,
        "producer": {"namespace": "ml", "workflow": "wf-" + entry_id, "workflow_uid": "u", "node_id": "n",
                     "node_name": "wf.step", "pod": "wf-step-1"},
        "recorded_at": "2026-09-21T00:00:01Z",
    }
    value.update(extra)
    return value  # type: ignore[return-value]


@pytest.fixture(params=list(REDIS_DEPLOYMENTS))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CacheStore]:
    server = redis_deployment(request)
    client = redis_client.connect(server.url)
    try:
        yield CacheStore(client)
    finally:
        await client.aclose()


@pytest.fixture
def key() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


async def test_a_recorded_entry_is_found_while_young_enough(store: CacheStore, key: str) -> None:
    assert (await store.lookup(key, staleness=P7D, at_ms=T0)).verdict is Verdict.MISS
    assert await store.record(entry(key, "a", T0, P7D), retention=RETENTION)
    hit = await store.lookup(key, staleness=P7D, at_ms=T0 + 6 * DAY)
    assert hit.verdict is Verdict.HIT and hit.entry is not None and hit.entry["entry_id"] == "a"
    assert not hit.adopted
    assert (await store.lookup(key, staleness=P7D, at_ms=T0 + 8 * DAY)).verdict is Verdict.MISS
    assert (await store.lookup(key, staleness=P1D, at_ms=T0 + 2 * DAY)).verdict is Verdict.MISS


async def test_p0d_never_reuses_but_the_result_is_recorded(store: CacheStore, key: str) -> None:
    assert await store.record(entry(key, "zero", T0, timedelta(0)), retention=RETENTION)
    assert (await store.lookup(key, staleness=timedelta(0), at_ms=T0)).verdict is Verdict.MISS
    other = await store.lookup(key, staleness=P7D, at_ms=T0 + DAY)  # a step that accepts old results may use it
    assert other.verdict is Verdict.HIT and other.adopted


async def test_a_faster_workflow_never_breaks_a_slower_ones_cache(store: CacheStore, key: str) -> None:
    await store.record(entry(key, "slow", T0, P30D), retention=RETENTION)
    # The fast workflow (P1D) finds nothing young enough two days later, runs, and records on its own track.
    assert (await store.lookup(key, staleness=P1D, at_ms=T0 + 2 * DAY)).verdict is Verdict.MISS
    await store.record(entry(key, "fast", T0 + 2 * DAY, P1D), retention=RETENTION)
    slow = await store.lookup(key, staleness=P30D, at_ms=T0 + 3 * DAY)
    assert slow.entry is not None and slow.entry["entry_id"] == "slow"  # still the result it reused before
    fast = await store.lookup(key, staleness=P1D, at_ms=T0 + 2 * DAY + 1000)
    assert fast.entry is not None and fast.entry["entry_id"] == "fast"


async def test_an_entry_from_another_track_is_adopted_and_then_stable(store: CacheStore, key: str) -> None:
    await store.record(entry(key, "first", T0, P30D), retention=RETENTION)
    weekly = await store.lookup(key, staleness=P7D, at_ms=T0 + DAY)
    assert weekly.adopted and weekly.entry is not None and weekly.entry["entry_id"] == "first"
    await store.record(entry(key, "newer", T0 + 2 * DAY, P30D), retention=RETENTION)  # the 30-day track moves on
    again = await store.lookup(key, staleness=P7D, at_ms=T0 + 3 * DAY)
    assert again.entry is not None and again.entry["entry_id"] == "first" and not again.adopted
    assert set(await store.tracks(key)) == {"604800", "2592000"}


async def test_a_dry_run_lookup_does_not_adopt(store: CacheStore, key: str) -> None:
    await store.record(entry(key, "first", T0, P30D), retention=RETENTION)
    assert (await store.lookup(key, staleness=P7D, at_ms=T0 + DAY, adopt=False)).verdict is Verdict.HIT
    assert set(await store.tracks(key)) == {"2592000"}


async def test_recording_is_idempotent_and_never_goes_back_in_time(store: CacheStore, key: str) -> None:
    assert await store.record(entry(key, "b", T0 + DAY, P7D), retention=RETENTION)
    assert not await store.record(entry(key, "b", T0 + DAY, P7D), retention=RETENTION)  # a watch replay
    assert not await store.record(entry(key, "a", T0, P7D), retention=RETENTION)  # an older run, seen late
    tracks = await store.tracks(key)
    assert tracks["604800"]["entry_id"] == "b"
    entries = await store.redis.hkeys(ks.entries_key(key))
    assert sorted(e.decode() for e in entries) == ["b"]  # the older result is not kept unreferenced


async def test_expiry_follows_the_newest_entry_and_never_shrinks(store: CacheStore, key: str) -> None:
    import time

    now = int(time.time() * 1000)
    await store.record(entry(key, "a", now, P7D), retention=RETENTION)
    first = await store.redis.pexpiretime(ks.tracks_key(key))
    assert first == now + int(RETENTION.total_seconds() * 1000)
    await store.record(entry(key, "b", now - DAY, P1D), retention=RETENTION)
    assert await store.redis.pexpiretime(ks.tracks_key(key)) == first
    assert await store.redis.pexpiretime(ks.entries_key(key)) == first


async def test_purge_removes_only_what_no_lookup_may_use(store: CacheStore, key: str) -> None:
    await store.record(entry(key, "old", T0, P30D), retention=RETENTION)
    await store.record(entry(key, "new", T0 + 80 * DAY, P7D), retention=RETENTION)
    removed = await store.purge(retention=RETENTION, at_ms=T0 + 91 * DAY)
    assert removed >= 1
    assert set(await store.tracks(key)) == {"604800"}
    await store.purge(retention=RETENTION, at_ms=T0 + 200 * DAY)
    assert await store.tracks(key) == {}
    assert key not in await store.keys()


async def test_leases_make_one_leader_and_followers(store: CacheStore, key: str) -> None:
    lease = timedelta(seconds=30)
    first = await store.lookup(key, staleness=P7D, lease=LeaseRequest("ml/node-1", lease))
    assert first.verdict is Verdict.LEADER
    second = await store.lookup(key, staleness=P7D, lease=LeaseRequest("ml/node-2", lease))
    assert second.verdict is Verdict.FOLLOWER and second.lease_holder == "ml/node-1"
    again = await store.lookup(key, staleness=P7D, lease=LeaseRequest("ml/node-1", lease))
    assert again.verdict is Verdict.LEADER  # the same node asking again (a reinvocation) still leads
    import time

    await store.record(entry(key, "led", int(time.time() * 1000), P7D), retention=RETENTION, lease_owner="ml/node-1")
    assert await store.redis.get(ks.lease_key(key)) is None
    assert (await store.lookup(key, staleness=P7D, lease=LeaseRequest("ml/node-3", lease))).verdict is Verdict.HIT


async def test_invalidation_by_key_entry_and_selection(store: CacheStore, key: str) -> None:
    other = uuid.uuid4().hex * 2
    await store.record(entry(key, "a", T0, P7D), retention=RETENTION)
    await store.record(entry(key, "b", T0 + 1, P30D), retention=RETENTION)
    await store.record(entry(other, "c", T0, P7D, image="python:3.11"), retention=RETENTION)
    selected = await store.select(lambda e: e["image"] == "python:3.11")
    assert other in selected and key not in selected
    assert await store.invalidate_entries(key, ["a"]) == 1
    assert set(await store.tracks(key)) == {"2592000"}
    assert await store.invalidate_keys([key, other]) == 2
    assert await store.tracks(key) == {} and await store.tracks(other) == {}
    assert key not in await store.keys()


async def test_a_node_served_a_hit_that_comes_back_is_told_to_run(store: CacheStore, key: str) -> None:
    """The served set is written by the lookup itself (no second round trip) and lives in the key's slot."""
    await store.record(entry(key, "a", T0, P7D), retention=RETENTION)
    node = ks.node_identity("ml", "uid-1", "wf[0].train(0)")
    dry = await store.lookup(key, staleness=P7D, adopt=False, node=node, at_ms=T0 + 1)
    assert dry.verdict is Verdict.HIT  # a dry run is answered but remembers nothing
    assert (await store.lookup(key, staleness=P7D, node=node, at_ms=T0 + 1)).verdict is Verdict.HIT
    retried = ks.node_identity("ml", "uid-1", "wf[0].train(1)")  # the next attempt of the same node
    assert retried == node
    assert (await store.lookup(key, staleness=P7D, node=retried, at_ms=T0 + 2)).verdict is Verdict.RERUN
    other = ks.node_identity("ml", "uid-2", "wf[0].train(0)")  # the same step in a re-created workflow
    assert (await store.lookup(key, staleness=P7D, node=other, at_ms=T0 + 3)).verdict is Verdict.HIT
    items = ks.node_identity("ml", "uid-1", "wf[0].train(1:lr-0.1)")  # a loop item is another node
    assert items != node
    assert 0 < await store.redis.pttl(ks.served_key(key)) <= ks.SERVED_TTL.total_seconds() * 1000
    await store.invalidate_keys([key])
    assert not await store.redis.exists(ks.served_key(key))


async def test_a_run_of_another_image_digest_drops_the_entries_of_the_moved_tag(store: CacheStore, key: str) -> None:
    old = "docker-pullable://ghcr.io/example/tool@sha256:" + "1" * 64
    new = "ghcr.io/example/tool@sha256:" + "2" * 64
    await store.record(entry(key, "a", T0, P7D, image_id=old), retention=RETENTION)
    await store.record(entry(key, "b", T0 + DAY, P30D, image_id=old), retention=RETENTION)
    assert set(await store.tracks(key)) == {str(int(P7D.total_seconds())), str(int(P30D.total_seconds()))}
    # The tag was pushed again: a real run (a miss elsewhere, a P0D step) reports another digest.
    await store.record(entry(key, "c", T0 + 2 * DAY, P7D, image_id=new), retention=RETENTION)
    tracks = await store.tracks(key)
    assert [e["entry_id"] for e in tracks.values()] == ["c"]  # the P30D track's older-image entry is gone too
    assert (await store.lookup(key, staleness=P30D, at_ms=T0 + 2 * DAY + 1)).entry["entry_id"] == "c"  # type: ignore[index]
    assert (await store.stats())["invalidated"] >= 2


@pytest.mark.parametrize("deployment", ["valkey", "valkey_sentinel"])
async def test_a_burst_past_the_connection_pool_waits_instead_of_failing(deployment: str, key: str,
                                                                         request: pytest.FixtureRequest) -> None:
    """More admissions at once than the client holds connections (a burst of pod creations): each waits for a
    free connection (bounded by the socket timeout) instead of failing with "Too many connections", which would
    admit the burst unmemoized while Redis is healthy (a cluster client's pools cannot wait: they hold 1,000). The
    wait is what is tested, not its length: the client here
    allows 5 s, so that a machine loaded by the rest of the suite cannot turn a slow wait into a failure."""
    assert redis_client.MAX_CONNECTIONS < 250
    client = redis_client.connect(request.getfixturevalue(deployment).url, socket_timeout=5.0)
    try:
        store = CacheStore(client)
        await store.record(entry(key, "a", T0, P7D), retention=RETENTION)
        found = await asyncio.gather(*(store.lookup(key, staleness=P7D, adopt=False, at_ms=T0) for _ in range(250)))
    finally:
        await client.aclose()
    assert {f.verdict for f in found} == {Verdict.HIT}
    assert client.connection_pool.max_connections == redis_client.MAX_CONNECTIONS  # the pool did not grow


async def test_a_command_that_finds_the_last_connection_taken_while_it_queued_waits(valkey: RedisProcess) -> None:
    """The waiting pool takes the plain path while a connection is free; two commands that both saw one free,
    queued behind the pool's lock (held across a reconnect in redis-py), must not make the second fail with
    "Too many connections": it waits for the first to be done."""
    pool = redis_client.WaitingPool.from_url(valkey.url, max_connections=1, timeout=5.0)
    client = aioredis.Redis.from_pool(pool)
    try:
        await client.ping()
        async with pool._lock:  # what a release that reconnects does: hold the lock across an await
            both = asyncio.gather(client.ping(), client.ping())
            await asyncio.sleep(0.05)  # both have passed the "is one free" check and wait for the lock
        assert await both == [True, True]
        assert len(pool._in_use_connections) == 0 and len(pool._available_connections) == 1
    finally:
        await client.aclose()
