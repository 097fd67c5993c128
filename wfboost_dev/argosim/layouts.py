"""The Argo controller pod layouts we reproduce, one per controller release, each tied to the source it was read from.

Why a table of flags instead of one builder per version: the five layouts share ~90 % of their code path
(`createWorkflowPod` in `workflow/controller/workflowpod.go`), and the differences are small, named and
independent (where `ARGO_TEMPLATE` lives, whether it is offloaded, an extra log flag, an extra env var...).
A flag per difference keeps every divergence greppable and lets `docs/argo-pods.md` cite the line that
introduced it. Each flag's docstring names the file and line at the tag it was read from.

The sources were read from a snapshot of github.com/argoproj/argo-workflows at these tags:

=================  ==========  ========================================
layout             tag         commit
=================  ==========  ========================================
`V3_5`           v3.5.14     d94c214176716ece96974fd98ac5107c38d61344
`V3_6`           v3.6.19     c66a734c911a25a1e0f626af5995a222d6267e37
`V3_7`           v3.7.18     66e32e5cc367f223e2ecf4fbe852b95eaed83034
`V4_1`           v4.1.2      16a52d67daf2f4a8a76fa8bec02a76a46aa46257
`V4_1_INITLESS`  v4.1.2      16a52d67daf2f4a8a76fa8bec02a76a46aa46257
=================  ==========  ========================================
"""

from __future__ import annotations

from dataclasses import dataclass

from wfboost.argo import names

__all__ = [
    "ARGOEXEC_BIN_MOUNT_PATH",
    "ARGOEXEC_BIN_PATH",
    "ARGOEXEC_BIN_VOLUME",
    "ENV_CONFIG_MOUNT_PATH",
    "EXECUTOR_ARTIFACT_BASE_DIR",
    "EXECUTOR_MAIN_FILESYSTEM_DIR",
    "EXECUTOR_STAGING_DIR",
    "INIT_CONTAINER",
    "LAYOUTS",
    "LEGACY_ARGOEXEC_PATH",
    "MAIN_CONTAINER",
    "MAX_ENV_VAR_LEN",
    "SCRIPT_SOURCE_PATH",
    "SECRET_VOL_MOUNT_PATH",
    "SUPERVISOR_CONTAINER",
    "TEMPLATE_OFFLOADED",
    "V3_5",
    "V3_6",
    "V3_7",
    "V4_1",
    "V4_1_INITLESS",
    "VAR_RUN_ARGO",
    "WAIT_CONTAINER",
    "ArgoLayout",
    "layout_by_name",
]

# Names and paths from workflow/common/common.go (identical at every tag unless noted).
MAIN_CONTAINER = names.CONTAINER_MAIN
INIT_CONTAINER = names.CONTAINER_INIT
WAIT_CONTAINER = names.CONTAINER_WAIT
SUPERVISOR_CONTAINER = names.CONTAINER_SUPERVISOR  # v4.1.2 common.go:20
VAR_RUN_ARGO = "/var/run/argo"
LEGACY_ARGOEXEC_PATH = VAR_RUN_ARGO + "/argoexec"
ARGOEXEC_BIN_VOLUME = names.VOLUME_ARGOEXEC_BIN  # v4.1.2 common.go:262
ARGOEXEC_BIN_MOUNT_PATH = "/argo-bin"  # v4.1.2 common.go:263
ARGOEXEC_BIN_PATH = ARGOEXEC_BIN_MOUNT_PATH + "/bin/argoexec"  # v4.1.2 common.go:264
EXECUTOR_ARTIFACT_BASE_DIR = "/argo/inputs/artifacts"
EXECUTOR_MAIN_FILESYSTEM_DIR = "/mainctrfs"
EXECUTOR_STAGING_DIR = "/argo/staging"
SCRIPT_SOURCE_PATH = "/argo/staging/script"
SECRET_VOL_MOUNT_PATH = "/argo/secret"
ENV_CONFIG_MOUNT_PATH = "/argo/config"  # >= 3.6
TEMPLATE_OFFLOADED = names.TEMPLATE_OFFLOADED  # >= 3.6
# 128 KiB: v3.6.19 workflowpod.go:52 (maxEnvVarLen), v3.7.18 common.go:269 (MaxEnvVarLen).
MAX_ENV_VAR_LEN = 131072


