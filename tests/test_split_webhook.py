"""The DAG split at admission (`/mutate/split`), with the API server's part played exactly: HTTPS with the CA bundle,
an AdmissionReview, the returned patch applied to the object sent and the result validated against Argo's schema
(tests/harness/apiserver.py) and against the CEL rules and list limits of Argo 4's full CRDs (tests/argo_crd).

What the split itself keeps is tested in tests/test_split.py against an executable model of Argo's DAG semantics;
here: that the webhook applies it where the policy says and only there, writes what `split_spec` computes, is
idempotent and deterministic, and says what it did or why not.
"""

from __future__ import annotations

import asyncio
import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.argo_crd.rules import crd_violations
from tests.conftest import StartWebhook, Webhook
from tests.sidestore_fixtures import TOKENS, SideStoreTls, make_tls, run_sidestore
from tests.test_server import metric
from tests.test_split import assert_same_run, echo, oracle_from, workflow
from wfboost.policy import policy_from_document, validate_document
from wfboost.split import split_spec
from wfboost.webhook.review import offline_admission
from wfboost.webhook.wire import decode_patch, review_for_object
from wfboost_dev.argosim.kubeflow import kubeflow_compiled

FULL_CRDS = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\nsplit: {argoCRDs: full}\n"


def split_webhook(start_webhook: StartWebhook, tmp_path: Path, text: str = FULL_CRDS) -> Webhook:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    return start_webhook(settings={"policy_path": policy})


@pytest.fixture
def webhook(start_webhook: StartWebhook, tmp_path: Path) -> Webhook:
    return split_webhook(start_webhook, tmp_path)


def in_namespace(obj: dict[str, Any], namespace: str = "ml") -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    return obj


def test_a_kubeflow_pipeline_over_the_limit_is_split_at_create_into_what_argo_4_accepts(webhook: Webhook) -> None:
    wf = in_namespace(kubeflow_compiled(600))
    assert crd_violations(wf) != []  # refused as compiled
    admitted = webhook.api.admit("split", wf)
    assert crd_violations(admitted.object) == []
    assert admitted.object["spec"] == split_spec(wf["spec"]).spec  # what `wfboost split` prints
    assert {k: v for k, v in admitted.object.items() if k != "spec"} == {k: v for k, v in wf.items() if k != "spec"}
    [told] = admitted.response["warnings"]
    assert told.startswith("wfboost split DAG template ") and "nested groups" in told and len(told) <= 256
    assert metric(webhook, "wfboost_admission_requests_total", route="split", outcome="dags_split") == 1
    assert metric(webhook, "wfboost_split_dags_total", result="split") == 1
    # Only the DAG and the new groups are written: every other template is left where it was.
    assert all(op["path"].startswith("/spec/templates/") for op in admitted.patch)
    assert len(admitted.patch) < len(admitted.object["spec"]["templates"])


def test_the_split_is_idempotent_and_deterministic(webhook: Webhook) -> None:
    wf = in_namespace(kubeflow_compiled(150))
    first = webhook.api.admit("split", wf)
    assert first.patch
    assert webhook.api.admit("split", wf).patch == first.patch  # same input, same output
    again = webhook.api.admit("split", first.object)  # a reinvoked webhook changes nothing more
    assert again.patch == [] and again.response.get("warnings") is None
    assert metric(webhook, "wfboost_admission_requests_total", route="split", outcome="within_limits") == 1


def test_the_split_workflow_runs_as_the_original_in_argos_dag_model(start_webhook: StartWebhook,
                                                                     tmp_path: Path) -> None:
    webhook = split_webhook(start_webhook, tmp_path, FULL_CRDS.replace("{argoCRDs: full}",
                                                                       "{argoCRDs: full, maxTasks: 4}"))
    tasks = [echo("a"), echo("b", "a"), echo("c", "a"), echo("d", "b && c"), echo("e", "d.Failed || d.Errored"),
             echo("f", "d"), echo("g", "f"), echo("h", "g")]
    wf = in_namespace(workflow(tasks))
    admitted = webhook.api.admit("split", wf)
    assert admitted.patch
    for table in ({}, {"b": "Failed"}, {"d": "Failed"}, {"g": "Error"}):
        assert assert_same_run(wf, admitted.object, oracle_from(table)) is not None


