"""The demo's shrinking part: a Kubeflow-shaped pipeline that etcd would refuse, stored, and its pods restored.

The Workflow is sent to the webhook as the API server would send its CREATE; its values go to the side store (a real
`wfboost sidestore serve` process); the pods the controller would create from the *stored* Workflow are sent to the
restoring route, and each process's arguments are compared with those of the pods of the original Workflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from wfboost_dev.argosim.kubeflow import kubeflow_shaped
from wfboost_dev.demo.apiserver import ApiServerClient
from wfboost_dev.demo.plan import PodToAdmit, plan_workflow

ETCD_LIMIT = 1_572_864  # etcd's default --max-request-bytes


def show_shrinking(api: ApiServerClient, layout: str, namespace: str, say: Callable[[str], None]) -> bool:
    """Run the shrinking part; True when every pod got every value back."""
    workflow = kubeflow_shaped(12, 75_000, namespace=namespace)
    before = len(orjson.dumps(workflow))
    say(f"shrinking: a Kubeflow-shaped pipeline of 12 components, {before:,} bytes "
        f"(etcd refuses writes over {ETCD_LIMIT:,})")
    stored = api.admit("workflows", workflow).object
    after = len(orjson.dumps(stored))
    moved = sum(1 for p in stored["spec"]["arguments"]["parameters"] if p["value"].startswith("wfboost-ref:"))
    say(f"  stored:   {after:,} bytes, {moved} values moved to the side store "
        f"({before / max(after, 1):.0f}x smaller)")
    originals, shrunk = _pods(workflow, layout, namespace), _pods(stored, layout, namespace)
    same = 0
    for original, planned in zip(originals, shrunk, strict=True):
        restored = api.admit("restore", planned.pod).object
        if _argv(restored, None) == _argv(original.pod, original.configmap):
            same += 1
    say(f"  pods:     {same} of {len(shrunk)} driver pods restored by the webhook, every argument and env value "
        "byte for byte as the original's")
    return same == len(shrunk)


def _pods(workflow: dict[str, Any], layout: str, namespace: str) -> list[PodToAdmit]:
    named = json.loads(json.dumps(workflow))
    named["metadata"]["name"] = "pipeline-demo"
    return plan_workflow(named, layout, namespace=namespace).pods


def _argv(pod: dict[str, Any], configmap: dict[str, Any] | None) -> list[Any]:
    """Each container's command, arguments (from Argo's ConfigMap when it offloaded them) and env values."""
    found = []
    for field in ("initContainers", "containers"):
        for container in pod["spec"].get(field) or []:
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            args = container.get("args") or []
            if "ARGO_CONTAINER_ARGS_FILE" in env and configmap is not None:
                args = json.loads(configmap["data"]["ARGO_CONTAINER_ARGS_FILE"])
            for name in ("ARGO_CONTAINER_ARGS_FILE", "ARGO_TEMPLATE"):
                env.pop(name, None)
            found.append((container["name"], [*(container.get("command") or []), *args], env))
    return found
