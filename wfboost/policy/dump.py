"""From a `Policy` back to its file form, so `wfboost` can show the effective policy and tests can check that
loading and dumping are inverse.

Every field is written, defaults included: a dump is meant to be read as "what is in force", not to be
minimal.
`always_excluded` is not written because no file can change it.
"""

from __future__ import annotations

from datetime import timedelta

import yaml

from .document import (
    LabelSelectorDocument,
    LatchOverrideDocument,
    MemoizeOverrideDocument,
    NamespaceOverrideDocument,
    NamespacesDocument,
    PolicyDocument,
)
from .iso8601 import format_duration
from .model import API_VERSION, KIND, LatchOverride, MemoizeOverride, NamespaceOverride, Policy
from .selector import LabelSelector

__all__ = ["dump_policy", "policy_to_document"]


def _selector(selector: LabelSelector) -> LabelSelectorDocument:
    document: LabelSelectorDocument = {}
    if selector.match_labels:
        document["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        document["matchExpressions"] = []
        for term in selector.match_expressions:
            if term.values:
                document["matchExpressions"].append(
                    {"key": term.key, "operator": term.operator, "values": list(term.values)}
                )
            else:
                document["matchExpressions"].append({"key": term.key, "operator": term.operator})
    return document


def _optional_duration(value: timedelta | None) -> str | None:
    return None if value is None else format_duration(value)


def _memoize_override(override: MemoizeOverride) -> MemoizeOverrideDocument:
    document: MemoizeOverrideDocument = {}
    if override.enabled is not None:
        document["enabled"] = override.enabled
    if override.max_staleness is not None:
        document["maxStaleness"] = format_duration(override.max_staleness)
    if override.max_staleness_limit is not None:
        document["maxStalenessLimit"] = format_duration(override.max_staleness_limit)
    if override.allow_writable_volumes is not None:
        document["allowWritableVolumes"] = override.allow_writable_volumes
    if override.require_digest_pinned_images is not None:
        document["requireDigestPinnedImages"] = override.require_digest_pinned_images
    return document


def _latch_override(override: LatchOverride) -> LatchOverrideDocument:
    document: LatchOverrideDocument = {}
    if override.enabled is not None:
        document["enabled"] = override.enabled
    if override.lease_ttl is not None:
        document["leaseTTL"] = format_duration(override.lease_ttl)
    if override.heartbeat is not None:
        document["heartbeat"] = format_duration(override.heartbeat)
    if override.follower_wait is not None:
        document["followerWait"] = format_duration(override.follower_wait)
    return document


def _override(override: NamespaceOverride) -> NamespaceOverrideDocument:
    document: NamespaceOverrideDocument = {}
    if override.namespaces:
        document["namespaces"] = list(override.namespaces)
    if override.namespace_selector is not None:
        document["namespaceSelector"] = _selector(override.namespace_selector)
    memoize, latch = _memoize_override(override.memoize), _latch_override(override.latch)
    if memoize:
        document["memoize"] = memoize
    if latch:
        document["latch"] = latch
    return document


def policy_to_document(policy: Policy) -> PolicyDocument:
    """The file form of a policy; `policy_from_document(policy_to_document(p))` equals `p`."""
    scope: NamespacesDocument = {
        "include": list(policy.namespaces.include),
        "exclude": list(policy.namespaces.exclude),
    }
    if policy.namespaces.selector is not None:
        scope["selector"] = _selector(policy.namespaces.selector)
    memoize, replay = policy.memoize, policy.memoize.replay
    document: PolicyDocument = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "namespaces": scope,
        "features": {
            "memoize": policy.features.memoize,
            "latch": policy.features.latch,
            "shrinkWorkflows": policy.features.shrink_workflows,
            "shrinkTaskResults": policy.features.shrink_task_results,
        },
        "memoize": {
            "namespaces": list(memoize.namespaces),
            "maxStaleness": format_duration(memoize.max_staleness),
            "maxStalenessLimit": _optional_duration(memoize.max_staleness_limit),
            "shareAcrossNamespaces": memoize.share_across_namespaces,
            "allowWritableVolumes": memoize.allow_writable_volumes,
            "requireDigestPinnedImages": memoize.require_digest_pinned_images,
            "replay": {
                "image": replay.image,
                "imagePullPolicy": replay.image_pull_policy,
                "resources": {
                    "requests": dict(replay.resources.requests),
                    "limits": dict(replay.resources.limits),
                },
            },
        },
        "latch": {
            "leaseTTL": format_duration(policy.latch.lease_ttl),
            "heartbeat": format_duration(policy.latch.heartbeat),
            "followerWait": format_duration(policy.latch.follower_wait),
        },
        "shrink": {
            "valueThresholdBytes": policy.shrink.value_threshold_bytes,
            "objectThresholdBytes": policy.shrink.object_threshold_bytes,
            "compressionLevel": policy.shrink.compression_level,
        },
        "sideStore": {
            "url": policy.side_store.url,
            "namespaceQuotaBytes": policy.side_store.namespace_quota_bytes,
        },
        "overrides": [_override(override) for override in policy.overrides],
    }
    if memoize.namespace_selector is not None:
        document["memoize"]["namespaceSelector"] = _selector(memoize.namespace_selector)
    return document


def dump_policy(policy: Policy) -> str:
    """The policy as YAML, in the field order of the schema."""
    return yaml.safe_dump(dict(policy_to_document(policy)), sort_keys=False, default_flow_style=False)
