"""The harness's schema validation: core kinds against Kubernetes' OpenAPI schema, Argo kinds against Argo's models,
and every published Argo object in ../shared/corpus.

Corpus objects that fail are listed in KNOWN_FAILURES with the reason, and the test checks that they still fail for
that reason, so a change in the validator (or the corpus) that alters the verdict shows up instead of hiding.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness.validate import SchemaViolation, schema_violations, validate_object

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CORPUS_FOLDERS = (
    "argo-examples",
    "kfp-v2-argo",
    "kfp-v2-argo-compiled-workflows",
    "kfp-v1-argo",
    "workflows-with-status",
)

# Corpus documents the validator refuses, each with the message it must give and why that verdict is right.
KNOWN_FAILURES: dict[str, tuple[str, str]] = {
    "argo-examples/examples__workflow-event-binding__github-path-filter-workflowtemplate.yaml#0": (
        "spec.arguments.parameters[0].value: expected string or number or boolean or null, got a list",
        "`value: []`: Argo's AnyString decoder silently turns a list into an empty string; a patch of ours "
        "writing a list there would lose the value, so the harness refuses it",
    ),
    "workflows-with-status/argo-v3.7.18__workflow__controller__operator_test__L4815.yaml#0": (
        "status.nodes.wf-with-pvc-2390440388.id: required field is missing",
        "a Go test fixture with partial node statuses; the controller always writes a node's id and type",
    ),
    "workflows-with-status/argo-v3.7.18__workflow__controller__operator_test__L6814.yaml#0": (
        "status.nodes.my-wf.type: required field is missing",
        "a Go test fixture with partial node statuses; the controller always writes a node's id and type",
    ),
    "workflows-with-status/argo-v3.7.18__workflow__controller__operator_test__L6857.yaml#0": (
        "status.nodes.my-wf.type: required field is missing",
        "a Go test fixture with partial node statuses; the controller always writes a node's id and type",
    ),
    "workflows-with-status/argo-v3.7.18__workflow__controller__operator_test__L6891.yaml#0": (
        'metadata.labels["workflows.argoproj.io/completed"]: expected string, got true',
        "a Go test fixture with a boolean label value; the API server refuses non-string labels",
    ),
    "workflows-with-status/argo-v3.7.18__workflow__controller__steps_test__L336.yaml#0": (
        "spec.templates[0].steps[1][0].arguments.artifacts[0].subpath: unknown field (did you mean 'subPath'?)",
        "`subpath` only works because Go's JSON decoder matches keys case-insensitively; the field is subPath",
    ),
}


# libyaml when PyYAML has it (the KFP files are megabytes), the pure-Python loader otherwise.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _KubectlLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """YAML as kubectl reads it for JSON: timestamps stay strings (PyYAML would make datetimes of them)."""


_KubectlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@cache
def _documents(path: Path) -> tuple[tuple[int, dict[str, Any]], ...]:
    """The non-empty documents of a corpus file with their index (parsed once: ids and tests share them)."""
    loaded = yaml.load_all(path.read_text(encoding="utf-8"), Loader=_KubectlLoader)
    return tuple((index, document) for index, document in enumerate(loaded) if document)


def _corpus_ids() -> list[str]:
    if not CORPUS.is_dir():
        return []
    ids: list[str] = []
    for folder in CORPUS_FOLDERS:
        for path in sorted((CORPUS / folder).glob("*.yaml")):
            ids.extend(f"{folder}/{path.name}#{index}" for index, _ in _documents(path))
    return ids


CORPUS_IDS = _corpus_ids()
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is absent ({CORPUS})")


def _corpus_document(document_id: str) -> dict[str, Any]:
    relative, index = document_id.rsplit("#", 1)
    return copy.deepcopy(dict(_documents(CORPUS / relative))[int(index)])


# --- core kinds -----------------------------------------------------------------------------------------------


def pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "step-1", "namespace": "team-a", "labels": {"workflows.argoproj.io/workflow": "wf"}},
        "spec": {
            "initContainers": [{"name": "init", "image": "quay.io/argoproj/argoexec:v3.7.18"}],
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.12",
                    "command": ["/var/run/argo/argoexec", "emissary", "--", "python", "-c", "print(1)"],
                    "env": [{"name": "ARGO_CONTAINER_NAME", "value": "main"}],
                    "resources": {"requests": {"cpu": "100m", "memory": 64 * 1024 * 1024}, "limits": {"cpu": 1}},
                    "securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "var-run-argo", "mountPath": "/var/run/argo"}],
                }
            ],
            "volumes": [{"name": "var-run-argo", "emptyDir": {}}],
            "restartPolicy": "Never",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
        },
    }


def test_a_valid_pod_validates() -> None:
    validate_object(pod())


def test_a_pod_with_a_wrong_type_names_the_path() -> None:
    bad = pod()
    bad["spec"]["containers"][0]["image"] = 5
    bad["spec"]["restartPolicy"] = ["Never"]
    with pytest.raises(SchemaViolation) as caught:
        validate_object(bad)
    assert caught.value.messages == (
        "spec.containers[0].image: expected string or null, got 5",
        "spec.restartPolicy: expected string or null, got a list",
    )
    assert "Pod/step-1 fails its schema" in str(caught.value)


def test_a_pod_with_unknown_fields_names_each_one() -> None:
    bad = pod()
    bad["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    bad["spec"]["nodeSelectors"] = {"a": "b"}
    assert schema_violations(bad) == [
        "spec.containers[0].imagePullPolicyy: unknown field (did you mean 'imagePullPolicy'?)",
        "spec.nodeSelectors: unknown field (did you mean 'nodeSelector'?)",
    ]


def test_a_pod_without_required_fields_says_which() -> None:
    bad = pod()
    del bad["spec"]["containers"][0]["name"]
    assert schema_violations(bad) == ["spec.containers[0].name: required field is missing"]


def test_objects_without_api_version_or_kind_fail() -> None:
    assert schema_violations({"metadata": {"name": "x"}}) == [
        "apiVersion: required field is missing",
        "kind: required field is missing",
    ]


def test_kinds_without_a_schema_fail() -> None:
    assert schema_violations({"apiVersion": "example.com/v1", "kind": "Gadget"})[0].startswith(
        "(top level): no Kubernetes 1.36.0 schema for Gadget"
    )
    assert schema_violations({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor"})[0].startswith(
        "(top level): no schema for Sensor argoproj.io/v1alpha1"
    )


@pytest.mark.parametrize(
    "obj",
    [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"ARGO_TEMPLATE": "{}"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {}},
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "wfboost"},
            "webhooks": [
                {
                    "name": "pods.wfboost.io",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "NoneOnDryRun",
                    "failurePolicy": "Ignore",
                    "timeoutSeconds": 5,
                    "reinvocationPolicy": "IfNeeded",
                    "clientConfig": {"service": {"name": "wfboost", "namespace": "wfboost", "path": "/mutate/pods"}},
                    "rules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                    ],
                    "namespaceSelector": {
                        "matchExpressions": [
                            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
                        ]
                    },
                }
            ],
        },
    ],
    ids=["ConfigMap", "Secret", "MutatingWebhookConfiguration"],
)
def test_other_core_kinds_validate(obj: dict[str, Any]) -> None:
    validate_object(obj)


def test_formats_are_checked() -> None:
    bad = pod()
    bad["metadata"]["creationTimestamp"] = "yesterday"
    bad["spec"]["containers"][0]["ports"] = [{"containerPort": 2**40}]
    messages = schema_violations(bad)
    assert messages[0].startswith('metadata.creationTimestamp: "yesterday" is not a valid date-time')
    assert messages[1] == f"spec.containers[0].ports[0].containerPort: {2**40} is not a valid int32"
    good = pod()
    good["metadata"]["creationTimestamp"] = "2024-01-31T12:00:00Z"
    validate_object(good)


# --- Argo kinds -----------------------------------------------------------------------------------------------


def workflow() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "hello-", "annotations": {"wfboost.io/x": "1"}},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "n", "value": 3}, {"name": "flag", "value": True}]},
            "templates": [
                {
                    "name": "main",
                    "metadata": {"labels": {"wfboost.io/cache": "false"}},
                    "inputs": {"parameters": [{"name": "n", "enum": [1, 2, 3]}]},
                    "container": {
                        "image": "alpine:3.20",
                        "command": ["sh", "-c"],
                        "args": ["echo {{inputs.parameters.n}}"],
                        "resources": {"limits": {"nvidia.com/gpu": 1}},
                    },
                    "outputs": {"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/out", "default": 0}}]},
                    "synchronization": {"mutex": {"name": "legacy-3x-form"}},
                    "memoize": {"key": "k", "maxAge": "1h", "cache": {"configMap": {"name": "c", "key": "k"}}},
                }
            ],
        },
        "status": {
            "phase": "Running",
            "nodes": {"hello-1": {"id": "hello-1", "name": "hello-1", "type": "Pod", "phase": "Succeeded"}},
        },
    }


def test_a_valid_workflow_validates_including_argo_3x_and_anystring_forms() -> None:
    validate_object(workflow())


def test_a_workflow_with_an_unknown_field_names_the_path() -> None:
    bad = workflow()
    template = bad["spec"]["templates"][0]
    template["contianer"] = template.pop("container")
    bad["spec"]["entrypoint"] = 7
    assert schema_violations(bad) == [
        "spec.entrypoint: expected string or null, got 7",
        "spec.templates[0].contianer: unknown field (did you mean 'container'?)",
    ]


def test_unknown_phases_are_refused() -> None:
    bad = workflow()
    bad["status"]["phase"] = "Runningg"
    bad["status"]["nodes"]["hello-1"]["phase"] = "Done"
    messages = schema_violations(bad)
    assert messages[0].startswith('status.nodes.hello-1.phase: "Done" is not a node phase')
    assert messages[1].startswith('status.phase: "Runningg" is not a workflow phase')


def task_result() -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTaskResult",
        "metadata": {
            "name": "hello-1",
            "labels": {
                "workflows.argoproj.io/workflow": "hello",
                "workflows.argoproj.io/report-outputs-completed": "true",
            },
        },
        "outputs": {
            "parameters": [{"name": "out", "value": "42"}],
            "artifacts": [{"name": "data", "path": "/tmp/data", "s3": {"key": "hello/hello-1/data.tgz"}}],
            "result": "hello",
            "exitCode": "0",
        },
        "phase": "Succeeded",
        "progress": "1/1",
    }


def test_workflow_task_results_validate() -> None:
    validate_object(task_result())
    bad = task_result()
    bad["outputs"]["artifacts"][0]["s3"]["keyy"] = bad["outputs"]["artifacts"][0]["s3"].pop("key")
    bad["outputs"]["exitCode"] = 0
    assert schema_violations(bad) == [
        "outputs.artifacts[0].s3.keyy: unknown field (did you mean 'key'?)",
        "outputs.exitCode: expected string or null, got 0",
    ]
    bad["phase"] = "Finished"
    assert schema_violations(bad)[-1].startswith('phase: "Finished" is not a node phase')
    del bad["metadata"]
    assert "metadata: required field is missing" in schema_violations(bad)


@pytest.mark.parametrize("kind", ["WorkflowTemplate", "ClusterWorkflowTemplate"])
def test_templates_validate(kind: str) -> None:
    obj = workflow()
    obj["kind"] = kind
    del obj["status"]
    validate_object(obj)


def test_cron_workflows_validate() -> None:
    spec = workflow()["spec"]
    validate_object(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "CronWorkflow",
            "metadata": {"name": "nightly"},
            "spec": {"schedules": ["0 1 * * *"], "workflowSpec": spec},
        }
    )


# Places in the fixtures that are structs (not maps like labels or resources), where any new key is unknown.
STRUCT_PATHS: list[tuple[str, tuple[str | int, ...]]] = [
    ("pod", ()),
    ("pod", ("metadata",)),
    ("pod", ("spec",)),
    ("pod", ("spec", "containers", 0)),
    ("pod", ("spec", "containers", 0, "securityContext")),
    ("pod", ("spec", "volumes", 0, "emptyDir")),
    ("workflow", ("spec",)),
    ("workflow", ("spec", "templates", 0)),
    ("workflow", ("spec", "templates", 0, "container")),
    ("workflow", ("spec", "templates", 0, "outputs", "parameters", 0, "valueFrom")),
    ("workflow", ("spec", "templates", 0, "synchronization")),
    ("workflow", ("status", "nodes", "hello-1")),
    ("task_result", ("outputs", "artifacts", 0, "s3")),
]
FIXTURES = {"pod": pod, "workflow": workflow, "task_result": task_result}


@settings(deadline=None)  # schema validation per example; CI machines vary in speed
@given(
    st.sampled_from(STRUCT_PATHS),
    st.from_regex(r"x[A-Za-z]{1,12}", fullmatch=True),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
)
def test_any_unknown_field_anywhere_is_refused_with_its_path(
    where: tuple[str, tuple[str | int, ...]], key: str, value: object
) -> None:
    fixture, path = where
    obj = copy.deepcopy(FIXTURES[fixture]())
    node: Any = obj
    for part in path:
        node = node[part]
    node[key] = value
    expected = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in (*path, key)).lstrip(".")
    if fixture == "workflow" and path[:2] == ("status", "nodes"):
        expected = f"status.nodes.hello-1.{key}"
    messages = schema_violations(obj)
    assert any(message.startswith(f"{expected}: unknown field") for message in messages), messages


# --- the corpus -----------------------------------------------------------------------------------------------


@needs_corpus
def test_the_corpus_is_found_and_non_trivial() -> None:
    assert len(CORPUS_IDS) > 300, len(CORPUS_IDS)
    assert set(KNOWN_FAILURES) <= set(CORPUS_IDS), set(KNOWN_FAILURES) - set(CORPUS_IDS)


@needs_corpus
@pytest.mark.parametrize("document_id", CORPUS_IDS or ["<corpus absent>"])
def test_corpus_objects_validate(document_id: str) -> None:
    document = _corpus_document(document_id)
    messages = schema_violations(document)
    if document_id in KNOWN_FAILURES:
        expected, why = KNOWN_FAILURES[document_id]
        assert expected in messages, f"expected to fail ({why}) with {expected!r}, got {messages}"
        return
    assert not messages, f"{document_id} ({document.get('kind')}) fails:\n" + "\n".join(messages)
