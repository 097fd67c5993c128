"""The images as built from deploy/images, run the way the manifests run them (`make images-check`, in CI).

The service image runs the webhook with the Deployment's own arguments, mount paths, user and securityContext
(read-only root, no capabilities, no privilege escalation) and answers a real API server's reviews: a miss, then,
once the cache holds the step, a hit. The hit's main container then runs in the replay image with the securityContext
and emptyDir mounts the patch gave it, as the kubelet would start it (its `$(VAR)` expansion, then what emissary execs
after its `--`), and writes the cached outputs where Argo's wait container reads them.

Built with podman on stand-in bases (wfboost_dev/images.py says what they are), for this machine's platform or the
one WFBOOST_IMAGES_PLATFORM names (a foreign one runs under qemu-user-static); skipped outside `make images-check`,
which installs podman and sets WFBOOST_IMAGES_CHECK=1.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.argo_source.pods import controller_pod
from tests.conftest import TlsMaterial
from tests.harness.apiserver import ApiServer
from tests.harness.kubelet import container_process, wait_reads
from tests.sidestore_fixtures import TOKENS, make_tls, sidestore_redis_url, write_clients_file
from wfboost.argo.pods import parse_pod
from wfboost.blobs.client import SideStoreClient
from wfboost.cache import redis_client
from wfboost.cache.keys import cache_key, key_material
from wfboost.cache.store import CacheStore, now_ms
from wfboost_dev.demo.processes import RedisProcess, free_ports
from wfboost_dev.deploy.kustomize import render_base
from wfboost_dev.deploy.objects import containers, pod_specs
from wfboost_dev.images import Images, build_all, podman, remove, version

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.environ.get("WFBOOST_IMAGES_CHECK") != "1",
                                reason="builds and runs the images with podman: `make images-check` (in CI)")
TEMPLATE = {
    "name": "count-rows",
    "container": {"image": "python@sha256:" + "4" * 64, "command": ["python", "-c"], "args": ["..."]},
    "outputs": {"parameters": [{"name": "rows", "valueFrom": {"path": "/tmp/rows"}},
                               {"name": "schema", "valueFrom": {"path": "/data/out/schema.json"}}]},
}
CACHED = {"rows": "42\n", "schema": '{"columns": ["a", "b$(HOME)"], "note": "it\'s `quoted` $$"}'}


@pytest.fixture(scope="module")
def images() -> Iterator[Images]:
    """Built for WFBOOST_IMAGES_PLATFORM (`make images-check IMAGES_PLATFORM=linux/arm64`), default this machine's;
    removed afterwards."""
    built = build_all(os.environ.get("WFBOOST_IMAGES_PLATFORM") or None, announce=lambda line: print(line, flush=True))
    try:
        yield built
    finally:
        remove(built)


def manifest_container(name: str, kind: str = "Deployment") -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, first container) of the base's `kind` named `name`."""
    found = next(o for o in render_base(ROOT / "deploy" / "base")
                 if o["kind"] == kind and o["metadata"]["name"] == name)
    pod = found["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def security_flags(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    """podman's equivalents of what the kubelet applies from the pod's and the container's securityContext; a field
    not translated here fails the test rather than being dropped."""
    merged = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
    flags: list[str] = []
    user = merged.pop("runAsUser", None)
    group = merged.pop("runAsGroup", None)
    assert user is not None or group is None, "runAsGroup without runAsUser is not translated here"
    if user is not None:
        flags += ["--user", f"{user}:{group if group is not None else user}"]
    if merged.pop("readOnlyRootFilesystem", False):
        flags += ["--read-only", "--read-only-tmpfs=false"]  # podman's default adds writable /tmp, /run: Kubernetes not
    if merged.pop("allowPrivilegeEscalation", True) is False:
        flags += ["--security-opt", "no-new-privileges"]
    capabilities = merged.pop("capabilities", None) or {}
    assert not capabilities.get("add"), capabilities  # not translated: none is asked for
    for capability in capabilities.get("drop") or []:
        flags += ["--cap-drop", capability]
    assert merged.pop("runAsNonRoot", True) is True
    assert merged.pop("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}  # podman's default
    merged.pop("fsGroup", None)  # volumes here are made readable or writable by all, as emptyDirs and Secrets are
    assert not merged, f"securityContext fields this check does not apply: {sorted(merged)}"
    return flags


def volume_dir(path: Path) -> Path:
    """A directory as an emptyDir (or a PersistentVolume under the pod's fsGroup) presents it: writable by the pod."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def readable_copy(source: Path, target: Path) -> Path:
    """A directory as a Secret or ConfigMap volume presents it: files mode 0644 (defaultMode)."""
    shutil.copytree(source, target)
    target.chmod(0o755)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def wait_ready(port: int, container: str, timeout: float = 60, what: str = "the webhook") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False).strip()
        if state not in ("running", "created", "configured", ""):
            break
        time.sleep(0.5)
    raise AssertionError(f"{what} in its image never became ready:\n{podman('logs', container, check=False)}")


@pytest.fixture
def webhook_in_image(images: Images, tls_material: TlsMaterial, valkey: RedisProcess,
                     tmp_path: Path) -> Iterator[ApiServer]:
    """The webhook from the service image, with the base Deployment's args, mounts and securityContext."""
    pod, container = manifest_container("wfboost")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    tls = readable_copy(tls_material.directory, tmp_path / "tls")
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "policy.yaml").write_text(
        "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
        f"memoize: {{namespaces: [ml], replay: {{image: '{images.replay}'}}}}\n")
    readable_copy(policy_dir, tmp_path / "policy-volume")
    client = tmp_path / "sidestore-client-source"  # the side store client Secret: a token and the side store's CA
    client.mkdir()
    (client / "token").write_text("a-token-for-the-side-store")
    (client / "ca.crt").write_bytes(tls_material.ca_bundle.read_bytes())
    port, metrics = free_ports(2)
    name = f"wfboost-check-webhook-{port}"
    # The manifest's env as the kubelet gives it: literal values, POD_NAMESPACE from the pod, the Redis URL (whose
    # password comes from a Secret) pointed at this test's Valkey.
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(POD_NAMESPACE="wfboost", WFBOOST_REDIS_URL=valkey.url)
    podman("run", "--detach", "--name", name, "--network", "host", *images.run_flags,
           *security_flags(pod, container),
           "-v", f"{tls}:{mounts['tls']}:ro", "-v", f"{tmp_path / 'policy-volume'}:{mounts['policy']}:ro",
           "-v", f"{readable_copy(client, tmp_path / 'sidestore-client')}:{mounts['sidestore-client']}:ro",
           *(flag for key, value in env.items() for flag in ("-e", f"{key}={value}")), images.service,
           *container["args"], f"--port={port}", f"--metrics-port={metrics}")
    try:
        wait_ready(metrics, name)
        yield ApiServer(port, tls_material.ca_bundle)
    finally:
        podman("rm", "--force", name, check=False)


