"""Argo's names and per-tag behaviour switches, read from Argo's Go source (never from wfboost).

Every constant cites the Go identifier it mirrors; the file is workflow/common/common.go unless said otherwise, and
the value is the same at all four tags unless a tag is named.
"""

from __future__ import annotations

from dataclasses import dataclass

TAGS = ("v3.5.14", "v3.6.19", "v3.7.18", "v4.1.2")

# pkg/apis/workflow/register.go: Group, Version, APIVersion, WorkflowKind, WorkflowTaskResultKind, WorkflowFullName
API_VERSION = "argoproj.io/v1alpha1"
KIND_WORKFLOW = "Workflow"
KIND_TASK_RESULT = "WorkflowTaskResult"
_FULL = "workflows.argoproj.io"

# Container names: MainContainerName, InitContainerName, WaitContainerName, SupervisorContainerName (v4.1.2 only)
MAIN = "main"
INIT = "init"
WAIT = "wait"
SUPERVISOR = "supervisor"
ARTIFACT_PLUGIN_SIDECAR_PREFIX = "artifact-plugin-"  # ArtifactPluginSidecarPrefix (v4.1.2)

# Labels and annotations
LABEL_WORKFLOW = f"{_FULL}/workflow"  # LabelKeyWorkflow
LABEL_COMPLETED = f"{_FULL}/completed"  # LabelKeyCompleted
LABEL_ON_EXIT = f"{_FULL}/on-exit"  # LabelKeyOnExit
LABEL_INSTANCE_ID = f"{_FULL}/controller-instanceid"  # LabelKeyControllerInstanceID
LABEL_REPORT_OUTPUTS_COMPLETED = f"{_FULL}/report-outputs-completed"  # LabelKeyReportOutputsCompleted
ANNOTATION_NODE_ID = f"{_FULL}/node-id"  # AnnotationKeyNodeID
ANNOTATION_NODE_NAME = f"{_FULL}/node-name"  # AnnotationKeyNodeName
ANNOTATION_DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"  # AnnotationKeyDefaultContainer
ANNOTATION_POD_GC_STRATEGY = f"{_FULL}/pod-gc-strategy"  # AnnotationKeyPodGCStrategy (v3.6.19+)
ANNOTATION_TRACE_ID = f"{_FULL}/trace-id"  # AnnotationKeyTraceID (v4.1.2)
ANNOTATION_SPAN_ID = f"{_FULL}/span-id"  # AnnotationKeySpanID (v4.1.2)
FINALIZER_POD_STATUS = f"{_FULL}/status"  # FinalizerPodStatus (v3.6.19+)

# Environment variables
ENV_POD_NAME = "ARGO_POD_NAME"  # EnvVarPodName
ENV_POD_UID = "ARGO_POD_UID"  # EnvVarPodUID
ENV_INSTANCE_ID = "ARGO_INSTANCE_ID"  # EnvVarInstanceID
ENV_WORKFLOW_NAME = "ARGO_WORKFLOW_NAME"  # EnvVarWorkflowName
ENV_WORKFLOW_UID = "ARGO_WORKFLOW_UID"  # EnvVarWorkflowUID
ENV_NODE_ID = "ARGO_NODE_ID"  # EnvVarNodeID
ENV_CONTAINER_NAME = "ARGO_CONTAINER_NAME"  # EnvVarContainerName
ENV_DEADLINE = "ARGO_DEADLINE"  # EnvVarDeadline
ENV_INCLUDE_SCRIPT_OUTPUT = "ARGO_INCLUDE_SCRIPT_OUTPUT"  # EnvVarIncludeScriptOutput
ENV_TEMPLATE = "ARGO_TEMPLATE"  # EnvVarTemplate
ENV_PROGRESS_FILE = "ARGO_PROGRESS_FILE"  # EnvVarProgressFile
ENV_PROGRESS_PATCH_TICK = "ARGO_PROGRESS_PATCH_TICK_DURATION"  # EnvVarProgressPatchTickDuration
ENV_PROGRESS_FILE_TICK = "ARGO_PROGRESS_FILE_TICK_DURATION"  # EnvVarProgressFileTickDuration
ENV_TERMINATION_GRACE = "ARGO_TERMINATION_GRACE_PERIOD_SECONDS"  # EnvVarTerminationGracePeriodSeconds
ENV_CONTAINER_ARGS_FILE = "ARGO_CONTAINER_ARGS_FILE"  # EnvVarContainerArgsFile (v3.7.10+)
ENV_WAIT_FOR_READY = "ARGO_WAIT_FOR_READY"  # EnvVarWaitForReady (v4.1.2)
ENV_INITLESS_POD = "ARGO_INITLESS_POD"  # EnvVarInitlessPod (v4.1.2)
TEMPLATE_OFFLOADED = "offloaded"  # EnvVarTemplateOffloaded (v3.6.19+)
MAX_ENV_VAR_LEN = 131072  # workflowpod.go var maxEnvVarLen (v3.6.19), common.MaxEnvVarLen (v3.7.18, v4.1.2)

