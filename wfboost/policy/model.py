"""The policy as frozen dataclasses, and the rules that turn it into effective settings for one namespace.

Every default lives here, once: the loader only overrides what the file names, and `Policy.default()` is the
policy of a webhook started without a file (features off, every object passed through untouched).

Callers never read sections and overrides themselves; they ask `namespace_in_scope`, `memoize_settings_for` or
`latch_settings_for`, so the precedence rules (always-excluded namespaces, scope, feature switches, overrides
in file order) are written in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, ClassVar, Final, Literal, TypedDict, TypeVar, cast

from .fields import setting
from .selector import LabelSelector, matches_any_glob

__all__ = [
    "ALWAYS_EXCLUDED_NAMESPACES",
    "API_VERSION",
    "DEFAULT_REPLAY_IMAGE",
    "KIND",
    "EffectiveLatch",
    "EffectiveMemoize",
    "Features",
    "ImagePullPolicy",
    "LatchOverride",
    "LatchSettings",
    "MemoizeOverride",
    "MemoizeSettings",
    "NamespaceOverride",
    "NamespaceScope",
    "NodeCompression",
    "Policy",
    "ReplayResources",
    "ReplaySettings",
    "ResourceRequirementsBody",
    "ShrinkSettings",
    "SideStoreSettings",
    "SplitSettings",
]

API_VERSION: Final = "wfboost.io/v1alpha1"
KIND: Final = "Policy"

# Out of scope whatever the file says: mutating kube-system can break the cluster itself, and the webhook's
# own namespace must stay admissible even when the webhook misbehaves (its own pods, its Redis, its side
# store).
ALWAYS_EXCLUDED_NAMESPACES: frozenset[str] = frozenset({"kube-system"})

# The image built from deploy/ for replayed cache hits; overridden with memoize.replay.image.
DEFAULT_REPLAY_IMAGE = "ghcr.io/wfboost/replay:0.1.0"

ImagePullPolicy = Literal["Always", "IfNotPresent", "Never"]
# Which CRDs the cluster's Argo install applied: `full` (schema and CEL rules, Argo's release manifests from v4.0,
# with their list limits) or `minimal` (Argo 3.x, or a v4 install that chose them: no limits).
ArgoCRDs = Literal["full", "minimal"]
# How `status.compressedNodes` is written (wfboost.argo.workflow_status.compressed_nodes).
NodeCompression = Literal["gzip", "zstd"]


class ResourceRequirementsBody(TypedDict, total=False):
    """A container's `resources` as the Kubernetes API spells it."""

    requests: dict[str, str]
    limits: dict[str, str]


@dataclass(frozen=True)
class NamespaceScope:
    """Which namespaces the webhook acts in at all (`namespaces:` in the file)."""

    include: tuple[str, ...] = setting(
        "include", default=("*",), schema={"$ref": "#/$defs/globList"},
        doc="Namespaces in scope (shell-style globs). Default [\"*\"].",
    )
    exclude: tuple[str, ...] = setting(
        "exclude", default=(), schema={"$ref": "#/$defs/globList"}, doc="Namespaces taken out again (globs)."
    )
    selector: LabelSelector | None = setting(
        "selector", default=None, nullable=True,
        doc="When set, a namespace is in scope only if its labels are known and match.",
    )


@dataclass(frozen=True)
class Features:
    """One switch per feature; all off, so installing the webhook changes nothing until an admin opts in."""

    memoize: bool = setting("memoize", default=False, doc="Memoize steps in the namespaces `memoize` names.")
    latch: bool = setting(
        "latch", default=False,
        doc="Identical steps in flight at once run once: the others are deferred (429) and take the result.",
    )
    shrink_workflows: bool = setting(
        "shrinkWorkflows", default=False,
        doc="At Workflow CREATE, move bulky arguments that only reach containers to the side store.",
    )
    compress_status: bool = setting(
        "compressStatus", default=False,
        doc="Store large `status.nodes` as `status.compressedNodes`, in the controller's own format.",
    )
    shrink_task_results: bool = setting(
        "shrinkTaskResults", default=False,
        doc="Move bulky step output values that only reach containers from WorkflowTaskResults to the side store.",
    )
    split_dags: bool | None = setting(
        "splitDags", default=None, nullable=True,
        doc="Rewrite DAGs over Argo 4's 200-task limit into nested groups that keep their meaning, at CREATE "
            "(docs/split.md). null: on exactly when `split.argoCRDs` is `full`.",
    )


