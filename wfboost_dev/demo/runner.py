"""The demo (`make run`, `python -m wfboost_dev.demo`): the main job on an embedded default, with no cluster.

Starts an embedded Valkey, an emulated Kubernetes API (kmock), and `wfboost serve` and `wfboost recorder` as real
processes with certificates made on the spot. Then a workflow runs twice (passes.py): the first run misses and its
steps are recorded by the recorder from what it watches; the second run's steps are cache hits, replayed. The demo
plays the API server (admission over HTTPS, checked as the API server checks it), the kubelet and Argo's wait
container, and prints an account. Every process started here is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import yaml

from wfboost.tls.certs import create_ca, create_serving_cert, service_names, write_local_material
from wfboost_dev.argosim.expand import as_workflow
from wfboost_dev.demo.apiserver import ApiServerClient
from wfboost_dev.demo.cluster import EmulatedCluster
from wfboost_dev.demo.playback import Player
from wfboost_dev.demo.processes import RedisProcess, free_port, free_ports, start_redis
from wfboost_dev.demo.shrinking import show_shrinking

DEFAULT_WORKFLOW = "churn-model.yaml"
DEMO_NAMESPACE = "ml-team"
# Memoization is on by namespace label in the demo's policy: the webhook learns the labels from its namespace watch.
DEMO_NAMESPACE_LABELS = {"wfboost.io/memoize": "enabled"}


# What the demo plays: a Workflow, or the Workflow a CronWorkflow or (Cluster)WorkflowTemplate creates.
RUNNABLE_KINDS = ("Workflow", "CronWorkflow", "WorkflowTemplate", "ClusterWorkflowTemplate")


class DemoError(RuntimeError):
    """The demo could not run; the message says why in one line."""


def default_workflow_text() -> str:
    return resources.files("wfboost_dev.demo").joinpath("workflows", DEFAULT_WORKFLOW).read_text(encoding="utf-8")


def load_workflow(path: Path | None) -> tuple[dict[str, Any], str]:
    if path is None:
        return yaml.safe_load(default_workflow_text()), f"embedded default ({DEFAULT_WORKFLOW})"
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"cannot read {path}: {exc}") from None
    runnable = [d for d in docs if d.get("kind") in RUNNABLE_KINDS]
    if not runnable:
        raise DemoError(f"{path} holds no {', '.join(RUNNABLE_KINDS[:-1])} or {RUNNABLE_KINDS[-1]}")
    workflow = as_workflow(runnable[0], template_sources=docs)  # what the controller runs for it
    if isinstance(workflow, str):
        raise DemoError(f"{path}: {runnable[0].get('kind')} {_name(runnable[0])}: {workflow}")
    kind = runnable[0].get("kind")
    if kind == "Workflow":
        return workflow, str(path)
    return workflow, f"{path} (the Workflow its {kind} {_name(runnable[0])} creates)"


def _name(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    return str((metadata or {}).get("name") or (metadata or {}).get("generateName") or "?")


DEMO_POLICY = """\
apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true, shrinkWorkflows: true}
memoize:
  namespaceSelector: {matchLabels: {wfboost.io/memoize: enabled}}
  maxStaleness: P7D
"""


@dataclass
class Processes:
    """What the demo started, so that everything is stopped whatever happens."""

    redis: RedisProcess | None = None
    cluster: EmulatedCluster | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[TextIO] = field(default_factory=list)

    def stop(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        if self.cluster is not None:
            self.cluster.stop()
        if self.redis is not None:
            self.redis.stop()
        for log in self.logs:
            log.close()

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        sink = log.open("w")
        self.logs.append(sink)
        child = subprocess.Popen(
            [sys.executable, "-m", "wfboost", *args], stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.children.append(child)
        return child


@dataclass(frozen=True)
class Started:
    api: ApiServerClient
    cluster: EmulatedCluster
    redis_url: str


@contextlib.contextmanager
def started(workdir: Path, say: Callable[[str], None]) -> Iterator[Started]:
    procs = Processes()
    try:
        procs.redis = start_redis()
        say(f"valkey      127.0.0.1:{procs.redis.port} (embedded, pid {procs.redis.process.pid})")
        procs.cluster = EmulatedCluster({DEMO_NAMESPACE: DEMO_NAMESPACE_LABELS, "wfboost": {}}).start()
        kubeconfig = procs.cluster.write_kubeconfig(workdir / "kubeconfig")
        say(f"kubernetes  {procs.cluster.url} (kmock's stateful API emulator, in this process)")
        tls_dir = workdir / "tls"
        write_local_material(tls_dir, workdir / "ca.crt")
        policy = workdir / "policy.yaml"
        policy.write_text(DEMO_POLICY)
        sidestore_url, token = start_sidestore(procs, workdir, procs.redis, kubeconfig)
        say(f"sidestore   {sidestore_url} (pid {procs.children[-1].pid}, blobs in the same Valkey, db 1)")
        port = free_port()
        common = ["--redis-url", procs.redis.url, "--policy", str(policy), "--namespace", "wfboost",
                  "--kubeconfig", str(kubeconfig)]
        webhook = procs.spawn(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--cert-dir", str(tls_dir), *common,
             "--sidestore-url", sidestore_url, "--sidestore-token-file", str(token),
             "--sidestore-ca", str(workdir / "sidestore-ca.crt")],
            workdir / "webhook.log",
        )
        api = ApiServerClient(port, workdir / "ca.crt")
        wait_ready(api, webhook, workdir / "webhook.log")
        say(f"webhook     https://wfboost.wfboost.svc:{port} -> 127.0.0.1 (pid {webhook.pid}, "
            f"CA verified like the API server)")
        # A demo's steps take milliseconds: the recorder asks about them as often (a cluster's default is 10 s).
        quick = ["--retry-interval", "0.2", "--workflow-read-interval", "0.2"]
        recorder = procs.spawn(["recorder", *quick, *common], workdir / "recorder.log")
        say(f"recorder    watching pods and task results (pid {recorder.pid})")
        say(f"logs        {workdir}" + ("" if workdir.name.startswith("kept-") else
                                               " (removed on exit; --keep DIR keeps them)"))
        yield Started(api, procs.cluster, procs.redis.url)
    finally:
        procs.stop()


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[str]:
    """Where the processes write: a temporary directory removed on exit, or `keep` (created, never removed)."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="wfboost-demo-") as tmp:
            yield tmp
        return
    keep.mkdir(parents=True, exist_ok=True)
    kept = Path(tempfile.mkdtemp(prefix="kept-", dir=keep))
    yield str(kept)


