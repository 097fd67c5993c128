"""The Helm chart (deploy/chart/wfboost, rendered and linted by real Helm code) renders what deploy/base renders for
its default values, follows its values everywhere (namespace, images, Redis, features), passes every check of
`make deploy-check` for each of them, and documents the policy's features as the policy schema defines them."""

from __future__ import annotations

import asyncio
import copy
import re
import urllib.request
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.harness.validate import validate_object
from wfboost.cache.redis_client import SentinelUrl
from wfboost.cli import build_parser
from wfboost.policy import load_policy, policy_schema
from wfboost.policy.model import Features
from wfboost_dev.deploy import checks
from wfboost_dev.deploy.chart import lint_chart, render_chart, user_provided_values, values_at, values_file
from wfboost_dev.deploy.kustomize import render_base
from wfboost_dev.deploy.objects import Obj, by_identity, label, pod_specs

BASE = Path(__file__).resolve().parents[1] / "deploy" / "base"
EXTERNAL = {"redis": {"external": {"url": "rediss://redis.example:6380", "existingSecret": "team-redis"}}}

ALL_ENTRIES = {"webhook": {"entries": "all"}}
# Value sets that change what is rendered, each checked like the defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespace": {"namespace": {"name": "team-x"}},
    "registry": {"images": {"registry": "registry.example.com/mirror", "pullSecrets": ["mirror-pull"]}},
    "external-redis": EXTERNAL,
    "no-sidestore": {"sidestore": {"enabled": False}},
    "external-redis-cluster": {"redis": {"external": {**EXTERNAL["redis"]["external"], "cluster": True}}},
    "external-redis-sentinel": {"redis": {"external": {
        "url": "redis+sentinel://sentinel-0.example:26379,sentinel-1.example:26379", "existingSecret": "team-redis",
        "sentinel": {"masterName": "cache", "authenticated": True}}}},
    "client-ca": {"webhook": {"clientCA": {"configMap": "apiserver-client-ca", "key": "bundle.pem"}}},
    "one-replica": {"webhook": {"replicas": 1, "priorityClass": {"create": False, "name": ""}}},
    "features": {"features": {"memoize": True, "latch": True, "compressStatus": True, "shrinkWorkflows": True,
                              "shrinkTaskResults": True},
                 "policy": {"memoize": {"namespaces": ["team-*"]}}},
    "cert-manager": {"certificates": {"certManager": {"enabled": True}}},
    "sidestore-s3": {"sidestore": {
        "s3": {"bucket": "blobs", "region": "eu-west-1", "existingSecret": "s3-creds"},
        "serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/w"}}},
    "cert-manager-issuer": {
        "certificates": {"certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}},
        "namespace": {"name": "team-x"},
    },
}
# Kinds of CRDs the schemas of tests/harness/validate.py do not cover; tests below check their shape instead.
CRD_GROUPS = ("cert-manager.io", "monitoring.coreos.com")


def user_provided(values: dict[str, Any]) -> set[str]:
    """The Secrets `values` names through the values that values.yaml documents as user-provided."""
    return {name for path in user_provided_values() for name in values_at(values, path)}


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def policy_text(objects: list[Obj]) -> str:
    text: str = find(objects, "ConfigMap", "wfboost-policy")["data"]["policy.yaml"]
    return text


def env_of(objects: list[Obj], deployment: str) -> dict[str, Any]:
    container = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_webhook_can_require_the_api_servers_client_certificate() -> None:
    objects = render_chart(VARIANTS["client-ca"])
    pod = find(objects, "Deployment", "wfboost")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert str(args.client_ca) == "/etc/wfboost/client-ca/bundle.pem"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "client-ca")
    volume = next(v for v in pod["volumes"] if v["name"] == "client-ca")
    assert mount == {"name": "client-ca", "mountPath": "/etc/wfboost/client-ca", "readOnly": True}
    assert volume["configMap"] == {"name": "apiserver-client-ca",
                                   "items": [{"key": "bundle.pem", "path": "bundle.pem"}]}
    # The probes do not go through the admission port, so they pass without a client certificate.
    assert {p["httpGet"]["port"] for p in (container["readinessProbe"], container["livenessProbe"])} == {"metrics"}
    default = find(render_chart(), "Deployment", "wfboost")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in default["args"] if a.startswith("--client-ca")]