def test_a_dag_whose_meaning_a_split_cannot_keep_is_left_as_it_is_with_a_warning(webhook: Webhook) -> None:
    wf = in_namespace(kubeflow_compiled(150))
    wf["spec"]["templateDefaults"] = {"timeout": "1h"}
    admitted = webhook.api.admit("split", wf)
    assert admitted.patch == [] and admitted.object == wf
    [warning] = admitted.response["warnings"]
    assert warning.startswith("wfboost did not split DAG template ") and "templateDefaults" in warning
    assert metric(webhook, "wfboost_split_dags_total", result="refused") == 1


def test_the_opt_out_annotation_leaves_the_workflow_as_it_is(webhook: Webhook) -> None:
    wf = in_namespace(kubeflow_compiled(150))
    wf["metadata"].setdefault("annotations", {})["wfboost.io/split"] = "false"
    admitted = webhook.api.admit("split", wf)
    assert admitted.patch == [] and admitted.response.get("warnings") is None
    assert metric(webhook, "wfboost_admission_requests_total", route="split", outcome="split_opted_out") == 1


@pytest.mark.parametrize(("text", "splits"), [
    ("", False),  # CRDs not declared: off
    ("split: {argoCRDs: minimal}\n", False),
    ("split: {argoCRDs: full}\nfeatures: {splitDags: false}\n", False),
    ("features: {splitDags: true}\n", True),
    ("split: {argoCRDs: full}\nshrink: {controllerVersion: '4.1'}\n", True),
])
def test_the_policy_decides_where_dags_are_split(start_webhook: StartWebhook, tmp_path: Path, text: str,
                                                 splits: bool) -> None:
    header = "apiVersion: wfboost.io/v1alpha1\nkind: Policy\n"
    webhook = split_webhook(start_webhook, tmp_path, header + text)
    admitted = webhook.api.admit("split", in_namespace(kubeflow_compiled(150)))
    assert bool(admitted.patch) is splits


def test_out_of_scope_namespaces_are_left_alone(start_webhook: StartWebhook, tmp_path: Path) -> None:
    webhook = split_webhook(start_webhook, tmp_path, FULL_CRDS + "namespaces: {include: [ml]}\n")
    assert webhook.api.admit("split", in_namespace(kubeflow_compiled(150), "other")).patch == []
    assert webhook.api.admit("split", in_namespace(kubeflow_compiled(150), "ml")).patch


def test_a_workflows_updates_are_not_split(webhook: Webhook) -> None:
    wf = in_namespace(kubeflow_compiled(150))
    admitted = webhook.api.admit("split", wf, operation="UPDATE", old_object=wf)
    assert admitted.patch == []
    assert metric(webhook, "wfboost_admission_requests_total", route="split", outcome="not_create") == 1


def template_holder(kind: str, tasks: int = 150) -> dict[str, Any]:
    wf = kubeflow_compiled(tasks)
    spec = {"schedules": ["0 * * * *"], "workflowSpec": wf["spec"]} if kind == "CronWorkflow" else wf["spec"]
    metadata: dict[str, Any] = {"name": "pipeline"}
    if kind != "ClusterWorkflowTemplate":
        metadata["namespace"] = "ml"
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}


@pytest.mark.parametrize("kind", ["WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow"])
def test_template_holders_are_split_at_create_and_when_their_spec_changes(start_webhook: StartWebhook,
                                                                          tmp_path: Path, kind: str) -> None:
    # A namespace scope that names no namespace: a ClusterWorkflowTemplate, in none, is split all the same.
    webhook = split_webhook(start_webhook, tmp_path,
                            FULL_CRDS + ("namespaces: {include: [ml]}\n" if kind != "ClusterWorkflowTemplate"
                                         else "namespaces: {include: [nowhere]}\n"))
    holder = template_holder(kind)
    where = "spec.workflowSpec" if kind == "CronWorkflow" else "spec"
    assert crd_violations(holder, where) != []
    created = webhook.api.admit("split", holder)
    assert created.patch and crd_violations(created.object, where) == []
    prefix = "/spec/workflowSpec/templates/" if kind == "CronWorkflow" else "/spec/templates/"
    assert all(op["path"].startswith(prefix) for op in created.patch)
    # An UPDATE that leaves the spec as it is (the cron controller's status writes) is not looked at.
    unchanged = webhook.api.admit("split", created.object, operation="UPDATE", old_object=created.object)
    assert unchanged.patch == []
    # `kubectl apply` of the original manifest again: split again, the same way.
    reapplied = webhook.api.admit("split", holder, operation="UPDATE", old_object=created.object)
    assert reapplied.object == created.object


