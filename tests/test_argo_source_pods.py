"""wfboost's pod parser against pods built from Argo's Go source (tests/argo_source), not from wfboost's own model.

Each test states what Argo does at the four tags (v3.5.14, v3.6.19, v3.7.18, v4.1.2 and its opt-in init-less
layout) and checks what `wfboost.argo.pods.parse_pod` makes of it. Where the parser disagrees with Argo the test is a
strict xfail whose reason names the Go code.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.argo_source import argo, gojson
from tests.argo_source.kubelet import finished_pod
from tests.argo_source.pods import ControllerConfig, CreatedPod, container_named, controller_pod, env_value
from tests.argo_source.taskresult import executor_template, task_result
from wfboost.argo import names
from wfboost.argo.pods import NotAContainerStep, owner_workflow_uid, parse_pod, pod_layout

WF, UID, NS = "steps-x7k2p", "6f1c2f0e-7a4b-4c55-9d1e-0b7a3c2d1e00", "argo"
LAYOUTS = [("v3.5.14", False), ("v3.6.19", False), ("v3.7.18", False), ("v4.1.2", False), ("v4.1.2", True)]
IDS = ["v3.5.14", "v3.6.19", "v3.7.18", "v4.1.2", "v4.1.2-initless"]
EXPECTED_LAYOUT = {("v3.5.14", False): "v3.5", ("v3.6.19", False): "v3.6+", ("v3.7.18", False): "v3.6+",
                   ("v4.1.2", False): "v3.6+", ("v4.1.2", True): "v4.1-initless"}
OFFLOADING = [lay for lay in LAYOUTS if lay[0] != "v3.5.14"]
ARGS_OFFLOADING = [lay for lay in LAYOUTS if lay[0] in ("v3.7.18", "v4.1.2")]

MINIO = {"s3": {"endpoint": "minio:9000", "bucket": "my-bucket", "insecure": True,
                "accessKeySecret": {"name": "my-minio-cred", "key": "accesskey"},
                "secretKeySecret": {"name": "my-minio-cred", "key": "secretkey"}}}

SAY = {
    "name": "say",
    "inputs": {"parameters": [{"name": "message"}, {"name": "times", "default": "2"}]},
    "metadata": {"labels": {"team": "ml"}, "annotations": {"note": "kept"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "container": {
        "image": "alpine:3.19",
        "command": ["sh", "-c"],
        "args": ["for i in $(seq {{inputs.parameters.times}}); do echo {{inputs.parameters.message}}; done"],
        "env": [{"name": "MESSAGE", "value": "{{inputs.parameters.message}}"}],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
    },
    "volumes": [{"name": "scratch", "emptyDir": {}}],
}
TRAIN = {
    "name": "train",
    "inputs": {"parameters": [{"name": "lr"}], "artifacts": [{"name": "data", "path": "/data/in.csv"}]},
    "outputs": {"parameters": [{"name": "accuracy", "valueFrom": {"path": "/tmp/accuracy"}}],
                "artifacts": [{"name": "model", "path": "/work/model"}]},
    "script": {
        "image": "python:3.12",
        "command": ["python"],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        "source": "print('training with lr={{inputs.parameters.lr}}')\n",
    },
    "volumes": [{"name": "work", "emptyDir": {}}],
}


def build(version: str, initless: bool, template: dict[str, Any], node: str = f"{WF}[0].say", **kw: Any) -> CreatedPod:
    config = kw.pop("config", None) or ControllerConfig(initless=initless, artifact_repository=MINIO)
    return controller_pod(version, WF, UID, NS, template, node, config=config, **kw)


def say(version: str, initless: bool, **kw: Any) -> CreatedPod:
    return build(version, initless, SAY, inputs={"message": "hello <world>"}, **kw)


def prefix(version: str, initless: bool) -> tuple[str, ...]:
    # createWorkflowPod / podBuilder.build emissary loop + getExecutorLogLevel (3.5) / getExecutorLogOpts (3.6+)
    binary = "/argo-bin/bin/argoexec" if initless else "/var/run/argo/argoexec"
    flags = ["--loglevel", "info", "--log-format", "text"]
    if version != "v3.5.14":
        flags += ["--gloglevel", "0"]
    return (binary, "emissary", *flags, "--")


def carriers(pod: dict[str, Any]) -> list[str]:
    """Names of the containers with ARGO_TEMPLATE, init containers first."""
    all_ = [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
    return [c["name"] for c in all_ if env_value(c, argo.ENV_TEMPLATE) is not None]


# --- the builder itself, against Argo's own test data and constants --------------------------------------------------


def test_node_ids_match_argo_test_data() -> None:
    # cmd/argo/commands/common/get_test.go (v3.6.19) pins these Workflow.NodeID values
    assert argo.node_id("many-items-z26lj", "many-items-z26lj[0].sleep(9:nine)") == "many-items-z26lj-2619926859"
    assert argo.node_id("many-items-z26lj", "many-items-z26lj[0].sleep(10:ten)") == "many-items-z26lj-1052882686"
    assert argo.node_id("many-items-z26lj", "many-items-z26lj[0].sleep(11:eleven)") == "many-items-z26lj-3011405271"


def test_names_agree_with_common_go() -> None:
    # wfboost's names must be Argo's (workflow/common/common.go at the four tags)
    assert names.LABEL_WORKFLOW == argo.LABEL_WORKFLOW
    assert names.LABEL_COMPLETED == argo.LABEL_COMPLETED
    assert names.LABEL_REPORT_OUTPUTS_COMPLETED == argo.LABEL_REPORT_OUTPUTS_COMPLETED
    assert names.ANNOTATION_NODE_ID == argo.ANNOTATION_NODE_ID
    assert names.ANNOTATION_NODE_NAME == argo.ANNOTATION_NODE_NAME
    assert (names.CONTAINER_MAIN, names.CONTAINER_INIT, names.CONTAINER_WAIT, names.CONTAINER_SUPERVISOR) == (
        argo.MAIN, argo.INIT, argo.WAIT, argo.SUPERVISOR)
    assert names.ENV_TEMPLATE == argo.ENV_TEMPLATE
    assert names.ENV_CONTAINER_ARGS_FILE == argo.ENV_CONTAINER_ARGS_FILE
    assert names.ENV_INCLUDE_SCRIPT_OUTPUT == argo.ENV_INCLUDE_SCRIPT_OUTPUT
    assert names.TEMPLATE_OFFLOADED == argo.TEMPLATE_OFFLOADED
    assert names.EMISSARY_SEPARATOR == "--"
    assert {names.VOLUME_VAR_RUN_ARGO, names.VOLUME_ARGOEXEC_BIN, names.VOLUME_ENV_CONFIG, names.VOLUME_INPUT_ARTIFACTS,
            names.VOLUME_TMP_DIR, names.VOLUME_STAGING} == {
        argo.VOLUME_VAR_RUN_ARGO, argo.ARGOEXEC_BIN_VOLUME, argo.VOLUME_ENV_CONFIG, argo.VOLUME_INPUT_ARTIFACTS,
        argo.VOLUME_TMP_DIR, argo.VOLUME_STAGING}


def test_pod_names() -> None:
    # util.GeneratePodName: v2 = <workflow>-<template>-<fnv32a(node name)>; v1 = the node id; the workflow's own node
    # (a pod as entrypoint) is named after the workflow
    nid = argo.node_id(WF, f"{WF}[0].say")
    assert argo.pod_name(WF, f"{WF}[0].say", "say", nid) == f"{WF}-say-{nid.rsplit('-', 1)[1]}"
    assert argo.pod_name(WF, f"{WF}[0].say", "say", nid, "v1") == nid
    assert argo.pod_name(WF, WF, "say", WF) == WF
    created = controller_pod("v3.6.19", WF, UID, NS, SAY, WF, inputs={"message": "m"})
    assert created.pod["metadata"]["name"] == WF and created.node_id == WF


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_pods_are_valid_kubernetes_objects(version: str, initless: bool) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    big = build(version, initless, {"name": "big", "container": {"image": "alpine", "command": ["echo"],
                                                                 "args": ["x" * 140_000]}})
    for created in (say(version, initless), build(version, initless, TRAIN, inputs={"lr": "0.1"},
                                                  input_artifacts={"data": {"s3": {"key": "d.csv"}}}), big):
        kubernetes_validate.validate(created.pod, "1.33.0", strict=True)
        kubernetes_validate.validate(finished_pod(created.pod), "1.33.0", strict=True)
        if created.configmap is not None:
            kubernetes_validate.validate(created.configmap, "1.33.0", strict=True)


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_argo_template_holds_only_fields_argo_knows(version: str, initless: bool) -> None:
    # hera's models are generated from Argo's OpenAPI spec: a round trip through them must be lossless
    models = pytest.importorskip("hera.workflows.models")
    created = build(version, initless, TRAIN, inputs={"lr": "0.1"}, input_artifacts={"data": {"s3": {"key": "k"}}})
    dumped = models.Template.model_validate(created.template).model_dump(by_alias=True, exclude_none=True, mode="json")
    assert dumped == created.template


# --- the parser on container and script steps --------------------------------------------------------------------


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_container_step(version: str, initless: bool) -> None:
    created = say(version, initless)
    step = parse_pod(created.pod)
    assert step.layout == EXPECTED_LAYOUT[(version, initless)]
    assert step.main["name"] == "main"
    assert step.emissary_prefix == prefix(version, initless)
    assert step.command == ("sh", "-c")
    # ProcessArgs substituted the argument and the default into args and env
    assert step.args == ("for i in $(seq 2); do echo hello <world>; done",)
    assert env_value(step.main, "MESSAGE") == "hello <world>"
    assert step.workflow == WF
    assert step.node_name == f"{WF}[0].say"
    assert step.node_id == argo.node_id(WF, f"{WF}[0].say") == created.node_id
    assert step.pod_name == created.pod_name and step.namespace == NS
    assert step.workflow_uid == UID == owner_workflow_uid(created.pod)
    assert step.include_script_output is False
    assert step.offloads == ()
    assert step.template_kind == "container"
    assert step.template == created.template
    # encoding/json HTML-escapes `<` and `>` in ARGO_TEMPLATE
    raw = env_value(container_named(created.pod, carriers(created.pod)[0]), argo.ENV_TEMPLATE)
    assert raw == created.template_json and "hello \\u003cworld\\u003e" in raw
    assert step.labels["team"] == "ml" and step.annotations["note"] == "kept"  # addMetadata
    assert created.pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}  # addSchedulingConstraints
    assert created.pod["metadata"]["annotations"][argo.ANNOTATION_DEFAULT_CONTAINER] == "main"


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_template_parameters_kept_in_3_5_cleared_after(version: str, initless: bool) -> None:
    template = parse_pod(say(version, initless).pod).template
    assert template is not None
    if version == "v3.5.14":  # createWorkflowPod v3.5.14: wfv1.MustMarshallJSON(tmpl)
        assert template["inputs"] == {"parameters": [{"name": "message", "value": "hello <world>"},
                                                     {"name": "times", "default": "2", "value": "2"}]}
    else:  # 3.6+: simplifiedTmpl.Inputs = wfv1.Inputs{Artifacts: ...}
        assert template["inputs"] == {}
    assert template["container"]["args"] == ["for i in $(seq 2); do echo hello <world>; done"]
    assert template["container"]["name"] == "" and template["container"]["resources"] == {}
    assert template["outputs"] == {} and template["metadata"] == {"annotations": {"note": "kept"},
                                                                  "labels": {"team": "ml"}}


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_argo_template_placement(version: str, initless: bool) -> None:
    template = {**SAY, "initContainers": [{"name": "prep", "image": "busybox", "command": ["true"]}],
                "sidecars": [{"name": "cache", "image": "redis:7", "command": ["redis-server"]}]}
    created = build(version, initless, template, inputs={"message": "m"})
    if version == "v3.5.14":  # envVars (with ARGO_TEMPLATE) on every init and regular container
        assert carriers(created.pod) == ["init", "prep", "wait", "main", "cache"]
    elif initless:  # the supervisor, and (init-container env loop) the user's init containers
        assert carriers(created.pod) == ["prep", "supervisor"]
    else:  # every init container, the user's included
        assert carriers(created.pod) == ["init", "prep"]
    step = parse_pod(created.pod)
    assert step.layout == EXPECTED_LAYOUT[(version, initless)]
    assert step.command == ("sh", "-c") and step.template == created.template
    # the emissary wraps user sidecars too, and not the wait/supervisor container
    sidecar = container_named(created.pod, "cache")
    assert tuple(sidecar["command"]) == (*prefix(version, initless), "redis-server")
    aux = container_named(created.pod, "supervisor" if initless else "wait")
    assert aux["command"][0] == "argoexec"


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_script_step(version: str, initless: bool) -> None:
    created = build(version, initless, TRAIN, node=f"{WF}[1].train", inputs={"lr": "0.01"},
                    input_artifacts={"data": {"s3": {"key": "datasets/in.csv"}}}, include_script_output=True)
    step = parse_pod(created.pod)
    assert step.layout == EXPECTED_LAYOUT[(version, initless)]
    assert step.command == ("python",)
    assert step.args == ("/argo/staging/script",)  # executeScript appends common.ExecutorScriptSourcePath
    assert step.include_script_output is True
    assert step.template_kind == "script"
    template = step.template
    assert template is not None
    assert template["script"]["source"] == "print('training with lr=0.01')\n"
    # input artifacts survive the 3.6+ simplification; the archive location gets the default key, substituted
    data = {"name": "data", "path": "/data/in.csv", "s3": {"key": "datasets/in.csv"}}
    assert template["inputs"]["artifacts"] == [data]
    assert template["archiveLocation"]["s3"]["key"] == f"{WF}/{created.pod_name}"
    assert template["archiveLocation"]["archiveLogs"] is False
    main_mounts = [(m["name"], m["mountPath"], m.get("subPath")) for m in step.main["volumeMounts"]]
    if initless:  # addInputArtifactsVolumes: the whole volume, the emissary symlinks
        assert ("input-artifacts", "/argo/inputs/artifacts", None) in main_mounts
    else:
        assert ("input-artifacts", "/data/in.csv", "data") in main_mounts
    assert ("argo-staging", "/argo/staging", None) in main_mounts
    aux = container_named(created.pod, "supervisor" if initless else "wait")
    aux_paths = [m["mountPath"] for m in aux["volumeMounts"]]
    assert "/argo/secret/my-minio-cred" in aux_paths and "/mainctrfs/work" in aux_paths  # secrets, mirrored mounts


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_command_from_the_image_index(version: str, initless: bool) -> None:
    # no command: entrypoint.Lookup supplies ENTRYPOINT, and CMD when args are nil
    config = ControllerConfig(initless=initless, image_entrypoints={
        "ghcr.io/acme/tool:1": {"entrypoint": ["/usr/bin/tool"], "cmd": ["--help"]}})
    bare = {"name": "tool", "container": {"image": "ghcr.io/acme/tool:1"}}
    step = parse_pod(build(version, initless, bare, config=config).pod)
    assert (step.command, step.args) == (("/usr/bin/tool",), ("--help",))
    with_args = {"name": "tool", "container": {"image": "ghcr.io/acme/tool:1", "args": ["run"]}}
    step = parse_pod(build(version, initless, with_args, config=config).pod)
    assert (step.command, step.args) == (("/usr/bin/tool",), ("run",))


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
@pytest.mark.parametrize("attempt", [0, 2])
def test_retried_step(version: str, initless: bool, attempt: int) -> None:
    template = {**SAY, "retryStrategy": {"limit": 3}}
    created = build(version, initless, template, inputs={"message": "m"}, retry_attempt=attempt)
    step = parse_pod(created.pod)
    assert step.node_name == f"{WF}[0].say({attempt})"  # executeTemplate: fmt.Sprintf("%s(%d)", ...)
    assert step.node_id == argo.node_id(WF, f"{WF}[0].say({attempt})")
    assert step.pod_name == argo.pod_name(WF, f"{WF}[0].say({attempt})", "say", step.node_id)
    assert step.template is not None and step.template["retryStrategy"] == {"limit": 3}


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_exit_handler(version: str, initless: bool) -> None:
    created = build(version, initless, SAY, node=f"{WF}.onExit", inputs={"message": "bye"}, on_exit=True)
    step = parse_pod(created.pod)
    assert step.labels[argo.LABEL_ON_EXIT] == "true"  # "This pod is part of an onExit handler, label it so"
    assert step.node_name == f"{WF}.onExit"


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_pod_env_per_container(version: str, initless: bool) -> None:
    created = say(version, initless, config=ControllerConfig(initless=initless, instance_id="prod"))
    pod = created.pod
    aux = container_named(pod, "supervisor" if initless else "wait")
    main = container_named(pod, "main")
    names_ = [e["name"] for e in aux["env"]]
    head = ["ARGO_POD_NAME", "ARGO_POD_UID"] + (["GODEBUG"] if version == "v3.5.14" else []) + [
        "ARGO_WORKFLOW_NAME", "ARGO_WORKFLOW_UID", "ARGO_INSTANCE_ID"] + (["ARGO_INITLESS_POD"] if initless else [])
    shared = (["ARGO_TEMPLATE"] if version == "v3.5.14" else []) + [
        "ARGO_NODE_ID", "ARGO_INCLUDE_SCRIPT_OUTPUT", "ARGO_DEADLINE"] + (
        ["ARGO_WORKFLOW_NAME"] if version == "v4.1.2" else []) + [
        "ARGO_PROGRESS_FILE", "ARGO_PROGRESS_PATCH_TICK_DURATION", "ARGO_PROGRESS_FILE_TICK_DURATION"]
    assert names_ == [*head, "ARGO_CONTAINER_NAME", *shared, *(["ARGO_TEMPLATE"] if initless else [])]
    main_names = [e["name"] for e in main["env"]]
    assert main_names == ["MESSAGE", "ARGO_CONTAINER_NAME", *shared, *(["ARGO_WAIT_FOR_READY"] if initless else [])]
    assert env_value(main, "ARGO_DEADLINE") == "0001-01-01T00:00:00Z"  # getDeadline: the zero time.Time
    assert pod["metadata"]["labels"][argo.LABEL_INSTANCE_ID] == "prod"
    mounts = [m["name"] for m in main["volumeMounts"]]
    assert mounts == ["scratch", *(["argoexec-bin"] if initless else []), "var-run-argo"]
    volumes = [v["name"] for v in pod["spec"]["volumes"]]
    assert volumes == ["var-run-argo", "tmp-dir-argo", "scratch", *(["argoexec-bin"] if initless else [])]


# --- offloading to the ConfigMap named after the pod (3.6+) ------------------------------------------------------


def big_env(size: int, char: str = "x") -> dict[str, Any]:
    return {"name": "big", "container": {"image": "alpine", "command": ["sh", "-c"], "args": ["echo $BIG | wc -c"],
                                          "env": [{"name": "BIG", "value": char * size}]}}


def test_3_5_never_offloads() -> None:
    created = build("v3.5.14", False, big_env(300_000))
    step = parse_pod(created.pod)
    assert created.configmap is None and step.offloads == ()
    assert step.template is not None and step.template["container"]["env"][0]["value"] == "x" * 300_000


@pytest.mark.parametrize(("version", "initless"), OFFLOADING, ids=IDS[1:])
def test_template_offload(version: str, initless: bool) -> None:
    created = build(version, initless, big_env(140_000))
    cm = created.configmap
    assert cm is not None
    step = parse_pod(created.pod)
    assert step.layout == EXPECTED_LAYOUT[(version, initless)]
    assert step.template is None and step.offloads == (names.ENV_TEMPLATE,)
    assert step.args == ("echo $BIG | wc -c",)  # args are small: not offloaded
    assert set(cm["data"]) == {"ARGO_TEMPLATE"}
    done = step.with_offloaded(cm["data"])
    assert done.offloads == () and done.template == created.template == executor_template(created.pod, cm)
    # the ConfigMap: named after the pod, the workflow label, node annotations, the Workflow as controller owner
    assert cm["metadata"]["name"] == created.pod_name
    assert cm["metadata"]["labels"] == {argo.LABEL_WORKFLOW: WF}
    assert cm["metadata"]["annotations"] == {argo.ANNOTATION_NODE_NAME: created.node_name,
                                             argo.ANNOTATION_NODE_ID: created.node_id}
    assert owner_workflow_uid(cm) == UID
    volume = {"name": "argo-env-config", "configMap": {"name": created.pod_name}}
    assert volume in created.pod["spec"]["volumes"]
    holder = container_named(created.pod, "supervisor" if initless else "init")
    assert env_value(holder, "ARGO_TEMPLATE") == "offloaded"
    assert {"name": "argo-env-config", "mountPath": "/argo/config"} in holder["volumeMounts"]
    assert "argo-env-config" not in [m["name"] for m in step.main["volumeMounts"]]


@pytest.mark.parametrize(("version", "initless"), OFFLOADING, ids=IDS[1:])
def test_offload_threshold_is_bytes_of_go_json(version: str, initless: bool) -> None:
    # `len(envVarTemplateValue) > maxEnvVarLen`: strictly over 131072 bytes of Go's JSON, where `<` takes 6 bytes
    base = gojson.byte_len(build(version, initless, big_env(1)).template_json) - 1  # (an empty value is omitted)
    at_limit = build(version, initless, big_env(argo.MAX_ENV_VAR_LEN - base))
    assert gojson.byte_len(at_limit.template_json) == argo.MAX_ENV_VAR_LEN
    assert at_limit.configmap is None and parse_pod(at_limit.pod).template is not None
    over = build(version, initless, big_env(argo.MAX_ENV_VAR_LEN - base + 1))
    assert over.configmap is not None and parse_pod(over.pod).template is None
    angles = (argo.MAX_ENV_VAR_LEN - base) // 6 + 1  # under the limit as characters, over it as Go escapes them
    escaped = build(version, initless, big_env(angles, "<"))
    assert len(json.dumps(escaped.template, separators=(",", ":"), ensure_ascii=False)) < argo.MAX_ENV_VAR_LEN
    assert escaped.configmap is not None and parse_pod(escaped.pod).offloads == (names.ENV_TEMPLATE,)


@pytest.mark.parametrize(("version", "initless"), ARGS_OFFLOADING, ids=["v3.7.18", "v4.1.2", "v4.1.2-initless"])
def test_args_offload(version: str, initless: bool) -> None:
    huge = "y" * 140_000
    created = build(version, initless, {"name": "big", "container": {"image": "alpine", "command": ["echo"],
                                                                      "args": ["-n", huge]}})
    cm = created.configmap
    assert cm is not None
    # the template holds the same args, so it is over the limit too: both keys go to the ConfigMap
    assert set(cm["data"]) == {"ARGO_TEMPLATE", "ARGO_CONTAINER_ARGS_FILE"}
    assert json.loads(cm["data"]["ARGO_CONTAINER_ARGS_FILE"]) == ["-n", huge]
    step = parse_pod(created.pod)
    assert "args" not in step.main  # "Clear the args - they will be read from file"
    assert env_value(step.main, "ARGO_CONTAINER_ARGS_FILE") == "/argo/config/ARGO_CONTAINER_ARGS_FILE"
    assert {"name": "argo-env-config", "mountPath": "/argo/config"} in step.main["volumeMounts"]
    assert step.args is None and step.template is None
    assert step.offloads == (names.ENV_TEMPLATE, names.ENV_CONTAINER_ARGS_FILE)
    assert step.command == ("echo",)
    done = step.with_offloaded(cm["data"])
    assert done.args == ("-n", huge) and done.template == created.template and done.offloads == ()


def test_3_6_offloads_no_args() -> None:
    created = build("v3.6.19", False, {"name": "big", "container": {"image": "alpine", "command": ["echo"],
                                                                     "args": ["y" * 140_000]}})
    assert created.configmap is not None and set(created.configmap["data"]) == {"ARGO_TEMPLATE"}
    step = parse_pod(created.pod)
    assert step.args == ("y" * 140_000,) and step.offloads == (names.ENV_TEMPLATE,)


# --- what the kubelet and the executor report ----------------------------------------------------------------------


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_finished_pod_still_parses(version: str, initless: bool) -> None:
    pod = finished_pod(say(version, initless).pod, main_exit_code=3, image_id="docker.io/library/alpine@sha256:ab")
    status = pod["status"]
    assert status["phase"] == "Failed"
    assert [s["name"] for s in status["containerStatuses"]] == sorted(c["name"] for c in pod["spec"]["containers"])
    main = next(s for s in status["containerStatuses"] if s["name"] == "main")
    assert main["state"]["terminated"]["exitCode"] == 3 and main["imageID"].endswith("@sha256:ab")
    assert [s["name"] for s in status["initContainerStatuses"]] == ([] if initless else ["init"])
    assert parse_pod(pod).node_id == argo.node_id(WF, f"{WF}[0].say")


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_task_result(version: str, initless: bool) -> None:
    created = build(version, initless, TRAIN, node=f"{WF}[1].train", inputs={"lr": "0.01"},
                    input_artifacts={"data": {"s3": {"key": "datasets/in.csv"}}}, include_script_output=True,
                    config=ControllerConfig(initless=initless, artifact_repository=MINIO, instance_id="prod"))
    pod = finished_pod(created.pod)
    result = task_result(version, pod, {"parameters": {"accuracy": "0.93\n"}, "stdout": "training with lr=0.01\n"})
    assert result["apiVersion"] == "argoproj.io/v1alpha1" and result["kind"] == "WorkflowTaskResult"
    assert result["metadata"]["name"] == parse_pod(pod).node_id == created.node_id  # createTaskResult: Name = nodeID
    assert result["metadata"]["namespace"] == NS
    assert result["metadata"]["labels"] == {names.LABEL_WORKFLOW: WF, names.LABEL_REPORT_OUTPUTS_COMPLETED: "true",
                                            argo.LABEL_INSTANCE_ID: "prod"}
    assert result["metadata"]["ownerReferences"] == [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                                      "name": WF, "uid": UID}]
    assert owner_workflow_uid(result) == UID == parse_pod(pod).workflow_uid
    assert result["outputs"] == {
        "parameters": [{"name": "accuracy", "value": "0.93", "valueFrom": {"path": "/tmp/accuracy"}}],
        "artifacts": [{"name": "model", "path": "/work/model",
                       "s3": {"key": f"{WF}/{created.pod_name}/model.tgz"}}],
        "result": "training with lr=0.01",
    }
    assert "phase" not in result and "progress" not in result  # the executor never sets the phase
    placeholder = task_result(version, pod, None, completed=False)  # InitializeOutput, before ReportOutputs
    assert placeholder["metadata"]["labels"][names.LABEL_REPORT_OUTPUTS_COMPLETED] == "false"
    assert "outputs" not in placeholder


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_task_result_of_a_step_without_outputs(version: str, initless: bool) -> None:
    result = task_result(version, finished_pod(say(version, initless).pod), {"stdout": "ignored\n"})
    assert result["outputs"] == {}  # ReportOutputs patches a non-nil, empty Outputs; no result without the env flag


@pytest.mark.parametrize(("version", "initless"), OFFLOADING, ids=IDS[1:])
def test_task_result_from_an_offloaded_template(version: str, initless: bool) -> None:
    template = {**big_env(140_000), "outputs": {"parameters": [{"name": "n", "valueFrom": {"path": "/tmp/n"}}]}}
    created = build(version, initless, template)
    assert created.configmap is not None
    result = task_result(version, finished_pod(created.pod), {"parameters": {"n": "140001"}},
                         configmap=created.configmap)
    assert result["outputs"] == {"parameters": [{"name": "n", "value": "140001", "valueFrom": {"path": "/tmp/n"}}]}


# --- where the parser and Argo disagree ------------------------------------------------------------------------------

RESOURCE = {"name": "make-cm", "resource": {"action": "create", "manifest": "apiVersion: v1\nkind: ConfigMap\n"}}
DATA = {"name": "list", "data": {"source": {"artifactPaths": {"name": "in", "s3": {
    "endpoint": "minio:9000", "bucket": "b", "key": "k"}}}, "transformation": [{"expression": "data"}]}}


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
@pytest.mark.parametrize("template", [RESOURCE, DATA], ids=["resource", "data"])
def test_resource_and_data_mains_are_argoexec_under_emissary(
    version: str, initless: bool, template: dict[str, Any]
) -> None:
    # executeResource / executeData: main is an executor container running `argoexec resource|data`, and the
    # emissary loop wraps it like any container that is not `wait` (3.x) / not an Argo sidecar (v4.1.2)
    created = build(version, initless, template)
    main = container_named(created.pod, "main")
    cut = len(prefix(version, initless))
    assert tuple(main["command"][:cut]) == prefix(version, initless)
    assert main["command"][cut:cut + 2] == ["argoexec", "resource" if "resource" in template else "data"]
    assert main["image"] == argo.default_executor_image(version)
    # no wait/supervisor: argoexec in main reports the outputs itself
    assert [c["name"] for c in created.pod["spec"]["containers"]] == ["main"]
    if initless:  # mainNeedsTemplateEnv: nobody stages /var/run/argo/template, main gets ARGO_TEMPLATE
        assert carriers(created.pod) == ["main"] and "initContainers" not in created.pod["spec"]
    else:
        assert carriers(created.pod)[0] == "init"


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_resource_pod_that_archives_logs(version: str, initless: bool) -> None:
    repo = {**MINIO, "archiveLogs": True}
    created = build(version, initless, RESOURCE, config=ControllerConfig(initless=initless, artifact_repository=repo))
    expected = ["main"] if version in ("v3.5.14", "v3.6.19") else ["supervisor" if initless else "wait", "main"]
    assert [c["name"] for c in created.pod["spec"]["containers"]] == expected  # SaveLogsAsArtifact (3.7+)
    security = container_named(created.pod, "main")["securityContext"]  # "lock down resource pods by default"
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
@pytest.mark.parametrize("template", [RESOURCE, DATA], ids=["resource", "data"])
def test_parser_rejects_resource_and_data_pods(version: str, initless: bool, template: dict[str, Any]) -> None:
    pod = build(version, initless, template).pod
    with pytest.raises(NotAContainerStep):
        parse_pod(pod)


@pytest.mark.parametrize("template", [RESOURCE, DATA], ids=["resource", "data"])
def test_parser_layout_of_initless_pod_without_supervisor(template: dict[str, Any]) -> None:
    """v4.1.2 workflowpod_layout.go initlessLayout.mainNeedsTemplateEnv puts ARGO_TEMPLATE on `main` of an init-less
    pod without a supervisor (data templates, resource templates that do not archive logs): still init-less."""
    assert pod_layout(build("v4.1.2", True, template).pod) == "v4.1-initless"


# --- workflow-level settings and smaller controller details ----------------------------------------------------


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_workflow_level_settings(version: str, initless: bool) -> None:
    spec = {
        "serviceAccountName": "runner",
        "imagePullSecrets": [{"name": "regcred"}],
        "podMetadata": {"labels": {"cost-center": "42"}},
        "volumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "shared-pvc"}},
                    {"name": "unused", "emptyDir": {}}],
        "podGC": {"strategy": "OnPodSuccess"},
    }
    template = {"name": "use", "activeDeadlineSeconds": 600, "container": {
        "image": "alpine", "command": ["ls"], "args": ["/shared"],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}}
    created = build(version, initless, template, workflow_spec=spec)
    pod = created.pod
    assert pod["spec"]["serviceAccountName"] == "runner"  # setupServiceAccount
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["activeDeadlineSeconds"] == 600
    assert pod["metadata"]["labels"]["cost-center"] == "42"  # addMetadata: workflow podMetadata
    volumes = [v["name"] for v in pod["spec"]["volumes"]]
    assert "shared" in volumes and "unused" not in volumes  # addVolumeReferences: only what a mount references
    gc = pod["metadata"]["annotations"].get(argo.ANNOTATION_POD_GC_STRATEGY)
    assert gc == (None if version == "v3.5.14" else "OnPodSuccess/5s")  # 3.6+, GetPodGCDeleteDelayDuration 5s
    step = parse_pod(pod)
    assert (step.command, step.args) == (("ls",), ("/shared",))


@pytest.mark.parametrize(("version", "initless"), LAYOUTS, ids=IDS)
def test_overlap_check_reorders_the_template_mounts(version: str, initless: bool) -> None:
    # common.FindOverlappingVolume sort.Slice-s tmpl.GetVolumeMounts() in place (longest mount path first) while
    # addInputArtifactsVolumes checks each input artifact of the legacy layout; ARGO_TEMPLATE is marshalled after
    # that, the pod's own main container is a separate copy and keeps the user's order
    mounts = [{"name": "a", "mountPath": "/a"}, {"name": "bb", "mountPath": "/bb/longer"}]
    template = {"name": "m", "inputs": {"artifacts": [{"name": "in", "path": "/in/file"}]},
                "volumes": [{"name": "a", "emptyDir": {}}, {"name": "bb", "emptyDir": {}}],
                "container": {"image": "alpine", "command": ["true"], "volumeMounts": mounts}}
    created = build(version, initless, template, input_artifacts={"in": {"s3": {"key": "k"}}})
    in_template = [m["mountPath"] for m in created.template["container"]["volumeMounts"]]
    assert in_template == (["/a", "/bb/longer"] if initless else ["/bb/longer", "/a"])
    in_pod = [m["mountPath"] for m in container_named(created.pod, "main")["volumeMounts"]]
    assert in_pod[:2] == ["/a", "/bb/longer"]
    assert parse_pod(created.pod).template == created.template


@pytest.mark.parametrize("version", argo.TAGS)
def test_status_capture_finalizer(version: str) -> None:
    config = ControllerConfig(pod_status_capture_finalizer=True)
    pod = controller_pod(version, WF, UID, NS, SAY, f"{WF}[0].say", inputs={"message": "m"}, config=config).pod
    # createWorkflowPod v3.6.19+: ARGO_POD_STATUS_CAPTURE_FINALIZER=true adds common.FinalizerPodStatus
    assert pod["metadata"].get("finalizers") == (None if version == "v3.5.14" else ["workflows.argoproj.io/status"])


@pytest.mark.parametrize("version", ["v3.7.18", "v4.1.2"])
def test_task_result_of_a_resource_step_that_archives_logs(version: str) -> None:
    config = ControllerConfig(artifact_repository={**MINIO, "archiveLogs": True})
    created = build(version, False, RESOURCE, config=config)
    result = task_result(version, finished_pod(created.pod), {})
    # wait.go (3.7.18) / PostMain (v4.1.2): a resource template reports only its log artifact (ReportOutputsLogs)
    assert result["outputs"] == {"artifacts": [{"name": "main-logs",
                                                "s3": {"key": f"{WF}/{created.pod_name}/main.log"}}]}
