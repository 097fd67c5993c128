"""The blob store: metadata in Redis, bytes in a backend, and the rules that tie them together.

A write streams the body through `FrameEncoder` into a backend object whose name is random (so two writers of one
blob never touch the same object), verifies the digest, and only then creates the blob's record in one atomic
step; the loser of a race deletes its copy. Objects being written are listed in a "pending" set from before
their first byte, so an object left behind by a crash is found and reclaimed by the sweeper.

Blobs are per namespace: the same content in two namespaces is stored twice. That is the price of never letting a
tenant learn, from a faster or different answer, what another namespace holds, and of exact per-namespace quotas.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wfboost.blobs.wire import BlobInfo, BlobList, PutResult, RefBody
from wfboost.sidestore import keyspace, scripts
from wfboost.sidestore.backends import Backend
from wfboost.sidestore.digest import digest_of_hex
from wfboost.sidestore.errors import (
    BackendError,
    BadRequest,
    DigestMismatch,
    NotFound,
    QuotaExceeded,
    TooLarge,
)
from wfboost.sidestore.frames import (
    DEFAULT_FRAME_SIZE,
    DEFAULT_LEVEL,
    FrameEncoder,
    decompress_frame,
    split_frames,
)
from wfboost.sidestore.manifest import Manifest, Segment
from wfboost.sidestore.refs import RefRecord, record_for, ref_name

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class StoreSettings:
    # Blobs larger than this go to the large backend (file or object store) when one is configured.
    threshold_bytes: int = 4 * MiB
    frame_size: int = DEFAULT_FRAME_SIZE
    level: int = DEFAULT_LEVEL
    max_blob_bytes: int = 5 * GiB  # one PUT; larger blobs use a multipart upload
    max_part_bytes: int = 5 * GiB
    max_parts: int = 10_000
    # How long a blob (or a workflow reference) is kept without a live holder: covers the time between a write at
    # admission and the Workflow becoming visible, and a client that uploads first and references after.
    grace_seconds: float = 3600.0
    upload_ttl_seconds: float = 24 * 3600.0  # unfinished multipart uploads are aborted after this


def format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


class BlobStore:
    def __init__(
        self,
        redis: Any,
        backends: Mapping[str, Backend],
        *,
        default: str,
        large: str | None = None,
        settings: StoreSettings | None = None,
        quota_for: Callable[[str], int | None] = lambda namespace: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if default not in backends or (large is not None and large not in backends):
            raise ValueError("default and large must name configured backends")
        self.redis = redis
        self.backends = dict(backends)
        self.default = default
        self.large = large
        self.settings = settings or StoreSettings()
        self.quota_for = quota_for
        self.clock = clock
        self._reserve = redis.register_script(scripts.RESERVE)
        self._touch = redis.register_script(scripts.TOUCH)
        self._commit_blob = redis.register_script(scripts.COMMIT_BLOB)
        self.commit_part_script = redis.register_script(scripts.COMMIT_PART)

    async def close(self) -> None:
        for backend in self.backends.values():
            await backend.close()

    def backend_for(self, size: int | None) -> str:
        """Small blobs to the default backend; big ones (or of unknown size) to the large one when there is one."""
        if self.large is not None and (size is None or size > self.settings.threshold_bytes):
            return self.large
        return self.default

    # --- quota ----------------------------------------------------------------------------------------------

    async def reserve(self, namespace: str, size: int) -> None:
        limit = self.quota_for(namespace)
        ok, used = await self._reserve(keys=[keyspace.usage(namespace)], args=[size, -1 if limit is None else limit])
        if not ok:
            raise QuotaExceeded(
                f"namespace {namespace!r} is over its side store quota: {format_bytes(int(used))} used of "
                f"{format_bytes(limit or 0)}, this write needs {format_bytes(size)} more"
            )

    async def release(self, namespace: str, size: int) -> None:
        if size:
            await self.redis.decrby(keyspace.usage(namespace), size)

    async def usage(self, namespace: str) -> int:
        return int(await self.redis.get(keyspace.usage(namespace)) or 0)

    # --- objects --------------------------------------------------------------------------------------------

    async def write_object(
        self, namespace: str, backend_name: str, key: str, body: AsyncIterable[bytes]
    ) -> tuple[Segment, FrameEncoder]:
        """Stream into a new object; on any failure the object is removed again before the error propagates."""
        backend = self.backends[backend_name]
        member = f"{backend_name}|{key}"
        await self.redis.sadd(keyspace.NAMESPACES, namespace)  # first: the sweeper finds pending sets through it
        await self.redis.zadd(keyspace.pending(namespace), {member: self.clock()})
        encoder = FrameEncoder(level=self.settings.level, frame_size=self.settings.frame_size)
        try:
            await backend.write(key, encoder.encode(body))
        except BaseException as exc:
            await asyncio.shield(self.discard_object(namespace, backend_name, key))
            if isinstance(exc, OSError | ConnectionError) and not isinstance(exc, FileNotFoundError):
                raise BackendError(f"writing to the {backend_name} backend failed: {exc}") from exc
            raise
        return Segment(backend_name, key, tuple(encoder.frames)), encoder

    async def discard_object(self, namespace: str, backend_name: str, key: str) -> None:
        await self.backends[backend_name].delete(key)
        await self.redis.zrem(keyspace.pending(namespace), f"{backend_name}|{key}")

    async def count_stored(self, backend: str, stored: int) -> None:
        """The stored-bytes gauge of a backend, changed on its own after the change it counts (a global key: a
        script of one namespace cannot touch it on a Redis Cluster). A crash in between leaves the gauge off by
        that object; nothing else reads it."""
        if stored:
            await self.redis.incrby(keyspace.stored(backend), stored)

    def new_object_key(self, namespace: str, *parts: str) -> str:
        return "/".join([namespace, *parts, uuid.uuid4().hex])

    # --- blobs ----------------------------------------------------------------------------------------------

    async def touch(self, namespace: str, digest: str, refs: Sequence[RefBody] = ()) -> bool:
        """True (and the references added, the grace restarted) when the blob exists; False when it does not."""
        now = self.clock()
        args: list[Any] = [now, digest]
        for body in refs:
            record = record_for(body, now)
            args += [record.ref, record.encode(), keyspace.by_ref(namespace, record.ref)]
        found = await self._touch(keys=[keyspace.blob(namespace, digest), keyspace.refs(namespace, digest)], args=args)
        return bool(found)

    async def put(
        self, namespace: str, digest: str, body: AsyncIterable[bytes], length: int, refs: Sequence[RefBody] = ()
    ) -> PutResult:
        """Store a blob from one stream (idempotent: an existing blob is only touched and referenced)."""
        for ref in refs:
            record_for(ref, 0.0)  # validate before reading a byte
        if length > self.settings.max_blob_bytes:
            raise TooLarge(
                f"a single PUT takes at most {format_bytes(self.settings.max_blob_bytes)}; this body is "
                f"{format_bytes(length)}: use a multipart upload"
            )
        if await self.touch(namespace, digest, refs):
            async for _ in body:  # the body was sent anyway; read it so the connection stays usable
                pass
            size = int(await self.redis.hget(keyspace.blob(namespace, digest), "size") or length)
            return {"digest": digest, "size": size, "created": False}
        await self.reserve(namespace, length)
        committed = False
        try:
            backend_name = self.backend_for(length)
            key = self.new_object_key(namespace)
            segment, encoder = await self.write_object(namespace, backend_name, key, body)
            try:
                actual = digest_of_hex(encoder.hexdigest())
                if encoder.size != length:
                    raise BadRequest(f"the body had {encoder.size} bytes, Content-Length said {length}")
                if actual != digest:
                    raise DigestMismatch(
                        f"the body's sha256 is {actual}, not {digest} as named in the URL: nothing was stored"
                    )
                manifest = Manifest(digest, length, (segment,))
                committed = await self.commit(namespace, manifest, [f"{backend_name}|{key}"])
            finally:
                if not committed:
                    await asyncio.shield(self.discard_object(namespace, backend_name, key))
        finally:
            if not committed:
                await asyncio.shield(self.release(namespace, length))
        if refs:
            await self.touch(namespace, digest, refs)
        return {"digest": digest, "size": length, "created": committed}

    async def commit(self, namespace: str, manifest: Manifest, pending: Sequence[str]) -> bool:
        """Create the blob's record; False when another writer created it first (the caller drops its copy)."""
        backend = manifest.segments[0].backend if manifest.segments else self.default
        created = await self._commit_blob(
            keys=[keyspace.blob(namespace, manifest.digest), keyspace.index(namespace), keyspace.pending(namespace)],
            args=[manifest.to_json(), manifest.size, manifest.stored, backend, self.clock(), manifest.digest,
                  *pending],
        )
        if created:
            await self.count_stored(backend, manifest.stored)
        return bool(created)

    async def manifest(self, namespace: str, digest: str) -> Manifest:
        raw = await self.redis.hget(keyspace.blob(namespace, digest), "manifest")
        if raw is None:
            raise NotFound(f"no blob {digest} in namespace {namespace!r}")
        return Manifest.from_json(raw)

    async def info(self, namespace: str, digest: str, *, with_refs: bool = False) -> BlobInfo:
        record = await self.redis.hgetall(keyspace.blob(namespace, digest))
        if not record:
            raise NotFound(f"no blob {digest} in namespace {namespace!r}")
        info = _blob_info(namespace, digest, record)
        if with_refs:
            info["refs"] = [r.info() for r in await self.refs(namespace, digest)]
        return info

    async def refs(self, namespace: str, digest: str) -> builtins.list[RefRecord]:
        raw = await self.redis.hgetall(keyspace.refs(namespace, digest))
        return sorted((RefRecord.decode(_text(k), v) for k, v in raw.items()), key=lambda r: r.ref)

    async def list(self, namespace: str, *, after: str | None = None, limit: int = 100) -> BlobList:
        low = f"({after}" if after else "-"
        digests = await self.redis.zrangebylex(keyspace.index(namespace), low, "+", start=0, num=limit + 1)
        page = [_text(d) for d in digests[:limit]]
        blobs: list[BlobInfo] = []
        for digest in page:
            record = await self.redis.hgetall(keyspace.blob(namespace, digest))
            if record:
                blobs.append(_blob_info(namespace, digest, record))
        return {"namespace": namespace, "blobs": blobs, "next": page[-1] if len(digests) > limit else None}

    async def namespaces(self) -> builtins.list[str]:
        return sorted(_text(n) for n in await self.redis.smembers(keyspace.NAMESPACES))

    # --- references -----------------------------------------------------------------------------------------

    async def add_ref(self, namespace: str, ref: RefBody, digests: Sequence[str]) -> int:
        """Add one reference to several blobs; a 404 names the blobs that do not exist (the others are added)."""
        missing = [d for d in digests if not await self.touch(namespace, d, [ref])]
        if missing:
            raise NotFound(f"no such blob(s) in namespace {namespace!r}: {', '.join(missing[:10])}")
        return len(digests)

    async def remove_ref(self, namespace: str, ref: RefBody) -> int:
        """Drop a reference from every blob holding it (e.g. a cache entry was evicted); returns how many."""
        name = ref_name(ref)
        digests = [_text(d) for d in await self.redis.smembers(keyspace.by_ref(namespace, name))]
        for digest in digests:
            await self.redis.hdel(keyspace.refs(namespace, digest), name)
        await self.redis.delete(keyspace.by_ref(namespace, name))
        return len(digests)

    # --- reading --------------------------------------------------------------------------------------------

    async def read(self, manifest: Manifest, start: int, end: int, *, verify: bool = True) -> AsyncIterator[bytes]:
        """Plain bytes [start, end), streamed frame by frame. Every frame's zstd checksum is checked; a whole-blob
        read is also hashed and fails at its end (the client sees a truncated body) if the digest differs."""
        whole = verify and start == 0 and end == manifest.size
        hasher = hashlib.sha256() if whole else None
        spans = manifest.spans(start, end)
        i = 0
        while i < len(spans):
            j = i
            while j + 1 < len(spans) and spans[j + 1].segment is spans[i].segment:
                j += 1
            group = spans[i : j + 1]
            segment = group[0].segment
            backend = self.backends.get(segment.backend)
            if backend is None:
                raise BackendError(f"blob {manifest.digest} is on backend {segment.backend!r}, not configured")
            lo, hi = group[0].stored_start, group[-1].stored_start + group[-1].stored_length
            frames = split_frames(backend.read(segment.object, lo, hi), [s.stored_length for s in group])
            index = 0
            async for packed in frames:
                span = group[index]
                index += 1
                plain = (
                    await asyncio.to_thread(decompress_frame, packed)
                    if len(packed) > 65536
                    else (decompress_frame(packed))
                )
                piece = plain[span.skip : span.skip + span.take]
                if hasher is not None:
                    hasher.update(piece)
                yield piece
            i = j + 1
        if hasher is not None and digest_of_hex(hasher.hexdigest()) != manifest.digest:
            raise OSError(f"blob {manifest.digest} does not match its digest at rest: refusing to finish the read")

    async def delete_objects(self, manifest: Manifest) -> None:
        for segment in manifest.segments:
            backend = self.backends.get(segment.backend)
            if backend is not None:
                await backend.delete(segment.object)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _blob_info(namespace: str, digest: str, record: Mapping[Any, Any]) -> BlobInfo:
    fields = {_text(k): _text(v) for k, v in record.items() if _text(k) != "manifest"}
    return {
        "namespace": namespace,
        "digest": digest,
        "size": int(fields.get("size", 0)),
        "stored": int(fields.get("stored", 0)),
        "backend": fields.get("backend", ""),
        "created": float(fields.get("created", 0)),
    }
