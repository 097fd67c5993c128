"""Prometheus metrics of the admission server.

One registry per server instance (not the global default), so several servers in one test process never share
counters and `/metrics` shows exactly this server's numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from wfboost.webhook.failopen import FailOpen

# Admission latencies sit well under the 10 s webhook timeout; buckets resolve the fast path finely.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "wfboost_admission_requests",
            "Admission requests by route and outcome (patched, unchanged, out_of_scope, fail_open, bad_request…)",
            ["route", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "wfboost_admission_seconds",
            "Time from request received to answer written, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fail_open = Counter(
            "wfboost_fail_open",
            "Admissions let through unchanged because something failed, by reason",
            ["reason"],
            registry=r,
        )
        for reason in FailOpen:  # export zeros so dashboards and alerts see every reason from the start
            self.fail_open.labels(reason=reason.value)
        self.policy_valid = Gauge(
            "wfboost_policy_valid", "1 when the last policy file read was valid, 0 when it was rejected", registry=r
        )
        self.tls_not_after = Gauge(
            "wfboost_tls_certificate_not_after_seconds",
            "Expiry of the serving certificate (Unix time)",
            registry=r,
        )
        self.redis_up = Gauge(
            "wfboost_redis_up",
            "1 when Redis answered this process's last PING (every reload interval, whatever the traffic), 0 when it "
            "did not; NaN without Redis",
            registry=r,
        )
        self.redis_up.set(float("nan"))
        # Counted by the watcher and the reloader themselves; exported as counters when scraped.
        self.reload_counts = ReloadCounters()
        r.register(self.reload_counts)
        self.memo = MemoMetrics(r)
        self.shrink = ShrinkMetrics(r)
        self.latch = LatchMetrics(r)
        self.split = SplitMetrics(r)


@dataclass(eq=False)  # a registry keeps collectors in a dict: by identity
class ReloadCounters(Collector):
    """Counters that the policy watcher and the certificate reloader keep (plain ints there), as Prometheus counters.
    Unset sources read as zero, so the series exist from the start."""

    policy_errors: Callable[[], int] = lambda: 0
    tls_reloads: Callable[[], int] = lambda: 0
    tls_errors: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        for name, doc, value in (
            ("wfboost_policy_reload_errors", "Policy files rejected since start (the last good one stays)",
             self.policy_errors()),
            ("wfboost_tls_reloads", "Serving certificate reloads since start", self.tls_reloads()),
            ("wfboost_tls_reload_errors", "Certificate files that could not be loaded (old ones kept)",
             self.tls_errors()),
        ):
            yield CounterMetricFamily(name, doc, value=float(value))


@dataclass
class MemoMetrics:
    """Memoization decisions at admission. Registered on the server's registry by `Metrics`."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.decisions = Counter(
            "wfboost_memo_decisions",
            "Pods seen by memoization, by decision (hit, miss, skipped) and reason (why it missed or was skipped)",
            ["decision", "reason"],
            registry=r,
        )
        self.lookup_latency = Histogram(
            "wfboost_memo_lookup_seconds",
            "Time of the admission-time Redis lookup (one round trip)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.replayed_bytes = Counter(
            "wfboost_memo_replayed_bytes", "Bytes of cached outputs put into replayed pods", registry=r
        )
        self.saved_seconds = Counter(
            "wfboost_memo_saved_seconds",
            "Compute time saved by hits: each replayed run's own run time (its main container's finishedAt minus "
            "startedAt, as the recorder stored it)",
            registry=r,
        )


@dataclass
class ShrinkMetrics:
    """What shrinking saved. Outcomes (compressed, small, offloaded…) are in `wfboost_admission_requests`."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.bytes_saved = Counter(
            "wfboost_shrink_saved_bytes",
            "Bytes by which admitted objects were made smaller, by what was shrunk (status: node statuses stored "
            "compressed; values: Workflow values moved to the side store; outputs: task-result values moved)",
            ["what"],
            registry=self.registry,
        )
        self.bytes_saved.labels(what="status")
        self.bytes_saved.labels(what="values")
        self.bytes_saved.labels(what="outputs")
        self.unrestored_pods = Counter(
            "wfboost_shrink_unrestored_pods",
            "Pods seen holding wfboost references without the restore mark (a gap to report: they run with them)",
            registry=self.registry,
        )
        self.values_moved = Counter(
            "wfboost_shrink_values_moved",
            "Values moved to the side store, each replaced by a reference (Workflows' at CREATE, task outputs)",
            registry=self.registry,
        )


@dataclass
class SplitMetrics:
    """DAGs over Argo 4's task limit, split or left as they were (the reason is in the admission's warning)."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.dags = Counter(
            "wfboost_split_dags",
            "DAG templates over the task limit seen at admission, by result (split into groups, or refused: left "
            "unchanged because the split could not keep their meaning)",
            ["result"],
            registry=self.registry,
        )
        self.dags.labels(result="split")
        self.dags.labels(result="refused")


@dataclass
class LatchMetrics:
    """Latching at admission: who led, who was deferred, how long followers waited."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        r = self.registry
        self.leaders = Counter("wfboost_latch_leaders", "Pods that took a key's lease and run the step", registry=r)
        self.deferrals = Counter(
            "wfboost_latch_deferrals", "Pod creations refused with 429 while an identical step runs", registry=r
        )
        self.takeovers = Counter(
            "wfboost_latch_takeovers", "Followers that became the leader after the lease they waited on was released",
            registry=r,
        )
        self.waited_out = Counter(
            "wfboost_latch_waited_out", "Followers that waited latch.followerWait and then ran for real", registry=r
        )
        self.wait_seconds = Histogram(
            "wfboost_latch_wait_seconds",
            "From a node's first deferral to its admission as a hit (then=hit) or as the next leader (then=leader)",
            ["then"],
            buckets=(1, 2.5, 5, 10, 15, 20, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