def entry_names(objects: list[Obj]) -> list[str]:
    return [w["name"] for w in find(objects, "MutatingWebhookConfiguration", "wfboost")["webhooks"]]


def test_the_chart_with_every_entry_renders_the_kustomize_base() -> None:
    """The base keeps every entry: its users switch features on in the ConfigMap, where an entry left out would
    make the feature do nothing."""
    chart, base = by_identity(render_chart(ALL_ENTRIES)), by_identity(render_base(BASE))
    assert sorted(chart) == sorted(base)
    different = [label(obj) for key, obj in chart.items() if obj != base[key]]
    assert different == []


def test_default_values_render_the_kustomize_base_less_the_entries_of_features_that_are_off() -> None:
    chart, base = by_identity(render_chart()), by_identity(render_base(BASE))
    assert sorted(chart) == sorted(base)
    assert [label(obj) for key, obj in chart.items() if obj != base[key]] == [
        "MutatingWebhookConfiguration/wfboost"]
    key = next(k for k in chart if chart[k]["kind"] == "MutatingWebhookConfiguration")
    kept = {w["name"]: w for w in chart[key]["webhooks"]}
    assert [w for w in base[key]["webhooks"] if w["name"] in kept] == list(kept.values())  # same entries, same order
    assert list(kept) == ["restore.wfboost.io", "workflows.wfboost.io"]


def test_another_namespace_renders_what_a_kustomize_overlay_would() -> None:
    chart = by_identity(render_chart({**VARIANTS["namespace"], **ALL_ENTRIES}))
    assert chart == by_identity(render_base(BASE, "team-x"))


SWITCHES = ("memoize", "compressStatus", "shrinkWorkflows", "shrinkTaskResults")


@pytest.mark.parametrize("on", [(), *((s,) for s in SWITCHES), SWITCHES])
@pytest.mark.parametrize(("split_dags", "argo_crds"), [(None, None), (None, "full"), (None, "minimal"),
                                                        (True, None), (False, "full")])
def test_each_entry_is_installed_where_a_feature_of_the_rendered_policy_uses_it(
        on: tuple[str, ...], split_dags: bool | None, argo_crds: str | None) -> None:
    """The entries follow the policy the same values write, as the webhook reads it (wfboost.policy)."""
    values: dict[str, Any] = {"features": {**{s: s in on for s in SWITCHES}, "latch": "memoize" in on,
                                           "splitDags": split_dags}}
    if argo_crds:
        values["policy"] = {"split": {"argoCRDs": argo_crds}}
    objects = render_chart(values)
    policy = load_policy(policy_text(objects))
    features = policy.features
    expected = ["restore.wfboost.io"]
    expected += ["pods.wfboost.io"] if features.memoize else []
    expected += ["workflowtaskresults.wfboost.io"] if features.memoize or features.shrink_task_results else []
    expected += ["split.wfboost.io"] if policy.splits_dags else []
    expected += ["workflows.wfboost.io"]
    assert entry_names(objects) == expected


def test_every_entry_can_be_kept_and_nothing_else_is_taken() -> None:
    assert entry_names(render_chart(ALL_ENTRIES)) == entry_names(render_base(BASE))
    with pytest.raises(helm_python.HelmError, match=re.escape("webhook.entries is features or all, not some")):
        render_chart({"webhook": {"entries": "some"}})


