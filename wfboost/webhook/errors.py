"""Every error the webhook raises on purpose, under one root, each also catchable by meaning.

As aiohttp's client exceptions do, each class mixes in the built-in it is a kind of (`ConnectionError` for a
dependency that could not be reached, `ValueError` for input that cannot be used), so callers can catch by meaning
or by origin. The admission pipeline turns them into counted fail-open reasons (failopen.py); the CLI into one line.
"""

from __future__ import annotations


class WebhookError(Exception):
    """The root of the webhook's own errors."""


class UnparseableObject(WebhookError, ValueError):
    """A handler could not read the object; it is admitted untouched."""


class StoreNotConfigured(WebhookError, ConnectionError):
    """Memoization is on in the policy but no Redis URL was given."""


class SideStoreNotConfigured(WebhookError, ConnectionError):
    """Shrinking is on in the policy but no side store URL was given."""


class KubeUnavailable(WebhookError, ConnectionError):
    """The Kubernetes API could not be reached in time (an offloaded Argo template could not be read)."""


class PatchDoesNotApply(WebhookError, ValueError):
    """Our own patch would fail on the API server; it is never sent."""


class BadReview(WebhookError, ValueError):
    """The body is not an AdmissionReview we can answer; the message names the problem for the caller."""


class ReviewInputError(WebhookError, ValueError):
    """`wfboost review` cannot review its input; the message says why in one line."""
