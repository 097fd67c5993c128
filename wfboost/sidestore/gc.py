"""The sweeper: deletes blobs no live reference holds once their grace has passed, expired uploads, and objects
a crashed writer left behind.

Whether a blob is kept is a pure function (`retention_of`), so the rules can be read in one place and tested as a
property. Deleting re-reads the blob's record and references under a Redis WATCH and re-decides: a reference
added (or the blob touched by a new PUT) between the decision and the delete cancels the delete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import WatchError

from wfboost.blobs.wire import GcDecision, GcReportBody
from wfboost.sidestore import keyspace
from wfboost.sidestore.manifest import Manifest
from wfboost.sidestore.refs import RefRecord
from wfboost.sidestore.store import BlobStore
from wfboost.sidestore.uploads import Uploads

log = logging.getLogger(__name__)


class WorkflowView(Protocol):
    @property
    def synced(self) -> bool: ...

    def is_live(self, uid: str) -> bool: ...

    def holder_of(self, namespace: str, digest: str) -> str | None: ...

    def released_at(self, namespace: str, digest: str) -> float | None: ...


@dataclass(frozen=True)
class Retention:
    keep: bool
    reason: str


def retention_of(
    touched: float,
    refs: Sequence[RefRecord],
    live: WorkflowView,
    now: float,
    grace: float,
    *,
    namespace: str = "",
    digest: str = "",
) -> Retention:
    """Keep a blob while a live Workflow holds its reference (wfboost.shrink.refs) in its text, any recorded
    reference holds it, or it is younger than the grace; otherwise it is an orphan.

    A Workflow's own text is what holds the values moved out of it: a Workflow created with `generateName` has no
    name or uid when its values are stored, and one created again from it (`argo resubmit`, a CronWorkflow's next
    run) holds the same references without any admission-time bookkeeping.
    """
    holder = live.holder_of(namespace, digest) if digest else None
    if holder is not None:
        return Retention(True, f"live Workflow {holder} holds its reference")
    released = live.released_at(namespace, digest) if digest else None
    if released is not None and now - released < grace:
        return Retention(True, "the last Workflow holding its reference went within the grace period")
    for ref in refs:
        if ref.kind == "workflow":
            if live.is_live(ref.target):
                return Retention(True, f"workflow {ref.target} exists")
            if now - ref.added < grace:
                return Retention(True, f"workflow {ref.target} referenced within the grace period")
        elif ref.kind == "entry" and (ref.expires is None or ref.expires > now):
            return Retention(True, f"cache entry {ref.target} has not expired")
    if now - touched < grace:
        return Retention(True, "written or touched within the grace period")
    if refs:
        return Retention(False, "every reference is gone: " + ", ".join(r.ref for r in refs))
    return Retention(False, "never referenced")


class Sweeper:
    def __init__(
        self,
        store: BlobStore,
        live: WorkflowView,
        *,
        on_delete: Callable[[str, int], None] = lambda reason, size: None,
    ) -> None:
        self.store = store
        self.uploads = Uploads(store)
        self.live = live
        self.on_delete = on_delete

    async def sweep(self, *, dry_run: bool = False) -> GcReportBody:
        report: GcReportBody = {
            "dry_run": dry_run,
            "skipped": None,
            "examined": 0,
            "deleted": [],
            "kept": 0,
            "uploads_expired": 0,
            "pending_reclaimed": 0,
        }
        if not self.live.synced:
            report["skipped"] = "the view of live workflows is not in sync with the Kubernetes API yet"
            return report
        for namespace in await self.store.namespaces():
            after: str | None = None
            while True:
                index = keyspace.index(namespace)
                low = f"({after}" if after else "-"
                page = await self.store.redis.zrangebylex(index, low, "+", start=0, num=500)
                for raw in page:
                    digest = raw.decode()
                    report["examined"] += 1
                    decision = await self._sweep_blob(namespace, digest, dry_run)
                    if decision is None:
                        report["kept"] += 1
                    else:
                        report["deleted"].append(decision)
                if len(page) < 500:
                    break
                after = page[-1].decode()
        report["uploads_expired"] = await self._expire_uploads(dry_run)
        report["pending_reclaimed"] = await self._reclaim_pending(dry_run)
        return report

    async def _sweep_blob(self, namespace: str, digest: str, dry_run: bool) -> GcDecision | None:
        redis, now, grace = self.store.redis, self.store.clock(), self.store.settings.grace_seconds
        blob_key, refs_key = keyspace.blob(namespace, digest), keyspace.refs(namespace, digest)
        async with redis.pipeline(transaction=True) as pipe:
            await pipe.watch(blob_key, refs_key)
            record: dict[bytes, bytes] = await pipe.hgetall(blob_key)
            if not record:
                await pipe.unwatch()
                return None
            refs = [RefRecord.decode(k.decode(), v) for k, v in (await pipe.hgetall(refs_key)).items()]
            decided = retention_of(
                float(record[b"touched"]), refs, self.live, now, grace, namespace=namespace, digest=digest
            )
            size = int(record[b"size"])
            if decided.keep:
                await pipe.unwatch()
                return None
            decision: GcDecision = {"namespace": namespace, "digest": digest, "size": size, "reason": decided.reason}
            if dry_run:
                await pipe.unwatch()
                return decision
            manifest = Manifest.from_json(record[b"manifest"])
            pipe.multi()
            pipe.delete(blob_key, refs_key)
            pipe.zrem(keyspace.index(namespace), digest)
            pipe.decrby(keyspace.usage(namespace), size)
            for ref in refs:
                pipe.srem(keyspace.by_ref(namespace, ref.ref), digest)
            try:
                await pipe.execute()
            except WatchError:
                return None  # referenced or touched meanwhile: kept
        await self.store.count_stored(record[b"backend"].decode(), -int(record[b"stored"]))
        await self.store.delete_objects(manifest)
        self.on_delete(decided.reason, size)
        log.info("gc: deleted %s/%s (%d bytes): %s", namespace, digest, size, decided.reason)
        return decision

    async def _expire_uploads(self, dry_run: bool) -> int:
        redis = self.store.redis
        cutoff = self.store.clock() - self.store.settings.upload_ttl_seconds
        expired: list[Any] = await redis.zrangebyscore(keyspace.UPLOADS, "-inf", cutoff)
        if dry_run:
            return len(expired)
        for member in expired:
            namespace, _, upload_id = member.decode().partition("/")
            try:
                await self.uploads.abort(namespace, upload_id)
            except Exception:  # an upload completed meanwhile: nothing to expire
                await redis.zrem(keyspace.UPLOADS, member)
        return len(expired)

    async def _reclaim_pending(self, dry_run: bool) -> int:
        """Objects whose writer never finished (a crash): older than the upload TTL, nobody will finish them."""
        redis = self.store.redis
        cutoff = self.store.clock() - max(self.store.settings.upload_ttl_seconds, self.store.settings.grace_seconds)
        reclaimed = 0
        for namespace in await self.store.namespaces():
            stale: list[Any] = await redis.zrangebyscore(keyspace.pending(namespace), "-inf", cutoff)
            reclaimed += len(stale)
            if dry_run:
                continue
            for member in stale:
                backend, _, key = member.decode().partition("|")
                if backend in self.store.backends:
                    await self.store.discard_object(namespace, backend, key)
                else:
                    await redis.zrem(keyspace.pending(namespace), member)
        return reclaimed + await self._reclaim_legacy_pending(cutoff, dry_run)

    async def _reclaim_legacy_pending(self, cutoff: float, dry_run: bool) -> int:
        """What a side store from before the per-namespace pending sets left in its one global set."""
        redis = self.store.redis
        stale: list[Any] = await redis.zrangebyscore(keyspace.LEGACY_PENDING, "-inf", cutoff)
        if dry_run:
            return len(stale)
        for member in stale:
            backend, _, key = member.decode().partition("|")
            if backend in self.store.backends:
                await self.store.backends[backend].delete(key)
            await redis.zrem(keyspace.LEGACY_PENDING, member)
        return len(stale)