@dataclass(frozen=True)
class ArgoLayout:
    """One controller release's pod shape: what differs between releases, and where it was read.

    The flags only describe differences the builder in :mod:`wfboost_dev.argosim.pods` acts on; everything the
    releases share is coded once there.
    """

    name: str
    """Stable identifier used in fixtures and docs (e.g. `"v3.7.18"`, `"v4.1.2-initless"`)."""
    argo_version: str
    """The Argo Workflows release this layout reproduces."""
    source_tag: str
    source_commit: str

    template_on_every_container: bool
    """`ARGO_TEMPLATE` on every container with `inputs.parameters` values (v3.5.14 workflowpod.go:275-313).
    From 3.6 it goes to the init container only (v3.6.19 workflowpod.go:350)."""
    template_params_cleared: bool
    """`inputs.parameters` dropped from `ARGO_TEMPLATE`, artifacts kept (v3.6.19 workflowpod.go:315-320)."""
    template_offload: bool
    """`ARGO_TEMPLATE` over 128 KiB becomes `offloaded` + ConfigMap (v3.6.19 workflowpod.go:436-506)."""
    args_offload: bool
    """Main-container args over 128 KiB go to the same ConfigMap, `ARGO_CONTAINER_ARGS_FILE` env
    (v3.7.18 workflowpod.go:440-462, 548-561; introduced in v3.7.10 by commit 93897c52a2, #15523)."""
    gloglevel_flag: bool
    """Executor commands carry `--gloglevel` (v3.6.19 workflowpod.go:630; absent at v3.5.14:386-388)."""
    godebug_env: bool
    """Executor containers carry `GODEBUG=x509ignoreCN=0` (v3.5.14 workflowpod.go:555-558; removed in 3.6)."""
    grace_env_on_all_containers: bool
    """`ARGO_TERMINATION_GRACE_PERIOD_SECONDS` on every container (v3.6.19:430) instead of `wait` only
    (v3.5.14:399)."""
    pod_gc_annotation: bool
    """`workflows.argoproj.io/pod-gc-strategy` annotation when `spec.podGC` is set (v3.6.19:266-268)."""
    status_finalizer: bool
    """`workflows.argoproj.io/status` finalizer when the controller runs with
    `ARGO_POD_STATUS_CAPTURE_FINALIZER=true` (v3.6.19:216-218)."""
    boundary_scheduling: bool
    """nodeSelector/affinity/tolerations fall back to the boundary (parent steps/dag) template
    (v3.6.19 workflowpod.go:780-806)."""
    pod_priority: bool
    """Template/workflow `priority` copied to `spec.priority` (v3.5.14:723-728, v3.6.19:823-830; removed
    in 3.7)."""
    workflow_name_env_everywhere: bool
    """`ARGO_WORKFLOW_NAME` in the env of every container, not just init/wait (v4.1.2 workflowpod.go:648)."""
    trace_context: bool
    """W3C `TRACEPARENT` env on every container and `trace-id`/`span-id` pod annotations
    (v4.1.2 workflowpod.go:651-655, workflowpod_submit.go:362-365)."""
    dedupe_mirrored_mounts: bool
    """Mirroring main's mounts to the aux container skips mount paths it already has (v4.1.2:1710-1733)."""
    pod_level_resources: bool
    """Template/workflow `podResources` and `resourceClaims` copied to the pod spec (v4.1.2:581-598)."""
    initless: bool = False
    """The opt-in v4.1 init-less layout (`initlessPod.enabled` in the controller config, v4.1.2
    config/config.go:137-159, workflowpod_layout.go): no init container, a `supervisor` container instead of
    `wait`, argoexec from an image volume at `/argo-bin/bin/argoexec`."""

    @property
    def argoexec_path(self) -> str:
        """Where emissary runs from inside user containers (v4.1.2 workflowpod_layout.go:99-101, 145-147)."""
        return ARGOEXEC_BIN_PATH if self.initless else LEGACY_ARGOEXEC_PATH

    @property
    def aux_container(self) -> str:
        """The executor container that runs beside main: `wait`, or `supervisor` when init-less."""
        return SUPERVISOR_CONTAINER if self.initless else WAIT_CONTAINER

    @property
    def default_executor_image(self) -> str:
        """`quay.io/argoproj/argoexec:<tag>`, the controller's default (workflow/controller/config.go)."""
        return f"quay.io/argoproj/argoexec:{self.source_tag}"


