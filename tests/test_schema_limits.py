"""Argo 4's schema limits, warned about at Workflow CREATE.

The limits are read from the `maxItems` of Argo v4.1.2's full Workflow CRD (manifests/base/crds/full/
argoproj.io_workflows.yaml, generated from the kubebuilder markers in pkg/apis/workflow/v1alpha1/workflow_types.go):
spec.templates 200, a DAG's tasks 200, a template's input parameters 500, prometheus metrics 100. The DAG below is
shaped like a compiled Kubeflow v2 pipeline (a driver and an executor task per component), written here by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import StartWebhook, Webhook, corpus_dir
from tests.test_server import metric
from wfboost.argo.schema_limits import schema_limits_exceeded


def kubeflow_dag(components: int) -> dict[str, Any]:
    tasks = []
    for index in range(components):
        tasks.append({"name": f"comp-{index}-driver", "template": "system-container-driver",
                      "arguments": {"parameters": [{"name": "component", "value": "{}"}]}})
        tasks.append({"name": f"comp-{index}", "template": "system-container-executor",
                      "depends": f"comp-{index}-driver.Succeeded"})
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "pipeline-", "namespace": "ml"},
        "spec": {"entrypoint": "entrypoint", "templates": [
            {"name": "system-container-driver", "inputs": {"parameters": [{"name": "component"}]},
             "container": {"image": "ghcr.io/kubeflow/kfp-driver:2.5.0", "args": ["--component", "x"]}},
            {"name": "system-container-executor", "container": {"image": "python:3.11"}},
            {"name": "entrypoint", "dag": {"tasks": tasks}},
        ]},
    }


def warnings_of(webhook: Webhook, workflow: dict[str, Any], operation: str = "CREATE") -> list[str]:
    old = workflow if operation == "UPDATE" else None
    admitted = webhook.api.admit("workflows", workflow, operation=operation, old_object=old)
    assert admitted.patch == [] and admitted.object == workflow  # a warning never changes the object
    return list(admitted.response.get("warnings") or [])


def test_a_thousand_component_kubeflow_dag_is_warned_about_at_create(webhook: Webhook) -> None:
    warnings = warnings_of(webhook, kubeflow_dag(1000))
    assert warnings == [
        "Argo 4's Workflow schema allows at most 200 items in spec.templates[2].dag.tasks, this has 2000: the API "
        "server refuses it where Argo 4's CRDs are installed; split the DAG into nested DAG templates of at most 200 "
        "tasks each"
    ]
    assert all(len(w) <= 256 for w in warnings)
    assert metric(webhook, "wfboost_admission_requests_total", route="workflows", outcome="schema_limit_warned") == 1


def test_within_the_limits_there_is_no_warning(webhook: Webhook) -> None:
    assert warnings_of(webhook, kubeflow_dag(100)) == []  # 200 tasks: at the limit, allowed


def test_the_controllers_updates_are_not_warned_about(webhook: Webhook) -> None:
    assert warnings_of(webhook, kubeflow_dag(1000), operation="UPDATE") == []


def test_every_limit_is_checked() -> None:
    spec = kubeflow_dag(10)["spec"]
    spec["templates"][0]["inputs"]["parameters"] = [{"name": f"p{i}"} for i in range(501)]
    spec["templates"][1]["metrics"] = {"prometheus": [{"name": f"m{i}", "help": "h"} for i in range(101)]}
    spec["templates"].extend({"name": f"t{i}", "container": {"image": "busybox"}} for i in range(200))
    found = {(limit.path, limit.count, limit.limit) for limit in schema_limits_exceeded(spec)}
    assert found == {
        ("spec.templates", 203, 200),
        ("spec.templates[0].inputs.parameters", 501, 500),
        ("spec.templates[1].metrics.prometheus", 101, 100),
    }
    assert schema_limits_exceeded("not a spec") == [] and schema_limits_exceeded({"templates": "x"}) == []


def test_argo_3_installs_are_not_warned(start_webhook: StartWebhook, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nshrink: {controllerVersion: '3.7'}\n")
    webhook = start_webhook(settings={"policy_path": policy})
    assert warnings_of(webhook, kubeflow_dag(1000)) == []


@pytest.mark.parametrize("folder", ["argo-examples", "kfp-v2-argo-compiled-workflows", "kfp-v1-argo"])
def test_published_workflows_within_the_limits_get_no_warning(webhook: Webhook, folder: str) -> None:
    seen = 0
    for path in sorted(corpus_dir(folder).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "Workflow":
                expected = schema_limits_exceeded(document.get("spec"))
                admitted = webhook.api.admit("workflows", document, namespace="argo")
                assert len(admitted.response.get("warnings") or []) == min(len(expected), 5), path.name
                assert admitted.patch == [], path.name
                seen += 1
    assert seen > 0
