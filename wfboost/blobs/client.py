"""The side store's client library (used by the webhook, the recorder and `wfboost sidestore`).

One pooled aiohttp session per client. Small calls are bounded by `timeout` (default 2 s, well inside an
admission deadline: the webhook must fail open, not hang); streaming transfers are bounded by a per-read timeout
instead, since their total length depends on their size. Idempotent calls (reads, content-addressed PUTs, parts,
completion, references) are retried with exponential backoff and jitter on transport errors and 502/503/504;
a body is re-sent only when it can be produced again (bytes, a file, or a factory of streams).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import aiohttp
import orjson

from wfboost.blobs.wire import (
    BlobInfo,
    BlobList,
    CompletePart,
    GcReportBody,
    PartInfo,
    PutResult,
    RefBody,
    UploadInfo,
)

RETRY_STATUSES = frozenset({502, 503, 504})
STREAM_CHUNK = 256 * 1024
BodyFactory = Callable[[], AsyncIterable[bytes]]

log = logging.getLogger(__name__)


class SideStoreClientError(Exception):
    """The side store answered with an error (status, machine reason, human message)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class SideStoreUnavailable(SideStoreClientError, ConnectionError):
    """No answer: connection refused, TLS failure or timeout, after the retries. The one class every caller
    (the webhook's fail-open classification included) catches for "the side store could not be reached"."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "Unavailable", message)


@dataclass(frozen=True)
class ClientSettings:
    timeout: float = 2.0
    connect_timeout: float = 0.5
    read_timeout: float = 30.0  # longest silence allowed inside a streaming transfer
    complete_timeout: float = 600.0  # completing a multipart upload re-reads it all to verify the digest
    retries: int = 2
    backoff: float = 0.05
    max_backoff: float = 1.0
    pool_size: int = 32


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(data: bytes) -> str:
    return "sha256:" + sha256_hex(data)


class SideStoreClient:
    """Use as `async with SideStoreClient(url, token=...) as client:`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        server_hostname: str | None = None,
        settings: ClientSettings | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token, self.token_file = token, Path(token_file) if token_file else None
        self.settings = settings or ClientSettings()
        self.server_hostname = server_hostname
        self._ssl: ssl.SSLContext | bool = False
        self.ca_file = Path(ca_file) if ca_file else None
        self._ca_seen = self._ca_stamp()
        if self.base_url.startswith("https://"):
            context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                context.load_cert_chain(cert_file, key_file)
            self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    def _ca_stamp(self) -> tuple[int, int, int] | None:
        try:
            found = self.ca_file.stat() if self.ca_file is not None else None
        except OSError:
            return None
        return None if found is None else (found.st_ino, found.st_mtime_ns, found.st_size)

    def _refresh_trust(self) -> None:
        """A CA file that changed (a rotated Secret, swapped in by the kubelet) is added to what the client trusts:
        new connections verify against it, open ones stay, and the CA before it stays trusted too, so a side store
        that still serves a certificate of the old CA during the rotation is reached as well. Checked at every call
        (one stat), as the token is re-read."""
        if self.ca_file is None or not isinstance(self._ssl, ssl.SSLContext):
            return
        stamp = self._ca_stamp()
        if stamp is None or stamp == self._ca_seen:
            return
        try:
            self._ssl.load_verify_locations(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError, ValueError) as exc:  # half written: tried again at the next call
            log.warning("side store CA %s could not be read (the CA trusted so far stays): %s", self.ca_file, exc)
            return
        self._ca_seen = stamp
        log.info("side store CA %s reloaded", self.ca_file)

    async def __aenter__(self) -> SideStoreClient:
        connector = aiohttp.TCPConnector(ssl=self._ssl, limit=self.settings.pool_size)
        self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": "wfboost-sidestore"})
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- blobs ----------------------------------------------------------------------------------------------

    async def put(self, namespace: str, data: bytes, *, refs: Sequence[RefBody] = ()) -> PutResult:
        """Store bytes under their digest (computed here); safe to call again with the same bytes."""
        return await self.put_stream(namespace, digest_of(data), len(data), lambda: _once(data), refs=refs)

    async def put_stream(
        self, namespace: str, digest: str, length: int, body: BodyFactory, *, refs: Sequence[RefBody] = ()
    ) -> PutResult:
        """Stream a blob whose digest and length are known; `body()` must give the same bytes on every call."""
        params = [("ref", _ref_query(r)) for r in refs]
        params += [("ttl", str(r["ttl_seconds"])) for r in refs if "ttl_seconds" in r][:1]
        result = await self._call(
            "PUT",
            f"{_ns(namespace)}/blobs/{digest}",
            params=params,
            body=body,
            headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"},
            streaming=True,
        )
        return cast(PutResult, result)

    async def head(self, namespace: str, digest: str) -> int | None:
        """The blob's size, or None when this namespace has no such blob."""
        try:
            headers = await self._call("HEAD", f"{_ns(namespace)}/blobs/{digest}", want="headers")
        except SideStoreClientError as exc:
            if exc.status == 404:
                return None
            raise
        return int(headers["Content-Length"])

    async def get(self, namespace: str, digest: str) -> bytes:
        """A whole blob in memory: for small values only; use `stream` for large ones."""
        return b"".join([chunk async for chunk in self.stream(namespace, digest)])

    async def stream(
        self, namespace: str, digest: str, *, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Plain bytes [start, end) (end exclusive; both optional), streamed. Retried only before the first byte."""
        headers: dict[str, str] = {}
        if start is not None or end is not None:
            headers["Range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"
        response = await self._call("GET", f"{_ns(namespace)}/blobs/{digest}", headers=headers, want="response")
        assert isinstance(response, aiohttp.ClientResponse)
        try:
            async for chunk in response.content.iter_chunked(STREAM_CHUNK):
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SideStoreUnavailable(f"GET {digest}: the transfer broke off: {exc or type(exc).__name__}") from exc
        finally:
            response.release()

    async def view(self, namespace: str, reference: str) -> str:
        """The text a reference (or an argument table's cell, `…#<row>[<input>]`) stands for, checked by the
        service against the reference's size and digest (wfboost.sidestore.view)."""
        return cast(str, await self._call("GET", f"{_ns(namespace)}/view/{quote(reference.strip(), safe='')}",
                                          want="text"))

    async def info(self, namespace: str, digest: str) -> BlobInfo:
        return cast(BlobInfo, await self._call("GET", f"{_ns(namespace)}/blobs/{digest}/info"))

    async def list(self, namespace: str, *, after: str | None = None, limit: int = 100) -> BlobList:
        params = [("limit", str(limit))] + ([("after", after)] if after else [])
        return cast(BlobList, await self._call("GET", f"{_ns(namespace)}/blobs", params=params))

    # --- references -----------------------------------------------------------------------------------------

    async def add_ref(self, namespace: str, ref: RefBody, digests: Sequence[str]) -> int:
        body = {"ref": ref, "blobs": list(digests)}
        result = await self._call("POST", f"{_ns(namespace)}/refs", json_body=body)
        return int(result["added"])

    async def remove_ref(self, namespace: str, kind: str, ident: str) -> int:
        result = await self._call("DELETE", f"{_ns(namespace)}/refs/{kind}/{ident}")
        return int(result["removed"])

    # --- multipart ------------------------------------------------------------------------------------------

    async def start_upload(self, namespace: str, *, digest: str | None = None, size: int | None = None) -> UploadInfo:
        body: dict[str, Any] = {}
        if digest:
            body["digest"] = digest
        if size is not None:
            body["size"] = size
        # Not retried: a lost answer would start a second upload (harmless: it expires) but the caller must know.
        return cast(UploadInfo, await self._call("POST", f"{_ns(namespace)}/uploads", json_body=body, retries=0))

    async def upload_info(self, namespace: str, upload_id: str) -> UploadInfo:
        return cast(UploadInfo, await self._call("GET", f"{_ns(namespace)}/uploads/{upload_id}"))

    async def upload_part(
        self, namespace: str, upload_id: str, number: int, sha256: str, length: int, body: BodyFactory
    ) -> PartInfo:
        result = await self._call(
            "PUT",
            f"{_ns(namespace)}/uploads/{upload_id}/parts/{number}",
            body=body,
            headers={"Content-Length": str(length), "Wfboost-Sha256": sha256},
            streaming=True,
        )
        return cast(PartInfo, result)

    async def complete_upload(
        self, namespace: str, upload_id: str, digest: str, parts: Sequence[CompletePart]
    ) -> PutResult:
        result = await self._call(
            "POST",
            f"{_ns(namespace)}/uploads/{upload_id}/complete",
            json_body={"digest": digest, "parts": list(parts)},
            total_timeout=self.settings.complete_timeout,
        )
        return cast(PutResult, result)

    async def abort_upload(self, namespace: str, upload_id: str) -> None:
        await self._call("DELETE", f"{_ns(namespace)}/uploads/{upload_id}")

    async def upload_file(
        self,
        namespace: str,
        path: str | os.PathLike[str],
        *,
        part_size: int = 64 * 1024 * 1024,
        upload_id: str | None = None,
        concurrency: int = 2,
    ) -> PutResult:
        """Upload a file in parts; with `upload_id`, resume: only the parts the store has not got are sent."""
        path = Path(path)
        size = path.stat().st_size
        part_hashes, digest = await asyncio.to_thread(_hash_file_parts, path, part_size)
        if upload_id is None:
            upload_id = (await self.start_upload(namespace, digest=digest, size=size))["upload_id"]
        received = {p["number"]: p["sha256"] for p in (await self.upload_info(namespace, upload_id))["parts"]}
        gate = asyncio.Semaphore(concurrency)

        async def send(number: int, sha: str) -> None:
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            async with gate:
                await self.upload_part(
                    namespace, upload_id, number, sha, length, lambda: _read_file(path, offset, length)
                )

        missing = [(n, sha) for n, sha in enumerate(part_hashes, 1) if received.get(n) != sha]
        await asyncio.gather(*(send(n, sha) for n, sha in missing))
        parts: list[CompletePart] = [{"number": n, "sha256": sha} for n, sha in enumerate(part_hashes, 1)]
        return await self.complete_upload(namespace, upload_id, digest, parts)

    # --- admin ----------------------------------------------------------------------------------------------

    async def gc(self, *, dry_run: bool = False) -> GcReportBody:
        params = [("dry_run", "true" if dry_run else "false")]
        return cast(GcReportBody, await self._call("POST", "/v1/gc", params=params, total_timeout=600.0, retries=0))

    async def namespaces(self) -> Any:
        return await self._call("GET", "/v1/namespaces")

    # --- plumbing -------------------------------------------------------------------------------------------

    def _authorization(self) -> dict[str, str]:
        token = self.token
        if self.token_file is not None:
            token = self.token_file.read_text().strip()  # re-read: a rotated Secret is picked up at once
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
        body: BodyFactory | None = None,
        json_body: Any = None,
        want: str = "json",
        streaming: bool = False,
        total_timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        if self._session is None:
            raise RuntimeError("SideStoreClient is not open: use `async with SideStoreClient(...)`")
        self._refresh_trust()
        s = self.settings
        if streaming or want == "response":
            timeout = aiohttp.ClientTimeout(total=None, connect=s.connect_timeout, sock_read=s.read_timeout)
        else:
            timeout = aiohttp.ClientTimeout(total=total_timeout or s.timeout, connect=s.connect_timeout)
        attempts = 1 + (s.retries if retries is None else retries)
        last_error = ""
        for attempt in range(attempts):
            if attempt:
                delay = min(s.max_backoff, s.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random()))
            all_headers = {**self._authorization(), **(headers or {})}
            data: Any = None
            if body is not None:
                data = body()
            elif json_body is not None:
                data = orjson.dumps(json_body)
                all_headers["Content-Type"] = "application/json"
            try:
                response = await self._session.request(
                    method,
                    self.base_url + path,
                    params=list(params),
                    headers=all_headers,
                    data=data,
                    timeout=timeout,
                    server_hostname=self.server_hostname,
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                last_error = f"{method} {path}: {exc or type(exc).__name__}"
                continue
            if response.status in RETRY_STATUSES and attempt + 1 < attempts:
                last_error = f"{method} {path}: HTTP {response.status}"
                response.release()
                continue
            if response.status >= 400:
                payload = await response.read()
                response.release()
                raise _error(response.status, payload, response.headers, method, path)
            if want == "response":
                return response
            try:
                if want == "headers":
                    return dict(response.headers)
                if want == "text":
                    return (await response.read()).decode()
                return orjson.loads(await response.read())
            except (aiohttp.ClientError, TimeoutError) as exc:
                last_error = f"{method} {path}: {exc or type(exc).__name__}"
                continue
            finally:
                response.release()
        raise SideStoreUnavailable(f"{last_error} (after {attempts} attempt{'s' if attempts > 1 else ''})")


def _ns(namespace: str) -> str:
    return f"/v1/namespaces/{namespace}"


def _ref_query(ref: RefBody) -> str:
    return f"{ref['kind']}:{ref['id']}"


def _error(status: int, payload: bytes, headers: Mapping[str, str], method: str, path: str) -> SideStoreClientError:
    if not payload and "Wfboost-Error" in headers:
        return SideStoreClientError(status, headers.get("Wfboost-Reason", "Error"), headers["Wfboost-Error"])
    try:
        doc = orjson.loads(payload)
        return SideStoreClientError(status, str(doc.get("reason", "Error")), str(doc.get("message", "")))
    except (orjson.JSONDecodeError, AttributeError):
        text = payload.decode("utf-8", "replace").strip()[:300]
        return SideStoreClientError(status, "Error", text or f"{method} {path}")


async def _once(data: bytes) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), STREAM_CHUNK):
        yield data[offset : offset + STREAM_CHUNK]


async def _read_file(path: Path, offset: int, length: int) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(offset)
        remaining = length
        while remaining > 0:
            chunk = await asyncio.to_thread(handle.read, min(1024 * 1024, remaining))
            if not chunk:
                raise OSError(f"{path} is shorter than when it was hashed")
            remaining -= len(chunk)
            yield chunk


def _hash_file_parts(path: Path, part_size: int) -> tuple[list[str], str]:
    whole = hashlib.sha256()
    parts: list[str] = []
    with path.open("rb") as handle:
        while True:
            part = hashlib.sha256()
            remaining = part_size
            while remaining > 0:
                chunk = handle.read(min(1024 * 1024, remaining))
                if not chunk:
                    break
                part.update(chunk)
                whole.update(chunk)
                remaining -= len(chunk)
            if remaining == part_size:
                break
            parts.append(part.hexdigest())
    return parts, "sha256:" + whole.hexdigest()
