"""Single-PUT blobs over real HTTPS against every backend: Redis (real Valkey), files (tmp dir), S3 (moto on
loopback). Digests verified, Range reads, zstd at rest, threshold routing, corruption detected on read."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from tests.sidestore_fixtures import (
    S3Server,
    SideStoreTls,
    collect,
    make_tls,
    run_sidestore,
    s3_server_process,
    sha,
)
from wfboost.blobs.client import SideStoreClientError
from wfboost.sidestore import keyspace as keys
from wfboost.sidestore.manifest import Manifest
from wfboost.sidestore.store import StoreSettings
from wfboost_dev.demo.processes import RedisProcess

NS = "team-a"
SMALL_FRAMES = StoreSettings(frame_size=64 * 1024, threshold_bytes=100_000)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server_process() as server:
        yield server


def payload(size: int, seed: int = 1) -> bytes:
    """Half compressible text, half random, so frames of both kinds occur."""
    text = (b"workflow parameter value %d; " % seed) * (size // 40 + 1)
    return (text[: size // 2] + os.urandom(size - size // 2))[:size]


@pytest.fixture(params=["redis", "fs", "s3"])
def backend_spec(request: pytest.FixtureRequest, tmp_path: Path, s3: S3Server) -> str:
    if request.param == "redis":
        return "redis"
    if request.param == "fs":
        return f"file://{tmp_path / 'pvc'}"
    bucket = f"blobs-{os.urandom(4).hex()}"
    s3.create_bucket(bucket)
    return s3.bucket_spec(bucket)


async def test_put_get_head_range_on_every_backend(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path, backend_spec: str
) -> None:
    data = payload(300_000)
    async with (
        run_sidestore(valkey, tls, tmp_path, backend=backend_spec, settings=SMALL_FRAMES) as ss,
        ss.client("team-a") as client,
    ):
        assert await client.head(NS, sha(data)) is None
        first = await client.put(NS, data)
        assert first == {"digest": sha(data), "size": len(data), "created": True}
        again = await client.put(NS, data)  # idempotent
        assert again == {"digest": sha(data), "size": len(data), "created": False}
        assert await client.head(NS, sha(data)) == len(data)
        assert await client.get(NS, sha(data)) == data
        # Ranges inside one frame, across frames, to the end, and a suffix.
        for start, end in [(10, 20), (65_000, 200_000), (299_990, None), (0, 1)]:
            got = await collect(client.stream(NS, sha(data), start=start, end=end))
            assert got == data[start:end]
        info = await client.info(NS, sha(data))
        assert info["backend"] == ss.store.default
        assert 0 < info["stored"] < len(data)  # the text half compressed
        empty = await client.put(NS, b"")
        assert empty["size"] == 0
        assert await client.get(NS, sha(b"")) == b""


async def test_range_headers_and_416(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    import aiohttp

    data = payload(200_000)
    async with run_sidestore(valkey, tls, tmp_path, settings=SMALL_FRAMES) as ss, ss.client("team-a") as client:
        await client.put(NS, data)
        url = f"{ss.url}/v1/namespaces/{NS}/blobs/{sha(data)}"
        headers = {"Authorization": "Bearer team-a-token-0123456789abcdef"}
        import ssl

        context = ssl.create_default_context(cafile=str(tls.ca_file))
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers={**headers, "Range": "bytes=100-199"}, ssl=context) as response:
                assert response.status == 206
                assert response.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
                assert response.headers["ETag"] == f'"{sha(data)}"'
                assert await response.read() == data[100:200]
            async with session.get(url, headers={**headers, "Range": "bytes=-5"}, ssl=context) as response:
                assert response.status == 206
                assert await response.read() == data[-5:]
            async with session.get(url, headers={**headers, "Range": "bytes=999999-"}, ssl=context) as response:
                assert response.status == 416
                assert response.headers["Content-Range"] == f"bytes */{len(data)}"
                assert "beyond" in (await response.json())["message"]
            async with session.get(url, headers={**headers, "Range": "lines=1-2"}, ssl=context) as response:
                assert response.status == 400
            async with session.put(url, headers=headers, data=_chunked(b"abc"), ssl=context) as response:
                assert response.status == 411  # no Content-Length: use a multipart upload


async def _chunked(data: bytes):  # type: ignore[no-untyped-def]
    yield data


async def test_digest_mismatch_is_refused_and_nothing_is_kept(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path
) -> None:
    data, other = payload(150_000), payload(150_000, seed=2)
    root = tmp_path / "pvc"
    async with run_sidestore(valkey, tls, tmp_path, backend=f"file://{root}") as ss, ss.client("team-a") as client:
        with pytest.raises(SideStoreClientError) as caught:
            await client.put_stream(NS, sha(other), len(data), lambda: _chunked(data))
        assert caught.value.status == 422
        assert f"the body's sha256 is {sha(data)}, not {sha(other)}" in caught.value.message
        assert await client.head(NS, sha(other)) is None
        assert await client.head(NS, sha(data)) is None
        assert [p for p in root.rglob("*") if p.is_file()] == []  # the streamed object was removed
        assert await ss.store.usage(NS) == 0  # and its quota reservation released
        assert await ss.store.redis.zcard(keys.pending(NS)) == 0
        with pytest.raises(SideStoreClientError) as bad:
            await client.put_stream(NS, "md5:abc", 3, lambda: _chunked(b"abc"))
        assert bad.value.status == 400
        assert "sha256:<64 lowercase hex" in bad.value.message


async def test_threshold_sends_big_blobs_to_the_file_backend_zstd_at_rest(
    valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path
) -> None:
    root = tmp_path / "pvc"
    small, big = payload(50_000), payload(400_000)
    async with (
        run_sidestore(valkey, tls, tmp_path, large=f"file://{root}", settings=SMALL_FRAMES) as ss,
        ss.client("team-a") as client,
    ):
        await client.put(NS, small)
        await client.put(NS, big)
        assert (await client.info(NS, sha(small)))["backend"] == "redis"
        assert (await client.info(NS, sha(big)))["backend"] == "fs"
        files = [p for p in root.rglob("*") if p.is_file()]
        assert len(files) == 1
        # At rest: concatenated zstd frames; any zstd decoder gives back the plain bytes.
        with files[0].open("rb") as handle:
            plain = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True).read()
        assert plain == big
        manifest = await ss.store.manifest(NS, sha(big))
        assert len(manifest.segments[0].frames) == 7  # 400,000 bytes in 64 KiB frames
        # Redis holds the small one in chunk values of at most one frame each.
        small_manifest = await ss.store.manifest(NS, sha(small))
        assert await ss.store.redis.exists(keys.data_index(small_manifest.segments[0].object))


async def test_corruption_at_rest_is_never_served(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    root = tmp_path / "pvc"
    data = payload(300_000)
    async with (
        run_sidestore(valkey, tls, tmp_path, backend=f"file://{root}", settings=SMALL_FRAMES) as ss,
        ss.client("team-a") as client,
    ):
        await client.put(NS, data)
        manifest: Manifest = await ss.store.manifest(NS, sha(data))
        path = root / manifest.segments[0].object
        raw = bytearray(path.read_bytes())
        last_frame_start = len(raw) - manifest.segments[0].frames[-1][1]
        raw[last_frame_start + 20] ^= 0xFF  # flip a byte inside the last frame
        path.write_bytes(bytes(raw))
        with pytest.raises(SideStoreClientError):
            await client.get(NS, sha(data))
        # A range that avoids the damaged frame is still served.
        assert await collect(client.stream(NS, sha(data), start=0, end=1000)) == data[:1000]


async def test_list_and_info_with_refs(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    async with run_sidestore(valkey, tls, tmp_path) as ss, ss.client("team-a") as client:
        blobs = [payload(100, seed=i) for i in range(5)]
        for blob in blobs:
            await client.put(NS, blob, refs=[{"kind": "workflow", "id": "uid-1"}])
        first = await client.list(NS, limit=3)
        assert len(first["blobs"]) == 3 and first["next"] is not None
        rest = await client.list(NS, after=first["next"], limit=3)
        assert rest["next"] is None
        listed = [b["digest"] for b in first["blobs"] + rest["blobs"]]
        assert listed == sorted(sha(b) for b in blobs)
        info = await client.info(NS, sha(blobs[0]))
        assert [r["ref"] for r in info["refs"]] == ["workflow:uid-1"]
        assert await client.add_ref(NS, {"kind": "entry", "id": "key-9", "ttl_seconds": 60}, [sha(blobs[0])]) == 1
        with pytest.raises(SideStoreClientError) as missing:
            await client.add_ref(NS, {"kind": "workflow", "id": "x"}, [sha(b"nope")])
        assert missing.value.status == 404
        assert await client.remove_ref(NS, "workflow", "uid-1") == 5
        assert [r["ref"] for r in (await client.info(NS, sha(blobs[0])))["refs"]] == ["entry:key-9"]