def test_the_chart_lints_clean() -> None:
    for name, values in VARIANTS.items():
        assert lint_chart(values) == [], name


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendering_passes_the_checks(variant: str) -> None:
    objects = render_chart(VARIANTS[variant])
    for obj in objects:
        if not obj["apiVersion"].startswith(CRD_GROUPS):
            validate_object(obj)  # Kubernetes 1.36 schemas, strict (Argo's for Argo kinds)
    assert checks.pod_security(objects) == []
    assert checks.unknown_secrets(objects, user_provided(VARIANTS[variant])) == []
    assert checks.redis_without_credentials(objects, user_provided(VARIANTS[variant])) == []
    powers = checks.rbac_writers(objects)
    namespace = VARIANTS[variant].get("namespace", {}).get("name", "wfboost")
    # the certificate manager, or, with cert-manager (whose CA injector keeps the caBundle), no one of the install
    manager = set() if variant.startswith("cert-manager") else {f"{namespace}/wfboost-certs"}
    assert {who for who, what in powers.items() if "webhook-configs" in what} == manager
    assert not any({"secrets", "escalate", "pods"} & what for what in powers.values())
    load_policy(policy_text(objects))


def test_images_follow_the_registry_and_pull_secrets() -> None:
    objects = render_chart(VARIANTS["registry"])
    images = {c["image"] for _, pod in pod_specs(objects) for c in [*pod.get("initContainers", []), *pod["containers"]]}
    mirror = "registry.example.com/mirror"
    # the replay image too: the pre-pull DaemonSet puts it on every node
    assert images == {f"{mirror}/wfboost/wfboost:0.1.0", f"{mirror}/valkey/valkey:9.1.2",
                      f"{mirror}/wfboost/replay:0.1.0"}
    assert all(pod["imagePullSecrets"] == [{"name": "mirror-pull"}] for _, pod in pod_specs(objects))
    # hit pods run in Argo's namespaces: the replay image follows through the policy
    policy = load_policy(policy_text(objects))
    assert policy.memoize.replay.image == "registry.example.com/mirror/wfboost/replay:0.1.0"


def test_an_external_redis_replaces_the_bundled_one() -> None:
    objects = render_chart(EXTERNAL)
    assert not [o for o in objects if "redis" in o["metadata"]["name"] and o["kind"] != "Secret"]
    assert "wfboost-redis-credentials" not in {o["metadata"]["name"] for o in objects}
    env = env_of(objects, "wfboost-sidestore")
    assert env["WFBOOST_REDIS_URL"] == (
        "rediss://$(WFBOOST_REDIS_USERNAME):$(WFBOOST_REDIS_PASSWORD)@redis.example:6380/1")
    assert env["WFBOOST_REDIS_PASSWORD"] == {"secretKeyRef": {"name": "team-redis", "key": "password"}}
    job = find(objects, "Job", "wfboost-certs")["spec"]["template"]["spec"]
    credentials = next(c for c in job["initContainers"] if c["name"] == "credentials")
    assert not any(a.startswith("--redis-secret") for a in credentials["args"])
    cluster = render_chart(VARIANTS["external-redis-cluster"])
    for component in ("wfboost", "wfboost-recorder", "wfboost-sidestore"):  # a Cluster has database 0 only
        assert env_of(cluster, component)["WFBOOST_REDIS_URL"].endswith("@redis.example:6380/0?cluster=true")


