"""The policy file: schema, validation and hot reload.

A lower layer: it imports only the standard library, third-party libraries and `wfboost.structs`, so that the
webhook, the recorder and the CLI all read one policy the same way. See docs/policy.md for the file format.

Modules, one job each: `iso8601` (ISO-8601 durations), `selector` (globs and label selectors), `quantity`
(resource quantities), `model` (the dataclasses, the one definition of the file format, and the per-namespace
rules), `fields` + `codec` (the file format generated from the dataclasses: schema, load, dump), `schema` +
`messages` (validation and readable errors), `loader` / `dump` (text to Policy and back), `watcher` (hot reload),
`controls` (per-step annotation names).
"""

from .controls import CACHE, CACHE_SEED, LATCH, MAX_STALENESS
from .dump import dump_policy, policy_to_document
from .errors import PolicyError
from .iso8601 import DurationError, format_duration, parse_duration
from .loader import load_policy, policy_from_document
from .model import (
    ALWAYS_EXCLUDED_NAMESPACES,
    API_VERSION,
    KIND,
    EffectiveLatch,
    EffectiveMemoize,
    Features,
    LatchOverride,
    LatchSettings,
    MemoizeOverride,
    MemoizeSettings,
    NamespaceOverride,
    NamespaceScope,
    Policy,
    ReplayResources,
    ReplaySettings,
    ShrinkSettings,
    SideStoreSettings,
    SplitSettings,
)
from .schema import policy_schema, validate_document
from .selector import LabelRequirement, LabelSelector
from .watcher import PolicyWatcher

__all__ = [
    "ALWAYS_EXCLUDED_NAMESPACES",
    "API_VERSION",
    "CACHE",
    "CACHE_SEED",
    "KIND",
    "LATCH",
    "MAX_STALENESS",
    "DurationError",
    "EffectiveLatch",
    "EffectiveMemoize",
    "Features",
    "LabelRequirement",
    "LabelSelector",
    "LatchOverride",
    "LatchSettings",
    "MemoizeOverride",
    "MemoizeSettings",
    "NamespaceOverride",
    "NamespaceScope",
    "Policy",
    "PolicyError",
    "PolicyWatcher",
    "ReplayResources",
    "ReplaySettings",
    "ShrinkSettings",
    "SideStoreSettings",
    "SplitSettings",
    "dump_policy",
    "format_duration",
    "load_policy",
    "parse_duration",
    "policy_from_document",
    "policy_schema",
    "policy_to_document",
    "validate_document",
]
