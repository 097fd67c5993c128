"""Latching measured: 100 identical steps started together, and how soon the followers take the leader's result.

Executions are counted as the pods admitted to run (leaders): it must be 1. The release latency is measured from the
moment the leader's entry is recorded to each follower's admission as a hit, with every follower retrying its
creation every RETRY seconds from its own first refusal (a random phase, as workflows reach the step at different
moments). Argo's controller retries a refused creation at its requeue interval (`DEFAULT_REQUEUE_TIME`, 10 s by
default): in a cluster the latency is what this prints plus up to that interval.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from wfboost.argo.pods import parse_pod
from wfboost.cache import redis_client
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.leases import lease_owner
from wfboost.cache.store import CacheStore
from wfboost.tls.reloader import CertificateReloader
from wfboost.webhook.config import WebhookConfig
from wfboost.webhook.server import WebhookServer
from wfboost_dev.bench.serving import Serving
from wfboost_dev.demo.apiserver import ApiServerClient
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import free_port

STEPS = 100
RETRY = 0.2
POLICY = """apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true, latch: true}
memoize: {namespaces: [bench]}
"""
WORKFLOW = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: NAME, namespace: bench}
spec:
  entrypoint: train
  templates:
    - name: train
      metadata: {annotations: {wfboost.io/cache-seed: SEED}}
      container:
        image: python:3.11@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
        command: [python, -c, "print(1)"]
      outputs: {parameters: [{name: score, valueFrom: {path: /tmp/score}}]}
"""


def measure_latching(root: Path, redis_url: str) -> list[str]:
    (root / "latch-policy.yaml").write_text(POLICY)
    seed = str(time.time_ns())
    pods = [plan_workflow(yaml.safe_load(WORKFLOW.replace("NAME", f"run-{i}").replace("SEED", seed)), "v3.7.18",
                          namespace="bench").pods[0].pod for i in range(STEPS)]
    server = WebhookServer(WebhookConfig(host="127.0.0.1", port=0, cert_dir=root,
                                         policy_path=root / "latch-policy.yaml", redis_url=redis_url))
    server.load_now()
    reloader: CertificateReloader = server.tls
    port = free_port()
    serving = Serving(server.build_app(), reloader, port)
    client = ApiServerClient(port, root / "ca.crt")
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda pod: client.answer("pods", pod), pods))
        leaders = [pod for pod, answer in zip(pods, answers, strict=True) if answer["allowed"]]
        refused = sum(1 for answer in answers if answer.get("status", {}).get("code") == 429)
        followers = [pod for pod in pods if pod not in leaders]
        latencies = _release(client, leaders[0], followers, redis_url, seed) if len(leaders) == 1 else []
    finally:
        serving.stop()
    lines = [f"latching: {STEPS} identical steps admitted together: {len(leaders)} execution(s), {refused} deferred "
             "(429)"]
    if latencies:
        ordered = sorted(latencies)
        lines.append(
            f"  leader recorded -> follower hit, retrying every {RETRY:.1f} s: p50 {statistics.median(ordered):.2f} s, "
            f"p99 {ordered[int(len(ordered) * 0.99) - 1]:.2f} s, max {ordered[-1]:.2f} s "
            f"(+ up to Argo's DEFAULT_REQUEUE_TIME, 10 s, in a cluster)"
        )
    return lines


def _release(client: ApiServerClient, leader_pod: dict[str, Any], followers: list[dict[str, Any]], redis_url: str,
             seed: str) -> list[float]:
    step = parse_pod(leader_pod)
    entry: Any = {
        "key": cache_key(key_material(step, seed=seed)), "entry_id": step.pod_name,
        "finished_at": "2026-12-01T10:00:00Z", "finished_ms": int(time.time() * 1000), "staleness_s": 604800,
        "parameters": [{"name": "score", "value": "1"}], "artifacts": [], "image": step.main["image"],
        "image_id": "", "recorded_at": "2026-12-01T10:00:00Z",
        "producer": {"namespace": "bench", "workflow": step.workflow, "workflow_uid": "u", "node_id": step.node_id,
                     "node_name": step.node_name, "pod": step.pod_name},
    }

    async def record() -> None:
        redis = redis_client.connect(redis_url)
        try:
            await CacheStore(redis).record(entry, retention=timedelta(days=1), lease_owner=lease_owner(step))
        finally:
            await redis.aclose()

    rng = random.Random(1)
    phases = [rng.uniform(0, RETRY) for _ in followers]
    recorded_at = time.monotonic() + 0.5
    def record_later() -> None:
        time.sleep(max(0.0, recorded_at - time.monotonic()))
        asyncio.run(record())

    timer = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    timer.submit(record_later)

    def follow(index: int) -> float:
        time.sleep(phases[index])
        while True:
            answer = client.answer("pods", followers[index])
            if answer["allowed"]:
                return max(0.0, time.monotonic() - recorded_at)
            time.sleep(RETRY)

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        latencies = list(pool.map(follow, range(len(followers))))
    timer.shutdown()
    return latencies
