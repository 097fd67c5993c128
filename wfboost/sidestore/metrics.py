"""Side store metrics, in a registry of their own so several servers in one process never share counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class SideStoreMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "wfboost_sidestore_requests_total", "Requests by route and outcome", ["route", "outcome"], registry=r
        )
        self.latency = Histogram(
            "wfboost_sidestore_request_seconds",
            "Request duration by route (until the last byte of a streamed body)",
            ["route"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
            registry=r,
        )
        self.bytes_in = Counter("wfboost_sidestore_received_bytes_total", "Plain bytes received", registry=r)
        self.bytes_out = Counter("wfboost_sidestore_sent_bytes_total", "Plain bytes sent", registry=r)
        self.stored = Gauge(
            "wfboost_sidestore_stored_bytes", "Compressed bytes held, per backend", ["backend"], registry=r
        )
        self.gc_deletions = Counter(
            "wfboost_sidestore_gc_deletions_total", "Blobs deleted by the sweeper", ["reason"], registry=r
        )
        self.gc_deleted_bytes = Counter(
            "wfboost_sidestore_gc_deleted_bytes_total", "Plain bytes of blobs deleted by the sweeper", registry=r
        )
        self.gc_runs = Counter("wfboost_sidestore_gc_runs_total", "Sweeps by outcome", ["outcome"], registry=r)
        # The webhook's name for the same thing: one alert (certificate expiry) covers both servers.
        self.tls_not_after = Gauge(
            "wfboost_tls_certificate_not_after_seconds", "Expiry of the serving certificate (Unix time)", registry=r
        )
        self.workflows_synced = Gauge(
            "wfboost_sidestore_workflows_synced", "1 while the live-workflow view is in sync", registry=r
        )

    def gc_deleted(self, reason: str, size: int) -> None:
        # Reasons name references; keep the label's cardinality bounded to its kind.
        kind = "orphan" if reason.startswith("never") else "unreferenced"
        self.gc_deletions.labels(kind).inc()
        self.gc_deleted_bytes.inc(size)
