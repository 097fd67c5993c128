"""What `wfboost cache ls|show|explain|invalidate|stats` does, as library functions (the CLI only prints).

`explain` is the answer to "why did this step not hit?": it runs the webhook's own parsing, controls, eligibility
and key functions on a pod and shows every input of the key, and for two pods the inputs that differ. Filters read
the entries themselves (keyspace.py explains why there is no secondary index), so they cost one scan of the index.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from wfboost.argo.pods import NotAnArgoStep, parse_pod
from wfboost.cache.eligibility import Skip, assess
from wfboost.cache.entries import CacheEntry
from wfboost.cache.errors import CacheError
from wfboost.cache.keys import KeyMaterial, cache_key, key_material
from wfboost.cache.store import CacheStore, Replication, now_ms
from wfboost.policy import CACHE_SEED, Policy, format_duration


class AdminError(CacheError, ValueError):
    """An input the command cannot use; the message is one line for the user."""


# --- selecting entries ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryFilter:
    """Entries to list or invalidate; every field given must match (AND)."""

    namespace: str | None = None
    image: str | None = None  # a glob on the image reference or the digest it ran; a bare repository matches any tag
    workflow: tuple[str, str] | None = None  # (namespace, name)
    finished_before_ms: int | None = None  # for --older-than

    @property
    def empty(self) -> bool:
        return self == EntryFilter()

    def matches(self, entry: CacheEntry) -> bool:
        producer = entry["producer"]
        if self.namespace is not None and producer["namespace"] != self.namespace:
            return False
        if self.workflow is not None and (producer["namespace"], producer["workflow"]) != self.workflow:
            return False
        if self.finished_before_ms is not None and entry["finished_ms"] >= self.finished_before_ms:
            return False
        return self.image is None or image_matches(self.image, entry)


def image_matches(pattern: str, entry: CacheEntry) -> bool:
    image, digest = entry["image"], entry["image_id"]
    if fnmatch.fnmatchcase(image, pattern) or (digest and fnmatch.fnmatchcase(digest, pattern)):
        return True
    return repository(image) == pattern


def repository(image: str) -> str:
    """`host:5000/team/app:1.2@sha256:…` → `host:5000/team/app` (a port is not a tag)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def parse_workflow(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise AdminError(f"--workflow takes NAMESPACE/NAME, not {text!r}")
    return namespace, name


def older_than(age: timedelta, *, at_ms: int | None = None) -> int:
    return (at_ms if at_ms is not None else now_ms()) - int(age.total_seconds() * 1000)


# --- ls, show, stats -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeySummary:
    key: str
    tracks: dict[str, CacheEntry]  # track name (staleness seconds) → entry

    @property
    def newest(self) -> CacheEntry:
        return max(self.tracks.values(), key=lambda e: e["finished_ms"])

    def as_json(self) -> dict[str, Any]:
        newest = self.newest
        producer = newest["producer"]
        return {
            "key": self.key,
            "namespace": producer["namespace"],
            "workflow": producer["workflow"],
            "node": producer["node_name"],
            "finished_at": newest["finished_at"],
            "image": newest["image"],
            "tracks": {name: self.tracks[name]["entry_id"] for name in sorted(self.tracks, key=int)},
        }


async def list_keys(store: CacheStore, selection: EntryFilter = EntryFilter()) -> list[KeySummary]:
    """Keys with at least one matching entry, newest first."""
    found = await store.select(selection.matches)
    summaries = [KeySummary(key, tracks) for key, tracks in found.items() if tracks]
    return sorted(summaries, key=lambda s: s.newest["finished_ms"], reverse=True)


async def show_key(store: CacheStore, key: str) -> KeySummary:
    tracks = await store.tracks(key)
    if not tracks:
        raise AdminError(f"no entries for key {key}")
    return KeySummary(key, tracks)


async def cache_stats(store: CacheStore) -> dict[str, int]:
    stats = await store.stats()
    for counter in ("keys", "recorded", "bytes", "invalidated", "purged"):
        stats.setdefault(counter, 0)
    return stats


# --- invalidate ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryToRemove:
    key: str
    entry: CacheEntry
    tracks: tuple[str, ...]  # the tracks that point at it


@dataclass
class Invalidation:
    dry_run: bool
    entries: list[EntryToRemove] = field(default_factory=list)
    removed: int = 0  # entries (or, by --key, keys) actually removed
    replication: Replication | None = None  # of the removal, where the server has replicas

    def as_json(self) -> dict[str, Any]:
        replication = self.replication
        return {
            "dry_run": self.dry_run,
            "removed": self.removed,
            "replicas": None if replication is None else {"acknowledged": replication.acknowledged,
                                                          "connected": replication.connected},
            "entries": [
                {"key": d.key, "entry_id": d.entry["entry_id"], "tracks": list(d.tracks),
                 "namespace": d.entry["producer"]["namespace"], "workflow": d.entry["producer"]["workflow"],
                 "node": d.entry["producer"]["node_name"], "finished_at": d.entry["finished_at"]}
                for d in self.entries
            ],
        }


# How long an invalidation waits for the replicas to confirm it (Sentinel, or a master with replicas).
REPLICATION_WAIT_MS = 3000  # below the CLI's 5 s socket timeout, which bounds the WAIT reply


async def invalidate(
    store: CacheStore, *, keys: list[str] | None = None, selection: EntryFilter = EntryFilter(), dry_run: bool = False
) -> Invalidation:
    """Remove whole keys (`keys`) or the entries matching `selection`; with `dry_run`, only say what would go."""
    if not keys and selection.empty:
        raise AdminError("say what to invalidate: --key, --image, --workflow, --namespace or --older-than (or --all)")
    report = Invalidation(dry_run=dry_run)
    targets: dict[str, dict[str, CacheEntry]] = {}
    for key in keys or []:
        targets[key] = await store.tracks(key)
    if not selection.empty:
        for key, tracks in (await store.select(selection.matches)).items():
            targets.setdefault(key, tracks)
    doomed_ids: dict[str, set[str]] = defaultdict(set)
    for key, tracks in targets.items():
        whole = key in (keys or [])
        by_id: dict[str, list[str]] = defaultdict(list)
        for track, entry in tracks.items():
            if whole or selection.matches(entry):
                by_id[entry["entry_id"]].append(track)
        for entry_id, names in by_id.items():
            entry = next(e for e in tracks.values() if e["entry_id"] == entry_id)
            report.entries.append(EntryToRemove(key, entry, tuple(sorted(names, key=int))))
            doomed_ids[key].add(entry_id)
    report.entries.sort(key=lambda d: d.entry["finished_ms"], reverse=True)
    if dry_run:
        return report
    whole_keys = [k for k in keys or [] if k in targets]
    if whole_keys:
        await store.invalidate_keys(whole_keys)
    for key, ids in doomed_ids.items():
        if key not in whole_keys:
            await store.invalidate_entries(key, ids)
    report.removed = sum(len(ids) for ids in doomed_ids.values())
    report.replication = await store.replicated(REPLICATION_WAIT_MS)
    return report


async def invalidate_all(store: CacheStore, *, dry_run: bool = False) -> Invalidation:
    report = Invalidation(dry_run=dry_run)
    keys = await store.keys()
    for key in keys:
        for track, entry in (await store.tracks(key)).items():
            report.entries.append(EntryToRemove(key, entry, (track,)))
    if not dry_run:
        report.removed = len(report.entries)
        await store.invalidate_keys(keys)
        report.replication = await store.replicated(REPLICATION_WAIT_MS)
    return report


# --- explain -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    source: str
    pod: str  # namespace/name
    namespace: str
    node_name: str
    layout: str
    template_kind: str
    key: str
    material: KeyMaterial
    memoized: bool
    reason: str | None  # why not memoized
    detail: str  # a sentence for the user
    staleness: timedelta | None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "pod": self.pod,
            "node": self.node_name,
            "layout": self.layout,
            "template": self.template_kind,
            "key": self.key,
            "memoized": self.memoized,
            "reason": self.reason,
            "detail": self.detail,
            "staleness": format_duration(self.staleness) if self.staleness is not None else None,
            "material": self.material,
        }


