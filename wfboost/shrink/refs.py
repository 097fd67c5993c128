"""References: the short strings that stand, in a stored Workflow, for values moved to the side store.

`wfboost-ref:v1:<size>:<sha256>` — what it is, the value's size in bytes (UTF-8) and its digest, in characters that
every encoding a value passes through leaves alone (JSON, YAML, Argo's `{{…}}` substitution, shell words), so a
reference reaches a pod spelled exactly as it was written, wherever the controller substituted it. A person reading
`kubectl get -o yaml` sees that the value was moved, how big it is and which blob holds it.

`wfboost-ref:table-v1:<size>:<sha256>` names an argument table (wfboost.shrink.tables): one blob holding the
static arguments of every call of one template. The template's strings hold
`…#{{inputs.parameters.wfboost-row}}[<input>]` where the input's value was, and each call its row number, so a
pod holds `…#<row>[<input>]`: the cell of that row and input. The `#` and brackets delimit the row and the input
name (a parameter name never holds `]`), so the cell is found however the text goes on.

Restoring is text replacement by the value itself (wfboost.shrink.restore says where).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CELL_PATTERN", "MARK", "PATTERN", "ROW_PATTERN", "TABLE_PATTERN", "TABLE_PREFIX", "Reference", "ReferenceMismatch",
    "reference_for", "references_in", "replace_references", "table_reference_for", "value_of",
]

# What every reference starts with, whatever its version: text holding it may hold a reference.
MARK: Final = "wfboost-ref:"
PREFIX: Final = MARK + "v1:"
PATTERN: Final = re.compile(r"wfboost-ref:v1:([0-9]{1,12}):([0-9a-f]{64})")
TABLE_PREFIX: Final = MARK + "table-v1:"
TABLE_PATTERN: Final = re.compile(r"wfboost-ref:table-v1:([0-9]{1,12}):([0-9a-f]{64})")
# A row of a table, as a call passes it; a cell, as it lands in a pod's strings.
ROW_PATTERN: Final = re.compile(TABLE_PATTERN.pattern + r"#([0-9]{1,9})")
CELL_PATTERN: Final = re.compile(ROW_PATTERN.pattern + r"\[([-A-Za-z0-9_]{1,253})\]")


@dataclass(frozen=True)
class Reference:
    size: int
    sha256: str
    table: bool = False  # an argument table rather than a value

    @property
    def text(self) -> str:
        return f"{TABLE_PREFIX if self.table else PREFIX}{self.size}:{self.sha256}"

    @property
    def digest(self) -> str:
        """The side store's name for the blob."""
        return "sha256:" + self.sha256


def reference_for(value: str) -> Reference:
    data = value.encode()
    return Reference(len(data), hashlib.sha256(data).hexdigest())


def table_reference_for(data: bytes) -> Reference:
    return Reference(len(data), hashlib.sha256(data).hexdigest(), table=True)


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
    """Every reference in `text`: values and argument tables (which the side store's GC must hold alike)."""
    found = {Reference(int(size), sha) for size, sha in PATTERN.findall(text)}
    if TABLE_PREFIX in text:
        found |= {Reference(int(size), sha, table=True) for size, sha in TABLE_PATTERN.findall(text)}
    return found


def replace_references(text: str, values: Mapping[Reference, str]) -> str:
    """`text` with every reference replaced by its value; KeyError for a reference without a value."""
    return PATTERN.sub(lambda match: values[Reference(int(match[1]), match[2])], text)
