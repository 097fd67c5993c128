"""Argo step pods, kubelet statuses and WorkflowTaskResults built from Argo's Go source, independently of wfboost.

See README.md for the tags read and the Go functions mirrored. Nothing here imports wfboost.
"""

from tests.argo_source.argo import TAGS, node_id, pod_name
from tests.argo_source.kubelet import finished_pod, kubelet_status
from tests.argo_source.pods import ControllerConfig, CreatedPod, container_named, controller_pod, env_value
from tests.argo_source.taskresult import executor_template, task_result

__all__ = [
    "TAGS",
    "ControllerConfig",
    "CreatedPod",
    "container_named",
    "controller_pod",
    "env_value",
    "executor_template",
    "finished_pod",
    "kubelet_status",
    "node_id",
    "pod_name",
    "task_result",
]
