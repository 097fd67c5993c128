"""The thin Kubernetes client against kmock's stateful API emulator (real HTTP), and against a real HTTPS
server for the TLS and kubeconfig paths."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from wfboost.kube import (
    KubeApiError,
    KubeClient,
    KubeConfig,
    KubeConfigError,
    KubeTransportError,
    WatchEvent,
    WatchExpired,
    resource_path,
)
from wfboost.tls.certs import create_ca, create_serving_cert, service_names

NS = "team-a"
CONFIGMAPS = resource_path("", "v1", "configmaps", NS)


def configmap(name: str, **data: str) -> dict[str, Any]:
    metadata = {"name": name, "namespace": NS}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


@pytest.fixture
async def kube(kmock: Any) -> AsyncIterator[KubeClient]:
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=10) as client:
        yield client


def test_resource_paths() -> None:
    assert resource_path("", "v1", "pods") == "/api/v1/pods"
    assert resource_path("", "v1", "pods", "ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"
    assert (
        resource_path("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", name="wfboost")
        == "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/wfboost"
    )
    workflows = resource_path("argoproj.io", "v1alpha1", "workflows", "ns")
    assert workflows == "/apis/argoproj.io/v1alpha1/namespaces/ns/workflows"
    with pytest.raises(ValueError, match="subresource"):
        resource_path("", "v1", "pods", subresource="status")


async def test_create_get_list_delete(kube: KubeClient, kmock: Any) -> None:
    created = await kube.create(CONFIGMAPS, configmap("one", k="v"))
    assert created["data"] == {"k": "v"}
    await kube.create(CONFIGMAPS, configmap("two"))
    assert (await kube.get(f"{CONFIGMAPS}/one"))["data"] == {"k": "v"}

    listed = await kube.list(CONFIGMAPS, label_selector="app=x", field_selector="metadata.name!=z")
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == ["one", "two"]
    request = list(kmock)[-1]
    assert request.params["labelSelector"] == "app=x"
    assert request.params["fieldSelector"] == "metadata.name!=z"
    assert request.params["limit"] == "500"

    await kube.delete(f"{CONFIGMAPS}/one")
    assert [i["metadata"]["name"] for i in (await kube.list(CONFIGMAPS))["items"]] == ["two"]
    with pytest.raises(KubeApiError) as caught:
        await kube.get(f"{CONFIGMAPS}/one")
    assert caught.value.status == 404


async def test_list_follows_continue_tokens(kube: KubeClient, kmock: Any) -> None:
    pages = {
        None: {"metadata": {"resourceVersion": "41", "continue": "p2"}, "items": [configmap("a")]},
        "p2": {"metadata": {"resourceVersion": "41", "continue": "p3"}, "items": [configmap("b")]},
        "p3": {"metadata": {"resourceVersion": "41"}, "items": [configmap("c")]},
    }
    kmock[f"get {CONFIGMAPS}"] << (lambda request: pages[request.params.get("continue")])
    listed = await kube.list(CONFIGMAPS)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b", "c"]
    assert listed["metadata"] == {"resourceVersion": "41"}


async def test_patch_types(kube: KubeClient, kmock: Any) -> None:
    await kube.create(CONFIGMAPS, configmap("cm", a="1", b="2"))
    path = f"{CONFIGMAPS}/cm"
    merged = await kube.patch(path, {"data": {"b": None, "c": "3"}})
    assert merged["data"] == {"a": "1", "c": "3"}
    patched = await kube.patch(
        path,
        [{"op": "test", "path": "/data/a", "value": "1"}, {"op": "replace", "path": "/data/a", "value": "9"}],
        "json",
    )
    assert patched["data"] == {"a": "9", "c": "3"}
    await kube.patch(path, {"data": {"d": "4"}}, "strategic")
    assert kmock.objects["v1/configmaps", NS, "cm"]["data"] == {"a": "9", "c": "3", "d": "4"}
    types = [r.headers["Content-Type"] for r in kmock if r.method == "PATCH"]
    assert types == [
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
    ]
    with pytest.raises(TypeError):
        await kube.patch(path, {"data": {}}, "json")
    with pytest.raises(TypeError):
        await kube.patch(path, [{"op": "remove", "path": "/data/a"}], "merge")


async def test_replace_sends_the_whole_object(kube: KubeClient, kmock: Any) -> None:
    # kmock's emulator does not route PUT; this reaction plays the API server's replace.
    def put(request: Any) -> Any:
        kmock.objects[request.resource, request.namespace, request.name] = request.data
        return request.data

    await kube.create(CONFIGMAPS, configmap("cm", old="x"))
    kmock[f"put {CONFIGMAPS}/cm"] << put
    replaced = await kube.replace(f"{CONFIGMAPS}/cm", configmap("cm", new="y"))
    assert replaced["data"] == {"new": "y"}
    assert (await kube.get(f"{CONFIGMAPS}/cm"))["data"] == {"new": "y"}


async def test_errors_carry_status_reason_and_message(kube: KubeClient, kmock: Any) -> None:
    await kube.create(CONFIGMAPS, configmap("dup"))
    with pytest.raises(KubeApiError) as conflict:
        await kube.create(CONFIGMAPS, configmap("dup"))
    assert conflict.value.status == 409
    assert conflict.value.reason
    assert "already exists" in conflict.value.message
    assert str(conflict.value).startswith("409 ")

    kmock[f"get {CONFIGMAPS}/from-a-proxy"] << 503 << b"upstream connect error"
    with pytest.raises(KubeApiError) as proxy:
        await kube.get(f"{CONFIGMAPS}/from-a-proxy")
    assert (proxy.value.status, proxy.value.reason, proxy.value.message) == (
        503,
        "Service Unavailable",
        "upstream connect error",
    )

    status = {"kind": "Status", "apiVersion": "v1", "code": 403, "reason": "Forbidden", "message": "no"}
    kmock[f"get {CONFIGMAPS}/secret-ish"] << 403 << status
    with pytest.raises(KubeApiError) as forbidden:
        await kube.get(f"{CONFIGMAPS}/secret-ish")
    error = forbidden.value
    assert (error.status, error.reason, error.message) == (403, "Forbidden", "no")


async def test_transport_errors_and_timeouts(kmock: Any) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with KubeClient(KubeConfig.from_url(f"http://127.0.0.1:{port}")) as kube:
        with pytest.raises(KubeTransportError):
            await kube.get("/api/v1/namespaces")

    release = asyncio.Event()

    async def stall() -> dict[str, Any]:
        await release.wait()
        return {}

    kmock[f"get {CONFIGMAPS}/slow"] << stall
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), timeout=0.2) as kube:
        with pytest.raises(KubeTransportError, match="no answer"):
            await kube.get(f"{CONFIGMAPS}/slow")
    release.set()

    with pytest.raises(RuntimeError, match="not open"):
        await KubeClient(KubeConfig.from_url(str(kmock.url))).get("/api")


async def test_bearer_token_file_is_read_on_every_request(kmock: Any, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    config = KubeConfig(server=str(kmock.url).rstrip("/"), token_file=str(token))
    async with KubeClient(config) as kube:
        await kube.create(CONFIGMAPS, configmap("cm"))
        token.write_text("second")  # the kubelet rotated the projected token
        await kube.get(f"{CONFIGMAPS}/cm")
    assert [r.headers.get("Authorization") for r in kmock][-2:] == ["Bearer first", "Bearer second"]
    token.unlink()
    async with KubeClient(config) as kube:
        with pytest.raises(KubeConfigError, match="token file"):
            await kube.list(CONFIGMAPS)


async def collect(events: AsyncGenerator[WatchEvent, None], count: int, into: list[WatchEvent]) -> None:
    async with contextlib.aclosing(events):
        async for event in events:
            into.append(event)
            if len(into) == count:
                return


async def test_watch_streams_changes(kube: KubeClient, kmock: Any) -> None:
    await kube.create(CONFIGMAPS, configmap("before"))
    events: list[WatchEvent] = []
    watcher = asyncio.create_task(collect(kube.watch(CONFIGMAPS, "7", timeout_seconds=60), 4, events))
    async with asyncio.timeout(30):  # a hang guard only
        while not list(kmock[kmock.action.WATCH]):  # noqa: ASYNC110 - the watch request has arrived
            await asyncio.sleep(0.01)
        big = "x" * 300_000  # one watch line larger than aiohttp's line limit
        await kube.create(CONFIGMAPS, configmap("new", blob=big))
        await kube.patch(f"{CONFIGMAPS}/new", {"data": {"more": "1"}})
        await kube.delete(f"{CONFIGMAPS}/new")
        await watcher
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "before"),
        ("ADDED", "new"),
        ("MODIFIED", "new"),
        ("DELETED", "new"),
    ]
    assert events[1]["object"]["data"]["blob"] == big
    params = next(iter(kmock[kmock.action.WATCH])).params
    assert params["watch"] == "true"
    assert params["resourceVersion"] == "7"
    assert params["timeoutSeconds"] == "60"
    assert params["allowWatchBookmarks"] == "true"


async def test_watch_gone_asks_for_a_relist(kube: KubeClient, kmock: Any) -> None:
    gone = {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired", "message": "too old"}
    kmock["watch v1/pods"] << 410 << gone
    with pytest.raises(WatchExpired, match="too old"):
        async for _ in kube.watch(resource_path("", "v1", "pods", NS), "1"):
            pass

    expired_event = {"type": "ERROR", "object": gone}
    first = {"type": "ADDED", "object": configmap("a")}
    kmock["watch v1/configmaps"] << (first, expired_event)
    seen: list[WatchEvent] = []
    with pytest.raises(WatchExpired) as caught:
        await collect(kube.watch(CONFIGMAPS, "1"), 100, seen)
    assert [e["type"] for e in seen] == ["ADDED"]
    assert caught.value.status == 410


async def test_watch_error_events_other_than_gone(kube: KubeClient, kmock: Any) -> None:
    error = {"kind": "Status", "code": 500, "reason": "InternalError", "message": "etcd hiccup"}
    kmock["watch v1/secrets"] << ({"type": "ERROR", "object": error},)
    with pytest.raises(KubeApiError) as caught:
        async for _ in kube.watch(resource_path("", "v1", "secrets", NS)):
            pass
    assert not isinstance(caught.value, WatchExpired)
    assert (caught.value.status, caught.value.message) == (500, "etcd hiccup")


async def test_watch_ends_by_itself_when_the_server_keeps_it_open(kmock: Any) -> None:
    # kmock ignores timeoutSeconds and never closes the stream; the client's own deadline ends it.
    async with KubeClient(KubeConfig.from_url(str(kmock.url)), watch_grace=0) as kube:
        events = [e async for e in kube.watch(CONFIGMAPS, timeout_seconds=1)]
    assert events == []


# --- TLS, kubeconfig and in-cluster configuration against a real HTTPS server -----------------------------


@contextlib.asynccontextmanager
async def https_api(tmp_path: Path, tls_name: str) -> AsyncIterator[tuple[str, bytes, list[str]]]:
    """A tiny HTTPS API server whose certificate is valid for `tls_name` only (not for 127.0.0.1)."""
    ca = create_ca()
    serving = create_serving_cert(ca, service_names("kubernetes", "default", extra_dns=[tls_name]))
    (tmp_path / "srv.crt").write_bytes(serving.cert_pem)
    (tmp_path / "srv.key").write_bytes(serving.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    seen: list[str] = []

    async def get_configmap(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response(configmap(request.match_info["name"]))

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/configmaps/{name}", get_configmap)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}", ca.cert_pem, seen
    finally:
        await runner.cleanup()


async def test_kubeconfig_with_embedded_ca_server_name_and_token(tmp_path: Path) -> None:
    async with https_api(tmp_path, "api.test.example") as (url, ca_pem, seen):
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "other",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": url,
                        "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                        "tls-server-name": "api.test.example",
                    },
                }
            ],
            "users": [{"name": "me", "user": {"token": "s3cret"}}],
            "contexts": [
                {"name": "test", "context": {"cluster": "test", "user": "me", "namespace": "team-a"}},
                {"name": "other", "context": {"cluster": "missing", "user": "me"}},
            ],
        }
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig))
        config = KubeConfig.from_kubeconfig(path, context="test")
        assert config.server == url
        assert config.tls_server_name == "api.test.example"
        assert config.namespace == "team-a"
        async with KubeClient(config) as kube:
            assert (await kube.get(resource_path("", "v1", "configmaps", NS, "x")))["metadata"]["name"] == "x"
        assert seen == ["Bearer s3cret"]

        # Without the server name the certificate (no SAN for 127.0.0.1) must be refused.
        bare = KubeConfig(server=url, ca_data=ca_pem.decode(), token="t")
        async with KubeClient(bare) as kube:
            with pytest.raises(KubeTransportError):
                await kube.get(resource_path("", "v1", "configmaps", NS, "x"))

    with pytest.raises(KubeConfigError, match="cannot load kubeconfig"):
        KubeConfig.from_kubeconfig(tmp_path / "nope")
    with pytest.raises(KubeConfigError):
        KubeConfig.from_kubeconfig(path)  # the current context names a cluster that does not exist


async def test_in_cluster_configuration(tmp_path: Path) -> None:
    async with https_api(tmp_path, "kubernetes.default.svc") as (url, ca_pem, seen):
        sa = tmp_path / "sa"
        sa.mkdir()
        (sa / "token").write_text("projected-1")
        (sa / "ca.crt").write_bytes(ca_pem)
        (sa / "namespace").write_text("wfboost\n")
        host, port = url.removeprefix("https://").split(":")
        config = KubeConfig.from_in_cluster(
            environ={"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}, service_account_dir=sa
        )
        assert config.namespace == "wfboost"
        # The API server's certificate names the Service, not the loopback address the test dials.
        config = KubeConfig(
            server=config.server,
            ca_file=config.ca_file,
            token_file=config.token_file,
            tls_server_name="kubernetes.default.svc",
        )
        async with KubeClient(config) as kube:
            await kube.get(resource_path("", "v1", "configmaps", NS, "x"))
            (sa / "token").write_text("projected-2")
            await kube.get(resource_path("", "v1", "configmaps", NS, "x"))
        assert seen == ["Bearer projected-1", "Bearer projected-2"]

    with pytest.raises(KubeConfigError, match="not running in a cluster"):
        KubeConfig.from_in_cluster(environ={})
    with pytest.raises(KubeConfigError, match="missing"):
        KubeConfig.from_in_cluster(
            environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
            service_account_dir=tmp_path / "absent",
        )
    ipv6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    cfg = KubeConfig.from_in_cluster(environ=ipv6, service_account_dir=tmp_path / "sa")
    assert cfg.server == "https://[fd00::1]:443"
