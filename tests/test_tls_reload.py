"""Certificate rotation under load: a real aiohttp HTTPS server started once with `CertificateReloader`'s
context, clients that keep handshaking while the files change underneath (the kubelet's symlink swap and
plain atomic renames), and files caught half-written.

Serials are read on the client side: the client context's SSLObject class records the certificate of every
handshake it completes, so the test sees exactly what a client (the API server) was shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from wfboost.tls.certs import CertKeyPair, create_ca, create_serving_cert, merge_ca_bundle, service_names
from wfboost.tls.reloader import CertificateReloader

HOSTNAME = "wfboost.wfboost.svc"  # verified by the client through aiohttp's server_hostname
NAMES = service_names("wfboost", "wfboost", extra_ips=["127.0.0.1"])


def serial_of(pair: CertKeyPair) -> int:
    return pair.certificate.serial_number


# --- how certificates reach the directory -----------------------------------------------------------------


class KubeletVolume:
    """A Secret volume as the kubelet lays it out: `<dir>/..<stamp>/tls.crt`, `<dir>/..data -> ..<stamp>`,
    `<dir>/tls.crt -> ..data/tls.crt`. An update writes a new stamp directory and swaps `..data` with one
    rename, then removes the old stamp directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._counter = itertools.count()

    def publish(self, pair: CertKeyPair) -> None:
        stamp = f"..{datetime.datetime.now(datetime.UTC):%Y_%m_%d_%H_%M_%S}.{next(self._counter)}"
        (self.root / stamp).mkdir(parents=True)
        (self.root / stamp / "tls.crt").write_bytes(pair.cert_pem)
        (self.root / stamp / "tls.key").write_bytes(pair.key_pem)
        data = self.root / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        (self.root / "..data_tmp").symlink_to(stamp)
        os.replace(self.root / "..data_tmp", data)
        for name in ("tls.crt", "tls.key"):
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")
        if old is not None:
            for child in (self.root / old).iterdir():
                child.unlink()
            (self.root / old).rmdir()


def replace_file(path: Path, content: bytes) -> None:
    """Write-then-rename: a reader sees the old file or the new one, never a mix."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(content)
    os.replace(temp, path)


# --- a real HTTPS server and clients ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def https_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """aiohttp on 127.0.0.1 and a free port, started once with the reloader's context; yields the port."""

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=context)
    await site.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        await runner.cleanup()


def recording_client_context(ca_bundle: bytes, seen: list[int]) -> ssl.SSLContext:
    """A verifying client context (hostname and chain) that appends the server certificate's serial to
    `seen` after each completed handshake."""

    class RecordingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # raises SSLWantRead/Write until the handshake is complete
            der = self.getpeercert(binary_form=True)
            assert der is not None
            seen.append(x509.load_der_x509_certificate(der).serial_number)

    context = ssl.create_default_context(cadata=ca_bundle.decode())
    context.sslobject_class = RecordingSSLObject
    return context


