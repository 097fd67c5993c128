"""One run of a workflow in the demo (`make run`): the API server, the kubelet and Argo's wait container, in order.

For each step, in the order the controller would create its pod: the pod is admitted over HTTPS and stored (as the
API server does), then "run": its main container terminates with exit 0 (the kubelet's status update) and its
WorkflowTaskResult is written through the webhook with the step's outputs (as Argo's wait container does). A step
that ran for real produces made-up outputs naming the run; a replayed (hit) step produces exactly what its replay
program writes, read back from the patched pod. Downstream pods are built with the outputs reported upstream, so a
hit's task result, pointed at the cached artifacts by the webhook, is what makes the next step hit too.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from wfboost.argo.pods import ArgoStep, parse_pod
from wfboost.cache import keyspace
from wfboost.webhook.replay import from_kubelet_literal
from wfboost_dev.argosim.expand import NodeOutputs
from wfboost_dev.demo.apiserver import Admitted, ApiServerClient
from wfboost_dev.demo.cluster import EmulatedCluster
from wfboost_dev.demo.plan import PodToAdmit, plan_workflow

RECORD_WAIT = 15.0  # seconds to wait for the recorder to record a finished step


@dataclass
class StepReport:
    step: str
    pod: str
    outcome: str  # hit / miss / skipped / unchanged
    detail: str
    millis: float
    recorded: bool | None = None  # for steps that ran: did the recorder record them
    repointed: bool = False  # a hit's task result now points at the cached artifacts


@dataclass
class PassReport:
    workflow: str
    steps: list[StepReport] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for s in self.steps if s.outcome == outcome)


@dataclass
class Player:
    api: ApiServerClient
    cluster: EmulatedCluster
    redis_url: str
    layout: str
    namespace: str
    say: Callable[[str], None]
    pace: float = 0.0

    def run(self, workflow: dict[str, Any], name: str) -> PassReport:
        wf = copy.deepcopy(workflow)
        wf["metadata"].pop("generateName", None)
        wf["metadata"]["name"] = name
        wf["metadata"]["namespace"] = self.namespace
        admitted = self.api.admit("workflows", wf, namespace=self.namespace).object
        # The API server stores it with a uid (the one the controller's pods name as their owner), and the
        # controller then marks each node as its pod and task result report (the recorder records only those).
        admitted["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"wfboost:workflow/{self.namespace}/{name}"))
        admitted.setdefault("status", {})["nodes"] = {}
        self.cluster.create(f"/apis/argoproj.io/v1alpha1/namespaces/{self.namespace}/workflows", admitted)
        report = PassReport(name)
        known: dict[str, NodeOutputs] = {}
        done: set[str] = set()
        while True:
            plan = plan_workflow(wf, self.layout, namespace=self.namespace, outputs=known)
            todo = [p for p in plan.pods if p.step not in done]
            if not todo:
                return report
            item = todo[0]
            time.sleep(self.pace)
            step_report, outputs = self._step(item)
            known[item.step] = outputs
            done.add(item.step)
            report.steps.append(step_report)
            self.say(_line(step_report))

    def _step(self, item: PodToAdmit) -> tuple[StepReport, NodeOutputs]:
        pods = f"/api/v1/namespaces/{self.namespace}/pods"
        if item.configmap is not None:
            self.cluster.create(f"/api/v1/namespaces/{self.namespace}/configmaps", item.configmap)
        started = time.perf_counter()
        admitted = self.api.admit("pods", item.pod, namespace=self.namespace)
        millis = 1000 * (time.perf_counter() - started)
        pod = self.cluster.create(pods, admitted.object)
        annotations = pod["metadata"].get("annotations") or {}
        outcome_text = annotations.get("wfboost.io/cache-outcome", "unchanged")
        outcome = outcome_text.split(":", 1)[0]
        step = parse_pod(item.pod).with_offloaded((item.configmap or {}).get("data") or {})
        if outcome == "hit":
            source = annotations.get("wfboost.io/cache-source", "")
            parameters, result = replayed_values(admitted, step)
            declared = ((step.template or {}).get("outputs") or {}).get("artifacts") or []
            what = [_count(len(parameters), "parameter"), _count(len(declared), "artifact")]
            if result is not None:
                what.append("stdout")
            detail = f"outputs of {_source_workflow(source)} replayed ({', '.join(what)})"
        else:
            parameters, result = made_up_values(step, item.step)
            detail = outcome_text.split(":", 1)[1].strip() if ":" in outcome_text else outcome_text
        artifacts, repointed = self._finish(pod, step, parameters, result, item.configmap)
        report = StepReport(item.step.split(".", 1)[1], pod["metadata"]["name"], outcome, detail, millis)
        report.repointed = repointed
        if outcome == "miss":
            report.recorded = self._wait_recorded(annotations.get("wfboost.io/cache-key", ""))
        outputs: NodeOutputs = {"parameters": parameters, "artifacts": artifacts}
        if result is not None:
            outputs["result"] = result
        return report, outputs

    def _finish(
        self, pod: dict[str, Any], step: ArgoStep, parameters: dict[str, str], result: str | None,
        configmap: dict[str, Any] | None,
    ) -> tuple[dict[str, dict[str, Any]], bool]:
        """Play the kubelet (main exits 0) and the wait container (task result through the webhook). The wait
        container reports what the template it reads from the stored pod declares (a replayed pod's declares no
        artifacts and the replay marker), as Argo's executor does."""
        name = pod["metadata"]["name"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.cluster.merge_patch(f"/api/v1/namespaces/{self.namespace}/pods/{name}", {"status": {
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "main", "ready": False, "restartCount": 0, "image": step.main.get("image", ""),
                "imageID": f"{step.main.get('image', '')}@sha256:{'0' * 64}",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now, "startedAt": now}},
            }],
        }})
        template = executor_template(pod, configmap)
        executor = template.get("outputs") or {}
        # executor.go saveArtifactFromFile: a key-only output goes to path.Join(archive key, file name).
        archive_key = ((template.get("archiveLocation") or {}).get("s3") or {}).get("key") or f"{step.workflow}/{name}"
        uploaded = [
            {"name": a["name"], "path": a.get("path", ""), "s3": {"key": f"{archive_key}/{a['name']}.tgz"}}
            for a in executor.get("artifacts") or []
        ]
        reported = []
        for declared in executor.get("parameters") or []:
            source = declared.get("valueFrom") or {}
            if not source.get("path"):
                continue
            value = parameters.get(declared["name"], source.get("default"))  # the file, else the default
            if value is not None:
                reported.append({"name": declared["name"], "value": value})
        outputs: dict[str, Any] = {"parameters": reported, "exitCode": "0"}
        if uploaded:
            outputs["artifacts"] = uploaded
        if result is not None:
            outputs["result"] = result
        taskresult = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
            "metadata": {
                "name": step.node_id, "namespace": self.namespace,
                "labels": {
                    "workflows.argoproj.io/workflow": step.workflow,
                    "workflows.argoproj.io/report-outputs-completed": "true",
                },
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": step.workflow,
                                     "uid": step.workflow_uid}],
            },
            "outputs": outputs,
        }
        stored = self.api.admit("workflowtaskresults", taskresult, namespace=self.namespace).object
        self.cluster.create(
            f"/apis/argoproj.io/v1alpha1/namespaces/{self.namespace}/workflowtaskresults", stored
        )
        self.cluster.merge_patch(  # the controller: pod Succeeded and task result complete, so the node Succeeded
            f"/apis/argoproj.io/v1alpha1/namespaces/{self.namespace}/workflows/{step.workflow}",
            {"status": {"nodes": {step.node_id: {"id": step.node_id, "name": step.node_name, "phase": "Succeeded"}}}},
        )
        artifacts = stored["outputs"].get("artifacts") or []
        return {a["name"]: a for a in artifacts}, artifacts != uploaded

    def _wait_recorded(self, key: str) -> bool:
        if not key:
            return False
        client = redis.Redis.from_url(self.redis_url)
        try:
            deadline = time.monotonic() + RECORD_WAIT
            while time.monotonic() < deadline:
                if client.exists(keyspace.tracks_key(key)):
                    return True
                time.sleep(0.05)
            return False
        finally:
            client.close()


