"""A cache hit's pod: patched as Argo needs it, and its replay command run as the container would run it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.kubelet import BUSYBOX, run_main, wait_reads
from tests.harness.validate import validate_object
from wfboost.argo.pods import ArgoStep, parse_pod
from wfboost.argo.template_json import dumps_template, loads_template
from wfboost.cache.entries import CacheEntry
from wfboost.cache.marker import MARKER_PARAMETER, restored_outputs
from wfboost.policy import Policy
from wfboost.webhook.replay import (
    REPLAY_SCRIPT,
    RESTRICTED_SECURITY_CONTEXT,
    NotReplayable,
    ReplayPlan,
    hit_patch,
    replay_plan,
)
from wfboost_dev.argosim.layouts import LAYOUTS
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.runner import default_workflow_text

needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="busybox-static is not installed (make setup installs it)")
REPLAY = Policy.default().memoize.replay


def pods_by_template(layout: str) -> dict[str, dict[str, Any]]:
    plan = plan_workflow(yaml.safe_load(default_workflow_text()), layout, namespace="ml")
    found: dict[str, dict[str, Any]] = {}
    for item in plan.pods:
        template = parse_pod(item.pod).template or {}
        found.setdefault(str(template.get("name")), item.pod)
    return found


def entry_for(step: ArgoStep, values: dict[str, str], result: str | None = None) -> CacheEntry:
    outputs = (step.template or {}).get("outputs") or {}
    entry: dict[str, Any] = {
        "key": "k" * 64, "entry_id": "e1", "finished_at": "2026-11-20T10:00:00Z", "finished_ms": 1,
        "staleness_s": 604800,
        "parameters": [{"name": p["name"], "value": values[p["name"]]} for p in outputs.get("parameters") or []],
        "artifacts": [{"name": a["name"], "path": a["path"], "s3": {"key": f"cached/{a['name']}.tgz"}}
                      for a in outputs.get("artifacts") or []],
        "image": step.main["image"], "image_id": "sha256:" + "1" * 64,
        "producer": {"namespace": "ml", "workflow": "first", "workflow_uid": "u", "node_id": "n",
                     "node_name": "first.train", "pod": "first-train-1"},
        "recorded_at": "2026-11-20T10:00:01Z",
    }
    if result is not None:
        entry["result"] = result
    return entry  # type: ignore[return-value]


def patched(step: ArgoStep, plan: ReplayPlan) -> dict[str, Any]:
    ops = hit_patch(step, plan, REPLAY, labels={"wfboost.io/cache-hit": "true"}, annotations={"a/b": "c"})
    return jsonpatch.JsonPatch(ops).apply(copy.deepcopy(dict(step.pod)))  # type: ignore[no-any-return]


@pytest.mark.parametrize("layout", [layout.name for layout in LAYOUTS])
def test_a_hit_pod_keeps_argo_and_drops_the_rest(layout: str) -> None:
    step = parse_pod(pods_by_template(layout)["train"])
    plan = replay_plan(step, entry_for(step, {"metrics": '{"auc": 0.91}'}))
    pod = patched(step, plan)
    validate_object(pod)
    main = pod["spec"]["containers"][step.main_index]
    assert main["command"][: len(step.emissary_prefix)] == list(step.emissary_prefix)
    assert step.emissary_prefix[-1] == "--" and "emissary" in step.emissary_prefix
    assert main["image"] == REPLAY.image and "args" not in main
    assert main["securityContext"] == RESTRICTED_SECURITY_CONTEXT
    assert main["resources"] == REPLAY.resources.as_kubernetes()  # the GPU limit is gone with the old resources
    for scheduling in ("nodeSelector", "affinity", "runtimeClassName"):  # what earlier admission plugins enforced
        assert pod["spec"].get(scheduling) == step.pod["spec"].get(scheduling)
    assert pod["spec"].get("tolerations") == step.pod["spec"].get("tolerations")
    argo_env = [e for e in step.main["env"] if e["name"].startswith("ARGO_") and e["name"] != "ARGO_TEMPLATE"]
    assert [e for e in main["env"] if e["name"].startswith("ARGO_") and e["name"] != "ARGO_TEMPLATE"] == argo_env
    assert not [e for e in main["env"] if e["name"] == "WANDB_MODE"]  # the step's own env is not needed
    def but_template(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Containers as they were, but for ARGO_TEMPLATE, whose input artifacts a replay drops (tested below)."""
        return [{**c, "env": [e for e in c.get("env", []) if e["name"] != "ARGO_TEMPLATE"]} for c in containers]

    others = [c for i, c in enumerate(pod["spec"]["containers"]) if i != step.main_index]
    assert but_template(others) == but_template(
        [c for i, c in enumerate(step.pod["spec"]["containers"]) if i != step.main_index]
    )
    inits = pod["spec"].get("initContainers", [])
    assert but_template(inits) == but_template(step.pod["spec"].get("initContainers", []))
    names = {v["name"] for v in pod["spec"]["volumes"]}
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        assert {m["name"] for m in container.get("volumeMounts", [])} <= names
    assert pod["metadata"]["labels"]["wfboost.io/cache-hit"] == "true"
    assert pod["metadata"]["labels"]["workflows.argoproj.io/workflow"] == step.workflow


