"""The memoization forecast for Workflows, WorkflowTemplates and CronWorkflows (cache/forecast.py, `wfboost review`).

The forecast must say of each step what the webhook will decide on its pod. Checked on every corpus Workflow the
simulator expands: each pod it builds is assessed by the webhook's own `assess`, and wherever the forecast did not
say "decided when the pod is created", the verdict and its reason must be the forecast's.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import corpus_dir
from wfboost.argo import names
from wfboost.argo.pods import NotAnArgoStep, parse_pod
from wfboost.cache.eligibility import Candidate, assess
from wfboost.cache.forecast import StepForecast, forecast_workflow
from wfboost.cli.forecast import memoize_forecast
from wfboost.policy import load_policy

DIGEST = "python@sha256:" + "a" * 64
POLICY = load_policy("""
apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true, latch: true}
memoize: {namespaces: [ml]}
""")
TRUSTING = load_policy("""
apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true}
memoize:
  namespaces: [ml]
  trustImageTags: true
  trustConfigMapsAndSecrets: true
  trustReadOnlyVolumes: true
  trustArtifactLocations: true
""")


def forecast(spec: dict[str, Any], policy: Any = POLICY, whole_object: bool = True) -> dict[tuple[str, str],
                                                                                              StepForecast]:
    found = forecast_workflow(spec, policy.memoize_settings_for("ml"), policy.latch_settings_for("ml"),
                              whole_object=whole_object)
    return {(step.template, step.context): step for step in found.steps}


def test_each_step_gets_the_webhooks_verdict_and_its_reason() -> None:
    spec = {
        "entrypoint": "main", "onExit": "notify",
        "podMetadata": {"labels": {"wfboost.io/cache": "false"}},
        "templates": [
            {"name": "main", "dag": {"tasks": [
                {"name": "a", "template": "train"}, {"name": "b", "template": "train"},
                {"name": "c", "template": "fetch", "hooks": {"running": {"template": "ping"}}},
                {"name": "d", "template": "apply"},
                {"name": "e", "templateRef": {"name": "shared", "template": "x"}},
                {"name": "f", "template": "pick"},
                {"name": "g", "template": "mounts"},
            ]}},
            {"name": "train", "metadata": {"labels": {"wfboost.io/cache": "true"}},
             "container": {"image": DIGEST, "command": ["python", "train.py"]}},
            {"name": "fetch", "metadata": {"labels": {"wfboost.io/cache": "true"}},
             "container": {"image": "python:3.11"}},
            {"name": "ping", "container": {"image": DIGEST}, "metadata": {"labels": {"wfboost.io/cache": "true"}}},
            {"name": "notify", "container": {"image": DIGEST}},
            {"name": "apply", "resource": {"action": "create", "manifest": "{}"}},
            {"name": "pick", "inputs": {"parameters": [{"name": "image"}]},
             "metadata": {"labels": {"wfboost.io/cache": "true"}},
             "container": {"image": "{{inputs.parameters.image}}"}},
            {"name": "mounts", "metadata": {"labels": {"wfboost.io/cache": "true"}},
             "container": {"image": DIGEST, "volumeMounts": [{"name": "conf", "mountPath": "/c"}]}},
            {"name": "never", "container": {"image": DIGEST}},
        ],
        "volumes": [{"name": "conf", "configMap": {"name": "settings"}}],
    }
    steps = forecast(spec)
    train = steps[("train", "run")]
    assert train.memoized and train.latched and train.calls == ("main/a", "main/b") and not train.run_time
    assert steps[("fetch", "run")].reason == "image_not_pinned"
    assert steps[("ping", "hook")].reason == "lifecycle_hook"
    assert steps[("notify", "exit_handler")].reason == "cache_off"  # the workflow's podMetadata says so
    assert steps[("apply", "run")].reason == "template_resource"
    assert steps[("mounts", "run")].reason == "reads_configmap"  # the workflow's volume, the template's mount
    pick = steps[("pick", "run")]
    assert pick.reason == "image_not_pinned" and "main image is '{{inputs.parameters.image}}'" in pick.run_time[0]
    found = forecast_workflow(spec, POLICY.memoize_settings_for("ml"), POLICY.latch_settings_for("ml"))
    assert found.elsewhere == ("templateRef shared/x",) and found.unreached == ("never",)
    spec["podMetadata"] = {}
    assert forecast(spec)[("notify", "exit_handler")].reason == "exit_handler"


def test_placement_follows_the_controller() -> None:
    """Node selectors: the template's, else its steps/DAG template's, else the workflow's (addSchedulingConstraints);
    templateDefaults where the template sets nothing; volume claim templates as volumes; the workflow's
    hostNetwork."""
    windows = {"kubernetes.io/os": "windows"}
    spec: dict[str, Any] = {
        "entrypoint": "main",
        "templates": [
            {"name": "main", "nodeSelector": windows, "steps": [[{"name": "s", "template": "t"}]]},
            {"name": "t", "container": {"image": DIGEST}},
        ],
    }
    assert forecast(spec)[("t", "run")].reason == "windows_node"
    spec["templates"][1]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    assert forecast(spec)[("t", "run")].memoized
    spec["templateDefaults"] = {"daemon": True}
    assert forecast(spec)[("t", "run")].reason == "daemon"
    del spec["templateDefaults"]
    spec["volumeClaimTemplates"] = [{"metadata": {"name": "work"}}]
    spec["templates"][1]["container"]["volumeMounts"] = [{"name": "work", "mountPath": "/w"}]
    assert forecast(spec)[("t", "run")].reason == "writable_volume"
    spec["hostNetwork"] = True
    assert forecast(spec)[("t", "run")].reason == "host_namespace"


def test_each_placement_and_what_the_controller_merges_are_said() -> None:
    """One template called from a Linux and a Windows steps template: two forecasts. templateDefaults are merged
    by the controller field by field (strategic merge), which the forecast does not repeat: it says so; and a script
    template reads its own image, not a container default's."""
    spec: dict[str, Any] = {
        "entrypoint": "main",
        "templates": [
            {"name": "main", "steps": [[{"name": "l", "template": "linux"}, {"name": "w", "template": "win"}]]},
            {"name": "linux", "steps": [[{"name": "x", "template": "t"}]]},
            {"name": "win", "nodeSelector": {"kubernetes.io/os": "windows"},
             "steps": [[{"name": "y", "template": "t"}]]},
            {"name": "t", "container": {"image": DIGEST}},
        ],
    }
    found = forecast_workflow(spec, POLICY.memoize_settings_for("ml"), POLICY.latch_settings_for("ml")).steps
    assert sorted((f.calls, f.reason or "memoized") for f in found) == [
        (("linux/x",), "memoized"), (("win/y",), "windows_node")]
    spec["templates"][3] = {"name": "t", "script": {"image": "python:3.11", "source": "print(1)"}}
    spec["templateDefaults"] = {"container": {"image": DIGEST}}
    for step_forecast in forecast_workflow(spec, POLICY.memoize_settings_for("ml"),
                                           POLICY.latch_settings_for("ml")).steps:
        if step_forecast.calls == ("linux/x",):
            assert step_forecast.reason == "image_not_pinned"
            assert any("templateDefaults" in why for why in step_forecast.run_time)


