"""The HTTPS admission server (aiohttp).

Routes: `POST /mutate/{restore,pods,split,workflows,workflowtaskresults}`, `GET /healthz`, `GET /readyz`,
`GET /metrics`.
The server holds its parts (certificate and policy reloaders, the Redis store, the Kubernetes client) and opens
and closes them as an async context manager; the service shell (wfboost.service) runs its sites and its loops.

Every AdmissionReview gets an allowing answer (admission.py). Bodies that are not AdmissionReviews get a 4xx with
a one-line message; no response ever carries a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType

import orjson
from aiohttp import web

from wfboost.blobs.client import SideStoreClient
from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore
from wfboost.cache.tally import CacheTally
from wfboost.kube import KubeClient
from wfboost.kube.namespaces import NamespaceLabels
from wfboost.policy import PolicyWatcher
from wfboost.service.shell import Site, add_status_routes, run_service, status_app
from wfboost.service.tasks import ServiceTasks
from wfboost.tls.reloader import CertificateReloader, new_server_context
from wfboost.webhook.admission import Admission, Route, budget_for
from wfboost.webhook.config import WebhookConfig
from wfboost.webhook.errors import BadReview
from wfboost.webhook.go_duration import parse_go_duration
from wfboost.webhook.metrics import Metrics
from wfboost.webhook.redis_probe import probe_redis
from wfboost.webhook.routes import ROUTES
from wfboost.webhook.wire import parse_review

log = logging.getLogger(__name__)

# Reading an offloaded Argo template happens inside an admission: it must answer well within the deadline.
KUBE_READ_TIMEOUT = 2.0
# A replica whose policy selects namespaces by label waits this long for their first list before it calls itself
# ready: sooner, it would answer "off" for every label-gated namespace; never ready would make a broken watch
# (RBAC, API down) take the webhook, and the pods that need restoring, down with it.
NAMESPACE_SYNC_GRACE = 30.0


class WebhookServer:
    """Everything one running server holds. Tests build it directly to inject routes, a store or reloaders.

    Use as `async with server:` around serving; `tasks` are its background loops (certificate and policy reload,
    namespace labels), started and stopped by whoever serves it (`serve`, or a test harness).
    """

    def __init__(
        self,
        config: WebhookConfig,
        *,
        routes: dict[str, Route] | None = None,
        metrics: Metrics | None = None,
        tls: CertificateReloader | None = None,
        policy: PolicyWatcher | None = None,
        store: CacheStore | None = None,
        kube: KubeClient | None = None,
        sidestore: SideStoreClient | None = None,
    ) -> None:
        c = self.config = config
        self.metrics = metrics or Metrics()
        self.tls = tls or CertificateReloader(c.cert_dir, cert_name=c.cert_file, key_name=c.key_file,
                                              context=client_auth_context(c.client_ca_file))
        self.policy = policy or PolicyWatcher(c.policy_path, own_namespace=c.own_namespace, interval=c.reload_interval)
        if store is None and c.redis_url:
            store = CacheStore(redis_client.connect(c.redis_url))
        self.store = store
        self._owns_kube = kube is None and c.kube_config is not None
        if self._owns_kube:
            assert c.kube_config is not None
            kube = KubeClient(c.kube_config, timeout=KUBE_READ_TIMEOUT, connect_timeout=KUBE_READ_TIMEOUT)
        self.kube = kube
        self._owns_sidestore = sidestore is None and c.sidestore_url is not None
        if self._owns_sidestore:
            assert c.sidestore_url is not None
            sidestore = SideStoreClient(
                c.sidestore_url,
                token_file=c.sidestore_token_file,
                ca_file=str(c.sidestore_ca_file) if c.sidestore_ca_file else None,
            )
        self.sidestore = sidestore
        self.namespaces = NamespaceLabels(kube) if kube is not None else None
        self._started = time.monotonic()
        watcher, namespaces = self.policy, self.namespaces
        self.admission = Admission(
            routes=routes if routes is not None else dict(ROUTES),
            policy=lambda: watcher.current,
            metrics=self.metrics,
            store=self.store,
            sidestore=self.sidestore,
            kube=self.kube,
            namespace_labels=namespaces.labels if namespaces is not None else (lambda _: None),
            tally=CacheTally() if self.store is not None else None,
        )
        self.tasks = ServiceTasks("webhook")
        self.tasks.add("tls-reload", lambda: self.tls.run(c.reload_interval))
        self.tasks.add("policy-reload", self.policy.run)
        if self.namespaces is not None:
            self.tasks.add("namespace-labels", self.namespaces.run)
        tally, store = self.admission.tally, self.store
        if tally is not None and store is not None:
            self.tasks.add("cache-tally", lambda: tally.run(store.redis, c.tally_interval))
        if store is not None:
            up = self.metrics.redis_up
            self.tasks.add("redis-probe", lambda: probe_redis(store.redis, c.reload_interval, up))
        self._wire_status_metrics()

    async def __aenter__(self) -> WebhookServer:
        if self._owns_kube and self.kube is not None:
            await self.kube.__aenter__()
        if self._owns_sidestore and self.sidestore is not None:
            await self.sidestore.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.store is not None:
            await self.store.redis.aclose()
        if self._owns_kube and self.kube is not None:
            await self.kube.close()
        if self._owns_sidestore and self.sidestore is not None:
            await self.sidestore.__aexit__(None, None, None)

    def _wire_status_metrics(self) -> None:
        tls, policy, m = self.tls, self.policy, self.metrics
        m.policy_valid.set_function(lambda: 0.0 if policy.last_error else 1.0)
        m.tls_not_after.set_function(tls.not_after_timestamp)
        m.reload_counts.policy_errors = lambda: policy.errors
        m.reload_counts.tls_reloads = lambda: tls.reloads
        m.reload_counts.tls_errors = lambda: tls.reload_errors

    async def missing(self) -> Sequence[str]:
        """What the server still lacks before it is ready to admit (empty: ready)."""
        missing = []
        if not self.tls.loaded:
            missing.append("TLS certificate not loaded")
        if not self.policy.loaded:
            missing.append("policy not loaded")
        namespaces = self.namespaces
        if (namespaces is not None and not namespaces.synced and self.policy.current.reads_namespace_labels
                and time.monotonic() - self._started < NAMESPACE_SYNC_GRACE):
            missing.append("namespace labels not listed yet (the policy selects namespaces by label)")
        return missing

    # --- HTTP handlers -------------------------------------------------------------------------------------

    async def mutate(self, request: web.Request) -> web.StreamResponse:
        route = request.match_info["route"]
        started = time.perf_counter()
        outcome = "bad_request"
        try:
            response, outcome = await self._mutate(request, route)
            return response
        finally:
            self.metrics.requests.labels(route=route, outcome=outcome).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)

    async def _mutate(self, request: web.Request, route: str) -> tuple[web.StreamResponse, str]:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"request body of {request.content_length} bytes exceeds the {limit}-byte limit"), (
                "too_large"
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request body exceeds the {limit}-byte limit"), "too_large"
        try:
            review = parse_review(body)
        except BadReview as exc:
            log.info("bad request on /mutate/%s from %s: %s", route, request.remote, exc)
            return _error(400, f"not an AdmissionReview: {exc}"), "bad_request"
        requested = parse_go_duration(request.query.get("timeout", ""))
        budget = budget_for(self.config.webhook_timeout, requested)
        result = await self.admission.admit(route, review, budget)
        return web.Response(body=orjson.dumps(result.review), content_type="application/json"), result.outcome

    # --- applications --------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The admission application (HTTPS), with the status routes too."""
        app = web.Application(client_max_size=self.config.max_body_bytes, middlewares=[_no_tracebacks])
        app.router.add_post("/mutate/{route}", self.mutate)
        add_status_routes(app, registry=self.metrics.registry, readiness=self.missing)
        return app

    def build_status_app(self) -> web.Application:
        """Health and metrics without TLS, for probes and Prometheus on a separate port."""
        return status_app(registry=self.metrics.registry, readiness=self.missing, middlewares=[_no_tracebacks])

    def sites(self) -> list[Site]:
        c = self.config
        sites = [Site(self.build_app(), c.host, c.port, self.tls.context, "admission", c.shutdown_timeout,
                      reuse_port=c.reuse_port)]
        if c.status_socket:
            sites.append(Site(self.build_status_app(), c.host, 0, None, "health and metrics to the parent",
                              unix_path=c.status_socket))
        elif c.metrics_port:
            sites.append(Site(self.build_status_app(), c.host, c.metrics_port, None, "health and metrics"))
        return sites

    def load_now(self) -> None:
        """Read certificate and policy files once, before accepting connections."""
        self.tls.check_now()
        self.policy.check_now()


Middleware = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Middleware) -> web.StreamResponse:
    """HTTP errors keep their status with a plain message; anything unexpected is a 500 without a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason if not exc.text or exc.text.startswith("<") else exc.text)
        raise
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return _error(500, "internal error; see the wfboost server log")


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message.rstrip() + "\n")


async def serve(config: WebhookConfig, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then drain: Kubernetes sends SIGTERM on rollout."""
    server = WebhookServer(config)
    server.load_now()
    if not server.tls.loaded:
        log.warning("no usable certificate in %s yet; serving starts once one appears", config.cert_dir)
    async with server:
        await run_service("webhook", sites=server.sites(), tasks=server.tasks, stop=stop)


__all__ = ["WebhookServer", "serve"]


def client_auth_context(client_ca: Path | None) -> ssl.SSLContext:
    """The serving TLS context; with a client CA, one that requires a client certificate chaining to it (the API
    server's, docs/tls.md). Raises ValueError, with the reason, for a CA file that cannot be used."""
    context = new_server_context()
    if client_ca is None:
        return context
    try:
        context.load_verify_locations(cafile=str(client_ca))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"{client_ca}: not a readable PEM CA bundle ({reason})") from None
    context.verify_mode = ssl.CERT_REQUIRED
    return context