@needs_busybox
@pytest.mark.parametrize("layout", ["v3.5.14", "v3.7.18", "v4.1.2-initless"])
def test_the_replay_writes_exactly_the_recorded_outputs(layout: str, tmp_path: Path) -> None:
    step = parse_pod(pods_by_template(layout)["fetch-data"])
    value = "1024\n"
    pod = patched(step, replay_plan(step, entry_for(step, {"rows": value})))
    done = run_main(pod["spec"]["containers"][step.main_index], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tmp/rows").read_bytes() == value.encode() + b"\n"
    assert wait_reads((tmp_path / "tmp/rows").read_bytes()) == value  # one newline: Argo strips exactly one
    assert not (tmp_path / "data").exists()  # no artifact file at all: nothing for emissary to tar or wait to upload
    assert done.stdout == b""  # this step's template result is not captured


@needs_busybox
def test_a_script_steps_stdout_is_replayed(tmp_path: Path) -> None:
    step = parse_pod(pods_by_template("v3.7.18")["report"])
    step = ArgoStep(**{**step.__dict__, "include_script_output": True})
    result = "trained 3 models on 1024 rows"
    pod = patched(step, replay_plan(step, entry_for(step, {}, result=result)))
    done = run_main(pod["spec"]["containers"][step.main_index], tmp_path)
    assert done.returncode == 0, done.stderr
    assert wait_reads(done.stdout) == result


shell_and_kubelet = st.sampled_from(["$", "$$", "$(ARGO_CONTAINER_NAME)", "$(WFBOOST_STDOUT_0)", "${HOME}", "`id`",
                                     "'", '"', "\\", "\n", "%s", "-n", "\\n"])
tricky_text = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40) | shell_and_kubelet,
    max_size=12,
).map("".join)


@needs_busybox
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=tricky_text, result=tricky_text)
def test_any_value_survives_the_replay_byte_for_byte(value: str, result: str, tmp_path_factory: Any) -> None:
    root = tmp_path_factory.mktemp("replay")
    step = parse_pod(pods_by_template("v3.7.18")["fetch-data"])
    step = ArgoStep(**{**step.__dict__, "include_script_output": True})
    pod = patched(step, replay_plan(step, entry_for(step, {"rows": value}, result=result)))
    done = run_main(pod["spec"]["containers"][step.main_index], root)
    assert done.returncode == 0, done.stderr
    assert wait_reads((root / "tmp/rows").read_bytes()) == value
    assert wait_reads(done.stdout) == result


@needs_busybox
def test_values_over_the_env_limit_are_chunked(tmp_path: Path) -> None:
    step = parse_pod(pods_by_template("v3.7.18")["fetch-data"])
    big = "ü" * 100_000 + "\n" + "$" * 100_000 + "x" * 50_000  # 450 kB: many env chunks, each under 128 KiB
    plan = replay_plan(step, entry_for(step, {"rows": big}))
    assert all(len(e["value"].encode()) < 131_072 - len(e["name"]) - 1 for e in plan.env)
    pod = patched(step, plan)
    assert run_main(pod["spec"]["containers"][step.main_index], tmp_path).returncode == 0
    assert wait_reads((tmp_path / "tmp/rows").read_bytes()) == big


