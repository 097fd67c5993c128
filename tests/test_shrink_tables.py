"""Argument tables (wfboost.shrink.bundling): a template's static arguments moved out together, one row per call.

Checked three ways, none of which uses the planner's own idea of the controller: pods built by the development
simulator (written from Argo's source) for the original and for the stored Workflow must give every process the same
strings once restored; `wfboost restore`'s inverse must give back the original object; and every value the
controller evaluates (a task's name, `depends`, `when`, loops, any argument not known at CREATE) must be where it
was. The Kubeflow-shaped pipeline is written from Kubeflow's compiler source (wfboost_dev/argosim/kubeflow.py).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import StartWebhook
from tests.sidestore_fixtures import SideStoreTls, make_tls, run_sidestore
from tests.test_shrink_workflows import (
    ETCD_LIMIT,
    pods_of,
    shrinking_webhook,
    what_containers_run,
    without_empty_metadata,
)
from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.bundling import BUNDLE_INPUT, plan_argument_tables
from wfboost.shrink.inverse import restored_workflow
from wfboost.shrink.refs import CELL_PATTERN, ROW_PATTERN, Reference
from wfboost.shrink.restore import RestoreRefused, restore_ops, restore_pod
from wfboost.shrink.tables import ArgumentTable, parse_table
from wfboost.shrink.workflow import WorkflowShrink, plan_workflow_shrink
from wfboost_dev.argosim.kubeflow import kubeflow_compiled

LOWEST = ShrinkSettings(value_threshold_bytes=1, object_threshold_bytes=0)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("sidestore-tls"))


def shrunk(workflow: dict[str, Any], settings: ShrinkSettings = LOWEST) -> tuple[dict[str, Any], WorkflowShrink]:
    plan = plan_workflow_shrink(workflow, settings)
    assert isinstance(plan, WorkflowShrink), plan
    return jsonpatch.JsonPatch(plan.ops).apply(copy.deepcopy(workflow)), plan


def tables_of(plan: WorkflowShrink) -> dict[Reference, ArgumentTable]:
    return {t.reference: parse_table(t.reference, t.data.decode()) for t in plan.tables}


def blobs_of(plan: WorkflowShrink) -> dict[Reference, str]:
    return {m.reference: m.value for m in plan.moved} | {t.reference: t.data.decode() for t in plan.tables}


def assert_pods_run_the_same(original: dict[str, Any], stored: dict[str, Any], plan: WorkflowShrink,
                             layout: str) -> int:
    values = {m.reference: m.value for m in plan.moved}
    originals, planned = pods_of(original, layout), pods_of(stored, layout)
    assert len(originals) == len(planned)
    for before, after in zip(originals, planned, strict=True):
        ops = restore_ops(after.pod, values, tables_of(plan))
        restored = jsonpatch.JsonPatch(ops).apply(copy.deepcopy(after.pod))
        assert what_containers_run(restored, after.configmap) == what_containers_run(before.pod, before.configmap)
    return len(originals)


def calls(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for template in workflow["spec"]["templates"]:
        found += (template.get("dag") or {}).get("tasks") or []
        found += [step for group in template.get("steps") or [] for step in group]
    return found


@pytest.mark.parametrize("layout", ["v3.5.14", "v3.7.18", "v4.1.2"])
def test_kubeflow_driver_calls_become_rows_of_one_table_and_every_pod_runs_the_same(layout: str) -> None:
    workflow = kubeflow_compiled(120)  # over enough calls for copies of the driver to pay for themselves
    stored, plan = shrunk(workflow, ShrinkSettings())
    [table] = [t for t in plan.tables if t.template == "system-container-driver"]
    # `task` and `task-name` are literals; the component and implementation are the Workflow's own arguments, which
    # move into one copy of the driver per component kind (six here), never into a row
    assert table.inputs == ["task", "task-name", "iteration-index", "kubernetes-config", "component", "container"]
    assert table.calls == 120
    copies = [t["name"] for t in stored["spec"]["templates"] if t["name"].startswith("system-container-driver")]
    assert copies == ["system-container-driver"] + [f"system-container-driver-{k}" for k in range(2, 7)]
    for before, after in zip(calls(workflow), calls(stored), strict=True):
        # names, dependencies, conditions and every value the controller resolves at run time stay where they were
        assert {k: v for k, v in before.items() if k not in ("arguments", "template")} == {
            k: v for k, v in after.items() if k not in ("arguments", "template")}
        assert after["template"].startswith(before["template"])
        kept = [p for p in after.get("arguments", {}).get("parameters", []) if p["name"] != BUNDLE_INPUT]
        assert all(p in before["arguments"]["parameters"] for p in kept)
        if before["template"] == "system-container-driver":  # what stays is what the controller resolves
            assert [p["name"] for p in kept] == ["parent-dag-id"]
    assert len(orjson.dumps(stored)) < len(orjson.dumps(workflow)) * 0.6  # six copies of the driver included
    assert assert_pods_run_the_same(workflow, stored, plan, layout) == 241
    assert without_empty_metadata(restored_workflow(stored, blobs_of(plan))) == without_empty_metadata(workflow)


def test_a_workflow_argument_changed_after_create_reaches_the_pods_as_it_would_have() -> None:
    """`argo retry -p`, `argo resubmit -p` or an edit change spec.arguments after CREATE (workflow/util/util.go
    overrideParameters); the controller reads them at every step, so the stored Workflow must too."""
    workflow = kubeflow_compiled(12)
    stored, plan = shrunk(workflow)
    for changed in (workflow, stored):
        argument = next(p for p in changed["spec"]["arguments"]["parameters"] if p["name"].startswith("components-"))
        argument["value"] = '{"executorLabel": "retried with -p"}'
    assert_pods_run_the_same(workflow, stored, plan, "v3.7.18")


# Mostly text Go quotes as JSON (with newlines and tabs), now and then a control character it does not: inline, Argo's
# substitution fails on that one, so it must never be carried.
_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cf", "Co", "Cn")) | st.sampled_from("\n\t")
_QUOTABLE = st.text(_TEXT, min_size=150, max_size=400)
_LITERALS = st.one_of(_QUOTABLE, _QUOTABLE, _QUOTABLE, _QUOTABLE,
                      st.text(st.characters(codec="utf-8"), min_size=150, max_size=160)).filter(
    lambda s: "{{" not in s and "}}" not in s and "wfboost-ref:" not in s)
_SHORT = st.text(_TEXT, max_size=12).filter(
    lambda s: "{{" not in s and "}}" not in s and "wfboost-ref:" not in s)
_INPUT_NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=4, unique=True)
# How a template may spell its use of an input: only the first is a tag Argo's fasttemplate substitutes as it is.
_SPELLINGS = ["{{%s}}", "{{%s}}", "{{%s}}", "{{%s}}#1[x]", "[{{%s}}]", "{{%s}}{{%s}}", "{{ %s }}", "{{\t%s}}",
              "{{{%s}}}"]


@st.composite
def tabled_workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A leaf template called by DAG tasks and steps, each argument a literal (some with Kubeflow's `{{$}}`), a
    workflow argument, something only known at run time (`{{item}}`, `{{workflow.name}}`), or left to the input's
    `value` or `default`; the template spells its uses in every way Argo tells apart."""
    names = draw(_INPUT_NAMES)
    defaults = {n: draw(st.sampled_from(["none", "default", "value", "both"])) for n in names}
    script = draw(st.booleans())
    places = {n: draw(st.sampled_from(["args", "args", "env", "source" if script else "args", "outputs"]))
              for n in names}
    globals_ = {f"g{i}": draw(_LITERALS | st.just("run {{$}} and {{$.inputs.parameters['x']}}")) for i in range(3)}
    template: dict[str, Any] = {"name": "work", "inputs": {"parameters": []}}
    for n, kind in defaults.items():
        declared: dict[str, Any] = {"name": n}
        if kind in ("default", "both"):
            declared["default"] = draw(_SHORT)
        if kind in ("value", "both"):
            declared["value"] = draw(_SHORT)
        template["inputs"]["parameters"].append(declared)
    body: dict[str, Any] = {"image": "busybox", "command": ["sh"], "args": [], "env": []}
    for n, place in places.items():
        spelling = draw(st.sampled_from(_SPELLINGS))
        tag = spelling.replace("%s", f"inputs.parameters.{n}")
        if place == "args":
            body["args"] += [f"--{n}", tag]
        elif place == "env":
            body["env"].append({"name": n.upper().replace("-", "_"), "value": f"v={tag}"})
        elif place == "source":
            body["source"] = body.get("source", "") + f"echo '{tag}'\n"
        else:  # the controller reads it: it must stay an input
            template["outputs"] = {"parameters": [{"name": "o", "valueFrom": {"path": f"/tmp/{tag}"}}]}
    if script:
        body["source"] = body.get("source", "true\n")
        template["script"] = body
    else:
        body.pop("source", None)
        template["container"] = body

    # each input: every call passes a literal (or leaves it to the template), every call a workflow argument, or a mix
    modes = {n: draw(st.sampled_from(["literal", "literal", "global", "global", "mixed"])) for n in names}

    def argument(name: str) -> dict[str, Any] | None:
        kinds = {"literal": ["literal", "omit"], "global": ["global"],
                 "mixed": ["literal", "global", "item", "workflow", "omit", "bare"]}[modes[name]]
        kind = draw(st.sampled_from(kinds))
        if kind == "omit" and defaults[name] != "none":
            return None
        if kind == "bare":
            return {"name": name}
        chosen_global = draw(st.sampled_from(sorted(globals_)))
        value = {"literal": draw(_LITERALS), "global": f"{{{{workflow.parameters.{chosen_global}}}}}",
                 "item": "{{item}}", "workflow": "{{workflow.name}}", "omit": draw(_LITERALS)}.get(kind)
        return {"name": name, "value": value}

    tasks, steps = [], []
    for index in range(draw(st.integers(3, 8))):
        chosen = [a for n in draw(st.permutations(names)) if (a := argument(n)) is not None]
        call: dict[str, Any] = {"name": f"t{index}", "template": "work"}
        if draw(st.integers(0, 3)) == 0:
            call["withItems"] = ["a", "b"]
        if chosen or draw(st.booleans()):
            call["arguments"] = {"parameters": chosen}
        (steps if draw(st.integers(0, 3)) == 0 else tasks).append(call)
        if index and call in tasks and tasks[0] is not call and draw(st.booleans()):
            call["depends"] = f"{tasks[0]['name']}.Succeeded"
    templates = [template, {"name": "main", "dag": {"tasks": tasks or [{"name": "only", "template": "noop"}]}},
                 {"name": "noop", "container": {"image": "busybox"}}]
    if steps:
        templates.append({"name": "stepped", "steps": [steps]})
        templates[1]["dag"]["tasks"].append({"name": "stepped", "template": "stepped"})
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "tabled", "namespace": "ml"},
            "spec": {"entrypoint": "main", "templates": templates,
                     "arguments": {"parameters": [{"name": k, "value": v} for k, v in globals_.items()]}}}