def executor_template(pod: dict[str, Any], configmap: dict[str, Any] | None) -> dict[str, Any]:
    """The template Argo's wait container works from: ARGO_TEMPLATE of the wait or supervisor container, else the
    one the init container wrote (3.6+), else the offload ConfigMap's copy (cmd/argoexec/commands/root.go)."""
    spec = pod["spec"]
    found: str | None = None
    for container in [*spec["containers"], *(spec.get("initContainers") or [])]:
        if container["name"] in ("wait", "supervisor", "init"):
            value = next((e.get("value") for e in container.get("env") or [] if e["name"] == "ARGO_TEMPLATE"), None)
            if value is not None:
                found = value
                break
    if found is None or found == "offloaded":
        found = ((configmap or {}).get("data") or {}).get("ARGO_TEMPLATE", "{}")
    else:
        found = from_kubelet_literal(found)  # the kubelet's `$$` -> `$` on env values (the demo has no `$(VAR)`)
    template = json.loads(found)
    return template if isinstance(template, dict) else {}


def made_up_values(step: ArgoStep, node: str) -> tuple[dict[str, str], str | None]:
    """What a step that really ran might have produced: the declared default where there is one (values other steps
    or the controller parse, such as Kubeflow's pod-spec-patch, stay valid), else a value naming the run."""
    declared = ((step.template or {}).get("outputs") or {}).get("parameters") or []
    run = node.split(".", 1)[0]
    values = {
        p["name"]: str(p["valueFrom"].get("default", f"{p['name']} computed by {run}"))
        for p in declared
        if (p.get("valueFrom") or {}).get("path")
    }
    result = f"stdout of {node}" if step.include_script_output else None
    return values, result


