"""The API server's side of admission, for the demo (`make run`) and the tests.

The kube-apiserver POSTs an AdmissionReview over HTTPS to `https://<svc>.<ns>.svc:<port>/<path>?timeout=<N>s`,
verifying the serving certificate against the webhook configuration's caBundle and the Service DNS name; it then
requires the answer to echo apiVersion/kind/uid, decodes the base64 JSON Patch and applies it to the exact object it
sent (a patch that does not apply fails the request). `ApiServerClient.admit` does each of those steps and raises
`AdmissionFailed` where the real API server would fail the request. Synchronous on purpose: the caller plays a
separate process, and plain (including property-based) tests can drive it.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import jsonpatch
import orjson

from wfboost.webhook.wire import review_for_object

SERVICE_DNS_NAME = "wfboost.wfboost.svc"


class AdmissionFailed(AssertionError):
    """The API server would have failed the request (or the webhook broke the admission contract)."""


class _PinnedHostConnection(http.client.HTTPSConnection):
    """Connects to a loopback address but verifies the certificate for the Service DNS name, like the API server."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, server_hostname: str, timeout: float):
        super().__init__(host, port, context=context, timeout=timeout)
        self._tls = context
        self._server_hostname = server_hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # TLS records are small; no Nagle delay
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._server_hostname)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Admitted:
    """One admission as the API server saw it."""

    review: dict[str, Any]  # the answer
    patch: list[dict[str, Any]]
    sent: dict[str, Any]  # the object sent
    object: dict[str, Any]  # the object after the patch, as it would be stored

    @property
    def response(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.review["response"])


class ApiServerClient:
    def __init__(
        self,
        port: int,
        ca_bundle: Path,
        *,
        host: str = "127.0.0.1",
        server_hostname: str = SERVICE_DNS_NAME,
        timeout_seconds: int = 10,
        validate: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.host = host
        self.port = port
        self.server_hostname = server_hostname
        self.timeout_seconds = timeout_seconds
        self.validate = validate
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_bundle))
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2

    def request(self, method: str, path: str, body: bytes | None = None) -> HttpAnswer:
        conn = _PinnedHostConnection(self.host, self.port, self.context, self.server_hostname, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            return HttpAnswer(answer.status, answer.read())
        finally:
            conn.close()

    def admit(
        self,
        route: str,
        obj: dict[str, Any],
        *,
        operation: str = "CREATE",
        old_object: dict[str, Any] | None = None,
        namespace: str | None = None,
        dry_run: bool = False,
        api_version: str = "admission.k8s.io/v1",
    ) -> Admitted:
        """Send `obj` for admission on `/mutate/<route>` and return what would be stored."""
        result, _uid = self._review(route, obj, operation=operation, old_object=old_object, namespace=namespace,
                                   dry_run=dry_run, api_version=api_version)
        response = result.get("response") or {}
        _require(response.get("allowed") is True, f"the request was denied: {response}")
        patch: list[dict[str, Any]] = []
        if "patch" in response:
            _require(response.get("patchType") == "JSONPatch", "a patch needs patchType JSONPatch")
            patch = orjson.loads(base64.b64decode(response["patch"], validate=True))
            _require(isinstance(patch, list), "the patch is not a JSON array")
        else:
            _require("patchType" not in response, "patchType without a patch")
        try:
            stored = jsonpatch.JsonPatch(patch).apply(orjson.loads(orjson.dumps(obj)), in_place=True)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            problem = f"the patch does not apply to the object sent (HTTP 500 for the user): {exc}"
            raise AdmissionFailed(problem) from exc
        if self.validate is not None:
            self.validate(stored)
        return Admitted(review=result, patch=patch, sent=obj, object=stored)

    def answer(self, route: str, obj: dict[str, Any], **options: Any) -> dict[str, Any]:
        """The webhook's `response` as it came, allowed or not (for the one route that may deny)."""
        result, _ = self._review(route, obj, **options)
        return dict(result.get("response") or {})

    def _review(
        self,
        route: str,
        obj: dict[str, Any],
        *,
        operation: str = "CREATE",
        old_object: dict[str, Any] | None = None,
        namespace: str | None = None,
        dry_run: bool = False,
        api_version: str = "admission.k8s.io/v1",
    ) -> tuple[dict[str, Any], str]:
        """POST the AdmissionReview for `obj` and check the envelope of the answer; (the answer, the request uid)."""
        uid = str(uuid.uuid4())
        review = review_for_object(
            obj,
            operation=operation,
            old_object=old_object,
            namespace=namespace,
            uid=uid,
            dry_run=dry_run,
            api_version=api_version,
        )
        answer = self.request("POST", f"/mutate/{route}?timeout={self.timeout_seconds}s", orjson.dumps(review))
        _require(answer.status == 200, f"webhook answered HTTP {answer.status}: {answer.body[:300]!r}")
        result: dict[str, Any] = answer.json()
        _require(result.get("apiVersion") == api_version, f"apiVersion not echoed: {result.get('apiVersion')}")
        _require(result.get("kind") == "AdmissionReview", "kind is not AdmissionReview")
        _require((result.get("response") or {}).get("uid") == uid, "uid not echoed")
        return result, uid


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AdmissionFailed(message)
