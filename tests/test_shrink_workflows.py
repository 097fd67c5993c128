"""Shrinking Workflows end to end: values moved at Workflow CREATE, restored at pod CREATE, through HTTPS admission
against a real side store (HTTPS, Valkey) — the API server's part played by the harness.

The Kubeflow-shaped Workflow (wfboost_dev/argosim/kubeflow.py) is written by hand after the structure of KFP v2's
compiled output (every component and implementation JSON a workflow argument `components-<hash>` /
`implementations-<hash>`, passed by a DAG task to the `system-container-driver` template, whose container takes them
as arguments). Pods are built by the development simulator for the original and for the stored Workflow; restoring
the second must give every process the strings of the first, byte for byte.
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
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import StartWebhook, Webhook, corpus_dir
from tests.sidestore_fixtures import TOKENS, SideStoreTls, make_tls, run_sidestore
from tests.test_server import metric
from wfboost.kube import KubeConfig
from wfboost.shrink.analysis import analyse_workflow_arguments
from wfboost.shrink.refs import PATTERN, reference_for
from wfboost.shrink.restore import RestoreRefused, restore_ops
from wfboost_dev.argosim.kubeflow import kubeflow_shaped
from wfboost_dev.demo.plan import PodToAdmit, plan_workflow

POLICY = """apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {shrinkWorkflows: true}
shrink: {valueThresholdBytes: %d, objectThresholdBytes: %d}
"""
ETCD_LIMIT = 1_572_864  # etcd's default --max-request-bytes


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SideStoreTls:
    return make_tls(tmp_path_factory.mktemp("sidestore-tls"))


def shrinking_policy(tmp_path: Path, value: int = 4096, whole: int = 65536,
                     controller_version: str | None = None) -> tuple[Path, Path]:
    """A policy with shrinking on (and the oldest controller version, for Argo's argument offload), and the side
    store's admin token: (policy file, token file)."""
    policy = tmp_path / "policy.yaml"
    text = POLICY % (value, whole)
    if controller_version is not None:
        text = text.replace("objectThresholdBytes:",
                            f"controllerVersion: '{controller_version}', objectThresholdBytes:")
    policy.write_text(text)
    token = tmp_path / "token"
    token.write_text(TOKENS["admin"])
    return policy, token


def shrinking_webhook(start_webhook: StartWebhook, tmp_path: Path, url: str, tls: SideStoreTls,
                      value: int = 4096, whole: int = 65536, *, controller_version: str | None = None,
                      kube_url: str | None = None) -> Webhook:
    policy, token = shrinking_policy(tmp_path, value, whole, controller_version)
    settings: dict[str, Any] = {"policy_path": policy, "sidestore_url": url, "sidestore_token_file": token,
                                "sidestore_ca_file": tls.ca_file}
    if kube_url is not None:
        settings["kube_config"] = KubeConfig.from_url(kube_url)
    return start_webhook(settings=settings)


def moved_values(workflow: dict[str, Any]) -> list[str]:
    return [p["value"] for p in workflow["spec"]["arguments"]["parameters"]]


def without_templates(pod: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(pod)
    for field in ("initContainers", "containers"):
        for container in copied["spec"].get(field) or []:
            container["env"] = [e for e in container.get("env") or [] if e["name"] != "ARGO_TEMPLATE"]
    return copied


def templates_of(pod: dict[str, Any]) -> list[str]:
    return [e["value"] for field in ("initContainers", "containers") for c in pod["spec"].get(field) or []
            for e in c.get("env") or [] if e["name"] == "ARGO_TEMPLATE"]


def expanded(template: str, values: dict[str, str]) -> str:
    """ARGO_TEMPLATE with each reference replaced by its value, JSON-escaped, to compare as JSON."""
    return PATTERN.sub(lambda m: json.dumps(values[m[0]])[1:-1], template)


def pods_of(workflow: dict[str, Any], layout: str) -> list[PodToAdmit]:
    named = copy.deepcopy(workflow)
    named["metadata"]["name"] = "pipeline-x7k2p"
    return plan_workflow(named, layout, namespace="ml").pods


def without_empty_metadata(workflow: dict[str, Any]) -> dict[str, Any]:
    """The Workflow without the `metadata: {}` that shrinking may leave on a template (documented in inverse.py)."""
    copied = copy.deepcopy(workflow)
    for template in copied["spec"].get("templates") or []:
        if template.get("metadata") == {}:
            del template["metadata"]
    return copied


def what_containers_run(pod: dict[str, Any], configmap: dict[str, Any] | None) -> list[tuple[Any, ...]]:
    """Each container's image, argv and environment as the process gets them: arguments Argo offloaded to its
    ConfigMap (3.7.10+, over 128 KiB in all) read from there; Argo's own ARGO_TEMPLATE compared separately."""
    found = []
    for field in ("initContainers", "containers"):
        for container in pod["spec"].get(field) or []:
            env = {e["name"]: e.get("value") for e in container.get("env") or []}
            args = container.get("args") or []
            if "ARGO_CONTAINER_ARGS_FILE" in env:
                assert configmap is not None
                args = json.loads(configmap["data"]["ARGO_CONTAINER_ARGS_FILE"])
            env.pop("ARGO_CONTAINER_ARGS_FILE", None)
            env.pop("ARGO_TEMPLATE", None)
            found.append((container["name"], container["image"], [*(container.get("command") or []), *args], env))
    return found


@pytest.mark.parametrize("layout", ["v3.5.14", "v3.7.18"])
async def test_a_kubeflow_workflow_over_etcds_limit_is_stored_and_its_pods_get_every_value_back(
    layout: str, valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook
) -> None:
    workflow = kubeflow_shaped(12, 100_000)
    assert len(orjson.dumps(workflow)) > ETCD_LIMIT  # etcd would refuse it as it is
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = shrinking_webhook(start_webhook, tmp_path, sidestore.url, tls)
        admitted = await asyncio.to_thread(webhook.api.admit, "workflows", workflow)
        stored = admitted.object
        assert len(orjson.dumps(stored)) < ETCD_LIMIT // 20, len(orjson.dumps(stored))
        moved = [p for p in stored["spec"]["arguments"]["parameters"] if PATTERN.fullmatch(p["value"])]
        assert len(moved) == 24
        assert stored["spec"]["templates"][0]["metadata"]["labels"] == {
            "wfboost.io/restore": "true", "wfboost.io/template-refs": "unread"}  # a container template
        assert metric(webhook, "wfboost_shrink_values_moved_total") == 24

        values = {reference_for(p["value"]).text: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
        originals, shrunk = pods_of(workflow, layout), pods_of(stored, layout)
        assert len(originals) == len(shrunk) == 12
        for original, planned in zip(originals, shrunk, strict=True):
            pod = planned.pod
            assert planned.configmap is None  # with references, nothing is big enough for Argo to offload
            assert pod["metadata"]["labels"]["wfboost.io/restore"] == "true"  # routed to the restoring entry
            assert PATTERN.search(json.dumps(pod))
            restored = (await asyncio.to_thread(webhook.api.admit, "restore", pod)).object
            # every process gets exactly the strings the unshrunk Workflow's pod gave it; in ARGO_TEMPLATE, which
            # the executor reads only for what a reference cannot reach here, the copies stay references
            assert what_containers_run(restored, None) == what_containers_run(original.pod, original.configmap)
            assert PATTERN.search(json.dumps(without_templates(restored))) is None
            expected = original.configmap["data"] if original.configmap and "ARGO_TEMPLATE" in original.configmap[
                "data"] else None
            theirs_all = [expected["ARGO_TEMPLATE"]] if expected else templates_of(original.pod)
            for ours, theirs in zip(templates_of(restored), theirs_all, strict=True):
                unshrunk = json.loads(theirs)
                unshrunk["metadata"] = {"labels": {"wfboost.io/restore": "true",  # the marks are in the template too
                                                   "wfboost.io/template-refs": "unread"}}
                assert json.loads(expanded(ours, values)) == unshrunk
        assert metric(webhook, "wfboost_admission_requests_total", route="restore", outcome="restored") == 12

        # A Workflow created from the stored one (`argo resubmit`) is not shrunk again and restores the same way.
        again = await asyncio.to_thread(webhook.api.admit, "workflows", stored)
        assert again.patch == []

        # A dry run writes nothing, so it points at nothing either.
        other = kubeflow_shaped(3, 100_000, seed=9)
        dry = await asyncio.to_thread(lambda: webhook.api.admit("workflows", other, dry_run=True))
        assert dry.patch == []
        first = reference_for(other["spec"]["arguments"]["parameters"][0]["value"])
        async with sidestore.client() as client:
            assert await client.head("ml", first.digest) is None
            assert await client.head("ml", reference_for(moved_values(workflow)[0]).digest) == len(
                moved_values(workflow)[0].encode())


async def test_pods_that_cannot_get_their_values_are_refused_never_started(
    valkey: Any, tls: SideStoreTls, tmp_path: Path, start_webhook: StartWebhook
) -> None:
    workflow = kubeflow_shaped(2, 20_000)
    async with run_sidestore(valkey, tls, tmp_path) as sidestore:
        webhook = shrinking_webhook(start_webhook, tmp_path, sidestore.url, tls, whole=1024)
        stored = (await asyncio.to_thread(webhook.api.admit, "workflows", workflow)).object
        pod = pods_of(stored, "v3.7.18")[0].pod
        # a value the side store does not have: never restorable (400, the node fails with the message)
        fake = reference_for("never stored").text
        missing = json.loads(PATTERN.sub(fake, json.dumps(pod), count=1))
        answer = await asyncio.to_thread(webhook.api.answer, "restore", missing)
        assert answer["allowed"] is False and answer["status"]["code"] == 400
        assert "is not in the side store for namespace ml" in answer["status"]["message"]
    # the side store is gone: 429, which Argo's controller retries
    answer = await asyncio.to_thread(webhook.api.answer, "restore", pod)
    assert answer["allowed"] is False and answer["status"]["code"] == 429
    assert answer["status"]["reason"] == "TooManyRequests"
    assert "the side store is unreachable" in answer["status"]["message"]
    # and a new Workflow is admitted unchanged (fail open), counted
    assert (await asyncio.to_thread(webhook.api.admit, "workflows", workflow)).patch == []
    assert metric(webhook, "wfboost_fail_open_total", reason="sidestore_unavailable") == 1


def test_a_restored_argument_over_linuxs_limit_is_refused() -> None:
    value = "v" * 70_000
    ref = reference_for(value)
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "main", "image": "busybox", "args": [f"{ref.text}{ref.text}"]}]}}
    with pytest.raises(RestoreRefused, match=r"containers\[main\]\.args\[0\] would be 140001 bytes restored"):
        restore_ops(pod, {ref: value})
    pod["spec"]["containers"][0]["args"] = [ref.text]
    assert restore_ops(pod, {ref: value})[0]["value"] == value
    many = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "main", "image": "busybox", "args": [ref.text] * 31}]}}
    with pytest.raises(RestoreRefused, match=r"would get 2170031 bytes of arguments and environment restored"):
        restore_ops(many, {ref: value})
    pod["spec"]["nodeSelector"] = {"x": ref.text}  # where nothing restores it
    with pytest.raises(RestoreRefused, match="outside its containers"):
        restore_ops(pod, {ref: value})


