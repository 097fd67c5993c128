"""Validation of a parsed policy document: the JSON Schema, then the rules a schema cannot express.

Those rules: a heartbeat shorter than the lease it renews, replay requests within their limits, and no switch on for
a feature that is not built yet.

The schema is generated from the dataclasses (codec.py), so the model, the schema and the loader cannot disagree;
`wfboost policy schema` prints it for editors (YAML language servers take a JSON Schema), and a test checks
docs/policy.md against it. Durations are checked by our own parser through a custom format, so the schema and the
loader can never disagree on what a valid duration is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from functools import cache
from typing import Any, Final

from jsonschema import Draft202012Validator, FormatChecker

from .codec import DEFS, object_schema
from .fields import spec_of
from .iso8601 import DurationError, format_duration, parse_duration
from .messages import format_errors, format_path
from .model import API_VERSION, KIND, Features, LatchSettings, Policy, ReplayResources
from .quantity import parse_quantity

__all__ = ["policy_schema", "validate_document"]

class _ZeroDuration(ValueError):
    """A duration of zero where only a positive one makes sense (a lease, a heartbeat)."""


@cache
def policy_schema() -> Mapping[str, Any]:
    """The policy's JSON Schema, generated from the dataclasses in model.py."""
    body = object_schema(Policy)
    properties = {
        "apiVersion": {"const": API_VERSION, "description": "Version of this file format."},
        "kind": {"const": KIND},
        **body["properties"],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://wfboost.io/schemas/policy-v1alpha1.json",
        "title": "wfboost Policy",
        "description": "The wfboost policy file (a ConfigMap mounted as a file). Every section is optional; defaults"
        " are documented in docs/policy.md. Keys prefixed x- are hints for error messages, not JSON Schema keywords.",
        **body,
        "required": ["apiVersion", "kind"],
        "properties": properties,
        "$defs": DEFS,
    }


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("iso8601-duration", raises=DurationError)
    def _duration(value: object) -> bool:
        if isinstance(value, str):
            parse_duration(value)
        return True

    @checker.checks("iso8601-positive-duration", raises=(DurationError, _ZeroDuration))
    def _positive_duration(value: object) -> bool:
        if isinstance(value, str) and parse_duration(value) == timedelta(0):
            raise _ZeroDuration(f"{value!r} must be longer than zero")
        return True

    return checker


@cache
def _validator() -> Draft202012Validator:
    schema = policy_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=_format_checker())


def _duration_at(section: object, key: str, default: timedelta) -> timedelta | None:
    """The duration under `key`, the default when absent, None when unusable (the schema reports that)."""
    if not isinstance(section, Mapping) or key not in section:
        return default
    try:
        return parse_duration(section[key])
    except DurationError:
        return None


def _lease_rules(document: Mapping[str, Any]) -> Iterator[str]:
    """A heartbeat must be shorter than the lease it renews, or the lease lapses between heartbeats."""
    defaults = LatchSettings()
    latch = document.get("latch")
    ttl = _duration_at(latch, "leaseTTL", defaults.lease_ttl)
    heartbeat = _duration_at(latch, "heartbeat", defaults.heartbeat)
    if ttl is not None and heartbeat is not None and heartbeat >= ttl:
        yield (
            f"latch.heartbeat: {format_duration(heartbeat)} must be shorter than "
            f"latch.leaseTTL ({format_duration(ttl)})"
        )
    overrides = document.get("overrides")
    if ttl is None or heartbeat is None or not isinstance(overrides, list):
        return
    for index, override in enumerate(overrides):
        latch_override = override.get("latch") if isinstance(override, Mapping) else None
        if not isinstance(latch_override, Mapping):
            continue
        own_ttl = _duration_at(latch_override, "leaseTTL", ttl)
        own_heartbeat = _duration_at(latch_override, "heartbeat", heartbeat)
        if own_ttl is not None and own_heartbeat is not None and own_heartbeat >= own_ttl:
            where = format_path(["overrides", index, "latch", "heartbeat"])
            yield (
                f"{where}: {format_duration(own_heartbeat)} must be shorter than the lease it renews "
                f"({format_duration(own_ttl)})"
            )


