"""The pods the Argo controller would create for a workflow, in order, for the demo (`make run`) to replay."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wfboost_dev.argosim.expand import NodeOutputs, expand_workflow
from wfboost_dev.argosim.layouts import LAYOUTS, V3_7, layout_by_name
from wfboost_dev.argosim.pods import QUICK_START_CONFIG

LAYOUT_NAMES = tuple(layout.name for layout in LAYOUTS)
DEFAULT_LAYOUT = V3_7.name


@dataclass(frozen=True)
class PodToAdmit:
    step: str  # the node name, e.g. churn-model-x[0].train(1:0.003)
    pod: dict[str, Any]
    configmap: dict[str, Any] | None  # the offloaded ARGO_TEMPLATE, when the controller creates one first


@dataclass(frozen=True)
class WorkflowPlan:
    # As submitted: with generateName the name is still empty at admission (the API server assigns it afterwards).
    workflow: dict[str, Any]
    pods: list[PodToAdmit]


def plan_workflow(
    workflow: dict[str, Any],
    layout_name: str,
    *,
    namespace: str,
    outputs: Mapping[str, NodeOutputs] | None = None,
) -> WorkflowPlan:
    """Expand the workflow as the controller would and build each step's pod for the named Argo layout.

    `outputs` are the known outputs of finished steps (by step or node name), which later steps' pods carry.
    """
    scoped = {**workflow, "metadata": {**workflow.get("metadata", {}), "namespace": namespace}}
    walked = expand_workflow(scoped, outputs=outputs)
    # Argo's quick-start controller configuration: a MinIO artifact repository, as a real install has one.
    built, _refused = walked.build_pods(layout=layout_by_name(layout_name), config=QUICK_START_CONFIG)
    pods = [PodToAdmit(step=b.node_name, pod=b.pod, configmap=b.configmap) for b in built]
    return WorkflowPlan(workflow=scoped, pods=pods)
