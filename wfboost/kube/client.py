"""A thin async client for the Kubernetes REST API.

Paths in, JSON out: callers build paths with `resource_path` and get plain dicts back, because every caller
(`wfboost certs`, the recorder's pod watch, reading an offloaded ConfigMap) touches a handful of
fields and a generated model per kind would be most of the code. What the client does own is what every
caller would otherwise get wrong: a timeout on every call, the API's `Status` body turned into a
`KubeApiError`, list pagination, a watch stream read in chunks (a watch line holds a whole object, and a
Workflow can be megabytes, beyond aiohttp's line limit), and "relist" signalled as its own exception.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Protocol, TypedDict, cast

import aiohttp
import orjson

from wfboost.kube.config import KubeConfig, KubeError

JsonObject = dict[str, Any]
PatchType = Literal["merge", "json", "strategic"]
WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]

PATCH_CONTENT_TYPES: Mapping[PatchType, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


class ListMeta(TypedDict, total=False):
    resourceVersion: str


class ObjectList(TypedDict):
    """A list response with every page joined; `metadata.resourceVersion` is the one to start a watch from."""

    metadata: ListMeta
    items: builtins.list[JsonObject]


class WatchEvent(TypedDict):
    type: WatchEventType
    object: JsonObject


class KubeTransportError(KubeError):
    """The API server could not be reached or did not answer in time; the request may or may not have run."""


class KubeApiError(KubeError):
    """The API server answered with an error `Status` (HTTP status, machine reason, human message)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status, reason, message)
        self.status = status
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


class WatchExpired(KubeApiError):
    """410 Gone: the resourceVersion is older than the API server keeps. List again, then watch from the
    list's resourceVersion; resuming the watch cannot recover the events in between."""


def resource_path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """`/api/v1/...` for the core group (`group=""`), `/apis/<group>/<version>/...` for the others."""
    parts = ["api", version] if group == "" else ["apis", group, version]
    if namespace is not None:
        parts += ["namespaces", namespace]
    parts.append(plural)
    if name is not None:
        parts.append(name)
    if subresource is not None:
        if name is None:
            raise ValueError("a subresource needs an object name")
        parts.append(subresource)
    return "/" + "/".join(urllib.parse.quote(p, safe="") for p in parts)


def _error_from_response(status: int, http_reason: str | None, body: bytes) -> KubeApiError:
    # The API server (and anything that imitates it) answers errors with a `Status` object; proxies and load
    # balancers in front of it answer with HTML or plain text, which is kept, shortened, as the message.
    reason, message = http_reason or "Error", body.decode("utf-8", "replace").strip()[:500]
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        reason = str(doc.get("reason") or reason)
        message = str(doc.get("message") or message)
        status = int(doc.get("code") or status)
    cls = WatchExpired if status == 410 else KubeApiError
    return cls(status, reason, message)


class ObjectApi(Protocol):
    """The two verbs admission uses (reading an offload ConfigMap, creating an arguments ConfigMap): the client
    below, or the offline stand-in of `wfboost review --configmap`."""

    async def get(self, path: str) -> JsonObject: ...

    async def create(self, path: str, body: Mapping[str, Any]) -> JsonObject: ...