def test_the_service_image_is_what_the_manifests_expect(images: Images) -> None:
    config = json.loads(podman("image", "inspect", images.service))[0]["Config"]
    assert config["User"] == "10001" and config["Entrypoint"] == ["wfboost"]
    pod, container = manifest_container("wfboost")
    printed = podman("run", "--rm", "--network", "none", *images.run_flags, *security_flags(pod, container),
                     images.service, "--version")
    assert printed.strip() == f"wfboost {version()}"
    for image in (images.service, images.replay):
        assert f"linux/{json.loads(podman('image', 'inspect', image))[0]['Architecture']}" == images.platform
    replay = json.loads(podman("image", "inspect", images.replay))[0]["Config"]
    assert replay["User"] == "65532:65532"


def step_pod(workflow_uid: str) -> dict[str, Any]:
    pod = copy.deepcopy(controller_pod("v3.7.18", "rows", workflow_uid, "ml", TEMPLATE, "rows[0].count").pod)
    pod["metadata"]["annotations"]["wfboost.io/cache-seed"] = "images-check"
    return pod


def record(valkey: RedisProcess, pod: dict[str, Any]) -> None:
    """What the recorder writes after the first run: its outputs as Argo reported them (one newline trimmed)."""
    step = parse_pod(pod)
    entry = {
        "key": cache_key(key_material(step, seed="images-check")), "entry_id": "first", "staleness_s": 604800,
        "finished_at": "2026-12-01T10:00:00Z", "finished_ms": now_ms() - 60_000, "artifacts": [],
        "parameters": [{"name": name, "value": wait_reads(value.encode())} for name, value in CACHED.items()],
        "image": step.main["image"], "image_id": "sha256:" + "4" * 64, "recorded_at": "2026-12-01T10:00:01Z",
        "producer": {"namespace": "ml", "workflow": "rows", "workflow_uid": "uid-first", "node_id": step.node_id,
                     "node_name": step.node_name, "pod": step.pod_name},
    }

    async def write() -> None:
        redis = redis_client.connect(valkey.url)
        try:
            await CacheStore(redis).record(entry, retention=timedelta(days=1))  # type: ignore[arg-type]
        finally:
            await redis.aclose()

    asyncio.run(write())