def test_an_external_sentinel_deployment_is_reached_through_its_sentinels() -> None:
    objects = render_chart(VARIANTS["external-redis-sentinel"])
    assert not [o for o in objects if o["metadata"]["name"] == "wfboost-redis"]
    credentials = "sentinel_username=$(WFBOOST_REDIS_USERNAME)&sentinel_password=$(WFBOOST_REDIS_PASSWORD)"
    for component, db in (("wfboost", 0), ("wfboost-recorder", 0), ("wfboost-sidestore", 1)):
        url = env_of(objects, component)["WFBOOST_REDIS_URL"]
        assert url == ("redis+sentinel://$(WFBOOST_REDIS_USERNAME):$(WFBOOST_REDIS_PASSWORD)"
                       f"@sentinel-0.example:26379,sentinel-1.example:26379/cache/{db}?{credentials}")
        # What the kubelet will make of it is a URL every component takes.
        filled = url.replace("$(WFBOOST_REDIS_USERNAME)", "team").replace("$(WFBOOST_REDIS_PASSWORD)", "pw")
        parsed = SentinelUrl.parse(filled)
        assert (parsed.master, parsed.db, parsed.username, parsed.password) == ("cache", db, "team", "pw")
        assert parsed.options == {"sentinel_username": "team", "sentinel_password": "pw"}
    unauthenticated = render_chart({"redis": {"external": {
        **VARIANTS["external-redis-sentinel"]["redis"]["external"], "sentinel": {"masterName": "cache"}}}})
    assert env_of(unauthenticated, "wfboost")["WFBOOST_REDIS_URL"].endswith("/cache/0")


@pytest.mark.parametrize(("values", "message"), [
    ({"redis": {"external": {"url": "redis://r:6379"}}}, "redis.external.existingSecret is required"),
    ({"redis": {"external": {"url": "redis+sentinel://s:26379", "existingSecret": "r"}}},
     "redis.external.sentinel.masterName is required"),
    ({"redis": {"external": {"url": "redis://r:6379", "existingSecret": "r", "sentinel": {"masterName": "m"}}}},
     "masterName needs a redis+sentinel://"),
    ({"redis": {"external": {"url": "redis+sentinel://s", "existingSecret": "r", "cluster": True,
                             "sentinel": {"masterName": "m"}}}}, "exclude each other"),
    ({"features": {"shrinkWorkflows": True}, "sidestore": {"enabled": False}}, "needs the side store"),
    ({"policy": {"features": {"memoize": True}}}, "feature switches go in the value `features`"),
    ({"sidestore": {"s3": {"endpoint": "http://minio:9000"}}}, "sidestore.s3 needs a bucket"),
    ({"sidestore": {"s3": {"bucket": "b", "prefix": "team#1"}}}, "may not hold ?, #, %, & or spaces"),
    ({"sidestore": {"s3": {"bucket": "b", "endpoint": "http://minio:9000"}}}, "set sidestore.s3.allowHttp"),
])
def test_values_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=re.escape(message)):
        render_chart(values)


def test_without_the_side_store_nothing_of_it_is_left() -> None:
    objects = render_chart(VARIANTS["no-sidestore"])
    assert not [label(o) for o in objects if "sidestore" in o["metadata"]["name"]]
    assert not [k for k in env_of(objects, "wfboost") if k.startswith("WFBOOST_SIDESTORE")]
    role = find(objects, "Role", "wfboost-certs")
    assert role["rules"][0]["resourceNames"] == ["wfboost-tls", "wfboost-redis-credentials"]


def test_one_replica_has_no_disruption_budget_that_would_block_drains() -> None:
    objects = render_chart(VARIANTS["one-replica"])
    assert not [o for o in objects if o["kind"] in ("PodDisruptionBudget", "PriorityClass")]
    assert "priorityClassName" not in find(objects, "Deployment", "wfboost")["spec"]["template"]["spec"]


# --- the documented values against the policy schema -----------------------------------------------------------


def _schema_features() -> dict[str, str]:
    features = policy_schema()["properties"]["features"]["properties"]
    return {name: spec.get("description", "") for name, spec in features.items()}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def test_the_feature_values_are_the_policys_features() -> None:
    """Every feature the policy builds is a value with the policy's default; one it does not build is said to be
    not built, and is no value (the policy would refuse it)."""
    values = yaml.safe_load(values_file().read_text())
    text = values_file().read_text()
    built = {n for n, d in _schema_features().items() if "not built" not in d}
    assert set(values["features"]) == built
    defaults = Features()
    for name, value in values["features"].items():
        assert value == getattr(defaults, _snake(name)), name
    for name in set(_schema_features()) - built:
        assert re.search(rf"#\s*{name}: not built yet", text), name


