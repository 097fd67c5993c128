"""`make bench`: wfboost's admission paths under real load, each beside a floor measured in the same run.

The floor is `wfboost_dev.bench.floor`: the same aiohttp server, TLS and worker model answering "allowed" after
parsing the review. wfboost runs as users run it (`wfboost serve` as a subprocess, a real Valkey, a real side store).
Load comes from Debian's `wrk` (closed loop, 8 keep-alive connections) and `hey` (fixed offered rates); see
loadgen.py. Then, in the same run: worker scaling, Redis memory per 100,000 entries, shrinking before/after bytes
(corpus and Kubeflow-shaped workflows of 100 to 5,000 tasks), status compression beside Go's default gzip level,
latching, and the bytes a reference run writes into a real etcd without and with wfboost (etcd_run.py). It writes
docs/benchmarks.md and the plots beside it, and says which benchmark is running on stderr.

`python -m wfboost_dev.bench [--seconds S] [--out DIR]` (`make bench` uses the defaults: 10 s per measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import yaml

from wfboost.argo.pods import parse_pod
from wfboost.cache import redis_client
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.store import CacheStore
from wfboost.shrink.outputs import plan_output_marks
from wfboost.tls.certs import write_local_material
from wfboost.webhook.wire import review_for_object
from wfboost_dev.argosim.kubeflow import kubeflow_compiled
from wfboost_dev.argosim.status import kubeflow_run_nodes
from wfboost_dev.bench import etcd_run, loadgen, profile, report, sizes
from wfboost_dev.bench.latch import measure_latching
from wfboost_dev.demo.cluster import EmulatedCluster
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import RedisProcess, free_port, start_redis
from wfboost_dev.demo.runner import Processes, default_workflow_text, start_sidestore

NAMESPACE = "bench"
# (offered req/s, connections): one connection shows the latency of one request at a time; with 8, hey's workers
# tick together, so requests come in bursts of 8 (see report.py).
RATES = ((100, 1), (100, 8), (500, 8), (1000, 8))
PACED_RATES = ((100, 1), (500, 8), (1000, 8))
UPDATE_TASKS = 1250  # 3,751 nodes, 2.9 MiB of status.nodes
POLICY = f"""apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {{memoize: true, compressStatus: true, shrinkWorkflows: true, shrinkTaskResults: true}}
memoize: {{namespaces: ["{NAMESPACE}"], trustImageTags: true, trustArtifactLocations: true}}
split: {{argoCRDs: full}}
"""


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class AdmissionPath:
    """One admission path: its route, the review body, whether each request must be another node."""

    name: str
    route: str
    body: bytes
    counter: bool = False
    connections: int = 8
    longer: float = 1.0  # slow paths run this many times longer, for enough requests


def main() -> int:
    parser = argparse.ArgumentParser(description="wfboost's admission paths under load, beside a floor")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement (default 10)")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where benchmarks.md and its plots go")
    args = parser.parse_args()
    try:
        loadgen.require_tools()
    except loadgen.LoadError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wfboost-bench-") as tmp, _processes() as procs:
        results = run_all(Path(tmp), procs, args.seconds)
    results["elapsed_s"] = time.monotonic() - started
    results["machine"] = machine()
    text = report.write(results, args.out)
    print(text)
    say(f"wrote {args.out / 'benchmarks.md'} in {results['elapsed_s']:.0f} s")
    return 0


@contextlib.contextmanager
def _processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop()


def run_all(root: Path, procs: Processes, seconds: float) -> dict[str, Any]:
    write_local_material(root, root / "ca.crt")  # tls.crt and tls.key: the servers' --cert-dir
    (root / "policy.yaml").write_text(POLICY)
    procs.redis = redis = start_redis()
    procs.cluster = EmulatedCluster({NAMESPACE: {}, "wfboost": {}}).start()
    kubeconfig = procs.cluster.write_kubeconfig(root / "kubeconfig")
    sidestore_url, token = start_sidestore(procs, root, redis, kubeconfig)
    paths = admission_paths(redis) + task_result_paths(procs.cluster)
    results: dict[str, Any] = {"paths": {}, "rates": {}, "paced": {}, "workers": {}}

    for workers in (1, 2):
        floor = Server.floor(root, workers)
        webhook = Server.webhook(root, workers, redis, sidestore_url, token, kubeconfig)
        try:
            chosen = paths if workers == 1 else [p for p in paths if p.name in ("pod CREATE, miss", "pod CREATE, hit")]
            for path in chosen:
                say(f"closed loop, {workers} worker(s): {path.name} ({path.connections} connections, "
                    f"{seconds * path.longer:.0f} s)")
                measured = {server.name: loadgen.closed_loop(server.url(path.route), path.body,
                                                             seconds=seconds * path.longer,
                                                             connections=path.connections, counter=path.counter)
                            for server in (floor, webhook)}
                (results["paths"] if workers == 1 else results["workers"])[path.name] = measured
                if workers == 1:
                    results["workers"].setdefault(path.name + " (1 worker)", measured)
            if workers == 1:
                miss = next(p for p in paths if p.name == "pod CREATE, miss")
                say("profile: pod CREATE, miss (py-spy on the webhook process)")
                results["profile"] = profile.profile(webhook.process.pid, webhook.url(miss.route), miss.body,
                                                     seconds=seconds)
                for path in paths[:2]:  # pass-through and miss: hey repeats one body (see report.py)
                    for rate, connections in RATES:
                        say(f"fixed rate {rate}/s, {connections} connection(s): {path.name}")
                        results["rates"].setdefault(path.name, {})[(rate, connections)] = {
                            server.name: loadgen.fixed_rate(server.url(path.route), path.body, rate, seconds=seconds,
                                                            connections=connections)
                            for server in (floor, webhook)}
                hit = next(p for p in paths if p.name == "pod CREATE, hit")
                for rate, connections in PACED_RATES:  # each hit another node: wrk paced, floor and wfboost alike
                    say(f"paced {rate}/s, {connections} connection(s): {hit.name}")
                    results["paced"].setdefault(hit.name, {})[(rate, connections)] = {
                        server.name: loadgen.paced(server.url(hit.route), hit.body, rate, seconds=seconds,
                                                   connections=connections, counter=True)
                        for server in (floor, webhook)}
        finally:
            floor.stop()
            webhook.stop()

    say("Redis memory per 100,000 cache entries")
    results["redis_memory"] = redis_memory(redis)
    say("shrinking: corpus workflows and Kubeflow-shaped workflows of 100 to 5,000 tasks")
    results["shrink"] = sizes.measure()
    say("status compression beside Go's default gzip level")
    from wfboost_dev.bench.status import report as status_report  # isal: a bench extra, not needed by bench-cpu

    results["status"] = status_report()
    say("etcd bytes of a reference run, without and with wfboost (a real etcd each)")
    results["etcd_run"] = etcd_run.measure()
    say("latching: 100 identical steps at once")
    results["latch"] = measure_latching(root, redis.url)
    results["versions"] = {**loadgen.versions(), "valkey": redis_version(redis)}
    return results


# --- the bodies ---------------------------------------------------------------------------------------------


def admission_paths(redis: RedisProcess) -> list[AdmissionPath]:
    workflow = yaml.safe_load(default_workflow_text())
    pods = plan_workflow(workflow, "v3.7.18", namespace=NAMESPACE).pods
    outside = plan_workflow(workflow, "v3.7.18", namespace="elsewhere").pods[0].pod
    miss, hit = pods[0].pod, copy.deepcopy(pods[1].pod)
    record_hit(redis.url, hit)
    for owner in hit["metadata"].get("ownerReferences") or []:
        owner["uid"] = f"00000000-0000-4000-8000-{loadgen.COUNTER_TOKEN}"  # each request: another Workflow's node
    created = kubeflow_compiled(2000, namespace=NAMESPACE)
    running = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "pipeline-train-x7k2p", "namespace": NAMESPACE},
        "spec": {"entrypoint": "entrypoint", "templates": [{"name": "entrypoint", "dag": {"tasks": []}}]},
        # 3 nodes per task: the largest Kubeflow status an UPDATE can carry under the API server's 3 MiB limit
        "status": {"phase": "Running", "nodes": kubeflow_run_nodes(UPDATE_TASKS)},
    }
    return [
        AdmissionPath("pod CREATE, pass-through", "pods", orjson.dumps(review_for_object(outside))),
        AdmissionPath("pod CREATE, miss", "pods", orjson.dumps(review_for_object(miss))),
        AdmissionPath("pod CREATE, hit", "pods", orjson.dumps(review_for_object(hit)), counter=True),
        AdmissionPath("Workflow CREATE, 2,000 Kubeflow tasks", "workflows",
                      orjson.dumps(review_for_object(created)), connections=1, longer=3.0),
        # The same CREATE at split.wfboost.io, called first: its 4,000 DAG entries planned into 20 groups.
        AdmissionPath("Workflow CREATE, 2,000 Kubeflow tasks, DAG split", "split",
                      orjson.dumps(review_for_object(created)), connections=1, longer=3.0),
        AdmissionPath(f"Workflow UPDATE, {3 * UPDATE_TASKS + 1:,}-node status", "workflows",
                      orjson.dumps(review_for_object(running, operation="UPDATE", old_object=running)),
                      connections=2, longer=2.0),
    ]


OUTPUT_BYTES = 64 * 1024


def task_result_paths(cluster: EmulatedCluster) -> list[AdmissionPath]:
    """A step's task result as its wait container writes it (taskresult.go createTaskResult: named after the node,
    owned by the Workflow), small and with a 64 KiB output whose consumer only reads it as an argument. The Workflow,
    marked at CREATE as the webhook marks it, is in the emulated cluster for the webhook's one GET per Workflow."""
    producer = {"name": "produce", "script": {"image": "python:3.12", "command": ["python"], "source": "print(1)"},
                "outputs": {"parameters": [{"name": "table", "valueFrom": {"path": "/tmp/table"}}]}}
    consumer = {"name": "consume", "inputs": {"parameters": [{"name": "table"}]},
                "container": {"image": "busybox", "args": ["{{inputs.parameters.table}}"]}}
    workflow: dict[str, Any] = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "outputs-x7k2p", "namespace": NAMESPACE, "uid": "6f1c2a9e-0d4b-4c1e-9b7a-3e5f0a1b2c3d"},
        "spec": {"entrypoint": "main", "templates": [producer, consumer, {"name": "main", "dag": {"tasks": [
            {"name": "produce", "template": "produce"},
            {"name": "consume", "template": "consume", "depends": "produce", "arguments": {"parameters": [
                {"name": "table", "value": "{{tasks.produce.outputs.parameters.table}}"}]}}]}}]}}
    marked = jsonpatch.apply_patch(workflow, plan_output_marks(workflow).ops)
    cluster.create(f"/apis/argoproj.io/v1alpha1/namespaces/{NAMESPACE}/workflows", marked)
    meta = workflow["metadata"]

    def result(value: str) -> bytes:
        return orjson.dumps(review_for_object({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
            "metadata": {"name": "outputs-x7k2p-1234567890", "namespace": NAMESPACE,
                         "labels": {"workflows.argoproj.io/workflow": meta["name"],
                                    "workflows.argoproj.io/report-outputs-completed": "true"},
                         "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                              "name": meta["name"], "uid": meta["uid"]}]},
            "outputs": {"parameters": [{"name": "table", "value": value}]}}, operation="UPDATE"))

    rows = "\n".join(f"{i},{i * 7 % 1000},row {i}" for i in range(OUTPUT_BYTES // 16))[:OUTPUT_BYTES]
    return [
        AdmissionPath("WorkflowTaskResult UPDATE, small outputs", "workflowtaskresults", result("42")),
        AdmissionPath("WorkflowTaskResult UPDATE, 64 KiB output moved", "workflowtaskresults", result(rows)),
    ]


def record_hit(url: str, pod: dict[str, Any]) -> None:
    step = parse_pod(pod)
    outputs = (step.template or {}).get("outputs") or {}
    entry: Any = {
        "key": cache_key(key_material(step)), "entry_id": "bench", "finished_at": "2026-11-22T00:00:00Z",
        "finished_ms": int(time.time() * 1000), "staleness_s": 604800,
        "parameters": [{"name": p["name"], "value": "42"} for p in outputs.get("parameters") or []],
        "artifacts": [{"name": a["name"], "path": a["path"], "s3": {"key": "bench/" + a["name"]}}
                      for a in outputs.get("artifacts") or []],
        "image": step.main["image"], "image_id": "", "recorded_at": "2026-11-22T00:00:00Z",
        "producer": {"namespace": NAMESPACE, "workflow": "w", "workflow_uid": "u", "node_id": "n",
                     "node_name": "w.s", "pod": "p"},
    }

    async def write() -> None:
        client = redis_client.connect(url)
        try:
            await CacheStore(client).record(entry, retention=timedelta(days=1))
        finally:
            await client.aclose()

    asyncio.run(write())


# --- the servers --------------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    def url(self, route: str) -> str:
        return f"https://127.0.0.1:{self.port}/mutate/{route}"

    @classmethod
    def floor(cls, root: Path, workers: int) -> Server:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "wfboost_dev.bench.floor", "--port", str(port), "--cert-dir", str(root),
             "--workers", str(workers)], start_new_session=True, stderr=subprocess.DEVNULL)
        server = cls("floor", process, port)
        server.wait(lambda: _answers(port))
        return server

    @classmethod
    def webhook(cls, root: Path, workers: int, redis: RedisProcess, sidestore_url: str, token: Path,
                kubeconfig: Path) -> Server:
        port, status = free_port(), free_port()
        log = (root / f"webhook-{workers}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "wfboost", "serve", "--workers", str(workers), "--host", "127.0.0.1",
             "--port", str(port), "--metrics-port", str(status), "--cert-dir", str(root),
             "--policy", str(root / "policy.yaml"), "--redis-url", redis.url, "--namespace", "wfboost",
             "--sidestore-url", sidestore_url, "--sidestore-token-file", str(token),
             "--sidestore-ca", str(root / "sidestore-ca.crt"), "--kubeconfig", str(kubeconfig),
             "--log-level", "WARNING"],
            start_new_session=True, stdout=log, stderr=log)
        server = cls("wfboost", process, port)
        server.wait(lambda: _ready(status))
        return server

    def wait(self, ready: Any) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: the {self.name} server exited ({self.process.returncode})")
            if ready():
                return
            time.sleep(0.1)
        raise SystemExit(f"bench: the {self.name} server was not ready within 60 s")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _ready(port: int) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
        return bool(answer.status == 200)
    return False


