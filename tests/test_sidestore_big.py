"""A 2 GiB blob uploaded in parts to a separately started service process (HTTPS, real Valkey, real files),
whose peak resident memory (VmHWM from /proc) must stay under 200 MiB; then a Range read near its end.

The data is generated while it is sent (a random MiB with a counter stamped in each copy), so the test process
never holds it either. Run alone: `.venv/bin/pytest -q -s tests/test_sidestore_big.py` prints the numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from tests.sidestore_fixtures import TOKENS, SideStoreTls, collect, make_tls, sidestore_redis_url, write_clients_file
from wfboost.blobs.client import ClientSettings, SideStoreClient
from wfboost_dev.demo.processes import RedisProcess, free_port

MiB = 1024 * 1024
TOTAL = 2 * 1024 * MiB
PART = 64 * MiB
RSS_LIMIT = 200 * MiB
NS = "team-a"
BASE = os.urandom(MiB)


def chunk(index: int) -> bytes:
    return index.to_bytes(8, "big") + BASE[8:]


def part_chunks(number: int) -> Iterator[bytes]:
    first = (number - 1) * PART // MiB
    for index in range(first, first + PART // MiB):
        yield chunk(index)


async def part_body(number: int) -> AsyncIterator[bytes]:
    for piece in part_chunks(number):
        yield piece


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@contextlib.contextmanager
def service_process(valkey: RedisProcess, tls: SideStoreTls, root: Path, clients: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "wfboost",
        "--log-level",
        "WARNING",
        "sidestore",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--redis-url",
        sidestore_redis_url(valkey),
        "--large-backend",
        f"file://{root}",
        "--cert-dir",
        str(tls.cert_dir),
        "--clients",
        str(clients),
        "--gc-interval",
        "0",
        "--kube-url",
        f"http://127.0.0.1:{free_port()}",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"service exited: {process.stderr.read().decode() if process.stderr else ''}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("service did not listen within 60 s")
            time.sleep(0.05)
        yield f"https://127.0.0.1:{port}", process.pid
    finally:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.mark.slow
async def test_two_gib_multipart_upload_keeps_the_service_small(valkey: RedisProcess, tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    clients = write_clients_file(tmp_path / "clients.yaml")
    root = tmp_path / "pvc"
    redis.Redis.from_url(sidestore_redis_url(valkey)).flushdb()
    parts = TOTAL // PART
    whole = hashlib.sha256()
    part_shas: list[str] = []
    for number in range(1, parts + 1):
        h = hashlib.sha256()
        for piece in part_chunks(number):
            h.update(piece)
            whole.update(piece)
        part_shas.append(h.hexdigest())
    digest = "sha256:" + whole.hexdigest()

    with service_process(valkey, tls, root, clients) as (url, pid):
        baseline = vm_hwm(pid)
        settings = ClientSettings(timeout=60, read_timeout=120, complete_timeout=900)
        async with SideStoreClient(url, token=TOKENS["team-a"], ca_file=str(tls.ca_file), settings=settings) as client:
            upload_id = (await client.start_upload(NS, digest=digest, size=TOTAL))["upload_id"]
            started = time.monotonic()
            for number in range(1, parts + 1):
                await client.upload_part(
                    NS, upload_id, number, part_shas[number - 1], PART, lambda n=number: part_body(n)
                )
            uploaded = time.monotonic()
            order = [{"number": n, "sha256": s} for n, s in enumerate(part_shas, 1)]
            result = await client.complete_upload(NS, upload_id, digest, order)  # type: ignore[arg-type]
            completed = time.monotonic()
            assert result == {"digest": digest, "size": TOTAL, "created": True}
            tail_start = TOTAL - 3 * MiB - 5
            tail = await collect(client.stream(NS, digest, start=tail_start, end=TOTAL - 1))
            expected = b"".join(chunk(i) for i in range(TOTAL // MiB - 4, TOTAL // MiB))
            assert tail == expected[MiB - 5 : -1]
            info = await client.info(NS, digest)
        peak = vm_hwm(pid)
    stored = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(
        f"\n2 GiB in {parts} parts of 64 MiB: upload {uploaded - started:.1f} s "
        f"({TOTAL / MiB / (uploaded - started):.0f} MiB/s), complete (verify) {completed - uploaded:.1f} s; "
        f"service VmHWM {peak / MiB:.1f} MiB (at start {baseline / MiB:.1f} MiB); stored {stored / MiB:.1f} MiB"
    )
    assert info["backend"] == "fs" and info["stored"] == stored
    assert peak < RSS_LIMIT, f"the service peaked at {peak / MiB:.1f} MiB"