def test_a_dry_run_gets_the_same_patch(webhook: Webhook) -> None:
    wf = in_namespace(kubeflow_compiled(150))
    assert webhook.api.admit("split", wf, dry_run=True).patch == webhook.api.admit("split", wf).patch


def test_after_the_split_the_workflows_route_no_longer_warns_about_the_limit(webhook: Webhook) -> None:
    wf = in_namespace(kubeflow_compiled(150))
    assert webhook.api.admit("workflows", wf).response.get("warnings")  # as sent: Argo 4 will refuse it
    split = webhook.api.admit("split", wf).object  # the API server calls split.wfboost.io first
    assert webhook.api.admit("workflows", split).response.get("warnings") is None


def test_the_policy_refuses_full_crds_beside_an_argo_3_controller_and_limits_over_argos() -> None:
    base = {"apiVersion": "wfboost.io/v1alpha1", "kind": "Policy"}
    assert validate_document({**base, "split": {"argoCRDs": "full"}, "shrink": {"controllerVersion": "3.7"}}) == [
        "split.argoCRDs: full CRDs come with Argo 4.0 and later, but shrink.controllerVersion is 3.7; say minimal, "
        "or raise controllerVersion"]
    [message] = validate_document({**base, "split": {"maxTasks": 201}})
    assert message.startswith("split.maxTasks")
    assert validate_document({**base, "split": {"argoCRDs": "full", "maxTasks": 50},
                              "features": {"splitDags": None}}) == []


def test_wfboost_review_says_what_the_split_would_do(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(FULL_CRDS)
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(in_namespace(kubeflow_compiled(150))))
    done = subprocess.run([sys.executable, "-m", "wfboost", "review", str(wf), "--policy", str(policy)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "wfboost review: split: root: 300 tasks into 2 groups (200, 100 tasks)" in done.stderr


# Hostile DAGs: whatever a user writes, the split route answers with an allow, and never from a crash.
_MUTATIONS: list[tuple[str, Any]] = [
    ("depends", "(a && b"), ("depends", "t0.Bogus"), ("depends", "!t0"), ("depends", 5), ("dependencies", ["t0", 5]),
    ("name", 3), ("name", "t0"), ("template", None), ("template", "missing"), ("arguments", {"parameters": "x"}),
    ("when", "{{tasks.t0.outputs.result}} == x"), ("withItems", "not a list"), ("continueOn", {"failed": True}),
    ("depends", "t2"), ("depends", "t1 && t2"), ("dependencies", ["t2"]),  # cycles, for the earlier tasks
]


@st.composite
def _hostile_tasks(draw: st.DrawFn) -> list[Any]:
    """A valid chain or fan of a few tasks, then a few hostile edits: junk entries, broken fields, bad references."""
    count = draw(st.integers(3, 7))
    tasks: list[Any] = [{"name": f"t{i}", "template": "leaf"} for i in range(count)]
    for i in range(1, count):
        if draw(st.integers(0, 4)) > 0:  # mostly chains, which a split can bring under the limit
            tasks[i]["depends"] = f"t{i - 1}" if draw(st.booleans()) else f"t{draw(st.integers(0, i - 1))}"
    for _ in range(draw(st.integers(0, 2))):
        index = draw(st.integers(0, count - 1))
        if draw(st.integers(0, 4)) == 0:
            tasks[index] = draw(st.sampled_from([3, "x", None, [], {}]))
        elif isinstance(tasks[index], dict):
            key, value = draw(st.sampled_from(_MUTATIONS))
            tasks[index][key] = value
    return tasks


_tasks = _hostile_tasks()


_DAG_EXTRAS = [{}, {}, {}, {"failFast": False}, {"target": "t0"}, {"failFast": "yes"}]


@given(tasks=_tasks, dag_extra=st.sampled_from(_DAG_EXTRAS))
@settings(max_examples=150, deadline=None)
def test_property_hostile_dags_are_admitted_never_crashed_on(tasks: list[Any], dag_extra: dict[str, Any]) -> None:
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "namespace": "ml"},
          "spec": {"entrypoint": "main", "templates": [
              {"name": "main", "dag": {"tasks": tasks, **dag_extra}},
              {"name": "leaf", "container": {"image": "busybox"}}]}}
    policy = policy_from_document({"apiVersion": "wfboost.io/v1alpha1", "kind": "Policy",
                                   "split": {"argoCRDs": "full", "maxTasks": 3}})

    async def admit() -> Any:
        async with offline_admission(policy, None) as admission:
            return await admission.admit("split", review_for_object(copy.deepcopy(wf)), 10.0)

    outcome = asyncio.run(admit())
    event(outcome.outcome)
    assert outcome.fail_open is None, outcome.detail
    assert outcome.review["response"]["allowed"] is True
    ops = decode_patch(outcome.review["response"])
    assert bool(ops) is (outcome.outcome.startswith("dags_split"))


