"""Objects in Redis/Valkey, one value per chunk.

Redis is the default backend because small moved-out values (the common case: parameters of a few KiB) then cost
one round trip and no volume. A big value would block Redis while it is copied and is capped at 512 MB, so an
object is stored as a list of chunk values (each one frame, at most about 1 MiB) plus a small index of their
lengths written last: until the index exists the object does not, which makes a write all or nothing. The
store sends blobs over its size threshold to the file or object backend instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import orjson

from wfboost.sidestore import keyspace


class RedisBackend:
    name = "redis"

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        lengths: list[int] = []
        try:
            async for chunk in chunks:
                await self.redis.set(keyspace.data_chunk(key, len(lengths)), chunk)
                lengths.append(len(chunk))
            await self.redis.set(keyspace.data_index(key), orjson.dumps(lengths))
        except BaseException:
            await self._delete_chunks(key, len(lengths) + 1)  # + the one being written: it may have landed
            raise
        return sum(lengths)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        raw = await self.redis.get(keyspace.data_index(key))
        if raw is None:
            raise FileNotFoundError(f"object {key} is not in Redis")
        offset = 0
        for index, length in enumerate(orjson.loads(raw)):
            chunk_start, chunk_end = offset, offset + length
            offset = chunk_end
            if chunk_end <= start:
                continue
            if chunk_start >= end:
                break
            lo, hi = max(start, chunk_start) - chunk_start, min(end, chunk_end) - chunk_start
            if lo == 0 and hi == length:
                value = await self.redis.get(keyspace.data_chunk(key, index))
            else:
                value = await self.redis.getrange(keyspace.data_chunk(key, index), lo, hi - 1)
            if value is None or len(value) != hi - lo:
                raise OSError(f"object {key}: chunk {index} is missing or short")
            yield bytes(value)

    async def delete(self, key: str) -> None:
        raw = await self.redis.get(keyspace.data_index(key))
        if raw is not None:
            await self._delete_chunks(key, len(orjson.loads(raw)))
            await self.redis.delete(keyspace.data_index(key))
            return
        # No index: a write that died half way (the process was killed). Chunks are written in order, so they are
        # 0, 1, … up to the first one missing: found by name, without listing the keyspace (the side store's Redis
        # user may not SCAN).
        count = 0
        while await self.redis.exists(keyspace.data_chunk(key, count)):
            count += 1
        await self._delete_chunks(key, count)

    async def _delete_chunks(self, key: str, count: int) -> None:
        for first in range(0, count, 500):
            batch = [keyspace.data_chunk(key, i) for i in range(first, min(first + 500, count))]
            await self.redis.delete(*batch)

    async def close(self) -> None:
        return None
