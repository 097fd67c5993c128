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
from tests.test_shrink_workflows import pods_of, shrinking_webhook, what_containers_run, without_empty_metadata
from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.bundling import BUNDLE_INPUT
from wfboost.shrink.inverse import restored_workflow
from wfboost.shrink.refs import CELL_PATTERN, ROW_PATTERN, Reference
from wfboost.shrink.restore import RestoreRefused, restore_ops
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
    workflow = kubeflow_compiled(40)
    stored, plan = shrunk(workflow, ShrinkSettings())
    [table] = [t for t in plan.tables if t.template == "system-container-driver"]
    # the implementation JSON holds Kubeflow's own `{{$}}` placeholders, which no Argo substitution resolves
    assert table.inputs == ["component", "task", "container", "task-name", "iteration-index", "kubernetes-config"]
    assert table.calls == 40
    for before, after in zip(calls(workflow), calls(stored), strict=True):
        # names, dependencies, conditions and every value the controller resolves at run time stay where they were
        assert {k: v for k, v in before.items() if k != "arguments"} == {k: v for k, v in after.items()
                                                                          if k != "arguments"}
        kept = [p for p in after.get("arguments", {}).get("parameters", []) if p["name"] != BUNDLE_INPUT]
        assert all(p in before["arguments"]["parameters"] for p in kept)
        assert all("{{" not in p["value"] or p["value"].startswith("{{workflow.parameters.")
                   for p in before["arguments"]["parameters"] if p not in kept)
    assert len(orjson.dumps(stored)) < len(orjson.dumps(workflow)) * 0.75
    assert assert_pods_run_the_same(workflow, stored, plan, layout) == 81
    assert without_empty_metadata(restored_workflow(stored, blobs_of(plan))) == without_empty_metadata(workflow)


_LITERALS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40).filter(
    lambda s: "{{" not in s and "}}" not in s and "wfboost-ref:" not in s)
_INPUT_NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1, max_size=4, unique=True)


@st.composite
def tabled_workflows(draw: st.DrawFn) -> dict[str, Any]:
    """A leaf template called by DAG tasks and steps, each argument a literal, a workflow argument, something only
    known at run time (`{{item}}`, `{{workflow.name}}`), or left to the input's default."""
    names = draw(_INPUT_NAMES)
    defaults = {n: draw(st.none() | _LITERALS) for n in names}
    script = draw(st.booleans())
    places = {n: draw(st.sampled_from(["args", "env", "source" if script else "args", "outputs"])) for n in names}
    globals_ = {f"g{i}": draw(_LITERALS) for i in range(2)}
    template: dict[str, Any] = {"name": "work", "inputs": {"parameters": [
        {"name": n, **({"default": d} if d is not None else {})} for n, d in defaults.items()]}}
    body: dict[str, Any] = {"image": "busybox", "command": ["sh"], "args": [], "env": []}
    for n, place in places.items():
        tag = f"{{{{inputs.parameters.{n}}}}}"
        if place == "args":
            body["args"] += [f"--{n}", draw(st.sampled_from([tag, f"{tag}#1[x]", f"[{tag}]"]))]
        elif place == "env":
            body["env"].append({"name": n.upper().replace("-", "_"), "value": f"v={tag}"})
        elif place == "source":
            body.setdefault("source", "")
            body["source"] += f"echo '{tag}'\n"
        else:  # the controller reads it: it must stay an input
            template["outputs"] = {"parameters": [{"name": "o", "valueFrom": {"path": f"/tmp/{tag}"}}]}
    if script:
        body["source"] = body.get("source", "true\n")
        template["script"] = body
    else:
        body.pop("source", None)
        template["container"] = body

    def argument(name: str) -> dict[str, Any] | None:
        kind = draw(st.sampled_from(["literal", "global", "item", "workflow", "default"]))
        if kind == "default" and defaults[name] is not None:
            return None
        chosen_global = draw(st.sampled_from(sorted(globals_)))
        value = {"literal": draw(_LITERALS), "global": f"{{{{workflow.parameters.{chosen_global}}}}}",
                 "item": "{{item}}", "workflow": "{{workflow.name}}", "default": draw(_LITERALS)}[kind]
        return {"name": name, "value": value}

    tasks, steps = [], []
    for index in range(draw(st.integers(1, 5))):
        chosen = [a for n in draw(st.permutations(names)) if (a := argument(n)) is not None]
        call: dict[str, Any] = {"name": f"t{index}", "template": "work", "withItems": ["a", "b"]}
        if chosen or draw(st.booleans()):
            call["arguments"] = {"parameters": chosen}
        (steps if draw(st.booleans()) else tasks).append(call)
        if index and tasks and call in tasks and draw(st.booleans()):
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workflow=tabled_workflows())
def test_a_tabled_workflow_runs_the_same_and_restores_to_itself(workflow: dict[str, Any]) -> None:
    plan = plan_workflow_shrink(workflow, LOWEST)
    if isinstance(plan, str) or not plan.tables:
        return
    stored = jsonpatch.JsonPatch(plan.ops).apply(copy.deepcopy(workflow))
    [table] = plan.tables
    original = next(t for t in workflow["spec"]["templates"] if t["name"] == "work")
    for name in table.inputs:  # what the controller reads, or only knows at run time, is never carried
        assert f"inputs.parameters.{name}" not in orjson.dumps(original.get("outputs") or {}).decode()
        for call in calls(workflow):
            passed = {p["name"]: p["value"] for p in (call.get("arguments") or {}).get("parameters") or []}
            assert passed.get(name) not in ("{{item}}", "{{workflow.name}}")
    for before, after in zip(calls(workflow), calls(stored), strict=True):
        rows = [p for p in (after.get("arguments") or {}).get("parameters") or [] if p["name"] == BUNDLE_INPUT]
        assert len(rows) == (1 if before["template"] == "work" else 0)
        assert all(ROW_PATTERN.fullmatch(p["value"]) for p in rows)
    assert without_empty_metadata(restored_workflow(stored, blobs_of(plan))) == without_empty_metadata(workflow)
    assert_pods_run_the_same(workflow, stored, plan, "v3.7.18")


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
    workflow = kubeflow_compiled(10)
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
    workflow = kubeflow_compiled(4)
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