def test_a_workflow_template_forecasts_every_template_it_offers() -> None:
    spec = {"templates": [{"name": "a", "container": {"image": DIGEST}}, {"name": "b", "script": {
        "image": DIGEST, "source": "print(1)", "command": ["python"]}}]}
    steps = forecast(spec, whole_object=False)
    assert steps[("a", "run")].memoized and steps[("b", "run")].memoized
    assert steps[("a", "run")].calls == ("called by name from other objects",)
    assert any("calling Workflow's podMetadata" in why for why in steps[("a", "run")].run_time)


def _context(pod: dict[str, Any], node_name: str) -> str:
    if (pod["metadata"].get("labels") or {}).get(names.LABEL_ON_EXIT) == "true":
        return "exit_handler"
    return "hook" if ".hooks." in node_name else "run"


@pytest.mark.parametrize("folder", ["argo-examples", "kfp-v1-argo", "kfp-v2-argo-compiled-workflows"])
@pytest.mark.parametrize("policy", [POLICY, TRUSTING], ids=["default", "trusting"])
def test_the_forecast_agrees_with_the_webhook_on_every_pod_of_the_corpus(folder: str, policy: Any) -> None:
    """Pods built by the simulator (not by the forecast), assessed by the webhook's rules: same verdict, same reason,
    wherever the forecast did not leave the decision to the pod."""
    from wfboost_dev.argosim.expand import as_workflow, expand_workflow
    from wfboost_dev.argosim.layouts import V3_7
    from wfboost_dev.argosim.pods import QUICK_START_CONFIG

    settings = policy.memoize_settings_for("ml")
    agreed, left_to_pod, reasons = 0, 0, set()
    for path in sorted(corpus_dir(folder).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") != "Workflow":
                continue
            document = orjson.loads(orjson.dumps(document))
            document.setdefault("metadata", {}).update(namespace="ml", name="wf-x7k2p")
            workflow = as_workflow(copy.deepcopy(document))
            if isinstance(workflow, str) or workflow["spec"].get("workflowTemplateRef"):
                continue
            found = forecast_workflow(workflow["spec"], policy.memoize_settings_for("ml"),
                                      policy.latch_settings_for("ml")).steps
            placements: dict[tuple[str, str], list[StepForecast]] = {}
            for step_forecast in found:
                placements.setdefault((step_forecast.template, step_forecast.context), []).append(step_forecast)
            steps = {key: forecasts[0] for key, forecasts in placements.items() if len(forecasts) == 1}
            try:
                built, _ = expand_workflow(workflow).build_pods(layout=V3_7, config=QUICK_START_CONFIG)
            except Exception:  # the simulator cannot expand every example (loops over outputs, resources…)
                continue
            for pod in built:
                predicted = steps.get((str(pod.template.get("name")), _context(pod.pod, pod.node_name)))
                if predicted is None:
                    continue  # an inline template, or one from another object
                if predicted.run_time:
                    left_to_pod += 1
                    continue
                try:
                    step = parse_pod(pod.pod)
                except NotAnArgoStep:
                    assert predicted.reason.startswith("template_"), (path.name, pod.node_name)
                    agreed += 1
                    continue
                if step.offloads and pod.configmap is not None:
                    step = step.with_offloaded(pod.configmap["data"])
                verdict = assess(step, settings)
                reason = "" if isinstance(verdict, Candidate) else verdict.reason
                assert (predicted.reason, predicted.memoized) == (reason, not reason), (path.name, pod.node_name)
                agreed += 1
                reasons.add(reason or "memoized")
    print(f"{folder}: {agreed} pods agree with the forecast, {left_to_pod} left to the pod; {sorted(reasons)}")
    assert agreed > 20


def test_review_prints_the_forecast(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                      "memoize: {namespaceSelector: {matchLabels: {team: ml}}}\n")
    cron = {"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "n", "namespace": "x"},
            "spec": {"schedules": ["0 1 * * *"], "workflowSpec": {"entrypoint": "t", "templates": [
                {"name": "t", "container": {"image": DIGEST}}]}}}
    run = [sys.executable, "-m", "wfboost", "review", "-", "--policy", str(policy)]
    done = subprocess.run(run, input=json.dumps(cron), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "memoize: off in namespace x: not in memoize.namespaces, and namespace labels are unknown" in done.stderr
    done = subprocess.run([*run, "--namespace-label", "team=ml", "--explain"], input=json.dumps(cron),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "document 1 (CronWorkflow x/n), route workflows" in done.stdout
    assert "  memoize: t [entrypoint]: memoized, max staleness P7D" in done.stdout
    done = subprocess.run([*run, "--namespace-label", "team"], input="{}", capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "expected KEY=VALUE" in done.stderr


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="ab{}", max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["name", "template", "container", "image", "dag", "tasks", "steps", "labels", "metadata", "hooks", "inline",
         "volumeMounts", "env", "inputs", "artifacts", "onExit", "templateRef", "volumes", "nodeSelector"]), inner,
        max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(entrypoint=json_values | st.sampled_from(["t", "d"]), templates=json_values | st.lists(st.fixed_dictionaries(
    {"name": st.sampled_from(["t", "d", "x"])}, optional={
        "dag": st.fixed_dictionaries({"tasks": st.lists(st.dictionaries(st.sampled_from(
            ["name", "template", "hooks", "onExit", "inline", "templateRef"]), json_values | st.just("t")))}),
        "container": json_values, "script": json_values, "metadata": json_values, "inputs": json_values,
        "volumes": json_values, "nodeSelector": json_values, "steps": json_values, "sidecars": json_values,
        "initContainers": json_values, "resource": json_values, "daemon": json_values,
    }), max_size=4), extra=st.dictionaries(st.sampled_from(
    ["podMetadata", "templateDefaults", "volumes", "volumeClaimTemplates", "hooks", "onExit", "nodeSelector",
     "hostNetwork", "podSpecPatch"]), json_values, max_size=3))
def test_the_forecast_says_something_of_any_shape_and_never_fails(entrypoint: Any, templates: Any,
                                                                    extra: dict[str, Any]) -> None:
    """What the API server would refuse to store still gets lines, not an exception (review runs before any
    server has checked the object)."""
    spec = {"entrypoint": entrypoint, "templates": templates, **extra}
    if isinstance(templates, list):
        spec["templates"] = [*templates, {"name": "t", "container": {"image": DIGEST}}]
    for kind, body in (("Workflow", spec), ("CronWorkflow", {"workflowSpec": spec}), ("WorkflowTemplate", spec)):
        lines = memoize_forecast({"kind": kind, "metadata": {"namespace": "ml"}, "spec": body}, POLICY, None, None)
        assert lines and all(line.startswith("memoize: ") for line in lines)
