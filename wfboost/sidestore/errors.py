"""Errors that carry their HTTP answer, mapped to responses in one place (the server's middleware).

Every message is one line meant for the person reading the client's log: it names the thing refused and why,
and never a blob of another namespace (a tenant must not learn what other namespaces hold).
"""

from __future__ import annotations


class SideStoreError(Exception):
    """A refusal with an HTTP status and a machine-readable reason."""

    status = 500
    reason = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(SideStoreError):
    status, reason = 400, "BadRequest"


class Unauthorized(SideStoreError):
    status, reason = 401, "Unauthorized"


class Forbidden(SideStoreError):
    status, reason = 403, "Forbidden"


class NotFound(SideStoreError):
    status, reason = 404, "NotFound"


class Conflict(SideStoreError):
    status, reason = 409, "Conflict"


class LengthRequired(SideStoreError):
    status, reason = 411, "LengthRequired"


class TooLarge(SideStoreError):
    status, reason = 413, "TooLarge"


class RangeNotSatisfiable(SideStoreError):
    status, reason = 416, "RangeNotSatisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class DigestMismatch(SideStoreError):
    status, reason = 422, "DigestMismatch"


class QuotaExceeded(SideStoreError):
    """507: the namespace's storage is full (not the request's size, which would be 413)."""

    status, reason = 507, "QuotaExceeded"


class BackendError(SideStoreError):
    status, reason = 503, "BackendUnavailable"
