"""The policy file format, generated from the dataclasses: the JSON Schema, loading and dumping.

model.py declares every field once (`fields.setting`: its name in the file, its meaning, the rules on its value);
from there this module derives

- `policy_schema()`: the JSON Schema (2020-12) that validation runs and editors read (`wfboost policy schema`);
- `load(cls, document)`: a validated document to dataclasses, defaults for whatever the file leaves out;
- `dump(obj)`: dataclasses back to the file's form, every field written (a dump reads as "what is in force").

The Python type of a field says its shape (bool, int, str, timedelta as an ISO-8601 duration, a Literal as an enum,
tuples as lists, a nested dataclass as a mapping, `X | None` for a value that may be absent or null); the few types
the policy borrows from elsewhere (Kubernetes label selectors and quantities, ISO-8601 durations) have their schema
written below, once.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

from .fields import FieldSpec, spec_of
from .iso8601 import format_duration, parse_duration
from .selector import LabelRequirement, LabelSelector

__all__ = ["DEFS", "dump", "load", "object_schema", "schema_for"]

T = TypeVar("T")

_LABEL_VALUE = {
    "type": "string",
    "pattern": "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$",
    "x-expected": "a label value (at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric)",
}

# Schemas of the value types the policy borrows: referenced as #/$defs/<name>.
DEFS: dict[str, Any] = {
    "duration": {"type": "string", "format": "iso8601-duration"},
    "positiveDuration": {"type": "string", "format": "iso8601-positive-duration"},
    "globList": {
        "type": "array",
        "items": {
            "type": "string",
            "pattern": "^[a-z0-9*?\\[\\]!-]{1,253}$",
            "x-expected": "a namespace glob (lower-case letters, digits, '-' and the wildcards * ? [...])",
        },
    },
    "labelKey": {
        "type": "string",
        "maxLength": 317,
        "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
        "x-expected": "a label key such as team or example.com/team",
    },
    "labelValue": _LABEL_VALUE,
    "labelSelector": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "matchLabels": {
                "type": "object",
                "propertyNames": {"$ref": "#/$defs/labelKey"},
                "additionalProperties": {"$ref": "#/$defs/labelValue"},
            },
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["key", "operator"],
                    "properties": {
                        "key": {"$ref": "#/$defs/labelKey"},
                        "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                        "values": {"type": "array", "items": {"$ref": "#/$defs/labelValue"}},
                    },
                    "allOf": [
                        {
                            "if": {"properties": {"operator": {"enum": ["In", "NotIn"]}}, "required": ["operator"]},
                            "then": {
                                "required": ["values"],
                                "properties": {
                                    "values": {"minItems": 1, "x-hint": "In and NotIn need at least one value"}
                                },
                            },
                        },
                        {
                            "if": {
                                "properties": {"operator": {"enum": ["Exists", "DoesNotExist"]}},
                                "required": ["operator"],
                            },
                            "then": {
                                "properties": {
                                    "values": {"maxItems": 0, "x-hint": "Exists and DoesNotExist take no values"}
                                }
                            },
                        },
                    ],
                },
            },
        },
    },
    # Kubernetes accepts a bare number as a quantity (`cpu: 1`), and so does the policy.
    "quantity": {
        "anyOf": [
            {
                "type": "string",
                "pattern": "^\\+?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+|[munkMGTPE]|[KMGTPE]i)?$",
                "x-expected": "a Kubernetes quantity such as 100m, 0.5 or 64Mi",
            },
            {"type": "number", "minimum": 0},
        ]
    },
    "resourceList": {
        "type": "object",
        "propertyNames": {
            "enum": ["cpu", "memory", "ephemeral-storage"],
            "x-expected": "one of cpu, memory, ephemeral-storage (the replay container never gets accelerators)",
        },
        "additionalProperties": {"$ref": "#/$defs/quantity"},
    },
    "image": {"type": "string", "pattern": "^[^\\s]+$", "x-expected": "an image reference without spaces"},
    "url": {"type": "string", "pattern": "^https?://[^\\s/]+[^\\s]*$", "x-expected": "an http:// or https:// URL"},
}


# --- schema -------------------------------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls: type) -> list[tuple[dataclasses.Field[Any], FieldSpec, Any]]:
    hints = _hints(cls)
    return [(f, spec, hints[f.name]) for f in dataclasses.fields(cls) if (spec := spec_of(f)) is not None]


def _optional_inner(tp: Any) -> Any | None:
    """X for `X | None`, else None."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _is_pairs(tp: Any) -> bool:
    """`tuple[tuple[str, str], ...]`: a string-to-string mapping kept hashable (a resource list)."""
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis and (
        typing.get_origin(args[0]) is tuple and typing.get_args(args[0]) == (str, str)
    )


