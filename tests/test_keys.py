"""Cache key v3: the documented test vectors, and properties over pods that differ in one field."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from wfboost.argo.pods import parse_pod
from wfboost.cache.keys import KEY_SCHEMA, cache_key, canonical, key_material
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.runner import default_workflow_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "cache-key.md"

MINIMAL: dict[str, Any] = {
    "schema": KEY_SCHEMA, "namespace": "ml",
    "containers": [{"name": None, "image": "busybox:1.36", "command": ["sh", "-c"], "args": ["echo hi"],
                    "workingDir": None, "env": [], "envFrom": [], "volumeMounts": []}],
    "initContainers": [], "sidecars": [],
    "script": None, "inputArtifacts": [], "outputs": {"parameters": [], "artifacts": []}, "resource": None,
    "seed": None,
}
WITH_ENV = copy.deepcopy(MINIMAL)
WITH_ENV["containers"][0]["env"] = [
    {"name": "GREETING", "value": "grüß dich €"},
    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
]
VECTORS = {
    "minimal": (MINIMAL, "44f420cfa6316965dde92868583a0d17351ab5b9e957434bfa52a19e268508d5"),
    "shared": ({**MINIMAL, "namespace": None}, "40c23fb9666d2fbd142f651c15b4d14d8c16f410c5c2d48fda5c3df474256ccb"),
    "seeded": (
        {**MINIMAL, "seed": "2026-11 rebuild"},
        "82f70f89ed2ead08346b09e3a74086331c79d78358ffe63f03b13ed7fdc8a3b9",
    ),
    "env": (WITH_ENV, "dc90e3f1bc8d650072688b862445680678a6fbc0e5354c35f6926687e03fc713"),
}
POD_VECTORS = {
    "fetch": "a02d2c78c861bfe8fb8c00e1349216b1aa6ae91c1a57e67008a0a76f3980433f",
    "features": "f17850ba5a316576a27a0c51a75aa37dd153260ac401f8d7d7d5dfcf5587a18e",
}


@pytest.mark.parametrize("name", VECTORS)
def test_material_vectors(name: str) -> None:
    material, expected = VECTORS[name]
    assert cache_key(material) == expected
    assert hashlib.sha256(canonical(material)).hexdigest() == expected
    assert expected in DOC.read_text(), "docs/cache-key.md must carry every vector"


def test_canonical_json_is_rfc8785() -> None:
    text = canonical(WITH_ENV).decode()
    assert text == json.dumps(WITH_ENV, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert '"grüß dich €"' in text  # UTF-8, not \\u escapes


def vector_pods(layout: str, name: str = "vectors", namespace: str = "ml-team") -> dict[str, dict[str, Any]]:
    workflow = yaml.safe_load(default_workflow_text())
    workflow["metadata"].pop("generateName")
    workflow["metadata"]["name"] = name
    plan = plan_workflow(workflow, layout, namespace=namespace)
    return {item.step.split(".", 1)[1]: item.pod for item in plan.pods}


@pytest.mark.parametrize("layout", ["v3.5.14", "v3.6.19", "v3.7.18", "v4.1.2", "v4.1.2-initless"])
def test_pod_vectors_are_the_same_under_every_argo_layout(layout: str) -> None:
    pods = vector_pods(layout)
    for step, expected in POD_VECTORS.items():
        assert cache_key(key_material(parse_pod(pods[step]))) == expected, step
        assert expected in DOC.read_text()


BASE = vector_pods("v3.7.18")["fetch"]
BASE_KEY = cache_key(key_material(parse_pod(BASE)))
SCRIPT_BASE = vector_pods("v3.7.18")["features"]


def _main(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "main")  # type: ignore[no-any-return]


def _with_env(pod: dict[str, Any], name: str, value: str) -> None:
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        for env in container.get("env", []):
            if env["name"] == name and "value" in env:
                env["value"] = value


volatile_edits = st.sampled_from([
    "pod_name", "node_id", "workflow_label", "owner_uid", "deadline", "resources", "node_selector", "tolerations",
    "annotation", "service_account", "trace", "include_script_output", "priority",
])


@settings(max_examples=80, deadline=None)
@given(edits=st.lists(volatile_edits, min_size=1, max_size=5), text=st.text(min_size=1, max_size=20))
def test_pods_differing_only_in_volatile_fields_share_a_key(edits: list[str], text: str) -> None:
    pod = copy.deepcopy(BASE)
    meta, spec = pod["metadata"], pod["spec"]
    for edit in edits:
        if edit == "pod_name":
            meta["name"] = "p-" + str(abs(hash(text)))
        elif edit == "node_id":
            meta["annotations"]["workflows.argoproj.io/node-id"] = text
            _with_env(pod, "ARGO_NODE_ID", text)
        elif edit == "workflow_label":
            meta["labels"]["workflows.argoproj.io/workflow"] = text
            _with_env(pod, "ARGO_WORKFLOW_NAME", text)
        elif edit == "owner_uid":
            for ref in meta.get("ownerReferences", []):
                ref["uid"] = text
        elif edit == "deadline":
            _with_env(pod, "ARGO_DEADLINE", text)
        elif edit == "resources":
            _main(pod)["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        elif edit == "node_selector":
            spec["nodeSelector"] = {"pool": text}
        elif edit == "tolerations":
            spec["tolerations"] = [{"key": text, "operator": "Exists"}]
        elif edit == "annotation":
            meta["annotations"]["team/" + str(len(text))] = text
        elif edit == "service_account":
            spec["serviceAccountName"] = "sa-" + str(len(text))
        elif edit == "trace":
            _main(pod).setdefault("env", []).append({"name": "TRACEPARENT", "value": text})
        elif edit == "include_script_output":
            _with_env(pod, "ARGO_INCLUDE_SCRIPT_OUTPUT", "true")
        elif edit == "priority":
            spec["priorityClassName"] = "high"
    assert cache_key(key_material(parse_pod(pod))) == BASE_KEY


meaningful = st.sampled_from(["image", "argument", "command", "env", "seed", "namespace", "output_path"])


@settings(max_examples=60, deadline=None)
@given(edit=meaningful, text=st.text(min_size=1, max_size=20))
def test_pods_differing_in_what_they_compute_do_not_share_a_key(edit: str, text: str) -> None:
    pod = copy.deepcopy(BASE)
    main = _main(pod)
    seed = None
    namespace = None
    if edit == "image":
        main["image"] = "ghcr.io/example/data-tools:1.4.3-" + str(len(text))
    elif edit == "argument":
        main["args"] = [*main["args"], text]
    elif edit == "command":
        main["command"] = [*main["command"], text]
    elif edit == "env":
        main.setdefault("env", []).append({"name": "MODE", "value": text})
    elif edit == "seed":
        seed = text
    elif edit == "namespace":
        namespace = "other-" + str(len(text))
    elif edit == "output_path":
        pod = copy.deepcopy(pod)
        step = parse_pod(pod)
        template = copy.deepcopy(dict(step.template or {}))
        template["outputs"]["parameters"][0]["valueFrom"]["path"] = "/tmp/" + str(len(text)) + "rows"
        step = type(step)(**{**step.__dict__, "template": template})
        assert cache_key(key_material(step)) != BASE_KEY
        return
    assert cache_key(key_material(parse_pod(pod, namespace), seed=seed)) != BASE_KEY


@settings(max_examples=30, deadline=None)
@given(source=st.text(min_size=1, max_size=200))
def test_script_source_is_part_of_the_key(source: str) -> None:
    step = parse_pod(copy.deepcopy(SCRIPT_BASE))
    template = copy.deepcopy(dict(step.template or {}))
    original = template["script"]["source"]
    template["script"]["source"] = original + source
    changed = type(step)(**{**step.__dict__, "template": template})
    assert cache_key(key_material(changed)) != cache_key(key_material(step))


@settings(max_examples=30, deadline=None)
@given(key=st.text(min_size=1, max_size=60))
def test_an_input_artifact_is_identified_by_its_location(key: str) -> None:
    step = parse_pod(copy.deepcopy(SCRIPT_BASE))
    template = copy.deepcopy(dict(step.template or {}))
    artifact = template["inputs"]["artifacts"][0]
    if artifact["s3"]["key"] == key:
        return
    artifact["s3"]["key"] = key
    changed = type(step)(**{**step.__dict__, "template": template})
    assert cache_key(key_material(changed)) != cache_key(key_material(step))


def test_the_key_is_shared_across_namespaces_only_when_asked() -> None:
    here = parse_pod(vector_pods("v3.7.18", namespace="team-a")["fetch"])
    there = parse_pod(vector_pods("v3.7.18", namespace="team-b")["fetch"])
    assert cache_key(key_material(here)) != cache_key(key_material(there))
    assert cache_key(key_material(here, share_across_namespaces=True)) == cache_key(
        key_material(there, share_across_namespaces=True)
    )


def test_every_container_beside_main_is_part_of_the_key_as_the_pod_runs_it() -> None:
    """Init containers and sidecars, the template's or added by podSpecPatch or another webhook, run on a hit too
    and may fetch what main reads: keyed as the pod has them, with their volumes' sources."""
    for field, container in (
        ("initContainers", {"name": "clone", "image": "alpine/git", "args": ["clone", "--branch", "v2", "repo"]}),
        ("containers", {"name": "vault-agent", "image": "hashicorp/vault:1.17", "args": ["agent"]}),
    ):
        pod = copy.deepcopy(BASE)
        pod["spec"].setdefault(field, []).append(container)
        assert cache_key(key_material(parse_pod(pod))) != BASE_KEY, field
    keys = set()
    for configmap in ("settings-a", "settings-b"):
        pod = copy.deepcopy(BASE)
        pod["spec"]["volumes"].append({"name": "settings", "configMap": {"name": configmap}})
        pod["spec"]["containers"].append(
            {"name": "helper", "image": "busybox:1.36", "volumeMounts": [{"name": "settings", "mountPath": "/s"}]}
        )
        keys.add(cache_key(key_material(parse_pod(pod))))
    assert len(keys) == 2  # the same volume name from two ConfigMaps: two keys


