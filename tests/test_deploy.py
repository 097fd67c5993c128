"""The manifests in deploy/ are valid Kubernetes objects and agree with the code they run."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kustomize import kustomize, needs_kubectl, overlay
from tests.harness.validate import ARGO_KINDS, validate_object
from wfboost.cli import build_parser
from wfboost.policy import load_policy
from wfboost.policy.schema import policy_schema
from wfboost.webhook.routes import ROUTES
from wfboost_dev.deploy.kustomize import render_base
from wfboost_dev.deploy.objects import label, pod_specs

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EXCLUDED = {"key": "wfboost.io/exclude", "operator": "NotIn", "values": ["true"]}


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
        assert "kube-system" in excluded
        # wfboost's own namespace by label, so that a renamed namespace stays excluded
        assert EXCLUDED in webhook["namespaceSelector"]["matchExpressions"]
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
    pods = list(pod_specs(doc for _, doc in documents()))
    assert {where.split("/")[0] for where, _ in pods} == {"Deployment", "Job", "CronJob", "DaemonSet"}
    for _, pod in pods:
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if "wfboost/wfboost:" in container["image"] and "args" in container:  # not the replay image
                parser.parse_args(container["args"])  # exits (fails the test) on an unknown option


def test_shipped_policies_load() -> None:
    config = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and "policy.yaml" in doc["data"])
    load_policy(config["data"]["policy.yaml"])
    load_policy((DEPLOY / "policy.example.yaml").read_text())


def schema_options(node: Mapping[str, Any], definitions: Mapping[str, Any], path: tuple[str, ...] = ()
                   ) -> Iterator[tuple[str, ...]]:
    """Every leaf option of the policy schema, as its path of field names; `[]` stands for the entries of a list of
    objects (overrides, matchExpressions), whose fields are options too."""
    if "$ref" in node:
        node = definitions[node["$ref"].rsplit("/", 1)[1]]
    for alternative in node.get("anyOf") or []:
        if "$ref" in alternative or "properties" in alternative:
            yield from schema_options(alternative, definitions, path)
            return
    items = node.get("items")
    if isinstance(items, dict):
        entry = definitions[items["$ref"].rsplit("/", 1)[1]] if "$ref" in items else items
        if "properties" in entry:
            yield from schema_options(entry, definitions, (*path, "[]"))
            return
    if "properties" in node:
        for name, sub in node["properties"].items():
            yield from schema_options(sub, definitions, (*path, name))
    else:
        yield path


def shows(node: Any, path: tuple[str, ...]) -> bool:
    """Whether `path` leads somewhere in the shown policy; `[]`: in at least one of a list's entries."""
    if not path:
        return True
    if path[0] == "[]":
        return isinstance(node, list) and any(shows(entry, path[1:]) for entry in node)
    return isinstance(node, dict) and path[0] in node and shows(node[path[0]], path[1:])


def uncommented(text: str) -> str:
    """The policy with its commented-out options turned on: `# key:` and `# - ` lines lose their `# `."""
    return re.sub(r"^(\s*)# (\s*)(?=[A-Za-z]+:|- )", r"\1\2", text, flags=re.MULTILINE)


def test_the_installed_policy_shows_every_option_and_they_load_as_shown() -> None:
    """The ConfigMap is where users turn things on: each option of the schema is there (commented out where it is
    not set), nested where it belongs, and the whole example, uncommented, is a policy that loads."""
    config = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and "policy.yaml" in doc["data"])
    text = config["data"]["policy.yaml"]
    schema = policy_schema()
    shown = yaml.safe_load(uncommented(text))
    options = list(schema_options(schema, schema.get("$defs") or {}))
    assert len(options) > 60 and ("overrides", "[]", "latch", "followerWait") in options  # the walk reached them
    missing = [".".join(option) for option in options if not shows(shown, option)]
    assert not missing, f"policy options not shown in the installed ConfigMap: {missing}"
    load_policy(uncommented(text))
    assert yaml.safe_load(text)["features"] == dict.fromkeys(
        ["memoize", "latch", "compressStatus", "shrinkWorkflows", "shrinkTaskResults"], False)  # as installed: off


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