def test_what_cannot_be_replayed_faithfully_is_a_miss() -> None:
    pods = pods_by_template("v3.7.18")
    fetch = parse_pod(pods["fetch-data"])
    with pytest.raises(NotReplayable, match="entry_missing_parameter: rows"):
        replay_plan(fetch, entry_for(fetch, {"rows": "1"}) | {"parameters": []})  # type: ignore[arg-type]
    with pytest.raises(NotReplayable, match="entry_missing_artifact: raw"):
        replay_plan(fetch, entry_for(fetch, {"rows": "1"}) | {"artifacts": []})  # type: ignore[arg-type]
    with pytest.raises(NotReplayable, match="outputs_too_large"):
        replay_plan(fetch, entry_for(fetch, {"rows": "x" * 600_000}))
    report = parse_pod(pods["report"])
    report = ArgoStep(**{**report.__dict__, "include_script_output": True})
    with pytest.raises(NotReplayable, match="entry_missing_stdout"):
        replay_plan(report, entry_for(report, {}))
    # An output on one of the step's own volumes is read from that volume by Argo's wait container.
    template = copy.deepcopy(dict(fetch.template or {}))
    template["container"]["volumeMounts"] = [{"name": "work", "mountPath": "/tmp"}]
    on_volume = ArgoStep(**{**fetch.__dict__, "template": template})
    with pytest.raises(NotReplayable, match="output_on_volume: /tmp/rows"):
        replay_plan(on_volume, entry_for(fetch, {"rows": "1"}))


def test_the_script_is_posix_shell() -> None:
    for bashism in ("[[", "local ", "function ", "$'"):
        assert bashism not in REPLAY_SCRIPT


def test_paths_argo_would_read_elsewhere_are_not_replayed() -> None:
    fetch = parse_pod(pods_by_template("v3.7.18")["fetch-data"])
    template = copy.deepcopy(dict(fetch.template or {}))
    template["outputs"]["parameters"][0]["valueFrom"]["path"] = "rows.txt"
    relative = ArgoStep(**{**fetch.__dict__, "template": template})
    with pytest.raises(NotReplayable, match=r"relative_output_path: rows\.txt"):
        replay_plan(relative, entry_for(fetch, {"rows": "1"}))
    template = copy.deepcopy(dict(fetch.template or {}))
    template.setdefault("inputs", {})["artifacts"] = [{"name": "work", "path": "/tmp"}]
    under_input = ArgoStep(**{**fetch.__dict__, "template": template})
    with pytest.raises(NotReplayable, match="output_in_input_artifact: /tmp/rows"):
        replay_plan(under_input, entry_for(fetch, {"rows": "1"}))


def test_an_optional_artifact_the_first_run_did_not_make_is_not_made() -> None:
    fetch = parse_pod(pods_by_template("v3.7.18")["fetch-data"])
    template = copy.deepcopy(dict(fetch.template or {}))
    template["outputs"]["artifacts"][0]["optional"] = True
    optional = ArgoStep(**{**fetch.__dict__, "template": template})
    plan = replay_plan(optional, entry_for(fetch, {"rows": "1"}) | {"artifacts": []})  # type: ignore[arg-type]
    restored = restored_outputs({"parameters": [{"name": "rows", "value": "1"}, {
        "name": plan.marker["name"], "value": plan.marker["valueFrom"]["default"]}]})
    assert restored == {"parameters": [{"name": "rows", "value": "1"}]}  # no artifact: absent, as in the first run
    assert "/data/raw.parquet" not in plan.mount_points


def test_scheduling_stays_as_it_was() -> None:
    """A RuntimeClass or a namespace's node restriction reaches the pod as a node selector before any webhook runs;
    a replay that dropped it could land on a node without the pod's runtime handler and never start."""
    step = parse_pod(pods_by_template("v3.7.18")["train"])
    pod = copy.deepcopy(dict(step.pod))
    pod["spec"]["nodeSelector"] = {"accelerator": "nvidia-l4", "kubernetes.io/arch": "arm64"}
    step = ArgoStep(**{**step.__dict__, "pod": pod})
    patched_pod = patched(step, replay_plan(step, entry_for(step, {"metrics": "{}"})))
    assert patched_pod["spec"]["nodeSelector"] == {"accelerator": "nvidia-l4", "kubernetes.io/arch": "arm64"}