def pod_from_document(doc: Mapping[str, Any], source: str) -> tuple[dict[str, Any], str | None]:
    """The pod, and the namespace the API server would admit it in (a review's `request.namespace`)."""
    if doc.get("kind") == "AdmissionReview":
        request = doc.get("request") or {}
        obj = request.get("object")
        if not isinstance(obj, dict):
            raise AdminError(f"{source}: the AdmissionReview carries no request.object")
        return obj, request.get("namespace")
    if doc.get("kind") not in (None, "Pod"):
        raise AdminError(f"{source}: a {doc.get('kind')} is not a pod")
    if not isinstance(doc.get("metadata") or {}, Mapping):
        raise AdminError(f"{source}: metadata is a {type(doc.get('metadata')).__name__}, not an object")
    return dict(doc), None


def explain_pod(
    pod: Mapping[str, Any],
    policy: Policy,
    *,
    namespace: str | None = None,
    configmap_data: Mapping[str, str] | None = None,
    source: str = "pod",
) -> Explanation:
    """The key of a pod and everything that went into it, and whether the webhook would memoize the step."""
    meta = pod.get("metadata") or {}
    ns = namespace or meta.get("namespace") or ""
    try:
        step = parse_pod(pod, ns)
    except NotAnArgoStep as exc:
        raise AdminError(f"{source}: not an Argo step pod: {exc}") from None
    if step.offloads:
        if configmap_data is None:
            raise AdminError(
                f"{source}: {', '.join(step.offloads)} is offloaded to ConfigMap {step.pod_name}; pass it with "
                f"--configmap FILE (kubectl get configmap -n {ns or 'NAMESPACE'} {step.pod_name} -o yaml)"
            )
        try:
            step = step.with_offloaded(configmap_data)
        except NotAnArgoStep as exc:
            raise AdminError(f"{source}: {exc}") from None
    settings = policy.memoize_settings_for(ns)
    assessment = assess(step, settings)
    if isinstance(assessment, Skip):
        # The key is still shown: "why did it miss" often means "what would its key be".
        seed = {**step.labels, **step.annotations}.get(CACHE_SEED)
        material = key_material(step, share_across_namespaces=settings.share_across_namespaces, seed=seed)
        key, staleness = cache_key(material), None
    else:
        material, key, staleness = assessment.material, assessment.key, assessment.staleness
    reason: str | None
    if not settings.enabled:
        reason, detail = "memoize_off", f"memoization is off in namespace {ns!r} under this policy"
    elif isinstance(assessment, Skip):
        reason, detail = assessment.reason, assessment.detail
    else:
        reason = None
        detail = (
            f"memoized: reuses a result up to {format_duration(assessment.staleness)} old"
            if assessment.staleness > timedelta(0) else "recorded, but never reused (staleness P0D)"
        )
    return Explanation(
        source=source,
        pod=f"{ns}/{step.pod_name}",
        namespace=ns,
        node_name=step.node_name,
        layout=step.layout,
        template_kind=step.template_kind,
        key=key,
        material=material,
        memoized=reason is None,
        reason=reason,
        detail=detail,
        staleness=staleness if reason is None else None,
    )


