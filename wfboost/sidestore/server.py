"""The side store's HTTP API (aiohttp).

Every route of the API port requires credentials (middleware, before routing, so an unauthenticated caller
learns nothing, not even which paths exist); a second, optional plain-HTTP port serves only /healthz, /readyz
and /metrics, for the kubelet and Prometheus. Bodies stream both ways: a request or response body is never held
whole. Resources (Redis, backends, the workflow watch, the sweeper) open and close in `cleanup_ctx`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from wfboost.blobs.wire import AddRefs, CompleteUpload, RefBody, StartUpload
from wfboost.cache import redis_client
from wfboost.kube import KubeClient, KubeConfig, KubeError
from wfboost.policy import PolicyWatcher
from wfboost.service.shell import Site, add_status_routes, run_service, status_app
from wfboost.service.tasks import ServiceTasks
from wfboost.sidestore import keyspace
from wfboost.sidestore.auth import Authenticator, Client
from wfboost.sidestore.config import SideStoreConfig, backend_name, make_backend
from wfboost.sidestore.digest import parse_digest
from wfboost.sidestore.errors import (
    AuthConfigError,
    BadRequest,
    LengthRequired,
    RangeNotSatisfiable,
    Refusal,
    TooLarge,
    Unauthorized,
)
from wfboost.sidestore.gc import Sweeper
from wfboost.sidestore.live_workflows import LiveWorkflows
from wfboost.sidestore.metrics import SideStoreMetrics
from wfboost.sidestore.refs import parse_ref_query, ref_name
from wfboost.sidestore.store import BlobStore
from wfboost.sidestore.tls import peer_common_name, serving_tls
from wfboost.sidestore.uploads import Uploads, parse_part_sha
from wfboost.sidestore.view import MAX_VIEWED_BYTES, VIEW_HEADERS, parse_viewed, viewed_text
from wfboost.tls.reloader import CertificateReloader

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
PREFIX = "/v1/namespaces/{namespace}"
CLIENT = web.RequestKey("client", Client)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) for a single `bytes=` range; None to send the whole blob (no header, or several
    ranges, which a server may ignore); 416 when the range lies outside the blob."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        if "," in header:
            return None
        raise BadRequest(f"cannot parse Range {header[:80]!r}: expected bytes=START-END, bytes=START- or bytes=-N")
    first, last = match.groups()
    if not first and not last:
        raise BadRequest("Range bytes=- names no bytes")
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"range {header} is empty for a blob of {size} bytes", size)
        return max(size - suffix, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(f"range {header} starts beyond the blob's {size} bytes", size)
    return start, end


class SideStoreServer:
    """Everything one running service holds; tests build it directly with their own parts."""

    def __init__(
        self,
        config: SideStoreConfig,
        *,
        store: BlobStore | None = None,
        live: LiveWorkflows | None = None,
        metrics: SideStoreMetrics | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or SideStoreMetrics()
        self.auth = authenticator or Authenticator(config.clients_file)
        self.policy = PolicyWatcher(config.policy_path, interval=config.reload_interval)
        if store is None:
            redis = redis_client.connect(config.redis_url, socket_timeout=10.0)
            backends = {backend_name(config.backend): make_backend(config.backend, redis)}
            large = None
            if config.large_backend:
                large = backend_name(config.large_backend)
                backends.setdefault(large, make_backend(config.large_backend, redis))
            store = BlobStore(
                redis,
                backends,
                default=backend_name(config.backend),
                large=large,
                settings=config.store,
                quota_for=lambda namespace: self.policy.current.side_store.namespace_quota_bytes,
            )
        self.store = store
        self.uploads = Uploads(store)
        self.live = live or LiveWorkflows()
        self.sweeper = Sweeper(store, self.live, on_delete=self.metrics.gc_deleted)
        self.tls: CertificateReloader | None = None
        if config.tls_cert and config.tls_key:
            self.tls = serving_tls(config.tls_cert, config.tls_key, config.client_ca)
            if not self.tls.loaded:
                raise ValueError(f"cannot use the serving certificate: {self.tls.last_error}")
            self.metrics.tls_not_after.set_function(self.tls.not_after_timestamp)
        elif not config.insecure_http:
            raise ValueError("the side store serves TLS only: give a certificate and key (or insecure_http for a demo)")
        self.tasks = ServiceTasks("sidestore")
        self.tasks.add("policy-reload", self.policy.run)
        self.tasks.add("credentials-reload", self._reload_loop)
        self.tasks.add("live-workflows", self._watch_workflows)
        if config.gc_interval > 0:
            self.tasks.add("gc", self._gc_loop)

    async def __aenter__(self) -> SideStoreServer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.store.close()
        with contextlib.suppress(RedisError, OSError):
            await self.store.redis.aclose()

    # --- application ----------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        blob = PREFIX + "/blobs/{digest}"
        upload = PREFIX + "/uploads/{upload_id}"
        r.add_put(blob, self.put_blob, name="put_blob")
        r.add_get(blob, self.get_blob, name="get_blob", allow_head=False)
        r.add_route("HEAD", blob, self.head_blob, name="head_blob")
        r.add_get(blob + "/info", self.blob_info, name="blob_info")
        r.add_get(PREFIX + "/blobs", self.list_blobs, name="list_blobs")
        r.add_get(PREFIX + "/view/{reference}", self.view_reference, name="view_reference")
        r.add_post(PREFIX + "/uploads", self.start_upload, name="start_upload")
        r.add_get(upload, self.get_upload, name="get_upload")
        r.add_delete(upload, self.abort_upload, name="abort_upload")
        r.add_put(upload + "/parts/{number}", self.put_part, name="put_part")
        r.add_post(upload + "/complete", self.complete_upload, name="complete_upload")
        r.add_post(PREFIX + "/refs", self.add_refs, name="add_refs")
        r.add_delete(PREFIX + "/refs/{kind}/{id}", self.remove_ref, name="remove_ref")
        r.add_get("/v1/namespaces", self.list_namespaces, name="list_namespaces")
        r.add_post("/v1/gc", self.gc, name="gc")
        self._add_probes(app)
        return app

    def build_metrics_app(self) -> web.Application:
        """Health and metrics without credentials, for the kubelet and Prometheus on a port of their own."""
        return status_app(registry=self.metrics.registry, readiness=self.missing, before_metrics=self._refresh_gauges)

    def _add_probes(self, app: web.Application) -> None:
        add_status_routes(app, registry=self.metrics.registry, readiness=self.missing,
                          before_metrics=self._refresh_gauges)

    def sites(self) -> list[Site]:
        c = self.config
        ssl_context = self.tls.context if self.tls is not None else None
        sites = [Site(self.build_app(), c.host, c.port, ssl_context, "the side store API", 10.0)]
        if c.metrics_port:
            sites.append(Site(self.build_metrics_app(), c.host, c.metrics_port, None, "health and metrics"))
        return sites

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reload_interval)
            try:
                if self.auth.reload():
                    log.info("clients file reloaded: %d clients", len(self.auth.clients))
            except AuthConfigError as exc:  # no client was ever loaded: every request keeps being refused
                log.warning("clients file: %s", exc)
            if self.tls is not None and self.tls.check_now():
                log.info("serving certificate reloaded")

    async def _watch_workflows(self) -> None:
        try:
            if self.config.kube_url:
                kube_config = KubeConfig.from_url(self.config.kube_url)
            else:
                kube_config = await asyncio.to_thread(KubeConfig.load, self.config.kubeconfig)
        except KubeError as exc:
            log.warning("no Kubernetes API (%s): workflow references are never collected", exc)
            return
        async with KubeClient(kube_config) as kube:
            await self.live.run(kube)

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.gc_interval)
            try:
                report = await self.sweeper.sweep()
                self.metrics.gc_runs.labels("skipped" if report["skipped"] else "ok").inc()
            except Exception:
                self.metrics.gc_runs.labels("error").inc()
                log.exception("gc sweep failed")

    # --- middleware -----------------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.monotonic()
        route = request.match_info.route.name or "unknown"
        try:
            request[CLIENT] = self._authenticate(request)
            response = await handler(request)
            outcome = str(response.status)
        except Refusal as exc:
            outcome = exc.reason
            response = _error_response(exc)
        except web.HTTPException as exc:
            outcome = str(exc.status)
            response = web.json_response({"reason": exc.reason, "message": exc.text or exc.reason}, status=exc.status)
        except (ConnectionResetError, asyncio.CancelledError):
            self.metrics.requests.labels(route, "client_gone").inc()
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            outcome = "error"
            response = web.json_response({"reason": "InternalError", "message": "internal error (logged)"}, status=500)
        self.metrics.requests.labels(route, outcome).inc()
        self.metrics.latency.labels(route).observe(time.monotonic() - started)
        return response

    def _authenticate(self, request: web.Request) -> Client:
        subject = None
        transport = request.transport
        if transport is not None:
            subject = peer_common_name(transport.get_extra_info("peercert"))
        return self.auth.authenticate(request.headers.get("Authorization"), subject)

    def _namespace(self, request: web.Request) -> str:
        namespace = request.match_info["namespace"]
        if not _NAMESPACE.fullmatch(namespace):
            raise BadRequest(f"{namespace[:80]!r} is not a namespace name")
        client: Client = request[CLIENT]
        client.require(namespace)
        return namespace

    # --- blobs ----------------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> AsyncIterator[bytes]:
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            self.metrics.bytes_in.inc(len(chunk))
            yield chunk

    def _length(self, request: web.Request) -> int:
        if request.content_length is None:
            raise LengthRequired("send Content-Length (bodies of unknown length go through a multipart upload)")
        return request.content_length

    async def put_blob(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        digest = parse_digest(request.match_info["digest"])
        length = self._length(request)
        refs: list[RefBody] = [
            parse_ref_query(value, request.query.get("ttl")) for value in request.query.getall("ref", [])
        ]
        result = await self.store.put(namespace, digest, self._body(request), length, refs)
        return web.json_response(result, status=201 if result["created"] else 200, dumps=_dumps)

    async def head_blob(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        info = await self.store.info(namespace, parse_digest(request.match_info["digest"]))
        headers = _blob_headers(info["digest"])
        headers["Content-Length"] = str(info["size"])
        headers["Wfboost-Stored-Bytes"] = str(info["stored"])
        return web.Response(status=200, headers=headers)

    async def get_blob(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        manifest = await self.store.manifest(namespace, parse_digest(request.match_info["digest"]))
        wanted = parse_range(request.headers.get("Range"), manifest.size)
        start, end = wanted if wanted is not None else (0, manifest.size)
        response = web.StreamResponse(status=200 if wanted is None else 206, headers=_blob_headers(manifest.digest))
        response.content_type = "application/octet-stream"
        response.content_length = end - start
        if wanted is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{manifest.size}"
        await response.prepare(request)
        try:
            async for piece in self.store.read(manifest, start, end):
                await response.write(piece)
                self.metrics.bytes_out.inc(len(piece))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            # Headers are gone: the only honest signal left is to cut the connection short of Content-Length.
            log.error("read of %s/%s failed mid-stream: %s", namespace, manifest.digest, exc)
            if request.transport is not None:
                request.transport.close()
            self.metrics.requests.labels("get_blob", "read_failed").inc()
            return response
        await response.write_eof()
        return response

    async def view_reference(self, request: web.Request) -> web.StreamResponse:
        """The value a reference stands for, as a person reads it (wfboost.sidestore.view): what `kubectl get -o
        yaml` shows, pasted into the URL, gives the text it replaced. Same authentication and namespace scope as a
        blob."""
        namespace = self._namespace(request)
        wanted = parse_viewed(request.match_info["reference"])
        manifest = await self.store.manifest(namespace, wanted.reference.digest)
        if manifest.size > MAX_VIEWED_BYTES:
            raise TooLarge(f"{wanted.reference.text} is {manifest.size} bytes, more than is shown here; GET "
                           f"{PREFIX.format(namespace=namespace)}/blobs/{manifest.digest} streams it")
        # the whole blob's digest is checked by viewed_text against the reference (refs.value_of), with its size
        data = b"".join([piece async for piece in self.store.read(manifest, 0, manifest.size, verify=False)])
        text, content_type = viewed_text(wanted, data)
        self.metrics.bytes_out.inc(len(text))
        return web.Response(text=text, content_type=content_type, charset="utf-8", headers=VIEW_HEADERS)

    async def blob_info(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        info = await self.store.info(namespace, parse_digest(request.match_info["digest"]), with_refs=True)
        return web.json_response(info, dumps=_dumps)

    async def list_blobs(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        after = request.query.get("after")
        if after:
            parse_digest(after)
        try:
            limit = min(max(int(request.query.get("limit", "100")), 1), 1000)
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        return web.json_response(await self.store.list(namespace, after=after, limit=limit), dumps=_dumps)

    # --- multipart ------------------------------------------------------------------------------------------

    async def start_upload(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        body: StartUpload = await _json_body(request, {})
        return web.json_response(await self.uploads.start(namespace, body), status=201, dumps=_dumps)

    async def get_upload(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        return web.json_response(await self.uploads.info(namespace, request.match_info["upload_id"]), dumps=_dumps)

    async def abort_upload(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        removed = await self.uploads.abort(namespace, request.match_info["upload_id"])
        return web.json_response({"aborted": True, "parts_removed": removed})

    async def put_part(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        try:
            number = int(request.match_info["number"])
        except ValueError:
            raise BadRequest("a part number is an integer from 1") from None
        sha = parse_part_sha(request.headers.get("Wfboost-Sha256"), number)
        info = await self.uploads.put_part(
            namespace, request.match_info["upload_id"], number, sha, self._body(request), self._length(request)
        )
        return web.json_response(info, status=201, dumps=_dumps)

    async def complete_upload(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        body: CompleteUpload = await _json_body(request, None)
        result = await self.uploads.complete(namespace, request.match_info["upload_id"], body)
        return web.json_response(result, status=201 if result["created"] else 200, dumps=_dumps)

    # --- references, admin, probes --------------------------------------------------------------------------

    async def add_refs(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        body: AddRefs = await _json_body(request, None)
        if not isinstance(body.get("ref"), dict) or not isinstance(body.get("blobs"), list):
            raise BadRequest('expected {"ref": {"kind": ..., "id": ...}, "blobs": ["sha256:...", ...]}')
        digests = [parse_digest(str(d)) for d in body["blobs"]]
        added = await self.store.add_ref(namespace, body["ref"], digests)
        return web.json_response({"ref": ref_name(body["ref"]), "added": added})

    async def remove_ref(self, request: web.Request) -> web.StreamResponse:
        namespace = self._namespace(request)
        kind = request.match_info["kind"]
        if kind not in ("workflow", "entry"):
            raise BadRequest("reference kinds are workflow and entry")
        ref: RefBody = {"kind": "workflow" if kind == "workflow" else "entry", "id": request.match_info["id"]}
        removed = await self.store.remove_ref(namespace, ref)
        return web.json_response({"removed": removed})

    async def list_namespaces(self, request: web.Request) -> web.StreamResponse:
        client: Client = request[CLIENT]
        client.require_admin("list namespaces")
        rows = []
        for namespace in await self.store.namespaces():
            rows.append(
                {
                    "namespace": namespace,
                    "used": await self.store.usage(namespace),
                    "quota": self.store.quota_for(namespace),
                    "blobs": int(await self.store.redis.zcard(keyspace.index(namespace))),
                }
            )
        return web.json_response({"namespaces": rows})

    async def gc(self, request: web.Request) -> web.StreamResponse:
        client: Client = request[CLIENT]
        client.require_admin("run the garbage collector")
        dry_run = request.query.get("dry_run", "false").lower() in ("1", "true", "yes")
        report = await self.sweeper.sweep(dry_run=dry_run)
        return web.json_response(report, dumps=_dumps)

    async def missing(self) -> Sequence[str]:
        try:
            await self.store.redis.ping()
        except (RedisError, OSError) as exc:
            return [f"redis: {exc}"]
        return []

    async def _refresh_gauges(self) -> None:
        for backend in self.store.backends:
            self.metrics.stored.labels(backend).set(int(await self.store.redis.get(keyspace.stored(backend)) or 0))
        self.metrics.workflows_synced.set(1 if self.live.synced else 0)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _blob_headers(digest: str) -> dict[str, str]:
    return {
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=31536000, immutable",
        "Docker-Content-Digest": digest,
    }


def _error_response(exc: Refusal) -> web.Response:
    response = web.json_response({"reason": exc.reason, "message": exc.message}, status=exc.status)
    # HEAD answers carry no body: the reason travels in headers too.
    response.headers["Wfboost-Error"] = exc.message.encode("ascii", "replace").decode()[:1000]
    response.headers["Wfboost-Reason"] = exc.reason
    if isinstance(exc, Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="wfboost-sidestore"'
    if isinstance(exc, RangeNotSatisfiable):
        response.headers["Content-Range"] = f"bytes */{exc.size}"
    return response


async def _json_body(request: web.Request, default: Any) -> Any:
    if not request.can_read_body:
        if default is None:
            raise BadRequest("this request needs a JSON body")
        return default
    if (request.content_length or 0) > 4 * 1024 * 1024:
        raise BadRequest("JSON bodies are at most 4 MiB")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def serve(config: SideStoreConfig, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set)."""
    async with SideStoreServer(config) as server:
        await run_service("sidestore", sites=server.sites(), tasks=server.tasks, stop=stop)
