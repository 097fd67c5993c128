"""Admission latency over real HTTPS, against a baseline measured in the same run.

The baseline is a bare aiohttp HTTPS server on the same machine that answers every AdmissionReview with a constant
"allowed" (what any webhook costs: TLS, HTTP, JSON). wfboost is then measured passing pods through, missing (one
Redis lookup, pod annotated) and hitting (lookup + replay patch, verified before it is sent), and a Workflow UPDATE
whose node statuses it stores compressed; then status compression beside Go's default gzip level. Run: `make bench`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from wfboost.argo.pods import parse_pod
from wfboost.cache import redis_client
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.store import CacheStore
from wfboost.tls.certs import write_local_material
from wfboost.tls.reloader import CertificateReloader
from wfboost.webhook.config import MAX_BODY_BYTES, WebhookConfig
from wfboost.webhook.server import WebhookServer
from wfboost_dev.argosim.status import kubeflow_run_nodes
from wfboost_dev.bench.latch import measure_latching
from wfboost_dev.bench.serving import Serving
from wfboost_dev.bench.status import report as status_report
from wfboost_dev.demo.apiserver import ApiServerClient
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import free_port, start_redis
from wfboost_dev.demo.runner import default_workflow_text

REQUESTS = 400
WORKFLOW_REQUESTS = 40  # each carries a multi-megabyte Workflow twice (object and oldObject)
WORKFLOW_TASKS = 1000
POLICY = (
    "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true, compressStatus: true}\n"
    "memoize: {namespaces: [bench]}\n"
)


def baseline_app() -> web.Application:
    async def allow(request: web.Request) -> web.Response:
        review = orjson.loads(await request.read())
        answer = {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                  "response": {"uid": review["request"]["uid"], "allowed": True}}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/mutate/{route}", allow)
    return app


def measure(send: Callable[[], Any], requests: int = REQUESTS) -> list[float]:
    for _ in range(min(20, requests)):  # warm up connections' code paths, scripts loaded in Redis
        send()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        send()
        samples.append(time.perf_counter() - started)
    return samples


def row(name: str, samples: list[float], base: float) -> str:
    p50 = statistics.median(samples)
    p99 = sorted(samples)[int(len(samples) * 0.99) - 1]
    return f"{name:<34} {p50 * 1000:8.2f} ms {p99 * 1000:8.2f} ms {p50 / base:8.2f}×"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="wfboost-bench-") as tmp:
        root = Path(tmp)
        write_local_material(root, root / "ca.crt")
        (root / "policy.yaml").write_text(POLICY)
        redis = start_redis()
        try:
            workflow = yaml.safe_load(default_workflow_text())
            pods = plan_workflow(workflow, "v3.7.18", namespace="bench").pods
            miss_pod, hit_pod = pods[0].pod, pods[1].pod
            record_hit(redis.url, hit_pod)

            reloader = CertificateReloader(root)
            reloader.check_now()
            port = free_port()
            base = Serving(baseline_app(), reloader, port)
            client = ApiServerClient(port, root / "ca.crt")
            baseline = measure(lambda: client.admit("pods", miss_pod))
            running_workflow = workflow_with_status(WORKFLOW_TASKS)
            workflow_bytes = len(orjson.dumps(running_workflow))

            def update(client: ApiServerClient) -> Callable[[], Any]:
                return lambda: client.admit("workflows", running_workflow, operation="UPDATE",
                                            old_object=running_workflow)

            workflow_baseline = measure(update(client), WORKFLOW_REQUESTS)
            base.stop()

            settings = WebhookConfig(host="127.0.0.1", port=0, cert_dir=root, policy_path=root / "policy.yaml",
                                      redis_url=redis.url)
            off = WebhookConfig(host="127.0.0.1", port=0, cert_dir=root)
            results = {}
            for name, config, pod in (
                ("wfboost, memoization off", off, miss_pod),
                ("wfboost, miss (lookup + annotate)", settings, miss_pod),
                ("wfboost, hit (lookup + replay)", settings, hit_pod),
            ):
                server = WebhookServer(config)
                server.load_now()
                port = free_port()
                running = Serving(server.build_app(), server.tls, port)
                client = ApiServerClient(port, root / "ca.crt")
                results[name] = measure(lambda client=client, pod=pod: client.admit("pods", pod))  # type: ignore[misc]
                if config is settings:
                    stored = client.admit("workflows", running_workflow, operation="UPDATE",
                                          old_object=running_workflow).object
                    workflow_results = measure(update(client), WORKFLOW_REQUESTS)
                running.stop()
            latch_lines = measure_latching(root, redis.url)
        finally:
            redis.stop()
    base_p50 = statistics.median(baseline)
    print(f"admission of one Argo pod over HTTPS, {REQUESTS} sequential requests each, one client")
    print(f"{'':<34} {'p50':>11} {'p99':>11} {'p50 vs baseline':>16}")
    print(row("baseline: bare HTTPS allow", baseline, base_p50))
    for name, samples in results.items():
        print(row(name, samples, base_p50))
    print()
    stored_bytes = len(orjson.dumps(stored))
    print(f"a controller's UPDATE of a Workflow with the status of a {WORKFLOW_TASKS}-task Kubeflow run "
          f"({workflow_bytes / 2**20:.2f} MiB, stored as {stored_bytes / 2**20:.2f} MiB), {WORKFLOW_REQUESTS} requests")
    print(f"{'':<34} {'p50':>11} {'p99':>11} {'p50 vs baseline':>16}")
    workflow_base_p50 = statistics.median(workflow_baseline)
    print(row("baseline: bare HTTPS allow", workflow_baseline, workflow_base_p50))
    print(row("wfboost, status compressed", workflow_results, workflow_base_p50))
    print()
    print("\n".join(status_report()))
    print()
    print("\n".join(latch_lines))
    return 0


def workflow_with_status(tasks: int) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "pipeline-train-x7k2p", "namespace": "bench"},
        "spec": {"entrypoint": "entrypoint", "templates": [{"name": "entrypoint", "dag": {"tasks": []}}]},
        "status": {"phase": "Running", "nodes": kubeflow_run_nodes(tasks)},
    }


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
        "producer": {"namespace": "bench", "workflow": "w", "workflow_uid": "u", "node_id": "n", "node_name": "w.s",
                     "pod": "p"},
    }

    async def write() -> None:
        client = redis_client.connect(url)
        try:
            await CacheStore(client).record(entry, retention=timedelta(days=1))
        finally:
            await client.aclose()

    asyncio.run(write())


if __name__ == "__main__":
    sys.exit(main())
