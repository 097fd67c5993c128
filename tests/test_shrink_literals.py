"""Template literals (wfboost.shrink.literals): script sources, main's command, args and env values, template
annotations and input defaults moved out of Workflows, CronWorkflows and WorkflowTemplates.

Checked against the development simulator (pods built from Argo's source, not from the planner's idea of it): every
pod of the stored object, once restored, gives each process the same argv and environment, the executor the same
script source in ARGO_TEMPLATE, and is stored with the same annotations as the pod of the original; `wfboost
restore`'s inverse gives the original back. A WorkflowTemplate's and a CronWorkflow's pods are those of the Workflow
made from them (its spec is theirs).
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import StartWebhook, corpus_dir
from tests.sidestore_fixtures import SideStoreTls, make_tls, run_sidestore
from tests.test_shrink_workflows import pods_of, shrinking_webhook, what_containers_run, without_empty_metadata
from wfboost.policy.model import ShrinkSettings
from wfboost.shrink.inverse import restored_workflow
from wfboost.shrink.literals import plan_template_literals
from wfboost.shrink.refs import MARK, Reference, reference_for
from wfboost.shrink.restore import TEMPLATE_REFS_LABEL, restore_ops
from wfboost.shrink.tables import parse_table
from wfboost.shrink.workflow import (
    MAX_MOVED_BYTES,
    MAX_RECEIVER_TEMPLATE_BYTES,
    RESTORE_LABEL,
    SHRUNK_KINDS,
    WorkflowShrink,
    plan_workflow_shrink,
)

LOWEST = ShrinkSettings(value_threshold_bytes=1, object_threshold_bytes=0)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("sidestore-tls"))


def what_the_pod_gives(pod: dict[str, Any], configmap: dict[str, Any] | None) -> list[Any]:
    """What each process runs with, the script source the executor reads from ARGO_TEMPLATE, and the pod's stored
    annotations and labels (the restore labels aside: they route the pod to restoring and say what it reads)."""
    sources = []
    for field in ("initContainers", "containers"):
        for container in pod["spec"].get(field) or []:
            for env in container.get("env") or []:
                if env["name"] == "ARGO_TEMPLATE" and env.get("value", "").startswith("{"):
                    sources.append((json.loads(env["value"]).get("script") or {}).get("source"))
    labels = {k: v for k, v in (pod["metadata"].get("labels") or {}).items()
              if k not in (RESTORE_LABEL, TEMPLATE_REFS_LABEL)}
    return [what_containers_run(pod, configmap), sources, pod["metadata"].get("annotations"), labels]


def without_argo_template(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod without ARGO_TEMPLATE, whose copies of args, env and inputs no one reads (restore.py): nothing else
    may hold a reference once restored."""
    copied = copy.deepcopy(pod)
    for field in ("initContainers", "containers"):
        for container in copied["spec"].get(field) or []:
            container["env"] = [e for e in container.get("env") or [] if e["name"] != "ARGO_TEMPLATE"]
    return copied


def as_workflow(document: dict[str, Any]) -> dict[str, Any]:
    """The Workflow a CronWorkflow or WorkflowTemplate makes: its spec is theirs."""
    if document.get("kind") == "Workflow":
        return document
    spec = document["spec"]["workflowSpec"] if document["kind"] == "CronWorkflow" else document["spec"]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "made", "namespace": "ml"}, "spec": copy.deepcopy(spec)}


def shrunk(document: dict[str, Any], policy: ShrinkSettings = LOWEST) -> tuple[dict[str, Any], WorkflowShrink]:
    plan = plan_workflow_shrink(document, policy)
    assert isinstance(plan, WorkflowShrink), plan
    return jsonpatch.JsonPatch(plan.ops).apply(copy.deepcopy(document)), plan


def blobs(plan: WorkflowShrink) -> dict[Reference, str]:
    return {m.reference: m.value for m in plan.moved} | {t.reference: t.data.decode() for t in plan.tables}


def assert_pods_give_the_same(original: dict[str, Any], stored: dict[str, Any], plan: WorkflowShrink,
                              layout: str = "v3.7.18") -> int:
    values = {m.reference: m.value for m in plan.moved}
    tables = {t.reference: parse_table(t.reference, t.data.decode()) for t in plan.tables}
    before, after = pods_of(as_workflow(original), layout), pods_of(as_workflow(stored), layout)
    assert len(before) == len(after)
    for one, other in zip(before, after, strict=True):
        restored = jsonpatch.JsonPatch(restore_ops(other.pod, values, tables)).apply(copy.deepcopy(other.pod))
        assert what_the_pod_gives(restored, other.configmap) == what_the_pod_gives(one.pod, one.configmap)
        assert MARK not in orjson.dumps(without_argo_template(restored)).decode()
    return len(before)


