"""Objects in an S3-compatible bucket, through obstore (Rust's object_store, async, streaming both ways).

obstore was chosen over aiobotocore because it streams an async iterator straight into a multipart upload with
bounded buffering, streams ranged reads, and brings no botocore (whose python-dateutil pin conflicts with the
Kubernetes client's). Objects are immutable and written once, so S3's whole-object semantics fit exactly: an
object that is not completed does not exist.

The URL is `s3://bucket[/prefix]?endpoint=https://host:port&region=...&allow_http=true`; credentials come from
the usual AWS_* environment variables (or the pod's web identity), never from the URL.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

UPLOAD_PART_SIZE = 8 * 1024 * 1024
UPLOAD_CONCURRENCY = 2  # parts in flight per object: bounds memory at about this × part size
READ_CHUNK = 1024 * 1024


class S3Backend:
    name = "s3"

    def __init__(self, url: str) -> None:
        from obstore.store import S3Store  # imported here: only a service configured with S3 pays for it

        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"S3 backend URL must look like s3://bucket[/prefix]?endpoint=...: {url!r}")
        query = dict(urllib.parse.parse_qsl(parsed.query))
        config: dict[str, Any] = {}
        if "endpoint" in query:
            config["endpoint"] = query["endpoint"]
        if "region" in query:
            config["region"] = query["region"]
        client_options: dict[str, Any] = {}
        if query.get("allow_http", "").lower() in ("1", "true", "yes"):
            client_options["allow_http"] = True
        prefix = parsed.path.strip("/") or None
        self.store = S3Store(parsed.netloc, prefix=prefix, config=config, client_options=client_options)  # type: ignore[arg-type]

    async def write(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        import obstore

        written = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal written
            async for chunk in chunks:
                written += len(chunk)
                yield chunk

        await obstore.put_async(
            self.store, key, counted(), chunk_size=UPLOAD_PART_SIZE, max_concurrency=UPLOAD_CONCURRENCY
        )
        return written

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        import obstore

        if end <= start:
            return
        result = await obstore.get_async(self.store, key, options={"range": (start, end)})
        async for chunk in result.stream(min_chunk_size=READ_CHUNK):
            yield bytes(chunk)

    async def delete(self, key: str) -> None:
        import obstore

        try:
            await obstore.delete_async(self.store, key)
        except FileNotFoundError:
            return

    async def close(self) -> None:
        return None
