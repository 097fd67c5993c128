"""`wfboost credentials` fills in the install's empty Secrets (the manifests' own, loaded from deploy/base), and what
it writes works: the ACL file starts a real Valkey where nothing runs without a password and each component reaches
only its own keys, the clients file lets the webhook's token in, and the readiness probe of deploy/base/redis.yaml
passes against that server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import kmock as kmock_lib
import pytest
import redis.asyncio as aioredis
import redis.exceptions
import yaml

from tests.test_store import P7D, RETENTION, T0, entry
from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore, Verdict, now_ms
from wfboost.certs.credentials import (
    ACL_FILE,
    REDIS_USERS,
    CredentialsConfig,
    SideStoreSecrets,
    acl_file,
    ensure_credentials,
    ensure_redis,
    new_password,
)
from wfboost.certs.reconcile import CertsConfig, CertsError, install_certificates
from wfboost.cli import build_parser, main
from wfboost.cli import credentials as credentials_cli
from wfboost.kube import KubeClient, KubeConfig, resource_path
from wfboost.sidestore import keyspace as sidestore_keys
from wfboost.sidestore.auth import parse_clients
from wfboost.sidestore.config import make_backend
from wfboost.sidestore.store import BlobStore
from wfboost_dev.demo.processes import RedisProcess, start_redis

BASE = Path(__file__).resolve().parents[1] / "deploy" / "base"
NS = "wfboost"
SECRETS = "v1/secrets"
SIDESTORE = SideStoreSecrets()
CONFIG = CredentialsConfig(namespace=NS, redis_secret="wfboost-redis-credentials", sidestore=SIDESTORE)


def manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]


def data(kmock: Any, name: str) -> dict[str, str]:
    secret = kmock.objects[SECRETS, NS, name]
    return {key: base64.b64decode(value).decode() for key, value in dict(secret.get("data") or {}).items()}


def writes(kmock: Any) -> list[str]:
    return [f"{r.method.value} {r.url.path}" for r in kmock if r.method.value in ("POST", "PUT", "PATCH", "DELETE")]


@pytest.fixture
async def kube(kmock: Any) -> AsyncIterator[KubeClient]:
    kmock.resources[SECRETS] = {}
    for secret in manifests("secrets.yaml"):  # as the install ships them: empty
        kmock.objects[SECRETS, NS, secret["metadata"]["name"]] = secret
    async with KubeClient(KubeConfig.from_url(str(kmock.url))) as client:
        yield client


async def sidestore_certificate(kube: KubeClient) -> None:
    """What the Job's first container does before `wfboost credentials` runs."""
    await install_certificates(CertsConfig(service="wfboost-sidestore", namespace=NS, secret=SIDESTORE.tls), kube)


async def test_fills_in_every_empty_secret_once(kube: KubeClient, kmock: Any) -> None:
    await sidestore_certificate(kube)
    steps = await ensure_credentials(CONFIG, kube)
    assert [(s.target, s.action) for s in steps] == [
        (f"Secret {NS}/wfboost-redis-credentials", "updated"),
        (f"Secret {NS}/wfboost-webhook-sidestore", "updated"),
        (f"Secret {NS}/wfboost-sidestore-clients", "updated"),
    ]
    redis_data = data(kmock, "wfboost-redis-credentials")
    assert set(redis_data) == {*REDIS_USERS, ACL_FILE}
    assert len({redis_data[user] for user in REDIS_USERS}) == len(REDIS_USERS)  # one password each
    assert all(re.fullmatch(r"[0-9a-f]{64}", redis_data[user]) for user in REDIS_USERS)
    for user in REDIS_USERS:  # the file holds hashes, never a password
        assert redis_data[user] not in redis_data[ACL_FILE]
        assert hashlib.sha256(redis_data[user].encode()).hexdigest() in redis_data[ACL_FILE]

    client = data(kmock, "wfboost-webhook-sidestore")
    assert client["ca.crt"] == data(kmock, SIDESTORE.tls)["ca.crt"]
    (webhook,) = parse_clients(yaml.safe_load(data(kmock, SIDESTORE.clients)["clients.yaml"]), "clients.yaml")
    assert webhook.name == "webhook" and webhook.admin
    assert webhook.token_sha256 == hashlib.sha256(client["token"].encode()).hexdigest()

    done = len(writes(kmock))
    again = await ensure_credentials(CONFIG, kube)
    assert [s.action for s in again] == ["unchanged"] * 3
    assert len(writes(kmock)) == done  # a rerun (Job retry, upgrade) writes nothing
    assert data(kmock, "wfboost-redis-credentials") == redis_data


