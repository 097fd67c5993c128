"""The pod status a kubelet reports once an Argo step pod has finished.

This part is Kubernetes, not Argo: it follows pkg/kubelet (kubelet_pods.go generateAPIPodStatus / getPhase /
convertToAPIContainerStatuses, status/generate.go for the conditions, qos.GetPodQOS). What Argo contributes is which
containers exist and how they end: init containers complete first, `main` exits with the user command's code (emissary
runs it as a child and exits with its status, cmd/argoexec/commands/emissary.go), `wait`/`supervisor` exits 0 after
reporting outputs (or non-zero on an executor error), user sidecars are killed by the executor after main.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

Json = dict[str, Any]


def _container_id(pod_name: str, container: str) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_name}/{container}".encode()).hexdigest()


def _image_id(image: str) -> str:
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    if "/" not in repo:
        repo = "docker.io/library/" + repo
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def _terminated(
    pod_name: str, c: Mapping[str, Any], exit_code: int, started: str, finished: str, image_id: str | None
) -> Json:
    return {
        "name": c["name"],
        "state": {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",  # kuberuntime: Completed / Error
                "startedAt": started,
                "finishedAt": finished,
                "containerID": _container_id(pod_name, c["name"]),
            }
        },
        "lastState": {},
        "ready": False,
        "restartCount": 0,
        "image": c.get("image", ""),
        "imageID": image_id or _image_id(c.get("image", "")),
        "containerID": _container_id(pod_name, c["name"]),
        "started": False,
    }


def _qos(pod: Mapping[str, Any]) -> str:
    # qos.GetPodQOS, simplified: BestEffort without any request/limit, Guaranteed when every container's cpu and
    # memory limits equal its requests, else Burstable
    containers = [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits = r.get("limits") or {}
        requests = r.get("requests") or limits  # requests default to limits
        if not all(k in limits and requests.get(k) == limits[k] for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def kubelet_status(
    pod: Mapping[str, Any],
    *,
    main_exit_code: int = 0,
    wait_exit_code: int = 0,
    sidecar_exit_code: int = 0,
    started_at: str = "2025-01-01T00:00:02Z",
    finished_at: str = "2025-01-01T00:00:10Z",
    image_id: str | None = None,
    phase: str | None = None,
    host_ip: str = "10.0.0.5",
    pod_ip: str = "10.244.0.17",
) -> Json:
    """`status` of the finished pod. `image_id` is main's resolved image (`repo@sha256:...`)."""
    name = pod["metadata"]["name"]
    spec = pod["spec"]
    init_statuses = [  # SortInitContainerStatuses: spec order
        _terminated(name, c, 0, started_at, started_at, None) for c in spec.get("initContainers") or []
    ]
    statuses = []
    for c in spec["containers"]:
        if c["name"] == "main":
            code, iid = main_exit_code, image_id
        elif c["name"] in ("wait", "supervisor"):
            code, iid = wait_exit_code, None
        else:
            code, iid = sidecar_exit_code, None
        statuses.append(_terminated(name, c, code, started_at, finished_at, iid))
    statuses.sort(key=lambda s: s["name"])  # kubetypes.SortedContainerStatuses: by name
    if phase is None:  # getPhase with restartPolicy Never: Failed if any container failed, else Succeeded
        phase = "Failed" if any(s["state"]["terminated"]["exitCode"] for s in statuses) else "Succeeded"
    reason = "PodCompleted"
    return {
        "phase": phase,
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "False", "lastProbeTime": None,
             "lastTransitionTime": finished_at},
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": started_at,
             "reason": reason},
            {"type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": finished_at,
             "reason": reason},
            {"type": "ContainersReady", "status": "False", "lastProbeTime": None, "lastTransitionTime": finished_at,
             "reason": reason},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": started_at},
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": started_at,
        "initContainerStatuses": init_statuses,
        "containerStatuses": statuses,
        "qosClass": _qos(pod),
    }


def finished_pod(pod: Mapping[str, Any], **kwargs: Any) -> Json:
    """A copy of `pod` with the kubelet's final status and the fields the API server adds (uid, nodeName)."""
    out = copy.deepcopy(dict(pod))
    out["metadata"].setdefault("uid", "pod-uid-" + hashlib.sha256(out["metadata"]["name"].encode()).hexdigest()[:12])
    out["spec"].setdefault("nodeName", "node-1")
    out["status"] = kubelet_status(out, **kwargs)
    return out