@dataclass(frozen=True)
class ReplayResources:
    """Requests and limits of the replay container, as sorted (name, quantity) pairs to stay hashable."""

    # Requests equal to limits: a namespace LimitRange's maxLimitRequestRatio cannot refuse the replayed pod, and the
    # pod is as cheap to schedule as it will be to run (emissary plus a shell writing a few files).
    requests: tuple[tuple[str, str], ...] = setting(
        "requests", default=(("cpu", "50m"), ("memory", "64Mi")), doc="Requests of the replay container."
    )
    limits: tuple[tuple[str, str], ...] = setting(
        "limits", default=(("cpu", "50m"), ("memory", "64Mi")), doc="Limits of the replay container."
    )

    def as_kubernetes(self) -> ResourceRequirementsBody:
        """The body to put in a container's `resources` (a fresh dict each call, safe to mutate)."""
        body: ResourceRequirementsBody = {}
        if self.requests:
            body["requests"] = dict(self.requests)
        if self.limits:
            body["limits"] = dict(self.limits)
        return body


@dataclass(frozen=True)
class ReplaySettings:
    """The container that replays a cache hit's outputs."""

    image: str = setting(
        "image", default=DEFAULT_REPLAY_IMAGE, schema={"$ref": "#/$defs/image"},
        doc="The image that replays a hit's outputs (built from deploy/images/replay).",
    )
    image_pull_policy: ImagePullPolicy = setting("imagePullPolicy", default="IfNotPresent", doc="Its pull policy.")
    resources: ReplayResources = setting(
        "resources", default_factory=ReplayResources, doc="Its requests and limits (cpu, memory, ephemeral-storage)."
    )


@dataclass(frozen=True)
class MemoizeSettings:
    """The `memoize:` section: where memoization is on and the defaults a step's annotations refine."""

    namespaces: tuple[str, ...] = setting(
        "namespaces", default=(), schema={"$ref": "#/$defs/globList"}, doc="Namespaces where memoization is on (globs)."
    )
    namespace_selector: LabelSelector | None = setting(
        "namespaceSelector", default=None, nullable=True, doc="Namespaces where memoization is on, by their labels."
    )
    max_staleness: timedelta = setting(
        "maxStaleness", default=timedelta(days=7), doc="Default for wfboost.io/max-staleness. P0D: never reuse."
    )
    max_staleness_limit: timedelta | None = setting(
        "maxStalenessLimit", default=None, nullable=True,
        doc="Admin ceiling that clamps every step's staleness; null: no ceiling.",
    )
    share_across_namespaces: bool = setting(
        "shareAcrossNamespaces", default=False, doc="Entries are shared across namespaces (global only)."
    )
    allow_writable_volumes: bool = setting(
        "allowWritableVolumes", default=False, doc="Steps that mount writable persistent volumes may be memoized."
    )
    opt_in: bool = setting(
        "optIn", default=False,
        doc="Only steps that say wfboost.io/cache: \"true\" are memoized (else every eligible step is).",
    )
    trust_image_tags: bool = setting(
        "trustImageTags", default=False,
        doc="A named tag (not latest) always names the same image; without it only images pinned by digest are"
        " memoized.",
    )
    trust_config_maps_and_secrets: bool = setting(
        "trustConfigMapsAndSecrets", default=False,
        doc="ConfigMaps and Secrets a step reads (env, envFrom, volumes) never change content under the same name.",
    )
    trust_read_only_volumes: bool = setting(
        "trustReadOnlyVolumes", default=False,
        doc="What a step reads from a read-only persistent volume (PVC, NFS, hostPath, CSI…) never changes.",
    )
    trust_artifact_locations: bool = setting(
        "trustArtifactLocations", default=False,
        doc="An input artifact's location (bucket and key, URL, git branch) never holds other content; without it"
        " only artifacts pinned by content (raw, git at a commit) or written once by a memoized run are.",
    )
    replay: ReplaySettings = setting("replay", default_factory=ReplaySettings, doc="The container that replays hits.")


