"""From policy text to a `Policy`: YAML parsing, validation, then building the dataclasses.

All-or-nothing: a text either yields a complete Policy or raises PolicyError with every problem found, so a
caller never runs with half a policy. Fields the file leaves out take the dataclass defaults in model.py.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import timedelta
from typing import Any, cast

import yaml

from .document import (
    LabelSelectorDocument,
    LatchOverrideDocument,
    MemoizeOverrideDocument,
    NamespaceOverrideDocument,
    PolicyDocument,
    ReplayDocument,
)
from .errors import PolicyError
from .iso8601 import parse_duration
from .model import (
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
)
from .schema import validate_document
from .selector import LabelRequirement, LabelSelector

__all__ = ["load_policy", "policy_from_document"]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping.

    PyYAML silently keeps the last one, so `maxStaleness` written twice would make the first value vanish
    without a word; in a policy that is a mistake worth naming.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {key!r} appears twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> object:
    try:
        documents = [document for document in yaml.load_all(text, Loader=_StrictLoader) if document is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise PolicyError([f"{where}: {error.problem or error}"]) from None
    except yaml.YAMLError as error:
        raise PolicyError([f"YAML: {error}"]) from None
    if not documents:
        raise PolicyError(["(top level): the policy is empty; expected apiVersion wfboost.io/v1alpha1, kind Policy"])
    if len(documents) > 1:
        raise PolicyError([f"(top level): expected one YAML document, found {len(documents)}"])
    return documents[0]


def _selector(document: LabelSelectorDocument | None) -> LabelSelector | None:
    if document is None:
        return None
    return LabelSelector(
        match_labels=tuple(sorted(document.get("matchLabels", {}).items())),
        match_expressions=tuple(
            LabelRequirement(key=term["key"], operator=term["operator"], values=tuple(term.get("values", ())))
            for term in document.get("matchExpressions", [])
        ),
    )


def _replay(document: ReplayDocument) -> ReplaySettings:
    defaults = ReplaySettings()
    resources = document.get("resources")
    return ReplaySettings(
        image=document.get("image", defaults.image),
        image_pull_policy=document.get("imagePullPolicy", defaults.image_pull_policy),
        resources=(
            defaults.resources
            if resources is None
            else ReplayResources(
                requests=tuple(sorted(resources.get("requests", dict(defaults.resources.requests)).items())),
                limits=tuple(sorted(resources.get("limits", dict(defaults.resources.limits)).items())),
            )
        ),
    )


def _optional_duration(text: str | None) -> timedelta | None:
    return None if text is None else parse_duration(text)


def _memoize_override(document: MemoizeOverrideDocument) -> MemoizeOverride:
    return MemoizeOverride(
        enabled=document.get("enabled"),
        max_staleness=_optional_duration(document.get("maxStaleness")),
        max_staleness_limit=_optional_duration(document.get("maxStalenessLimit")),
        allow_writable_volumes=document.get("allowWritableVolumes"),
        require_digest_pinned_images=document.get("requireDigestPinnedImages"),
    )


def _latch_override(document: LatchOverrideDocument) -> LatchOverride:
    return LatchOverride(
        enabled=document.get("enabled"),
        lease_ttl=_optional_duration(document.get("leaseTTL")),
        heartbeat=_optional_duration(document.get("heartbeat")),
        follower_wait=_optional_duration(document.get("followerWait")),
    )


def _override(document: NamespaceOverrideDocument) -> NamespaceOverride:
    return NamespaceOverride(
        namespaces=tuple(document.get("namespaces", ())),
        namespace_selector=_selector(document.get("namespaceSelector")),
        memoize=_memoize_override(document.get("memoize", {})),
        latch=_latch_override(document.get("latch", {})),
    )


def policy_from_document(document: PolicyDocument) -> Policy:
    """Build a Policy from a document the schema has accepted (see `validate_document`)."""
    scope, features = document.get("namespaces", {}), document.get("features", {})
    memoize, latch = document.get("memoize", {}), document.get("latch", {})
    shrink, side_store = document.get("shrink", {}), document.get("sideStore", {})
    defaults = Policy()
    limit = memoize.get("maxStalenessLimit", None)
    return Policy(
        namespaces=NamespaceScope(
            include=tuple(scope.get("include", defaults.namespaces.include)),
            exclude=tuple(scope.get("exclude", defaults.namespaces.exclude)),
            selector=_selector(scope.get("selector")),
        ),
        features=Features(
            memoize=features.get("memoize", defaults.features.memoize),
            latch=features.get("latch", defaults.features.latch),
            shrink_workflows=features.get("shrinkWorkflows", defaults.features.shrink_workflows),
            shrink_task_results=features.get("shrinkTaskResults", defaults.features.shrink_task_results),
        ),
        memoize=MemoizeSettings(
            namespaces=tuple(memoize.get("namespaces", defaults.memoize.namespaces)),
            namespace_selector=_selector(memoize.get("namespaceSelector")),
            max_staleness=(
                parse_duration(memoize["maxStaleness"]) if "maxStaleness" in memoize else defaults.memoize.max_staleness
            ),
            max_staleness_limit=(
                _optional_duration(limit) if "maxStalenessLimit" in memoize else defaults.memoize.max_staleness_limit
            ),
            share_across_namespaces=memoize.get("shareAcrossNamespaces", defaults.memoize.share_across_namespaces),
            allow_writable_volumes=memoize.get("allowWritableVolumes", defaults.memoize.allow_writable_volumes),
            require_digest_pinned_images=memoize.get(
                "requireDigestPinnedImages", defaults.memoize.require_digest_pinned_images
            ),
            replay=_replay(memoize.get("replay", {})),
        ),
        latch=LatchSettings(
            lease_ttl=parse_duration(latch["leaseTTL"]) if "leaseTTL" in latch else defaults.latch.lease_ttl,
            heartbeat=parse_duration(latch["heartbeat"]) if "heartbeat" in latch else defaults.latch.heartbeat,
            follower_wait=(
                parse_duration(latch["followerWait"]) if "followerWait" in latch else defaults.latch.follower_wait
            ),
        ),
        shrink=ShrinkSettings(
            value_threshold_bytes=shrink.get("valueThresholdBytes", defaults.shrink.value_threshold_bytes),
            object_threshold_bytes=shrink.get("objectThresholdBytes", defaults.shrink.object_threshold_bytes),
            compression_level=shrink.get("compressionLevel", defaults.shrink.compression_level),
        ),
        side_store=SideStoreSettings(
            url=side_store.get("url", defaults.side_store.url),
            namespace_quota_bytes=side_store.get("namespaceQuotaBytes", defaults.side_store.namespace_quota_bytes),
        ),
        overrides=tuple(_override(override) for override in document.get("overrides", [])),
    )


def load_policy(text: str, own_namespace: str | None = None) -> Policy:
    """Parse, validate and build a policy; raise PolicyError listing every problem.

    `own_namespace` (the webhook's namespace, e.g. from env POD_NAMESPACE) is added to the always-excluded
    namespaces; no file can bring it or kube-system back into scope.
    """
    document = _parse_yaml(text)
    messages = validate_document(document)
    if messages:
        raise PolicyError(messages)
    return policy_from_document(cast(PolicyDocument, document)).with_own_namespace(own_namespace)
