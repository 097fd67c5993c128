"""The HTTPS admission server (aiohttp).

Routes: `POST /mutate/{pods,workflows,workflowtaskresults}`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
Resources (Redis client, certificate and policy reloaders) open and close in `cleanup_ctx`, in one visible place.

Every AdmissionReview gets an allowing answer (admission.py). Bodies that are not AdmissionReviews get a 4xx with
a one-line message; no response ever carries a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore
from wfboost.kube import KubeClient
from wfboost.kube.namespaces import NamespaceLabels
from wfboost.policy import PolicyWatcher
from wfboost.tls.reloader import CertificateReloader
from wfboost.webhook.admission import Admission, Route, budget_for
from wfboost.webhook.config import ServerSettings
from wfboost.webhook.failopen import FailOpen
from wfboost.webhook.go_duration import parse_go_duration
from wfboost.webhook.metrics import Metrics
from wfboost.webhook.routes import ROUTES
from wfboost.webhook.wire import BadReview, parse_review

log = logging.getLogger(__name__)

# Reading an offloaded Argo template happens inside an admission: it must answer well within the deadline.
KUBE_READ_TIMEOUT = 2.0


class WebhookServer:
    """Everything one running server holds. Tests build it directly to inject routes, a store or reloaders."""

    def __init__(
        self,
        settings: ServerSettings,
        *,
        routes: dict[str, Route] | None = None,
        metrics: Metrics | None = None,
        tls: CertificateReloader | None = None,
        policy: PolicyWatcher | None = None,
        store: CacheStore | None = None,
        kube: KubeClient | None = None,
    ) -> None:
        s = self.settings = settings
        self.metrics = metrics or Metrics()
        self.tls = tls or CertificateReloader(s.cert_dir, cert_name=s.cert_file, key_name=s.key_file)
        self.policy = policy or PolicyWatcher(s.policy_path, own_namespace=s.own_namespace, interval=s.reload_interval)
        if store is None and s.redis_url:
            store = CacheStore(redis_client.connect(s.redis_url))
        self.store = store
        self._owns_kube = kube is None and s.kube_config is not None
        if self._owns_kube:
            assert s.kube_config is not None
            kube = KubeClient(s.kube_config, timeout=KUBE_READ_TIMEOUT, connect_timeout=KUBE_READ_TIMEOUT)
        self.kube = kube
        self.namespaces = NamespaceLabels(kube) if kube is not None else None
        watcher, namespaces = self.policy, self.namespaces
        self.admission = Admission(
            routes=routes if routes is not None else dict(ROUTES),
            policy=lambda: watcher.current,
            store=self.store,
            kube=self.kube,
            metrics=self.metrics,
            namespace_labels=(lambda namespace: namespaces.labels(namespace)) if namespaces else (lambda _: None),
            on_fail_open=lambda reason: self.metrics.fail_open.labels(reason=reason.value).inc(),
        )
        self._wire_status_metrics()

    def _wire_status_metrics(self) -> None:
        tls, policy, m = self.tls, self.policy, self.metrics
        m.policy_valid.set_function(lambda: 0.0 if policy.last_error else 1.0)
        m.policy_reload_errors.set_function(lambda: float(policy.errors))
        m.tls_not_after.set_function(lambda: tls.not_after.timestamp() if tls.not_after else 0.0)
        m.tls_reloads.set_function(lambda: float(tls.reloads))
        m.tls_reload_errors.set_function(lambda: float(tls.reload_errors))

    @property
    def ready(self) -> tuple[bool, list[str]]:
        missing = []
        if not self.tls.loaded:
            missing.append("TLS certificate not loaded")
        if not self.policy.loaded:
            missing.append("policy not loaded")
        return (not missing, missing)

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
        limit = self.settings.max_body_bytes
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
        budget = budget_for(self.settings.webhook_timeout, requested)
        result = await self.admission.admit(route, review, budget)
        return web.Response(body=orjson.dumps(result.review), content_type="application/json"), result.outcome

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        ok, missing = self.ready
        if ok:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: " + "; ".join(missing) + "\n")

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- application -----------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes,
            middlewares=[_no_tracebacks],
        )
        app.router.add_post("/mutate/{route}", self.mutate)
        self._add_status_routes(app)
        app.cleanup_ctx.append(self._background)
        return app

    def build_status_app(self) -> web.Application:
        """Health and metrics without TLS, for probes and Prometheus on a separate port."""
        app = web.Application(middlewares=[_no_tracebacks])
        self._add_status_routes(app)
        return app

    def _add_status_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)

    async def _background(self, app: web.Application) -> AsyncIterator[None]:
        """Reload certificates and policy while the app runs; close the Redis pool when it stops."""
        interval = self.settings.reload_interval
        if self._owns_kube and self.kube is not None:
            await self.kube.__aenter__()
        tasks = [
            asyncio.create_task(self.tls.run(interval), name="tls-reload"),
            asyncio.create_task(self.policy.run(), name="policy-reload"),
        ]
        if self.namespaces is not None:
            tasks.append(asyncio.create_task(self.namespaces.run(), name="namespace-labels"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.store is not None:
            await self.store.redis.aclose()
        if self._owns_kube and self.kube is not None:
            await self.kube.close()

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


async def serve(settings: ServerSettings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set), then drain: Kubernetes sends SIGTERM on rollout."""
    server = WebhookServer(settings)
    server.load_now()
    if not server.tls.loaded:
        log.warning("no usable certificate in %s yet; serving starts once one appears", settings.cert_dir)
    runner = web.AppRunner(server.build_app(), shutdown_timeout=settings.shutdown_timeout, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=server.tls.context)
    await site.start()
    log.info("serving admission on https://%s:%d", settings.host, settings.port)
    status_runner = None
    if settings.metrics_port:
        status_runner = web.AppRunner(server.build_status_app(), access_log=None)
        await status_runner.setup()
        await web.TCPSite(status_runner, settings.host, settings.metrics_port).start()
        log.info("serving health and metrics on http://%s:%d", settings.host, settings.metrics_port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        if status_runner is not None:
            await status_runner.cleanup()
        await runner.cleanup()


__all__ = ["FailOpen", "WebhookServer", "serve"]
