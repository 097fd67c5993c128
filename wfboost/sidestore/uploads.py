"""Multipart uploads: start, send parts (each verified by its own sha256), list what arrived, complete.

Parts are streamed into their own backend objects as they arrive, in any order and in parallel, and at
completion become the blob's segments as they are: nothing is copied or held in memory. Completion reads the
parts back once to check the digest of the whole, because a whole-content sha256 cannot be derived from the
parts' own. An interrupted client lists the parts received and sends only the missing ones. A retried
"complete" (its answer was lost) finds the recorded result and gets the same answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from wfboost.blobs.wire import CompleteUpload, PartInfo, PutResult, StartUpload, UploadInfo
from wfboost.sidestore import keyspace
from wfboost.sidestore.digest import digest_of_hex, parse_digest, parse_hex
from wfboost.sidestore.errors import BadRequest, DigestMismatch, NotFound, TooLarge
from wfboost.sidestore.manifest import Manifest, Segment
from wfboost.sidestore.store import BlobStore, format_bytes

COMPLETED_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Part:
    number: int
    sha256: str
    segment: Segment

    @property
    def size(self) -> int:
        return self.segment.size

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "sha256": self.sha256,
                "backend": self.segment.backend,
                "object": self.segment.object,
                "frames": self.segment.frames,
            }
        )

    @classmethod
    def decode(cls, number: int, raw: bytes | str) -> Part:
        doc = orjson.loads(raw)
        frames = tuple((int(u), int(c)) for u, c in doc["frames"])
        return cls(number, doc["sha256"], Segment(doc["backend"], doc["object"], frames))

    def info(self) -> PartInfo:
        return {"number": self.number, "sha256": self.sha256, "size": self.size}


class Uploads:
    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.redis = store.redis

    async def start(self, namespace: str, body: StartUpload) -> UploadInfo:
        digest = parse_digest(body["digest"]) if body.get("digest") else None
        size = body.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise BadRequest("size must be a non-negative integer")
        if size is not None and size > self.store.settings.max_part_bytes * self.store.settings.max_parts:
            raise TooLarge(f"a blob of {format_bytes(size)} exceeds the largest multipart upload")
        upload_id = secrets.token_urlsafe(18)
        now = self.store.clock()
        meta = {"created": now, "digest": digest, "backend": self.store.backend_for(size)}
        await self.redis.hset(keyspace.upload(namespace, upload_id), "meta", orjson.dumps(meta))
        await self.redis.zadd(keyspace.UPLOADS, {f"{namespace}/{upload_id}": now})
        await self.redis.sadd(keyspace.NAMESPACES, namespace)
        return {
            "upload_id": upload_id,
            "namespace": namespace,
            "backend": str(meta["backend"]),
            "created": now,
            "digest": digest,
            "parts": [],
        }

    async def _load(self, namespace: str, upload_id: str) -> tuple[dict[str, Any], dict[int, Part]]:
        raw = await self.redis.hgetall(keyspace.upload(namespace, upload_id))
        meta_raw = raw.get(b"meta")
        if meta_raw is None:
            raise NotFound(f"no upload {upload_id!r} in namespace {namespace!r} (completed, aborted or expired)")
        parts = {}
        for field, value in raw.items():
            name = field.decode()
            if name.startswith("part:"):
                number = int(name[5:])
                parts[number] = Part.decode(number, value)
        return orjson.loads(meta_raw), parts

    async def info(self, namespace: str, upload_id: str) -> UploadInfo:
        meta, parts = await self._load(namespace, upload_id)
        return {
            "upload_id": upload_id,
            "namespace": namespace,
            "backend": meta["backend"],
            "created": meta["created"],
            "digest": meta["digest"],
            "parts": [parts[n].info() for n in sorted(parts)],
        }

    async def put_part(
        self, namespace: str, upload_id: str, number: int, sha256: str, body: AsyncIterable[bytes], length: int
    ) -> PartInfo:
        settings = self.store.settings
        if not 1 <= number <= settings.max_parts:
            raise BadRequest(f"part numbers run from 1 to {settings.max_parts}, got {number}")
        if length > settings.max_part_bytes:
            limit, got = format_bytes(settings.max_part_bytes), format_bytes(length)
            raise TooLarge(f"a part takes at most {limit}, this one is {got}")
        meta, parts = await self._load(namespace, upload_id)
        existing = parts.get(number)
        if existing is not None and existing.sha256 == sha256 and existing.size == length:
            async for _ in body:  # already received (a retry): drain the body and say so
                pass
            return existing.info()
        await self.store.reserve(namespace, length)
        backend = str(meta["backend"])
        key = self.store.new_object_key(namespace, "uploads", upload_id, str(number))
        committed = False
        try:
            segment, encoder = await self.store.write_object(namespace, backend, key, body)
            try:
                if encoder.size != length:
                    raise BadRequest(f"part {number} had {encoder.size} bytes, Content-Length said {length}")
                if encoder.hexdigest() != sha256:
                    raise DigestMismatch(
                        f"part {number}: its sha256 is {encoder.hexdigest()}, the request said {sha256}; "
                        "the part was not stored, send it again"
                    )
                part = Part(number, sha256, segment)
                replaced = await self.store.commit_part_script(
                    keys=[keyspace.upload(namespace, upload_id), keyspace.pending(namespace)],
                    args=[f"part:{number}", part.encode(), f"{backend}|{key}"],
                )
                if replaced is None:
                    raise NotFound(f"upload {upload_id!r} was aborted or expired while part {number} was sent")
                committed = True
                await self.store.count_stored(backend, segment.stored)
            finally:
                if not committed:
                    await asyncio.shield(self.store.discard_object(namespace, backend, key))
        finally:
            if not committed:
                await asyncio.shield(self.store.release(namespace, length))
        if replaced:  # a different part under the same number: the old one is gone
            old = Part.decode(number, replaced)
            await self.store.backends[old.segment.backend].delete(old.segment.object)
            await self.store.count_stored(old.segment.backend, -old.segment.stored)
            await self.store.release(namespace, old.size)
        return part.info()

    async def complete(self, namespace: str, upload_id: str, body: CompleteUpload) -> PutResult:
        digest = parse_digest(str(body.get("digest", "")))
        done = await self.redis.get(keyspace.completed(namespace, upload_id))
        if done is not None:
            result: PutResult = orjson.loads(done)
            if result["digest"] != digest:
                raise BadRequest(f"upload {upload_id!r} already completed as {result['digest']}, not {digest}")
            return result
        meta, parts = await self._load(namespace, upload_id)
        if meta.get("digest") and meta["digest"] != digest:
            raise BadRequest(f"upload {upload_id!r} was started for {meta['digest']}, not {digest}")
        chosen = self._chosen_parts(parts, body.get("parts") or [])
        size = sum(p.size for p in chosen)
        manifest = Manifest(digest, size, tuple(p.segment for p in chosen))
        if await self.store.touch(namespace, digest):
            result = {"digest": digest, "size": size, "created": False}
        else:
            actual = await self._digest_of(manifest)
            if actual != digest:
                raise DigestMismatch(
                    f"the parts, joined in the order given, hash to {actual}, not {digest}; the upload is kept: "
                    "fix the part list or re-send parts, then complete again"
                )
            created = await self.store.commit(namespace, manifest, [])
            result = {"digest": digest, "size": size, "created": created}
        kept = {p.number for p in chosen} if result["created"] else set()
        await self._finish(namespace, upload_id, parts, kept, result)
        return result

    def _chosen_parts(self, parts: dict[int, Part], listed: Sequence[Any]) -> list[Part]:
        if not listed:
            raise BadRequest("complete needs the ordered list of parts: [{number, sha256}, ...]")
        chosen: list[Part] = []
        previous = 0
        for entry in listed:
            if not isinstance(entry, dict) or not isinstance(entry.get("number"), int):
                raise BadRequest("each part in the list is {number: int, sha256: hex}")
            number = entry["number"]
            if number <= previous:
                raise BadRequest(f"parts must be listed in increasing order of number; {number} follows {previous}")
            previous = number
            part = parts.get(number)
            if part is None:
                raise BadRequest(f"part {number} was never received: list the upload to see which parts arrived")
            if parse_hex(str(entry.get("sha256", "")), f"part {number} sha256") != part.sha256:
                raise BadRequest(f"part {number} was received with sha256 {part.sha256}, the list says otherwise")
            chosen.append(part)
        return chosen

    async def _digest_of(self, manifest: Manifest) -> str:
        hasher = hashlib.sha256()
        # Hashing is cheap next to reading; large updates release the GIL, so run them off the loop.
        async for piece in self.store.read(manifest, 0, manifest.size, verify=False):
            await asyncio.to_thread(hasher.update, piece)
        return digest_of_hex(hasher.hexdigest())

    async def _finish(
        self, namespace: str, upload_id: str, parts: dict[int, Part], kept: set[int], result: PutResult
    ) -> None:
        """Forget the upload; parts that did not become segments of the blob are deleted and un-counted."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keyspace.completed(namespace, upload_id), orjson.dumps(result), ex=COMPLETED_TTL_SECONDS)
            pipe.delete(keyspace.upload(namespace, upload_id))
            await pipe.execute()
        # Global, so on its own (an entry left by a crash here names no upload: the sweeper drops it).
        await self.redis.zrem(keyspace.UPLOADS, f"{namespace}/{upload_id}")
        for number, part in parts.items():
            if number in kept:
                # Now counted as the blob's bytes in the stored:<backend> counter via commit; undo the part's.
                await self.store.count_stored(part.segment.backend, -part.segment.stored)
                continue
            await self.store.backends[part.segment.backend].delete(part.segment.object)
            await self.store.count_stored(part.segment.backend, -part.segment.stored)
            await self.store.release(namespace, part.size)

    async def abort(self, namespace: str, upload_id: str) -> int:
        """Delete an upload and its parts; returns the number of parts removed."""
        _, parts = await self._load(namespace, upload_id)
        await self.redis.delete(keyspace.upload(namespace, upload_id))
        await self.redis.zrem(keyspace.UPLOADS, f"{namespace}/{upload_id}")
        for part in parts.values():
            await self.store.backends[part.segment.backend].delete(part.segment.object)
            await self.store.count_stored(part.segment.backend, -part.segment.stored)
            await self.store.release(namespace, part.size)
        return len(parts)


def parse_part_sha(value: str | None, number: int) -> str:
    if not value:
        raise BadRequest(f"part {number}: send its sha256 (hex of the part's bytes) in the Wfboost-Sha256 header")
    return parse_hex(value, f"part {number} sha256")