async def test_keeps_what_is_there(kube: KubeClient, kmock: Any) -> None:
    """Operator-added side store clients stay; a password deleted to rotate it is made anew, the others stay; a
    renewed side store CA reaches the webhook's client Secret."""
    await sidestore_certificate(kube)
    await ensure_credentials(CONFIG, kube)
    clients = yaml.safe_load(data(kmock, SIDESTORE.clients)["clients.yaml"])
    team = {"name": "team-a", "tokenSha256": "ab" * 32, "namespaces": ["team-a"]}
    clients["clients"].append(team)
    secret = kmock.objects[SECRETS, NS, SIDESTORE.clients]
    secret["data"] = {"clients.yaml": base64.b64encode(yaml.safe_dump(clients).encode()).decode()}
    before = data(kmock, "wfboost-redis-credentials")
    redis_secret = kmock.objects[SECRETS, NS, "wfboost-redis-credentials"]
    redis_secret["data"] = {k: v for k, v in dict(redis_secret["data"]).items() if k != "recorder"}
    tls = kmock.objects[SECRETS, NS, SIDESTORE.tls]
    tls["data"] = {**dict(tls["data"]), "ca.crt": base64.b64encode(b"a renewed CA").decode()}

    steps = await ensure_credentials(CONFIG, kube)
    assert [s.action for s in steps] == ["updated", "updated", "unchanged"]
    after = data(kmock, "wfboost-redis-credentials")
    assert after["recorder"] != before["recorder"] and after["webhook"] == before["webhook"]
    assert after[ACL_FILE] != before[ACL_FILE]
    assert data(kmock, "wfboost-webhook-sidestore")["ca.crt"] == "a renewed CA"
    names = [c["name"] for c in yaml.safe_load(data(kmock, SIDESTORE.clients)["clients.yaml"])["clients"]]
    assert names == ["webhook", "team-a"]


async def test_says_what_is_missing(kube: KubeClient, kmock: Any) -> None:
    with pytest.raises(CertsError, match=r"wfboost-sidestore-tls has no ca.crt yet: run `wfboost certs`"):
        await ensure_credentials(CONFIG, kube)
    del kmock.objects[SECRETS, NS, "wfboost-redis-credentials"]
    with pytest.raises(CertsError, match=r"wfboost-redis-credentials not found: the install creates it empty"):
        await ensure_credentials(CONFIG, kube)


def test_the_jobs_arguments_are_the_commands() -> None:
    """The certificate Job runs `wfboost credentials` with the Secrets secrets.yaml ships and nothing else."""
    (job,) = [doc for doc in manifests("certs-job.yaml") if doc["kind"] == "Job"]
    spec = job["spec"]["template"]["spec"]
    (container,) = [c for c in spec["initContainers"] if c["args"][0] == "credentials"]
    config = credentials_cli.options_from_args(build_parser().parse_args(container["args"]))
    assert config.sidestore == SIDESTORE and config.redis_secret == "wfboost-redis-credentials"
    shipped = {doc["metadata"]["name"] for doc in manifests("secrets.yaml")}
    assert {config.redis_secret, SIDESTORE.tls, SIDESTORE.clients, SIDESTORE.webhook_client} <= shipped


# --- the ACL file on a real Valkey ------------------------------------------------------------------------------


PASSWORDS = {user: new_password() for user in REDIS_USERS}