_BUILT: list[bool] = []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(workflow=tabled_workflows(), layout=st.sampled_from(["v3.5.14", "v3.7.18", "v4.1.2"]))
def test_a_tabled_workflow_runs_the_same_and_restores_to_itself(workflow: dict[str, Any], layout: str) -> None:
    plan = plan_workflow_shrink(workflow, LOWEST)
    _BUILT.append(not isinstance(plan, str) and bool(plan.tables))
    if isinstance(plan, str) or not plan.tables:
        return
    stored = jsonpatch.JsonPatch(plan.ops).apply(copy.deepcopy(workflow))
    [table] = plan.tables
    original = next(t for t in workflow["spec"]["templates"] if t["name"] == "work")
    for name in table.inputs:  # what the controller reads, or only knows at run time, is never carried
        assert f"inputs.parameters.{name}" not in orjson.dumps(original.get("outputs") or {}).decode()
        for call in calls(workflow):
            passed = {p["name"]: p.get("value") for p in (call.get("arguments") or {}).get("parameters") or []}
            assert passed.get(name) not in ("{{item}}", "{{workflow.name}}")
            assert name not in passed or passed[name] is not None
    for before, after in zip(calls(workflow), calls(stored), strict=True):
        rows = [p for p in (after.get("arguments") or {}).get("parameters") or [] if p["name"] == BUNDLE_INPUT]
        assert len(rows) == (1 if before["template"] == "work" else 0)
        assert all(p["value"].isdigit() for p in rows)
    assert without_empty_metadata(restored_workflow(stored, blobs_of(plan))) == without_empty_metadata(workflow)
    assert_pods_run_the_same(workflow, stored, plan, layout)


