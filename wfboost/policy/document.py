"""The policy file as it is written (camelCase YAML), spelled out as TypedDicts.

The loader reads a document of this shape only after the JSON Schema accepted it, so the casts there are
backed by validation; the dumper writes this shape back. Every key is optional except `apiVersion` and `kind`.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

__all__ = [
    "FeaturesDocument",
    "LabelRequirementDocument",
    "LabelSelectorDocument",
    "LatchDocument",
    "LatchOverrideDocument",
    "MemoizeDocument",
    "MemoizeOverrideDocument",
    "NamespaceOverrideDocument",
    "NamespacesDocument",
    "PolicyDocument",
    "ReplayDocument",
    "ResourcesDocument",
    "ShrinkDocument",
    "SideStoreDocument",
]


class LabelRequirementDocument(TypedDict):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: NotRequired[list[str]]


class LabelSelectorDocument(TypedDict, total=False):
    matchLabels: dict[str, str]
    matchExpressions: list[LabelRequirementDocument]


class NamespacesDocument(TypedDict, total=False):
    include: list[str]
    exclude: list[str]
    selector: LabelSelectorDocument | None


class FeaturesDocument(TypedDict, total=False):
    memoize: bool
    latch: bool
    shrinkWorkflows: bool
    shrinkTaskResults: bool


class ResourcesDocument(TypedDict, total=False):
    requests: dict[str, str]
    limits: dict[str, str]


class ReplayDocument(TypedDict, total=False):
    image: str
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"]
    resources: ResourcesDocument


class MemoizeDocument(TypedDict, total=False):
    namespaces: list[str]
    namespaceSelector: LabelSelectorDocument | None
    maxStaleness: str
    maxStalenessLimit: str | None
    shareAcrossNamespaces: bool
    allowWritableVolumes: bool
    requireDigestPinnedImages: bool
    replay: ReplayDocument


class LatchDocument(TypedDict, total=False):
    leaseTTL: str
    heartbeat: str
    followerWait: str


class ShrinkDocument(TypedDict, total=False):
    valueThresholdBytes: int
    objectThresholdBytes: int
    compressionLevel: int


class SideStoreDocument(TypedDict, total=False):
    url: str | None
    namespaceQuotaBytes: int | None


class MemoizeOverrideDocument(TypedDict, total=False):
    enabled: bool
    maxStaleness: str
    maxStalenessLimit: str
    allowWritableVolumes: bool
    requireDigestPinnedImages: bool


class LatchOverrideDocument(TypedDict, total=False):
    enabled: bool
    leaseTTL: str
    heartbeat: str
    followerWait: str


class NamespaceOverrideDocument(TypedDict, total=False):
    namespaces: list[str]
    namespaceSelector: LabelSelectorDocument
    memoize: MemoizeOverrideDocument
    latch: LatchOverrideDocument


class PolicyDocument(TypedDict):
    apiVersion: Literal["wfboost.io/v1alpha1"]
    kind: Literal["Policy"]
    namespaces: NotRequired[NamespacesDocument]
    features: NotRequired[FeaturesDocument]
    memoize: NotRequired[MemoizeDocument]
    latch: NotRequired[LatchDocument]
    shrink: NotRequired[ShrinkDocument]
    sideStore: NotRequired[SideStoreDocument]
    overrides: NotRequired[list[NamespaceOverrideDocument]]
