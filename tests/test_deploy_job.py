"""The certificate manager's pod, as the base renders it into another namespace, run container by container with
its own arguments against the API server's part (kmock) holding the install's empty Secrets: it fills in every key
a pod of the install reads, with no request its RBAC does not allow, and a second run writes nothing."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from wfboost.cli import build_parser
from wfboost_dev.deploy import checks
from wfboost_dev.deploy.kustomize import render_base
from wfboost_dev.deploy.objects import Obj, containers

BASE = Path(__file__).resolve().parents[1] / "deploy" / "base"
NS = "team-x"
SA = f"{NS}/wfboost-certs"
VERBS = {"GET": "get", "PATCH": "patch", "PUT": "update", "POST": "create", "DELETE": "delete"}


@pytest.fixture
def objects() -> list[Obj]:
    return render_base(BASE, NS)


@pytest.fixture
def kubeconfig(kmock: Any, tmp_path: Path, objects: list[Obj]) -> Path:
    kmock.resources["v1/secrets"] = {}
    mwc = "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    kmock.resources[mwc] = {}
    for obj in objects:
        if obj["kind"] == "Secret":
            kmock.objects["v1/secrets", NS, obj["metadata"]["name"]] = obj
        elif obj["kind"] == "MutatingWebhookConfiguration":
            kmock.objects[mwc, None, obj["metadata"]["name"]] = obj
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
        "clusters": [{"name": "kmock", "cluster": {"server": str(kmock.url).rstrip("/")}}],
        "users": [{"name": "certs", "user": {"token": "t"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "certs"}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


async def run_job(objects: list[Obj], kubeconfig: Path) -> None:
    """Each container in order, with the kubelet's $(POD_NAMESPACE) expansion, as the Job's pod runs them."""
    job = next(o for o in objects if o["kind"] == "Job")
    parser = build_parser()
    for container in containers(job["spec"]["template"]["spec"]):
        assert [e["name"] for e in container["env"]] == ["POD_NAMESPACE"]
        argv = [a.replace("$(POD_NAMESPACE)", NS) for a in container["args"]] + ["--kubeconfig", str(kubeconfig)]
        args = parser.parse_args(argv)
        assert await asyncio.to_thread(args.handler, args) == 0, container["name"]


def request_target(path: str) -> tuple[str, str, str | None, str | None]:
    """(group, resource, namespace, name) of an API path."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespace = None
    if rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    return group, rest[0], namespace, rest[1] if len(rest) > 1 else None


async def test_the_job_fills_in_every_key_within_its_rbac(kmock: Any, kubeconfig: Path, objects: list[Obj]) -> None:
    await run_job(objects, kubeconfig)
    requests = [(r.method.value, r.url.path) for r in kmock]
    assert requests
    for method, path in requests:
        assert checks.allowed(objects, SA, VERBS[method], *request_target(path)), (method, path)
    assert "POST" not in {method for method, _ in requests}  # no Secret is created: RBAC has no create

    for use in checks.secret_uses(objects):
        if use.key is not None:
            data = dict(kmock.objects["v1/secrets", NS, use.name].get("data") or {})
            assert base64.b64decode(data.get(use.key, "")), f"{use.where}: {use.name}/{use.key} is still empty"
    mwc = kmock.objects["admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", None, "wfboost"]
    assert all(w["clientConfig"].get("caBundle") for w in mwc["webhooks"])

    done = len(list(kmock))
    await run_job(objects, kubeconfig)  # the weekly CronJob's run: nothing is due
    assert {r.method.value for r in list(kmock)[done:]} == {"GET"}


async def test_the_rbac_evaluation_refuses_what_is_not_granted(objects: list[Obj]) -> None:
    assert checks.allowed(objects, SA, "patch", "", "secrets", NS, "wfboost-tls")
    assert not checks.allowed(objects, SA, "patch", "", "secrets", NS, "some-other-secret")
    assert not checks.allowed(objects, SA, "create", "", "secrets", NS, None)
    assert not checks.allowed(objects, SA, "patch", "", "secrets", "kube-system", "wfboost-tls")
    assert checks.allowed(objects, SA, "patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations",
                          None, "wfboost")
    assert not checks.allowed(objects, f"{NS}/wfboost-webhook", "patch", "admissionregistration.k8s.io",
                              "mutatingwebhookconfigurations", None, "wfboost")
