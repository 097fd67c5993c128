"""Who is calling, and which namespaces they may touch.

Clients are listed in a file mounted from a Secret and re-read when it changes (rotating a token is editing the
Secret). Each client has a bearer token (or its sha256, so the file need not hold the token itself) and/or a
client-certificate subject (mTLS), and a list of namespaces; `"*"` means every namespace and the admin routes
(the webhook's and the recorder's service identity). Tokens are compared in constant time.

```yaml
clients:
  - name: webhook
    token: "..."            # or tokenSha256: <hex>
    namespaces: ["*"]
  - name: team-a
    tokenSha256: "<hex>"
    namespaces: [team-a]
  - name: recorder
    certificateSubject: recorder.wfboost   # the client certificate's CN (needs --client-ca)
    namespaces: ["*"]
```
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wfboost.sidestore.errors import AuthConfigError, Forbidden, Unauthorized


@dataclass(frozen=True)
class Client:
    name: str
    namespaces: frozenset[str]
    token_sha256: str | None = None
    certificate_subject: str | None = None

    @property
    def admin(self) -> bool:
        return "*" in self.namespaces

    def may_access(self, namespace: str) -> bool:
        return self.admin or namespace in self.namespaces

    def require(self, namespace: str) -> None:
        """403 naming the caller and the namespace; said before any lookup, so it reveals nothing stored."""
        if not self.may_access(namespace):
            raise Forbidden(f"client {self.name!r} may not access namespace {namespace!r}")

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise Forbidden(f"client {self.name!r} may not {what}: it needs access to every namespace")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_clients(document: Any, source: str) -> list[Client]:
    if not isinstance(document, dict) or not isinstance(document.get("clients"), list):
        raise AuthConfigError(f"{source}: expected a mapping with a 'clients' list")
    clients: list[Client] = []
    for i, entry in enumerate(document["clients"]):
        where = f"{source}: clients[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise AuthConfigError(f"{where}: each client needs a name")
        namespaces = entry.get("namespaces")
        if not isinstance(namespaces, list) or not namespaces or not all(isinstance(n, str) for n in namespaces):
            raise AuthConfigError(f"{where} ({entry['name']}): namespaces must be a non-empty list of names or '*'")
        token, digest, subject = entry.get("token"), entry.get("tokenSha256"), entry.get("certificateSubject")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise AuthConfigError(f"{where} ({entry['name']}): a token must be a string of at least 16 characters")
        if token is None and digest is None and subject is None:
            raise AuthConfigError(f"{where} ({entry['name']}): give token, tokenSha256 or certificateSubject")
        clients.append(
            Client(
                name=entry["name"],
                namespaces=frozenset(namespaces),
                token_sha256=_sha(token) if token is not None else (str(digest).lower() if digest else None),
                certificate_subject=str(subject) if subject else None,
            )
        )
    return clients


class Authenticator:
    """Maps a request's credentials to a `Client`, re-reading the file when its modification time changes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self.clients: list[Client] = []
        self.reload()

    def reload(self) -> bool:
        """Re-read the file if it changed; a broken new file keeps the last good one (and raises if none)."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            if not self.clients:
                raise AuthConfigError(f"cannot read clients file {self.path}: {exc.strerror}") from None
            return False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return False
        try:
            clients = parse_clients(yaml.safe_load(self.path.read_text()), str(self.path))
        except (AuthConfigError, yaml.YAMLError, OSError) as exc:
            if not self.clients:
                raise AuthConfigError(str(exc)) from None
            return False
        self.clients, self._stamp = clients, stamp
        return True

    def authenticate(self, authorization: str | None, certificate_subject: str | None) -> Client:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <token>'")
            presented = _sha(token.strip())
            for client in self.clients:
                if client.token_sha256 is not None and hmac.compare_digest(client.token_sha256, presented):
                    return client
            raise Unauthorized("the bearer token is not known to the side store (revoked or mistyped)")
        if certificate_subject:
            for client in self.clients:
                if client.certificate_subject == certificate_subject:
                    return client
            raise Unauthorized(f"the client certificate {certificate_subject!r} is not listed in the clients file")
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>' or a client certificate")