@dataclass(frozen=True)
class Difference:
    path: str
    left: Any
    right: Any
    missing: str = ""  # "left" or "right" when the path exists on one side only


def diff_materials(left: Any, right: Any, path: str = "") -> list[Difference]:
    """Every leaf where two key materials differ, with a path such as `containers[0].args[1]`."""
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        found: list[Difference] = []
        for name in sorted(set(left) | set(right)):
            sub = f"{path}.{name}" if path else str(name)
            if name not in left:
                found.append(Difference(sub, None, right[name], missing="left"))
            elif name not in right:
                found.append(Difference(sub, left[name], None, missing="right"))
            else:
                found += diff_materials(left[name], right[name], sub)
        return found
    if isinstance(left, list) and isinstance(right, list):
        found = []
        for index in range(max(len(left), len(right))):
            sub = f"{path}[{index}]"
            if index >= len(left):
                found.append(Difference(sub, None, right[index], missing="left"))
            elif index >= len(right):
                found.append(Difference(sub, left[index], None, missing="right"))
            else:
                found += diff_materials(left[index], right[index], sub)
        return found
    return [] if left == right else [Difference(path or "(material)", left, right)]


def configmap_data_for(pod_name: str, configmaps: Sequence[Mapping[str, Any]]) -> Mapping[str, str] | None:
    """The offload ConfigMap of a pod among those given: by name, or the only one given."""
    for configmap in configmaps:
        if (configmap.get("metadata") or {}).get("name") == pod_name:
            return cast(Mapping[str, str], configmap.get("data") or {})
    if len(configmaps) == 1:
        return cast(Mapping[str, str], configmaps[0].get("data") or {})
    return None