def test_the_policy_sections_are_documented() -> None:
    text = values_file().read_text()
    block = text[text.index("# The rest of the policy"):]
    documented = set(re.findall(r"^#\s+(\w+):", block, re.MULTILINE))
    sections = set(policy_schema()["properties"]) - {"apiVersion", "kind", "features"}
    assert documented == sections


@pytest.mark.parametrize("camel", sorted(yaml.safe_load(values_file().read_text())["features"]))
def test_each_feature_value_turns_its_feature_on(camel: str) -> None:
    feature = _snake(camel)
    values: dict[str, Any] = {"features": {camel: True}}
    if camel == "latch":
        values["features"]["memoize"] = True
    policy = load_policy(policy_text(render_chart(values)))
    assert getattr(policy.features, feature) is True
    default = load_policy(policy_text(render_chart()))
    assert getattr(default.features, feature) is (None if camel == "splitDags" else False)  # null: decided by
    assert not default.splits_dags  # split.argoCRDs, not declared by default


def test_policy_values_reach_the_configmap() -> None:
    values = copy.deepcopy(VARIANTS["features"])
    values["policy"]["sideStore"] = {"namespaceQuotaBytes": 1024}
    policy = load_policy(policy_text(render_chart(values)))
    assert list(policy.memoize.namespaces) == ["team-*"]
    assert policy.side_store.namespace_quota_bytes == 1024


@pytest.mark.parametrize("variant", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_makes_the_serving_certificates(variant: str) -> None:
    """The Certificates name every host the Services are reached by, write the Secrets the pods mount, come from
    the issuer asked for (or the chart's own CA), and the CA injector is pointed at the webhook's."""
    values = VARIANTS[variant]
    namespace = values.get("namespace", {}).get("name", "wfboost")
    objects = render_chart(values)
    certificates = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Certificate"}
    issuers = {o["metadata"]["name"] for o in objects if o["kind"] == "Issuer"}
    for service in ("wfboost", "wfboost-sidestore"):
        spec = certificates[f"{service}-tls"]
        assert spec["secretName"] == f"{service}-tls"
        assert {service, f"{service}.{namespace}.svc"} <= set(spec["dnsNames"])
        wanted = values["certificates"]["certManager"].get("issuerRef") or {"name": "wfboost-ca", "kind": "Issuer"}
        assert spec["issuerRef"] == wanted
        assert spec["issuerRef"]["kind"] == "ClusterIssuer" or spec["issuerRef"]["name"] in issuers
    config = find(objects, "MutatingWebhookConfiguration", "wfboost")
    assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{namespace}/wfboost-tls"}
    # nothing else writes the serving certificates or the caBundle: only credentials are left to the Job
    job = find(objects, "Job", "wfboost-certs")["spec"]["template"]["spec"]
    assert [c["args"][0] for c in [*job.get("initContainers", []), *job["containers"]]] == ["credentials"]
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-tls")]
    assert not [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "wfboost-certs"]
    mounted = {v["secret"]["secretName"] for _, pod in pod_specs(objects) for v in pod.get("volumes", [])
               if "secret" in v}
    assert {"wfboost-tls", "wfboost-sidestore-tls"} <= mounted <= set(certificates) | {
        o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}


def test_a_secret_no_certificate_writes_is_found() -> None:
    objects = render_chart(VARIANTS["cert-manager"])
    without = [o for o in objects if not (o["kind"] == "Certificate" and o["metadata"]["name"] == "wfboost-tls")]
    problems = checks.unknown_secrets(without)
    assert problems and all("Secret wfboost-tls is neither created" in p for p in problems)


def test_the_user_provided_secrets_are_the_documented_ones() -> None:
    """What values.yaml calls user-provided is exactly what the checks let through: documenting another value so
    would widen them, and a Secret the chart needs but does not document fails the checks of every rendering."""
    assert user_provided_values() == [("images", "pullSecrets"), ("sidestore", "s3", "existingSecret"),
                                      ("redis", "external", "existingSecret")]
    assert user_provided(VARIANTS["registry"]) == {"mirror-pull"}
    assert user_provided(VARIANTS["external-redis"]) == {"team-redis"}
    assert user_provided(VARIANTS["defaults"]) == set()


def test_the_admission_port_can_be_narrowed_to_the_control_plane() -> None:
    default = find(render_chart(), "NetworkPolicy", "wfboost-webhook")["spec"]["ingress"]
    assert [rule.get("from") for rule in default] == [None, None]  # any source, as the base
    peers = [{"ipBlock": {"cidr": "10.0.0.0/28"}}]
    narrowed = find(render_chart({"webhook": {"admissionFrom": peers}}), "NetworkPolicy", "wfboost-webhook")
    admission, status = narrowed["spec"]["ingress"]
    assert admission == {"ports": [{"protocol": "TCP", "port": 8443}], "from": peers}
    assert "from" not in status


def test_the_replay_image_is_pulled_onto_every_node_unless_turned_off() -> None:
    (daemonset,) = [o for o in render_chart() if o["kind"] == "DaemonSet"]
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]  # tainted nodes run steps too
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert pod["automountServiceAccountToken"] is False
    assert not [o for o in render_chart({"replayPrePull": {"enabled": False}}) if "prepull" in o["metadata"]["name"]]