def test_the_property_test_builds_tables() -> None:
    """The property test above proves something only if it makes tables: a good part of its examples must."""
    if len(_BUILT) < 50:
        pytest.skip("run with the property test")
    assert sum(_BUILT) >= len(_BUILT) // 6, (sum(_BUILT), len(_BUILT))  # about a quarter, the rest its negatives


def _driver_calls(workflow: dict[str, Any]) -> int:
    return sum(1 for task in calls(workflow) if task["template"] == "system-container-driver")


@pytest.mark.parametrize(("change", "reason"), [
    (lambda w, t: w["spec"].__setitem__("onExit", t["name"]), "exit handler"),
    (lambda w, t: calls(w)[0].__setitem__("hooks", {"running": {"template": t["name"]}}), "hook"),
    (lambda w, t: t.__setitem__("podSpecPatch", "{{inputs.parameters.task}}"), None),
    (lambda w, t: t["inputs"]["parameters"][1].__setitem__("enum", ["a"]), None),
    (lambda w, t: w["spec"].__setitem__("templateDefaults", {"activeDeadlineSeconds": 5}), "templateDefaults"),
])
def test_a_template_whose_inputs_the_controller_reads_keeps_them(change: Any, reason: str | None) -> None:
    workflow = kubeflow_compiled(120)
    driver = next(t for t in workflow["spec"]["templates"] if t["name"] == "system-container-driver")
    change(workflow, driver)
    plan = plan_workflow_shrink(workflow, LOWEST)
    tables = [] if isinstance(plan, str) else [t for t in plan.tables if t.template == "system-container-driver"]
    if reason is None:  # only `task` is read by the controller here: the others may still travel
        assert tables and "task" not in tables[0].inputs
    else:
        assert not tables
        assert not isinstance(plan, str) and reason in plan.untabled["system-container-driver"]


