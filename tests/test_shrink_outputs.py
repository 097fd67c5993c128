"""Step outputs moved out of WorkflowTaskResults (`shrinkTaskResults`): which outputs may move (decided at Workflow
CREATE), the task result's value replaced by a reference held by the Workflow's uid, and the consumer's pod given the
value back — through HTTPS admission against a real side store (HTTPS, Valkey) and kmock's API server.

Pods and task results are built by tests/argo_source (written from Argo's Go source, not from wfboost); the
consumer's pod is built twice, as the controller would substitute the original value and the reference.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.argo_source import controller_pod, gojson, task_result
from tests.conftest import StartWebhook, Webhook, corpus_dir
from tests.harness.validate import validate_object
from tests.sidestore_fixtures import TOKENS, SideStoreTls, make_tls, run_sidestore
from tests.test_server import metric
from tests.test_shrink_workflows import what_containers_run, without_templates
from wfboost.kube import KubeConfig
from wfboost.shrink.outputs import MAX_OUTPUT_BYTES, analyse_task_outputs, plan_output_marks, why_output_stays
from wfboost.shrink.refs import PATTERN, reference_for

VERSION = "v3.7.18"
NS = "ml"
UID = "5d0c8a52-8d7a-4f0e-9a55-1f4f3f8c7b10"
WORKFLOWS = "argoproj.io/v1alpha1/workflows"
POLICY = """apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {shrinkTaskResults: true}
shrink: {valueThresholdBytes: 1024}
"""


def produce(outputs: list[str] | None = None) -> dict[str, Any]:
    return {"name": "produce", "script": {"image": "python:3.12", "command": ["python"],
                                          "source": "open('/tmp/p', 'w').write('x' * 50000)"},
            "outputs": {"parameters": [{"name": n, "valueFrom": {"path": f"/tmp/{n}"}} for n in outputs or ["p"]]}}


def consume(name: str = "consume") -> dict[str, Any]:
    return {"name": name, "inputs": {"parameters": [{"name": "data"}]},
            "container": {"image": "busybox", "command": ["sh", "-c"],
                          "args": ["printf %s \"$0\" | wc -c", "{{inputs.parameters.data}}"],
                          "env": [{"name": "DATA", "value": "data={{inputs.parameters.data}}"}]}}


def consume_env() -> dict[str, Any]:
    return {"name": "consume-env", "inputs": {"parameters": [{"name": "data"}]},
            "container": {"image": "busybox", "command": ["sh", "-c", "printf %s \"$DATA\" | wc -c"],
                          "env": [{"name": "DATA", "value": "{{inputs.parameters.data}}"}]}}


def consume_script() -> dict[str, Any]:
    return {"name": "consume-script", "inputs": {"parameters": [{"name": "data"}]},
            "script": {"image": "python:3.12", "command": ["python"],
                       "source": "print(len('''{{inputs.parameters.data}}'''))"}}


def task(name: str, template: str, value: str | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "template": template, **extra}
    if value is not None:
        found["arguments"] = {"parameters": [{"name": "data", "value": value}]}
    return found


def dag_workflow(tasks: list[dict[str, Any]], templates: list[dict[str, Any]] | None = None,
                 **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": "outs-x7k2p", "namespace": NS},
            "spec": {"entrypoint": "main", **spec, "templates": [
                *(templates if templates is not None else [produce(), consume(), consume_env()]),
                {"name": "main", "dag": {"tasks": tasks}}]}}


FROM_P = "{{tasks.producer.outputs.parameters.p}}"


def pipeline() -> dict[str, Any]:
    return dag_workflow([task("producer", "produce"),
                         task("consumer", "consume", FROM_P, depends="producer"),
                         task("reader", "consume-env", FROM_P, depends="producer")])


# --- the analysis ---------------------------------------------------------------------------------------------------


def test_an_output_only_copied_into_containers_may_move_and_its_consumers_are_marked() -> None:
    analysis = analyse_task_outputs(pipeline()["spec"])
    assert analysis.movable == {"p": MAX_OUTPUT_BYTES} and analysis.receivers == {"consume", "consume-env"}


@pytest.mark.parametrize(("change", "why"), [
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][1].update(when=f"'{FROM_P}' != ''"), "tasks[1].when"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][1].update(withParam=FROM_P), "a field the controller"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][1]["arguments"]["parameters"][0].update(
        value=f"x-{FROM_P}"), "inside a longer string"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][0].update(withItems=[1, 2]), "runs in a loop"),
    (lambda wf: wf["spec"]["templates"][0]["outputs"]["parameters"][0].update(globalName="g"), "globalName"),
    (lambda wf: wf["spec"]["templates"][0].update(memoize={"key": "k", "cache": {"configMap": {"name": "c"}}}),
     "memoize"),
    (lambda wf: wf["spec"]["templates"][1].update(podSpecPatch="{{inputs.parameters.data}}"), "spec.templates"),
    (lambda wf: wf["spec"]["templates"][1]["inputs"]["parameters"][0].update(enum=["a"]), "enum"),
    (lambda wf: wf["spec"]["templates"][3].update(outputs={"parameters": [
        {"name": "out", "valueFrom": {"parameter": FROM_P}}]}), "a field the controller"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][1].update(hooks={"exit": {
        "template": "consume", "arguments": {"parameters": [{"name": "data", "value": FROM_P}]}}}), "a field"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][2].update(
        when="{{=tasks.producer.outputs.result == 'x'}}"), "an expression can read step outputs"),
    (lambda wf: wf["spec"].update(templateDefaults={"timeout": "1h"}), "templateDefaults"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][1].update(template="elsewhere"), "not defined"),
    # an expression whose braces hide its tag from a `[^{}]` scan, and the bracket form that avoids the name
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][2].update(
        when="{{= len(toJson({'v': tasks.producer.outputs['parameters']['p']})) > 5000 }}"), "an expression"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][2].update(when="{{= len(toJson($env)) > 1 }}"),
     "an expression"),
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"][2].update(arguments={"parameters": [
        {"name": "data", "value": "x"}], "artifacts": [{"name": "a", "fromExpression":
                                                         "tasks.producer.outputs['parameters']['p'] == 'x'"}]}),
     "an expression"),
    # an inline producer of the same name, called in a loop (scope.go resolveArtifact, dag.go buildLocalScopeFromTask)
    (lambda wf: wf["spec"]["templates"][3]["dag"]["tasks"].append({"name": "loop", "withItems": [1, 2], "inline": {
        "container": {"image": "busybox"}, "outputs": {"parameters": [{"name": "p", "valueFrom": {"path": "/p"}}]}}}),
     "an inline template"),
    (lambda wf: wf["spec"]["templates"].__setitem__(1, {"name": "consume", "inputs": {"parameters": [
        {"name": "data"}]}, "suspend": {}}), "not a container, DAG or steps template"),
    # the executor reads a script's source from ARGO_TEMPLATE, which Argo may move to a ConfigMap at run time
    (lambda wf: (wf["spec"]["templates"].append(consume_script()),
                 wf["spec"]["templates"][3]["dag"]["tasks"][2].update(template="consume-script")), "script"),
])
def test_any_use_the_controller_evaluates_keeps_every_value_of_that_output_inline(change: Any, why: str) -> None:
    workflow = pipeline()
    change(workflow)
    analysis = analyse_task_outputs(workflow["spec"])
    assert analysis.movable == {}
    assert why in analysis.kept["p"], analysis.kept["p"]


def test_steps_consumers_and_nested_templates_are_followed() -> None:
    workflow = dag_workflow([], [produce(), consume(), {
        "name": "inner", "inputs": {"parameters": [{"name": "data"}]},
        "steps": [[{"name": "use", "template": "consume",
                    "arguments": {"parameters": [{"name": "data", "value": "{{inputs.parameters.data}}"}]}}]]}])
    workflow["spec"]["templates"][-1] = {"name": "main", "steps": [
        [{"name": "make", "template": "produce"}],
        [{"name": "pass", "template": "inner", "arguments": {"parameters": [
            {"name": "data", "value": "{{steps.make.outputs.parameters.p}}"}]}}]]}
    analysis = analyse_task_outputs(workflow["spec"])
    assert analysis.movable == {"p": MAX_OUTPUT_BYTES} and analysis.receivers == {"inner", "consume"}
    workflow["spec"]["templates"][2]["steps"][0][0]["when"] = "{{inputs.parameters.data}} == a"
    assert "when" in analyse_task_outputs(workflow["spec"]).kept["p"]


def test_consumers_are_marked_at_create_and_the_stored_workflow_is_judged_as_it_is() -> None:
    workflow = pipeline()
    marks = plan_output_marks(workflow)
    stored = apply(workflow, marks.ops)
    assert "annotations" not in stored["metadata"]  # nothing the task-result side would have to trust
    assert stored["spec"]["templates"][1]["metadata"]["labels"] == {
        "wfboost.io/restore": "true", "wfboost.io/template-refs": "unread"}
    assert stored["spec"]["templates"][2]["metadata"]["labels"] == stored["spec"]["templates"][1]["metadata"]["labels"]
    validate_object(stored)
    assert set(analyse_task_outputs(stored["spec"], stored=True).movable) == {"p"}
    # as the controller writes it back (Go's encoding of every template: empty inputs, outputs, resources…)
    written = copy.deepcopy(stored)
    written["spec"]["templates"] = [gojson.template(t) for t in stored["spec"]["templates"]]
    assert set(analyse_task_outputs(written["spec"], stored=True).movable) == {"p"}
    # the unmarked original, as stored (created while the feature was off, or admitted unchanged): nothing moves
    assert "not marked for restoring" in analyse_task_outputs(workflow["spec"], stored=True).kept["p"]
    # a copy (argo resubmit, kubectl get -o yaml) whose consumer now evaluates the output: nothing moves
    copied = copy.deepcopy(stored)
    copied["spec"]["templates"][3]["dag"]["tasks"][1]["when"] = f"'{FROM_P}' != ''"
    assert analyse_task_outputs(copied["spec"], stored=True).movable == {}


@pytest.mark.parametrize(("value", "why"), [
    ("x" * 100, "under"), ("x" * 5000, "over the 4096"), ("a{{b}}" * 300, "`{{`"),
    (reference_for("v").text + "y" * 2000, "reference"), ("}" + "y" * 2000, "starts with"),
    ("y" * 2000 + "\x01", "cannot write as JSON"),
])
def test_a_reported_value_that_cannot_travel_stays_inline(value: str, why: str) -> None:
    reason = why_output_stays(value, 4096, 1024)
    assert reason is not None and why in reason
    assert why_output_stays("y" * 2000, 4096, 1024) is None


# Ways a consumer can use an output, and whether it only reaches containers: an oracle written from Argo's
# semantics (operator.go addOutputsToLocalScope; the fields the controller evaluates), independent of the module.
USES: dict[str, tuple[bool, Any]] = {
    "argument to a container": (True, lambda t: {"template": "consume", "arguments": {"parameters": [
        {"name": "data", "value": t}]}}),
    "argument to an env value": (True, lambda t: {"template": "consume-env", "arguments": {"parameters": [
        {"name": "data", "value": t}]}}),
    "argument to a script": (False, lambda t: {"template": "consume-script", "arguments": {"parameters": [
        {"name": "data", "value": t}]}}),
    "when": (False, lambda t: {"template": "consume", "when": f"{t} == a", "arguments": {"parameters": [
        {"name": "data", "value": "b"}]}}),
    "withParam": (False, lambda t: {"template": "consume", "withParam": t, "arguments": {"parameters": [
        {"name": "data", "value": "{{item}}"}]}}),
    "longer argument": (False, lambda t: {"template": "consume", "arguments": {"parameters": [
        {"name": "data", "value": f"[{t}]"}]}}),
    "argument artifact": (False, lambda t: {"template": "consume", "arguments": {
        "parameters": [{"name": "data", "value": "b"}], "artifacts": [{"name": "a", "raw": {"data": t}}]}}),
}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(USES)), st.sampled_from(["p", "q"])), min_size=1, max_size=5),
       st.booleans())
def test_an_output_moves_exactly_when_every_use_of_it_only_reaches_containers(
        uses: list[tuple[str, str]], looped: bool) -> None:
    tasks = [task("producer", "produce", withItems=[1, 2]) if looped else task("producer", "produce")]
    for index, (use, name) in enumerate(uses):
        tasks.append({"name": f"c{index}", "depends": "producer",
                      **USES[use][1](f"{{{{tasks.producer.outputs.parameters.{name}}}}}")})
    workflow = dag_workflow(tasks, [produce(["p", "q"]), consume(), consume_env(), consume_script()])
    analysis = analyse_task_outputs(workflow["spec"])
    for name in ("p", "q"):
        expected = not looped and all(USES[use][0] for use, used in uses if used == name)
        assert (name in analysis.movable) is expected, (name, uses, analysis.kept)


def _workflow_files(folder: str) -> Iterator[dict[str, Any]]:
    for path in sorted(corpus_dir(folder).rglob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Workflow" and isinstance(doc.get("spec"), dict):
                yield doc


_ARGUMENT = re.compile(r"\{\{(?:tasks|steps)\.[^.{}]+\.outputs\.parameters\.([^{}]+)\}\}")


def _strings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _strings(item, (*path, index))


@pytest.mark.parametrize("folder", ["argo-examples", "kfp-v1-argo", "kfp-v2-argo", "kfp-v2-argo-compiled-workflows",
                                    "workflows-with-status"])
def test_no_corpus_output_the_controller_evaluates_is_ever_marked_movable(folder: str) -> None:
    """Every mention of a movable output in a published Workflow is a whole task or step argument, and every
    workflow keeps a valid object once marked (checked independently of the analysis)."""
    seen = marked = 0
    for workflow in _workflow_files(folder):
        seen += 1
        marks = plan_output_marks(workflow)
        for name in marks.analysis.movable:
            marked += 1
            for path, text in _strings(workflow["spec"]):
                if not re.search(rf"outputs\.parameters\.{re.escape(name)}(?![\w.-])", text):
                    continue  # (`….outputs.parameters.<name>.path` is the file's path, not the value)
                found = _ARGUMENT.fullmatch(text.strip())
                assert found is not None and found[1] == name, (workflow["metadata"], path, text)
                assert path[-4:-1] == ("arguments", "parameters", path[-2]) and path[-1] == "value", path
        if marks.ops:
            validate_object(apply(workflow, marks.ops))
    assert seen > 0, f"no Workflow in the corpus folder {folder}"
    print(f"{folder}: {seen} workflows, {marked} movable outputs")


def apply(obj: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    import jsonpatch

    return jsonpatch.JsonPatch(ops).apply(copy.deepcopy(obj))  # type: ignore[no-any-return]


# --- end to end ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("sidestore-tls"))


def outputs_webhook(start_webhook: StartWebhook, tmp_path: Path, url: str, tls: SideStoreTls,
                    kube_url: str) -> Webhook:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    token = tmp_path / "token"
    token.write_text(TOKENS["admin"])
    return start_webhook(settings={"policy_path": policy, "sidestore_url": url, "sidestore_token_file": token,
                                   "sidestore_ca_file": tls.ca_file, "kube_config": KubeConfig.from_url(kube_url)})


def template(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in workflow["spec"]["templates"] if t["name"] == name)


async def test_a_big_output_travels_as_a_reference_and_its_consumers_get_it_back(
    valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook, kmock: Any
) -> None:
    kmock.resources[WORKFLOWS] = {}
    workflow = pipeline()
    # 64 kB, with what JSON escapes; no final newline (the executor trims one: executor.go SaveParameters)
    value = "\n".join(f"line {i}: \"quoted\" and 'single' \\ back" for i in range(1500))
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = outputs_webhook(start_webhook, tmp_path, sidestore.url, tls, str(kmock.url))
        admitted = await asyncio.to_thread(webhook.api.admit, "workflows", workflow)
        stored = admitted.object
        assert stored["spec"]["templates"][1]["metadata"]["labels"]["wfboost.io/restore"] == "true"
        validate_object(stored)
        stored["metadata"]["uid"] = UID
        kmock.objects[WORKFLOWS, NS, stored["metadata"]["name"]] = stored

        name = stored["metadata"]["name"]
        producer = controller_pod(VERSION, name, UID, NS, template(stored, "produce"), f"{name}.producer").pod
        result = task_result(VERSION, producer, {"parameters": {"p": value}})
        moved = (await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", result)).object
        [parameter] = moved["outputs"]["parameters"]
        reference = reference_for(value)
        assert parameter["value"] == reference.text
        async with sidestore.client() as client:
            info = await client.info(NS, reference.digest)
        assert [r["ref"] for r in info["refs"]] == [f"workflow:{UID}"]  # kept while this Workflow exists
        assert metric(webhook, "wfboost_shrink_values_moved_total") == 1
        # the wait container's later merge patches carry the reference back: nothing more to do
        again = await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", moved, operation="UPDATE",
                                        old_object=moved)
        assert again.patch == []

        for consumer in ("consume", "consume-env"):
            node = f"{name}.{consumer}"
            original = controller_pod(VERSION, name, UID, NS, template(workflow, consumer), node,
                                      inputs={"data": value}).pod
            shrunk = controller_pod(VERSION, name, UID, NS, template(stored, consumer), node,
                                    inputs={"data": reference.text}).pod
            assert shrunk["metadata"]["labels"]["wfboost.io/restore"] == "true"
            restored = (await asyncio.to_thread(webhook.api.admit, "restore", shrunk)).object
            assert what_containers_run(restored, None) == what_containers_run(original, None)
            assert PATTERN.search(json.dumps(without_templates(restored))) is None
        # a dry run, a task result of another Workflow, an uninteresting one: nothing moves, nothing is read
        dry = await asyncio.to_thread(lambda: webhook.api.admit("workflowtaskresults", result, dry_run=True))
        assert dry.patch == []
        stranger = copy.deepcopy(result)
        stranger["metadata"]["ownerReferences"][0]["uid"] = "another-uid"
        assert (await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", stranger)).patch == []

    # the side store is gone: the value stays inline (fail open), counted
    other = copy.deepcopy(result)
    other["outputs"]["parameters"][0]["value"] = value + "more"
    assert (await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", other)).patch == []
    assert metric(webhook, "wfboost_fail_open_total", reason="sidestore_unavailable") == 1


async def test_a_marked_pod_whose_template_argo_offloaded_with_references_is_refused(
    tmp_path: Path, start_webhook: StartWebhook, kmock: Any, valkey: Any, tls: SideStoreTls
) -> None:
    """Values arriving at run time can make Argo (3.6+) move a template to a ConfigMap named after the pod: the pod
    then holds no reference, its executor reads them there. Refused (400), unless the ConfigMap holds none."""
    kmock.resources["v1/configmaps"] = {}
    script = {**consume_script(), "metadata": {"labels": {"wfboost.io/restore": "true"}}}
    script["inputs"] = {"parameters": [{"name": "data"}, {"name": "pad"}]}
    script["script"] = {**script["script"], "source": "print('{{inputs.parameters.data}}{{inputs.parameters.pad}}')"}
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = outputs_webhook(start_webhook, tmp_path, sidestore.url, tls, str(kmock.url))
        for data, refused in ((reference_for("v" * 5000).text, True), ("plain", False)):
            created = controller_pod(VERSION, "outs-x7k2p", UID, NS, script, f"outs-x7k2p.r-{refused}",
                                     inputs={"data": data, "pad": "p" * 140_000})
            assert created.configmap is not None and PATTERN.search(json.dumps(created.pod)) is None
            name = created.pod["metadata"]["name"]
            kmock.objects["v1/configmaps", NS, name] = created.configmap
            answer = await asyncio.to_thread(webhook.api.answer, "restore", created.pod)
            assert answer["allowed"] is not refused, answer
            if refused:
                assert answer["status"]["code"] == 400
                assert "offload ConfigMap, which holds references" in answer["status"]["message"]


async def test_a_spec_written_back_without_the_restore_marks_keeps_them(
    tmp_path: Path, start_webhook: StartWebhook, kmock: Any, valkey: Any, tls: SideStoreTls
) -> None:
    """`kubectl replace -f` of the original manifest while the Workflow runs: its nodes may hold references already,
    so the marks stay (and a status write that keeps them changes nothing)."""
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = outputs_webhook(start_webhook, tmp_path, sidestore.url, tls, str(kmock.url))
        original = pipeline()
        stored = (await asyncio.to_thread(webhook.api.admit, "workflows", original)).object
        replaced = await asyncio.to_thread(webhook.api.admit, "workflows", original, operation="UPDATE",
                                           old_object=stored)
        assert replaced.object["spec"]["templates"] == stored["spec"]["templates"]
        status = copy.deepcopy(stored)
        status["status"] = {"phase": "Running"}
        again = await asyncio.to_thread(webhook.api.admit, "workflows", status, operation="UPDATE",
                                        old_object=stored)
        assert again.patch == []


def test_a_script_marked_for_restoring_never_keeps_an_unread_label() -> None:
    """The executor reads a script's source from its template: `unread` (copied or written) is not true of it."""
    from wfboost.shrink.workflow import label_ops

    script = {**consume_script(), "metadata": {"labels": {"wfboost.io/template-refs": "unread", "team": "a"}}}
    marked = apply({"spec": {"templates": [script]}}, label_ops({"templates": [script]}, {"consume-script"}))
    assert marked["spec"]["templates"][0]["metadata"]["labels"] == {"team": "a", "wfboost.io/restore": "true"}