def test_the_install_sends_what_the_split_needs_before_shrinking_sees_it() -> None:
    config = yaml.safe_load((Path(__file__).parent.parent / "deploy" / "base" / "mutatingwebhook.yaml").read_text())
    names = [entry["name"] for entry in config["webhooks"]]
    assert names.index("split.wfboost.io") < names.index("workflows.wfboost.io")  # called in list order
    entry = config["webhooks"][names.index("split.wfboost.io")]
    assert entry["clientConfig"]["service"]["path"] == "/mutate/split"
    assert entry["sideEffects"] == "None" and entry["failurePolicy"] == "Ignore"
    sent = {(resource, operation, rule["scope"]) for rule in entry["rules"] for resource in rule["resources"]
            for operation in rule["operations"]}
    assert sent == {("workflows", "CREATE", "Namespaced"),
                    ("workflowtemplates", "CREATE", "Namespaced"), ("workflowtemplates", "UPDATE", "Namespaced"),
                    ("cronworkflows", "CREATE", "Namespaced"), ("cronworkflows", "UPDATE", "Namespaced"),
                    ("clusterworkflowtemplates", "CREATE", "Cluster"),
                    ("clusterworkflowtemplates", "UPDATE", "Cluster")}
    # No namespace label needed: a DAG over the limit cannot be created at all without the split.
    assert all("wfboost.io/shrink" not in str(e) for e in entry["namespaceSelector"]["matchExpressions"])


@pytest.fixture(scope="module")
def sidestore_tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("sidestore-tls"))


async def test_the_largest_kubeflow_pipeline_is_split_then_shrunk_as_the_api_server_calls_the_entries(
    valkey: Any, sidestore_tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook
) -> None:
    """2,000 tasks (4,000 DAG entries, 3.4 MB): split.wfboost.io first, then workflows.wfboost.io on what it wrote,
    as the API server calls a configuration's entries in order. What is stored passes Argo 4's CRD rules and is
    smaller (about 2.05 MB: still over etcd's default 1.5 MiB, docs/split.md); every value moved out is in the side
    store."""
    wf = kubeflow_compiled(2000)
    policy = tmp_path / "policy.yaml"
    policy.write_text(FULL_CRDS + "features: {shrinkWorkflows: true}\n")
    token = tmp_path / "token"
    token.write_text(TOKENS["admin"])
    async with run_sidestore(valkey, sidestore_tls, tmp_path) as sidestore:
        webhook = start_webhook(settings={"policy_path": policy, "sidestore_url": sidestore.url,
                                          "sidestore_token_file": token, "sidestore_ca_file": sidestore_tls.ca_file})
        split = await asyncio.to_thread(webhook.api.admit, "split", wf)
        stored = (await asyncio.to_thread(webhook.api.admit, "workflows", split.object)).object
        assert crd_violations(stored) == []
        assert len(orjson.dumps(stored)) < 0.65 * len(orjson.dumps(wf))
        groups = [t for t in stored["spec"]["templates"] if "-part" in t["name"]]
        assert len(groups) == 20 and all(len(t["dag"]["tasks"]) <= 200 for t in groups)
        # The drivers' arguments, a table row per call (in each group's copy of the driver template too).
        tables = set(re.findall(r"wfboost-ref:table-v1:([0-9]+):([0-9a-f]{64})", orjson.dumps(stored).decode()))
        assert tables
        async with sidestore.client() as client:
            for size, digest in tables:
                assert await client.head("ml", f"sha256:{digest}") == int(size)


