"""`wfboost serve --workers N`: several admission processes behind one port (webhook/workers.py).

The server runs as users run it (the CLI, a subprocess) with real HTTPS verified against the CA the way the API
server does, a real Valkey, and its public status port read with Prometheus' own parser.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import write_tls_material
from wfboost.webhook.workers import merge_metrics
from wfboost_dev.demo.apiserver import ApiServerClient
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import RedisProcess, free_port
from wfboost_dev.demo.runner import default_workflow_text


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as found:
        return [int(child) for child in found.read().split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def status(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, metrics_port: int, ca: Path) -> None:
        self.process, self.port, self.metrics_port, self.ca = process, port, metrics_port, ca

    def wait_ready(self) -> None:
        for _ in range(300):
            if status(self.metrics_port, "/readyz")[0] == 200:
                return
            assert self.process.poll() is None, self.process.stderr.read().decode() if self.process.stderr else ""
            time.sleep(0.05)
        raise AssertionError(f"never ready: {status(self.metrics_port, '/readyz')}")


@pytest.fixture
def serve_workers(tmp_path: Path, valkey: RedisProcess) -> Iterator[Any]:
    started: list[Served] = []

    def start(workers: int) -> Served:
        tls = write_tls_material(tmp_path / f"tls-{len(started)}")
        policy = tmp_path / "policy.yaml"
        policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                          "memoize: {namespaces: [ml-team], trustImageTags: true}\n")
        port, metrics_port = free_port(), free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "wfboost", "serve", "--workers", str(workers), "--host", "127.0.0.1", "--port",
             str(port), "--metrics-port", str(metrics_port), "--cert-dir", str(tls.directory), "--policy",
             str(policy), "--redis-url", valkey.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        served = Served(process, port, metrics_port, tls.ca_bundle)
        started.append(served)
        served.wait_ready()
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


def test_two_workers_admit_behind_one_port_and_report_as_one(serve_workers: Any) -> None:
    served = serve_workers(2)
    workers = children(served.process.pid)
    assert len(workers) == 2
    pods = plan_workflow(yaml.safe_load(default_workflow_text()), "v3.7.18", namespace="ml-team").pods
    for _ in range(4):  # a new connection per review: the kernel spreads them over both listeners
        for pod in pods:
            admitted = ApiServerClient(served.port, served.ca).admit("pods", pod.pod)
            outcome = admitted.object["metadata"]["annotations"]["wfboost.io/cache-outcome"]
            assert outcome.startswith(("miss: no_entry", "skipped: reads_mutable_artifact")), outcome
    code, page = status(served.metrics_port, "/metrics")
    assert code == 200
    families = {family.name: family for family in text_string_to_metric_families(page)}
    requests = [s for s in families["wfboost_admission_requests"].samples if s.labels.get("route") == "pods"]
    assert sum(s.value for s in requests) == 4 * len(pods)  # summed over the workers, one series per outcome
    assert {s.labels.get("worker") for s in requests} == {None}
    valid = families["wfboost_policy_valid"].samples
    assert sorted((s.labels["worker"], s.value) for s in valid) == [("0", 1.0), ("1", 1.0)]
    assert status(served.metrics_port, "/healthz") == (200, "ok\n")

    os.kill(workers[1], signal.SIGKILL)  # a worker dies: the pod restarts rather than run at half its size
    assert served.process.wait(timeout=30) == 1
    assert not alive(workers[0])
    assert served.process.stderr is not None
    assert "worker wfboost-webhook-1 exited (status -9); stopping the others" in served.process.stderr.read().decode()


def test_sigterm_drains_every_worker_and_exits_0(serve_workers: Any) -> None:
    served = serve_workers(2)
    workers = children(served.process.pid)
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in workers)


def test_a_bad_worker_count_is_one_line() -> None:
    """From the option or from WFBOOST_WORKERS: argparse's usage, then one line saying what is wrong."""
    for value in ("0", "x", "65"):
        for argv, env in ((["--workers", value], {}), ([], {"WFBOOST_WORKERS": value})):
            done = subprocess.run([sys.executable, "-m", "wfboost", "serve", *argv], capture_output=True, text=True,
                                  timeout=60, env={**os.environ, **env})
            assert done.returncode == 2 and "Traceback" not in done.stderr
            assert done.stderr.splitlines()[-1].startswith("wfboost serve: error: argument --workers: expected")


def test_merged_metrics_sum_counters_and_histograms_and_label_gauges() -> None:
    page = """# HELP wfboost_x_total things
# TYPE wfboost_x_total counter
wfboost_x_total{route="pods"} {count}
# HELP wfboost_seconds latency
# TYPE wfboost_seconds histogram
wfboost_seconds_bucket{le="0.1"} {count}
wfboost_seconds_bucket{le="+Inf"} {count}
wfboost_seconds_count {count}
wfboost_seconds_sum 0.5
# HELP wfboost_valid 1 when valid
# TYPE wfboost_valid gauge
wfboost_valid {count}
"""
    merged = {m.name: m for m in merge_metrics({0: page.replace("{count}", "2"), 1: page.replace("{count}", "3")})}
    assert [(s.name, s.labels, s.value) for s in merged["wfboost_x"].samples] == [
        ("wfboost_x_total", {"route": "pods"}, 5.0)]
    histogram = {(s.name, s.labels.get("le")): s.value for s in merged["wfboost_seconds"].samples}
    assert histogram == {("wfboost_seconds_bucket", "0.1"): 5.0, ("wfboost_seconds_bucket", "+Inf"): 5.0,
                         ("wfboost_seconds_count", None): 5.0, ("wfboost_seconds_sum", None): 1.0}
    assert [(s.labels, s.value) for s in merged["wfboost_valid"].samples] == [({"worker": "0"}, 2.0),
                                                                             ({"worker": "1"}, 3.0)]


def test_a_signal_to_the_whole_process_group_is_a_clean_stop(serve_workers: Any) -> None:
    """Ctrl-C, systemd and `tini -g` signal every process: the workers drain, the parent's own SIGTERM may then
    reach a worker that has finished, and the stop is still clean."""
    served = serve_workers(2)
    workers = children(served.process.pid)
    for pid in [served.process.pid, *workers]:
        os.kill(pid, signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in workers)


async def test_a_worker_that_answers_late_keeps_its_last_counts() -> None:
    """Counters summed over the workers never go back when one worker misses a scrape (Prometheus would take it
    for a reset): its last page stands in."""
    from wfboost.webhook.workers import WorkerStatus

    page = "# HELP wfboost_x_total x\n# TYPE wfboost_x_total counter\nwfboost_x_total {value}\n"
    answers = [{"a": page.format(value=100), "b": page.format(value=100)}, {"a": page.format(value=101)}]
    status = WorkerStatus(["a", "b"])

    async def get(socket_path: str, path: str) -> tuple[int, str]:
        found = answers[0].get(socket_path)
        if found is None:
            raise TimeoutError
        return 200, found

    status._get = get  # type: ignore[method-assign]
    totals = []
    for _ in range(2):
        await status.refresh()
        totals.append(sum(s.value for family in status.collect() for s in family.samples))
        answers.pop(0)
    assert totals == [200.0, 201.0]


def test_workers_end_when_their_parent_is_killed(serve_workers: Any) -> None:
    """SIGKILL (or an OOM kill) runs no cleanup in the parent: its workers must not go on serving the port alone."""
    served = serve_workers(2)
    workers = children(served.process.pid)
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    served.process.kill()
    served.process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)
