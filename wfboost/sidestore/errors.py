"""Errors that carry their HTTP answer, mapped to responses in one place (the server's middleware).

Every message is one line meant for the person reading the client's log: it names the thing refused and why,
and never a blob of another namespace (a tenant must not learn what other namespaces hold).
"""

from __future__ import annotations


class SideStoreError(Exception):
    """The root of the side store service's own errors."""


class Refusal(SideStoreError):
    """A refusal with an HTTP status and a machine-readable reason, answered by the server's middleware."""

    status = 500
    reason = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(Refusal):
    status, reason = 400, "BadRequest"


class Unauthorized(Refusal):
    status, reason = 401, "Unauthorized"


class Forbidden(Refusal):
    status, reason = 403, "Forbidden"


class NotFound(Refusal):
    status, reason = 404, "NotFound"


class Conflict(Refusal):
    status, reason = 409, "Conflict"


class LengthRequired(Refusal):
    status, reason = 411, "LengthRequired"


class TooLarge(Refusal):
    status, reason = 413, "TooLarge"


class RangeNotSatisfiable(Refusal):
    status, reason = 416, "RangeNotSatisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class DigestMismatch(Refusal):
    status, reason = 422, "DigestMismatch"


class QuotaExceeded(Refusal):
    """507: the namespace's storage is full (not the request's size, which would be 413)."""

    status, reason = 507, "QuotaExceeded"


class BackendError(Refusal):
    status, reason = 503, "BackendUnavailable"


class AuthConfigError(SideStoreError, ValueError):
    """The clients file cannot be used (the service refuses to start without one)."""
