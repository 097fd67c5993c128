"""The chart's monitoring objects (off by default, so deploy/base has none): the ServiceMonitor scrapes every
component that serves /metrics, and every metric the alerts and the dashboard read is one the product exports."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.harness.validate import validate_object
from wfboost.recorder.metrics import RecorderMetrics
from wfboost.sidestore.metrics import SideStoreMetrics
from wfboost.webhook.failopen import FailOpen
from wfboost.webhook.metrics import Metrics
from wfboost_dev.deploy.chart import lint_chart, render_chart
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