def _replay_resource_rules(document: Mapping[str, Any]) -> Iterator[str]:
    """Requests above limits would make the API server refuse every hit pod (422), failing the user's step."""
    defaults = ReplayResources()
    memoize = document.get("memoize")
    replay = memoize.get("replay") if isinstance(memoize, Mapping) else None
    resources = replay.get("resources") if isinstance(replay, Mapping) else None
    if not isinstance(resources, Mapping):
        return
    requests = resources.get("requests", dict(defaults.requests))
    limits = resources.get("limits", dict(defaults.limits))
    if not isinstance(requests, Mapping) or not isinstance(limits, Mapping):
        return
    for name in sorted(set(requests) & set(limits)):
        try:
            above = parse_quantity(str(requests[name])) > parse_quantity(str(limits[name]))
        except ValueError:
            continue  # reported by the schema
        if above:
            where = format_path(["memoize", "replay", "resources", "requests", name])
            yield f"{where}: {requests[name]} is more than the limit {limits[name]}"


# The first Argo controller that reads zstd in status.compressedNodes (util/file/fileutil.go DecompressContent: v4.0.10
# reads gzip only, v4.1.0 tells zstd by its magic).
ZSTD_READERS_FROM: Final = (4, 1)


def _status_compression_rules(document: Mapping[str, Any]) -> Iterator[str]:
    """zstd-compressed node statuses are unreadable to controllers before v4.1: they would lose every node."""
    shrink = document.get("shrink")
    if not isinstance(shrink, Mapping) or shrink.get("statusCompression") != "zstd":
        return
    version = _controller_version(shrink)
    if version is None or version < ZSTD_READERS_FROM:
        yield (
            "shrink.statusCompression: zstd is read only by Argo controllers from v4.1 on; set "
            "shrink.controllerVersion to the oldest controller version you run (4.1 or later), or use gzip"
        )


def _argo_crds_rules(document: Mapping[str, Any]) -> Iterator[str]:
    """Full CRDs exist from Argo 4.0 on: a policy that declares them beside an older controller contradicts itself,
    and the split it turns on would rewrite workflows for limits that controller's CRDs do not have."""
    split = document.get("split")
    shrink = document.get("shrink")
    if not isinstance(split, Mapping) or split.get("argoCRDs") != "full" or not isinstance(shrink, Mapping):
        return
    version = _controller_version(shrink)
    if version is not None and version < (4, 0):
        yield (f"split.argoCRDs: full CRDs come with Argo 4.0 and later, but shrink.controllerVersion is "
               f"{shrink['controllerVersion']}; say minimal, or raise controllerVersion")


def _controller_version(shrink: Mapping[str, Any]) -> tuple[int, int] | None:
    """`shrink.controllerVersion` as (major, minor), None when absent or not a version."""
    version = shrink.get("controllerVersion")
    parts = re.match(r"^v?([0-9]+)\.([0-9]+)", version) if isinstance(version, str) else None
    return (int(parts[1]), int(parts[2])) if parts is not None else None


def _unbuilt_features(document: Mapping[str, Any]) -> Iterator[str]:
    """A switch for a feature that does not exist yet would be a promise the webhook cannot keep."""
    features = document.get("features")
    if not isinstance(features, Mapping):
        return
    for field in dataclasses.fields(Features):
        spec = spec_of(field)
        if spec is not None and spec.unbuilt and features.get(spec.name) is True:
            yield f"{format_path(['features', spec.name])}: {spec.unbuilt}"


def validate_document(document: object) -> list[str]:
    """Every problem with a parsed policy document, as `field.path: reason` lines; empty when it is valid."""
    messages = format_errors(_validator().iter_errors(document))
    if isinstance(document, Mapping):
        messages.extend(_lease_rules(document))
        messages.extend(_replay_resource_rules(document))
        messages.extend(_status_compression_rules(document))
        messages.extend(_argo_crds_rules(document))
        messages.extend(_unbuilt_features(document))
    return sorted(messages)