def script_workflow(source: str, **template: Any) -> dict[str, Any]:
    main = {"name": "main", "script": {"image": "python:3.12", "command": ["python"], "source": source}}
    main.update(template)
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "w", "namespace": "ml"},
            "spec": {"entrypoint": "main", "templates": [main]}}


# --- what moves, what stays ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["v3.5.14", "v3.7.18", "v4.1.2"])
def test_a_long_script_source_moves_and_the_executor_reads_it_back(layout: str) -> None:
    source = "import json\n" + "print(json.dumps({'row': 1}))\n" * 400
    workflow = script_workflow(source)
    stored, plan = shrunk(workflow, ShrinkSettings(object_threshold_bytes=0))
    assert [m.name for m in plan.moved] == ["templates[main].script.source"]
    assert stored["spec"]["templates"][0]["script"]["source"] == reference_for(source).text
    assert stored["spec"]["templates"][0]["metadata"]["labels"] == {RESTORE_LABEL: "true"}
    assert assert_pods_give_the_same(workflow, stored, plan, layout) == 1
    assert without_empty_metadata(restored_workflow(stored, blobs(plan))) == workflow


@pytest.mark.parametrize(
    ("source", "template", "kept_because"),
    [
        ("print('{{inputs.parameters.x}}')\n" * 300, {"inputs": {"parameters": [{"name": "x", "value": "1"}]}},
         "holds `{{`"),
        ("}" + "print(1)\n" * 600, {}, "starts with `}`"),
        ("print(1)\n" * 600 + "{", {}, "ends with `{`"),
        ("print(1)\n" * 14_000, {}, "128 KiB"),  # 126 kB: over one string's limit restored
        ("print(1)\n" * 600, {"metadata": {"annotations": {"a": "x" * 110_000}}}, "near the 128 KiB"),
        # 84 kB as stored, 149 kB as Go writes ARGO_TEMPLATE (`>` is `\u003e`): Argo offloads it unshrunk
        ("echo x >> f\n" * 6500, {}, "as Go writes it"),
        # a 70 kB source and a value substituted at run time that can be as long again
        ("echo x\n" * 10_000, {"inputs": {"parameters": [{"name": "d"}]}}, "takes input parameters"),
        ("echo x\n" * 10_000, {"script": {"image": "bash", "command": ["bash"], "source": "echo x\n" * 10_000,
                                           "env": [{"name": "D", "value": "{{workflow.parameters.d}}"}]}},
         "substitutes values"),
    ],
)
def test_a_script_source_the_controller_reads_or_that_could_not_come_back_stays(
    source: str, template: dict[str, Any], kept_because: str
) -> None:
    workflow = script_workflow(source, **template)
    plan = plan_template_literals(workflow["spec"], min_bytes=4096, max_bytes=MAX_MOVED_BYTES,
                                  max_template=MAX_RECEIVER_TEMPLATE_BYTES, defaults=True)
    assert "templates[main].script.source" not in [m.name for m in plan.moved]
    assert kept_because in plan.kept["templates[main].script.source"], plan.kept


