"""The root of the errors the cache layer raises on purpose; each is also the built-in it is a kind of."""

from __future__ import annotations


class CacheError(Exception):
    """The root of the cache layer's own errors (bad per-step controls, bad markers, bad CLI input)."""