# Paths
VAR_RUN_ARGO = "/var/run/argo"  # VarRunArgoPath
PROGRESS_PATH = VAR_RUN_ARGO + "/progress"  # ArgoProgressPath
LEGACY_ARGOEXEC = VAR_RUN_ARGO + "/argoexec"  # createWorkflowPod (3.x); LegacyArgoExecBinPath (v4.1.2)
ARGOEXEC_BIN_VOLUME = "argoexec-bin"  # ArgoExecBinImageVolumeName (v4.1.2)
ARGOEXEC_BIN_MOUNT = "/argo-bin"  # ArgoExecBinMountPath (v4.1.2)
ARGOEXEC_BIN_PATH = ARGOEXEC_BIN_MOUNT + "/bin/argoexec"  # ArgoExecBinPath (v4.1.2)
ARTIFACT_BASE_DIR = "/argo/inputs/artifacts"  # ExecutorArtifactBaseDir
MAIN_FS_DIR = "/mainctrfs"  # ExecutorMainFilesystemDir
STAGING_DIR = "/argo/staging"  # ExecutorStagingEmptyDir
SCRIPT_SOURCE_PATH = "/argo/staging/script"  # ExecutorScriptSourcePath
ENV_CONFIG_MOUNT = "/argo/config"  # EnvConfigMountPath (v3.6.19+)
SECRET_MOUNT = "/argo/secret"  # SecretVolMountPath
DEFAULT_ARCHIVE_PATTERN = "{{workflow.name}}/{{pod.name}}"  # artifact_repository_types.go DefaultArchivePattern

# Volume names, workflowpod.go: volumeVarArgo, volumeTmpDir, addInputArtifactsVolumes, addScriptStagingVolume and the
# ConfigMap volume of the offload block in createWorkflowPod (v3.6.19+) / podBuilder.build (v4.1.2)
VOLUME_VAR_RUN_ARGO = "var-run-argo"
VOLUME_TMP_DIR = "tmp-dir-argo"
VOLUME_INPUT_ARTIFACTS = "input-artifacts"
VOLUME_STAGING = "argo-staging"
VOLUME_ENV_CONFIG = "argo-env-config"


