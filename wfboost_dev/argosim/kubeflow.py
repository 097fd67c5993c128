"""Workflows shaped like Kubeflow Pipelines v2's compiled output, of any size, for shrinking's demo and tests.

KFP v2 puts every component and implementation spec as JSON into the Workflow's arguments (`components-<hash>`,
`implementations-<hash>`) and passes each, from a DAG task, to the `system-container-driver` template, whose
container takes it as an argument (and here also as an env value). The JSON is varied text with the characters
that need care on the way (`<`, `&`, quotes, non-ASCII, `$`), so what is measured and compared is not a repeated
string.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

DRIVER_IMAGE = "ghcr.io/kubeflow/kfp-driver@sha256:" + "d" * 64


def component_json(index: int, size: int, rng: random.Random) -> str:
    """A component spec of about `size` bytes."""
    words = ["dataset", "model", "metrics", "learning_rate", "epochs", "<b>", "&&", '"quoted"', "naïve", "$HOME"]
    body = " ".join(rng.choice(words) for _ in range(size // 6))
    return json.dumps({"executorLabel": f"exec-step-{index}", "description": body[:size]}, ensure_ascii=False)


def kubeflow_shaped(components: int, size: int, *, seed: int = 0, namespace: str = "ml") -> dict[str, Any]:
    """A Workflow of `components` driver tasks, each with a component and an implementation of about `size` bytes."""
    rng = random.Random(seed)
    arguments, tasks = [], []
    for index in range(components):
        digest = hashlib.sha256(f"{seed}-{index}".encode()).hexdigest()
        arguments.append({"name": f"components-{digest}", "value": component_json(index, size, rng)})
        arguments.append({"name": f"implementations-{digest}", "value": component_json(index, size, rng)})
        tasks.append({
            "name": f"step-{index}-driver", "template": "system-container-driver",
            "arguments": {"parameters": [
                {"name": "component", "value": f"{{{{workflow.parameters.components-{digest}}}}}"},
                {"name": "container", "value": f"{{{{workflow.parameters.implementations-{digest}}}}}"},
                {"name": "task", "value": json.dumps({"taskInfo": {"name": f"step-{index}"}})},
            ]},
        })
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "pipeline-", "namespace": namespace},
        "spec": {
            "entrypoint": "root",
            "arguments": {"parameters": arguments},
            "templates": [
                {"name": "system-container-driver",
                 "inputs": {"parameters": [{"name": "component"}, {"name": "container"}, {"name": "task"}]},
                 "metadata": {},
                 "container": {"image": DRIVER_IMAGE, "command": ["driver"],
                               "args": ["--component", "{{inputs.parameters.component}}",
                                        "--container", "{{inputs.parameters.container}}",
                                        "--task", "{{inputs.parameters.task}}"],
                               "env": [{"name": "KFP_COMPONENT", "value": "{{inputs.parameters.component}}"}]}},
                {"name": "root", "dag": {"tasks": tasks}},
            ],
        },
    }


# Written from Kubeflow Pipelines' Go compiler (backend/src/v2/compiler/argocompiler at 7b70c7b: dag.go `task`,
# `depends`, `addDAGDriverTemplate`; container.go `containerDriverTask`, `addContainerDriverTemplate`,
# `containerExecutorTask`, `addContainerExecutorTemplate`; argo.go `useComponentSpec`, `argumentsPlaceholder`), not
# from any compiled object: the arguments, inputs and container strings a compiled pipeline holds, at any size.
_DRIVER_TAIL = [
    "--http_proxy", "", "--https_proxy", "", "--no_proxy", "",
    "--ml_pipeline_server_address", "ml-pipeline.kubeflow.svc.cluster.local", "--ml_pipeline_server_port", "8887",
    "--mlmd_server_address", "metadata-grpc-service.kubeflow.svc.cluster.local", "--mlmd_server_port", "8080",
    "--cache_disabled=false", "--log_level", "1", "--publish_logs", "true", "--ml_pipeline_tls_enabled=false",
    "--metadata_tls_enabled=false", "--ca_cert_path", "",
]
_RUN = ["--run_id", "{{workflow.uid}}", "--run_name", "{{workflow.name}}", "--run_display_name", "",
        "--pipeline_job_create_time_utc", "{{workflow.creationTimestamp}}"]
_KINDS = ["load-data", "clean-rows", "featurize", "train-model", "evaluate-model", "publish-metrics"]


def _component_spec(kind: str) -> dict[str, Any]:
    return {"executorLabel": f"exec-{kind}",
            "inputDefinitions": {"parameters": {"source": {"parameterType": "STRING"},
                                                "seed": {"parameterType": "NUMBER_INTEGER"}}},
            "outputDefinitions": {"parameters": {"Output": {"parameterType": "STRING"}}}}


def _implementation(kind: str, rng: random.Random) -> dict[str, Any]:
    body = "\n".join(f"    value = transform(value, {rng.randint(0, 999)})  # <{kind}> & \"step\"" for _ in range(40))
    return {"image": "python:3.11", "command": ["sh", "-c", "python3 -m kfp.dsl.executor_main \"$@\"", "--"],
            "args": ["--executor_input", "{{$}}", "--function_to_execute", kind.replace("-", "_"),
                     f"import kfp\ndef {kind.replace('-', '_')}(source: str, seed: int) -> str:\n{body}\n"]}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _driver_template(name: str, args: list[str], inputs: list[dict[str, Any]],
                     outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "inputs": {"parameters": inputs}, "outputs": {"parameters": outputs},
            "metadata": {"annotations": {"pipelines.kubeflow.org/runtime-role": "driver"}},
            "container": {"image": DRIVER_IMAGE, "command": ["driver"], "args": args + _DRIVER_TAIL,
                          "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}}}}


def kubeflow_compiled(tasks: int, *, seed: int = 0, namespace: str = "ml") -> dict[str, Any]:
    """A Workflow as Kubeflow's compiler writes it for a pipeline of `tasks` container tasks (a chain of a few
    component kinds, each task reading the output of the one before): per task, a driver task passing the component,
    the task spec JSON, the implementation and the task name to `system-container-driver`, and an executor task
    passing the driver's outputs to `system-container-executor`."""
    rng = random.Random(seed)
    arguments: dict[str, str] = {}
    root_tasks: dict[str, Any] = {}
    dag: list[dict[str, Any]] = []
    previous: str | None = None
    for index in range(tasks):
        kind = _KINDS[index % len(_KINDS)]
        name = kind if index < len(_KINDS) else f"{kind}-{index // len(_KINDS) + 1}"
        digest = _digest(_component_spec(kind))
        arguments.setdefault(f"components-{digest}", json.dumps(_component_spec(kind), separators=(",", ":")))
        arguments.setdefault(f"implementations-{digest}",
                             json.dumps(_implementation(kind, rng), separators=(",", ":"), ensure_ascii=False))
        source = ({"taskOutputParameter": {"outputParameterKey": "Output", "producerTask": previous}}
                  if previous else {"componentInputParameter": "source"})
        spec: dict[str, Any] = {"cachingOptions": {"enableCache": True}, "componentRef": {"name": f"comp-{name}"},
                                **({"dependentTasks": [previous]} if previous else {}),
                                "inputs": {"parameters": {"source": source,
                                                          "seed": {"runtimeValue": {"constant": index}}}},
                                "taskInfo": {"name": name}}
        root_tasks[name] = spec
        driver: dict[str, Any] = {
            "name": f"{name}-driver", "template": "system-container-driver",
            "arguments": {"parameters": [
                {"name": "component", "value": f"{{{{workflow.parameters.components-{digest}}}}}"},
                {"name": "task", "value": json.dumps(spec, separators=(",", ":"), sort_keys=True)},
                {"name": "container", "value": f"{{{{workflow.parameters.implementations-{digest}}}}}"},
                {"name": "task-name", "value": name},
                {"name": "parent-dag-id", "value": "{{inputs.parameters.parent-dag-id}}"},
            ]},
        }
        if previous:
            driver["depends"] = f"{previous}.Succeeded"
        dag.append(driver)
        dag.append({
            "name": name, "template": "system-container-executor", "depends": f"{name}-driver.Succeeded",
            "arguments": {"parameters": [
                {"name": "pod-spec-patch", "value": f"{{{{tasks.{name}-driver.outputs.parameters.pod-spec-patch}}}}"},
                {"name": "cached-decision", "default": "false",
                 "value": f"{{{{tasks.{name}-driver.outputs.parameters.cached-decision}}}}"},
            ]},
        })
        previous = name
    arguments["components-root"] = json.dumps(
        {"dag": {"tasks": root_tasks},
         "inputDefinitions": {"parameters": {"source": {"parameterType": "STRING"}}}},
        separators=(",", ":"), sort_keys=True)
    container_driver = _driver_template(
        "system-container-driver",
        ["--type", "CONTAINER", "--pipeline_name", "big-pipeline", *_RUN,
         "--dag_execution_id", "{{inputs.parameters.parent-dag-id}}", "--component", "{{inputs.parameters.component}}",
         "--task", "{{inputs.parameters.task}}", "--task_name", "{{inputs.parameters.task-name}}",
         "--container", "{{inputs.parameters.container}}", "--iteration_index", "{{inputs.parameters.iteration-index}}",
         "--cached_decision_path", "{{outputs.parameters.cached-decision.path}}",
         "--pod_spec_patch_path", "{{outputs.parameters.pod-spec-patch.path}}",
         "--condition_path", "{{outputs.parameters.condition.path}}",
         "--kubernetes_config", "{{inputs.parameters.kubernetes-config}}"],
        [{"name": "component"}, {"name": "task"}, {"name": "container"}, {"name": "task-name"},
         {"name": "parent-dag-id"}, {"name": "iteration-index", "default": "-1"},
         {"name": "kubernetes-config", "default": ""}],
        [{"name": "pod-spec-patch", "valueFrom": {"default": "", "path": "/tmp/outputs/pod-spec-patch"}},
         {"name": "cached-decision", "default": "false",
          "valueFrom": {"default": "false", "path": "/tmp/outputs/cached-decision"}},
         {"name": "condition", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}}])
    dag_driver = _driver_template(
        "system-dag-driver",
        ["--type", "{{inputs.parameters.driver-type}}", "--pipeline_name", "big-pipeline", *_RUN,
         "--dag_execution_id", "{{inputs.parameters.parent-dag-id}}", "--component", "{{inputs.parameters.component}}",
         "--task", "{{inputs.parameters.task}}", "--task_name", "{{inputs.parameters.task-name}}",
         "--runtime_config", "{{inputs.parameters.runtime-config}}",
         "--iteration_index", "{{inputs.parameters.iteration-index}}",
         "--execution_id_path", "{{outputs.parameters.execution-id.path}}",
         "--iteration_count_path", "{{outputs.parameters.iteration-count.path}}",
         "--condition_path", "{{outputs.parameters.condition.path}}"],
        [{"name": "component"}, {"name": "runtime-config", "default": ""}, {"name": "task", "default": ""},
         {"name": "task-name", "default": ""}, {"name": "parent-dag-id", "default": "0"},
         {"name": "iteration-index", "default": "-1"}, {"name": "driver-type", "default": "DAG"}],
        [{"name": "execution-id", "valueFrom": {"path": "/tmp/outputs/execution-id"}},
         {"name": "iteration-count", "valueFrom": {"default": "0", "path": "/tmp/outputs/iteration-count"}},
         {"name": "condition", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}}])
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": "big-pipeline-", "namespace": namespace,
                     "annotations": {"pipelines.kubeflow.org/v2_pipeline": "true"}},
        "spec": {
            "entrypoint": "entrypoint",
            "arguments": {"parameters": [{"name": key, "value": value} for key, value in arguments.items()]},
            "serviceAccountName": "pipeline-runner",
            "templates": [
                container_driver,
                {"name": "system-container-executor",
                 "inputs": {"parameters": [{"name": "pod-spec-patch"},
                                           {"name": "cached-decision", "default": "false"}]},
                 "dag": {"tasks": [{"name": "executor", "template": "system-container-impl",
                                    "when": "{{inputs.parameters.cached-decision}} != true",
                                    "arguments": {"parameters": [{
                                        "name": "pod-spec-patch",
                                        "value": "{{inputs.parameters.pod-spec-patch}}"}]}}]}},
                {"name": "system-container-impl", "inputs": {"parameters": [{"name": "pod-spec-patch"}]},
                 "metadata": {"annotations": {"pipelines.kubeflow.org/runtime-role": "launcher"}},
                 "podSpecPatch": "{{inputs.parameters.pod-spec-patch}}",
                 "container": {"image": "gcr.io/ml-pipeline/should-be-overridden-during-runtime",
                               "command": ["should-be-overridden-during-runtime"]}},
                {"name": "root", "inputs": {"parameters": [{"name": "parent-dag-id"}]}, "dag": {"tasks": dag}},
                dag_driver,
                {"name": "entrypoint", "dag": {"tasks": [
                    {"name": "root-driver", "template": "system-dag-driver", "arguments": {"parameters": [
                        {"name": "component", "value": "{{workflow.parameters.components-root}}"},
                        {"name": "runtime-config", "value": "{}"}, {"name": "driver-type", "value": "ROOT_DAG"}]}},
                    {"name": "root", "template": "root", "depends": "root-driver.Succeeded", "arguments": {
                        "parameters": [{"name": "parent-dag-id",
                                        "value": "{{tasks.root-driver.outputs.parameters.execution-id}}"},
                                       {"name": "condition", "value": ""}]}}]}},
            ],
        },
    }