# --- Redis ----------------------------------------------------------------------------------------------------


def redis_memory(redis: RedisProcess, entries: int = 100_000) -> dict[str, float]:
    """Used memory before and after recording `entries` distinct entries shaped like a step's (one parameter, one
    artifact), through the store's own write path, in a database of their own."""
    url = redis.url.rsplit("/", 1)[0] + "/3"

    async def fill() -> tuple[int, int]:
        client = redis_client.connect(url)
        try:
            await client.flushdb()  # database 3 of the Valkey this run started: nothing else is in it
            before = int((await client.info("memory"))["used_memory"])
            store = CacheStore(client)
            for start in range(0, entries, 50):  # the pool holds 100 connections
                await asyncio.gather(*(store.record(_entry(i), retention=timedelta(days=90))
                                       for i in range(start, min(entries, start + 50))))
            after = int((await client.info("memory"))["used_memory"])
            await client.flushdb()
            return before, after
        finally:
            await client.aclose()

    before, after = asyncio.run(fill())
    return {"entries": entries, "bytes": after - before, "per_entry": (after - before) / entries}


def _entry(index: int) -> Any:
    key = f"{index:064x}"
    return {
        "key": key, "entry_id": f"e{index}", "finished_at": "2026-11-22T00:00:00Z",
        "finished_ms": 1_790_000_000_000 + index, "staleness_s": 604800, "ran_ms": 61_000,
        "parameters": [{"name": "accuracy", "value": "0.9312"}],
        "artifacts": [{"name": "model", "path": "/tmp/model",
                       "s3": {"key": f"churn/wfboost-run-{index:012d}/model.tgz"}}],
        "image": "ghcr.io/example/train@sha256:" + "b" * 64, "image_id": "", "recorded_at": "2026-11-22T00:00:00Z",
        "producer": {"namespace": NAMESPACE, "workflow": f"train-{index}", "workflow_uid": f"uid-{index}",
                     "node_id": f"train-{index}-1234", "node_name": f"train-{index}.fit", "pod": f"train-{index}-fit"},
    }


def redis_version(redis: RedisProcess) -> str:
    async def ask() -> str:
        client = redis_client.connect(redis.url)
        try:
            info = await client.info("server")
            return str(info.get("valkey_version") or info.get("redis_version") or "?")
        finally:
            await client.aclose()

    return asyncio.run(ask())


def machine() -> dict[str, str]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpus:
        model = next((line.split(":", 1)[1].strip() for line in cpus if line.startswith("model name")), "?")
    memory = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        kib = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
        memory = f"{kib / 2**20:.0f} GiB"
    return {"cpu": model, "cores": str(os.cpu_count()), "memory": memory, "python": platform.python_version(),
            "kernel": platform.release()}


if __name__ == "__main__":
    sys.exit(main())
