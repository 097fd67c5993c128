"""Schema validation of the objects the API server would store, so every patch our tests apply is checked.

The real API server refuses a patched object that fails its schema (422) and the Argo controller drops or
chokes on what it cannot decode; a test that only checks "the patch applied" would miss both. `validate_object`
raises `SchemaViolation` listing every problem as `path: reason` (`spec.containers[0].image: expected string,
got 5`), not just the first.

What is checked, and against what:

- **Core kinds** (Pod, ConfigMap, Secret, MutatingWebhookConfiguration, … anything `kubernetes-validate` ships a
  schema for): the Kubernetes OpenAPI schema of Kubernetes 1.36 (the API server version the facts in
  ../shared/docs/argo-facts.md were measured on), in the package's *strict* variant, where every object has
  `additionalProperties: false`, so an unknown or misspelt field fails as it would under the API server's
  strict field validation. All errors are collected (the package's own `validate()` stops at the first).
- **Argo kinds** (`argoproj.io/v1alpha1` Workflow, WorkflowTemplate, ClusterWorkflowTemplate, CronWorkflow,
  WorkflowTaskResult): the pydantic models hera generates from Argo's OpenAPI spec (argo-workflows 4.0.5 at
  hera 7.1). Those models ignore unknown fields, so validating through pydantic would let a misspelt key pass.
  Instead the models' JSON Schema (`model_json_schema`, wire names) is made strict by adding
  `additionalProperties: false` to every object that lists its properties (maps such as labels keep their value
  schema), and validated with jsonschema: types, required fields and unknown fields, at every depth.
  hera has no WorkflowTaskResult model; it is assembled here from hera's ObjectMeta and Outputs with the fields
  of Argo's CRD (`apiVersion`, `kind`, `metadata`, `phase`, `message`, `outputs`, `progress`).
- On top of the schemas: `apiVersion` and `kind` must be present (the API server needs them to pick a schema),
  `date-time`, `int32` and `int64` formats are checked, and Argo workflow and node `phase` values must be phases
  Argo knows (the schema types them as free strings, but the controller and UI only understand those).

What is not checked, and why:

- Kubernetes validation beyond the OpenAPI schema (name formats, immutable fields, cross-field rules such as
  "limit must be set for non-overcommitable resources", Pod Security admission): those live in Go code of the
  API server, not in any schema this package ships.
- Argo semantics (templates that exist, valid expressions, DAG cycles): the controller checks them at run time.

Where hera's models (generated from Argo 4.0.5) are narrower than what Argo 3.5–3.7 or Kubernetes decode, the
schema is widened, so that published 3.x workflows validate and only real mistakes fail:

- Argo's `AnyString` fields (parameter `value`, `default`, `enum`, `description`; `valueFrom.default`): Argo's
  decoder turns numbers and booleans into strings, the OpenAPI spec says string. We accept string, number or
  boolean. Lists and maps are still refused: Argo silently turns them into "" (a lost value, not a feature).
- Quantities (`resources.limits` …) may be JSON numbers (`nvidia.com/gpu: 1`), as Kubernetes decodes them.
- `synchronization.mutex` / `semaphore` (the singular 3.x forms, replaced by `mutexes` / `semaphores`).
- `memoize.cache.configMap` may carry a `key` (3.x: a ConfigMapKeySelector; 4.x: a name only).

Go's JSON decoder matches field names case-insensitively (`subpath` works as `subPath` in the controller); we
do not: such a field is reported as unknown, with the field it was probably meant to be.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Annotated, Any

from hera.workflows.models.io.argoproj.workflow import v1alpha1 as argo
from hera.workflows.models.io.k8s.apimachinery.pkg.apis.meta.v1 import ObjectMeta
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from pydantic import BaseModel, ConfigDict, Field
from referencing import Registry, Resource

__all__ = [
    "ARGO_API_VERSION",
    "ARGO_KINDS",
    "KUBERNETES_VERSION",
    "SchemaViolation",
    "schema_violations",
    "validate_object",
]

KUBERNETES_VERSION = "1.36.0"
ARGO_API_VERSION = "argoproj.io/v1alpha1"

# Phases the Argo controller writes (pkg/apis/workflow/v1alpha1: WorkflowPhase, NodePhase).
WORKFLOW_PHASES = frozenset({"", "Pending", "Running", "Succeeded", "Failed", "Error"})
NODE_PHASES = frozenset({"Pending", "Running", "Succeeded", "Skipped", "Failed", "Error", "Omitted"})

_MAX_SHOWN = 80
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class WorkflowTaskResult(BaseModel):
    """Argo's WorkflowTaskResult (TypeMeta, ObjectMeta and an inlined NodeResult), absent from hera's models."""

    model_config = ConfigDict(populate_by_name=True)

    api_version: Annotated[str | None, Field(alias="apiVersion")] = None
    kind: str | None = None
    metadata: ObjectMeta
    phase: str | None = None
    message: str | None = None
    outputs: argo.Outputs | None = None
    progress: str | None = None


ARGO_KINDS: Mapping[str, type[BaseModel]] = {
    "Workflow": argo.Workflow,
    "WorkflowTemplate": argo.WorkflowTemplate,
    "ClusterWorkflowTemplate": argo.ClusterWorkflowTemplate,
    "CronWorkflow": argo.CronWorkflow,
    "WorkflowTaskResult": WorkflowTaskResult,
}

# Parameter fields Argo decodes as AnyString (a JSON string, number or boolean).
_ANY_STRING_FIELDS = {"Parameter": ("value", "default", "enum", "description"), "ValueFrom": ("default",)}
_ANY_STRING = {"type": ["string", "number", "boolean"]}
# Argo 3.x's memoize cache names a ConfigMap key; 4.x a ConfigMap only. Either form is accepted.
_CACHE_CONFIG_MAP = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "optional": {"type": "boolean"}},
}


class SchemaViolation(AssertionError):
    """An object the API server (or the Argo controller) would refuse; `messages` has every `path: reason`.

    An AssertionError so that pytest shows it as a failed check with the messages, not as a crash.
    """

    def __init__(self, what: str, messages: Iterable[str]) -> None:
        self.what = what
        self.messages: tuple[str, ...] = tuple(messages)
        super().__init__(f"{what} fails its schema:\n  " + "\n  ".join(self.messages))


# --- schemas --------------------------------------------------------------------------------------------------


def _format_checker() -> FormatChecker:
    """date-time (RFC 3339 as Kubernetes writes it) and the integer widths the OpenAPI specs declare."""
    checker = FormatChecker(formats=())

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if isinstance(value, str):
            if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value):
                raise ValueError("not an RFC 3339 date-time such as 2024-01-31T12:00:00Z")
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True

    def _range(low: int, high: int) -> Any:
        def check(value: object) -> bool:
            return not isinstance(value, int) or isinstance(value, bool) or low <= value <= high

        return check

    checker.checks("int32")(_range(*_INT32))
    checker.checks("int64")(_range(*_INT64))
    return checker


_FORMATS = _format_checker()


def _kubernetes_schema_dir() -> Any:
    base = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    return base.joinpath(f"v{KUBERNETES_VERSION}-local-strict")


@cache
def _kubernetes_registry() -> Registry[Any]:
    definitions = json.loads(_kubernetes_schema_dir().joinpath("_definitions.json").read_text(encoding="utf-8"))
    resource: Resource[Any] = Resource.from_contents(definitions)
    empty: Registry[Any] = Registry()
    registry: Registry[Any] = empty.with_resource(str(definitions["$id"]), resource)
    return registry


@cache
def _kubernetes_validator(kind: str, api_version: str) -> Draft202012Validator | None:
    """The strict validator for a core kind, or None when kubernetes-validate has no schema for it."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_file = _kubernetes_schema_dir().joinpath(f"{kind.lower()}-{group_version}.json")
    if not schema_file.is_file():
        return None
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    return Draft202012Validator(schema, registry=_kubernetes_registry(), format_checker=_FORMATS)