def test_the_install_namespace_is_excluded_by_its_label() -> None:
    (namespace,) = [doc for _, doc in documents() if doc["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"][EXCLUDED["key"]] == "true"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [found for key, value in node.items() for found in _strings(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [found for i, value in enumerate(node) for found in _strings(value, f"{path}[{i}]")]
    return [(path, node)] if isinstance(node, str) else []


def test_another_namespace_leaves_no_wfboost_namespace_behind() -> None:
    """An overlay with `namespace: team-x` (rendered as kustomize does): no URL, argument, subject, selector or
    webhook Service still names the namespace wfboost."""
    objects = render_base(DEPLOY / "base", "team-x")
    left = []
    for obj in objects:
        for path, value in _strings(obj):
            if path.endswith((".namespace", "matchExpressions[0].values[1]")) and value == "wfboost":
                left.append((label(obj), path))
            if re.search(r"\.wfboost(\.svc|:|/|$)|namespace=wfboost\b", value):
                left.append((label(obj), f"{path}: {value[:60]}"))
    assert left == []
    config = next(o for o in objects if o["kind"] == "MutatingWebhookConfiguration")
    assert {w["clientConfig"]["service"]["namespace"] for w in config["webhooks"]} == {"team-x"}
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "team-x"
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} == {"team-x"}


def test_shipped_policies_point_the_side_store_at_its_https_port() -> None:
    """`sideStore.url` is not read today (the webhook takes --sidestore-url), but a shipped example naming the
    plain-HTTP metrics port would teach users to send bearer tokens in the clear."""
    sidestore = next(doc for _, doc in documents() if doc["kind"] == "Service" and doc["metadata"]["name"]
                     == "wfboost-sidestore")
    https = {p["port"] for p in sidestore["spec"]["ports"] if p["name"] == "https"}
    config = next(doc for _, doc in documents() if doc["kind"] == "ConfigMap" and "policy.yaml" in doc["data"])
    for text in (config["data"]["policy.yaml"], (DEPLOY / "policy.example.yaml").read_text()):
        url = (yaml.safe_load(text).get("sideStore") or {}).get("url")
        if url is not None:
            assert url.startswith("https://") and (int(url.rsplit(":", 1)[1].split("/")[0]) in https)
    webhook = next(doc for _, doc in documents() if doc["kind"] == "Deployment" and doc["metadata"]["name"]
                   == "wfboost")
    env = {e["name"]: e.get("value") for e in webhook["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WFBOOST_SIDESTORE_URL"] == f"https://wfboost-sidestore:{min(https)}"


def test_the_renewal_cronjob_runs_what_the_install_job_runs() -> None:
    """Renewal is the install's run again (each step changes only what is due), weekly: far inside the 30 days
    before expiry when `wfboost certs` renews."""
    job = next(doc for _, doc in documents() if doc["kind"] == "Job")
    cron = next(doc for _, doc in documents() if doc["kind"] == "CronJob")
    assert cron["spec"]["jobTemplate"]["spec"]["template"] == job["spec"]["template"]
    assert cron["spec"]["schedule"].split()[2:] == ["*", "*", "1"] and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["spec"]["ttlSecondsAfterFinished"] <= 3600  # gone before the next upgrade, which creates it again


def test_argo_resources_named_are_argos() -> None:
    """Every argoproj.io resource the webhook entries and the RBAC rules name is one of Argo's kinds (tests/harness's
    Argo schemas; Argo's CRD plurals are the kind in lower case plus s): a misspelt one would silently match nothing."""
    plurals = {kind.lower() + "s" for kind in ARGO_KINDS}
    named: set[str] = set()
    for _, doc in documents():
        rules = [*doc.get("rules", []), *(r for w in doc.get("webhooks", []) for r in w["rules"])]
        for rule in rules:
            if "argoproj.io" in rule.get("apiGroups", []):
                named.update(rule["resources"])
    assert named
    assert {name.split("/")[0] for name in named} <= plurals
    assert {name.split("/")[1] for name in named if "/" in name} <= {"finalizers"}


@needs_kubectl
@pytest.mark.parametrize("namespace", [None, "team-x"])
def test_real_kustomize_renders_what_the_checks_check(namespace: str | None, tmp_path: Path) -> None:
    """The checks run on wfboost_dev's rendering of the base; `kubectl kustomize` (the real kustomize) renders the
    same objects, for the base and for an overlay that moves it to another namespace."""

    def identity(obj: dict[str, Any]) -> tuple[str, str, str]:
        return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]

    real = {identity(o): o for o in kustomize(overlay(DEPLOY, tmp_path, namespace))}
    ours = {identity(o): o for o in render_base(DEPLOY / "base", namespace=namespace)}
    assert sorted(real) == sorted(ours)
    assert [k for k in real if real[k] != ours[k]] == []