def redis_args(acl: Path) -> list[str]:
    """deploy/base/redis.yaml's arguments (they come after start_redis's own, and win), with the ACL file where this
    test wrote it, and the data in start_redis's directory."""
    (deployment,) = [doc for doc in manifests("redis.yaml") if doc["kind"] == "Deployment"]
    args: list[str] = list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    args[args.index("--aclfile") + 1] = str(acl)
    at = args.index("--dir")
    del args[at : at + 2]
    return args


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    acl = tmp_path_factory.mktemp("acl") / "users.acl"
    acl.write_text(acl_file(PASSWORDS))
    server = start_redis(*redis_args(acl))
    try:
        yield server
    finally:
        server.stop()


def url(server: RedisProcess, user: str, db: int = 0) -> str:
    return f"redis://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}/{db}"


def resp(port: int, *commands: tuple[str, ...]) -> list[bytes]:
    """The first line of the server's answer to each command, sent on one fresh connection (no AUTH)."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, sock.makefile("rb") as answers_file:
        for command in commands:
            sock.sendall(f"*{len(command)}\r\n".encode() + b"".join(
                f"${len(part)}\r\n{part}\r\n".encode() for part in command))
            answers.append(answers_file.readline().strip())
    return answers


def test_the_bases_arguments_start_valkey(secured: RedisProcess) -> None:
    """maxmemory, the eviction policy, the ACL file and persistence as the base writes them: Valkey refuses to start
    on any it does not take, and the append-only file is where --dir says."""
    assert (secured.workdir / "appendonlydir").is_dir()


def test_nothing_runs_without_a_password(secured: RedisProcess) -> None:
    commands = [("PING",), ("GET", "wfb:v1:x"), ("SET", "wfb:v1:x", "forged"), ("FLUSHALL",), ("HELLO", "3")]
    for answer in resp(secured.port, *commands):
        assert answer.startswith(b"-NOAUTH"), answer
    wrong = resp(secured.port, ("AUTH", "webhook", PASSWORDS["recorder"]), ("AUTH", "default", ""),
                 ("SET", "wfb:v1:x", "forged"))
    assert [answer.split()[0] for answer in wrong] == [b"-WRONGPASS", b"-WRONGPASS", b"-NOAUTH"]
    assert resp(secured.port, ("AUTH", "webhook", PASSWORDS["webhook"]), ("PING",)) == [b"+OK", b"+PONG"]


async def test_each_user_reaches_its_own_keys_only(secured: RedisProcess) -> None:
    for user, own, other in (("webhook", "wfb:v1:k", "wfboost:sidestore:v1:k"),
                             ("recorder", "wfb:v1:k", "wfboost:sidestore:v1:k"),
                             ("sidestore", "wfboost:sidestore:v1:k", "wfb:v1:k")):
        client = aioredis.Redis.from_url(url(secured, user))
        try:
            assert await client.set(own, "v") and await client.get(own) == b"v"
            with pytest.raises(redis.exceptions.NoPermissionError):
                await client.get(other)
            for dangerous in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("ACL", "LIST"), ("RANDOMKEY",)):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    await client.execute_command(*dangerous)
            # SCAN names every key, whatever the key patterns: only the recorder counts leases with it.
            if user == "recorder":
                assert isinstance(await client.scan(0, match="wfb:v1:*"), (list, tuple))
            else:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    await client.scan(0)
        finally:
            await client.aclose()
    probe = aioredis.Redis.from_url(url(secured, "probe"))
    try:
        assert await probe.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            await probe.get("wfb:v1:k")
    finally:
        await probe.aclose()


async def test_the_components_work_as_their_users(secured: RedisProcess) -> None:
    """The cache's scripts as the webhook's user, the side store's scripts and Redis backend as its own (db 1, as
    the manifests say): the key patterns cover every key they touch."""
    cache = redis_client.connect(url(secured, "webhook"))
    try:
        store = CacheStore(cache)
        key = uuid.uuid4().hex * 2
        assert (await store.lookup(key, staleness=P7D, at_ms=T0)).verdict is Verdict.MISS
        assert await store.record(entry(key, "a", T0, P7D), retention=RETENTION)  # the recorder's write
        assert (await store.lookup(key, staleness=P7D, at_ms=T0 + 1000)).verdict is Verdict.HIT
        assert key in await store.keys()
    finally:
        await cache.aclose()
    side = redis_client.connect(url(secured, "sidestore", 1), socket_timeout=10.0)
    blobs = BlobStore(side, {"redis": make_backend("redis", side)}, default="redis")
    try:
        body = b"moved out of etcd" * 100
        digest = "sha256:" + hashlib.sha256(body).hexdigest()

        async def stream() -> AsyncIterator[bytes]:
            yield body

        result = await blobs.put("team-a", digest, stream(), len(body))
        assert result["created"]
        assert (await blobs.info("team-a", digest))["size"] == len(body)
        # A write killed half way left chunks and no index: found and deleted by name, no SCAN needed.
        for index in range(3):
            await side.set(sidestore_keys.data_chunk("team-a/killed", index), b"x")
        await blobs.backends["redis"].delete("team-a/killed")
        assert not await side.exists(*(sidestore_keys.data_chunk("team-a/killed", index) for index in range(3)))
    finally:
        await blobs.close()
        await side.aclose()


def test_a_backup_runs_as_the_recorders_user(secured: RedisProcess, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """docs/operations.md runs `wfboost cache export` and `import` in the recorder's container: its user may."""
    key = uuid.uuid4().hex * 2

    async def record() -> None:
        client = redis_client.connect(url(secured, "recorder"))
        try:
            assert await CacheStore(client).record(entry(key, "a", now_ms() - 1000, P7D), retention=RETENTION)
        finally:
            await client.aclose()

    asyncio.run(record())
    exported = tmp_path / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", url(secured, "recorder"), "-o", str(exported)]) == 0
    assert main(["cache", "invalidate", "--key", key, "--redis-url", url(secured, "recorder")]) == 0
    assert main(["cache", "import", "--redis-url", url(secured, "recorder"), str(exported)]) == 0
    assert "tracks written" in capsys.readouterr().out
    assert main(["cache", "show", key, "--json", "--redis-url", url(secured, "recorder")]) == 0
    assert key in capsys.readouterr().out


