"""Hit and miss counts (wfboost.cache.tally) against a real Valkey: per namespace and UTC day, added by every webhook
process, nothing lost when Redis is down for a while, nothing written on the admission path."""

from __future__ import annotations

from typing import Any

from wfboost.cache import redis_client
from wfboost.cache.tally import CacheTally, read_tallies
from wfboost_dev.demo.processes import RedisProcess, free_port

DAY = 86400.0
MONDAY = 1_796_000_000.0  # 2026-11-30, a fixed clock


async def test_two_processes_add_up_per_namespace_and_day_and_a_failed_flush_loses_nothing(
    valkey: RedisProcess,
) -> None:
    client = redis_client.connect(valkey.url)
    namespace = f"tally-{free_port()}"  # the server is shared: a namespace of this test's own
    now = [MONDAY]
    one, two = CacheTally(clock=lambda: now[0]), CacheTally(clock=lambda: now[0])
    try:
        one.note(namespace, "hit", 60_000)
        one.note(namespace, "miss")
        one.note(namespace, "skipped")
        one.note(namespace, "deferred")  # a latch follower: counted when it is answered, not now
        two.note(namespace, "hit", 30_000)
        now[0] += DAY
        two.note(namespace, "miss")
        down = redis_client.connect(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1.0)
        try:
            assert await two.flush(down) == 0  # Redis unreachable: the counts stay for the next flush
        finally:
            await down.aclose()
        assert await one.flush(client) == 1 and await two.flush(client) == 1
        assert await two.flush(client) == 0  # nothing new

        found: dict[str, Any] = (await read_tallies(client, days=3, now=now[0]))[namespace]
        assert {k: found[k] for k in ("hits", "misses", "skipped", "saved_ms", "hit_rate")} == {
            "hits": 2, "misses": 2, "skipped": 1, "saved_ms": 90_000, "hit_rate": 0.5}
        days = {d["day"]: (d["hits"], d["misses"], d["saved_ms"]) for d in found["days"]}
        assert days == {"2026-12-01": (0, 1, 0), "2026-11-30": (2, 1, 90_000), "2026-11-29": (0, 0, 0)}
        assert [d["day"] for d in found["days"]] == ["2026-12-01", "2026-11-30", "2026-11-29"]  # newest first
        assert found["days"][2]["hit_rate"] is None  # no answers that day
        ttl = await client.ttl(f"wfb:v1:tally:{namespace}:2026-11-30")
        assert 0 < ttl <= 90 * 86400
    finally:
        await client.aclose()
