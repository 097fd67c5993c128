"""JSON bodies of the HTTP API, as types shared by the server and the client library."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

RefKind = Literal["workflow", "entry"]


class RefBody(TypedDict):
    """A reference that keeps blobs alive: a Workflow (by uid) or a cache entry (by id, until it expires)."""

    kind: RefKind
    id: str
    ttl_seconds: NotRequired[float]  # entries only: how long the entry lives; renew by adding the ref again


class RefInfo(TypedDict):
    ref: str  # "workflow:<uid>" or "entry:<id>"
    added: float
    expires: float | None


class BlobInfo(TypedDict):
    namespace: str
    digest: str
    size: int
    stored: int
    backend: str
    created: float
    refs: NotRequired[list[RefInfo]]


class PutResult(TypedDict):
    digest: str
    size: int
    created: bool  # False when the blob was already there (the PUT is idempotent)


class BlobList(TypedDict):
    namespace: str
    blobs: list[BlobInfo]
    next: str | None  # pass as ?after= for the next page


class StartUpload(TypedDict, total=False):
    digest: str  # the expected digest of the whole blob, checked again at completion
    size: int  # the expected total size, reserved against the quota up front when given


class PartInfo(TypedDict):
    number: int
    sha256: str  # hex of the part's plain bytes
    size: int


class UploadInfo(TypedDict):
    upload_id: str
    namespace: str
    backend: str
    created: float
    digest: str | None
    parts: list[PartInfo]


class CompletePart(TypedDict):
    number: int
    sha256: str


class CompleteUpload(TypedDict):
    digest: str
    parts: list[CompletePart]


class AddRefs(TypedDict):
    ref: RefBody
    blobs: list[str]


class AddRefsResult(TypedDict):
    ref: str
    added: int


class GcDecision(TypedDict):
    namespace: str
    digest: str
    size: int
    reason: str


class GcReportBody(TypedDict):
    dry_run: bool
    skipped: str | None  # why the sweep did not run (e.g. the workflow view is not in sync)
    examined: int
    deleted: list[GcDecision]
    kept: int
    uploads_expired: int
    pending_reclaimed: int


class ErrorBody(TypedDict):
    reason: str
    message: str