def sidestore_of(values: dict[str, Any]) -> tuple[dict[str, Any], list[Obj]]:
    objects = render_chart(values)
    deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "wfboost-sidestore")
    return deployment["spec"]["template"]["spec"], objects


async def test_the_side_store_on_s3_keeps_blobs_in_the_bucket_the_values_name(tmp_path: Path) -> None:
    """sidestore.s3: the rendered --backend, given to the side store's own backend code, writes to and reads from a
    real S3-compatible server (moto) in the bucket and under the prefix the values name; no PVC, no data volume;
    the credentials Secret becomes the environment obstore reads."""
    from tests.sidestore_fixtures import s3_server_process
    from wfboost.sidestore.config import make_backend

    with s3_server_process() as s3:
        s3.create_bucket("blobs")
        pod, objects = sidestore_of({"sidestore": {"s3": {
            "bucket": "blobs", "prefix": "/wfboost/", "endpoint": s3.url, "region": "us-east-1", "allowHttp": True,
            "existingSecret": "s3-creds"}}})
        container = pod["containers"][0]
        (backend_arg,) = [a for a in container["args"] if a.startswith("--backend=")]
        assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
        assert "data" not in {v["name"] for v in pod["volumes"]}
        claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
        assert "wfboost-sidestore" not in claims
        backend = make_backend(backend_arg.removeprefix("--backend="), None)

        async def chunks() -> Any:
            yield b"moved out of etcd"

        assert await backend.write("team-a/object", chunks()) == len(b"moved out of etcd")
        assert b"".join([c async for c in backend.read("team-a/object", 0, 17)]) == b"moved out of etcd"
        listing = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"{s3.url}/blobs?list-type=2", timeout=10).read().decode())
        assert "<Key>wfboost/team-a/object</Key>" in listing


def test_each_components_resources_are_values() -> None:
    wanted = {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    for component, deployment in (("webhook", "wfboost"), ("recorder", "wfboost-recorder"),
                                  ("sidestore", "wfboost-sidestore"), ("redis", "wfboost-redis")):
        objects = render_chart({component: {"resources": wanted}})
        found = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment)
        assert found["spec"]["template"]["spec"]["containers"][0]["resources"] == wanted, component