@pytest.mark.parametrize("folder", ["kfp-v2-argo-compiled-workflows", "argo-examples", "kfp-v1-argo"])
def test_no_value_the_controller_evaluates_is_ever_moved(folder: str) -> None:
    """Every published Workflow: a movable argument's every mention sits in a container string or passes, whole,
    into a template input that is itself only used so; Kubeflow's components and implementations always move."""
    import yaml

    seen = kubeflow = 0
    for path in sorted(corpus_dir(folder).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") != "Workflow":
                continue
            analysis = analyse_workflow_arguments(document.get("spec"))
            text = json.dumps(document.get("spec"))
            for name in analysis.movable:
                for field in ("when", "withParam", "withItems", "depends", "podSpecPatch", "memoize", "expression"):
                    assert not _mentioned_under(document["spec"], field, name), (path.name, name, field)
                assert "{{=" not in text or "parameters" not in text.split("{{=", 1)[1][:200], (path.name, name)
            for parameter in (document.get("spec", {}).get("arguments") or {}).get("parameters") or []:
                if parameter["name"].startswith(("components-", "implementations-")) and folder.startswith("kfp-v2"):
                    assert parameter["name"] in analysis.movable, (path.name, parameter["name"])
                    kubeflow += 1
            seen += 1
    assert seen > 0
    if folder.startswith("kfp-v2"):
        assert kubeflow > 100


def _mentioned_under(node: Any, field: str, name: str, inside: bool = False) -> bool:
    if isinstance(node, dict):
        return any(_mentioned_under(v, field, name, inside or k == field) for k, v in node.items())
    if isinstance(node, list):
        return any(_mentioned_under(v, field, name, inside) for v in node)
    return inside and isinstance(node, str) and f"workflow.parameters.{name}" in node


text_pieces = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(text_pieces, min_size=1, max_size=4), layout=st.lists(st.tuples(text_pieces, st.integers(0, 3)),
                                                                           min_size=1, max_size=6))
