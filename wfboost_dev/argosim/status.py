"""Node statuses shaped like a Kubeflow v2 run's, of any size, for the status-compression tests and benchmark.

Each Kubeflow v2 task is a DAG node with a driver Pod node and an executor Pod node (the compiled workflow's
`system-dag-driver`, `system-container-driver` and `system-container-executor` templates); node IDs, pod hosts, times
and resource durations vary per node as a real run's do, so the ratio measured is not that of a repeated string.
"""

from __future__ import annotations

import random
from typing import Any


def kubeflow_run_nodes(tasks: int, *, seed: int = 0, run: str = "pipeline-train-x7k2p") -> dict[str, dict[str, Any]]:
    """The nodes map of a finished run of `tasks` Kubeflow v2 tasks (3 nodes each, plus the root)."""
    rng = random.Random(seed)
    nodes: dict[str, dict[str, Any]] = {}
    children: list[str] = []
    root = {"id": run, "name": run, "displayName": run, "type": "DAG", "templateName": "entrypoint",
            "templateScope": "local/" + run, "phase": "Succeeded", "children": children,
            "startedAt": "2026-11-30T08:00:00Z", "finishedAt": "2026-11-30T11:42:17Z", "progress": f"{tasks}/{tasks}"}
    nodes[run] = root
    for task in range(tasks):
        name = f"comp-{rng.choice(['preprocess', 'train', 'evaluate', 'featurize'])}-{task}"
        dag_id = f"{run}-{rng.randrange(10**10)}"
        driver_id = f"{run}-{rng.randrange(10**10)}"
        executor_id = f"{run}-{rng.randrange(10**10)}"
        minute, second = divmod(task, 60)
        started = f"2026-11-30T{8 + minute // 60:02d}:{minute % 60:02d}:{second:02d}Z"
        finished = f"2026-11-30T{9 + minute // 60:02d}:{minute % 60:02d}:{rng.randrange(60):02d}Z"
        children.append(dag_id)
        common = {"templateScope": "local/" + run, "phase": "Succeeded", "boundaryID": run,
                  "startedAt": started, "finishedAt": finished, "progress": "1/1"}
        nodes[dag_id] = {"id": dag_id, "name": f"{run}.{name}", "displayName": name, "type": "DAG",
                         "templateName": "comp-dag", "children": [driver_id], **common}
        nodes[driver_id] = {
            "id": driver_id, "name": f"{run}.{name}.driver", "displayName": "driver", "type": "Pod",
            "templateName": "system-container-driver", "hostNodeName": f"gke-pool-{rng.randrange(40)}",
            "resourcesDuration": {"cpu": rng.randrange(1, 30), "memory": rng.randrange(10, 400)},
            "inputs": {"parameters": [
                {"name": "component", "value": f'{{"executorLabel":"exec-{name}","inputDefinitions":{{}}}}'},
                {"name": "task",
                 "value": f'{{"taskInfo":{{"name":"{name}"}},"cachingOptions":{{"enableCache":true}}}}'},
                {"name": "container", "value": '{"image":"python:3.11","command":["sh","-c"]}'},
                {"name": "parent-dag-id", "value": str(rng.randrange(10**6))},
                {"name": "iteration-index", "value": "-1", "default": "-1"},
            ]},
            "outputs": {"parameters": [
                {"name": "pod-spec-patch", "value": f'{{"containers":[{{"name":"main","image":"python:3.11",'
                 f'"args":["--executor_input","{{\\"outputs\\":{{\\"outputFile\\":\\"/tmp/{rng.randrange(10**8)}\\"}}}}"]}}]}}'},
                {"name": "cached-decision", "value": rng.choice(["true", "false"]), "default": "false"},
                {"name": "condition", "value": ""},
            ], "exitCode": "0"},
            "children": [executor_id], **common,
        }
        nodes[executor_id] = {
            "id": executor_id, "name": f"{run}.{name}.executor", "displayName": "executor", "type": "Pod",
            "templateName": "system-container-impl", "hostNodeName": f"gke-pool-{rng.randrange(40)}",
            "resourcesDuration": {"cpu": rng.randrange(1, 3000), "memory": rng.randrange(10, 40000)},
            "inputs": {"parameters": [{"name": "pod-spec-patch", "value": "{}"}]},
            "outputs": {"artifacts": [{"name": "main-logs", "s3": {
                "key": f"{run}/{run}-system-container-impl-{rng.randrange(10**10)}/main.log"}}], "exitCode": "0"},
            **common,
        }
    return nodes
