"""Pods built the way the Argo controller builds them, per release, and the walk that feeds them.

The facts these tests pin were read in the controller source (see docs/argo-pods.md for file:line per tag);
the tests check that our builder reproduces them for every layout, that every pod is a valid Kubernetes Pod, and
that walking every published workflow of ../shared/corpus yields pods without error. Node names and IDs are also
checked against the controller's own ``status.nodes`` in the corpus' ``workflows-with-status``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.harness.validate import schema_violations
from wfboost_dev.argosim.expand import PLACEHOLDER_PREFIX, Expansion, expand_workflow, load_documents
from wfboost_dev.argosim.pods import (
    LAYOUTS,
    QUICK_START_CONFIG,
    V3_5,
    V3_6,
    V3_7,
    V4_1,
    V4_1_INITLESS,
    ArgoLayout,
    BuiltPod,
    ControllerConfig,
    ImageEntrypoint,
    NotAPodTemplate,
    PodBuildError,
    build_pod,
    go_duration,
    layout_by_name,
    node_id,
    pod_name,
)

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
WALKED_FOLDERS = ("argo-examples", "kfp-v1-argo", "kfp-v2-argo", "kfp-v2-argo-compiled-workflows")
LAYOUT_IDS = [layout.name for layout in LAYOUTS]
KUBERNETES_SCHEMA = (
    "1.33"  # image volumes (init-less layout) are in the 1.33 schema; kubernetes-validate ships 1.25-1.37
)

# ----------------------------------------------------------------------------------------------------------------
# A workflow of our own that exercises every feature the builder supports
# ----------------------------------------------------------------------------------------------------------------

WORKFLOW: dict[str, Any] = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Workflow",
    "metadata": {"name": "fixture", "namespace": "team-a", "uid": "0b5e5b0e-1111-4222-8333-944445555666"},
    "spec": {
        "entrypoint": "main",
        "arguments": {"parameters": [{"name": "greeting", "value": "hello"}]},
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "workdir"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
        ],
        "podMetadata": {"labels": {"team": "a"}},
        "templates": [
            {
                "name": "main",
                "steps": [
                    [
                        {
                            "name": "train",
                            "template": "train",
                            "arguments": {
                                "parameters": [{"name": "epochs", "value": "{{workflow.parameters.greeting}}"}]
                            },
                        }
                    ],
                    [
                        {
                            "name": "report",
                            "template": "report",
                            "arguments": {
                                "parameters": [{"name": "loss", "value": "{{steps.train.outputs.parameters.loss}}"}],
                                "artifacts": [{"name": "model", "from": "{{steps.train.outputs.artifacts.model}}"}],
                            },
                        }
                    ],
                    [
                        {
                            "name": "show",
                            "template": "show",
                            "arguments": {"parameters": [{"name": "x", "value": "{{steps.report.outputs.result}}"}]},
                        }
                    ],
                ],
            },
            {
                "name": "train",
                "metadata": {
                    "labels": {"wfboost.io/cache": "true"},
                    "annotations": {"wfboost.io/max-staleness": "P7D"},
                },
                "inputs": {"parameters": [{"name": "epochs"}]},
                "outputs": {
                    "parameters": [{"name": "loss", "valueFrom": {"path": "/out/loss"}}],
                    "artifacts": [{"name": "model", "path": "/out/model"}],
                },
                "container": {
                    "image": "pytorch/pytorch:2.3.0",
                    "command": ["python", "train.py"],
                    "args": ["--epochs", "{{inputs.parameters.epochs}}", "--pod", "{{pod.name}}"],
                    "env": [{"name": "CUDA_VISIBLE_DEVICES", "value": "0"}],
                    "resources": {"limits": {"nvidia.com/gpu": "1", "memory": "4Gi"}},
                    "volumeMounts": [{"name": "workdir", "mountPath": "/work"}],
                },
            },
            {
                "name": "report",
                "inputs": {
                    "parameters": [{"name": "loss"}],
                    "artifacts": [{"name": "model", "path": "/in/model"}],
                },
                "script": {
                    "image": "python:3.12",
                    "command": ["python"],
                    "source": "import sys\nprint('loss={{inputs.parameters.loss}}' if 1 < 2 else '')\n",
                },
            },
            {
                "name": "show",
                "inputs": {"parameters": [{"name": "x"}]},
                "container": {"image": "busybox", "command": ["echo", "{{inputs.parameters.x}}"]},
            },
            {
                "name": "pair",
                "containerSet": {
                    "volumeMounts": [{"name": "workdir", "mountPath": "/work"}],
                    "containers": [
                        {"name": "a", "image": "busybox", "command": ["sh", "-c", "echo a"]},
                        {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo b"], "dependencies": ["a"]},
                    ],
                },
            },
        ],
    },
}

S3_MODEL = {"name": "model", "s3": {"key": "fixture/fixture-train-1/model.tgz"}}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    for ctr in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        if ctr["name"] == name:
            return dict(ctr)
    raise AssertionError(f"no container {name!r} in {[c['name'] for c in pod['spec']['containers']]}")


def assert_valid(built: BuiltPod) -> None:
    """Strict Kubernetes schema (harness, 1.36) plus the structural rules the API server adds on top."""
    assert not schema_violations(built.pod), schema_violations(built.pod)
    assert structural_problems(built.pod) == []
    if built.configmap is not None:
        assert not schema_violations(built.configmap), schema_violations(built.configmap)


def structural_problems(pod: dict[str, Any]) -> list[str]:
    """API-server checks no OpenAPI schema expresses: unique names, mounts of existing volumes, unique paths."""
    problems: list[str] = []
    spec = pod["spec"]
    volumes = [v["name"] for v in spec.get("volumes", [])]
    if len(volumes) != len(set(volumes)):
        problems.append(f"duplicate volume names: {volumes}")
    names = [c["name"] for c in [*spec.get("initContainers", []), *spec["containers"]]]
    if len(names) != len(set(names)):
        problems.append(f"duplicate container names: {names}")
    for ctr in [*spec.get("initContainers", []), *spec["containers"]]:
        paths = [m["mountPath"] for m in ctr.get("volumeMounts", [])]
        if len(paths) != len(set(paths)):
            problems.append(f"{ctr['name']}: duplicate mountPath in {paths}")
        for mount in ctr.get("volumeMounts", []):
            if mount["name"] not in volumes:
                problems.append(f"{ctr['name']}: mounts unknown volume {mount['name']!r}")
    return problems


def build(layout: ArgoLayout, template: str, node: str, inputs: Any = None, **kwargs: Any) -> BuiltPod:
    return build_pod(WORKFLOW, template, node, inputs, layout=layout, **kwargs)


def train(layout: ArgoLayout, **kwargs: Any) -> BuiltPod:
    return build(layout, "train", "fixture[0].train", {"parameters": {"epochs": "3"}}, **kwargs)


def report(layout: ArgoLayout, **kwargs: Any) -> BuiltPod:
    inputs = {"parameters": {"loss": "0.25"}, "artifacts": {"model": S3_MODEL}}
    return build(layout, "report", "fixture[1].report", inputs, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Names and IDs
# ----------------------------------------------------------------------------------------------------------------


def test_node_ids_match_the_controller() -> None:
    # Node names and IDs recorded from a real run in Argo's cmd/argo/commands/common/get_test.go (v3.7.18).
    assert node_id("many-items-z26lj", "many-items-z26lj[0].sleep(9:nine)") == "many-items-z26lj-2619926859"
    assert node_id("many-items-z26lj", "many-items-z26lj[0].sleep(10:ten)") == "many-items-z26lj-1052882686"
    assert node_id("many-items-z26lj", "many-items-z26lj[0].sleep(4:four)") == "many-items-z26lj-3491220632"
    assert node_id("wf", "wf") == "wf"


def test_pod_names_v1_and_v2() -> None:
    assert pod_name("many-items-z26lj", "many-items-z26lj[0].sleep(9:nine)", "sleep") == (
        "many-items-z26lj-sleep-2619926859"
    )
    assert pod_name("wf", "wf[0].a", "t", version="v1") == node_id("wf", "wf[0].a")
    assert pod_name("wf", "wf", "t") == "wf"  # single-pod workflow: the pod is named after the workflow
    assert pod_name("wf", "stp.inline", "") == f"wf-{node_id('wf', 'stp.inline').split('-')[-1]}"
    long_name = pod_name("w" * 200, "node", "t" * 100)
    assert len(long_name.rsplit("-", 1)[0]) == 242  # prefix cut at 253 - 10 - 1 (pod_name.go ensurePodNamePrefixLength)


def test_go_durations() -> None:
    assert [go_duration(x) for x in (0, 0.5, 3, 60, 90, 3723)] == ["0s", "500ms", "3s", "1m0s", "1m30s", "1h2m3s"]


def test_layouts_name_their_source() -> None:
    for layout in LAYOUTS:
        assert layout_by_name(layout.name) is layout
        assert re.fullmatch(r"[0-9a-f]{40}", layout.source_commit)
        assert layout.source_tag.startswith("v") and layout.argo_version in layout.source_tag
    with pytest.raises(KeyError):
        layout_by_name("v9.9.9")


# ----------------------------------------------------------------------------------------------------------------
# Per layout: a container step and a script step
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_container_step(layout: ArgoLayout) -> None:
    built = train(layout)
    pod = built.pod
    assert kubernetes_validate.validate(pod, KUBERNETES_SCHEMA, strict=True)
    assert_valid(built)

    meta = pod["metadata"]
    assert meta["name"] == pod_name("fixture", "fixture[0].train", "train") == built.name
    assert meta["namespace"] == "team-a"
    assert meta["labels"]["workflows.argoproj.io/workflow"] == "fixture"
    assert meta["labels"]["workflows.argoproj.io/completed"] == "false"
    assert meta["labels"]["wfboost.io/cache"] == "true"  # template metadata copied onto the pod
    assert meta["labels"]["team"] == "a"  # workflow podMetadata too
    assert meta["annotations"]["wfboost.io/max-staleness"] == "P7D"
    assert meta["annotations"]["workflows.argoproj.io/node-id"] == node_id("fixture", "fixture[0].train")
    assert meta["annotations"]["workflows.argoproj.io/node-name"] == "fixture[0].train"
    assert meta["annotations"]["kubectl.kubernetes.io/default-container"] == "main"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "name": "fixture",
            "uid": WORKFLOW["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["creationTimestamp"] is None  # Go-marshalled, as the controller sends it

    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    if layout.initless:
        assert [c["name"] for c in spec["containers"]] == ["supervisor", "main"]
        assert "initContainers" not in spec
        assert container(pod, "supervisor")["command"][:2] == ["argoexec", "supervisor"]
        bin_volume = next(v for v in spec["volumes"] if v["name"] == "argoexec-bin")
        assert bin_volume["image"]["reference"] == "quay.io/argoproj/argoexec:v4.1.2"
    else:
        assert [c["name"] for c in spec["containers"]] == ["wait", "main"]
        assert [c["name"] for c in spec["initContainers"]] == ["init"]
        assert container(pod, "init")["command"][:2] == ["argoexec", "init"]
        assert container(pod, "wait")["command"][:2] == ["argoexec", "wait"]

    main = container(pod, "main")
    log_flags = ["--loglevel", "info", "--log-format", "text"]
    if layout.gloglevel_flag:
        log_flags += ["--gloglevel", "0"]
    argoexec = "/argo-bin/bin/argoexec" if layout.initless else "/var/run/argo/argoexec"
    assert main["command"] == [argoexec, "emissary", *log_flags, "--", "python", "train.py"]
    assert main["args"] == ["--epochs", "3", "--pod", built.name]  # {{pod.name}} substituted
    assert main["resources"] == {"limits": {"memory": "4Gi", "nvidia.com/gpu": "1"}}
    assert {"name": "var-run-argo", "mountPath": "/var/run/argo"} in main["volumeMounts"]
    assert {"name": "workdir", "mountPath": "/work"} in main["volumeMounts"]
    workdir = next(v for v in spec["volumes"] if v["name"] == "workdir")
    assert workdir == {"name": "workdir", "persistentVolumeClaim": {"claimName": "fixture-workdir"}}
    aux = container(pod, layout.aux_container)
    assert {"name": "workdir", "mountPath": "/mainctrfs/work"} in aux["volumeMounts"]  # outputs collected from there

    main_env = env_of(main)
    assert main_env["CUDA_VISIBLE_DEVICES"] == "0"
    assert main_env["ARGO_CONTAINER_NAME"] == "main"
    assert main_env["ARGO_NODE_ID"] == meta["annotations"]["workflows.argoproj.io/node-id"]
    assert main_env["ARGO_INCLUDE_SCRIPT_OUTPUT"] == "false"
    assert main_env["ARGO_DEADLINE"] == "0001-01-01T00:00:00Z"
    assert main_env["ARGO_PROGRESS_PATCH_TICK_DURATION"] == "1m0s"
    assert ("ARGO_TEMPLATE" in main_env) is layout.template_on_every_container
    assert ("ARGO_WORKFLOW_NAME" in main_env) is layout.workflow_name_env_everywhere
    assert ("TRACEPARENT" in main_env) is layout.trace_context
    assert ("ARGO_WAIT_FOR_READY" in main_env) is layout.initless
    assert "ARGO_POD_NAME" not in main_env
    aux_env = env_of(aux)
    for name in ("ARGO_POD_NAME", "ARGO_POD_UID", "ARGO_WORKFLOW_NAME", "ARGO_WORKFLOW_UID", "ARGO_NODE_ID"):
        assert name in aux_env
    assert ("GODEBUG" in aux_env) is layout.godebug_env
    assert ("ARGO_TEMPLATE" in aux_env) is (layout.template_on_every_container or layout.initless)
    if not layout.initless:
        assert "ARGO_TEMPLATE" in env_of(container(pod, "init"))
    if layout.trace_context:
        trace = main_env["TRACEPARENT"].split("-")
        assert meta["annotations"]["workflows.argoproj.io/trace-id"] == trace[1]
        assert meta["annotations"]["workflows.argoproj.io/span-id"] == trace[2]

    template = built.argo_template()
    assert template is not None
    assert template["container"]["args"] == ["--epochs", "3", "--pod", built.name]
    assert template["outputs"]["parameters"] == [{"name": "loss", "valueFrom": {"path": "/out/loss"}}]
    if layout.template_params_cleared:
        assert "parameters" not in template["inputs"]
    else:
        assert template["inputs"]["parameters"] == [{"name": "epochs", "value": "3"}]
    # An output artifact without a location needs the artifact repository's: archiveLocation is added.
    assert template["archiveLocation"] == {"archiveLogs": False}


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_script_step(layout: ArgoLayout) -> None:
    built = report(layout, config=QUICK_START_CONFIG)
    pod = built.pod
    assert kubernetes_validate.validate(pod, KUBERNETES_SCHEMA, strict=True)
    assert_valid(built)
    main = container(pod, "main")
    assert main["command"][main["command"].index("--") + 1 :] == ["python"]
    assert main["args"] == ["/argo/staging/script"]  # the staged source is main's last argument
    staging = {"name": "argo-staging", "mountPath": "/argo/staging"}
    assert staging in main["volumeMounts"]
    stager = container(pod, "supervisor" if layout.initless else "init")
    assert staging in stager["volumeMounts"]
    assert {"name": "argo-staging", "emptyDir": {}} in pod["spec"]["volumes"]

    # Input artifact: legacy layouts bind the one file at its path; init-less mounts the whole volume.
    art_mount = {"name": "input-artifacts", "mountPath": "/in/model", "subPath": "model"}
    whole = {"name": "input-artifacts", "mountPath": "/argo/inputs/artifacts"}
    assert (art_mount in main["volumeMounts"]) is not layout.initless
    assert (whole in main["volumeMounts"]) is layout.initless
    assert whole in stager["volumeMounts"]
    # Quick-start artifact repository: credentials mounted in the executor containers.
    secret_mount = {"name": "my-minio-cred", "readOnly": True, "mountPath": "/argo/secret/my-minio-cred"}
    assert secret_mount in container(pod, layout.aux_container)["volumeMounts"]
    assert container(pod, layout.aux_container)["resources"] == {"requests": {"cpu": "10m", "memory": "64Mi"}}

    template = built.argo_template()
    assert template is not None
    assert template["script"]["source"] == "import sys\nprint('loss=0.25' if 1 < 2 else '')\n"
    assert template["inputs"]["artifacts"] == [{"name": "model", "path": "/in/model", **{"s3": S3_MODEL["s3"]}}]
    assert template["archiveLocation"]["s3"]["key"] == f"fixture/{built.name}"
    raw = env_of(stager)["ARGO_TEMPLATE"]  # init (legacy) or supervisor (init-less) always carries it
    assert "\\u003c" in raw and "<" not in raw  # Go's json.Marshal escapes HTML characters
    assert env_of(main).get("ARGO_TEMPLATE") == (raw if layout.template_on_every_container else None)


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_container_set(layout: ArgoLayout) -> None:
    built = build(layout, "pair", "fixture[0].pair")
    assert_valid(built)
    names = [c["name"] for c in built.pod["spec"]["containers"]]
    assert names == [layout.aux_container, "a", "main"]
    for name in ("a", "main"):
        ctr = container(built.pod, name)
        assert ctr["command"][1] == "emissary" and "--" in ctr["command"]
        assert {"name": "workdir", "mountPath": "/work"} in ctr["volumeMounts"]
    assert built.pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "main"
    template = built.argo_template()
    assert template is not None and template["containerSet"]["containers"][1]["dependencies"] == ["a"]


# ----------------------------------------------------------------------------------------------------------------
# ARGO_TEMPLATE offload (>= 3.6) and args offload (>= 3.7.10)
# ----------------------------------------------------------------------------------------------------------------

BIG = "x" * (140 * 1024)


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_big_template_offload(layout: ArgoLayout) -> None:
    tmpl = {
        "name": "big",
        "script": {"image": "python:3.12", "command": ["python"], "source": f"print('{BIG}')"},
    }
    built = build_pod(WORKFLOW, tmpl, "fixture[0].big", layout=layout)
    assert_valid(built)
    main = container(built.pod, "main")
    if not layout.template_offload:  # 3.5: inline, on every container
        assert built.configmap is None
        assert len(env_of(main)["ARGO_TEMPLATE"]) > 140 * 1024
        return
    holder = container(built.pod, "supervisor" if layout.initless else "init")
    assert env_of(holder)["ARGO_TEMPLATE"] == "offloaded"
    assert {"name": "argo-env-config", "mountPath": "/argo/config"} in holder["volumeMounts"]
    assert {"name": "argo-env-config", "configMap": {"name": built.name}} in built.pod["spec"]["volumes"]
    cm = built.configmap
    assert cm is not None
    assert cm["metadata"]["name"] == built.name
    assert cm["metadata"]["labels"] == {"workflows.argoproj.io/workflow": "fixture"}
    assert cm["metadata"]["ownerReferences"] == built.pod["metadata"]["ownerReferences"]
    assert list(cm["data"]) == ["ARGO_TEMPLATE"]
    assert json.loads(cm["data"]["ARGO_TEMPLATE"])["script"]["source"].endswith("')")
    assert built.argo_template() == json.loads(cm["data"]["ARGO_TEMPLATE"])
    assert "ARGO_CONTAINER_ARGS_FILE" not in env_of(main)


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_big_args_offload(layout: ArgoLayout) -> None:
    # Only args are offloaded: a big value in `command` stays inline (and makes ARGO_TEMPLATE big).
    built = build(layout, "show", "fixture[2].show", {"parameters": {"x": BIG}})
    assert_valid(built)
    main = container(built.pod, "main")
    assert main["command"][-1] == BIG
    assert "ARGO_CONTAINER_ARGS_FILE" not in env_of(main)
    assert (built.configmap is not None) is layout.template_offload
    built_args = build_pod(
        WORKFLOW,
        {"name": "a", "container": {"image": "busybox", "command": ["echo"], "args": [BIG]}},
        "fixture[0].a",
        layout=layout,
    )
    assert_valid(built_args)
    main = container(built_args.pod, "main")
    if layout.args_offload:
        assert "args" not in main
        assert env_of(main)["ARGO_CONTAINER_ARGS_FILE"] == "/argo/config/ARGO_CONTAINER_ARGS_FILE"
        assert built_args.configmap is not None
        assert json.loads(built_args.configmap["data"]["ARGO_CONTAINER_ARGS_FILE"]) == [BIG]
        assert {"name": "argo-env-config", "mountPath": "/argo/config"} in main["volumeMounts"]
        assert "ARGO_TEMPLATE" in built_args.configmap["data"]  # the template holds the args too
    else:
        assert main["args"] == [BIG]
        assert (built_args.configmap is not None) is layout.template_offload


# ----------------------------------------------------------------------------------------------------------------
# Other controller behaviour
# ----------------------------------------------------------------------------------------------------------------


def test_pod_spec_patch_is_applied_before_the_emissary_wrap() -> None:
    tmpl = {
        "name": "patched",
        "podSpecPatch": '{"containers":[{"name":"main","image":"alpine:3.20","command":["sh","-c","date"]}],'
        '"terminationGracePeriodSeconds":5}',
        "container": {"image": "busybox", "command": ["false"]},
    }
    for layout in (V3_5, V3_7):
        built = build_pod(WORKFLOW, tmpl, "fixture[0].patched", layout=layout)
        assert_valid(built)
        main = container(built.pod, "main")
        assert main["image"] == "alpine:3.20"
        assert main["command"][main["command"].index("--") + 1 :] == ["sh", "-c", "date"]
        grace = "ARGO_TERMINATION_GRACE_PERIOD_SECONDS"
        assert env_of(container(built.pod, "wait"))[grace] == "5"
        assert (grace in env_of(main)) is layout.grace_env_on_all_containers


def test_executor_service_account_token_and_automount() -> None:
    tmpl = {
        "name": "locked",
        "automountServiceAccountToken": False,
        "executor": {"serviceAccountName": "argo-executor"},
        "serviceAccountName": "runner",
        "container": {"image": "busybox", "command": ["true"]},
    }
    built = build_pod(WORKFLOW, tmpl, "fixture[0].locked", layout=V3_7)
    assert_valid(built)
    spec = built.pod["spec"]
    assert spec["serviceAccountName"] == "runner"
    assert spec["automountServiceAccountToken"] is False
    assert {"name": "exec-sa-token", "secret": {"secretName": "argo-executor.service-account-token"}} in spec["volumes"]
    token = {"name": "exec-sa-token", "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    assert token in container(built.pod, "wait")["volumeMounts"]
    assert token not in container(built.pod, "main").get("volumeMounts", [])
    with pytest.raises(PodBuildError, match="automountServiceAccountToken"):
        build_pod(WORKFLOW, {**tmpl, "executor": None}, "fixture[0].locked", layout=V3_7)


def test_refusals() -> None:
    with pytest.raises(NotAPodTemplate):
        build_pod(WORKFLOW, "main", "fixture", layout=V3_7)
    with pytest.raises(PodBuildError, match=r"inputs\.parameters\.epochs"):
        build_pod(WORKFLOW, "train", "fixture[0].train", layout=V3_7)
    no_command = {"name": "n", "container": {"image": "somewhere/unknown:1"}}
    with pytest.raises(PodBuildError, match="entrypoint"):
        build_pod(WORKFLOW, no_command, "fixture[0].n", layout=V3_7)
    config = ControllerConfig(images={"somewhere/unknown:1": ImageEntrypoint(entrypoint=("/run",), cmd=("serve",))})
    main = container(build_pod(WORKFLOW, no_command, "fixture[0].n", layout=V3_7, config=config).pod, "main")
    assert main["command"][-2:] == ["--", "/run"] and main["args"] == ["serve"]


def test_boundary_scheduling_and_priority_differ_by_release() -> None:
    boundary = {"name": "main", "steps": [], "nodeSelector": {"pool": "gpu"}}
    tmpl = {"name": "t", "priority": 5, "container": {"image": "busybox", "command": ["true"]}}
    pods = {
        layout.name: build_pod(WORKFLOW, tmpl, "fixture[0].t", layout=layout, boundary_template=boundary).pod
        for layout in (V3_5, V3_6, V3_7)
    }
    assert "nodeSelector" not in pods["v3.5.14"]["spec"]
    assert pods["v3.6.19"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert pods["v3.6.19"]["spec"]["priority"] == 5
    assert "priority" not in pods["v3.7.18"]["spec"]


def test_pod_gc_annotation_and_deadlines() -> None:
    workflow = {
        **WORKFLOW,
        "spec": {**WORKFLOW["spec"], "podGC": {"strategy": "OnPodSuccess"}, "activeDeadlineSeconds": 600},
    }
    tmpl = {"name": "t", "timeout": "30s", "container": {"image": "busybox", "command": ["true"]}}
    v35 = build_pod(workflow, tmpl, "fixture[0].t", layout=V3_5).pod
    v41 = build_pod(workflow, tmpl, "fixture[0].t", layout=V4_1).pod
    assert "workflows.argoproj.io/pod-gc-strategy" not in v35["metadata"]["annotations"]
    assert v41["metadata"]["annotations"]["workflows.argoproj.io/pod-gc-strategy"] == "OnPodSuccess/5s"
    assert v41["spec"]["activeDeadlineSeconds"] == 30  # template timeout beats the workflow's 600 s
    assert env_of(container(v41, "main"))["ARGO_DEADLINE"] == "2025-01-01T00:10:00Z"


# ----------------------------------------------------------------------------------------------------------------
# The walk
# ----------------------------------------------------------------------------------------------------------------


def test_walk_resolves_outputs_artifacts_and_script_output() -> None:
    result = expand_workflow(WORKFLOW)
    assert [i.node_name for i in result.pods] == ["fixture[0].train", "fixture[1].report", "fixture[2].show"]
    train_inv, report_inv, _ = result.pods
    assert train_inv.inputs["parameters"] == {"epochs": "hello"}
    loss = report_inv.inputs["parameters"]["loss"]
    assert loss == f"{PLACEHOLDER_PREFIX}fixture[0].train.outputs.parameters.loss"
    model = report_inv.inputs["artifacts"]["model"]
    assert model["s3"] == {"key": f"fixture/{train_inv.pod_name}/model.tgz"}  # the repository's default key
    assert report_inv.include_script_output  # `show` consumes {{steps.report.outputs.result}}
    assert not train_inv.include_script_output

    known = expand_workflow(
        WORKFLOW, outputs={"fixture[0].train": {"parameters": {"loss": "0.5"}}, "report": {"result": "ok"}}
    )
    assert known.pods[1].inputs["parameters"] == {"loss": "0.5"}
    assert known.pods[2].inputs["parameters"] == {"x": "ok"}
    for layout in LAYOUTS:
        built, failed = known.build_pods(layout=layout)
        assert not failed
        for pod in built:
            assert_valid(pod)
        assert env_of(container(built[1].pod, "main"))["ARGO_INCLUDE_SCRIPT_OUTPUT"] == "true"


def test_walk_items_dag_when_and_retries() -> None:
    workflow = {
        "metadata": {"name": "w"},
        "spec": {
            "entrypoint": "d",
            "templates": [
                {
                    "name": "d",
                    "dag": {
                        "tasks": [
                            {
                                "name": "b",
                                "template": "echo",
                                "depends": "a",
                                "arguments": {"parameters": [{"name": "m", "value": "{{tasks.a.outputs.result}}"}]},
                            },
                            {
                                "name": "a",
                                "template": "echo",
                                "withItems": ["x", {"k": 1}],
                                "arguments": {"parameters": [{"name": "m", "value": "{{item}}"}]},
                            },
                            {
                                "name": "c",
                                "template": "echo",
                                "depends": "a.Failed",
                                "arguments": {"parameters": [{"name": "m", "value": "c"}]},
                            },
                            {"name": "e", "template": "retrying", "when": "{{tasks.b.outputs.result}} == yes"},
                            {
                                "name": "f",
                                "template": "echo",
                                "when": "1 == 2",
                                "arguments": {"parameters": [{"name": "m", "value": "f"}]},
                            },
                        ]
                    },
                },
                {
                    "name": "echo",
                    "inputs": {"parameters": [{"name": "m"}]},
                    "container": {"image": "busybox", "command": ["echo", "{{inputs.parameters.m}}"]},
                },
                {
                    "name": "retrying",
                    "retryStrategy": {"limit": 2},
                    "container": {"image": "busybox", "command": ["true"]},
                },
            ],
        },
    }
    result = expand_workflow(workflow)
    by_name = {i.node_name: i for i in result.invocations}
    assert [i.node_name for i in result.pods] == ["w.a(0:x)", "w.a(1:k:1)", "w.b", "w.e(0)"]
    assert by_name["w.a(1:k:1)"].inputs["parameters"] == {"m": '{"k":1}'}
    assert by_name["w.c"].kind == "skipped"  # a.Failed is false when every step succeeds
    assert by_name["w.f"].kind == "skipped" and "evaluated false" in by_name["w.f"].reason
    assert any("assumed true" in note for note in by_name["w.e(0)"].notes)
    retried = result.build(by_name["w.e(0)"], layout=V3_7)
    assert retried.pod["metadata"]["annotations"]["workflows.argoproj.io/node-name"] == "w.e(0)"
    assert retried.name == pod_name("w", "w.e(0)", "retrying")


def test_walk_never_raises_on_garbage() -> None:
    assert expand_workflow({"kind": "ConfigMap"}).notes
    assert expand_workflow({"kind": "Workflow", "spec": {"templates": []}}).notes == ("workflow has no entrypoint",)
    missing = expand_workflow({"metadata": {"name": "m"}, "spec": {"entrypoint": "nope"}})
    assert missing.invocations[0].kind == "skipped"


# ----------------------------------------------------------------------------------------------------------------
# The corpus: every published workflow walks, every pod validates; node names match the controller's
# ----------------------------------------------------------------------------------------------------------------

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS} (../shared/corpus)")

# Why a walked pod of the corpus may legitimately not be built: the controller asks the image registry for the
# entrypoint of containers without `command`, which this offline builder cannot.
ALLOWED_BUILD_FAILURES = re.compile(r"failed to look-up entrypoint/cmd for image")


@cache
def corpus_walks() -> tuple[tuple[str, Expansion], ...]:
    walks: list[tuple[str, Expansion]] = []
    for folder in WALKED_FOLDERS:
        files = {path: load_documents(path) for path in sorted((CORPUS / folder).glob("*.yaml"))}
        sources = [
            d
            for docs in files.values()
            for d in docs
            if d.get("kind") in ("WorkflowTemplate", "ClusterWorkflowTemplate")
        ]
        for path, docs in files.items():
            for index, doc in enumerate(docs):
                walks.append((f"{folder}/{path.name}#{index}", expand_workflow(doc, template_sources=sources)))
    return tuple(walks)


@needs_corpus
def test_corpus_walks_and_yields_pods() -> None:
    walks = corpus_walks()
    assert len(walks) > 300
    pods = sum(len(result.pods) for _, result in walks)
    assert pods > 1000  # KFP v2 compiled workflows alone hold hundreds of driver/executor pods
    kinds = {inv.kind for _, result in walks for inv in result.invocations}
    assert kinds <= {"pod", "not-a-pod", "skipped"}
    for label, result in walks:
        for inv in result.invocations:
            assert inv.kind == "pod" or inv.reason, f"{label}: {inv.node_name} has no reason"


@needs_corpus
@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_corpus_pods_validate(layout: ArgoLayout) -> None:
    # Every pod is schema-validated for the corpus' own era (3.7) and for the most different layout (4.1
    # init-less); for the other layouts, whose differences from those two are per-layout not per-workflow,
    # the first pod of each workflow is, and every pod gets the structural checks.
    validate_all = layout in (V3_7, V4_1_INITLESS)
    count = 0
    for label, result in corpus_walks():
        built, failed = result.build_pods(layout=layout)
        for inv, why in failed:
            assert ALLOWED_BUILD_FAILURES.search(why), f"{label}: {inv.node_name}: {why}"
        for index, pod in enumerate(built):
            count += 1
            assert structural_problems(pod.pod) == [], label
            if validate_all or index == 0:
                problems = schema_violations(pod.pod)
                assert not problems, f"{label}: {pod.node_name}: {problems[:3]}"
                if pod.configmap is not None:
                    assert not schema_violations(pod.configmap)
            main_like = [c for c in pod.pod["spec"]["containers"] if c["name"] != layout.aux_container]
            for ctr in main_like:
                assert ctr["command"][:2] == [layout.argoexec_path, "emissary"] and "--" in ctr["command"], label
    assert count > 1000


# Files of workflows-with-status whose node IDs were written by hand in Argo's Go tests (not computed).
HAND_WRITTEN_IDS = {
    "argo-v3.7.18__workflow__controller__dag_test__L4638.yaml",
    "argo-v3.7.18__workflow__controller__taskset_test__L120.yaml",
    "argo-v3.7.18__workflow__controller__taskset_test__L336.yaml",
    "argo-v3.7.18__workflow__util__util_test__L170.yaml",
    "argo-v3.7.18__workflow__util__util_test__L361.yaml",
    "argo-v3.7.18__workflow__util__util_test__L4889.yaml",
}


@needs_corpus
def test_node_names_and_ids_match_controller_status() -> None:
    """Walking a workflow with the outputs its status records yields the controller's own pod node names."""
    compared = 0
    for path in sorted((CORPUS / "workflows-with-status").glob("*.yaml")):
        for doc in load_documents(path):
            name = (doc.get("metadata") or {}).get("name")
            nodes = {k: n for k, n in ((doc.get("status") or {}).get("nodes") or {}).items() if isinstance(n, dict)}
            if not name or not nodes:
                continue
            if path.name not in HAND_WRITTEN_IDS:
                for key, node in nodes.items():
                    if node.get("name"):  # a few Go fixtures leave names out
                        assert node_id(name, node["name"]) == key, f"{path.name}: {node['name']}"
            if not (doc.get("spec") or {}).get("templates"):
                continue
            succeeded_run = (doc.get("status") or {}).get("phase") == "Succeeded"
            outputs: dict[str, Any] = {}
            for node in nodes.values():
                recorded = node.get("outputs") or {}
                known: dict[str, Any] = {}
                if recorded.get("result") is not None:
                    known["result"] = recorded["result"]
                if recorded.get("parameters"):
                    known["parameters"] = {p["name"]: str(p.get("value", "")) for p in recorded["parameters"]}
                if recorded.get("artifacts"):
                    known["artifacts"] = {a["name"]: a for a in recorded["artifacts"]}
                if known:
                    outputs[node["name"]] = known
            walked = {inv.node_name for inv in expand_workflow(doc, outputs=outputs).pods}
            # The walk follows the path where every step succeeds at its first attempt: later retry attempts
            # (`(1)`, `(2)`) and exit handlers of failed runs are the controller's alone.
            succeeded = {
                n["name"]
                for n in nodes.values()
                if n.get("type") == "Pod"
                and n.get("phase") == "Succeeded"
                and not re.search(r"\([1-9]\d*\)", n["name"])
                and (succeeded_run or ".onExit" not in n["name"])
            }
            assert succeeded <= walked, f"{path.name}: controller-only pods {sorted(succeeded - walked)}"
            compared += len(succeeded)
    assert compared > 50
