"""Every Redis key wfboost writes, its type and its lifetime, in one place.

All keys start with `wfb:<version>:`. The keys of one cache key share the Redis Cluster hash tag `{<cache key>}`, so
the admission-time lookup (entry + lease) is one script on one node, one round trip, on a single server and on a
cluster alike. Index keys live in other slots; only the recorder and the CLI touch them, never the admission path.

- `wfb:v1:{K}:t` (hash): staleness tracks, `t:<seconds>` → `<finished ms>:<entry id>`.
  Expires `retention` after the newest entry finished; older tracks are purged in the background.
- `wfb:v1:{K}:e` (hash): entries, `<entry id>` → entry JSON; only entries some track points at. Same lifetime.
- `wfb:v1:{K}:lease` (string): who holds the latch for K (latching). Lives for the lease TTL, renewed by the recorder
  while the leader's pod lives, released when it is recorded or fails.
- `wfb:v1:{K}:waits` (hash): node identity → when that node was first deferred as a follower of K (ms). Lives for
  `latch.followerWait` plus the lease TTL after the last deferral.
- `wfb:v1:{K}:digest` (string): the image digest the entries of K ran (main's `imageID`). A real run that reports
  another digest (a tag pushed again) drops the entries before it is recorded. Same lifetime as the tracks.
- `wfb:v1:{K}:served` (set): the nodes (`node_identity`: namespace, workflow uid, node name without a retry
  attempt's `(N)`) that were served a hit from K. A later pod of such a node (a retry attempt, `argo retry`) ran
  after a replay that failed: it runs for real. Written by the lookup itself on a hit (no second round trip);
  seven days after the last hit.
- `wfb:v1:idx:keys` (zset): every cache key, scored by its newest finish time (ms). Members leave on purge or
  invalidation.
- `wfb:v1:stats` (hash): counters `recorded`, `bytes`, `invalidated`, `purged`. Forever.
- `wfb:v1:tally:<namespace>` (hash): `hits`, `misses`, `saved_ms` of real admissions, added by each webhook process
  every few seconds (wfboost.cache.tally). Forever. `wfb:v1:tally:<namespace>:<YYYY-MM-DD>`: the same per UTC day,
  90 days. `wfb:v1:tally-namespaces` (set): the namespaces counted. Never on the admission path.
- `wfb:v1:replication-probe` (string): written by `wfboost cache invalidate` just before it waits for the replicas
  (where there are any). A minute.

There is deliberately no index by namespace, image or workflow: such sets go stale when Redis expires a key, while
the entries themselves always say where they came from. `wfboost cache ls/invalidate` filters by reading entries.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

KEY_VERSION: Final = "v1"
# A retry attempt's suffix on a node name (operator.go: `<name>(<attempt>)`); `withItems` children are `(i:item)`.
_RETRY_ATTEMPT = re.compile(r"\(\d+\)$")
PREFIX: Final = f"wfb:{KEY_VERSION}:"

# How long a key remembers the nodes it served: a retry of a replayed node comes within the workflow's lifetime,
# which can be long when pods wait for nodes; a week leaves room for long queues.
SERVED_TTL: Final = timedelta(days=7)

# Entries are kept this long when the policy sets no admin maximum staleness (memoize.maxStalenessLimit).
DEFAULT_RETENTION: Final = timedelta(days=90)


def tracks_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:t"


def entries_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:e"


def lease_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:lease"


def waits_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:waits"


def digest_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:digest"


def served_key(cache_key: str) -> str:
    return f"{PREFIX}{{{cache_key}}}:served"


def node_identity(namespace: str, workflow_uid: str, node_name: str) -> str:
    """A step's node across its retries: a retry attempt `x(2)` is the node `x` again, and `argo retry` re-creates a
    node under its own name (docs/memoization.md)."""
    return f"{namespace}/{workflow_uid}/{_RETRY_ATTEMPT.sub('', node_name)}"


def index_all() -> str:
    return f"{PREFIX}idx:keys"


def stats_key() -> str:
    return f"{PREFIX}stats"


def replication_probe_key() -> str:
    """Written just before WAIT, on the same connection, by `CacheStore.replicated`; expires after a minute."""
    return f"{PREFIX}replication-probe"


def tally_key(namespace: str, day: str | None = None) -> str:
    return f"{PREFIX}tally:{namespace}" + (f":{day}" if day else "")


def tally_namespaces_key() -> str:
    return f"{PREFIX}tally-namespaces"  # not `tally:…`: a namespace may be called "namespaces"


def track_name(staleness: timedelta) -> str:
    """Tracks are named by the staleness in whole seconds: P7D → `604800`, P0D → `0`."""
    return str(int(staleness.total_seconds()))
