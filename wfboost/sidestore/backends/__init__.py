"""The one interface every storage backend implements.

Backends store opaque, immutable objects (a segment's compressed frames) under names the store chooses; they know
nothing of digests, namespaces, references or quotas, which live in the metadata (Redis) so that every backend
gets them the same way. Immutability is what makes this small: no partial updates, no versions, and a write is
"all or nothing" (a reader never sees half an object under its final name).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol


class Backend(Protocol):
    name: str

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the stream under `key` and return the number of bytes stored; all or nothing."""
        ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of the object."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error (GC may retry)."""
        ...

    async def close(self) -> None: ...
