"""`wfboost credentials`: the passwords and tokens an install needs, made once inside the cluster.

Nothing secret is in the manifests: the install ships the Secrets empty (so that RBAC can name exactly the Secrets
this command may write, and it needs no `create` on Secrets at all, which would let it mint service-account tokens),
and this command fills in what is missing:

- the Redis/Valkey Secret: one random password per ACL user (`webhook`, `recorder`, `sidestore`, `probe`), and
  `users.acl`, the server's ACL file built from them. The file holds only SHA-256 hashes of the passwords, turns the
  `default` user off (no connection can do anything before AUTH), and gives each user only the keys it uses: the
  cache (`wfb:*`) to the webhook and the recorder, the side store's metadata (`wfboost:sidestore:*`) to the side
  store, PING alone to the probe. No user gets the `@dangerous` commands (FLUSHALL, CONFIG, KEYS, DEBUG, ...) or
  RANDOMKEY, and only the recorder SCAN.
- the webhook's side store client Secret: a bearer `token`, and `ca.crt`, copied from the side store's TLS Secret
  (made beforehand by `wfboost certs`) so that the webhook verifies whom it talks to; a renewed CA is copied again.
- the side store's clients Secret: `clients.yaml` with the webhook's entry (the token's SHA-256 only, every
  namespace). Entries an operator added for other clients stay.

Every write carries the `resourceVersion` the Secret was read at, so two runs at once (the install's Job and the
renewal CronJob's) cannot both fill in a missing password: the API server refuses the later one (409 Conflict),
which reads the Secret again and keeps what the other wrote.

A value already there is never replaced, so running the command again (a Job rerun, an upgrade) changes nothing;
rotating a password is deleting its key from the Secret and running the command again (then restart Redis, which
reads its ACL file at start).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import yaml

from wfboost.kube import JsonObject, KubeApiError, KubeClient, resource_path

from .reconcile import CA_CERT, CertsError, Step

_T = TypeVar("_T")

ACL_FILE: Final = "users.acl"
CLIENTS_FILE: Final = "clients.yaml"
TOKEN: Final = "token"
WEBHOOK_CLIENT: Final = "webhook"

# Each ACL user of the bundled Redis/Valkey and what it may touch. Key patterns follow the key layouts of
# wfboost/cache/keyspace.py (`wfb:<version>:`) and wfboost/sidestore/keyspace.py (`wfboost:sidestore:<version>:`).
# SCAN and RANDOMKEY name keys whatever a user's key patterns say: only the recorder may SCAN (it counts the leases in
# flight, `CacheStore.inflight`); the webhook and the side store never list the keyspace.
_COMMANDS: Final = "+@all -@dangerous -randomkey"
REDIS_USERS: Final[Mapping[str, str]] = {
    "webhook": f"resetkeys ~wfb:* resetchannels {_COMMANDS} -scan",
    "recorder": f"resetkeys ~wfb:* resetchannels {_COMMANDS}",
    "sidestore": f"resetkeys ~wfboost:sidestore:* resetchannels {_COMMANDS} -scan",
    "probe": "resetkeys resetchannels -@all +ping",
}


@dataclass(frozen=True)
class SideStoreSecrets:
    """The side store's Secrets: its serving certificate, its clients file, the webhook's client credentials."""

    tls: str = "wfboost-sidestore-tls"  # made by `wfboost certs`; read only
    clients: str = "wfboost-sidestore-clients"
    webhook_client: str = "wfboost-webhook-sidestore"


@dataclass(frozen=True)
class CredentialsConfig:
    """Where the credentials go; the names are those of the Secrets the install ships empty."""

    namespace: str = "wfboost"
    redis_secret: str | None = None  # None: an external Redis, whose credentials are the operator's
    sidestore: SideStoreSecrets | None = None  # None: no side store installed


def new_password() -> str:
    """256 random bits as hex: safe inside a Redis URL (no character needs escaping) and in an ACL line."""
    return secrets.token_hex(32)


def acl_file(passwords: Mapping[str, str]) -> str:
    """The ACL file for `passwords` (user → password): hashes only, the default user off."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for user, rules in REDIS_USERS.items():
        digest = hashlib.sha256(passwords[user].encode()).hexdigest()
        lines.append(f"user {user} on #{digest} {rules}")
    return "\n".join(lines) + "\n"


def clients_file(existing: str | None, webhook_token: str) -> str:
    """`clients.yaml` with the webhook's entry set to `webhook_token` (by hash), other clients kept as they were."""
    kept: list[Any] = []
    if existing:
        try:
            document = yaml.safe_load(existing)
        except yaml.YAMLError as exc:
            raise CertsError(f"{CLIENTS_FILE} in the side store's clients Secret is not YAML: {exc}") from None
        listed = document.get("clients") if isinstance(document, dict) else None
        if not isinstance(listed, list):
            raise CertsError(f"{CLIENTS_FILE} in the side store's clients Secret has no 'clients' list")
        kept = [c for c in listed if not (isinstance(c, dict) and c.get("name") == WEBHOOK_CLIENT)]
    entry = {
        "name": WEBHOOK_CLIENT,
        "tokenSha256": hashlib.sha256(webhook_token.encode()).hexdigest(),
        "namespaces": ["*"],
    }
    return yaml.safe_dump({"clients": [entry, *kept]}, sort_keys=False)