@dataclass(frozen=True)
class LatchSettings:
    """The `latch:` section: the lease a leader holds while followers wait for its result."""

    lease_ttl: timedelta = setting(
        "leaseTTL", default=timedelta(seconds=30), schema={"$ref": "#/$defs/positiveDuration"},
        doc="How long a leader's lease lives without a heartbeat.",
    )
    heartbeat: timedelta = setting(
        "heartbeat", default=timedelta(seconds=10), schema={"$ref": "#/$defs/positiveDuration"},
        doc="How often a leader renews its lease; shorter than leaseTTL.",
    )
    follower_wait: timedelta = setting(
        "followerWait", default=timedelta(hours=1), schema={"$ref": "#/$defs/positiveDuration"},
        doc="How long a follower waits before running the step itself.",
    )


@dataclass(frozen=True)
class ShrinkSettings:
    """The `shrink:` section: status compression, and Workflow and task-result values moved out."""

    value_threshold_bytes: int = setting(
        "valueThresholdBytes", default=4096, schema={"minimum": 256},
        doc="A single value at least this long is moved to the side store (at least 256: a shorter one saves "
            "nothing once its reference, about 90 characters, and its template's restore label take its place).",
    )
    object_threshold_bytes: int = setting(
        "objectThresholdBytes", default=65536, schema={"minimum": 0},
        doc="Objects smaller than this are left alone: a side-store round trip costs more than it saves on them.",
    )
    compression_level: int = setting(
        "compressionLevel", default=3, schema={"minimum": 1, "maximum": 19},
        doc="zstd level for values compressed at rest (1 fastest … 19 smallest); not read yet.",
    )
    status_threshold_bytes: int = setting(
        "statusThresholdBytes", default=65536, schema={"minimum": 1024},
        doc="`status.nodes` at least this long (as JSON) is stored compressed, when `compressStatus` is on.",
    )
    status_compression: NodeCompression = setting(
        "statusCompression", default="gzip",
        doc="`gzip` (every Argo controller reads it) or `zstd` (needs `controllerVersion` 4.1 or later).",
    )
    controller_version: str | None = setting(
        "controllerVersion", default=None, nullable=True, schema={
            "pattern": r"^v?[0-9]+\.[0-9]+(\.[0-9]+)?$", "x-expected": "an Argo version such as 4.1 or v4.1.2"
        },
        doc="The oldest Argo controller version the webhook serves (e.g. `4.1`), for formats only newer ones read.",
    )


@dataclass(frozen=True)
class SplitSettings:
    """The `split:` section: what the cluster's Argo CRDs allow, and so what the DAG split must reach."""

    argo_crds: ArgoCRDs | None = setting(
        "argoCRDs", default=None, nullable=True,
        doc="The CRDs your Argo install applied: `full` (Argo 4's release manifests; their schema refuses a DAG of "
            "more than 200 tasks) or `minimal`; null: not declared. `full` turns `splitDags` on unless it is set.",
    )
    max_tasks: int = setting(
        "maxTasks", default=200, schema={"minimum": 2, "maximum": 200},
        doc="Tasks a DAG may have, after the split too (at most 200, the limit of Argo 4's CRDs).",
    )
    controller_template_defaults: bool = setting(
        "controllerTemplateDefaults", default=False,
        doc="The controller's `workflowDefaults` (workflow-controller-configmap) set `templateDefaults` or an "
            "`onExit` that reads `workflow.failures`: they would reach the groups too, so nothing is split.",
    )


@dataclass(frozen=True)
class SideStoreSettings:
    """The `sideStore:` section: where moved-out values go."""

    url: str | None = setting(
        "url", default=None, nullable=True, schema={"$ref": "#/$defs/url"},
        doc="Not read: the webhook takes the side store from `wfboost serve --sidestore-url`.",
    )
    namespace_quota_bytes: int | None = setting(
        "namespaceQuotaBytes", default=10 * 1024**3, nullable=True, schema={"minimum": 0},
        doc="Bytes one namespace may hold in the side store; null means no quota.",
    )