def test_a_cell_the_table_does_not_have_is_refused_never_left_in_place() -> None:
    workflow = kubeflow_compiled(3)
    stored, plan = shrunk(workflow)
    pod = next(p.pod for p in pods_of(stored, "v3.7.18") if CELL_PATTERN.search(orjson.dumps(p.pod).decode()))
    text = orjson.dumps(pod).decode()
    cell = CELL_PATTERN.search(text)
    assert cell is not None
    broken = orjson.loads(text.replace(cell[0], cell[0].replace(f"#{cell[3]}[", "#999[")))
    with pytest.raises(RestoreRefused, match="has no row 999"):
        restore_ops(broken, {m.reference: m.value for m in plan.moved}, tables_of(plan))
    with pytest.raises(KeyError):  # a table not fetched is the caller's error, never a silent pass
        restore_ops(pod, {m.reference: m.value for m in plan.moved}, {})


async def test_a_tabled_pipeline_through_the_webhook_and_a_real_side_store(
    valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook
) -> None:
    workflow = kubeflow_compiled(150)
    workflow["metadata"]["name"] = "pipeline-x7k2p"
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = shrinking_webhook(start_webhook, tmp_path, sidestore.url, tls)
        stored = (await asyncio.to_thread(webhook.api.admit, "workflows", workflow)).object
        assert len(orjson.dumps(stored)) < len(orjson.dumps(workflow)) * 0.75
        originals, planned = pods_of(workflow, "v3.7.18"), pods_of(stored, "v3.7.18")
        first = True
        for before, after in zip(originals, planned, strict=True):
            restored = (await asyncio.to_thread(webhook.api.admit, "restore", after.pod)).object
            assert what_containers_run(restored, None) == what_containers_run(before.pod, before.configmap)
            if first and CELL_PATTERN.search(orjson.dumps(after.pod).decode()):
                first = False
                tabled = (before, after)
    # the side store is gone: a pod that needs only the table (named by its digest) is restored from the cache
    before, after = tabled
    restored = (await asyncio.to_thread(webhook.api.admit, "restore", after.pod)).object
    assert what_containers_run(restored, None) == what_containers_run(before.pod, before.configmap)