@dataclass
class Traffic:
    """Two kinds of clients running side by side until stopped."""

    port: int
    trust: bytes
    fresh_serials: list[int] = field(default_factory=list)  # one per new connection
    kept_serials: list[int] = field(default_factory=list)  # handshakes of the keep-alive client (1 expected)
    fresh_ok: int = 0
    kept_ok: int = 0
    failures: list[BaseException] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    async def _get(self, session: aiohttp.ClientSession, context: ssl.SSLContext) -> None:
        async with session.get(self.url, ssl=context, server_hostname=HOSTNAME) as response:
            assert response.status == 200
            assert await response.text() == "ok"

    async def new_connections(self) -> None:
        context = recording_client_context(self.trust, self.fresh_serials)
        connector = aiohttp.TCPConnector(force_close=True)  # a new TCP connection and handshake per request
        async with aiohttp.ClientSession(connector=connector) as session:
            while not self.stop.is_set():
                try:
                    await self._get(session, context)
                    self.fresh_ok += 1
                except Exception as exc:
                    self.failures.append(exc)
                await asyncio.sleep(0)

    async def keep_alive(self) -> None:
        context = recording_client_context(self.trust, self.kept_serials)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            while not self.stop.is_set():
                try:
                    await self._get(session, context)
                    self.kept_ok += 1
                except Exception as exc:
                    self.failures.append(exc)
                await asyncio.sleep(0.001)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Traffic]:
        tasks = [asyncio.create_task(self.new_connections()), asyncio.create_task(self.keep_alive())]
        try:
            yield self
        finally:
            self.stop.set()
            await asyncio.gather(*tasks)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition the test causes; the bound only turns a hang into a failure."""
    async with asyncio.timeout(30):
        while not condition():  # noqa: ASYNC110 - the conditions are counters the client tasks bump
            await asyncio.sleep(0.005)


# --- tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["kubelet", "rename"])
async def test_rotation_under_load_drops_nothing(tmp_path: Path, layout: Literal["kubelet", "rename"]) -> None:
    old_ca, new_ca = create_ca(), create_ca()
    first = create_serving_cert(old_ca, NAMES)
    second = create_serving_cert(new_ca, NAMES)  # rotation to a new CA
    third = create_serving_cert(new_ca, NAMES)  # renewal under the same CA
    now = datetime.datetime.now(datetime.UTC)
    trust = merge_ca_bundle(old_ca.cert_pem, new_ca.cert_pem, now)  # what caBundle holds during rotation

    volume = KubeletVolume(tmp_path)
    if layout == "kubelet":
        volume.publish(first)
    else:
        replace_file(tmp_path / "tls.crt", first.cert_pem)
        replace_file(tmp_path / "tls.key", first.key_pem)

    reloader = CertificateReloader(tmp_path)
    assert reloader.check_now()
    assert reloader.loaded
    assert reloader.serial == serial_of(first)
    context_at_start = reloader.context

    async with https_server(reloader.context) as port, Traffic(port, trust).running() as traffic:
        await until(lambda: traffic.fresh_ok >= 20 and traffic.kept_ok >= 20)

        # Rotation to a new CA, then an explicit check.
        if layout == "kubelet":
            volume.publish(second)
        else:
            replace_file(tmp_path / "tls.key", second.key_pem)  # key first: the pair does not match yet
            assert not reloader.check_now()
            assert reloader.serial == serial_of(first)
            assert reloader.reload_errors == 1
            mark = len(traffic.fresh_serials)
            await until(lambda: len(traffic.fresh_serials) >= mark + 5)
            assert set(traffic.fresh_serials[mark:]) == {serial_of(first)}  # still the old, whole pair
            replace_file(tmp_path / "tls.crt", second.cert_pem)
        assert reloader.check_now()
        assert reloader.serial == serial_of(second)
        mark = len(traffic.fresh_serials)
        await until(lambda: traffic.fresh_serials[mark:].count(serial_of(second)) >= 5)
        assert_switched(traffic.fresh_serials[mark:], serial_of(first), serial_of(second))
        kept_at_rotation = traffic.kept_ok

        # Renewal picked up by the polling loop alone.
        poller = asyncio.create_task(reloader.run(interval=0.01))
        try:
            if layout == "kubelet":
                volume.publish(third)
            else:
                replace_file(tmp_path / "tls.key", third.key_pem)
                replace_file(tmp_path / "tls.crt", third.cert_pem)
            await until(lambda: bool(traffic.fresh_serials) and traffic.fresh_serials[-1] == serial_of(third))
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        mark = len(traffic.fresh_serials)
        await until(lambda: len(traffic.fresh_serials) >= mark + 5)
        await until(lambda: traffic.kept_ok >= kept_at_rotation + 20)

    assert traffic.failures == []
    assert reloader.context is context_at_start
    assert reloader.reloads == 3
    assert reloader.serial == serial_of(third)
    # New connections saw the three certificates in order.
    order = [s for s, _ in itertools.groupby(traffic.fresh_serials)]
    assert order == [serial_of(first), serial_of(second), serial_of(third)]
    # The long-lived connection handshook once, with the first certificate, and kept working throughout.
    assert traffic.kept_serials == [serial_of(first)]
    # (One handshake on that client's context means one connection served all of its requests.)
    assert traffic.kept_ok >= kept_at_rotation + 20


def assert_switched(serials: list[int], old: int, new: int) -> None:
    """After a reload, new connections show the new certificate. The one handshake that was already under
    way when the context changed may still finish with the old one: connections started before a reload
    keep what they began with."""
    in_flight = 0
    while in_flight < len(serials) and serials[in_flight] == old:
        in_flight += 1
    assert in_flight <= 1, serials
    assert set(serials[in_flight:]) == {new}


async def test_half_written_files_keep_serving_the_old_certificate(tmp_path: Path) -> None:
    ca = create_ca()
    old, new = create_serving_cert(ca, NAMES), create_serving_cert(ca, NAMES)
    (tmp_path / "tls.crt").write_bytes(old.cert_pem)
    (tmp_path / "tls.key").write_bytes(old.key_pem)
    changes: list[int] = []
    reloader = CertificateReloader(tmp_path, on_change=lambda r: changes.append(r.reloads))
    assert reloader.check_now()

    async with (
        https_server(reloader.context) as port,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
    ):
        seen: list[int] = []
        client = recording_client_context(ca.cert_pem, seen)

        async def presented() -> int:
            async with session.get(f"https://127.0.0.1:{port}/", ssl=client, server_hostname=HOSTNAME) as r:
                assert r.status == 200
            return seen[-1]

        assert await presented() == serial_of(old)

        # A writer caught halfway through the certificate (written in place, no rename).
        with (tmp_path / "tls.crt").open("wb") as handle:
            handle.write(new.cert_pem[: len(new.cert_pem) // 2])
        assert not reloader.check_now()
        assert reloader.reload_errors == 1
        assert reloader.last_error
        assert not reloader.check_now()  # same bad bytes on the next tick: not counted again
        assert reloader.reload_errors == 1
        assert await presented() == serial_of(old)

        # The whole certificate now, but the key is still the old one.
        (tmp_path / "tls.crt").write_bytes(new.cert_pem)
        assert not reloader.check_now()
        assert reloader.reload_errors == 2
        assert "does not match" in (reloader.last_error or "")
        assert await presented() == serial_of(old)

        # A key file truncated to nothing.
        (tmp_path / "tls.key").write_bytes(b"")
        assert not reloader.check_now()
        assert await presented() == serial_of(old)

        # Missing key (deleted between two writes).
        (tmp_path / "tls.key").unlink()
        assert not reloader.check_now()
        assert "cannot read" in (reloader.last_error or "")
        assert await presented() == serial_of(old)

        # Complete and consistent at last.
        (tmp_path / "tls.key").write_bytes(new.key_pem)
        assert reloader.check_now()
        assert reloader.last_error is None
        assert await presented() == serial_of(new)

    assert reloader.loaded
    assert reloader.reloads == 2
    assert reloader.not_after == new.certificate.not_valid_after_utc
    assert changes[0] == 1
    assert changes[-1] == 2
    assert len(changes) == 2 + reloader.reload_errors


async def test_nothing_loaded_until_files_appear(tmp_path: Path) -> None:
    reloader = CertificateReloader(tmp_path, cert_name="cert.pem", key_name="key.pem")
    assert not reloader.check_now()
    assert not reloader.loaded
    assert reloader.not_after is None
    assert reloader.serial is None
    assert reloader.reload_errors == 1
    ca = create_ca()
    pair = create_serving_cert(ca, NAMES)
    (tmp_path / "key.pem").write_bytes(pair.key_pem)
    (tmp_path / "cert.pem").write_bytes(pair.cert_pem)
    assert reloader.check_now()
    assert reloader.loaded
    assert reloader.serial == serial_of(pair)
    assert not reloader.check_now()  # unchanged content: nothing to do
    assert reloader.reloads == 1
    assert reloader.context.minimum_version >= ssl.TLSVersion.TLSv1_2