def schema_for(tp: Any, spec: FieldSpec) -> dict[str, Any]:
    """The JSON Schema of one field of type `tp`."""
    inner = _optional_inner(tp)
    if inner is not None:
        schema = schema_for(inner, spec)
        return {"anyOf": [schema, {"type": "null"}]} if spec.nullable else schema
    if "$ref" in spec.schema:
        return dict(spec.schema)
    base: dict[str, Any]
    if tp is bool:
        base = {"type": "boolean"}
    elif tp is int:
        base = {"type": "integer"}
    elif tp is str:
        base = {"type": "string"}
    elif tp is timedelta:
        base = {"$ref": "#/$defs/duration"}
    elif typing.get_origin(tp) is typing.Literal:
        base = {"enum": list(typing.get_args(tp))}
    elif tp is LabelSelector:
        base = {"$ref": "#/$defs/labelSelector"}
    elif _is_pairs(tp):
        base = {"$ref": "#/$defs/resourceList"}
    elif typing.get_origin(tp) is tuple and typing.get_args(tp)[1:] == (Ellipsis,):
        item = typing.get_args(tp)[0]
        items = object_schema(item) if isinstance(item, type) and dataclasses.is_dataclass(item) else (
            schema_for(item, _plain(spec))
        )
        base = {"type": "array", "items": items}
    elif isinstance(tp, type) and dataclasses.is_dataclass(tp):
        base = object_schema(tp)
    else:
        raise TypeError(f"policy field {spec.name}: no schema for {tp!r}")
    return {**base, **spec.schema}


def _plain(spec: FieldSpec) -> FieldSpec:
    return dataclasses.replace(spec, schema={}, nullable=False)


def object_schema(cls: type) -> dict[str, Any]:
    """A mapping with exactly the fields of the dataclass `cls` (unknown keys refused)."""
    properties: dict[str, Any] = {}
    for _, spec, tp in _fields(cls):
        properties[spec.name] = {**schema_for(tp, spec), "description": spec.doc}
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    extra: Mapping[str, Any] = getattr(cls, "POLICY_SCHEMA", {})
    return {**schema, **extra}


# --- load ---------------------------------------------------------------------------------------------------------


def load(cls: type[T], document: Mapping[str, Any]) -> T:
    """A dataclass from a document the schema accepted; fields the document leaves out keep their defaults."""
    values: dict[str, Any] = {}
    for field, spec, tp in _fields(cls):
        if spec.name in document:
            values[field.name] = _decode(tp, document[spec.name])
    return cls(**values)


def _decode(tp: Any, value: Any) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _decode(inner, value)
    if tp is timedelta:
        return parse_duration(value)
    if tp is LabelSelector:
        return LabelSelector(
            match_labels=tuple(sorted((str(k), str(v)) for k, v in (value.get("matchLabels") or {}).items())),
            match_expressions=tuple(
                LabelRequirement(key=term["key"], operator=term["operator"], values=tuple(term.get("values", ())))
                for term in value.get("matchExpressions") or []
            ),
        )
    if _is_pairs(tp):
        return tuple(sorted((str(k), _quantity_text(v)) for k, v in value.items()))
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v) for v in value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return load(tp, value)
    return value


def _quantity_text(value: Any) -> str:
    """`1` and `"1"` are the same quantity; an integral float (`2.0`, from YAML `2e0`) is written without `.0`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- dump ---------------------------------------------------------------------------------------------------------


def dump(obj: Any) -> dict[str, Any]:
    """The file form of a dataclass: every field, in declaration order; a None that means "not given" is left out,
    and so is a nested mapping with nothing in it (an override that changes nothing)."""
    document: dict[str, Any] = {}
    for field, spec, tp in _fields(type(obj)):
        value = getattr(obj, field.name)
        if value is None and not spec.nullable:
            continue
        encoded = _encode(tp, value)
        if isinstance(encoded, dict) and not encoded and dataclasses.is_dataclass(value) and _fields(type(value)):
            continue  # a section (an override's memoize or latch) that changes nothing
        document[spec.name] = encoded
    return document


def _encode(tp: Any, value: Any) -> Any:
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else _encode(inner, value)
    if tp is timedelta:
        return format_duration(value)
    if tp is LabelSelector:
        selector: dict[str, Any] = {}
        if value.match_labels:
            selector["matchLabels"] = dict(value.match_labels)
        if value.match_expressions:
            selector["matchExpressions"] = [
                {"key": t.key, "operator": t.operator, **({"values": list(t.values)} if t.values else {})}
                for t in value.match_expressions
            ]
        return selector
    if _is_pairs(tp):
        return dict(value)
    if typing.get_origin(tp) is tuple:
        item = typing.get_args(tp)[0]
        return [_encode(item, v) for v in value]
    if dataclasses.is_dataclass(value):
        return dump(value)
    return value
