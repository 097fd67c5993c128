"""The side store on a Redis Cluster (three Valkey processes, the slots spread over them) and on Sentinel (a master
found through a sentinel): every path that changes metadata in one script or transaction — a put, a touch with
references, a multipart upload, the sweeper's deletion, the reclaiming of objects a crashed writer left — works as
on one Redis. On a cluster that is because each touches the keys of one namespace (one hash slot) and changes the
global keys on their own (wfboost/sidestore/keyspace.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sidestore_fixtures import SideStoreTls, make_tls, run_sidestore, sha
from wfboost.blobs.client import SideStoreClientError
from wfboost.blobs.wire import CompletePart
from wfboost.sidestore import keyspace as keys
from wfboost.sidestore.store import StoreSettings
from wfboost_dev.demo.processes import RedisCluster, RedisSentinel

GRACE = 100.0
SETTINGS = StoreSettings(frame_size=64 * 1024, threshold_bytes=10_000, grace_seconds=GRACE,
                         upload_ttl_seconds=1000.0)


@pytest.fixture(params=["valkey_cluster", "valkey_sentinel"])
def deployment(request: pytest.FixtureRequest) -> RedisCluster | RedisSentinel:
    server: RedisCluster | RedisSentinel = request.getfixturevalue(request.param)
    return server


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def slots_of(*names: str) -> set[int]:
    from redis.crc import key_slot

    return {key_slot(name.encode()) for name in names}


async def test_blobs_references_and_quotas(deployment: RedisCluster | RedisSentinel, tls: SideStoreTls,
                                          tmp_path: Path) -> None:
    # The namespaces used here sit on different slots, so the test crosses nodes.
    assert len(slots_of(keys.blob("team-a", "x"), keys.blob("team-b", "x"))) == 2
    async with run_sidestore(deployment, tls, tmp_path, settings=SETTINGS, quota=300_000) as ss:
        ss.server.live.replace([], "1")
        async with ss.client("admin") as client:
            small, big = b"s" * 5000, os.urandom(200_000)  # the big one is chunked over several keys
            assert (await client.put("team-a", small))["created"] is True
            assert (await client.put("team-a", small))["created"] is False  # idempotent: touched only
            await client.put("team-b", big, refs=[{"kind": "entry", "id": "k1", "ttl_seconds": 3600}])
            assert await client.get("team-a", sha(small)) == small
            assert await client.get("team-b", sha(big)) == big
            assert await client.head("team-b", sha(small)) is None  # per namespace
            assert sorted(await ss.store.namespaces()) == ["team-a", "team-b"]
            assert await ss.store.usage("team-b") == len(big)
            with pytest.raises(SideStoreClientError) as over:
                await client.put("team-b", os.urandom(150_000))
            assert "quota" in over.value.message
            assert await ss.store.redis.zcard(keys.pending("team-b")) == 0
            # Past the grace period: the unreferenced blob goes, the referenced one stays.
            ss.clock[0] += 2 * GRACE
            report = await ss.server.sweeper.sweep()
            assert [(d["namespace"], d["digest"]) for d in report["deleted"]] == [("team-a", sha(small))]
            assert await client.head("team-a", sha(small)) is None
            assert await client.get("team-b", sha(big)) == big
            assert await ss.store.usage("team-a") == 0


async def test_a_multipart_upload_and_a_crashed_writer(deployment: RedisCluster | RedisSentinel,
                                                       tls: SideStoreTls, tmp_path: Path) -> None:
    root = tmp_path / "pvc"
    data = os.urandom(250_000)
    pieces = [data[i:i + 100_000] for i in range(0, len(data), 100_000)]
    async with run_sidestore(deployment, tls, tmp_path, large=f"file://{root}", settings=SETTINGS) as ss:
        ss.server.live.replace([], "1")
        async with ss.client("team-a") as client:
            upload = await client.start_upload("team-a", digest=sha(data), size=len(data))
            for number, piece in enumerate(pieces, 1):
                await client.upload_part("team-a", upload["upload_id"], number, hashlib.sha256(piece).hexdigest(),
                                         len(piece), lambda p=piece: once(p))
            order: list[CompletePart] = [{"number": n, "sha256": hashlib.sha256(p).hexdigest()}
                                         for n, p in enumerate(pieces, 1)]
            done = await client.complete_upload("team-a", upload["upload_id"], sha(data), order)
            assert done["digest"] == sha(data)
            assert await client.get("team-a", sha(data)) == data
        assert await ss.store.redis.zcard(keys.pending("team-a")) == 0
        assert await ss.store.redis.zcard(keys.UPLOADS) == 0
        # An object whose writer died before it was recorded: reclaimed once nobody can finish it.
        orphan = "team-a/crashed-writer"
        await ss.store.redis.zadd(keys.pending("team-a"), {f"fs|{orphan}": ss.clock[0]})
        (root / orphan).write_bytes(b"half written")
        ss.clock[0] += 1100
        report = await ss.server.sweeper.sweep()
        assert report["pending_reclaimed"] == 1
        assert not (root / orphan).exists()
        assert await ss.store.redis.zcard(keys.pending("team-a")) == 0