def _forbid_unknown_fields(node: object) -> None:
    """Add `additionalProperties: false` to every object schema that lists its properties (in place)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for child in node.values():
            _forbid_unknown_fields(child)
    elif isinstance(node, list):
        for child in node:
            _forbid_unknown_fields(child)


def _accept_any_string(definitions: dict[str, Any]) -> None:
    for model, fields in _ANY_STRING_FIELDS.items():
        properties = definitions.get(model, {}).get("properties", {})
        for field in fields:
            if field not in properties:
                continue
            if field == "enum":
                properties[field] = {"anyOf": [{"type": "array", "items": _ANY_STRING}, {"type": "null"}]}
            else:
                properties[field] = {"anyOf": [_ANY_STRING, {"type": "null"}]}


def _accept_argo_3x_and_kubernetes_forms(definitions: dict[str, Any]) -> None:
    """Widen hera's 4.0.5-derived models to what Argo 3.5–3.7 and Kubernetes decode (see the module doc)."""
    if "Quantity" in definitions:
        definitions["Quantity"] = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    synchronization = definitions.get("Synchronization", {}).get("properties")
    if synchronization is not None:
        synchronization.setdefault("mutex", {"$ref": "#/$defs/Mutex"})
        synchronization.setdefault("semaphore", {"$ref": "#/$defs/SemaphoreRef"})
    memoize_cache = definitions.get("Cache", {}).get("properties")
    if memoize_cache is not None:
        memoize_cache["configMap"] = _CACHE_CONFIG_MAP


