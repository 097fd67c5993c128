"""The manifests in deploy/ are valid Kubernetes objects and agree with the code they run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.validate import validate_object
from wfboost.cli import build_parser
from wfboost.policy import load_policy
from wfboost.webhook.routes import ROUTES

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "base").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[name for name, _ in documents()])
def test_every_manifest_validates(name: str, doc: dict[str, Any]) -> None:
    validate_object(doc)


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in (DEPLOY / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


def test_webhook_paths_are_served_and_fail_open() -> None:
    config = next(doc for _, doc in documents() if doc["kind"] == "MutatingWebhookConfiguration")
    assert config["webhooks"][0]["name"] == "restore.wfboost.io"  # first: memoization keys the restored pod
    for webhook in config["webhooks"]:
        # the one exception: a pod must never start with a reference in place of its value
        assert webhook["failurePolicy"] == ("Fail" if webhook["name"] == "restore.wfboost.io" else "Ignore")
        assert webhook["sideEffects"] in ("None", "NoneOnDryRun")  # never a write on a dry run
        assert 1 <= webhook["timeoutSeconds"] <= 30
        path = webhook["clientConfig"]["service"]["path"]
        assert path.removeprefix("/mutate/") in ROUTES
        excluded = webhook["namespaceSelector"]["matchExpressions"][0]["values"]
        assert {"kube-system", "wfboost"} <= set(excluded)
    pods = next(w for w in config["webhooks"] if w["name"].startswith("pods."))
    assert pods["rules"][0]["operations"] == ["CREATE"]  # pod specs are immutable after creation
    assert pods["objectSelector"]["matchExpressions"][0]["key"] == "workflows.argoproj.io/workflow"
    workflows = next(w for w in config["webhooks"] if w["name"].startswith("workflows."))
    # no status subresource (status comes in UPDATEs); the kinds whose templates shrinking moves literals out of
    assert workflows["rules"][0]["resources"] == ["workflows", "workflowtemplates", "cronworkflows"]
    assert set(workflows["rules"][0]["operations"]) == {"CREATE", "UPDATE"}
    assert workflows["timeoutSeconds"] <= 5  # on the controller's hot path
    assert workflows["sideEffects"] == "NoneOnDryRun"  # the side store is written at CREATE, never on a dry run
    restore = config["webhooks"][0]
    assert restore["objectSelector"]["matchExpressions"] == [
        {"key": "wfboost.io/restore", "operator": "In", "values": ["true"]}
    ]
    assert restore["rules"][0]["operations"] == ["CREATE"] and restore["sideEffects"] == "NoneOnDryRun"
    assert {"key": "wfboost.io/shrink", "operator": "In", "values": ["true"]} in (
        workflows["namespaceSelector"]["matchExpressions"]
    )


def test_container_args_parse_with_the_cli() -> None:
    parser = build_parser()
    for _, doc in documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if "wfboost" in container["image"] and "args" in container:
                parser.parse_args(container["args"])  # exits (fails the test) on an unknown option


def test_shipped_policies_load() -> None:
    config = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and "policy.yaml" in doc["data"])
    load_policy(config["data"]["policy.yaml"])
    load_policy((DEPLOY / "policy.example.yaml").read_text())


def test_only_wfboosts_components_reach_redis() -> None:
    """Whoever can write to Redis can file forged outputs under any key: only the webhook, the recorder and the side
    store may connect, and the policy selects the Redis pods the Deployment runs."""
    policies = {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == "NetworkPolicy"}
    redis = next(doc for _, doc in documents() if doc["kind"] == "Deployment" and "redis" in doc["metadata"]["name"])
    selected = policies["wfboost-redis"]["spec"]["podSelector"]["matchLabels"]
    assert selected.items() <= redis["spec"]["template"]["metadata"]["labels"].items()
    sources = policies["wfboost-redis"]["spec"]["ingress"]
    assert len(sources) == 1 and len(sources[0]["from"]) == 1
    components = next(e for e in sources[0]["from"][0]["podSelector"]["matchExpressions"]
                      if e["key"] == "app.kubernetes.io/component")
    assert set(components["values"]) == {"webhook", "recorder", "sidestore"}
    assert "namespaceSelector" not in sources[0]["from"][0]  # this namespace only
