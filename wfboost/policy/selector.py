"""Namespace name globs and Kubernetes label selectors, the two ways the policy names namespaces.

Label selectors follow Kubernetes semantics exactly (an empty selector matches everything; `NotIn` matches
when the label is absent) so that an admin who writes one here gets what the same selector does in a
MutatingWebhookConfiguration. One difference is deliberate: the webhook does not always know a namespace's
labels (it would need an API call on the hot path), and a selector asked about unknown labels (`None`) does
not match. Every feature gated by a selector is thereby off when in doubt, which is the safe direction for
caching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

__all__ = ["LabelRequirement", "LabelSelector", "SelectorOperator", "matches_any_glob"]

SelectorOperator = Literal["In", "NotIn", "Exists", "DoesNotExist"]


def matches_any_glob(name: str, globs: Iterable[str]) -> bool:
    """True when `name` matches one of the shell-style globs (`*`, `?`, `[a-z]`), case-sensitively.

    Case-sensitive because namespace names are lower-case DNS labels: `Team-*` matching `team-a` would hide a
    typo. A name that is not a string (from a mangled request) matches nothing, so callers need no guard.
    """
    return isinstance(name, str) and any(fnmatchcase(name, glob) for glob in globs)


@dataclass(frozen=True)
class LabelRequirement:
    """One `matchExpressions` entry."""

    key: str
    operator: SelectorOperator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: In/NotIn compare the value; Exists/DoesNotExist look at the key only."""
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present


@dataclass(frozen=True)
class LabelSelector:
    """`matchLabels` plus `matchExpressions`, all of which must hold.

    `match_labels` is a sorted tuple of pairs rather than a dict so that the policy stays hashable and two
    policies read from differently ordered files compare equal.
    """

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[LabelRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """True when every term holds; False when the labels are unknown (None or not a mapping)."""
        if not isinstance(labels, Mapping):
            return False
        return all(labels.get(key) == value for key, value in self.match_labels) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )
