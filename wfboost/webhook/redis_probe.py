"""Whether Redis answers, asked every few seconds whatever the traffic.

Admissions notice Redis down only when pods arrive (their lookups fail open): a quiet cluster would raise no alert
until the next workflow's steps all run for real. A PING per interval per process costs nothing and gives
`wfboost_redis_up` (1 answered, 0 did not) for the `WfboostRedisUnavailable` alert.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Gauge

log = logging.getLogger(__name__)
PING_TIMEOUT = 2.0  # seconds; the admission path's own timeouts are shorter, this only has to notice an outage


async def probe_redis(redis: Any, interval: float, up: Gauge) -> None:
    """Set `up` from a PING every `interval` seconds, logging each change (not each failure)."""
    last: float | None = None
    while True:
        try:
            await asyncio.wait_for(redis.ping(), PING_TIMEOUT)
            now = 1.0
        except Exception as exc:  # any failure is "down": redis-py's Cluster errors are no RedisError, and this
            now = 0.0             # task must never stop the server it reports on
            if last != now:
                log.warning("Redis does not answer: %s", exc or type(exc).__name__)
        if last == 0.0 and now == 1.0:
            log.info("Redis answers again")
        up.set(now)
        last = now
        await asyncio.sleep(interval)
