"""Multipart uploads over real HTTPS with real Valkey and real files: parts verified one by one, an interrupted
upload resumed by a new client, the whole digest verified at completion, retries answered the same, quotas."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sidestore_fixtures import SideStoreTls, collect, make_tls, run_sidestore, sha
from wfboost.blobs.client import SideStoreClientError
from wfboost.sidestore import keyspace as keys
from wfboost.sidestore.store import StoreSettings
from wfboost_dev.demo.processes import RedisProcess

NS = "team-a"
SETTINGS = StoreSettings(frame_size=64 * 1024, threshold_bytes=10_000)
PART = 100_000


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


async def once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def parts_of(data: bytes) -> list[bytes]:
    return [data[i : i + PART] for i in range(0, len(data), PART)]


def hexsha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_interrupted_upload_resumes_with_only_the_missing_parts(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path
) -> None:
    data = os.urandom(450_000)
    pieces = parts_of(data)
    root = tmp_path / "pvc"
    async with run_sidestore(valkey, tls, tmp_path, large=f"file://{root}", settings=SETTINGS) as ss:
        async with ss.client("team-a") as first:
            upload = await first.start_upload(NS, digest=sha(data), size=len(data))
            assert upload["backend"] == "fs"
            upload_id = upload["upload_id"]
            # Parts arrive out of order; then the client "dies".
            for number in (3, 1):
                await first.upload_part(
                    NS, upload_id, number, hexsha(pieces[number - 1]), PART, lambda n=number: once(pieces[n - 1])
                )
        async with ss.client("team-a") as second:
            listed = await second.upload_info(NS, upload_id)
            assert [(p["number"], p["sha256"], p["size"]) for p in listed["parts"]] == [
                (1, hexsha(pieces[0]), PART),
                (3, hexsha(pieces[2]), PART),
            ]
            have = {p["number"] for p in listed["parts"]}
            for number, piece in enumerate(pieces, 1):
                if number not in have:
                    await second.upload_part(NS, upload_id, number, hexsha(piece), len(piece), lambda p=piece: once(p))
            order = [{"number": n, "sha256": hexsha(p)} for n, p in enumerate(pieces, 1)]
            done = await second.complete_upload(NS, upload_id, sha(data), order)
            assert done == {"digest": sha(data), "size": len(data), "created": True}
            # A retried completion (its answer lost) gets the same answer.
            assert await second.complete_upload(NS, upload_id, sha(data), order) == done
            assert await second.get(NS, sha(data)) == data
            # Range across a part boundary.
            assert (
                await collect(second.stream(NS, sha(data), start=PART - 10, end=PART + 10))
                == data[PART - 10 : PART + 10]
            )
            info = await second.info(NS, sha(data))
            assert info["backend"] == "fs"
            assert await ss.store.usage(NS) == len(data)
            with pytest.raises(SideStoreClientError) as gone:
                await second.upload_info(NS, upload_id)
            assert gone.value.status == 404


async def test_a_part_whose_digest_does_not_match_is_refused(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path
) -> None:
    async with run_sidestore(valkey, tls, tmp_path, settings=SETTINGS) as ss, ss.client("team-a") as client:
        upload_id = (await client.start_upload(NS))["upload_id"]
        good, bad = os.urandom(5000), os.urandom(5000)
        with pytest.raises(SideStoreClientError) as caught:
            await client.upload_part(NS, upload_id, 1, hexsha(good), len(bad), lambda: once(bad))
        assert caught.value.status == 422
        assert f"part 1: its sha256 is {hexsha(bad)}, the request said {hexsha(good)}" in caught.value.message
        assert (await client.upload_info(NS, upload_id))["parts"] == []
        assert await ss.store.usage(NS) == 0
        assert await ss.store.redis.zcard(keys.pending(NS)) == 0
        # A re-sent part replaces the one before it; the quota counts it once.
        await client.upload_part(NS, upload_id, 1, hexsha(bad), len(bad), lambda: once(bad))
        await client.upload_part(NS, upload_id, 1, hexsha(good), len(good), lambda: once(good))
        assert [p["sha256"] for p in (await client.upload_info(NS, upload_id))["parts"]] == [hexsha(good)]
        assert await ss.store.usage(NS) == 5000
        # Completing with a wrong whole digest: refused, the upload kept for a fix.
        with pytest.raises(SideStoreClientError) as whole:
            await client.complete_upload(NS, upload_id, sha(bad), [{"number": 1, "sha256": hexsha(good)}])
        assert whole.value.status == 422
        assert f"hash to {sha(good)}" in whole.value.message
        with pytest.raises(SideStoreClientError) as unknown:
            await client.complete_upload(NS, upload_id, sha(good), [{"number": 2, "sha256": hexsha(good)}])
        assert unknown.value.status == 400 and "part 2 was never received" in unknown.value.message
        await client.complete_upload(NS, upload_id, sha(good), [{"number": 1, "sha256": hexsha(good)}])
        assert await client.get(NS, sha(good)) == good


async def test_abort_and_completing_an_existing_blob(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    root = tmp_path / "pvc"
    async with (
        run_sidestore(valkey, tls, tmp_path, large=f"file://{root}", settings=SETTINGS) as ss,
        ss.client("team-a") as client,
    ):
        data = os.urandom(20_000)
        await client.put(NS, data)
        upload_id = (await client.start_upload(NS))["upload_id"]
        await client.upload_part(NS, upload_id, 1, hexsha(data), len(data), lambda: once(data))
        result = await client.complete_upload(NS, upload_id, sha(data), [{"number": 1, "sha256": hexsha(data)}])
        assert result["created"] is False  # already stored: the parts are dropped
        assert await ss.store.usage(NS) == len(data)
        other = (await client.start_upload(NS))["upload_id"]
        await client.upload_part(NS, other, 1, hexsha(data), len(data), lambda: once(data))
        await client.abort_upload(NS, other)
        assert await ss.store.usage(NS) == len(data)
        assert len([p for p in root.rglob("*") if p.is_file()]) == 1  # only the blob's own object


async def test_upload_file_helper_resumes(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(350_000)
    path.write_bytes(data)
    async with run_sidestore(valkey, tls, tmp_path, settings=SETTINGS) as ss, ss.client("team-a") as client:
        upload_id = (await client.start_upload(NS, digest=sha(data)))["upload_id"]
        await client.upload_part(
            NS, upload_id, 2, hexsha(data[PART : 2 * PART]), PART, lambda: once(data[PART : 2 * PART])
        )
        result = await client.upload_file(NS, path, part_size=PART, upload_id=upload_id)
        assert result["digest"] == sha(data)
        assert await client.get(NS, sha(data)) == data
        fresh = await client.upload_file(NS, path, part_size=PART)
        assert fresh["created"] is False


async def test_quota_refuses_with_namespace_used_and_limit(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path
) -> None:
    async with run_sidestore(valkey, tls, tmp_path, settings=SETTINGS, quota=100_000) as ss:
        async with ss.client("team-a") as client:
            await client.put(NS, os.urandom(60_000))
            with pytest.raises(SideStoreClientError) as caught:
                await client.put(NS, os.urandom(50_000))
            assert caught.value.status == 507
            message = caught.value.message
            assert "'team-a'" in message and "58.6 KiB used of 97.7 KiB" in message and "48.8 KiB more" in message
            upload_id = (await client.start_upload(NS))["upload_id"]
            blob = os.urandom(45_000)
            with pytest.raises(SideStoreClientError) as part:
                await client.upload_part(NS, upload_id, 1, hexsha(blob), len(blob), lambda: once(blob))
            assert part.value.status == 507
            assert await ss.store.usage(NS) == 60_000
        async with ss.client("team-b") as other:  # quotas are per namespace
            await other.put("team-b", os.urandom(60_000))
