"""Which steps are memoized: only those whose result is provably a function of their key, each other step skipped
with a reason. Pods are built from Argo's source (tests/argo_source), not from wfboost's own model of Argo.

Each case here was a wrong-hit path before: a step reading what its key names but cannot see (an image by tag, a
ConfigMap, a Secret, its own pod's fields, a persistent volume, a block device), or a step whose meaning is not its
outputs (exit handlers, lifecycle hooks, daemons, Argo's own memoize), or a pod the replay image cannot run on.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from tests.argo_source.pods import ControllerConfig, controller_pod
from wfboost.argo.pods import parse_pod
from wfboost.cache.eligibility import Candidate, Skip, assess
from wfboost.policy import Policy, load_policy

PINNED = "ghcr.io/example/tool:2.1@sha256:" + "a" * 64
POLICY = load_policy("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                     "memoize: {namespaces: [ml]}\n")
SETTINGS = POLICY.memoize_settings_for("ml")


def template(**container: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"image": PINNED, "command": ["tool"], "args": ["run"], **container}
    return {"name": "step", "container": body,
            "outputs": {"parameters": [{"name": "n", "valueFrom": {"path": "/tmp/n"}}]}}


def pod_for(tmpl: dict[str, Any], *, version: str = "v3.7.18", node: str = "wf[0].step", **options: Any) -> Any:
    return controller_pod(version, "wf", "uid-1", "ml", tmpl, node, config=ControllerConfig(), **options).pod


def verdict(pod: dict[str, Any], settings: Any = SETTINGS) -> Skip | Candidate:
    return assess(parse_pod(pod), settings)


def trusting(**fields: bool) -> Any:
    return dataclasses.replace(SETTINGS, **fields)


def test_a_pinned_step_reading_only_its_spec_is_memoized() -> None:
    assert isinstance(verdict(pod_for(template())), Candidate)


@pytest.mark.parametrize("version", ["v3.5.14", "v3.6.19", "v3.7.18", "v4.1.2"])
@pytest.mark.parametrize(
    ("image", "pull", "default", "trusted"),
    [
        (PINNED, None, None, None),
        ("ghcr.io/example/tool:2.1", None, "image_not_pinned", None),
        ("ghcr.io/example/tool", None, "image_not_pinned", "image_tag_latest"),
        ("ghcr.io/example/tool:latest", None, "image_not_pinned", "image_tag_latest"),
        ("ghcr.io/example/tool:2.1", "Always", "image_not_pinned", "image_pull_always"),
        ("registry:5000/tool:2.1", None, "image_not_pinned", None),  # a port is not a tag
        (PINNED, "Always", None, None),  # a digest is the same image wherever it is pulled from
    ],
)
def test_images_are_keyed_by_reference_so_only_immutable_references_are_memoized(
    version: str, image: str, pull: str | None, default: str | None, trusted: str | None
) -> None:
    body = {"image": image, **({"imagePullPolicy": pull} if pull else {})}
    pod = pod_for(template(**body), version=version)
    for settings, expected in ((SETTINGS, default), (trusting(trust_image_tags=True), trusted)):
        found = verdict(pod, settings)
        assert (found.reason if isinstance(found, Skip) else None) == expected


def test_the_templates_init_containers_and_sidecars_count_too() -> None:
    """They run beside the replay and may fetch what main reads: their images are inputs as well."""
    tmpl = template()
    tmpl["initContainers"] = [{"name": "fetch", "image": "curlimages/curl:8.5.0", "command": ["curl"]}]
    found = verdict(pod_for(tmpl))
    assert isinstance(found, Skip) and found.reason == "image_not_pinned" and found.detail.startswith("fetch:")
    tmpl = template()
    tmpl["sidecars"] = [{"name": "db", "image": "postgres:16", "command": ["postgres"]}]
    found = verdict(pod_for(tmpl))
    assert isinstance(found, Skip) and found.detail.startswith("db:")


@pytest.mark.parametrize(
    ("container", "volumes", "reason", "trust"),
    [
        ({"env": [{"name": "CFG", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}]}, [],
         "reads_configmap", "trust_config_maps_and_secrets"),
        ({"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}}]}, [],
         "reads_secret", "trust_config_maps_and_secrets"),
        ({"envFrom": [{"configMapRef": {"name": "cfg"}}]}, [], "reads_configmap", "trust_config_maps_and_secrets"),
        ({"envFrom": [{"secretRef": {"name": "api"}}]}, [], "reads_secret", "trust_config_maps_and_secrets"),
        ({"volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]}, [{"name": "cfg", "configMap": {"name": "c"}}],
         "reads_configmap", "trust_config_maps_and_secrets"),
        ({"volumeMounts": [{"name": "s", "mountPath": "/etc/s"}]}, [{"name": "s", "secret": {"secretName": "s"}}],
         "reads_secret", "trust_config_maps_and_secrets"),
        ({"volumeMounts": [{"name": "p", "mountPath": "/etc/p"}]},
         [{"name": "p", "projected": {"sources": [{"configMap": {"name": "c"}}]}}],
         "reads_configmap", "trust_config_maps_and_secrets"),
        ({"volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}]},
         [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
         "reads_persistent_volume", "trust_read_only_volumes"),
        ({"volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}]},
         [{"name": "data", "hostPath": {"path": "/mnt/data"}}], "reads_persistent_volume", "trust_read_only_volumes"),
        ({"volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}]},
         [{"name": "data", "csi": {"driver": "s3.csi.aws.com"}}], "reads_persistent_volume", "trust_read_only_volumes"),
        ({"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
         [{"name": "data", "nfs": {"server": "nfs", "path": "/x"}}], "writable_volume", "allow_writable_volumes"),
        ({"env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}, [],
         "reads_pod_field", None),
        ({"env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}, [],
         "reads_pod_field", None),
        ({"env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}, [],
         "reads_pod_field", None),
        ({"volumeMounts": [{"name": "info", "mountPath": "/etc/podinfo"}]},
         [{"name": "info", "downwardAPI": {"items": [
             {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
         "reads_pod_field", None),
        ({"volumeDevices": [{"name": "disk", "devicePath": "/dev/xvda"}]},
         [{"name": "disk", "persistentVolumeClaim": {"claimName": "raw"}}], "block_device", None),
    ],
)
def test_inputs_the_key_cannot_see_are_not_memoized_unless_trusted(
    container: dict[str, Any], volumes: list[dict[str, Any]], reason: str, trust: str | None
) -> None:
    tmpl = template(**container)
    if volumes:
        tmpl["volumes"] = volumes
    pod = pod_for(tmpl)
    found = verdict(pod)
    assert isinstance(found, Skip) and found.reason == reason, found
    assert found.detail.startswith("main: ")
    if trust is not None:
        assert isinstance(verdict(pod, trusting(**{trust: True})), Candidate)


def test_the_namespace_and_the_service_account_token_are_not_unseen_inputs() -> None:
    tmpl = template(env=[{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}])
    pod = copy.deepcopy(pod_for(tmpl))
    # What the ServiceAccount admission plugin adds before any webhook sees the pod.
    pod["spec"]["volumes"].append({"name": "kube-api-access-x7k2p", "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
    ]}})
    for container in pod["spec"]["containers"]:
        container.setdefault("volumeMounts", []).append(
            {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
             "readOnly": True})
    assert isinstance(verdict(pod), Candidate)
    # Shared across namespaces, the namespace is no longer in the key: reading it in env is an unseen input, but
    # the token projection's copy is how a client finds the API server, not data.
    shared = trusting(share_across_namespaces=True)
    found = verdict(pod, shared)
    assert isinstance(found, Skip) and found.reason == "reads_pod_field" and "env NS" in found.detail
    for container in pod["spec"]["containers"]:
        container["env"] = [e for e in container.get("env") or [] if e["name"] != "NS"]
    assert isinstance(verdict(pod, shared), Candidate)
    # A projection that carries more than the token's own shape is checked source by source.
    sources = pod["spec"]["volumes"][-1]["projected"]["sources"]
    sources.append({"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}})
    found = verdict(pod, shared)
    assert isinstance(found, Skip) and found.reason == "reads_pod_field"


def test_steps_whose_meaning_is_not_their_outputs_are_never_memoized() -> None:
    exit_handler = pod_for(template(), node="wf.onExit", on_exit=True)
    assert verdict(exit_handler).reason == "exit_handler"  # type: ignore[union-attr]
    hook = pod_for(template(), node="wf[0].step.hooks.running")
    assert verdict(hook).reason == "lifecycle_hook"  # type: ignore[union-attr]
    daemon = pod_for({**template(), "daemon": True})
    assert verdict(daemon).reason == "daemon"  # type: ignore[union-attr]
    memoized = pod_for({**template(), "memoize": {"key": "k", "cache": {"configMap": {"name": "c"}}}})
    assert verdict(memoized).reason == "argo_memoize"  # type: ignore[union-attr]


def test_windows_pods_are_not_memoized() -> None:
    windows = pod_for({**template(), "nodeSelector": {"kubernetes.io/os": "windows"}})
    assert verdict(windows).reason == "windows_node"  # type: ignore[union-attr]
    by_affinity = copy.deepcopy(pod_for(template()))
    by_affinity["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]}]}}}
    assert verdict(by_affinity).reason == "windows_node"  # type: ignore[union-attr]


def test_opt_in_memoizes_only_steps_that_ask() -> None:
    opt_in = Policy.default()
    settings = dataclasses.replace(opt_in.memoize_settings_for("ml"), enabled=True, opt_in=True)
    plain = pod_for(template())
    assert verdict(plain, settings).reason == "not_opted_in"  # type: ignore[union-attr]
    asked = pod_for({**template(), "metadata": {"annotations": {"wfboost.io/cache": "true"}}})
    assert isinstance(verdict(asked, settings), Candidate)
    off = pod_for({**template(), "metadata": {"labels": {"wfboost.io/cache": "false"}}})
    assert verdict(off).reason == "cache_off"  # type: ignore[union-attr]


def test_opt_in_is_a_namespace_override_too() -> None:
    policy = load_policy(
        "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\nmemoize: {namespaces: ['*']}\n"
        "overrides: [{namespaces: [careful-*], memoize: {optIn: true}}]\n"
    )
    assert policy.memoize_settings_for("careful-team").opt_in
    assert not policy.memoize_settings_for("ml").opt_in
