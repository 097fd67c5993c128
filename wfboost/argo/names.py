"""Names the Argo controller and executor put on pods (labels, annotations, env, containers, volumes).

Read from workflow/common/common.go at the tags named in docs/argo-pods.md; shared by the parser (what the webhook
and recorder read) and the controller model beside the product (wfboost_dev.argosim).
"""

from __future__ import annotations

from typing import Final

LABEL_WORKFLOW: Final = "workflows.argoproj.io/workflow"
LABEL_COMPLETED: Final = "workflows.argoproj.io/completed"
LABEL_REPORT_OUTPUTS_COMPLETED: Final = "workflows.argoproj.io/report-outputs-completed"
LABEL_COMPONENT: Final = "workflows.argoproj.io/component"
LABEL_ON_EXIT: Final = "workflows.argoproj.io/on-exit"  # exit handler pods (workflowpod.go, onExitPod)
ANNOTATION_NODE_ID: Final = "workflows.argoproj.io/node-id"
ANNOTATION_NODE_NAME: Final = "workflows.argoproj.io/node-name"

CONTAINER_MAIN: Final = "main"
CONTAINER_INIT: Final = "init"
CONTAINER_WAIT: Final = "wait"
CONTAINER_SUPERVISOR: Final = "supervisor"  # v4.1 init-less layout
EXECUTOR_CONTAINERS: Final = frozenset({CONTAINER_INIT, CONTAINER_WAIT, CONTAINER_SUPERVISOR})

ENV_TEMPLATE: Final = "ARGO_TEMPLATE"
ENV_CONTAINER_ARGS_FILE: Final = "ARGO_CONTAINER_ARGS_FILE"  # v3.7.10+: main args offloaded to the ConfigMap
ENV_INCLUDE_SCRIPT_OUTPUT: Final = "ARGO_INCLUDE_SCRIPT_OUTPUT"
TEMPLATE_OFFLOADED: Final = "offloaded"  # ARGO_TEMPLATE's value when the JSON sits in the pod's ConfigMap

VOLUME_VAR_RUN_ARGO: Final = "var-run-argo"
VOLUME_ARGOEXEC_BIN: Final = "argoexec-bin"  # v4.1 init-less: argoexec from an image volume
VOLUME_ENV_CONFIG: Final = "argo-env-config"  # the offload ConfigMap, mounted at /argo/config
VOLUME_INPUT_ARTIFACTS: Final = "input-artifacts"
VOLUME_TMP_DIR: Final = "tmp-dir-argo"
VOLUME_STAGING: Final = "argo-staging"
# Volumes Argo adds for its own use; a cache key ignores them, a replayed pod keeps the ones emissary needs.
ARGO_VOLUMES: Final = frozenset(
    {VOLUME_VAR_RUN_ARGO, VOLUME_ARGOEXEC_BIN, VOLUME_ENV_CONFIG, VOLUME_INPUT_ARTIFACTS, VOLUME_TMP_DIR,
     VOLUME_STAGING}
)
EMISSARY_SEPARATOR: Final = "--"

# The drivers of an Argo artifact location (`ArtifactLocation` in pkg/apis/workflow/v1alpha1/workflow_types.go), in
# the struct's field order: each is a key of an artifact that says where it is stored.
ARTIFACT_DRIVERS: Final = ("s3", "git", "http", "artifactory", "hdfs", "raw", "oss", "gcs", "azure", "plugin")
# An argument that referred only to a skipped node's output counts as not supplied (v4.1 workflow/common/common.go).
ABSENT_OPTIONAL_OUTPUT: Final = "__argo-internal.absent-optional-output__"
