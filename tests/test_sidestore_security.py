"""Authentication and tenancy over real HTTPS: no credentials, wrong credentials, another namespace, admin-only
routes, mTLS, token rotation; and the client's retries and timeouts against real servers on loopback."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.sidestore_fixtures import TOKENS, SideStoreTls, make_tls, mint_client_cert, run_sidestore, sha
from wfboost.blobs.client import ClientSettings, SideStoreClient, SideStoreClientError, SideStoreUnavailable
from wfboost_dev.demo.processes import RedisProcess, free_port


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("tls"))


async def raw(
    url: str, tls: SideStoreTls, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers or {}, ssl=context) as response,
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, (body, dict(response.headers))


async def test_every_route_needs_credentials(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    async with run_sidestore(valkey, tls, tmp_path) as ss:
        digest = sha(b"x")
        for method, path in [
            ("GET", f"/v1/namespaces/team-a/blobs/{digest}"),
            ("HEAD", f"/v1/namespaces/team-a/blobs/{digest}"),
            ("PUT", f"/v1/namespaces/team-a/blobs/{digest}"),
            ("GET", "/v1/namespaces/team-a/blobs"),
            ("POST", "/v1/namespaces/team-a/uploads"),
            ("POST", "/v1/gc"),
            ("GET", "/metrics"),
            ("GET", "/no/such/route"),
        ]:
            status, (body, headers) = await raw(ss.url + path, tls, method)
            assert status == 401, (method, path)
            assert headers["WWW-Authenticate"].startswith("Bearer")
            if body is not None:
                assert "authentication required" in body["message"]
        status, (body, _) = await raw(
            ss.url + "/v1/namespaces/team-a/blobs", tls, headers={"Authorization": "Bearer wrong"}
        )
        assert status == 401 and "not known" in body["message"]
        status, (body, _) = await raw(ss.url + "/v1/namespaces/team-a/blobs", tls, headers={"Authorization": "Basic x"})
        assert status == 401 and "Bearer <token>" in body["message"]


async def test_tenants_see_only_their_namespace(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    secret = os.urandom(1000)
    async with (
        run_sidestore(valkey, tls, tmp_path) as ss,
        ss.client("team-a") as a,
        ss.client("team-b") as b,
        ss.client("admin") as admin,
    ):
        await a.put("team-a", secret)
        # Another tenant: the same 403 whether or not the blob exists, so existence never leaks.
        for digest in (sha(secret), sha(b"absent")):
            with pytest.raises(SideStoreClientError) as caught:
                await b.head("team-a", digest)
            assert caught.value.status == 403
            assert caught.value.message == "client 'team-b' may not access namespace 'team-a'"
        with pytest.raises(SideStoreClientError) as listing:
            await b.list("team-a")
        assert listing.value.status == 403
        # Content addressing is per namespace: team-b does not get team-a's blob by digest in its own.
        assert await b.head("team-b", sha(secret)) is None
        with pytest.raises(SideStoreClientError) as missing:
            await b.get("team-b", sha(secret))
        assert missing.value.status == 404
        assert "no blob" in missing.value.message and "'team-b'" in missing.value.message
        # Admin routes need the all-namespaces identity.
        with pytest.raises(SideStoreClientError) as gc:
            await a.gc(dry_run=True)
        assert gc.value.status == 403 and "every namespace" in gc.value.message
        assert await admin.get("team-a", sha(secret)) == secret
        rows = (await admin.namespaces())["namespaces"]
        assert {"namespace": "team-a", "used": 1000, "quota": None, "blobs": 1} in rows
        metrics = await raw(ss.url + "/metrics", tls, headers={"Authorization": f"Bearer {TOKENS['admin']}"})
        assert metrics[0] == 200


async def test_mutual_tls_identity(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    recorder = mint_client_cert(tls.ca, "recorder.wfboost")
    stranger = mint_client_cert(tls.ca, "someone-else")
    for name, pair in (("recorder", recorder), ("stranger", stranger)):
        (tmp_path / f"{name}.crt").write_bytes(pair.cert_pem)
        (tmp_path / f"{name}.key").write_bytes(pair.key_pem)
    async with run_sidestore(valkey, tls, tmp_path, client_ca=True) as ss:
        settings = ClientSettings(timeout=30, retries=0)
        async with SideStoreClient(
            ss.url,
            ca_file=str(tls.ca_file),
            cert_file=str(tmp_path / "recorder.crt"),
            key_file=str(tmp_path / "recorder.key"),
            settings=settings,
        ) as client:
            result = await client.put("team-z", b"from the recorder")
            assert result["created"]
        async with SideStoreClient(
            ss.url,
            ca_file=str(tls.ca_file),
            cert_file=str(tmp_path / "stranger.crt"),
            key_file=str(tmp_path / "stranger.key"),
            settings=settings,
        ) as client:
            with pytest.raises(SideStoreClientError) as caught:
                await client.head("team-z", result["digest"])
            assert caught.value.status == 401 and "'someone-else' is not listed" in caught.value.message
        # Tokens still work on the same port.
        async with ss.client("team-a") as client:
            await client.put("team-a", b"token client")


async def test_plain_http_is_not_served(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    async with run_sidestore(valkey, tls, tmp_path) as ss:
        plain = ss.url.replace("https://", "http://")
        async with SideStoreClient(plain, token=TOKENS["admin"], settings=ClientSettings(retries=0)) as client:
            with pytest.raises(SideStoreUnavailable):
                await client.head("team-a", sha(b"x"))


async def test_token_rotation_is_picked_up(valkey: RedisProcess, tls: SideStoreTls, tmp_path: Path) -> None:
    async with run_sidestore(valkey, tls, tmp_path) as ss:
        token_file = tmp_path / "token"
        token_file.write_text(TOKENS["team-a"])
        async with SideStoreClient(ss.url, token_file=token_file, ca_file=str(tls.ca_file)) as client:
            await client.put("team-a", b"one")
            clients = tmp_path / "clients.yaml"
            text = clients.read_text().replace(TOKENS["team-b"], "rotated-team-b-token-000000000")
            clients.write_text(text)
            os.utime(clients, ns=(1, 1))  # a different mtime, whatever the clock's resolution
            assert ss.server.auth.reload()
            token_file.write_text("rotated-team-b-token-000000000")
            with pytest.raises(SideStoreClientError) as caught:
                await client.put("team-a", b"two")
            assert caught.value.status == 403  # now team-b's identity
            await client.put("team-b", b"two")


async def test_a_rotated_ca_is_trusted_without_a_restart(valkey: RedisProcess, tls: SideStoreTls,
                                                          tmp_path: Path) -> None:
    """The side store now serves a certificate of a new CA, and the client's CA file (a mounted Secret) is swapped
    for it: the next connection verifies against it, and the old CA stays trusted (a rotation serves both)."""
    old = make_tls(tmp_path / "old")
    trusted = tmp_path / "ca.crt"
    trusted.write_bytes(old.ca_file.read_bytes())
    async with run_sidestore(valkey, tls, tmp_path) as ss, SideStoreClient(
            ss.url, token=TOKENS["team-a"], ca_file=str(trusted), settings=ClientSettings(retries=0)) as client:
        with pytest.raises(SideStoreUnavailable):
            await client.put("team-a", b"one")  # the served certificate is of a CA not trusted yet
        trusted.write_bytes(tls.ca_file.read_bytes())
        os.utime(trusted, ns=(1, 1))
        await client.put("team-a", b"one")
        serials = {c["serialNumber"] for c in client._ssl.get_ca_certs()}  # type: ignore[union-attr]
        for ca in (old.ca_file, tls.ca_file):  # both trusted now
            assert ssl.create_default_context(cafile=str(ca)).get_ca_certs()[0]["serialNumber"] in serials


async def test_client_retries_transient_errors_with_backoff() -> None:
    calls: list[str] = []

    async def flaky(request: web.Request) -> web.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return web.json_response({"reason": "BackendUnavailable", "message": "try again"}, status=503)
        return web.json_response({"digest": "sha256:" + "0" * 64, "size": 1, "created": True})

    app = web.Application()
    app.router.add_put("/v1/namespaces/{ns}/blobs/{digest}", flaky)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = ClientSettings(retries=2, backoff=0.001)
        async with SideStoreClient(f"http://127.0.0.1:{port}", token="t" * 20, settings=settings) as client:
            result = await client.put("ns", b"x")
            assert result["created"] and calls == ["PUT", "PUT", "PUT"]
            calls.clear()
            async with SideStoreClient(
                f"http://127.0.0.1:{port}", settings=ClientSettings(retries=1, backoff=0.001)
            ) as c:
                with pytest.raises(SideStoreClientError) as caught:
                    await c.put("ns", b"x")
            assert caught.value.status == 503 and calls == ["PUT", "PUT"]
    finally:
        await runner.cleanup()


async def test_client_timeout_is_short_and_fails_as_unavailable() -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/namespaces/{ns}/blobs/{digest}/info", stall)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = ClientSettings(timeout=0.2, retries=1, backoff=0.001)
        async with SideStoreClient(f"http://127.0.0.1:{port}", settings=settings) as client:
            with pytest.raises(SideStoreUnavailable, match="after 2 attempts"):
                await client.info("ns", sha(b"x"))
    finally:
        release.set()
        await runner.cleanup()


async def test_the_serving_certificates_expiry_is_exported(valkey: RedisProcess, tls: SideStoreTls,
                                                           tmp_path: Path) -> None:
    """Under the webhook's metric name, so that the one certificate-expiry alert watches the side store too."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tls.cert_dir / "tls.crt").read_bytes())
    async with run_sidestore(valkey, tls, tmp_path) as ss:
        exported = ss.server.metrics.registry.get_sample_value("wfboost_tls_certificate_not_after_seconds")
    assert exported == cert.not_valid_after_utc.timestamp()