def test_a_user_variable_named_like_argos_is_kept() -> None:
    pod = copy.deepcopy(BASE)
    step = parse_pod(pod)
    template = copy.deepcopy(dict(step.template or {}))
    template["container"]["env"] = [{"name": "ARGO_MODE", "value": "fast"}]
    _main(pod).setdefault("env", []).append({"name": "ARGO_MODE", "value": "fast"})
    declared = type(step)(**{**parse_pod(pod).__dict__, "template": template})
    assert cache_key(key_material(declared)) != BASE_KEY


def test_every_canonical_json_shown_in_the_doc_hashes_to_its_vector() -> None:
    import re

    text = DOC.read_text()
    blocks = re.findall(r"```json\n(.*?)\n```", text, re.S)
    assert len(blocks) == len(VECTORS)
    for block in blocks:
        digest = hashlib.sha256(block.encode()).hexdigest()
        assert digest in {expected for _, expected in VECTORS.values()}
        assert canonical(json.loads(block)).decode() == block  # shown exactly as hashed


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(codec=None), max_size=6), inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(value=st.dictionaries(st.text(max_size=8), _json_values, max_size=5))
def test_the_fast_canonical_form_is_rfc_8785_exactly(value: dict[str, Any]) -> None:
    """orjson with sorted keys where it is provably the same bytes, the reference implementation otherwise: the two
    must agree on every value, and refuse the same ones."""
    import rfc8785

    from wfboost.cache.keys import canonical

    try:
        expected: bytes | type[Exception] = bytes(rfc8785.dumps(value))
    except Exception as exc:
        expected = type(exc)
    if isinstance(expected, bytes):
        assert canonical(value) == expected
    else:
        with pytest.raises(expected):
            canonical(value)
