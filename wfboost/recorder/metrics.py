"""Prometheus metrics of the recorder, in a registry of its own (tests run several recorders in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

SKIP_REASONS = (
    "cache_hit", "cache_off", "bad_control", "failed", "missing_output", "no_finish_time", "expired",
    "offload_missing", "not_argo_layout", "deadline", "workflow_gone", "workflow_stopped", "node_not_succeeded",
    "node_status_offloaded", "node_status_unreadable", "artifact_location_unresolved", "artifact_gc",
)


@dataclass
class RecorderMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.recorded = Counter(
            "wfboost_recorder_entries_recorded",
            "Successful runs written to the cache, by result: new (the track moved to it) or unchanged (already there,"
            " or an older run than the track's)",
            ["result"],
            registry=r,
        )
        self.recorded_bytes = Counter(
            "wfboost_recorder_recorded_bytes", "Bytes of entry JSON written that moved a track", registry=r
        )
        self.skipped = Counter(
            "wfboost_recorder_steps_skipped",
            "Steps seen in a memoized namespace that were not recorded, by reason (the webhook's skip reasons, plus"
            " failed, missing_output, expired, cache_hit…)",
            ["reason"],
            registry=r,
        )
        for reason in SKIP_REASONS:
            self.skipped.labels(reason=reason)
        self.watch_restarts = Counter(
            "wfboost_recorder_watch_restarts",
            "Watches started again, by resource and reason (expired: 410, relist; error: backoff; resync)",
            ["resource", "reason"],
            registry=r,
        )
        self.pending = Gauge("wfboost_recorder_pending_steps", "Steps waiting for their other half", registry=r)
        self.errors = Counter(
            "wfboost_recorder_errors",
            "Failures that the recorder retries or gives up on, by kind (store, configmap, workflow, restore, handler,"
            " purge)",
            ["kind"],
            registry=r,
        )
        self.restored = Counter(
            "wfboost_recorder_replays_restored",
            "Replayed steps whose outputs the recorder put back because the webhook had not, by object"
            " (workflowtaskresult; pod: Argo 3.5's outputs annotation)",
            ["object"],
            registry=r,
        )
        self.purged = Counter("wfboost_recorder_purged", "Stale tracks removed by the background purge", registry=r)
        self.leases_released = Counter(
            "wfboost_recorder_leases_released",
            "Latching leases the recorder released, by cause (recorded; or why the leader was not: failed, "
            "pod_deleted, pod_disrupted…)",
            ["cause"],
            registry=r,
        )
        self.leases_in_flight = Gauge(
            "wfboost_recorder_latch_leases", "Latching leases held now (steps running with followers possible)",
            registry=r,
        )
        self.followers_waiting = Gauge(
            "wfboost_recorder_latch_followers_waiting",
            "Distinct nodes deferred behind a lease held now (refreshed every heartbeat)",
            registry=r,
        )
        self.leases_extended = Counter(
            "wfboost_recorder_leases_extended", "Lease renewals for leaders whose pods still run", registry=r
        )
        self.key_mismatches = Counter(
            "wfboost_recorder_key_mismatches",
            "Pods whose key, recomputed from the stored pod, differs from the key the webhook annotated at admission:"
            " something changed the pod after wfboost (another mutating webhook), and its entries will never be hit",
            registry=r,
        )