def test_controller_defaults_that_would_reach_the_groups_refuse_the_split(start_webhook: StartWebhook,
                                                                          tmp_path: Path) -> None:
    webhook = split_webhook(start_webhook, tmp_path,
                            FULL_CRDS.replace("{argoCRDs: full}", "{argoCRDs: full, controllerTemplateDefaults: true}"))
    admitted = webhook.api.admit("split", in_namespace(kubeflow_compiled(150)))
    assert admitted.patch == []
    [warning] = admitted.response["warnings"]
    assert "split.controllerTemplateDefaults" in warning


@pytest.mark.parametrize(("extra", "warned"), [
    ({"templateDefaults": {"retryStrategy": {"limit": 2}}}, True),
    ({"onExit": "report", "templates": [{"name": "report", "container": {
        "image": "busybox", "args": ["{{workflow.failures}}"]}}]}, True),
    ({}, False),
])
def test_a_workflow_bringing_defaults_to_a_workflowtemplate_is_warned(webhook: Webhook, extra: dict[str, Any],
                                                                       warned: bool) -> None:
    """Argo applies the Workflow's templateDefaults to the templates it runs from a WorkflowTemplate, the groups of
    a DAG split there included; the webhook cannot see that template, so it says so."""
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
          "metadata": {"generateName": "run-", "namespace": "ml"},
          "spec": {"workflowTemplateRef": {"name": "pipeline"}, **extra}}
    admitted = webhook.api.admit("split", wf)
    assert admitted.patch == []
    warnings = admitted.response.get("warnings") or []
    assert bool(warnings) is warned
    assert all("if wfboost split a DAG there" in w and len(w) <= 256 for w in warnings)


def test_a_new_plan_names_its_changed_groups_anew(webhook: Webhook) -> None:
    """A Workflow running a WorkflowTemplate through templateRef stores its groups one by one: a group of a new
    plan that holds other tasks must not be found under an old group's name."""
    holder = template_holder("WorkflowTemplate")
    first = webhook.api.admit("split", holder).object
    changed = copy.deepcopy(holder)
    root = next(t for t in changed["spec"]["templates"] if t["name"] == "root")
    first_task = root["dag"]["tasks"][0]  # a driver in the first group: that group's content changes
    first_task["arguments"]["parameters"][0]["value"] = "changed"
    second = webhook.api.admit("split", changed, operation="UPDATE", old_object=first).object

    def groups(obj: dict[str, Any]) -> dict[str, list[str]]:
        return {t["name"]: [task["name"] for task in t["dag"]["tasks"]] for t in obj["spec"]["templates"]
                if re.fullmatch(r"root-.+-[0-9a-f]{8}", t["name"])}

    before, after = groups(first), groups(second)
    assert before and after
    for name, tasks in after.items():
        assert before.get(name, tasks) == tasks  # a name kept is the same group
    assert len(set(after) - set(before)) == 1  # the changed group, and only it, has a new name
    assert webhook.api.admit("split", holder).object == first  # the same plan, the same names


@pytest.mark.parametrize("tasks", [
    [echo("a", "b"), echo("b", "a"), echo("c"), echo("d")],
    [echo("a", "a"), echo("b", "a"), echo("c", "b"), echo("d", "c")],
    [echo("a", "d"), echo("b", "a"), echo("c", "b"), echo("d", "c")],
])
def test_a_dag_with_a_cycle_is_refused_with_the_reason(webhook: Webhook, tasks: list[dict[str, Any]]) -> None:
    """Argo refuses such a DAG itself; the split must say so rather than look for an order that does not exist."""
    result = split_spec(workflow(tasks)["spec"], task_limit=3)
    assert result.spec is None
    [dag] = result.dags
    assert dag.refused is not None and "form a cycle" in dag.refused


async def test_a_plan_past_its_deadline_does_not_hold_up_the_next() -> None:
    import threading

    from wfboost.split import SplitResult
    from wfboost.webhook.splitting import _Planner

    planner = _Planner()
    release = threading.Event()

    def stuck() -> SplitResult:
        release.wait(30)
        return SplitResult(None)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await planner.run(stuck)
    try:
        assert await asyncio.wait_for(planner.run(lambda: SplitResult(None, [])), 5) == SplitResult(None, [])
    finally:
        release.set()