@dataclass(frozen=True)
class Tag:
    """What differs between the four tags, each switch named after the Go code that shows it."""

    name: str

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor, _ = self.name.lstrip("v").split(".")
        return int(major), int(minor)

    @property
    def v35(self) -> bool:
        return self.major_minor == (3, 5)

    @property
    def v4(self) -> bool:
        return self.major_minor[0] >= 4

    # createWorkflowPod v3.5.14: envVars holds ARGO_TEMPLATE and goes on every init and regular container, with the
    # template marshalled whole; v3.6.19+: `simplifiedTmpl` (inputs = {artifacts}) on init containers only.
    @property
    def template_on_every_container(self) -> bool:
        return self.v35

    # createWorkflowPod v3.6.19+: `offloadEnvVarTemplate` (ARGO_TEMPLATE over maxEnvVarLen goes to a ConfigMap).
    @property
    def offloads_template(self) -> bool:
        return not self.v35

    # createWorkflowPod v3.7.18 / podBuilder.build v4.1.2: `offloadContainerArgs` (added in v3.7.10).
    @property
    def offloads_args(self) -> bool:
        return self.major_minor >= (3, 7)

    # getExecutorLogOpts (v3.6.19+) adds "--gloglevel"; v3.5.14 getExecutorLogLevel has only --loglevel/--log-format.
    @property
    def has_gloglevel(self) -> bool:
        return not self.v35

    # createEnvVars v3.5.14 sets GODEBUG=x509ignoreCN=0 on executor containers; removed in v3.6.19.
    @property
    def has_godebug(self) -> bool:
        return self.v35

    # podBuilder.build v4.1.2 appends {ARGO_WORKFLOW_NAME} to the shared envVars (every container gets it).
    @property
    def workflow_name_in_env_vars(self) -> bool:
        return self.v4

    # createWorkflowPod v3.5.14 adds ARGO_TERMINATION_GRACE_PERIOD_SECONDS to `wait` only, v3.6.19+ to every container.
    @property
    def termination_grace_on_every_container(self) -> bool:
        return not self.v35

    # addSchedulingConstraints: tmpl.Priority / wfSpec.PodPriority set pod.spec.priority up to v3.6.19 (removed 3.7).
    @property
    def sets_priority(self) -> bool:
        return self.major_minor <= (3, 6)

    # createWorkflowPod v3.7.18+: a resource template gets the wait container when it saves logs as an artifact.
    @property
    def resource_wait_when_archiving_logs(self) -> bool:
        return self.major_minor >= (3, 7)

    # createWorkflowPod v3.6.19+: ARGO_POD_STATUS_CAPTURE_FINALIZER and the pod-gc-strategy annotation.
    @property
    def has_status_finalizer(self) -> bool:
        return not self.v35

    # v4.1.2 workflowpod_layout.go: the opt-in init-less layout (config.InitlessPod.Enabled).
    @property
    def has_initless(self) -> bool:
        return self.v4


def tag(version: str) -> Tag:
    name = version if version.startswith("v") else "v" + version
    if name not in TAGS:
        raise ValueError(f"only the tags read from Argo's source are modelled: {TAGS}, not {version!r}")
    return Tag(name)


def default_executor_image(version: str) -> str:
    # workflow/controller/config.go executorImage: "quay.io/argoproj/argoexec:" + argo.ImageTag()
    return f"quay.io/argoproj/argoexec:{tag(version).name}"


def fnv32a(data: str) -> int:
    # hash/fnv New32a, as used by Workflow.NodeID and util.GeneratePodName
    h = 0x811C9DC5
    for byte in data.encode("utf-8"):
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def node_id(workflow_name: str, node_name: str) -> str:
    # pkg/apis/workflow/v1alpha1/workflow_types.go (Workflow).NodeID, identical at the four tags
    if node_name == workflow_name:
        return workflow_name
    return f"{workflow_name}-{fnv32a(node_name)}"


_MAX_PREFIX = 253 - 10  # pod_name.go maxK8sResourceNameLength - k8sNamingHashLength


def pod_name(workflow_name: str, node_name: str, template_name: str, node_id_: str, version: str = "v2") -> str:
    # workflow/util/pod_name.go GeneratePodName (and ensurePodNamePrefixLength), identical at the four tags
    if version == "v1":
        return node_id_
    if workflow_name == node_name:
        return workflow_name
    prefix = workflow_name
    if template_name:
        prefix = f"{prefix}-{template_name}"
    if len(prefix) > _MAX_PREFIX - 1:
        prefix = prefix[: _MAX_PREFIX - 1]
    return f"{prefix}-{fnv32a(node_name)}"