def test_kubeflow_v1_component_specs_and_code_move_and_argos_annotations_stay() -> None:
    code = "def consume(param1):\n    print(param1)\n" * 200
    spec_json = json.dumps({"name": "Consume", "implementation": {"container": {"command": ["sh", "-ec", code]}}})
    workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "p", "namespace": "ml"},
                "spec": {"entrypoint": "main", "templates": [{
                    "name": "main",
                    "metadata": {"annotations": {"pipelines.kubeflow.org/component_spec": spec_json,
                                                 "workflows.argoproj.io/extra": "y" * 5000},
                                 "labels": {"pipelines.kubeflow.org/cache_enabled": "true"}},
                    "container": {"image": "python:3.7", "command": ["sh", "-ec", code], "args": ["--param1", "a"],
                                  "env": [{"name": "BIG", "value": "z" * 5000}, {"name": "SMALL", "value": "s"}]}}]}}
    stored, plan = shrunk(workflow, ShrinkSettings(object_threshold_bytes=0))
    assert sorted(m.name for m in plan.moved) == [
        "templates[main].container.command[2]", "templates[main].container.env[BIG]",
        "templates[main].metadata.annotations[pipelines.kubeflow.org/component_spec]"]
    template = stored["spec"]["templates"][0]
    assert template["metadata"]["annotations"]["workflows.argoproj.io/extra"] == "y" * 5000  # Argo's own
    assert template["metadata"]["labels"] == {"pipelines.kubeflow.org/cache_enabled": "true", RESTORE_LABEL: "true",
                                              TEMPLATE_REFS_LABEL: "unread"}  # not a script: see restore.py
    for layout in ("v3.5.14", "v3.7.18", "v4.1.2"):
        assert assert_pods_give_the_same(workflow, stored, plan, layout) == 1
    pod = pods_of(as_workflow(stored), "v3.7.18")[0].pod
    restored = jsonpatch.JsonPatch(restore_ops(pod, blobs(plan))).apply(copy.deepcopy(pod))
    assert restored["metadata"]["annotations"]["pipelines.kubeflow.org/component_spec"] == spec_json


def default_workflow(default: str, *, uses: list[str], **template: Any) -> dict[str, Any]:
    main = {"name": "main", "inputs": {"parameters": [{"name": "config", "default": default}]},
            "container": {"image": "busybox", "command": ["echo"], "args": uses}}
    main.update(template)
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "namespace": "ml"},
            "spec": {"entrypoint": "main", "templates": [main]}}


def test_an_input_default_only_substituted_into_containers_moves() -> None:
    config = json.dumps({"layers": list(range(2000))})
    workflow = default_workflow(config, uses=["--config", "{{inputs.parameters.config}}",
                                              "--x={{inputs.parameters.config}}"])
    stored, plan = shrunk(workflow, ShrinkSettings(object_threshold_bytes=0))
    assert [m.name for m in plan.moved] == ["templates[main].inputs.parameters[config].default"]
    assert assert_pods_give_the_same(workflow, stored, plan) == 1
    assert without_empty_metadata(restored_workflow(stored, blobs(plan))) == workflow


@pytest.mark.parametrize(
    "change",
    [
        {"podSpecPatch": "{{inputs.parameters.config}}"},
        {"memoize": {"key": "{{inputs.parameters.config}}", "cache": {"configMap": {"name": "c"}}}},
        {"metadata": {"annotations": {"cfg": "{{inputs.parameters.config}}"}}},
        {"outputs": {"parameters": [{"name": "o", "value": "{{inputs.parameters.config}}"}]}},
        {"container": {"image": "busybox", "command": ["echo"], "args": ["{{inputs.parameters}}"]}},
        {"container": {"image": "busybox", "command": ["echo"], "args": ["{{=inputs.parameters.config}}"]}},
    ],
)
def test_an_input_default_the_controller_reads_stays(change: dict[str, Any]) -> None:
    workflow = default_workflow("c" * 5000, uses=["{{inputs.parameters.config}}"], **change)
    plan = plan_workflow_shrink(workflow, ShrinkSettings(object_threshold_bytes=0))
    moved = [] if isinstance(plan, str) else [m.name for m in plan.moved]
    assert "templates[main].inputs.parameters[config].default" not in moved


def test_input_defaults_stay_in_a_workflow_template_and_where_templates_come_from_elsewhere() -> None:
    workflow = default_workflow("c" * 5000, uses=["{{inputs.parameters.config}}"])
    template = {**workflow, "kind": "WorkflowTemplate"}  # a Workflow running it may read its inputs unseen
    assert plan_workflow_shrink(template, ShrinkSettings(object_threshold_bytes=0)) == "nothing_to_move"
    workflow["spec"]["templates"].append({"name": "lib", "steps": [[{"name": "s", "templateRef": {
        "name": "other", "template": "t"}}]]})
    assert plan_workflow_shrink(workflow, ShrinkSettings(object_threshold_bytes=0)) == "nothing_to_move"


def test_nothing_moves_from_an_object_that_already_holds_reference_text() -> None:
    """A pod could receive that text (through an argument), and restoring it would change it."""
    workflow = script_workflow("print(1)\n" * 600)
    workflow["spec"]["arguments"] = {"parameters": [{"name": "note", "value": "wfboost-ref:v1:3:" + "0" * 64}]}
    assert plan_workflow_shrink(workflow, ShrinkSettings(object_threshold_bytes=0)) == "nothing_to_move"


