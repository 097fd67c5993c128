"""Every Redis key wfboost writes, its type and its lifetime, in one place.

All keys start with `wfb:<version>:`. The keys of one cache key share the Redis Cluster hash tag `{<cache key>}`, so
the admission-time lookup (entry + lease) is one script on one node, one round trip, on a single server and on a
cluster alike. Index keys live in other slots; only the recorder and the CLI touch them, never the admission path.

- `wfb:v1:{K}:t` (hash): staleness tracks, `t:<seconds>` → `<finished ms>:<entry id>`.
  Expires `retention` after the newest entry finished; older tracks are purged in the background.
- `wfb:v1:{K}:e` (hash): entries, `<entry id>` → entry JSON; only entries some track points at. Same lifetime.
- `wfb:v1:{K}:lease` (string): who holds the latch for K (latching). Lives for the lease TTL, renewed by the leader.
- `wfb:v1:hit:<ns>:<workflow uid>:<node id>` (string): the entry a replayed pod came from, read whenever its
  task result is written (Argo's wait container patches it several times). Seven days. The workflow uid keeps a
  re-created workflow of the same name (same node ids) from inheriting an old run's marker; a later miss of the
  same node (`argo retry`) deletes it.
- `wfb:v1:idx:keys` (zset): every cache key, scored by its newest finish time (ms). Members leave on purge or
  invalidation.
- `wfb:v1:stats` (hash): counters `recorded`, `bytes`, `invalidated`, `purged`. Forever.

There is deliberately no index by namespace, image or workflow: such sets go stale when Redis expires a key, while
the entries themselves always say where they came from. `wfboost cache ls/invalidate` filters by reading entries.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

KEY_VERSION: Final = "v1"
PREFIX: Final = f"wfb:{KEY_VERSION}:"

# How long a replayed pod's "where did my outputs come from" marker lives: its task result is written once the pod
# runs, which can be long after admission when the pod waits for a node; a week leaves room for long queues.
HIT_MARKER_TTL: Final = timedelta(days=7)

# Entries are kept this long when the policy sets no admin maximum staleness (memoize.maxStalenessLimit).
DEFAULT_RETENTION: Final = timedelta(days=90)


def tracks_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:t"


def entries_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:e"


def lease_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:lease"


def hit_marker_key(namespace: str, workflow_uid: str, node_id: str) -> str:
    return f"{PREFIX}hit:{namespace}:{workflow_uid}:{node_id}"


def index_all() -> str:
    return f"{PREFIX}idx:keys"


def stats_key() -> str:
    return f"{PREFIX}stats"


def track_name(staleness: timedelta) -> str:
    """Tracks are named by the staleness in whole seconds: P7D → `604800`, P0D → `0`."""
    return str(int(staleness.total_seconds()))
