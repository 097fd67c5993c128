"""The cache store: entries and leases in Redis/Valkey, on one server or a cluster.

The webhook asks one question per pod (`lookup`), answered by one Lua script on the node that owns the cache key:
the newest entry young enough for the step (unless this node was served one before and came back), else (when
latching is on) who leads. The recorder writes entries
(`record`); the CLI lists, explains and invalidates; a background task purges what no lookup may use any more.
See keyspace.py for every key and its lifetime, and docs/memoization.md for the rules.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any, cast

import orjson

from wfboost.cache import keyspace as ks
from wfboost.cache.entries import CacheEntry

_BATCH = 64  # concurrent reads when the CLI walks every key


@dataclass(frozen=True)
class Replication:
    """Replicas that acknowledged the writes so far, of those connected to the master."""

    acknowledged: int
    connected: int


def _script(name: str) -> str:
    return resources.files("wfboost.cache").joinpath("lua", name).read_text(encoding="utf-8")


class Verdict(enum.StrEnum):
    HIT = "hit"
    MISS = "miss"
    RERUN = "rerun"  # the node was served a hit before and came back (a retry): it runs for real
    LEADER = "leader"  # a miss whose caller now holds the lease: it runs the step
    FOLLOWER = "follower"  # a miss while another run of the same key is in flight
    WAITED = "waited"  # a follower that has waited `latch.followerWait`: it runs for real, without the lease


@dataclass(frozen=True)
class Lookup:
    verdict: Verdict
    entry: CacheEntry | None = None
    adopted: bool = False  # the entry came from another staleness track
    lease_holder: str = ""  # for followers: who leads
    waited_ms: int = 0  # for followers, and for hits and leaders that were followers: how long this node has waited


@dataclass(frozen=True)
class Snapshot:
    """A key's tracks (track name -> entry) and the nodes served from it, with their set's remaining lifetime."""

    tracks: dict[str, CacheEntry]
    served: list[str]
    served_ttl_ms: int


@dataclass(frozen=True)
class Inflight:
    """A key being run now by its leader: the lease's owner, how long until it lapses, and who waits (node →
    first refusal, ms)."""

    key: str
    holder: str
    expires_in_ms: int
    waiting: dict[str, int]


@dataclass(frozen=True)
class LeaseRequest:
    """Latching: take the lease for the key on a miss, held by `owner` (namespace/node id) for `ttl`."""

    owner: str
    ttl: timedelta


def image_digest(image_id: str) -> str:
    """The digest a container ran, from the kubelet's `imageID` (`docker-pullable://repo@sha256:…`,
    `repo@sha256:…` or `sha256:…`, by runtime); '' when it names none."""
    digest = image_id.rsplit("@", 1)[-1]
    return digest if digest.startswith("sha256:") else ""


def now_ms() -> int:
    return int(time.time() * 1000)


class CacheStore:
    """Cache entries for one Redis/Valkey deployment (a `redis.asyncio` client, single-node or cluster)."""

    def __init__(self, redis: Any):
        self.redis = redis
        self._lookup = redis.register_script(_script("lookup.lua"))
        self._record = redis.register_script(_script("record.lua"))
        self._prune = redis.register_script(_script("prune.lua"))
        self._lease = redis.register_script(_script("lease.lua"))
        self._snapshot = redis.register_script(_script("snapshot.lua"))
        self._restore_served = redis.register_script(_script("restore_served.lua"))

    # --- the admission path: one round trip ---------------------------------------------------------------

    async def lookup(
        self,
        key: str,
        *,
        staleness: timedelta,
        adopt: bool = True,
        lease: LeaseRequest | None = None,
        node: str = "",
        follower_wait: timedelta = timedelta(0),
        at_ms: int | None = None,
    ) -> Lookup:
        """The newest entry no older than `staleness`, preferring the step's own staleness track.

        `adopt` copies an entry found on another track onto the requested one, so that a workflow keeps reusing the
        same result for as long as it accepts it, whatever faster workflows record; it is off for dry runs, which
        write nothing. `node` names the step's node (`node_identity`): a node served a hit before is answered
        RERUN, and a hit remembers the node. With `lease`, a miss takes the lease (LEADER) or finds it held by
        another pod (FOLLOWER, until `node` has waited `follower_wait`: WAITED).
        """
        answer = await self._lookup(
            keys=[ks.tracks_key(key), ks.entries_key(key), ks.lease_key(key), ks.served_key(key), ks.waits_key(key)],
            args=[
                at_ms if at_ms is not None else now_ms(),
                int(staleness.total_seconds() * 1000),
                ks.track_name(staleness),
                1 if adopt else 0,
                int(lease.ttl.total_seconds() * 1000) if lease else 0,
                lease.owner if lease else "",
                node,
                int(ks.SERVED_TTL.total_seconds() * 1000),
                int(follower_wait.total_seconds() * 1000),
            ],
        )
        verdict = Verdict(_text(answer[0]))
        if verdict is Verdict.HIT:
            waited = int(answer[3]) if len(answer) > 3 else 0
            entry = cast(CacheEntry, orjson.loads(answer[1]))
            return Lookup(verdict, entry, adopted=bool(int(answer[2])), waited_ms=waited)
        return Lookup(verdict, lease_holder=_text(answer[1]), waited_ms=int(answer[2]))

    async def extend_lease(self, key: str, owner: str, ttl: timedelta) -> bool:
        """Renew the lease on `key` if `owner` still holds it (the recorder, while the leader's pod lives)."""
        ttl_ms = int(ttl.total_seconds() * 1000)
        return bool(await self._lease(keys=[ks.lease_key(key)], args=["extend", owner, ttl_ms]))

    async def release_lease(self, key: str, owner: str) -> bool:
        """Drop the lease on `key` if `owner` holds it: its run failed or stopped, and the next attempt may lead."""
        return bool(await self._lease(keys=[ks.lease_key(key)], args=["release", owner, 0]))

    # --- the recorder ------------------------------------------------------------------------------------------

    async def record(self, entry: CacheEntry, *, retention: timedelta, lease_owner: str = "") -> bool:
        """Write an entry on its track; True when the track moved to it. Safe to repeat (watch replays). A run whose
        image digest differs from the key's entries' drops them first: the tag they were keyed by has moved."""
        moved, _ = await self.record_run(entry, retention=retention, lease_owner=lease_owner)
        return moved

    async def record_run(self, entry: CacheEntry, *, retention: timedelta, lease_owner: str = "") -> tuple[bool, bool]:
        """`record`, and whether the lease `lease_owner` names was held and is now released (latching)."""
        replaced, released, _ = await self._write(entry, retention, str(entry["staleness_s"]), lease_owner, False)
        return replaced, released

    async def restore(self, entry: CacheEntry, *, retention: timedelta, track: int) -> str:
        """Write an entry from a backup on `track` (a lookup may have adopted it there): "written", "kept" (the track
        already holds it or a newer one) or "superseded" (the key's entries now run another image and one finished
        after this entry: the tag was pushed again since the backup, so its outputs must not come back)."""
        replaced, _, superseded = await self._write(entry, retention, str(track), "", True)
        return "superseded" if superseded else "written" if replaced else "kept"

    async def _write(self, entry: CacheEntry, retention: timedelta, track: str, lease_owner: str,
                     restoring: bool) -> tuple[bool, bool, bool]:
        key = entry["key"]
        body = orjson.dumps(entry)
        expire_at = entry["finished_ms"] + int(retention.total_seconds() * 1000)
        replaced, dropped, released, superseded = await self._record(
            keys=[ks.tracks_key(key), ks.entries_key(key), ks.lease_key(key), ks.digest_key(key)],
            args=[track, entry["finished_ms"], entry["entry_id"], body, expire_at, lease_owner,
                  image_digest(entry["image_id"]), "1" if restoring else "0"],
        )
        if superseded:
            return False, False, True
        await self.redis.zadd(ks.index_all(), {key: entry["finished_ms"]}, gt=True)  # another slot: CLI only
        if dropped:
            await self.redis.hincrby(ks.stats_key(), "invalidated", int(dropped))
        if replaced:
            await self.redis.hincrby(ks.stats_key(), "recorded", 1)
            await self.redis.hincrby(ks.stats_key(), "bytes", len(body))
        return bool(replaced), bool(released), False

    # --- reading, for the CLI -------------------------------------------------------------------------------

    async def tracks(self, key: str) -> dict[str, CacheEntry]:
        """Every live track of a key and the entry it points at, by track name (staleness seconds)."""
        tracks = await self.redis.hgetall(ks.tracks_key(key))
        if not tracks:
            return {}
        return _tracks_of(tracks.items(), await self.redis.hgetall(ks.entries_key(key)))

    async def snapshot(self, key: str) -> Snapshot:
        """A key's tracks and served nodes as of one moment (one script), for a backup."""
        tracks, entries, served, served_ttl = await self._snapshot(
            keys=[ks.tracks_key(key), ks.entries_key(key), ks.served_key(key)])
        return Snapshot(_tracks_of(zip(tracks[::2], tracks[1::2], strict=True),
                                   dict(zip(entries[::2], entries[1::2], strict=True))),
                        sorted(_text(node) for node in served), max(0, int(served_ttl)) if served else 0)

    async def restore_served(self, key: str, nodes: Iterable[str], lifetime_ms: int) -> None:
        """Add nodes that a backup says were served from `key`, kept at least `lifetime_ms` (one script)."""
        await self._restore_served(keys=[ks.served_key(key)], args=[lifetime_ms, *nodes])

    async def keys(self) -> list[str]:
        """Every cache key with entries, newest first."""
        return [_text(k) for k in await self.redis.zrevrange(ks.index_all(), 0, -1)]

    async def select(self, matches: Callable[[CacheEntry], bool]) -> dict[str, dict[str, CacheEntry]]:
        """Tracks of every key with at least one entry for which `matches` is true (the CLI's filters)."""
        keys = await self.keys()
        found: dict[str, dict[str, CacheEntry]] = {}
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            for key, tracks in zip(batch, await asyncio.gather(*(self.tracks(k) for k in batch)), strict=True):
                if any(matches(entry) for entry in tracks.values()):
                    found[key] = tracks
        return found

    async def inflight(self) -> list[Inflight]:
        """Every lease held now (latching), with who holds it and the nodes waiting for it. SCAN, for the CLI."""
        found: list[Inflight] = []
        async for raw in self.redis.scan_iter(match=f"{ks.PREFIX}{{*}}:lease", count=500):
            lease = _text(raw)
            key = lease[len(ks.PREFIX) + 1 : -len("}:lease")]
            holder, ttl_ms, waits = await asyncio.gather(
                self.redis.get(lease), self.redis.pttl(lease), self.redis.hgetall(ks.waits_key(key))
            )
            if holder is None:
                continue  # released between the scan and the read
            waiting = {_text(node): int(first) for node, first in waits.items()}
            found.append(Inflight(key, _text(holder), max(0, int(ttl_ms)), waiting))
        return sorted(found, key=lambda item: item.key)

    async def stats(self) -> dict[str, int]:
        raw = await self.redis.hgetall(ks.stats_key())
        counters = {_text(k): int(v) for k, v in raw.items()}
        counters["keys"] = int(await self.redis.zcard(ks.index_all()))
        return counters

    async def replicated(self, timeout_ms: int) -> Replication | None:
        """How many of the master's replicas hold what this client has written, waiting at most `timeout_ms`.

        Replication is asynchronous: an invalidation that reached the master only is undone by a failover to a
        replica that never got it, and the removed entry is served again. None where this cannot be asked: a
        cluster (replicas per shard), a server without replicas, a user not allowed INFO or WAIT.
        """
        from redis.asyncio.cluster import RedisCluster
        from redis.exceptions import NoPermissionError, ResponseError

        if isinstance(self.redis, RedisCluster):
            return None
        try:
            replicas = int((await self.redis.info("replication")).get("connected_slaves", 0))
        except (NoPermissionError, ResponseError):
            return None
        if replicas == 0:
            return None
        # WAIT counts the replicas that have this connection's last write. The writes before went over pooled
        # connections, maybe others; the replication stream is one ordered stream, so a write made here, on the
        # connection that then waits, is acknowledged only once everything written before it is.
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(ks.replication_probe_key(), now_ms(), px=60_000)
                pipe.wait(replicas, timeout_ms)
                _, acknowledged = await pipe.execute()
        except (NoPermissionError, ResponseError):
            return None  # a user not allowed SET of that key or WAIT: the removal stands, unconfirmed
        return Replication(int(acknowledged), replicas)

    # --- removal --------------------------------------------------------------------------------------------

    async def invalidate_keys(self, keys: Iterable[str]) -> int:
        """Delete every entry of these cache keys; the count of keys that had entries."""
        removed = 0
        for key in keys:
            removed += int(await self.redis.delete(ks.tracks_key(key)) > 0)
            await self.redis.delete(ks.entries_key(key))
            await self.redis.delete(ks.served_key(key))
            await self.redis.delete(ks.digest_key(key))
            await self.redis.zrem(ks.index_all(), key)
        if removed:
            await self.redis.hincrby(ks.stats_key(), "invalidated", removed)
        return removed

    async def invalidate_entries(self, key: str, entry_ids: Iterable[str]) -> int:
        """Delete some entries of a key (and the tracks pointing at them)."""
        ids = list(entry_ids)
        if not ids:
            return 0
        removed = int(await self._prune(keys=[ks.tracks_key(key), ks.entries_key(key)], args=[-1, *ids]))
        await self._forget_if_empty(key)
        if removed:
            await self.redis.hincrby(ks.stats_key(), "invalidated", removed)
        return removed

    async def purge(
        self, *, retention: timedelta, older_than: timedelta | None = None, at_ms: int | None = None
    ) -> int:
        """Remove tracks older than `retention` (or `older_than`, for invalidation by age); never on the hot path.

        Keys whose newest entry is past retention have already expired in Redis; their index entries go too.
        """
        now = at_ms if at_ms is not None else now_ms()
        cutoff = now - int((older_than or retention).total_seconds() * 1000)
        removed = 0
        for raw in await self.redis.zrangebyscore(ks.index_all(), "-inf", "+inf"):
            key = _text(raw)
            removed += int(await self._prune(keys=[ks.tracks_key(key), ks.entries_key(key)], args=[cutoff]))
            await self._forget_if_empty(key)
        if removed:
            await self.redis.hincrby(ks.stats_key(), "purged", removed)
        return removed

    async def _forget_if_empty(self, key: str) -> None:
        if not await self.redis.exists(ks.tracks_key(key)):
            await self.redis.delete(ks.entries_key(key))
            await self.redis.zrem(ks.index_all(), key)


def _tracks_of(tracks: Iterable[tuple[Any, Any]], entries: Mapping[Any, Any]) -> dict[str, CacheEntry]:
    """Track name (staleness seconds) -> entry, from the tracks hash (`t:<s>` -> `<finished ms>:<entry id>`) and
    the entries hash; a track whose entry is gone is left out."""
    bodies = {_text(k): v for k, v in entries.items()}
    result: dict[str, CacheEntry] = {}
    for field, value in tracks:
        entry_id = _text(value).split(":", 1)[1]
        if entry_id in bodies:
            result[_text(field).removeprefix("t:")] = cast(CacheEntry, orjson.loads(bodies[entry_id]))
    return result


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
