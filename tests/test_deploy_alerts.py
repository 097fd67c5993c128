"""The chart's alerts evaluated by Prometheus's own rule engine (`promtool test rules`, Debian's prometheus package,
installed by `make deploy-check`): each fires on the series an outage produces, after its `for`, with its labels
and annotations, and stays silent on a healthy install's series. The series are written here from what the product
exports (metric names checked in tests/test_deploy_monitoring.py), not from the rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from wfboost_dev.deploy.chart import render_chart

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make deploy-check installs it)")
NANS = " ".join(["NaN"] * 41)  # promtool's `NaNxN` shorthand is not parsed


def series(name: str, values: str, namespace: str = "wfboost", **labels: str) -> dict[str, str]:
    rendered = ", ".join([f'namespace="{namespace}"', *(f'{k}="{v}"' for k, v in labels.items())])
    return {"series": f"{name}{{{rendered}}}", "values": values}


# (alert, what happens, input series, evaluated at, fires)
CASES: list[tuple[str, str, list[dict[str, str]], str, bool]] = [
    ("WfboostRedisUnavailable", "Redis stops answering PINGs, no traffic at all",
     [series("wfboost_redis_up", "1 1 0x40", pod="webhook-a"), series("wfboost_redis_up", "1 1 0x40", pod="webhook-b")],
     "15m", True),
    ("WfboostRedisUnavailable", "one webhook pod's PING fails, the other answers", [
        series("wfboost_redis_up", "1x40", pod="webhook-a"), series("wfboost_redis_up", "1 0x40", pod="webhook-b")],
     "30m", True),
    ("WfboostRedisUnavailable", "webhooks without Redis configured (the gauge is NaN)",
     [series("wfboost_redis_up", NANS, pod="webhook-a"), series("wfboost_redis_up", NANS, pod="webhook-b")],
     "30m", False),
    ("WfboostRedisUnavailable", "lookups fail open with store_unavailable (the PINGs pass)",
     [series("wfboost_redis_up", "1x40", pod="webhook-a"),
      series("wfboost_fail_open_total", "0+2x40", reason="store_unavailable")], "30m", True),
    ("WfboostRedisUnavailable", "two installs, only team-b's Redis is down: the alert names team-b",
     [series("wfboost_redis_up", "1x40", namespace="team-a", pod="webhook-a"),
      series("wfboost_redis_up", "1 0x40", namespace="team-b", pod="webhook-a")], "30m", True),
    ("WfboostRedisUnavailable", "Redis answers, admissions succeed",
     [series("wfboost_redis_up", "1x40", pod="webhook-a"),
      series("wfboost_fail_open_total", "0x40", reason="store_unavailable")], "30m", False),
    ("WfboostRedisUnavailable", "the recorder cannot write (the webhook's PINGs pass)",
     [series("wfboost_redis_up", "1x40", pod="webhook-a"),
      series("wfboost_recorder_errors_total", "0+3x40", kind="store")], "30m", True),
    ("WfboostFailingOpen", "10% of admissions fail open",
     [series("wfboost_admission_requests_total", "0+100x60", route="pods", outcome="patched"),
      series("wfboost_fail_open_total", "0+10x60", reason="store_unavailable")], "40m", True),
    ("WfboostFailingOpen", "1% of admissions fail open",
     [series("wfboost_admission_requests_total", "0+100x60", route="pods", outcome="patched"),
      series("wfboost_fail_open_total", "0+1x60", reason="store_unavailable")], "40m", False),
    ("WfboostNoHits", "pods are seen and none was ever a hit (no hit series exists at all)",
     [series("wfboost_memo_decisions_total", "0+5x480", decision="miss", reason="no_entry")], "7h30m", True),
    ("WfboostNoHits", "hits stopped eight hours ago",
     [series("wfboost_memo_decisions_total", "0+5x480", decision="miss", reason="no_entry"),
      series("wfboost_memo_decisions_total", "0+1x20 20x460", decision="hit", reason="")], "7h30m", True),
    ("WfboostNoHits", "pods are seen and some are hits",
     [series("wfboost_memo_decisions_total", "0+5x480", decision="miss", reason="no_entry"),
      series("wfboost_memo_decisions_total", "0+1x480", decision="hit", reason="")], "7h30m", False),
    ("WfboostNoHits", "no pods at all (a quiet cluster is not a broken cache)",
     [series("wfboost_memo_decisions_total", "0x480", decision="miss", reason="no_entry")], "7h30m", False),
    ("WfboostNoHits", "memoization sees nothing: no decision series at all", [], "7h30m", False),
    ("WfboostCertificateExpiresSoon", "the side store's certificate expires in 3 days",
     [series("wfboost_tls_certificate_not_after_seconds", f"{3 * 86400}x120", service="wfboost-sidestore"),
      series("wfboost_tls_certificate_not_after_seconds", f"{300 * 86400}x120", service="wfboost")], "90m", True),
    ("WfboostCertificateExpiresSoon", "both certificates have months left",
     [series("wfboost_tls_certificate_not_after_seconds", f"{90 * 86400}x120", service="wfboost-sidestore"),
      series("wfboost_tls_certificate_not_after_seconds", f"{300 * 86400}x120", service="wfboost")], "90m", False),
    ("WfboostWebhookDown", "both webhook targets are down",
     [series("up", "0x20", service="wfboost", pod="webhook-a"),
      series("up", "0x20", service="wfboost", pod="webhook-b")], "10m", True),
    ("WfboostWebhookDown", "no webhook target is scraped at all",
     [series("up", "1x20", service="wfboost-recorder", pod="recorder")], "10m", True),
    ("WfboostWebhookDown", "one of the two webhook targets is down",
     [series("up", "0x20", service="wfboost", pod="webhook-a"),
      series("up", "1x20", service="wfboost", pod="webhook-b")], "10m", False),
]


def firing_labels(what: str, inputs: list[dict[str, str]]) -> dict[str, str]:
    """Each alert is per namespace: it carries the namespace of the install that is broken (the last series'), but
    for "no webhook scraped at all", which knows of no namespace."""
    if what == "no webhook target is scraped at all":
        return {}
    return {"namespace": inputs[-1]["series"].split('namespace="', 1)[1].split('"', 1)[0]}


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    on = {"monitoring": {"prometheusRule": {"enabled": True}}}
    rule = next(o for o in render_chart(on) if o["kind"] == "PrometheusRule")
    return dict(rule["spec"])


def test_every_alert_has_a_firing_and_a_silent_case(rules: dict[str, Any]) -> None:
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    assert alerts == {case[0] for case in CASES if case[4]} == {case[0] for case in CASES if not case[4]}


@pytest.mark.parametrize(("alert", "what", "inputs", "at", "fires"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_the_alert_as_prometheus_evaluates_it(rules: dict[str, Any], tmp_path: Path, alert: str, what: str,
                                              inputs: list[dict[str, str]], at: str, fires: bool) -> None:
    rule = next(r for group in rules["groups"] for r in group["rules"] if r["alert"] == alert)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    expected = [{"exp_labels": {**rule["labels"], **firing_labels(what, inputs)},
                 "exp_annotations": rule["annotations"]}] if fires else []
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": inputs,
                       "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, f"{what}:\n{done.stdout}\n{done.stderr}"