def test_a_row_outside_a_cell_is_refused() -> None:
    workflow = kubeflow_compiled(3)
    stored, plan = shrunk(workflow)
    pod = next(p.pod for p in pods_of(stored, "v3.7.18") if CELL_PATTERN.search(orjson.dumps(p.pod).decode()))
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    row = ROW_PATTERN.search(orjson.dumps(pod).decode())
    assert row is not None
    main["args"].append(row[0])
    with pytest.raises(RestoreRefused, match="names no value"):
        restore_ops(pod, {m.reference: m.value for m in plan.moved}, tables_of(plan))


@pytest.mark.parametrize(("value", "looped", "carried"), [
    ('{"args": ["--executor_input", "{{$}}", "{{$.inputs.parameters[\'x\']}}"]}', False, True),
    ('{"args": ["{{$}}"]}', True, False),  # processItem refuses unresolved tags: inline this call fails
    ('{"args": ["{{workflow.name}}"]}', False, False),  # the controller substitutes inside it
    ('{"args": ["{{$.a {{pod.name}}"]}', False, False),  # a nested tag the controller resolves
    ("ring \x07", False, False),  # Go quotes BEL as \\a, which is not JSON: inline it fails
])
def test_a_workflow_argument_goes_into_a_row_only_when_argo_passes_it_unchanged(
    value: str, looped: bool, carried: bool
) -> None:
    workflow = kubeflow_compiled(120)
    argument = next(p for p in workflow["spec"]["arguments"]["parameters"] if p["name"].startswith("implementations-"))
    argument["value"] = value
    tag = "{{workflow.parameters." + argument["name"] + "}}"
    users = [t for t in calls(workflow) if t.get("template") == "system-container-driver"
             and any(a["value"] == tag for a in t["arguments"]["parameters"])]
    if looped:
        users[0]["withItems"] = [1]
    plan = plan_workflow_shrink(workflow, LOWEST)
    assert isinstance(plan, WorkflowShrink)
    [table] = [t for t in plan.tables if t.template == "system-container-driver"]
    assert ("container" in table.inputs) is carried


# --- values over 128 KiB: restored the way Argo 3.7.10+ passes long arguments (wfboost.argo.offload) -------------

OFFLOADING = ShrinkSettings(controller_version="3.7.10")


def test_a_value_over_128_kib_stays_inline_unless_every_controller_offloads_long_arguments() -> None:
    workflow = kubeflow_compiled(600)  # components-root, the root DAG's spec, is 205 kB
    _, plan = shrunk(workflow, ShrinkSettings())
    assert "components-root" in plan.kept and "controllerVersion" in plan.kept["components-root"]
    for version in ("3.7.9", "3.7", "4.0.0"):
        _, plan = shrunk(workflow, ShrinkSettings(controller_version=version))
        assert "components-root" in plan.kept, version
    for version in ("3.7.10", "4.0.1", "4.1", "v4.1.2"):
        _, plan = shrunk(workflow, ShrinkSettings(controller_version=version))
        assert [m.name for m in plan.moved] == ["components-root"], version


