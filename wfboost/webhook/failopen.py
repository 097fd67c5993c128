"""Why an admission was let through unchanged: one place maps failures to counted reasons.

The webhook never denies and never answers with a patch it is not sure of (argo-facts.md: a patch that does not
apply fails the request even under `failurePolicy: Ignore`). Every failure becomes "allow, no patch" with one of
these reasons, counted in `wfboost_fail_open_total{reason}` and logged once.
"""

from __future__ import annotations

import asyncio
import enum

import redis.exceptions

from wfboost.blobs.client import SideStoreUnavailable
from wfboost.webhook.errors import (
    KubeUnavailable,
    PatchDoesNotApply,
    SideStoreNotConfigured,
    StoreNotConfigured,
    UnparseableObject,
)


class FailOpen(enum.StrEnum):
    DEADLINE = "deadline"  # the internal deadline (below the webhook timeout) passed
    STORE_UNAVAILABLE = "store_unavailable"  # Redis/Valkey refused, timed out or is not configured
    SIDESTORE_UNAVAILABLE = "sidestore_unavailable"
    KUBE_UNAVAILABLE = "kube_unavailable"  # a rare Kubernetes API read (offloaded template) failed
    UNPARSEABLE = "unparseable"  # the object is not in a shape the handler understands
    PATCH_INVALID = "patch_invalid"  # our own patch did not apply to the object received: a bug, never sent
    HANDLER_ERROR = "handler_error"  # any other exception: a bug, logged with its traceback


def classify(exc: BaseException) -> FailOpen:
    """The counted reason for an exception raised while admitting."""
    if isinstance(exc, PatchDoesNotApply):
        return FailOpen.PATCH_INVALID
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return FailOpen.DEADLINE
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | StoreNotConfigured):
        return FailOpen.STORE_UNAVAILABLE
    if isinstance(exc, SideStoreUnavailable | SideStoreNotConfigured):
        return FailOpen.SIDESTORE_UNAVAILABLE
    if isinstance(exc, KubeUnavailable):
        return FailOpen.KUBE_UNAVAILABLE
    if isinstance(exc, UnparseableObject):
        return FailOpen.UNPARSEABLE
    return FailOpen.HANDLER_ERROR
