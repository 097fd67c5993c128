"""Garbage collection: the retention rules; a property test over random sequences of workflow creates and deletes,
uploads, time passing and sweeps against a real Valkey; the live-workflow view against kmock's Kubernetes
emulator (list, watch, 410 relist); and the sweeper's other duties (expired uploads, abandoned objects)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sidestore_fixtures import SideStoreTls, make_tls, run_sidestore, sha, sidestore_redis_url
from wfboost.kube import KubeClient, KubeConfig, resource_path
from wfboost.sidestore import keyspace as keys
from wfboost.sidestore.backends.redis import RedisBackend
from wfboost.sidestore.gc import Sweeper, retention_of
from wfboost.sidestore.live_workflows import CRON_WORKFLOWS, WORKFLOW_TEMPLATES, WORKFLOWS, LiveWorkflows
from wfboost.sidestore.refs import RefRecord
from wfboost.sidestore.store import BlobStore, StoreSettings
from wfboost_dev.demo.processes import RedisProcess

GRACE = 100.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


class View:
    def __init__(self, *uids: str) -> None:
        self.synced = True
        self.uids = set(uids)

    def is_live(self, uid: str) -> bool:
        return uid in self.uids

    def holder_of(self, namespace: str, digest: str) -> str | None:
        return None

    def released_at(self, namespace: str, digest: str) -> float | None:
        return None


def test_verdict_rules() -> None:
    now = 10_000.0
    old, fresh = now - 2 * GRACE, now - GRACE / 2
    wf = RefRecord("workflow:u1", old, None)
    assert retention_of(old, [wf], View("u1"), now, GRACE).keep  # live workflow, however old
    assert not retention_of(old, [wf], View(), now, GRACE).keep  # gone and past grace
    assert retention_of(old, [RefRecord("workflow:u1", fresh, None)], View(), now, GRACE).keep  # not visible yet
    assert retention_of(fresh, [], View(), now, GRACE).keep  # new, not yet referenced
    assert not retention_of(old, [], View(), now, GRACE).keep
    assert retention_of(old, [RefRecord("entry:k", old, now + 1)], View(), now, GRACE).keep
    assert not retention_of(old, [RefRecord("entry:k", old, now - 1)], View(), now, GRACE).keep


# --- the property ---------------------------------------------------------------------------------------------

UIDS = [f"uid-{i}" for i in range(3)]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.sampled_from(UIDS)),
        st.tuples(st.just("delete"), st.sampled_from(UIDS)),
        st.tuples(st.just("upload"), st.integers(0, 3), st.one_of(st.none(), st.sampled_from(UIDS))),
        st.tuples(st.just("upload"), st.integers(0, 3), st.sampled_from(UIDS)),
        st.tuples(st.just("advance"), st.sampled_from([1.0, 30.0, 60.0, 99.0, 100.0, 150.0])),
        st.tuples(st.just("sweep")),
        st.tuples(st.just("sweep")),  # twice: sweeps between small steps of time are where grace bugs show
    ),
    min_size=1,
    max_size=40,
)


@dataclass
class ModelBlob:
    touched: float
    refs: dict[str, float] = field(default_factory=dict)  # uid -> when last referenced


async def run_scenario(url: str, ops: list[tuple[Any, ...]]) -> None:
    redis = aioredis.from_url(url)
    await redis.flushdb()
    clock = [1_000.0]
    store = BlobStore(
        redis,
        {"redis": RedisBackend(redis)},
        default="redis",
        settings=StoreSettings(grace_seconds=GRACE),
        clock=lambda: clock[0],
    )
    live = LiveWorkflows()
    live.replace([], "1")
    sweeper = Sweeper(store, live)
    model: dict[tuple[str, str], ModelBlob] = {}
    live_uids: set[str] = set()
    try:
        for op in ops:
            if op[0] in ("create", "delete"):
                kind = "ADDED" if op[0] == "create" else "DELETED"
                live.apply({"type": kind, "object": {"metadata": {"uid": op[1], "name": op[1]}}})
                (live_uids.add if op[0] == "create" else live_uids.discard)(op[1])
            elif op[0] == "upload":
                namespace = "team-a" if op[1] % 2 else "team-b"
                data = f"blob {op[1]}".encode()

                async def body(data: bytes = data) -> AsyncIterator[bytes]:
                    yield data

                refs: list[Any] = [] if op[2] is None else [{"kind": "workflow", "id": op[2]}]
                await store.put(namespace, sha(data), body(), len(data), refs)
                blob = model.setdefault((namespace, sha(data)), ModelBlob(clock[0]))
                blob.touched = clock[0]
                if op[2] is not None:
                    blob.refs[op[2]] = clock[0]
            elif op[0] == "advance":
                clock[0] += op[1]
            else:
                await sweeper.sweep()
                now = clock[0]
                for (namespace, digest), blob in list(model.items()):
                    exists = bool(await redis.exists(keys.blob(namespace, digest)))
                    held_by_live = any(uid in live_uids for uid in blob.refs)
                    young = now - blob.touched < GRACE or any(now - t < GRACE for t in blob.refs.values())
                    if held_by_live:
                        assert exists, f"GC deleted {digest} although a live workflow references it"
                    assert exists == (held_by_live or young), (digest, blob, now, live_uids)
                    if not exists:
                        del model[(namespace, digest)]
                        assert await store.usage(namespace) >= 0
        # Whatever happened, usage equals the plain bytes still held, per namespace.
        for namespace in ("team-a", "team-b"):
            held = sum(
                len(f"blob {d}".encode())
                for (ns, d2), _ in model.items()
                if ns == namespace
                for d in range(6)
                if sha(f"blob {d}".encode()) == d2
            )
            assert await store.usage(namespace) == held
    finally:
        await redis.flushdb()
        await redis.aclose()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_gc_never_deletes_what_a_live_workflow_holds_and_reclaims_orphans(
    valkey: RedisProcess, ops: list[tuple[Any, ...]]
) -> None:
    asyncio.run(run_scenario(sidestore_redis_url(valkey), ops))


# --- the sweeper end to end ----------------------------------------------------------------------------------


async def test_unsynced_view_pauses_gc_and_dry_run_deletes_nothing(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path
) -> None:
    async with (
        run_sidestore(valkey, tls, tmp_path, settings=StoreSettings(grace_seconds=GRACE)) as ss,
        ss.client("admin") as client,
    ):
        await client.put("team-a", b"rejected request's value", refs=[{"kind": "workflow", "id": "never"}])
        await client.put("team-a", b"kept", refs=[{"kind": "workflow", "id": "alive"}])
        ss.clock[0] += GRACE + 1
        skipped = await client.gc()
        assert skipped["skipped"] and "not in sync" in skipped["skipped"]
        ss.server.live.replace([{"metadata": {"uid": "alive"}}], "5")
        dry = await client.gc(dry_run=True)
        assert [(d["digest"], d["reason"]) for d in dry["deleted"]] == [
            (sha(b"rejected request's value"), "every reference is gone: workflow:never")
        ]
        assert await client.head("team-a", sha(b"rejected request's value")) is not None
        done = await client.gc()
        assert len(done["deleted"]) == 1 and done["kept"] == 1
        assert await client.head("team-a", sha(b"rejected request's value")) is None
        assert await client.get("team-a", sha(b"kept")) == b"kept"
        assert await ss.store.usage("team-a") == len(b"kept")
        metrics = ss.server.metrics.gc_deletions.labels("unreferenced")._value.get()
        assert metrics == 1


async def test_expired_uploads_and_abandoned_objects_are_reclaimed(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path
) -> None:
    root = tmp_path / "pvc"
    store_settings = StoreSettings(grace_seconds=GRACE, upload_ttl_seconds=1000.0)
    async with run_sidestore(valkey, tls, tmp_path, large=f"file://{root}", settings=store_settings) as ss:
        ss.server.live.replace([], "1")
        async with ss.client("team-a") as client:
            upload_id = (await client.start_upload("team-a"))["upload_id"]
            part = b"p" * 5000

            async def once() -> AsyncIterator[bytes]:
                yield part

            import hashlib

            await client.upload_part("team-a", upload_id, 1, hashlib.sha256(part).hexdigest(), len(part), once)
        # An object whose writer died before it was recorded anywhere (a crash mid-write), and one left by a side
        # store from before the pending sets were per namespace (in its one global set).
        orphan_key, legacy_key = "team-a/crashed-writer", "team-a/crashed-older-writer"
        await ss.store.redis.zadd(keys.pending("team-a"), {f"fs|{orphan_key}": ss.clock[0]})
        await ss.store.redis.zadd(keys.LEGACY_PENDING, {f"fs|{legacy_key}": ss.clock[0]})
        (root / "team-a").mkdir(parents=True, exist_ok=True)
        (root / orphan_key).write_bytes(b"half written")
        (root / legacy_key).write_bytes(b"half written too")
        ss.clock[0] += 500
        report = await ss.server.sweeper.sweep()
        assert (report["uploads_expired"], report["pending_reclaimed"]) == (0, 0)
        ss.clock[0] += 600
        report = await ss.server.sweeper.sweep()
        assert (report["uploads_expired"], report["pending_reclaimed"]) == (1, 2)
        assert [p for p in root.rglob("*") if p.is_file()] == []
        assert await ss.store.redis.zcard(keys.pending("team-a")) == 0
        assert await ss.store.redis.zcard(keys.LEGACY_PENDING) == 0
        assert await ss.store.usage("team-a") == 0


# --- the live view against the Kubernetes emulator ------------------------------------------------------------


def workflow(name: str, uid: str, namespace: str = "argo") -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"entrypoint": "main"},
    }


async def wait_for(condition: Any) -> None:
    async with asyncio.timeout(20):  # a hang guard only, never an assertion about time
        while not condition():  # noqa: ASYNC110 - polling state another task changes
            await asyncio.sleep(0.01)


async def test_live_view_lists_then_follows_the_watch(kmock: Any) -> None:
    path = resource_path("argoproj.io", "v1alpha1", "workflows", "argo")
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=10) as kube:
        await kube.create(path, workflow("before", "uid-before"))
        live = LiveWorkflows()
        task = asyncio.create_task(live.run(kube, watch_seconds=60))
        try:
            await wait_for(lambda: live.synced and live.is_live("uid-before"))
            await wait_for(lambda: list(kmock[kmock.action.WATCH]))
            await kube.create(path, workflow("after", "uid-after"))
            await wait_for(lambda: live.is_live("uid-after"))
            await kube.delete(f"{path}/before")
            await wait_for(lambda: not live.is_live("uid-before"))
            assert live.synced and live.is_live("uid-after")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    lists = [r.url.path for r in kmock if r.method == "GET" and "watch" not in str(r.url.query)]
    assert WORKFLOWS in lists  # cluster-wide lists, one per kind
    assert {WORKFLOW_TEMPLATES, CRON_WORKFLOWS} <= set(lists)


async def test_live_view_relists_after_410(kmock: Any) -> None:
    path = resource_path("argoproj.io", "v1alpha1", "workflows", "argo")
    gone = {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired", "message": "too old"}
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=10) as kube:
        await kube.create(path, workflow("one", "uid-1"))
        kmock["watch argoproj.io/v1alpha1/workflows"] << 410 << gone
        live = LiveWorkflows()
        task = asyncio.create_task(live.run(kube, retry_seconds=0.5))
        try:
            await wait_for(lambda: live.relists >= 3)
            assert live.is_live("uid-1")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_a_live_workflows_text_holds_the_values_moved_out_of_it() -> None:
    """A Workflow created with generateName has no uid when its values are stored: its text is what holds them."""
    from wfboost.kube import WatchEvent
    from wfboost.shrink.refs import reference_for
    from wfboost.sidestore.live_workflows import LiveWorkflows

    value = "{" + '"executorLabel": "exec-train", ' * 400 + "}"
    ref = reference_for(value)
    workflow = {"metadata": {"name": "pipeline-x7k2p", "namespace": "ml", "uid": "u-1", "resourceVersion": "5"},
                "spec": {"arguments": {"parameters": [{"name": "components-abc", "value": ref.text}]}}}
    clock = [10_000.0]
    live = LiveWorkflows(clock=lambda: clock[0])
    live.replace([workflow], "5")
    now, old = 10_000.0, 0.0
    kept = retention_of(old, [], live, now, GRACE, namespace="ml", digest=ref.digest)
    assert kept.keep and "ml/pipeline-x7k2p" in kept.reason
    assert not retention_of(old, [], live, now, GRACE, namespace="other", digest=ref.digest).keep  # per namespace
    event: WatchEvent = {"type": "DELETED", "object": workflow}
    live.apply(event)
    # deleted and created again from its own YAML: the values stay for the grace
    kept = retention_of(old, [], live, now + GRACE / 2, GRACE, namespace="ml", digest=ref.digest)
    assert kept.keep and "went within the grace period" in kept.reason
    assert not retention_of(old, [], live, now + GRACE, GRACE, namespace="ml", digest=ref.digest).keep
    again: WatchEvent = {"type": "ADDED", "object": {**workflow, "metadata": {**workflow["metadata"], "uid": "u-2"}}}
    live.apply(again)  # `argo resubmit`: a new Workflow with the same references
    assert retention_of(old, [], live, now, GRACE, namespace="ml", digest=ref.digest).keep


async def test_workflow_templates_and_cron_workflows_hold_their_references_too(kmock: Any) -> None:
    """Shrinking moves literals out of WorkflowTemplates and CronWorkflows; every Workflow made from them copies the
    references, so the blobs live while the template or the schedule does."""
    from wfboost.shrink.refs import reference_for

    held = reference_for("print('train')\n" * 500)
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
                "metadata": {"name": "train", "namespace": "ml", "uid": "wt-1"},
                "spec": {"templates": [{"name": "main", "script": {"image": "python", "source": held.text}}]}}
    cron_held = reference_for("nightly\n" * 900)
    cron = {"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
            "metadata": {"name": "nightly", "namespace": "ml", "uid": "cron-1"},
            "spec": {"schedules": ["0 0 * * *"], "workflowSpec": {"templates": [
                {"name": "main", "script": {"image": "python", "source": cron_held.text}}]}}}
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=10) as kube:
        await kube.create(resource_path("argoproj.io", "v1alpha1", "workflowtemplates", "ml"), template)
        await kube.create(resource_path("argoproj.io", "v1alpha1", "cronworkflows", "ml"), cron)
        live = LiveWorkflows()
        task = asyncio.create_task(live.run(kube, watch_seconds=60))
        try:
            await wait_for(lambda: live.synced and live.is_live("wt-1") and live.is_live("cron-1"))
            assert live.holder_of("ml", held.digest) == "ml/train"
            assert live.holder_of("ml", cron_held.digest) == "ml/nightly"
            await kube.delete(resource_path("argoproj.io", "v1alpha1", "workflowtemplates", "ml") + "/train")
            await wait_for(lambda: live.holder_of("ml", held.digest) is None)
            assert live.released_at("ml", held.digest) is not None  # the grace after its last holder starts
            assert live.synced and live.holder_of("ml", cron_held.digest) == "ml/nightly"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_kind_the_api_server_does_not_serve_holds_nothing_but_a_forbidden_one_pauses_gc(kmock: Any) -> None:
    not_served = {"kind": "Status", "apiVersion": "v1", "code": 404, "reason": "NotFound", "message": "no CRD"}
    forbidden = {"kind": "Status", "apiVersion": "v1", "code": 403, "reason": "Forbidden", "message": "no RBAC"}
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=10) as kube:
        kmock["list argoproj.io/v1alpha1/cronworkflows"] << 404 << not_served
        live = LiveWorkflows()
        task = asyncio.create_task(live.run(kube, watch_seconds=60))
        try:
            await wait_for(lambda: live.synced)  # no CronWorkflow CRD: no CronWorkflow holds anything
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=10) as kube:
        kmock["list argoproj.io/v1alpha1/workflowtemplates"] << 403 << forbidden
        live = LiveWorkflows()
        task = asyncio.create_task(live.run(kube, watch_seconds=60, retry_seconds=0.2))
        try:
            await wait_for(lambda: live.relists >= 2)  # the others listed (one not served); this one keeps failing
            await asyncio.sleep(0.5)
            assert not live.synced  # unseen WorkflowTemplates may hold references: never sweep blind
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
