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