def test_restoring_a_pod_gives_the_strings_substitution_would_have(values: list[str], layout: list[Any]) -> None:
    """restore(shrink(x)) == x for the strings a container gets, whatever the values hold."""
    references = [reference_for(value) for value in values]
    by_ref = dict(zip(references, values, strict=True))

    def compose(use: Any) -> str:
        return "".join(prefix + use(index % len(values)) for prefix, index in layout)

    original = compose(lambda i: values[i])
    shrunk = compose(lambda i: references[i].text)
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "main", "image": "busybox", "args": [shrunk, "plain"], "command": [shrunk],
        "env": [{"name": "X", "value": shrunk}, {"name": "Y", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]}]}}
    restored = jsonpatch.JsonPatch(restore_ops(pod, by_ref)).apply(copy.deepcopy(pod))
    main = restored["spec"]["containers"][0]
    assert main["args"] == [original, "plain"] and main["command"] == [original]
    assert main["env"][0]["value"] == original and main["env"][1] == pod["spec"]["containers"][0]["env"][1]


controller_fields = st.sampled_from([
    ("when", "{{inputs.parameters.component}} == x"),
    ("withParam", "{{inputs.parameters.component}}"),
    ("podSpecPatch", '{"containers":[{"name":"main","args":["{{inputs.parameters.component}}"]}]}'),
    ("memoize", {"key": "{{inputs.parameters.component}}", "cache": {"configMap": {"name": "c"}}}),
    ("synchronization", {"mutex": {"name": "{{inputs.parameters.component}}"}}),
    ("activeDeadlineSeconds", "{{inputs.parameters.component}}"),
    ("metadata", {"annotations": {"a": "{{inputs.parameters.component}}"}}),
    ("outputs", {"parameters": [{"name": "o", "valueFrom": {"path": "/tmp/{{inputs.parameters.component}}"}}]}),
    ("container.args", ["{{=inputs.parameters.component}}"]),
])


