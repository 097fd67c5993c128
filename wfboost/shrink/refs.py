"""References: the short strings that stand, in a stored Workflow, for values moved to the side store.

`wfboost-ref:v1:<size>:<sha256>` — what it is, the value's size in bytes (UTF-8) and its digest, in characters that
every encoding a value passes through leaves alone (JSON, YAML, Argo's `{{…}}` substitution, shell words), so a
reference reaches a pod spelled exactly as it was written, wherever the controller substituted it. A person reading
`kubectl get -o yaml` sees that the value was moved, how big it is and which blob holds it.

Restoring is text replacement by the value itself (wfboost.shrink.restore says where).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "MARK", "PATTERN", "Reference", "ReferenceMismatch", "reference_for", "references_in", "replace_references",
    "value_of",
]

# What every reference starts with, whatever its version: text holding it may hold a reference.
MARK: Final = "wfboost-ref:"
PREFIX: Final = MARK + "v1:"
PATTERN: Final = re.compile(r"wfboost-ref:v1:([0-9]{1,12}):([0-9a-f]{64})")


@dataclass(frozen=True)
class Reference:
    size: int
    sha256: str

    @property
    def text(self) -> str:
        return f"{PREFIX}{self.size}:{self.sha256}"

    @property
    def digest(self) -> str:
        """The side store's name for the blob."""
        return "sha256:" + self.sha256


def reference_for(value: str) -> Reference:
    data = value.encode()
    return Reference(len(data), hashlib.sha256(data).hexdigest())


class ReferenceMismatch(ValueError):
    """Bytes that are not the value a reference names; the message says which reference."""


def value_of(reference: Reference, data: bytes) -> str:
    """The value `data` holds, once checked against the reference's size and digest (what the side store returned
    for it); ReferenceMismatch otherwise."""
    if len(data) != reference.size or hashlib.sha256(data).hexdigest() != reference.sha256:
        raise ReferenceMismatch(f"the side store returned other bytes than {reference.text}")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ReferenceMismatch(f"{reference.text} does not hold text") from None


def references_in(text: str) -> set[Reference]:
    return {Reference(int(size), sha) for size, sha in PATTERN.findall(text)}


def replace_references(text: str, values: Mapping[Reference, str]) -> str:
    """`text` with every reference replaced by its value; KeyError for a reference without a value."""
    return PATTERN.sub(lambda match: values[Reference(int(match[1]), match[2])], text)