def test_a_cluster_workflow_template_is_left_alone() -> None:
    """It runs in every namespace, and a value lives in one namespace's side store."""
    template = {**script_workflow("print(1)\n" * 600), "kind": "ClusterWorkflowTemplate"}
    assert plan_workflow_shrink(template, LOWEST) == "cluster_scoped"


def test_a_cron_workflows_patch_is_written_against_its_workflow_spec() -> None:
    workflow = script_workflow("print(1)\n" * 600)
    cron = {"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "c", "namespace": "ml"},
            "spec": {"schedules": ["0 * * * *"], "workflowSpec": workflow["spec"]}}
    stored, plan = shrunk(cron, ShrinkSettings(object_threshold_bytes=0))
    assert all(op["path"].startswith("/spec/workflowSpec/") for op in plan.ops)
    assert stored["spec"]["schedules"] == ["0 * * * *"]
    assert assert_pods_give_the_same(cron, stored, plan) == 1
    assert without_empty_metadata(as_workflow(restored_workflow(stored, blobs(plan)))) == as_workflow(cron)


# --- every published object ------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["argo-examples", "kfp-v1-argo", "kfp-v2-argo-compiled-workflows"])
def test_every_published_workflow_template_and_cron_workflow_runs_the_same_with_literals_moved(folder: str) -> None:
    """With every threshold at its lowest, each Workflow, CronWorkflow and WorkflowTemplate of the corpus that the
    simulator can expand: its pods, restored, give what the original's give (annotations and script sources
    included); the inverse is exact; nothing that holds `{{` moved."""
    import yaml

    compared, literals, pods, kinds = 0, 0, 0, set()
    for path in sorted(corpus_dir(folder).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") not in SHRUNK_KINDS:
                continue
            document = orjson.loads(orjson.dumps(document))
            document.setdefault("metadata", {})["namespace"] = "ml"
            plan = plan_workflow_shrink(document, LOWEST)
            if isinstance(plan, str):
                continue
            stored = jsonpatch.JsonPatch(plan.ops).apply(copy.deepcopy(document))
            assert without_empty_metadata(as_workflow(restored_workflow(stored, blobs(plan)))) == \
                without_empty_metadata(as_workflow(document)), path.name
            moved_literals = [m for m in plan.moved if m.name.startswith("templates[")]
            assert not any("{{" in m.value for m in moved_literals), path.name
            try:
                pods_of(as_workflow(document), "v3.7.18")
            except Exception:  # the simulator cannot expand every example (loops over outputs, resources…)
                continue
            pods += assert_pods_give_the_same(document, stored, plan)
            compared += 1
            literals += len(moved_literals)
            kinds.add(document["kind"])
    print(f"{folder}: {compared} objects compared ({', '.join(sorted(kinds))}), {pods} pods, {literals} template "
          "literals moved")
    assert compared > 0 and literals > 0 and pods > 0
    if folder == "argo-examples":
        assert {"CronWorkflow", "WorkflowTemplate", "Workflow"} <= kinds


# --- the property ----------------------------------------------------------------------------------------------

texts = st.text(alphabet=st.sampled_from("ab {}$\n\"\\é<&"), min_size=0, max_size=30)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(source=texts, command=st.lists(texts, max_size=3), env=texts, annotation=texts, default=texts,
       tagged=st.booleans(), kind=st.sampled_from(["Workflow", "CronWorkflow", "WorkflowTemplate"]))
def test_restore_of_shrink_is_what_every_pod_sees(
    source: str, command: list[str], env: str, annotation: str, default: str, tagged: bool, kind: str
) -> None:
    """Any template literals, in any of the three kinds: every pod restored is the original's; nothing holding
    `{{` moved; the inverse is exact."""
    args = ["{{inputs.parameters.p}}"] if tagged else ["fixed"]
    workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "namespace": "ml"},
                "spec": {"entrypoint": "main", "templates": [{
                    "name": "main", "metadata": {"annotations": {"pipelines.kubeflow.org/note": annotation}},
                    **({"inputs": {"parameters": [{"name": "p", "default": default}]}} if tagged else {}),
                    "script": {"image": "python", "command": command or ["python"], "args": args,
                               "env": [{"name": "E", "value": env}], "source": source}}]}}
    document = workflow if kind == "Workflow" else {
        **workflow, "kind": kind,
        "spec": {"schedules": ["* * * * *"], "workflowSpec": workflow["spec"]} if kind == "CronWorkflow"
        else workflow["spec"]}
    try:
        pods_of(as_workflow(document), "v3.7.18")
    except Exception:  # text the controller's substitution refuses inline: no pod either way
        return
    plan = plan_workflow_shrink(document, LOWEST)
    if isinstance(plan, str):
        return
    stored = jsonpatch.JsonPatch(plan.ops).apply(copy.deepcopy(document))
    assert not any("{{" in m.value for m in plan.moved)
    assert assert_pods_give_the_same(document, stored, plan) == 1
    assert without_empty_metadata(as_workflow(restored_workflow(stored, blobs(plan)))) == as_workflow(document)