class KubeClient:
    """One aiohttp session to one API server. Use as `async with KubeClient(config) as kube:`.

    `timeout` bounds every call except watches, whose length is `timeout_seconds` (asked of the server, and
    enforced locally `watch_grace` seconds later in case the server or a proxy forgets).
    """

    def __init__(
        self,
        config: KubeConfig,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        watch_grace: float = 10.0,
        page_size: int = 500,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.watch_grace = watch_grace
        self.page_size = page_size
        self._ssl = config.ssl_context()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False),
            headers={"Accept": "application/json", "User-Agent": "wfboost"},
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- verbs ----------------------------------------------------------------------------------------------

    async def get(self, path: str) -> JsonObject:
        return await self._json("GET", path)

    async def list(
        self, path: str, label_selector: str | None = None, *, field_selector: str | None = None
    ) -> ObjectList:
        """Every item, following `continue` tokens; the pages share one snapshot, so the first page's
        resourceVersion is a valid starting point for a watch."""
        items: builtins.list[JsonObject] = []
        params: dict[str, str] = {"limit": str(self.page_size)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        resource_version: str | None = None
        while True:
            page = await self._json("GET", path, params=params)
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            if resource_version is None and meta.get("resourceVersion"):
                resource_version = str(meta["resourceVersion"])
            token = meta.get("continue")
            if not token:
                break
            params["continue"] = str(token)
        metadata: ListMeta = {"resourceVersion": resource_version} if resource_version else {}
        return {"metadata": metadata, "items": items}

    async def create(self, path: str, body: Mapping[str, Any]) -> JsonObject:
        return await self._json("POST", path, body=body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> JsonObject:
        """PUT: the whole object, guarded by its `metadata.resourceVersion` if present (409 on a race)."""
        return await self._json("PUT", path, body=body)

    async def patch(
        self,
        path: str,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        patch_type: PatchType = "merge",
    ) -> JsonObject:
        if isinstance(body, Mapping) == (patch_type == "json"):
            raise TypeError("a JSON patch is a list of operations; merge and strategic patches are objects")
        return await self._json("PATCH", path, body=body, content_type=PATCH_CONTENT_TYPES[patch_type])

    async def delete(self, path: str) -> JsonObject:
        return await self._json("DELETE", path)

    async def watch(
        self,
        path: str,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events until the server ends the watch (after `timeout_seconds`); then the caller watches again
        from the last resourceVersion it saw (BOOKMARK events carry fresh ones).

        Raises `WatchExpired` when that resourceVersion is too old (410, as HTTP status or as an ERROR
        event): the caller must relist. Other ERROR events raise `KubeApiError`. A caller that stops early
        should wrap the iterator in `contextlib.aclosing` so the connection is released at once.
        """
        params: dict[str, str] = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        # The local deadline is checked around each read rather than with `asyncio.timeout` around the loop:
        # a timeout that spans a `yield` would fire in the consumer's code instead of here.
        limit = timeout_seconds + self.watch_grace
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout, sock_read=limit)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        try:
            async with self._request("GET", path, params=params, client_timeout=timeout) as response:
                if response.status >= 400:
                    raise _error_from_response(response.status, response.reason, await response.read())
                pending = bytearray()  # a line may span many chunks: split only when one ends
                while (remaining := deadline - loop.time()) > 0:
                    try:
                        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation,
                        # which kept a cancelled watch reading until its deadline.
                        async with asyncio.timeout(remaining):
                            chunk = await response.content.readany()
                    except TimeoutError:
                        return  # past the deadline: the same as the server ending the watch
                    if not chunk:
                        break
                    pending += chunk
                    if b"\n" not in chunk:
                        continue
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield _watch_event(bytes(line))
                if pending.strip():
                    yield _watch_event(bytes(pending))
        except aiohttp.SocketTimeoutError:
            return  # silent for longer than the watch should last: end it, the caller watches again
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeTransportError(f"watch {path}: {exc or type(exc).__name__}") from exc

    # --- plumbing -------------------------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        timeout = aiohttp.ClientTimeout(total=self.timeout, connect=self.connect_timeout)
        try:
            async with self._request(
                method, path, params=params, body=body, content_type=content_type, client_timeout=timeout
            ) as response:
                payload = await response.read()
                if response.status >= 400:
                    raise _error_from_response(response.status, response.reason, payload)
        except TimeoutError:
            raise KubeTransportError(f"{method} {path}: no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise KubeTransportError(f"{method} {path}: {exc}") from exc
        try:
            doc = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            raise KubeApiError(response.status, "InvalidResponse", f"{method} {path}: not JSON") from None
        if not isinstance(doc, dict):
            raise KubeApiError(response.status, "InvalidResponse", f"{method} {path}: not a JSON object")
        return doc

    @contextlib.asynccontextmanager
    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        content_type: str = "application/json",
        client_timeout: aiohttp.ClientTimeout,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        if self._session is None:
            raise RuntimeError("KubeClient is not open: use `async with KubeClient(config)`")
        if not path.startswith("/"):
            raise ValueError(f"API paths start with '/': {path!r}")
        headers: dict[str, str] = {}
        authorization = await self._authorization()
        if authorization:
            headers["Authorization"] = authorization
        data: bytes | None = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = content_type
        async with self._session.request(
            method,
            self.config.server + path,
            params=params,
            data=data,
            headers=headers,
            timeout=client_timeout,
            server_hostname=self.config.tls_server_name,
        ) as response:
            yield response

    async def _authorization(self) -> str | None:
        # A token provider may run a kubeconfig exec plugin (a subprocess): keep it off the event loop.
        # Token files are tiny and read inline.
        if self.config.token_provider is not None:
            return await asyncio.to_thread(self.config.authorization)
        return self.config.authorization()


def _watch_event(line: bytes) -> WatchEvent:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise KubeApiError(500, "InvalidWatchEvent", f"not JSON: {line[:200]!r}") from None
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise KubeApiError(500, "InvalidWatchEvent", f"not a watch event: {line[:200]!r}")
    if event.get("type") == "ERROR":
        status = event["object"]
        raise _error_from_response(int(status.get("code") or 500), None, orjson.dumps(status))
    return cast(WatchEvent, event)
