"""Hits, misses and compute time saved, per namespace and per day, for `wfboost cache stats`.

A cache that silently does nothing is the failure users fear most, so the hit rate has to be one command away, not
a Prometheus query across webhook replicas. Counting in Redis at every admission would add a round trip to the hot
path (and, on a Redis Cluster, a key in another slot than the lookup's): each webhook process counts in memory and
adds its counts to Redis every `interval` seconds, one pipeline for all of them. A process that dies loses at most
its last interval's counts (the counters are a report, nothing decides on them).

Keys (wfboost.cache.keyspace): `wfb:v1:tally:<namespace>` (hash `hits`, `misses`, `skipped` — steps that are not
memoizable — and `saved_ms`, since the first count) and `wfb:v1:tally:<namespace>:<YYYY-MM-DD>` (the same, per UTC
day, kept `DAY_TTL_SECONDS`); the set `wfb:v1:tally-namespaces` names the namespaces counted.

Time saved by a hit is the producer's run time, main's `finishedAt - startedAt` as the recorder stored it
(`ran_ms`); an entry recorded before that field existed counts 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from wfboost.cache import keyspace as ks

log = logging.getLogger(__name__)

COUNTERS: Final = ("hits", "misses", "skipped", "saved_ms")
_COUNTER_OF: Final = {"hit": "hits", "miss": "misses", "skipped": "skipped"}
DAY_TTL_SECONDS: Final = 90 * 86400


def day_of(seconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


@dataclass
class CacheTally:
    clock: Callable[[], float] = time.time
    _counts: dict[tuple[str, str], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(COUNTERS, 0)))

    def note(self, namespace: str, verdict: str, saved_ms: int = 0) -> None:
        """One real admission's answer: `hit`, `miss` or `skipped` (not memoizable); dry runs and latch deferrals
        are not counted (a deferred follower is counted when it is answered)."""
        counter = _COUNTER_OF.get(verdict)
        if counter is None:
            return
        counts = self._counts[(namespace, day_of(self.clock()))]
        counts[counter] += 1
        if verdict == "hit":
            counts["saved_ms"] += max(0, saved_ms)

    async def flush(self, redis: Any) -> int:
        """Add the counts to Redis; kept for the next flush when Redis fails. The number of namespaces written."""
        pending, self._counts = self._counts, defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
        if not pending:
            return 0
        try:
            pipe = redis.pipeline(transaction=False)
            for (namespace, day), counts in pending.items():
                for key in (ks.tally_key(namespace), ks.tally_key(namespace, day)):
                    for name, value in counts.items():
                        if value:
                            pipe.hincrby(key, name, value)
                pipe.expire(ks.tally_key(namespace, day), DAY_TTL_SECONDS)
                pipe.sadd(ks.tally_namespaces_key(), namespace)
            await pipe.execute()
        except Exception as exc:  # counters never stop the webhook: RedisError, OSError, timeouts…
            for ident, counts in pending.items():  # nothing lost: counted again with the next interval's
                for name, value in counts.items():
                    self._counts[ident][name] += value
            log.warning("cache hit counters not written to Redis (kept for the next try): %s", exc)
            return 0
        return len({namespace for namespace, _ in pending})

    async def run(self, redis: Any, interval: float = 10.0) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self.flush(redis)
        finally:
            await asyncio.shield(self.flush(redis))  # on shutdown: the last interval's counts too


async def read_tallies(redis: Any, days: int = 0, now: float | None = None) -> dict[str, dict[str, Any]]:
    """Per namespace: `hits`, `misses`, `skipped`, `saved_ms`, `hit_rate` (hits over hits and misses; None without
    either) and, with `days`, `days`: the
    same per UTC day for the last `days` days (newest first)."""
    now = time.time() if now is None else now
    namespaces = sorted(_text(n) for n in await redis.smembers(ks.tally_namespaces_key()))
    found: dict[str, dict[str, Any]] = {}
    for namespace in namespaces:
        total = _counts(await redis.hgetall(ks.tally_key(namespace)))
        per_day = []
        for back in range(days):
            day = day_of(now - back * 86400)
            per_day.append({"day": day, **_counts(await redis.hgetall(ks.tally_key(namespace, day)))})
        found[namespace] = {**total, **({"days": per_day} if days else {})}
    return found


def _counts(raw: dict[Any, Any]) -> dict[str, Any]:
    counts = {name: int(raw.get(name.encode(), raw.get(name, 0)) or 0) for name in COUNTERS}
    answers = counts["hits"] + counts["misses"]
    return {**counts, "hit_rate": round(counts["hits"] / answers, 4) if answers else None}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