@cache
def argo_schema(kind: str) -> Mapping[str, Any]:
    """The strict JSON Schema of an Argo kind, derived from hera's generated model (see the module doc)."""
    schema = ARGO_KINDS[kind].model_json_schema(by_alias=True, mode="validation")
    definitions = schema.setdefault("$defs", {})
    _accept_any_string(definitions)
    _accept_argo_3x_and_kubernetes_forms(definitions)
    _forbid_unknown_fields(schema)
    return schema


@cache
def _argo_validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(dict(argo_schema(kind)), format_checker=_FORMATS)


# --- messages -------------------------------------------------------------------------------------------------


def _path(parts: Iterable[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.match(r"^[A-Za-z_$][A-Za-z0-9_$-]*$", part):
            text += f".{part}" if text else part
        else:
            text += f'["{part}"]'
    return text or "(top level)"


def _show(value: object) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, default=str)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _types(value: object) -> str:
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else [value]
    return " or ".join(str(name) for name in names)


def _meant_branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the anyOf/oneOf branch that was meant: not the ones that failed on the value's type alone."""
    branches: dict[object, list[ValidationError]] = {}
    for inner in error.context or []:
        key = inner.relative_schema_path[0] if inner.relative_schema_path else None
        branches.setdefault(key, []).append(inner)
    depth = len(error.absolute_path)
    meant = [
        branch
        for branch in branches.values()
        if not all(inner.validator == "type" and len(inner.absolute_path) == depth for inner in branch)
    ]
    return meant[0] if len(meant) == 1 else []


def _describe(error: ValidationError) -> Iterator[str]:
    where = _path(error.absolute_path)
    keyword = error.validator
    if keyword in ("anyOf", "oneOf"):
        branch = _meant_branch(error)
        if branch:
            for inner in branch:
                yield from _describe(inner)
            return
        wanted = [inner.validator_value for inner in error.context or [] if inner.validator == "type"]
        if wanted and len(wanted) == len(error.context or []):
            yield f"{where}: expected {' or '.join(_types(value) for value in wanted)}, got {_show(error.instance)}"
        else:
            yield f"{where}: {_show(error.instance)} matches none of the allowed forms ({keyword})"
    elif keyword == "additionalProperties" and error.validator_value is False:
        known = sorted(error.schema.get("properties", {})) if isinstance(error.schema, Mapping) else []
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        extras = sorted(str(key) for key in instance if key not in known)
        for key in extras:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            yield f"{_path([*error.absolute_path, key])}: unknown field{hint}"
    elif keyword == "required":
        match = re.match(r"^'(.+)' is a required property$", error.message)
        name = match.group(1) if match else error.message
        yield f"{_path([*error.absolute_path, name])}: required field is missing"
    elif keyword == "type":
        yield f"{where}: expected {_types(error.validator_value)}, got {_show(error.instance)}"
    elif keyword == "enum":
        yield f"{where}: {_show(error.instance)} is not one of {json.dumps(error.validator_value)}"
    elif keyword == "format":
        reason = f" ({error.cause})" if error.cause else ""
        yield f"{where}: {_show(error.instance)} is not a valid {error.validator_value}{reason}"
    else:
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        yield f"{where}: {message}"


def _phase_problems(obj: Mapping[str, Any]) -> Iterator[str]:
    """Phases the Argo controller does not know (the schema leaves them free strings)."""
    status = obj.get("status")
    if not isinstance(status, Mapping):
        return
    phase = status.get("phase")
    if isinstance(phase, str) and phase not in WORKFLOW_PHASES:
        yield f"status.phase: {_show(phase)} is not a workflow phase ({', '.join(sorted(WORKFLOW_PHASES - {''}))})"
    nodes = status.get("nodes")
    if isinstance(nodes, Mapping):
        for node_id, node in nodes.items():
            node_phase = node.get("phase") if isinstance(node, Mapping) else None
            if isinstance(node_phase, str) and node_phase and node_phase not in NODE_PHASES:
                where = _path(["status", "nodes", str(node_id), "phase"])
                yield f"{where}: {_show(node_phase)} is not a node phase ({', '.join(sorted(NODE_PHASES))})"


# --- entry points ---------------------------------------------------------------------------------------------


def _describe_object(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = ""
    if isinstance(metadata, Mapping):
        name = str(metadata.get("name") or metadata.get("generateName") or "")
    return f"{obj.get('kind', '<no kind>')}/{name or '<no name>'}"


def schema_violations(obj: Mapping[str, Any]) -> list[str]:
    """Every problem with `obj`, as sorted `path: reason` lines; empty when the API server would store it."""
    if not isinstance(obj, Mapping):
        return [f"(top level): expected an object, got {_show(obj)}"]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    missing = [f"{name}: required field is missing" for name in ("apiVersion", "kind") if not obj.get(name)]
    if missing:
        return missing
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["apiVersion, kind: expected strings"]
    if api_version.startswith("argoproj.io/"):
        if api_version != ARGO_API_VERSION or kind not in ARGO_KINDS:
            return [f"(top level): no schema for {kind} {api_version}; known: {', '.join(sorted(ARGO_KINDS))}"]
        errors = list(_argo_validator(kind).iter_errors(obj))
        problems = [line for error in errors for line in _describe(error)]
        if kind == "Workflow":
            problems.extend(_phase_problems(obj))
        phase = obj.get("phase")
        if kind == "WorkflowTaskResult" and isinstance(phase, str) and phase and phase not in NODE_PHASES:
            problems.append(f"phase: {_show(phase)} is not a node phase ({', '.join(sorted(NODE_PHASES))})")
        return sorted(set(problems))
    validator = _kubernetes_validator(kind, api_version)
    if validator is None:
        return [f"(top level): no Kubernetes {KUBERNETES_VERSION} schema for {kind} {api_version}"]
    return sorted({line for error in validator.iter_errors(obj) for line in _describe(error)})


def validate_object(obj: dict[str, Any]) -> None:
    """Raise SchemaViolation (every problem, with its path) unless the API server would store `obj`."""
    problems = schema_violations(obj)
    if problems:
        raise SchemaViolation(_describe_object(obj), problems)