@dataclass(frozen=True)
class MemoizeOverride:
    """Per-namespace replacements for `memoize:` defaults; None keeps the value from below.

    `shareAcrossNamespaces` and the replay container are deliberately global: sharing is a property of the
    whole cache key space, and a replay image that differs per namespace would make hits depend on where they
    run.
    """

    enabled: bool | None = setting("enabled", default=None, doc="Memoization on or off here.")
    max_staleness: timedelta | None = setting("maxStaleness", default=None, doc="Replaces memoize.maxStaleness.")
    max_staleness_limit: timedelta | None = setting(
        "maxStalenessLimit", default=None, doc="Replaces memoize.maxStalenessLimit."
    )
    allow_writable_volumes: bool | None = setting(
        "allowWritableVolumes", default=None, doc="Replaces memoize.allowWritableVolumes."
    )
    opt_in: bool | None = setting("optIn", default=None, doc="Replaces memoize.optIn.")
    trust_image_tags: bool | None = setting("trustImageTags", default=None, doc="Replaces memoize.trustImageTags.")
    trust_config_maps_and_secrets: bool | None = setting(
        "trustConfigMapsAndSecrets", default=None, doc="Replaces memoize.trustConfigMapsAndSecrets."
    )
    trust_read_only_volumes: bool | None = setting(
        "trustReadOnlyVolumes", default=None, doc="Replaces memoize.trustReadOnlyVolumes."
    )
    trust_artifact_locations: bool | None = setting(
        "trustArtifactLocations", default=None, doc="Replaces memoize.trustArtifactLocations."
    )


@dataclass(frozen=True)
class LatchOverride:
    """Per-namespace replacements for `latch:` defaults; None keeps the value from below."""

    enabled: bool | None = setting("enabled", default=None, doc="false turns latching off here.")
    lease_ttl: timedelta | None = setting(
        "leaseTTL", default=None, schema={"$ref": "#/$defs/positiveDuration"}, doc="Replaces latch.leaseTTL."
    )
    heartbeat: timedelta | None = setting(
        "heartbeat", default=None, schema={"$ref": "#/$defs/positiveDuration"}, doc="Replaces latch.heartbeat."
    )
    follower_wait: timedelta | None = setting(
        "followerWait", default=None, schema={"$ref": "#/$defs/positiveDuration"}, doc="Replaces latch.followerWait."
    )


@dataclass(frozen=True)
class NamespaceOverride:
    """One `overrides:` entry: applies to namespaces matching a glob or whose labels match the selector."""

    POLICY_SCHEMA: ClassVar[Mapping[str, Any]] = {
        "anyOf": [{"required": ["namespaces"]}, {"required": ["namespaceSelector"]}],
        "x-hint": "needs namespaces or namespaceSelector to say where it applies",
    }

    namespaces: tuple[str, ...] = setting(
        "namespaces", default=(), schema={"$ref": "#/$defs/globList"}, doc="Where the entry applies (globs)."
    )
    namespace_selector: LabelSelector | None = setting(
        "namespaceSelector", default=None, doc="Where the entry applies (by namespace labels)."
    )
    memoize: MemoizeOverride = setting("memoize", default_factory=MemoizeOverride, doc="Changes to memoize defaults.")
    latch: LatchOverride = setting("latch", default_factory=LatchOverride, doc="Changes to latch defaults.")

    def applies_to(self, namespace: str, labels: Mapping[str, str] | None) -> bool:
        """True when the namespace's name matches a glob or its (known) labels match the selector."""
        if matches_any_glob(namespace, self.namespaces):
            return True
        return self.namespace_selector is not None and self.namespace_selector.matches(labels)


# The memoize fields an override may replace, by their dataclass name (MemoizeOverride has each, optional).
_OVERRIDABLE_MEMOIZE = (
    "max_staleness", "max_staleness_limit", "allow_writable_volumes", "opt_in", "trust_image_tags",
    "trust_config_maps_and_secrets", "trust_read_only_volumes", "trust_artifact_locations",
)


@dataclass(frozen=True)
class EffectiveMemoize:
    """Memoization settings for one namespace after scope, switches and overrides."""

    enabled: bool
    max_staleness: timedelta
    max_staleness_limit: timedelta | None
    share_across_namespaces: bool
    allow_writable_volumes: bool
    replay: ReplaySettings
    opt_in: bool = False
    trust_image_tags: bool = False
    trust_config_maps_and_secrets: bool = False
    trust_read_only_volumes: bool = False
    trust_artifact_locations: bool = False

    def staleness(self, requested: timedelta | None) -> timedelta:
        """The staleness a step gets: its own `wfboost.io/max-staleness` or the default, clamped by the limit.

        The default is clamped too, so an override that raises the default past the admin limit cannot bypass
        it.
        """
        wanted = self.max_staleness if requested is None else requested
        if self.max_staleness_limit is not None:
            wanted = min(wanted, self.max_staleness_limit)
        return max(wanted, timedelta(0))


