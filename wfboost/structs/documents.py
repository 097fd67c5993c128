"""Kubernetes objects as users hand them over: JSON or YAML files, several documents, `kind: List`.

One reader for every command that takes objects from a file or stdin (`wfboost review`, `wfboost cache explain`),
so they accept the same inputs: a JSON object or array, one or more YAML documents, and the `List` that
`kubectl get … -o yaml` prints (its `items` are taken one by one). Errors are one line that names the source and,
for YAML, the line and column.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
import yaml


class DocumentError(ValueError):
    """The text holds no usable objects; the message says why in one line."""


def parse_documents(text: str, source: str) -> list[dict[str, Any]]:
    """Every object in `text` (JSON or YAML), lists expanded; empty YAML documents are skipped."""
    docs: list[Any] | None = None
    if text.lstrip().startswith(("{", "[")):
        try:
            docs = [orjson.loads(text)]
        except orjson.JSONDecodeError:
            docs = None  # YAML's flow style also starts with { or [: let the YAML reader say what is wrong
    if docs is None:
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = exc.problem or exc.context or "syntax error"
            raise DocumentError(f"{source}: neither JSON nor YAML ({where}{problem})") from None
        except yaml.YAMLError as exc:
            raise DocumentError(f"{source}: neither JSON nor YAML ({_first_line(exc)})") from None
    found: list[Any] = []
    for doc in docs:
        found.extend(_expanded(doc))
    if not found:
        raise DocumentError(f"{source}: no document found")
    for index, doc in enumerate(found, 1):
        if not isinstance(doc, dict):
            raise DocumentError(f"{source}: document {index} is {_a(doc)}, not an object")
    return cast(list[dict[str, Any]], found)


def _expanded(doc: Any) -> list[Any]:
    if doc is None:
        return []
    if isinstance(doc, list):
        return [item for item in doc for item in _expanded(item)]
    if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        return [item for item in doc["items"] if item is not None]
    return [doc]


def _a(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list"}
    return names.get(type(value), f"a {type(value).__name__}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
