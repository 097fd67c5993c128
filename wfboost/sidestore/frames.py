"""Turning a byte stream into verified zstd frames, and frames back into bytes.

Each frame holds at most `frame_size` plain bytes (1 MiB by default) and is compressed on its own, with zstd's
content checksum, so that: memory per request is one frame, not one blob; a Range read decompresses only the
frames it overlaps; and corruption at rest is caught per frame on every read. Compression and hashing run in a
worker thread (both release the GIL), so one large upload does not stall every other request on the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator

import zstandard

DEFAULT_FRAME_SIZE = 1024 * 1024
DEFAULT_LEVEL = 3


class FrameEncoder:
    """Cuts, hashes and compresses a stream; after `encode` is exhausted, `frames`, `size` and `hexdigest()`
    describe what went through."""

    def __init__(self, *, level: int = DEFAULT_LEVEL, frame_size: int = DEFAULT_FRAME_SIZE) -> None:
        self.frame_size = frame_size
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        self._hash = hashlib.sha256()
        self.frames: list[tuple[int, int]] = []
        self.size = 0

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def _pack(self, plain: bytes) -> bytes:
        self._hash.update(plain)
        packed = self._compressor.compress(plain)
        self.frames.append((len(plain), len(packed)))
        self.size += len(plain)
        return packed

    async def encode(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        pending = bytearray()
        async for chunk in chunks:
            pending += chunk
            while len(pending) >= self.frame_size:
                plain = bytes(pending[: self.frame_size])
                del pending[: self.frame_size]
                yield await asyncio.to_thread(self._pack, plain)
        if pending:
            yield await asyncio.to_thread(self._pack, bytes(pending))


def decompress_frame(packed: bytes) -> bytes:
    """One frame's plain bytes; raises zstandard.ZstdError when the frame's checksum does not match."""
    return zstandard.ZstdDecompressor().decompress(packed)


async def split_frames(chunks: AsyncIterable[bytes], lengths: list[int]) -> AsyncIterator[bytes]:
    """Regroup a byte stream read from a backend into whole frames of the given compressed lengths."""
    pending = bytearray()
    index = 0
    async for chunk in chunks:
        pending += chunk
        while index < len(lengths) and len(pending) >= lengths[index]:
            frame = bytes(pending[: lengths[index]])
            del pending[: lengths[index]]
            index += 1
            yield frame
    if index != len(lengths) or pending:
        raise OSError(f"stored object ended after {index} of {len(lengths)} frames")