@dataclass(frozen=True)
class EffectiveLatch:
    """Latching settings for one namespace after scope, switches and overrides."""

    enabled: bool
    lease_ttl: timedelta
    heartbeat: timedelta
    follower_wait: timedelta


@dataclass(frozen=True)
class Policy:
    """The whole policy. Build it with `Policy.default()` or `load_policy()`; query it with the methods."""

    namespaces: NamespaceScope = setting(
        "namespaces", default_factory=NamespaceScope,
        doc="Namespaces the webhook acts in at all. kube-system and the webhook's own namespace are always out.",
    )
    features: Features = setting("features", default_factory=Features, doc="One switch per feature; all off.")
    memoize: MemoizeSettings = setting("memoize", default_factory=MemoizeSettings, doc="Memoization defaults.")
    latch: LatchSettings = setting("latch", default_factory=LatchSettings, doc="Latching defaults.")
    shrink: ShrinkSettings = setting(
        "shrink", default_factory=ShrinkSettings, doc="Compressed status; Workflow values moved to the side store."
    )
    side_store: SideStoreSettings = setting("sideStore", default_factory=SideStoreSettings, doc="The side store.")
    split: SplitSettings = setting(
        "split", default_factory=SplitSettings, doc="What Argo's CRDs allow, for the DAG split."
    )
    overrides: tuple[NamespaceOverride, ...] = setting(
        "overrides", default=(),
        doc="Per-namespace changes to memoize and latch defaults, applied in order (a later match wins).",
    )
    # Not from the file: kube-system plus the webhook's own namespace (see `with_own_namespace`).
    always_excluded: frozenset[str] = ALWAYS_EXCLUDED_NAMESPACES

    @classmethod
    def default(cls, own_namespace: str | None = None) -> Policy:
        """The policy without a file: every feature off, so objects pass through untouched."""
        return cls().with_own_namespace(own_namespace)

    def with_own_namespace(self, own_namespace: str | None) -> Policy:
        """A copy that also always excludes the webhook's own namespace (e.g. from env POD_NAMESPACE)."""
        if not own_namespace:
            return self
        return replace(self, always_excluded=self.always_excluded | {own_namespace})

    @property
    def reads_namespace_labels(self) -> bool:
        """True when some rule selects namespaces by label (scope, memoize, an override): the webhook then needs
        the namespaces' labels before it can apply the policy as written."""
        return (self.namespaces.selector is not None or self.memoize.namespace_selector is not None
                or any(override.namespace_selector is not None for override in self.overrides))

    def namespace_in_scope(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        """True when the webhook may act in this namespace at all.

        Out when always excluded, when no `include` glob matches, when an `exclude` glob matches, or when a
        scope selector is set and the labels are unknown or do not match.
        """
        if not isinstance(namespace, str) or not namespace or namespace in self.always_excluded:
            return False
        scope = self.namespaces
        if not matches_any_glob(namespace, scope.include) or matches_any_glob(namespace, scope.exclude):
            return False
        return scope.selector is None or scope.selector.matches(labels)

    def _overrides_for(self, namespace: str, labels: Mapping[str, str] | None) -> list[NamespaceOverride]:
        return [override for override in self.overrides if override.applies_to(namespace, labels)]

    def memoize_settings_for(self, namespace: str, labels: Mapping[str, str] | None = None) -> EffectiveMemoize:
        """Effective memoization settings: overrides that match apply in file order, a later one winning."""
        return _effective(self, "memoize", namespace, labels, self._memoize_settings_for)

    def _memoize_settings_for(self, namespace: str, labels: Mapping[str, str] | None) -> EffectiveMemoize:
        base = self.memoize
        enabled = matches_any_glob(namespace, base.namespaces) or (
            base.namespace_selector is not None and base.namespace_selector.matches(labels)
        )
        values: dict[str, Any] = {name: getattr(base, name) for name in _OVERRIDABLE_MEMOIZE}
        for override in self._overrides_for(namespace, labels):
            change = override.memoize
            enabled = enabled if change.enabled is None else change.enabled
            values.update(
                (name, getattr(change, name)) for name in _OVERRIDABLE_MEMOIZE if getattr(change, name) is not None
            )
        return EffectiveMemoize(
            enabled=enabled and self.features.memoize and self.namespace_in_scope(namespace, labels),
            share_across_namespaces=base.share_across_namespaces,
            replay=base.replay,
            **values,
        )

    def latch_settings_for(self, namespace: str, labels: Mapping[str, str] | None = None) -> EffectiveLatch:
        """Effective latching settings. Latching needs memoization (followers take the leader's cache entry),
        so it is on only where memoization is on, the `latch` switch is on, and no override turns it off.

        When layered overrides leave a heartbeat that is not shorter than the lease, the heartbeat becomes a
        third of the lease: a lease that expires between heartbeats would let a second leader start.
        """
        return _effective(self, "latch", namespace, labels, self._latch_settings_for)

    def _latch_settings_for(self, namespace: str, labels: Mapping[str, str] | None) -> EffectiveLatch:
        base = self.latch
        enabled = True
        lease_ttl, heartbeat, follower_wait = base.lease_ttl, base.heartbeat, base.follower_wait
        for override in self._overrides_for(namespace, labels):
            change = override.latch
            enabled = enabled if change.enabled is None else change.enabled
            lease_ttl = lease_ttl if change.lease_ttl is None else change.lease_ttl
            heartbeat = heartbeat if change.heartbeat is None else change.heartbeat
            follower_wait = follower_wait if change.follower_wait is None else change.follower_wait
        if heartbeat >= lease_ttl:
            heartbeat = lease_ttl / 3
        memoize_on = self.memoize_settings_for(namespace, labels).enabled
        return EffectiveLatch(
            enabled=enabled and self.features.latch and memoize_on,
            lease_ttl=lease_ttl,
            heartbeat=heartbeat,
            follower_wait=follower_wait,
        )

    def shrink_workflows_in(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        """True when Workflows in this namespace may have bulky values moved out."""
        return self.features.shrink_workflows and self.namespace_in_scope(namespace, labels)

    def compress_status_in(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        """True when Workflows in this namespace get large node statuses stored compressed."""
        return self.features.compress_status and self.namespace_in_scope(namespace, labels)

    @property
    def splits_dags(self) -> bool:
        """True when DAGs over the limit are split: `splitDags` as set, or, left null, when the CRDs are full."""
        if self.features.split_dags is not None:
            return self.features.split_dags
        return self.split.argo_crds == "full"

    def split_dags_in(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        """True when a Workflow (or a template holder) in this namespace gets its DAGs split. Cluster-scoped
        objects (a ClusterWorkflowTemplate, namespace "") belong to every namespace: only the switch decides."""
        if not self.splits_dags:
            return False
        return namespace == "" or self.namespace_in_scope(namespace, labels)

    def shrink_task_results_in(self, namespace: str, labels: Mapping[str, str] | None = None) -> bool:
        """True when WorkflowTaskResults in this namespace may have bulky values moved out."""
        return self.features.shrink_task_results and self.namespace_in_scope(namespace, labels)


# Effective settings per namespace, kept for the policies in use. A Policy never changes once loaded, and the
# webhook asks for the same few namespaces' settings on every pod (a sixteenth of a pod's admission when computed
# each time); a reload brings a new Policy, and so new answers. Labels are part of the key: a namespace whose labels
# change gets its settings computed again.
_EFFECTIVE_POLICIES = 4  # policies whose answers are kept (the current one, and those requests still hold)
_EFFECTIVE_ANSWERS = 4096  # answers per policy before they are all dropped (namespaces × label sets)
_effective_answers: dict[int, tuple[Policy, dict[tuple[Any, ...], Any]]] = {}

_T = TypeVar("_T")


def _effective(policy: Policy, kind: str, namespace: str, labels: Mapping[str, str] | None,
               compute: Callable[[str, Mapping[str, str] | None], _T]) -> _T:
    held = _effective_answers.get(id(policy))
    if held is None or held[0] is not policy:
        while len(_effective_answers) >= _EFFECTIVE_POLICIES:
            del _effective_answers[next(iter(_effective_answers))]
        held = _effective_answers[id(policy)] = (policy, {})
    answers = held[1]
    try:
        key = (kind, namespace, None if labels is None else tuple(sorted(labels.items())))
        found = answers.get(key)
    except (AttributeError, TypeError):  # not a namespace's name and labels (hostile input): answered, not kept
        return compute(namespace, labels)
    if found is None:
        if len(answers) >= _EFFECTIVE_ANSWERS:
            answers.clear()
        found = answers[key] = compute(namespace, labels)
    return cast(_T, found)