V3_5 = ArgoLayout(
    name="v3.5.14",
    argo_version="3.5.14",
    source_tag="v3.5.14",
    source_commit="d94c214176716ece96974fd98ac5107c38d61344",
    template_on_every_container=True,
    template_params_cleared=False,
    template_offload=False,
    args_offload=False,
    gloglevel_flag=False,
    godebug_env=True,
    grace_env_on_all_containers=False,
    pod_gc_annotation=False,
    status_finalizer=False,
    boundary_scheduling=False,
    pod_priority=True,
    workflow_name_env_everywhere=False,
    trace_context=False,
    dedupe_mirrored_mounts=False,
    pod_level_resources=False,
)

V3_6 = ArgoLayout(
    name="v3.6.19",
    argo_version="3.6.19",
    source_tag="v3.6.19",
    source_commit="c66a734c911a25a1e0f626af5995a222d6267e37",
    template_on_every_container=False,
    template_params_cleared=True,
    template_offload=True,
    args_offload=False,
    gloglevel_flag=True,
    godebug_env=False,
    grace_env_on_all_containers=True,
    pod_gc_annotation=True,
    status_finalizer=True,
    boundary_scheduling=True,
    pod_priority=True,
    workflow_name_env_everywhere=False,
    trace_context=False,
    dedupe_mirrored_mounts=False,
    pod_level_resources=False,
)

V3_7 = ArgoLayout(
    name="v3.7.18",
    argo_version="3.7.18",
    source_tag="v3.7.18",
    source_commit="66e32e5cc367f223e2ecf4fbe852b95eaed83034",
    template_on_every_container=False,
    template_params_cleared=True,
    template_offload=True,
    args_offload=True,
    gloglevel_flag=True,
    godebug_env=False,
    grace_env_on_all_containers=True,
    pod_gc_annotation=True,
    status_finalizer=True,
    boundary_scheduling=True,
    pod_priority=False,
    workflow_name_env_everywhere=False,
    trace_context=False,
    dedupe_mirrored_mounts=False,
    pod_level_resources=False,
)

V4_1 = ArgoLayout(
    name="v4.1.2",
    argo_version="4.1.2",
    source_tag="v4.1.2",
    source_commit="16a52d67daf2f4a8a76fa8bec02a76a46aa46257",
    template_on_every_container=False,
    template_params_cleared=True,
    template_offload=True,
    args_offload=True,
    gloglevel_flag=True,
    godebug_env=False,
    grace_env_on_all_containers=True,
    pod_gc_annotation=True,
    status_finalizer=True,
    boundary_scheduling=True,
    pod_priority=False,
    workflow_name_env_everywhere=True,
    trace_context=True,
    dedupe_mirrored_mounts=True,
    pod_level_resources=True,
)

V4_1_INITLESS = ArgoLayout(
    name="v4.1.2-initless",
    argo_version="4.1.2",
    source_tag="v4.1.2",
    source_commit="16a52d67daf2f4a8a76fa8bec02a76a46aa46257",
    template_on_every_container=False,
    template_params_cleared=True,
    template_offload=True,
    args_offload=True,
    gloglevel_flag=True,
    godebug_env=False,
    grace_env_on_all_containers=True,
    pod_gc_annotation=True,
    status_finalizer=True,
    boundary_scheduling=True,
    pod_priority=False,
    workflow_name_env_everywhere=True,
    trace_context=True,
    dedupe_mirrored_mounts=True,
    pod_level_resources=True,
    initless=True,
)

LAYOUTS: tuple[ArgoLayout, ...] = (V3_5, V3_6, V3_7, V4_1, V4_1_INITLESS)


def layout_by_name(name: str) -> ArgoLayout:
    """Look a layout up by :attr:`ArgoLayout.name` (what fixtures and the demo's flags carry)."""
    for layout in LAYOUTS:
        if layout.name == name:
            return layout
    raise KeyError(f"unknown Argo layout {name!r}; known: {', '.join(x.name for x in LAYOUTS)}")
