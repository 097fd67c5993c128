"""`wfboost demo` (`make run`): the main job on an embedded default, with no cluster.

Starts an embedded Valkey and `wfboost serve` as real processes with certificates made on the spot, then plays the
API server: the Workflow and each pod the Argo controller would create for it are sent over HTTPS for admission,
the answers are checked as the API server checks them, and a short account is printed. Every process started here
is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import yaml

from wfboost.demo.apiserver import AdmissionFailed, Admitted, ApiServerClient
from wfboost.demo.processes import RedisProcess, free_port, start_redis
from wfboost.demo.replay import plan_workflow
from wfboost.webhook.certs import create_ca, create_serving_cert, service_names

DEFAULT_WORKFLOW = "churn-model.yaml"
DEMO_NAMESPACE = "ml-team"


class DemoError(RuntimeError):
    """The demo could not run; the message says why in one line."""


def default_workflow_text() -> str:
    return resources.files("wfboost.demo").joinpath("workflows", DEFAULT_WORKFLOW).read_text(encoding="utf-8")


def load_workflow(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        return yaml.safe_load(default_workflow_text()), f"embedded default ({DEFAULT_WORKFLOW})"
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"cannot read {path}: {exc}") from None
    workflows = [d for d in docs if d.get("kind") == "Workflow"]
    if not workflows:
        raise DemoError(f"{path} holds no Workflow")
    return workflows[0], str(path)


@dataclass
class Processes:
    """What the demo started, so that everything is stopped whatever happens."""

    redis: RedisProcess | None = None
    webhook: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    log: TextIO | None = None

    def stop(self) -> None:
        if self.webhook is not None and self.webhook.poll() is None:
            self.webhook.send_signal(signal.SIGTERM)
            try:
                self.webhook.wait(10)
            except subprocess.TimeoutExpired:
                self.webhook.kill()
                self.webhook.wait(10)
        if self.redis is not None:
            self.redis.stop()
        if self.log is not None:
            self.log.close()


@dataclass
class Account:
    """Counts for the closing summary."""

    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


@contextlib.contextmanager
def started(workdir: Path, say: Callable[[str], None]) -> Iterator[tuple[Processes, ApiServerClient]]:
    procs = Processes(workdir=workdir)
    try:
        procs.redis = start_redis()
        say(f"valkey      127.0.0.1:{procs.redis.port} (embedded, pid {procs.redis.process.pid})")
        tls_dir = workdir / "tls"
        tls_dir.mkdir()
        ca = create_ca()
        serving = create_serving_cert(ca, service_names("wfboost", "wfboost"))
        (tls_dir / "tls.crt").write_bytes(serving.cert_pem)
        (tls_dir / "tls.key").write_bytes(serving.key_pem)
        (workdir / "ca.crt").write_bytes(ca.cert_pem)
        port = free_port()
        procs.log = (workdir / "webhook.log").open("w")
        procs.webhook = subprocess.Popen(
            [sys.executable, "-m", "wfboost", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--cert-dir", str(tls_dir), "--redis-url", procs.redis.url, "--namespace", "wfboost"],
            stdout=procs.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        api = ApiServerClient(port, workdir / "ca.crt")
        wait_ready(api, procs.webhook, workdir / "webhook.log")
        say(f"webhook     https://wfboost.wfboost.svc:{port} -> 127.0.0.1 (pid {procs.webhook.pid}, "
            f"CA verified like the API server; log {workdir / 'webhook.log'})")
        yield procs, api
    finally:
        procs.stop()


def wait_ready(api: ApiServerClient, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise DemoError("the webhook exited: " + " | ".join(tail))
        with contextlib.suppress(OSError):
            if api.request("GET", "/readyz").status == 200:
                return
        time.sleep(0.1)
    raise DemoError("the webhook did not become ready within 30 s")


def describe(admitted: Admitted) -> str:
    ops = admitted.patch
    if not ops:
        return "unchanged"
    paths = sorted({op["path"].split("/")[1] if "/" in op["path"] else op["path"] for op in ops})
    return f"patched ({len(ops)} ops on {', '.join(paths)})"


def run_demo(workflow_path: Path | None, layout_name: str, out: TextIO, *, pace: float = 0.0) -> int:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    source_workflow, source = load_workflow(workflow_path)
    plan = plan_workflow(source_workflow, layout_name, namespace=DEMO_NAMESPACE)
    workflow, pods = plan.workflow, plan.pods
    account = Account()
    with tempfile.TemporaryDirectory(prefix="wfboost-demo-") as tmp, started(Path(tmp), say) as (_, api):
        name = workflow["metadata"].get("name", "")
        say(f"workflow    {name} from {source}: {len(pods)} pods, Argo {layout_name} pod layout")
        say("")
        started_at = time.perf_counter()
        t0 = time.perf_counter()
        admitted = api.admit("workflows", workflow, namespace=DEMO_NAMESPACE)
        say(f"  Workflow {name:<50} {describe(admitted):<28} {1000 * (time.perf_counter() - t0):6.1f} ms")
        for item in pods:
            time.sleep(pace)
            t0 = time.perf_counter()
            try:
                admitted = api.admit("pods", item.pod, namespace=DEMO_NAMESPACE)
            except AdmissionFailed as exc:
                account.add("failed")
                say(f"  pod {item.pod['metadata']['name']:<55} FAILED: {exc}")
                continue
            outcome = describe(admitted)
            account.add(outcome.split(" ")[0])
            say(f"  pod {item.pod['metadata']['name']:<55} {outcome:<28} "
                f"{1000 * (time.perf_counter() - t0):6.1f} ms  {item.step}")
        say("")
        summary = ", ".join(f"{n} {k}" for k, n in sorted(account.outcomes.items()))
        say(f"{len(pods)} pods admitted over HTTPS in {time.perf_counter() - started_at:.2f} s: {summary}")
        metrics = api.request("GET", "/metrics").body.decode()
        failed_open = sum(
            float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("wfboost_fail_open_total")
        )
        say(f"fail-open answers: {failed_open:.0f}; every answer allowed, every patch applied to the object sent")
    return 1 if account.outcomes.get("failed") else 0
