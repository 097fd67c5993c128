"""Objects as files under one directory (a PersistentVolumeClaim in the cluster).

A write goes to a temporary file in the same directory, is fsynced, then renamed into place: a crash leaves
either nothing or a whole object under the final name, never a torn one. File I/O runs in worker threads so a
slow volume does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

READ_SIZE = 1024 * 1024


class FilesystemBackend:
    name = "fs"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key escapes the store root: {key!r}")
        return path

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final = self._path(key)
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        handle: BinaryIO = await asyncio.to_thread(open, temp, "wb")
        written = 0
        try:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
            await asyncio.to_thread(_flush_and_sync, handle)
            handle.close()
            await asyncio.to_thread(os.replace, temp, final)
        except BaseException:
            handle.close()
            temp.unlink(missing_ok=True)
            raise
        return written

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self._path(key)
        handle: BinaryIO = await asyncio.to_thread(open, path, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            remaining = end - start
            while remaining > 0:
                chunk = await asyncio.to_thread(handle.read, min(READ_SIZE, remaining))
                if not chunk:
                    raise OSError(f"{key}: file ends {remaining} bytes early")
                remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def close(self) -> None:
        return None


def _flush_and_sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