def run_in_replay_image(hit: dict[str, Any], images: Images, tmp_path: Path) -> tuple[dict[str, Path], str]:
    """Start the hit's main container as the kubelet would: its image, securityContext and emptyDir mounts (host
    directories writable by all, as an emptyDir is), the process emissary execs after `--`."""
    main = next(c for c in hit["spec"]["containers"] if c["name"] == "main")
    assert main["image"] == images.replay
    empty_dirs = {v["name"] for v in hit["spec"].get("volumes") or [] if "emptyDir" in v}
    mounts: dict[str, Path] = {}
    flags = security_flags(hit["spec"], main)
    for mount in main.get("volumeMounts") or []:
        if mount["name"] in empty_dirs and mount["mountPath"] not in mounts:
            host = volume_dir(tmp_path / "volumes" / mount["name"])
            mounts[mount["mountPath"]] = host
            flags += ["-v", f"{host}:{mount['mountPath']}"]
    argv, env = container_process(main)
    user = argv[argv.index("--") + 1:]
    for name, value in env.items():
        flags += ["-e", f"{name}={value}"]
    stdout = podman("run", "--rm", "--network", "none", *images.run_flags, *flags, "--entrypoint", user[0],
                    images.replay, *user[1:])
    return mounts, stdout


def test_the_webhook_in_its_image_memoizes_and_the_replay_image_replays(
    webhook_in_image: ApiServer, images: Images, valkey: RedisProcess, tmp_path: Path
) -> None:
    first = step_pod("uid-first")
    missed = webhook_in_image.admit("pods", first).object
    assert missed["metadata"]["annotations"]["wfboost.io/cache-outcome"].startswith("miss"), missed["metadata"]
    record(valkey, first)

    hit = webhook_in_image.admit("pods", step_pod("uid-again")).object
    assert hit["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit", hit["metadata"]["annotations"]
    mounts, _ = run_in_replay_image(hit, images, tmp_path)
    written = {"rows": mounts["/tmp"] / "rows", "schema": mounts["/data/out"] / "schema.json"}
    assert {name: wait_reads(path.read_bytes()) for name, path in written.items()} == {
        name: wait_reads(value.encode()) for name, value in CACHED.items()}


def test_every_command_the_manifests_run_is_in_the_image(images: Images) -> None:
    """Each container of the base that runs the service image (webhook, recorder, side store, the certificate Job
    and CronJob) starts its command, with its arguments and securityContext: `--help` after them parses the rest."""
    ran = []
    for label, pod in pod_specs(render_base(ROOT / "deploy" / "base")):
        for container in containers(pod):
            if not container["image"].startswith("ghcr.io/wfboost/wfboost:"):
                continue
            printed = podman("run", "--rm", "--network", "none", *images.run_flags, *security_flags(pod, container),
                             images.service, *container["args"], "--help")
            assert printed.startswith("usage: wfboost"), (label, container["name"], printed[:200])
            ran.append(f"{label}/{container['name']}")
    assert len(ran) >= 6, ran


def test_the_side_store_in_its_image_keeps_and_serves_a_blob(
    images: Images, valkey: RedisProcess, tmp_path: Path
) -> None:
    pod, container = manifest_container("wfboost-sidestore")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    tls = make_tls(tmp_path / "tls-source")
    (tmp_path / "clients-source").mkdir()
    write_clients_file(tmp_path / "clients-source" / "clients.yaml")
    (tmp_path / "policy-source").mkdir()
    (tmp_path / "policy-source" / "policy.yaml").write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\n")
    data = volume_dir(tmp_path / "data")
    port, metrics, kube = free_ports(3)
    name = f"wfboost-check-sidestore-{port}"
    podman("run", "--detach", "--name", name, "--network", "host", *images.run_flags,
           *security_flags(pod, container), "-v", f"{data}:{mounts['data']}",
           "-v", f"{readable_copy(tls.cert_dir, tmp_path / 'tls')}:{mounts['tls']}:ro",
           "-v", f"{readable_copy(tmp_path / 'clients-source', tmp_path / 'clients')}:{mounts['clients']}:ro",
           "-v", f"{readable_copy(tmp_path / 'policy-source', tmp_path / 'policy')}:{mounts['policy']}:ro",
           images.service, *container["args"], f"--port={port}", f"--metrics-port={metrics}",
           f"--redis-url={sidestore_redis_url(valkey)}", f"--kube-url=http://127.0.0.1:{kube}", "--gc-interval=0")
    try:
        wait_ready(metrics, name, what="the side store")
        content = b"a bulky workflow argument " * 4096

        async def round_trip() -> tuple[str, bytes]:
            async with SideStoreClient(f"https://127.0.0.1:{port}", token=TOKENS["team-a"],
                                       ca_file=str(tls.ca_file)) as client:
                digest = (await client.put("team-a", content))["digest"]
                return digest, await client.get("team-a", digest)

        digest, served = asyncio.run(round_trip())
    finally:
        podman("rm", "--force", name, check=False)
    assert served == content
    kept = [path for path in data.rglob("*") if path.is_file()]  # on the mounted volume, not in the image
    assert kept and digest.startswith("sha256:"), sorted(data.rglob("*"))[:20]


def test_the_replay_prepull_pod_idles_in_the_replay_image_and_stops_on_term(images: Images) -> None:
    """The DaemonSet that keeps the replay image on every node runs its own command in that image, stays up, and
    exits 0 at once on the kubelet's SIGTERM (busybox's `trap`, `sleep` and `wait`)."""
    pod, container = manifest_container("wfboost-replay-prepull", kind="DaemonSet")
    name = "wfboost-check-prepull"
    podman("rm", "--force", name, check=False)
    command = container.get("command") or []
    podman("run", "--detach", "--name", name, "--network", "none", *images.run_flags,
           *security_flags(pod, container), *(["--entrypoint", command[0]] if command else []), images.replay,
           *command[1:], *container["args"])
    try:
        time.sleep(2)
        assert podman("inspect", "--format", "{{.State.Status}}", name).strip() == "running"
        podman("stop", "--time", "20", name)
        state = podman("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).split()
        assert state == ["0", "false"], (state, podman("logs", name, check=False))
    finally:
        podman("rm", "--force", name, check=False)


def test_a_cache_import_runs_in_the_recorders_container(images: Images, valkey: RedisProcess, tmp_path: Path) -> None:
    """docs/operations.md restores the cache with `kubectl exec -i deploy/wfboost-recorder -- wfboost cache import
    ... -`: with the recorder's read-only root and its mounts, standard input is spooled to its /tmp emptyDir."""
    from wfboost.cli import main

    pod, container = manifest_container("wfboost-recorder")
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    exported = tmp_path / "cache.jsonl"
    assert main(["cache", "export", "--redis-url", valkey.url, "-o", str(exported)]) == 0
    flags = security_flags(pod, container)
    for mount in container["volumeMounts"]:
        if mount["name"] in empty_dirs:
            flags += ["-v", f"{volume_dir(tmp_path / mount['name'])}:{mount['mountPath']}"]
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"] if m["name"] in empty_dirs}
    printed = podman("run", "--rm", "-i", "--network", "host", *images.run_flags, *flags, images.service,
                     "cache", "import", "--redis-url", valkey.url, "-", stdin=exported.read_bytes())
    assert printed.startswith("imported "), printed
