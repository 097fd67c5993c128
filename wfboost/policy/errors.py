"""The one exception the policy package raises for a policy that cannot be used."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PolicyError"]


class PolicyError(ValueError):
    """A policy that cannot be used, with every reason found (not just the first).

    `messages` are complete sentences of the form `field.path: reason`, sorted by field path, so that an admin
    can fix a file in one go and the watcher can log them on one line.
    """

    def __init__(self, messages: Iterable[str]) -> None:
        self.messages: tuple[str, ...] = tuple(messages) or ("the policy is invalid",)
        super().__init__("; ".join(self.messages))
