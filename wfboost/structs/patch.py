"""JSON Patch (RFC 6902) operations as emitted by wfboost.

Only the operations we emit are modelled; `move`, `copy` and `test` are never produced.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class AddOp(TypedDict):
    op: Literal["add"]
    path: str
    value: Any


class ReplaceOp(TypedDict):
    op: Literal["replace"]
    path: str
    value: Any


class RemoveOp(TypedDict):
    op: Literal["remove"]
    path: str


PatchOp = AddOp | ReplaceOp | RemoveOp