def replayed_values(admitted: Admitted, step: ArgoStep) -> tuple[dict[str, str], str | None]:
    """What the replay program will write, read from the patched pod's env (see webhook/replay.py)."""
    main = admitted.object["spec"]["containers"][step.main_index]
    env = {e["name"]: from_kubelet_literal(e.get("value", "")) for e in main.get("env") or []}
    declared = ((step.template or {}).get("outputs") or {}).get("parameters") or []
    by_path = {(p.get("valueFrom") or {}).get("path"): p["name"] for p in declared}
    values: dict[str, str] = {}
    index = 0
    while f"WFBOOST_PARAM_{index}_PATH" in env:
        values[by_path[env[f"WFBOOST_PARAM_{index}_PATH"]]] = _joined(env, f"WFBOOST_PARAM_{index}")
        index += 1
    result = _joined(env, "WFBOOST_STDOUT") if "WFBOOST_STDOUT_0" in env else None
    return values, result


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _joined(env: dict[str, str], prefix: str) -> str:
    parts = []
    chunk = 0
    while f"{prefix}_{chunk}" in env:
        parts.append(env[f"{prefix}_{chunk}"])
        chunk += 1
    return "".join(parts)


def _source_workflow(source: str) -> str:
    try:
        return str(json.loads(source).get("workflow", "?"))
    except ValueError:
        return "?"


def _line(report: StepReport) -> str:
    after = ""
    if report.recorded is True:
        after = "ran, then recorded"
    elif report.recorded is False:
        after = "ran, NOT recorded"
    elif report.repointed:
        after = "task result → cached artifacts"
    text = f"{report.outcome}: {report.detail}" if report.outcome != "unchanged" else "unchanged"
    return f"  {report.step:<26} {text:<70} {report.millis:5.1f} ms  {after}"