@pytest.mark.parametrize("layout", ["v3.7.18", "v4.1.2"])
def test_a_restored_argument_over_128_kib_goes_to_the_configmap_argo_would_have_made(layout: str) -> None:
    workflow = kubeflow_compiled(420)  # components-root is 145 kB
    stored, plan = shrunk(workflow, OFFLOADING)
    values = {m.reference: m.value for m in plan.moved}
    offloaded = []
    for before, after in zip(pods_of(workflow, layout), pods_of(stored, layout), strict=True):
        restored = restore_pod(after.pod, values, tables_of(plan), offload_args=True)
        pod = jsonpatch.JsonPatch(restored.ops).apply(copy.deepcopy(after.pod))
        assert what_containers_run(pod, restored.configmap) == what_containers_run(before.pod, before.configmap)
        if restored.configmap is not None:
            offloaded.append(after.pod)
            # the simulator's ConfigMap is written from Argo's source, not from wfboost's
            assert before.configmap is not None
            assert restored.configmap["metadata"] == {k: v for k, v in before.configmap["metadata"].items()
                                                      if k in restored.configmap["metadata"]}
            assert restored.configmap["data"]["ARGO_CONTAINER_ARGS_FILE"] == before.configmap["data"][
                "ARGO_CONTAINER_ARGS_FILE"]
            main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
            original = next(c for c in before.pod["spec"]["containers"] if c["name"] == "main")
            assert "args" not in main and main["env"] == original["env"]
            assert main["volumeMounts"] == original["volumeMounts"]
    assert len(offloaded) == 1  # the root driver, whose --component is the root DAG's spec
    with pytest.raises(RestoreRefused, match="over Linux's 131072-byte limit"):  # never silently over the limit
        restore_pod(offloaded[0], values, tables_of(plan), offload_args=False)


def test_the_2000_task_pipeline_is_stored_under_etcds_limit() -> None:
    workflow = kubeflow_compiled(2000)
    stored, plan = shrunk(workflow, OFFLOADING)
    assert len(orjson.dumps(workflow)) > 2 * ETCD_LIMIT
    assert len(orjson.dumps(stored)) < ETCD_LIMIT
    assert abs(plan.size_after - len(orjson.dumps(stored))) < 1000  # what the webhook logs and counts


async def test_the_webhook_makes_the_arguments_configmap_once_and_never_on_a_dry_run(
    valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook, kmock: Any
) -> None:
    kmock.resources["v1/configmaps"] = {}
    workflow = kubeflow_compiled(420)
    workflow["metadata"]["name"] = "pipeline-x7k2p"
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = shrinking_webhook(start_webhook, tmp_path, sidestore.url, tls, controller_version="3.7.10",
                                    kube_url=str(kmock.url))
        stored = (await asyncio.to_thread(webhook.api.admit, "workflows", workflow)).object
        [(before, after)] = [(b, a) for b, a in zip(pods_of(workflow, "v3.7.18"), pods_of(stored, "v3.7.18"),
                                                    strict=True) if b.configmap is not None]
        def configmaps() -> list[dict[str, Any]]:
            return [o for key, o in kmock.objects.items() if "configmaps" in str(key[0])]

        dry = await asyncio.to_thread(webhook.api.admit, "restore", after.pod, dry_run=True)
        assert "ARGO_CONTAINER_ARGS_FILE" in str(dry.object) and not configmaps()  # a dry run writes nothing
        restored = (await asyncio.to_thread(webhook.api.admit, "restore", after.pod)).object
        [configmap] = configmaps()
        assert configmap["metadata"]["name"] == after.pod["metadata"]["name"]
        assert what_containers_run(restored, configmap) == what_containers_run(before.pod, before.configmap)
        again = await asyncio.to_thread(webhook.api.admit, "restore", after.pod)  # the controller's retry
        assert again.object == restored
        name = configmap["metadata"]["name"]
        kmock.objects["v1/configmaps", "ml", name] = {  # another pod's arguments under this pod's name
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ml"},
            "data": {"ARGO_CONTAINER_ARGS_FILE": "[]"}}
        refused = await asyncio.to_thread(webhook.api.answer, "restore", after.pod)
        assert refused["allowed"] is False and refused["status"]["code"] == 400
        assert "holds other arguments" in refused["status"]["message"]