@settings(max_examples=60, deadline=None)
@given(field=controller_fields, components=st.integers(1, 4))
def test_a_value_the_controller_evaluates_anywhere_is_never_moved(field: tuple[str, Any], components: int) -> None:
    workflow = kubeflow_shaped(components, 200)
    driver = workflow["spec"]["templates"][0]
    name, value = field
    if name == "container.args":
        driver["container"]["args"] = [*driver["container"]["args"], *value]
    else:
        driver[name] = value
    analysis = analyse_workflow_arguments(workflow["spec"])
    assert not any(n.startswith("components-") for n in analysis.movable), (name, analysis.movable)
    assert all(n.startswith("implementations-") for n in analysis.movable)


@pytest.mark.parametrize("folder", ["kfp-v2-argo-compiled-workflows", "argo-examples", "kfp-v1-argo"])
def test_every_published_workflow_runs_the_same_shrunk_and_restored(folder: str) -> None:
    """Each Workflow the simulator can expand: shrunk with every threshold at its lowest, its pods restored, every
    process gets the strings the original's pods gave it."""
    import yaml

    from wfboost.policy.model import ShrinkSettings
    from wfboost.shrink.inverse import restored_workflow
    from wfboost.shrink.tables import parse_table
    from wfboost.shrink.workflow import plan_workflow_shrink

    settings = ShrinkSettings(value_threshold_bytes=1, object_threshold_bytes=0)
    compared = moved = tabled = 0
    for path in sorted(corpus_dir(folder).glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") != "Workflow":
                continue
            document = orjson.loads(orjson.dumps(document))
            document.setdefault("metadata", {})["namespace"] = "ml"
            plan = plan_workflow_shrink(document, settings)
            if isinstance(plan, str):
                continue
            stored = jsonpatch.JsonPatch(plan.ops).apply(copy.deepcopy(document))
            values = {m.reference: m.value for m in plan.moved}
            tables = {t.reference: parse_table(t.reference, t.data.decode()) for t in plan.tables}
            back = restored_workflow(stored, values | {t.reference: t.data.decode() for t in plan.tables})
            assert without_empty_metadata(back) == without_empty_metadata(document), path.name
            try:
                originals, shrunk = pods_of(document, "v3.7.18"), pods_of(stored, "v3.7.18")
            except Exception:
                continue
            assert len(originals) == len(shrunk), path.name
            for original, planned in zip(originals, shrunk, strict=True):
                restored = jsonpatch.JsonPatch(restore_ops(planned.pod, values, tables)).apply(
                    copy.deepcopy(planned.pod))
                assert what_containers_run(restored, planned.configmap) == what_containers_run(
                    original.pod, original.configmap), path.name
            compared += 1
            moved += len(plan.moved)
            tabled += len(plan.tables)
    print(f"{folder}: {compared} workflows compared, {moved} values moved, {tabled} argument tables")
    assert compared > 0 and moved > 0, (compared, moved)


def _spec_using(extra_args: list[str], **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "big", "value": "x" * 5000}]},
        "templates": [{"name": "main", "inputs": {"parameters": [{"name": "big"}]},
                       "container": {"image": "busybox", "args": ["{{inputs.parameters.big}}", *extra_args]}}],
    }
    spec.update(changes)
    return spec


