"""The install's security checks (wfboost_dev/deploy/checks.py) pass on deploy/base, and each one fails on the
mistake it exists for: a check that cannot fail proves nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wfboost_dev.deploy import checks
from wfboost_dev.deploy.kustomize import render_base
from wfboost_dev.deploy.objects import Obj

BASE = Path(__file__).resolve().parents[1] / "deploy" / "base"
CERTS_SA = "wfboost/wfboost-certs"


@pytest.fixture
def objects() -> list[Obj]:
    return render_base(BASE)


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def pod(objects: list[Obj], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(objects, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def test_the_base_passes_every_check(objects: list[Obj]) -> None:
    assert checks.pod_security(objects) == []
    assert checks.unknown_secrets(objects) == []
    assert checks.redis_without_credentials(objects) == []


def test_only_the_certificate_manager_may_change_webhook_configurations(objects: list[Obj]) -> None:
    powers = checks.rbac_writers(objects)
    assert {who for who, what in powers.items() if "webhook-configs" in what} == {CERTS_SA}
    assert not any({"secrets", "escalate", "pods"} & what for what in powers.values())
    subjects = {g.subject for g in checks.grants(objects)}
    # each component its own ServiceAccount; Redis has none bound (and no token mounted)
    assert subjects == {CERTS_SA, "wfboost/wfboost-webhook", "wfboost/wfboost-recorder", "wfboost/wfboost-sidestore"}
    assert pod(objects, "wfboost-redis")["automountServiceAccountToken"] is False
    accounts = {pod(objects, name)["serviceAccountName"] for name in
                ("wfboost", "wfboost-recorder", "wfboost-sidestore", "wfboost-redis")}
    assert len(accounts) == 4


Mutation = Callable[[list[Obj]], None]


def _root(objects: list[Obj]) -> None:
    pod(objects, "wfboost")["securityContext"]["runAsUser"] = 0


def _escalation(objects: list[Obj]) -> None:
    pod(objects, "wfboost-recorder")["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _capability(objects: list[Obj]) -> None:
    pod(objects, "wfboost-sidestore")["containers"][0]["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"]}


def _host_path(objects: list[Obj]) -> None:
    pod(objects, "wfboost-redis")["volumes"][0] = {"name": "data", "hostPath": {"path": "/var/lib/valkey"}}


def _host_network(objects: list[Obj]) -> None:
    find(objects, "Job", "wfboost-certs")["spec"]["template"]["spec"]["hostNetwork"] = True


def _no_seccomp(objects: list[Obj]) -> None:
    del pod(objects, "wfboost")["securityContext"]["seccompProfile"]


def _init_as_root(objects: list[Obj]) -> None:
    init = find(objects, "Job", "wfboost-certs")["spec"]["template"]["spec"]["initContainers"][0]
    init["securityContext"]["runAsNonRoot"] = False


@pytest.mark.parametrize("mutate", [_root, _escalation, _capability, _host_path, _host_network, _no_seccomp,
                                    _init_as_root])
def test_pod_security_refuses(objects: list[Obj], mutate: Mutation) -> None:
    broken = copy.deepcopy(objects)
    mutate(broken)
    assert checks.pod_security(broken)


def test_a_secret_nothing_creates_is_found(objects: list[Obj]) -> None:
    """The mistake of issue 14: the side store mounted Secrets that nothing created."""
    broken = [o for o in objects if not (o["kind"] == "Secret" and o["metadata"]["name"] == "wfboost-sidestore-tls")]
    problems = checks.unknown_secrets(broken)
    assert problems and all("wfboost-sidestore-tls" in p for p in problems)
    assert checks.unknown_secrets(broken, user_provided={"wfboost-sidestore-tls"}) == []
    typo = copy.deepcopy(objects)
    env = pod(typo, "wfboost")["containers"][0]["env"]
    next(e for e in env if e["name"] == "WFBOOST_REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]["key"] = "webhok"
    assert checks.unknown_secrets(typo) == [
        "Deployment/wfboost/wfboost container webhook env WFBOOST_REDIS_PASSWORD: key webhok of Secret "
        "wfboost-redis-credentials is written by nothing"
    ]


def test_redis_without_credentials_is_found(objects: list[Obj]) -> None:
    open_server = copy.deepcopy(objects)
    args = pod(open_server, "wfboost-redis")["containers"][0]["args"]
    del args[:2]  # --aclfile /etc/valkey/users.acl
    assert any("without --aclfile" in p for p in checks.redis_without_credentials(open_server))

    anonymous = copy.deepcopy(objects)
    env = pod(anonymous, "wfboost-recorder")["containers"][0]["env"]
    next(e for e in env if e["name"] == "WFBOOST_REDIS_URL")["value"] = "redis://wfboost-redis:6379/0"
    assert any("without user:$(PASSWORD)@" in p for p in checks.redis_without_credentials(anonymous))

    wide = copy.deepcopy(objects)
    find(wide, "NetworkPolicy", "wfboost-redis")["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}]})
    assert any("beyond this namespace" in p for p in checks.redis_without_credentials(wide))

    unguarded = [o for o in objects if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "wfboost-redis")]
    assert any("no NetworkPolicy selects" in p for p in checks.redis_without_credentials(unguarded))


def test_a_second_webhook_config_writer_is_found(objects: list[Obj]) -> None:
    """The mistake of issue 14: the webhook server shared the certificate Job's ServiceAccount."""
    shared = copy.deepcopy(objects)
    binding = find(shared, "ClusterRoleBinding", "wfboost-certs")
    binding["subjects"].append({"kind": "ServiceAccount", "name": "wfboost-webhook", "namespace": "wfboost"})
    writers = {who for who, what in checks.rbac_writers(shared).items() if "webhook-configs" in what}
    assert writers == {CERTS_SA, "wfboost/wfboost-webhook"}

    wildcard = copy.deepcopy(objects)
    find(wildcard, "ClusterRole", "wfboost-recorder")["rules"].append(
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["patch"]})
    assert "webhook-configs" in checks.rbac_writers(wildcard)["wfboost/wfboost-recorder"]

    minting = copy.deepcopy(objects)
    find(minting, "Role", "wfboost-certs")["rules"].append({"apiGroups": [""], "resources": ["secrets"],
                                                            "verbs": ["create"]})
    assert "secrets" in checks.rbac_writers(minting)[CERTS_SA]

    # patch on pods lets an account change any pod's image (the recorder once had it for Argo 3.5's annotation)
    patching = copy.deepcopy(objects)
    find(patching, "ClusterRole", "wfboost-recorder")["rules"][0]["verbs"].append("patch")
    assert "pods" in checks.rbac_writers(patching)["wfboost/wfboost-recorder"]
