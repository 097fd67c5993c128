"""The chart's monitoring objects (off by default; for kustomize the component deploy/components/monitoring): the
ServiceMonitor scrapes every component that serves /metrics, every metric the alerts and the dashboard read is one
the product exports, and the component is what the chart renders."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.kustomize import kustomize, needs_kubectl, overlay
from tests.harness.validate import validate_object
from wfboost.recorder.metrics import RecorderMetrics
from wfboost.sidestore.metrics import SideStoreMetrics
from wfboost.webhook.failopen import FailOpen
from wfboost.webhook.metrics import Metrics
from wfboost_dev.deploy.chart import CHART, lint_chart, render_chart
from wfboost_dev.deploy.kustomize import render_base
from wfboost_dev.deploy.objects import Obj, selects

ON = {"monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                     "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}}
PROMETHEUS_FUNCTIONS = {"sum", "rate", "increase", "clamp_min", "min", "max", "vector", "time", "histogram_quantile",
                        "by", "and", "absent", "or", "le"}


def exported() -> set[str]:
    """Every sample name the webhook, the recorder and the side store expose on /metrics."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = set()
    for metrics in (Metrics(), RecorderMetrics(), SideStoreMetrics()):
        for family in metrics.registry.collect():
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return names | {"up"}  # Prometheus's own, one per scraped target


def metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}|\bby\s*\([^)]*\)", "", expr)
    without_ranges = re.sub(r"\[[^]]*\]", "", without_labels)
    return {n for n in re.findall(r"\b[a-z_][a-z0-9_]*\b", without_ranges)} - PROMETHEUS_FUNCTIONS


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    return render_chart(ON)


def find(objects: list[Obj], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(o for o in objects if o["kind"] == kind)
    return found


def test_off_by_default() -> None:
    assert not [o for o in render_chart() if o["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert lint_chart(ON) == []


def test_the_service_monitor_scrapes_each_metrics_port(objects: list[Obj]) -> None:
    monitor = find(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    scraped = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"
               and selects(monitor["spec"]["selector"], o["metadata"].get("labels") or {})}
    with_metrics = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"
                    and endpoint["port"] in {p["name"] for p in o["spec"]["ports"]}}
    assert scraped == with_metrics == {"wfboost", "wfboost-recorder", "wfboost-sidestore"}


def test_alerts_read_metrics_that_exist(objects: list[Obj]) -> None:
    rules = find(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"WfboostFailingOpen", "WfboostRedisUnavailable", "WfboostNoHits",
                                           "WfboostCertificateExpiresSoon", "WfboostWebhookDown"}
    names = exported()
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used and used <= names, (rule["alert"], used - names)
        assert rule["for"] and rule["labels"]["severity"] and rule["annotations"]["summary"]
    redis = next(r for r in rules if r["alert"] == "WfboostRedisUnavailable")
    assert "wfboost_redis_up" in metric_names(redis["expr"])  # fires without traffic too (tests/test_redis_probe.py)
    for reason in re.findall(r'reason="([a-z_]+)"', redis["expr"]):
        assert reason in {member.value for member in FailOpen}


def test_the_dashboard_reads_metrics_that_exist(objects: list[Obj]) -> None:
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "wfboost-dashboard")
    validate_object(config)
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config["data"]["wfboost.json"])
    names = exported()
    titles = set()
    for panel in dashboard["panels"]:
        titles.add(panel["title"])
        for target in panel["targets"]:
            used = metric_names(target["expr"].replace("$__rate_interval", "").replace("$__range", ""))
            assert used and used <= names, (panel["title"], used - names)
    assert {"Hit rate", "Admission latency", "Bytes saved by shrinking", "Latching: leases and waiting followers",
            "Failing open", "Compute time saved by hits", "Redis answers"} <= titles


COMPONENT = Path(__file__).resolve().parents[1] / "deploy" / "components" / "monitoring"
DEFAULTS_ON = {"monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True},
                              "dashboard": {"enabled": True}}}  # every other monitoring value at its default


def monitoring_of(objects: list[Obj]) -> dict[str, Obj]:
    return {o["kind"]: o for o in objects if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component")
            == "monitoring"}


def test_the_kustomize_component_is_the_charts_monitoring() -> None:
    """deploy/components/monitoring holds what the chart renders with monitoring on and its default values: the same
    ServiceMonitor and PrometheusRule, the same dashboard file under the same ConfigMap name, key and labels."""
    chart = monitoring_of(render_chart(DEFAULTS_ON))
    for kind, name in (("ServiceMonitor", "servicemonitor.yaml"), ("PrometheusRule", "prometheusrule.yaml")):
        assert yaml.safe_load((COMPONENT / name).read_text()) == chart[kind], kind
    assert (COMPONENT / "dashboard.json").read_bytes() == (CHART / "files" / "dashboard.json").read_bytes()
    (generator,) = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())["configMapGenerator"]
    dashboard = chart["ConfigMap"]
    assert generator["name"] == dashboard["metadata"]["name"]
    assert generator["options"]["labels"] == dashboard["metadata"]["labels"]
    assert generator["files"] == [f"{next(iter(dashboard['data']))}=dashboard.json"]


@needs_kubectl
def test_an_overlay_with_the_component_renders_the_charts_monitoring_in_its_namespace(tmp_path: Path) -> None:
    """The real kustomize: the base plus the component, moved to team-x, gives the base's objects and the chart's
    monitoring objects for namespace team-x; the alerts name no namespace, so nothing in them is left behind."""
    rendered = kustomize(overlay(COMPONENT.parents[1], tmp_path, "team-x", ["components/monitoring"]))
    chart = monitoring_of(render_chart({**DEFAULTS_ON, "namespace": {"name": "team-x"}}))
    assert monitoring_of(rendered) == chart
    base = render_base(COMPONENT.parents[1] / "base", namespace="team-x")
    assert [o for o in rendered if o not in base and o not in chart.values()] == []
    assert "namespace=" not in str(chart["PrometheusRule"]["spec"])  # no namespace written into the expressions