@pytest.mark.parametrize(
    ("spec", "kept_because"),
    [
        (_spec_using(["{{workflow.parameters.json}}"]), "hands every argument over at once"),
        (_spec_using(["{{workflow.parameters}}"]), "hands every argument over at once"),
        (_spec_using(["{{inputs.parameters}}"]), "hands every input over at once"),
        (_spec_using(["{{=toJson(inputs)}}"]), "an expression reads values"),
        (_spec_using(["{{=sprig.toJson(workflow)}}"]), "an expression reads values"),
        (_spec_using([], templates=[
            {"name": "main", "steps": [[{"name": "s", "templateRef": {"name": "lib", "template": "t"}}]]}]),
         "templateRef"),
        (_spec_using([], arguments={"parameters": [{"name": "big", "value": "x" * 5000, "enum": ["x" * 5000]}]}),
         "enum"),
        (_spec_using(["wfboost-ref:v1:3:" + "0" * 64]), "already holds reference text"),
    ],
)
def test_what_reads_every_value_or_cannot_be_seen_keeps_arguments_inline(
    spec: dict[str, Any], kept_because: str
) -> None:
    analysis = analyse_workflow_arguments(spec)
    assert "big" not in analysis.movable
    assert kept_because in analysis.kept["big"]


def test_a_task_exit_handler_receives_the_workflows_arguments_and_is_marked() -> None:
    """dag.go: `task.GetExitHook(woc.execWf.Spec.Arguments)`: an exit handler gets the Workflow's arguments."""
    spec = _spec_using([])
    spec["templates"].append({"name": "dag", "dag": {"tasks": [{"name": "t", "template": "main", "onExit": "bye"}]}})
    spec["templates"].append({"name": "bye", "inputs": {"parameters": [{"name": "big"}]},
                              "container": {"image": "busybox", "args": ["{{inputs.parameters.big}}"]}})
    assert analyse_workflow_arguments(spec).movable["big"] == {"main", "bye"}
    spec["templates"][2]["container"]["args"] = ["--when", "ok"]
    spec["templates"][2]["podSpecPatch"] = "{{inputs.parameters.big}}"
    assert "podSpecPatch" in analyse_workflow_arguments(spec).kept["big"]


def test_a_script_too_big_to_stay_in_its_template_stays_inline() -> None:
    """Restored into ARGO_TEMPLATE, a 120 kB script makes it pass 128 KiB, where Argo would offload the template
    to a ConfigMap (workflowpod.go) that restoring cannot reach: the value stays, and Argo offloads it as usual."""
    from wfboost.policy.model import ShrinkSettings
    from wfboost.shrink.workflow import plan_workflow_shrink

    source = "print('a')\n" * 10_000
    workflow = {"metadata": {"name": "w", "namespace": "ml"}, "spec": {
        "entrypoint": "main", "arguments": {"parameters": [{"name": "src", "value": source}]},
        "templates": [{"name": "main", "inputs": {"parameters": [{"name": "src"}]},
                       "script": {"image": "python", "command": ["python"], "source": "{{inputs.parameters.src}}"}}]}}
    assert plan_workflow_shrink(workflow, ShrinkSettings(object_threshold_bytes=0)) == "nothing_to_move"
    smaller = "print('a')\n" * 2_000
    workflow["spec"]["arguments"]["parameters"][0]["value"] = smaller
    plan = plan_workflow_shrink(workflow, ShrinkSettings(object_threshold_bytes=0))
    assert not isinstance(plan, str) and [m.name for m in plan.moved] == ["src"]


def test_a_pod_with_references_but_no_mark_is_reported(webhook: Webhook) -> None:
    """The fail-open pod entry cannot refuse it: it says so in the log and in a counter an alert can watch."""
    pod = pods_of(kubeflow_shaped(1, 100), "v3.7.18")[0].pod
    pod["spec"]["containers"][1]["args"] = [reference_for("a value").text]
    assert webhook.api.admit("pods", pod).patch == []
    assert metric(webhook, "wfboost_shrink_unrestored_pods_total") == 1
    pod["metadata"]["labels"]["wfboost.io/restore"] = "true"  # marked: the restoring entry has it
    webhook.api.admit("pods", pod)
    assert metric(webhook, "wfboost_shrink_unrestored_pods_total") == 1
