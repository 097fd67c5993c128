"""Turning JSON Schema errors into `field.path: reason` lines an admin can act on.

jsonschema's own messages name the schema's view (`'x' is not valid under any of the given schemas`) and the
path only as a deque. An admin editing YAML needs the dotted path of the field, what was expected in words,
and for an unknown field the name they probably meant. Hints for patterns live next to the pattern in the
schema (`x-expected`, `x-hint`) so that the wording and the rule cannot drift apart.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jsonschema.exceptions import ValidationError

__all__ = ["did_you_mean", "format_errors", "format_path", "show_value"]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def format_path(path: Iterable[str | int]) -> str:
    """A path as an admin reads it: `memoize.replay`, `overrides[1].latch`, `matchLabels["example.com/team"]`.

    The root is `(top level)`.
    """
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text or "(top level)"


def show_value(value: object) -> str:
    """A value as an admin wrote it in YAML: strings quoted, booleans and null in YAML spelling."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def did_you_mean(unknown: str, known: Iterable[str]) -> str | None:
    """The known name an unknown one most likely meant.

    First the same letters ignoring case, "_" and "-" (`max_staleness` → `maxStaleness`), then close spelling.
    """
    candidates = sorted(known)

    def squash(name: str) -> str:
        return name.replace("_", "").replace("-", "").lower()

    for name in candidates:
        if squash(name) == squash(unknown):
            return name
    close = difflib.get_close_matches(unknown, candidates, n=1, cutoff=0.6)
    if not close:
        lowered = {name.lower(): name for name in candidates}
        close = [lowered[match] for match in difflib.get_close_matches(unknown.lower(), lowered, n=1, cutoff=0.6)]
    return close[0] if close else None


def _expected_types(types: object) -> str:
    names = [types] if isinstance(types, str) else list(types) if isinstance(types, list) else []
    return " or ".join(_TYPE_WORDS.get(str(name), str(name)) for name in names)


def _unknown_fields(error: ValidationError) -> Iterator[str]:
    instance = error.instance
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    known: Mapping[str, Any] = schema.get("properties", {})
    if not isinstance(instance, Mapping):
        return
    for key in sorted(str(key) for key in instance if key not in known):
        where = format_path([*error.absolute_path, key])
        hint = did_you_mean(key, known)
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        allowed = ", ".join(sorted(known))
        yield f"{where}: unknown field{suggestion}; known fields here: {allowed}"


def _meant_branch(errors: list[ValidationError], depth: int) -> list[ValidationError]:
    """Of the errors of an anyOf's branches, those of the branch the writer most likely meant.

    A branch that failed only on the value's own `type` (at `depth`, the anyOf's own place) was not meant: the value
    has another type. A type error deeper down means the shape was right and something inside it is wrong (a label
    value that is a number), so that branch was meant. Of the meant branches, the one with the deepest error is the
    most specific. Empty when every branch failed on the value's type alone.
    """
    branches: dict[object, list[ValidationError]] = {}
    for error in errors:
        index = error.relative_schema_path[0] if error.relative_schema_path else None
        branches.setdefault(index, []).append(error)

    def wrong_type_only(branch: list[ValidationError]) -> bool:
        return all(error.validator == "type" and len(error.absolute_path) == depth for error in branch)

    meant = [branch for branch in branches.values() if not wrong_type_only(branch)]
    if not meant:
        return []
    return max(meant, key=lambda branch: max(len(error.absolute_path) for error in branch))


def _describe(error: ValidationError) -> Iterator[str]:
    where = format_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    keyword = str(error.validator)
    shown = show_value(error.instance)
    if keyword == "additionalProperties" and error.validator_value is False:
        yield from _unknown_fields(error)
    elif keyword == "required":
        missing = re.match(r"^'(.+)' is a required property$", error.message)
        field = missing.group(1) if missing else str(error.message)
        yield f"{format_path([*error.absolute_path, field])}: required field is missing"
    elif keyword in ("anyOf", "oneOf") and "x-hint" in schema:
        yield f"{where}: {schema['x-hint']}"
    elif keyword in ("anyOf", "oneOf"):
        branch = _meant_branch(list(error.context or []), len(error.absolute_path))
        if not branch:
            types = [type_error.validator_value for type_error in error.context or []]
            expected = " or ".join(_expected_types(value) for value in types)
            yield f"{where}: expected {expected}, got {shown}"
        else:
            for inner in branch:
                yield from _describe(inner)
    elif keyword == "type":
        yield f"{where}: expected {_expected_types(error.validator_value)}, got {shown}"
    elif keyword == "format" and error.cause is not None:
        yield f"{where}: {error.cause}"
    elif "x-expected" in schema and keyword in ("pattern", "enum", "maxLength"):
        yield f"{where}: {shown} is not {schema['x-expected']}"
    elif "x-hint" in schema:
        yield f"{where}: {schema['x-hint']}"
    elif keyword == "const":
        yield f"{where}: must be {error.validator_value!r}, got {shown}"
    elif keyword == "enum" and isinstance(error.validator_value, list):
        allowed = ", ".join(repr(value) for value in error.validator_value)
        yield f"{where}: {shown} is not one of {allowed}"
    elif keyword == "minimum":
        yield f"{where}: {shown} is below the minimum {error.validator_value}"
    elif keyword == "maximum":
        yield f"{where}: {shown} is above the maximum {error.validator_value}"
    else:
        yield f"{where}: {error.message}"


def format_errors(errors: Iterable[ValidationError]) -> list[str]:
    """Every error as one `path: reason` line, de-duplicated and sorted so the output is stable."""
    return sorted({line for error in errors for line in _describe(error)})