def test_the_readiness_probe_passes_with_the_probe_password(secured: RedisProcess) -> None:
    """The probe command of deploy/base/redis.yaml, run as written (valkey-cli, else Debian's redis-cli, which
    takes the same options), against the secured server."""
    cli = shutil.which("valkey-cli") or shutil.which("redis-cli")
    if cli is None:
        pytest.skip("neither valkey-cli nor redis-cli is installed (Debian: redis-tools)")
    (deployment,) = [doc for doc in manifests("redis.yaml") if doc["kind"] == "Deployment"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    script = command[2].replace("valkey-cli", f"{cli} -p {secured.port}")
    ok = subprocess.run([*command[:2], script], env={"PROBE_PASSWORD": PASSWORDS["probe"], "PATH": "/usr/bin:/bin"},
                        capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*command[:2], script], env={"PROBE_PASSWORD": "wrong", "PATH": "/usr/bin:/bin"},
                         capture_output=True, timeout=10)
    assert bad.returncode != 0


def test_the_manifests_urls_connect_as_the_kubelet_expands_them(secured: RedisProcess) -> None:
    """Each component's WFBOOST_REDIS_URL with its $(WFBOOST_REDIS_PASSWORD) put in as the kubelet does (the
    variable defined above it, from the Secret), the Service's address pointed at the test server."""
    for name, user in (("webhook.yaml", "webhook"), ("recorder.yaml", "recorder"), ("sidestore.yaml", "sidestore")):
        (deployment,) = [doc for doc in manifests(name) if doc["kind"] == "Deployment"]
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["WFBOOST_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "wfboost-redis-credentials", "key": user}
        expanded = env["WFBOOST_REDIS_URL"]["value"].replace("$(WFBOOST_REDIS_PASSWORD)", PASSWORDS[user])
        local = expanded.replace("@wfboost-redis:6379/", f"@127.0.0.1:{secured.port}/")
        assert local != expanded

        async def ping(address: str = local) -> bool:
            client = redis_client.connect(address)
            try:
                return bool(await client.ping())
            finally:
                await client.aclose()

        assert asyncio.run(ping()), name


def plain(value: Any) -> Any:
    """kmock's stored object as plain JSON values."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


async def test_a_concurrent_writer_wins_and_its_password_is_kept(kube: KubeClient, kmock: Any) -> None:
    """The install's Job and the CronJob's at once: the patch names the resourceVersion it read, the API server
    refuses it when another writer came first, and the command reads again and keeps the other's password. The API
    server's part (a merge patch with metadata.resourceVersion is a precondition: 409 Conflict when it differs) is
    played here; kmock's emulator applies every patch, so the reaction keeps the server's truth itself."""
    name = "wfboost-redis-credentials"
    key = (SECRETS, NS, name)
    theirs = new_password()
    truth = plain(kmock.objects[key])
    truth["metadata"]["resourceVersion"] = "7"
    kmock.objects[key] = truth
    sent: list[dict[str, Any]] = []

    def patch(request: Any) -> Any:
        nonlocal truth
        if not sent:  # the other writer's patch lands between our read and our write
            truth = {**truth, "metadata": {**truth["metadata"], "resourceVersion": "8"},
                     "data": {**(truth.get("data") or {}), "webhook": base64.b64encode(theirs.encode()).decode()}}
        sent.append(request.data)
        version = truth["metadata"]["resourceVersion"]
        if (request.data.get("metadata") or {}).get("resourceVersion") != version:
            kmock.objects[key] = truth  # refused: what is stored is what was there
            return kmock_lib.Response(status=409, payload={
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409, "reason": "Conflict",
                "message": "the object has been modified; please apply your changes to the latest version"})
        truth = {**truth, "metadata": {**truth["metadata"], "resourceVersion": str(int(version) + 1)},
                 "data": {**(truth.get("data") or {}), **request.data["data"]}}
        kmock.objects[key] = truth
        return kmock_lib.Response(status=200, payload=truth)

    kmock[f"patch {resource_path('', 'v1', 'secrets', NS, name)}"] << patch
    step = await ensure_redis(kube, NS, name)
    assert step.action == "updated"
    assert [body["metadata"]["resourceVersion"] for body in sent] == ["7", "8"]
    written = data(kmock, name)
    assert written["webhook"] == theirs  # the first writer's password stands
    assert set(written) == {*REDIS_USERS, ACL_FILE}
    assert hashlib.sha256(theirs.encode()).hexdigest() in written[ACL_FILE]


async def test_a_serving_secret_an_older_install_made_as_kubernetes_io_tls_is_kept_and_renewed(
        kube: KubeClient, kmock: Any) -> None:
    """The shipped Secrets name no type: `kubectl apply` then leaves the type of one an older install's Job created
    (kubernetes.io/tls, which cannot change) alone, and the certificate step writes into it as into an Opaque one."""
    assert all("type" not in doc for doc in manifests("secrets.yaml"))
    kmock.objects[SECRETS, NS, SIDESTORE.tls] = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": SIDESTORE.tls, "namespace": NS}, "data": {"tls.crt": "", "tls.key": ""}}
    await sidestore_certificate(kube)
    stored = kmock.objects[SECRETS, NS, SIDESTORE.tls]
    assert stored["type"] == "kubernetes.io/tls"
    assert {"tls.crt", "tls.key", "ca.crt", "ca.key"} <= set(dict(stored["data"]))
    assert data(kmock, SIDESTORE.tls)["tls.crt"].startswith("-----BEGIN CERTIFICATE-----")