# --- the Secrets ----------------------------------------------------------------------------------------------


def _decoded(secret: Mapping[str, Any]) -> dict[str, str]:
    data: Mapping[str, str] = secret.get("data") or {}
    try:
        return {key: base64.b64decode(value).decode() for key, value in data.items()}
    except (ValueError, UnicodeDecodeError) as exc:
        name = (secret.get("metadata") or {}).get("name")
        raise CertsError(f"Secret {name}: a value is not base64 text ({exc})") from None


async def _read(kube: KubeClient, namespace: str, name: str) -> JsonObject:
    try:
        return await kube.get(resource_path("", "v1", "secrets", namespace, name))
    except KubeApiError as exc:
        if exc.status == 404:
            raise CertsError(
                f"Secret {namespace}/{name} not found: the install creates it empty (apply the manifests first)"
            ) from None
        raise


async def _write(kube: KubeClient, namespace: str, name: str, read: Mapping[str, Any],
                 wanted: Mapping[str, str]) -> Step:
    """Merge-patch the keys of `wanted` that differ from the Secret as `read`; other keys stay. The patch names the
    resourceVersion it was read at: a Secret changed since is not overwritten (KubeApiError 409)."""
    current = _decoded(read)
    changes = {key: value for key, value in wanted.items() if current.get(key) != value}
    target = f"Secret {namespace}/{name}"
    if not changes:
        return Step(target, "unchanged")
    encoded = {key: base64.b64encode(value.encode()).decode("ascii") for key, value in changes.items()}
    body: dict[str, Any] = {"data": encoded}
    version = (read.get("metadata") or {}).get("resourceVersion")
    if version:
        body["metadata"] = {"resourceVersion": version}
    await kube.patch(resource_path("", "v1", "secrets", namespace, name), body, "merge")
    return Step(target, "updated", ", ".join(sorted(changes)))


# Attempts when another writer changes a Secret between our read and our write.
_CONFLICT_ATTEMPTS: Final = 5


async def _again_on_conflict(what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
    """Run `attempt` (read, decide, write) again while the API server says another writer came first."""
    for number in range(1, _CONFLICT_ATTEMPTS + 1):
        try:
            return await attempt()
        except KubeApiError as exc:
            if exc.status != 409:
                raise
            if number == _CONFLICT_ATTEMPTS:
                raise CertsError(f"{what}: changed by another writer {number} times in a row; run again") from None
    raise AssertionError("unreachable")


async def ensure_redis(kube: KubeClient, namespace: str, name: str) -> Step:
    async def attempt() -> Step:
        read = await _read(kube, namespace, name)
        current = _decoded(read)
        passwords = {user: current.get(user) or new_password() for user in REDIS_USERS}
        return await _write(kube, namespace, name, read, {**passwords, ACL_FILE: acl_file(passwords)})

    return await _again_on_conflict(f"Secret {namespace}/{name}", attempt)


async def ensure_sidestore(kube: KubeClient, ns: str, names: SideStoreSecrets) -> list[Step]:
    tls = _decoded(await _read(kube, ns, names.tls))
    if not tls.get(CA_CERT):
        raise CertsError(f"Secret {ns}/{names.tls} has no {CA_CERT} yet: run `wfboost certs` for the side store first")

    async def client_step() -> tuple[Step, str]:
        read = await _read(kube, ns, names.webhook_client)
        token = _decoded(read).get(TOKEN) or new_password()
        return await _write(kube, ns, names.webhook_client, read, {TOKEN: token, CA_CERT: tls[CA_CERT]}), token

    step, token = await _again_on_conflict(f"Secret {ns}/{names.webhook_client}", client_step)

    async def clients_step() -> Step:
        read = await _read(kube, ns, names.clients)
        clients = _decoded(read)
        wanted = clients_file(clients.get(CLIENTS_FILE), token)
        if clients.get(CLIENTS_FILE) and _same_yaml(clients[CLIENTS_FILE], wanted):
            wanted = clients[CLIENTS_FILE]  # equal content, other formatting: leave the operator's text alone
        return await _write(kube, ns, names.clients, read, {CLIENTS_FILE: wanted})

    return [step, await _again_on_conflict(f"Secret {ns}/{names.clients}", clients_step)]


def _same_yaml(left: str, right: str) -> bool:
    try:
        return bool(yaml.safe_load(left) == yaml.safe_load(right))
    except yaml.YAMLError:
        return False


async def ensure_credentials(config: CredentialsConfig, kube: KubeClient) -> tuple[Step, ...]:
    """Fill in every missing credential (see the module doc); one Step per Secret looked at."""
    steps: list[Step] = []
    if config.redis_secret is not None:
        steps.append(await ensure_redis(kube, config.namespace, config.redis_secret))
    if config.sidestore is not None:
        steps.extend(await ensure_sidestore(kube, config.namespace, config.sidestore))
    if not steps:
        raise CertsError("nothing to do: name the Redis Secret and/or the side store's Secrets")
    return tuple(steps)