def _small(calls_: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A leaf template `work` with inputs `a` and `b`, called by the given tasks from `main`."""
    work = {"name": "work", "inputs": {"parameters": [{"name": "a"}, {"name": "b", "default": "d", "value": "v"}]},
            "container": {"image": "busybox", "args": ["--a", "{{inputs.parameters.a}}", "--b",
                                                       "{{inputs.parameters.b}}"]}}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "small", "namespace": "ml"},
            "spec": {"entrypoint": "main", "templates": [work, {"name": "main", "dag": {"tasks": calls_}}], **spec}}


def _literal_calls(n: int = 6) -> list[dict[str, Any]]:
    return [{"name": f"t{i}", "template": "work", "arguments": {"parameters": [{"name": "a", "value": "x" * 300}]}}
            for i in range(n)]


def test_an_input_with_a_value_and_a_default_gets_its_value_as_argo_gives_it() -> None:
    workflow = _small(_literal_calls())
    stored, plan = shrunk(workflow)
    [table] = plan.tables
    assert table.inputs == ["a", "b"]
    assert tables_of(plan)[table.reference]["strings"][1] == "v"  # ProcessArgs: `value` before `default`
    assert_pods_run_the_same(workflow, stored, plan, "v3.7.18")


@pytest.mark.parametrize(("change", "why"), [
    (lambda w: w["spec"].__setitem__("podSpecPatch", '{"containers":[{"name":"main","env":[{"name":"A","value":'
                                                     '"{{inputs.parameters.a}}"}]}]}'), "reads template inputs"),
    (lambda w: w["spec"]["templates"][1]["dag"]["tasks"].append(
        {"name": "inl", "inline": {"dag": {"tasks": [{"name": "i", "template": "work", "arguments": {
            "parameters": [{"name": "a", "value": "y"}]}}]}}}), "from an inline template"),
    (lambda w: w["spec"]["templates"][1]["dag"]["tasks"][0]["arguments"]["parameters"].append(
        {"name": BUNDLE_INPUT, "value": "0"}), f"passes {BUNDLE_INPUT} already"),
    (lambda w: w["spec"]["templates"][1]["dag"]["tasks"][0]["arguments"]["parameters"].__setitem__(
        0, {"name": "a", "value": "__argo-internal.absent-optional-output__"}), "would save"),  # `b` alone
    (lambda w: w["spec"]["templates"][0]["container"]["args"].__setitem__(1, "{{ inputs.parameters.a }}"),
     "would save"),
])
def test_a_table_is_never_made_where_argo_would_read_the_inputs_otherwise(change: Any, why: str) -> None:
    workflow = _small(_literal_calls())
    assert plan_argument_tables(workflow["spec"], min_saved=1, max_cell=10**6, max_template=10**6, labels={}).tables
    change(workflow)
    plan = plan_argument_tables(workflow["spec"], min_saved=1, max_cell=10**6, max_template=10**6, labels={})
    assert not [t for t in plan.tables if "a" in t.inputs]
    assert why in plan.kept.get("work", "the whole Workflow"), plan.kept


def test_a_value_ending_in_a_brace_is_never_carried_routed_or_moved() -> None:
    """Inline, `a{` followed by `{{inputs.parameters.d}}` in one string is rescanned as `{{{inputs…`: a tag Argo
    reads differently; so such a value stays where the controller sees it."""
    workflow = _small(_literal_calls())
    for call in workflow["spec"]["templates"][1]["dag"]["tasks"]:
        call["arguments"]["parameters"][0]["value"] = "x" * 300 + "{"
    plan = plan_argument_tables(workflow["spec"], min_saved=1, max_cell=10**6, max_template=10**6, labels={})
    assert all("a" not in t.inputs for t in plan.tables)
    workflow["spec"]["arguments"] = {"parameters": [{"name": "g", "value": "y" * 300 + "{"}]}
    for call in workflow["spec"]["templates"][1]["dag"]["tasks"]:
        call["arguments"]["parameters"][0]["value"] = "{{workflow.parameters.g}}"
    plan = plan_argument_tables(workflow["spec"], min_saved=1, max_cell=10**6, max_template=10**6, labels={})
    assert all("a" not in t.inputs for t in plan.tables)
    from wfboost.shrink.workflow import _why_not_moved

    assert "ends with `{`" in str(_why_not_moved("y" * 300 + "{", LOWEST, looped=False))


def test_copies_of_every_template_together_stay_within_argo_4s_200_templates() -> None:
    arguments, templates, tasks = [], [], []
    for template in ("w1", "w2"):
        templates.append({"name": template, "inputs": {"parameters": [{"name": "a"}]},
                          "container": {"image": "busybox", "args": ["{{inputs.parameters.a}}"]}})
        for group in range(100):
            name = f"{template}-argument-{group:03d}-" + "n" * 60
            arguments.append({"name": name, "value": "v"})
            tasks += [{"name": f"{template}-{group}-{i}", "template": template,
                       "arguments": {"parameters": [{"name": "a", "value": f"{{{{workflow.parameters.{name}}}}}"}]}}
                      for i in range(8)]
    spec = {"entrypoint": "main", "arguments": {"parameters": arguments},
            "templates": [*templates, {"name": "main", "dag": {"tasks": tasks}}]}
    plan = plan_argument_tables(spec, min_saved=1, max_cell=10**6, max_template=10**6, labels={})
    added = sum(1 for t in plan.tables for op in t.ops if op["path"] == "/spec/templates/-")
    assert added > 0 and len(spec["templates"]) + added <= 200
    # the first template's copies take the budget; the second, with nothing but workflow arguments, is left alone
    assert [t.template for t in plan.tables] == ["w1"] and "w2" in plan.kept


def test_no_copies_where_a_pod_name_is_read() -> None:
    workflow = kubeflow_compiled(120)
    driver = next(t for t in workflow["spec"]["templates"] if t["name"] == "system-container-driver")
    driver["container"]["args"] += ["--pod", "{{pod.name}}"]  # a copy's pods are named after it
    _, plan = shrunk(workflow)
    [table] = [t for t in plan.tables if t.template == "system-container-driver"]
    assert "component" not in table.inputs and not any(op["path"] == "/spec/templates/-" for op in table.ops)


def test_argument_offload_is_measured_and_picked_as_the_controller_does() -> None:
    from wfboost.argo.offload import go_json_strings, offloads_container_args, skips_container

    assert go_json_strings(["a\bb\fc<&>\u2028\x01"]) == '["a\\bb\\fc\\u003c\\u0026\\u003e\\u2028\\u0001"]'
    assert [offloads_container_args(v) for v in ("3.7.9", "3.7.10", "4.0", "4.0.1", "4.1", None)] == [
        False, True, False, True, True, False]
    assert skips_container("wait", "3.7.10") and not skips_container("supervisor", "3.7.10")
    assert skips_container("supervisor", "4.1") and skips_container("artifact-plugin-s3", "4.1.2")


def test_kubeflow_implementations_move_unless_the_workflow_loops() -> None:
    """Their `{{$…}}` placeholders pass every Argo substitution unchanged (analysis.only_dollar_tags), but a looped
    task carrying one fails inline (processItem refuses unresolved tags): with any loop they stay."""
    workflow = kubeflow_compiled(120)
    _, plan = shrunk(workflow, ShrinkSettings(value_threshold_bytes=1024))
    implementations = [m for m in plan.moved if m.name.startswith("implementations-")]
    assert len(implementations) == 6 and all("{{$}}" in m.value for m in implementations)
    workflow["spec"]["templates"][-1]["dag"]["tasks"][0]["withItems"] = [1]
    _, plan = shrunk(workflow, ShrinkSettings(value_threshold_bytes=1024))
    assert not [m for m in plan.moved if m.name.startswith("implementations-")]
    assert all("loops" in why for name, why in plan.kept.items() if name.startswith("implementations-"))


def _go_quotes_as_json_by_rule(value: str) -> bool:
    """strconv.Quote's escapes that JSON lacks, character by character (\\a \\v \\x.. \\U........)."""
    import unicodedata

    for char in value:
        code = ord(char)
        if (code < 0x20 and char not in "\b\t\n\f\r") or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            return False
        if code > 0xFFFF and unicodedata.category(char)[0] not in "LMNPS":
            return False
    return True


@settings(max_examples=500)
@given(value=st.text(st.characters(codec=None), max_size=40))
def test_go_quotes_as_json_follows_strconv_quote(value: str) -> None:
    from wfboost.shrink.analysis import go_quotes_as_json

    assert go_quotes_as_json(value) == _go_quotes_as_json_by_rule(value)