# --- through the webhook ---------------------------------------------------------------------------------------


async def test_a_workflow_template_is_shrunk_at_create_and_at_a_spec_update_only(
    valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook
) -> None:
    source = "print('training')\n" * 5000  # 90 kB: the WorkflowTemplate passes the object threshold
    template = {**script_workflow(source), "kind": "WorkflowTemplate"}
    template["metadata"] = {"name": "train", "namespace": "ml"}
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = shrinking_webhook(start_webhook, tmp_path, sidestore.url, tls)
        admitted = await asyncio.to_thread(webhook.api.admit, "workflows", template)
        stored = admitted.object
        assert stored["spec"]["templates"][0]["script"]["source"] == reference_for(source).text
        async with sidestore.client() as client:
            assert await client.get("ml", reference_for(source).digest) == source.encode()
        # the cron controller's (or anyone's) write that leaves the spec as it is: nothing to do
        unchanged = await asyncio.to_thread(webhook.api.admit, "workflows", stored, operation="UPDATE",
                                            old_object=stored)
        assert unchanged.object == stored
        # `kubectl apply` of the original YAML again: moved again, to the same reference
        again = await asyncio.to_thread(webhook.api.admit, "workflows", template, operation="UPDATE",
                                        old_object=stored)
        assert again.object == stored


@pytest.mark.parametrize("kind", ["container", "script"])
def test_a_template_argo_offloads_at_run_time_is_refused_only_where_the_executor_reads_references(kind: str) -> None:
    """Substituted inputs can make ARGO_TEMPLATE pass 128 KiB at run time, and Argo (3.6+) then moves it to a
    ConfigMap restoring cannot reach. The executor reads a script's source there, never the copies of a container
    template's args, env or metadata: a container template's pod runs restored; a script's is refused."""
    from wfboost.shrink.restore import offloaded_slots

    body: dict[str, Any] = {"image": "busybox", "command": ["echo"], "args": ["done"]}
    if kind == "script":
        body = {**body, "command": ["sh"], "source": "echo {{inputs.parameters.note}}"}
    workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "w", "namespace": "ml"},
                "spec": {"entrypoint": "dag", "templates": [
                    {"name": "dag", "dag": {"tasks": [{"name": "t", "template": "work", "arguments": {"parameters": [
                        {"name": "notes", "value": "n" * 140_000}, {"name": "note", "value": "hi"}]}}]}},
                    {"name": "work", "metadata": {"annotations": {"pipelines.kubeflow.org/component_spec": "s" * 5000}},
                     "inputs": {"parameters": [{"name": "notes"}, {"name": "note"}], "artifacts": [
                         {"name": "n", "path": "/tmp/notes", "raw": {"data": "{{inputs.parameters.notes}}"}}]},
                     kind: body}]}}
    stored, plan = shrunk(workflow, ShrinkSettings(object_threshold_bytes=0))
    assert "templates[work].metadata.annotations[pipelines.kubeflow.org/component_spec]" in [m.name for m in plan.moved]
    [pod] = pods_of(as_workflow(stored), "v3.7.18")
    assert "offloaded" in orjson.dumps(pod.pod["spec"]).decode()  # Argo moved ARGO_TEMPLATE to its ConfigMap
    if kind == "script":
        assert offloaded_slots(pod.pod)  # its source may be a reference there: refused, never run
    else:
        assert offloaded_slots(pod.pod) == []
        assert assert_pods_give_the_same(workflow, stored, plan) == 1