@pytest.mark.parametrize(
    ("source", "read_only", "writes"),
    [
        ({"persistentVolumeClaim": {"claimName": "data"}}, False, True),
        ({"persistentVolumeClaim": {"claimName": "data"}}, True, False),
        ({"persistentVolumeClaim": {"claimName": "data", "readOnly": True}}, False, False),
        ({"nfs": {"server": "nfs.local", "path": "/exports"}}, False, True),
        ({"hostPath": {"path": "/mnt/shared"}}, False, True),
        ({"csi": {"driver": "s3.csi.aws.com"}}, False, True),
        ({"emptyDir": {}}, False, False),
        ({"configMap": {"name": "settings"}}, False, False),
    ],
)
def test_steps_writing_anything_that_outlives_the_pod_are_not_memoized(
    source: dict[str, Any], read_only: bool, writes: bool
) -> None:
    from wfboost.cache.eligibility import StepControls, skip_reason

    pod = copy.deepcopy(pods_by_template("v3.7.18")["fetch-data"])
    pod["spec"]["volumes"].append({"name": "work", **source})
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    main["volumeMounts"].append({"name": "work", "mountPath": "/work", "readOnly": read_only})
    settings = Policy.default().memoize_settings_for("ml")
    reason = skip_reason(parse_pod(pod), settings, StepControls(cache=None, max_staleness=None, seed=None))
    assert (reason == "writable_volume") is writes


@pytest.mark.parametrize("layout", [layout.name for layout in LAYOUTS])
def test_a_replay_downloads_and_uploads_nothing(layout: str) -> None:
    """The executor containers read their template without the input artifacts (a hit skips the downloads) and
    without the output artifacts (nothing is archived or uploaded), with the replay marker instead."""
    import json

    step = parse_pod(pods_by_template(layout)["build-features"])
    assert (step.template or {}).get("inputs", {}).get("artifacts"), "the fixture step must have an input artifact"
    pod = patched(step, replay_plan(step, entry_for(step, {})))
    validate_object(pod)
    seen = 0
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        for env in container.get("env", []):
            if env["name"] == "ARGO_TEMPLATE":
                template = json.loads(env["value"])
                assert "artifacts" not in template.get("inputs", {}), container["name"]
                assert "artifacts" not in template["outputs"], container["name"]
                original = dict(step.template or {})
                declared = original["outputs"].get("parameters") or []
                assert template["outputs"]["parameters"][: len(declared)] == declared
                assert template["outputs"]["parameters"][-1]["name"] == MARKER_PARAMETER
                assert template["script"] == original["script"]
                seen += 1
    assert seen >= 1


def test_a_volume_another_container_uses_as_a_block_device_is_kept() -> None:
    """Dropping it would make the API server refuse the pod (a volumeDevice whose volume is gone)."""
    step = parse_pod(pods_by_template("v3.7.18")["train"])
    pod = copy.deepcopy(dict(step.pod))
    pod["spec"]["volumes"].append({"name": "scratch", "persistentVolumeClaim": {"claimName": "raw-disk"}})
    sidecar = {"name": "disk-helper", "image": "busybox@sha256:" + "d" * 64,
               "volumeDevices": [{"name": "scratch", "devicePath": "/dev/xvdb"}]}
    pod["spec"]["containers"].append(sidecar)
    step = ArgoStep(**{**step.__dict__, "pod": pod})
    patched_pod = patched(step, replay_plan(step, entry_for(step, {"metrics": "{}"})))
    assert "scratch" in {v["name"] for v in patched_pod["spec"]["volumes"]}
    validate_object(patched_pod)


def test_the_executor_template_is_read_and_written_whatever_go_put_in_it() -> None:
    """orjson on the hot path, the standard library for what orjson refuses (a lone surrogate escape, an integer
    past 64 bits): such a template is rewritten as before, never dropped."""
    for text in ('{"a":"\\ud800","b":1}', '{"n":123456789012345678901234567890}', '{"é":"ü","x":[1.5,null]}'):
        parsed = loads_template(text)
        assert parsed == json.loads(text)
        assert json.loads(dumps_template(parsed)) == parsed
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        loads_template("not json")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@given(_json_values, st.booleans())
def test_reading_a_template_fast_gives_what_the_standard_library_reads(value: Any, ascii_only: bool) -> None:
    """As Go wrote it or otherwise: every JSON text reads as the standard library reads it (big integers exact)."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert loads_template(text) == json.loads(text)
    assert json.loads(dumps_template(loads_template(text))) == json.loads(text)