def start_sidestore(procs: Processes, workdir: Path, redis: RedisProcess, kubeconfig: Path) -> tuple[str, Path]:
    """`wfboost sidestore serve` on loopback with its own CA, and a token for the webhook."""
    ca = create_ca()
    serving = create_serving_cert(ca, service_names("wfboost-sidestore", "wfboost", extra_ips=["127.0.0.1"]))
    cert_dir = workdir / "sidestore-tls"
    cert_dir.mkdir()
    (cert_dir / "tls.crt").write_bytes(serving.cert_pem)
    (cert_dir / "tls.key").write_bytes(serving.key_pem)
    (workdir / "sidestore-ca.crt").write_bytes(ca.cert_pem)
    token = workdir / "sidestore-token"
    token.write_text(secrets.token_urlsafe(32))
    clients = workdir / "sidestore-clients.yaml"
    clients.write_text(yaml.safe_dump({"clients": [{"name": "webhook", "token": token.read_text(),
                                                    "namespaces": ["*"]}]}))
    port, status_port = free_ports(2)
    log = workdir / "sidestore.log"
    child = procs.spawn(
        ["sidestore", "serve", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(status_port),
         "--cert-dir", str(cert_dir),
         "--clients", str(clients), "--redis-url", f"redis://127.0.0.1:{redis.port}/1", "--gc-interval", "0",
         "--kubeconfig", str(kubeconfig)],
        log,
    )
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise DemoError("the side store exited: " + " | ".join(log.read_text().strip().splitlines()[-5:]))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return url, token
        except OSError:
            time.sleep(0.1)
    raise DemoError("the side store did not become ready within 30 s")


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


def run_demo(
    workflow_path: Path | None, layout_name: str, out: TextIO, *, pace: float = 0.0, keep: Path | None = None
) -> int:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    workflow, source = load_workflow(workflow_path)
    base = str(workflow["metadata"].get("name") or workflow["metadata"].get("generateName") or "wf").rstrip("-")
    with _workdir(keep) as tmp, started(Path(tmp), say) as ready:
        player = Player(ready.api, ready.cluster, ready.redis_url, layout_name, DEMO_NAMESPACE, say, pace)
        say(f"workflow    {base} from {source}, pods as Argo {layout_name} builds them, namespace {DEMO_NAMESPACE} "
            f"(labels {','.join(f'{k}={v}' for k, v in DEMO_NAMESPACE_LABELS.items())})")
        say("")
        say(f"first run: {base}-first (nothing cached yet)")
        first = player.run(workflow, f"{base}-first")
        say("")
        say(f"second run: {base}-second (the same pipeline, submitted again)")
        second = player.run(workflow, f"{base}-second")
        say("")
        recorded = sum(1 for s in first.steps if s.recorded)
        say(f"first run:  {len(first.steps)} steps, {first.count('miss')} missed and ran, {recorded} recorded")
        say(f"second run: {len(second.steps)} steps, {second.count('hit')} replayed from the cache, "
            f"{len(second.steps) - second.count('hit')} ran")
        say("")
        restored = show_shrinking(ready.api, layout_name, DEMO_NAMESPACE, say)
        say("")
        metrics = ready.api.request("GET", "/metrics").body.decode()
        failed_open = sum(
            float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("wfboost_fail_open_total")
        )
        say(f"fail-open answers: {failed_open:.0f}; every patch applied to the object sent, no pod started with a "
            "reference in place of its value")
    return 0 if restored else 1
