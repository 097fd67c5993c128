"""A cache hit's pod: patched as Argo needs it, and its replay command run as the container would run it."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.validate import validate_object
from wfboost.argo.podgen_layouts import LAYOUTS
from wfboost.argo.pods import ArgoStep, parse_pod
from wfboost.cache.entries import CacheEntry
from wfboost.demo.replay import plan_workflow
from wfboost.demo.runner import default_workflow_text
from wfboost.policy import Policy
from wfboost.webhook.replay import (
    REPLAY_SCRIPT,
    RESTRICTED_SECURITY_CONTEXT,
    NotReplayable,
    ReplayPlan,
    hit_patch,
    replay_plan,
)

BUSYBOX = shutil.which("busybox")
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


def run_replay(container: dict[str, Any], root: Path) -> subprocess.CompletedProcess[bytes]:
    """Run the replayed main container's program the way emissary would exec it, with paths under `root`."""
    command = container["command"]
    user = command[command.index("--") + 1 :]
    assert user[:2] == ["/bin/sh", "-c"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for name, value in list(env.items()):
        if name.startswith("WFBOOST_") and name.endswith("_PATH"):
            env[name] = str(root) + value
    env["PATH"] = os.environ["PATH"]
    assert BUSYBOX is not None
    return subprocess.run([BUSYBOX, "sh", *user[1:]], env=env, capture_output=True, timeout=30, check=False)


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
    assert "nodeSelector" not in pod["spec"] and "affinity" not in pod["spec"]
    assert pod["spec"].get("tolerations") == step.pod["spec"].get("tolerations")
    argo_env = [e for e in step.main["env"] if e["name"].startswith("ARGO_")]
    assert [e for e in main["env"] if e["name"].startswith("ARGO_")] == argo_env
    assert not [e for e in main["env"] if e["name"] == "WANDB_MODE"]  # the step's own env is not needed
    others = [c for i, c in enumerate(pod["spec"]["containers"]) if i != step.main_index]
    assert others == [c for i, c in enumerate(step.pod["spec"]["containers"]) if i != step.main_index]
    assert pod["spec"].get("initContainers") == step.pod["spec"].get("initContainers")
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
    done = run_replay(pod["spec"]["containers"][step.main_index], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tmp/rows").read_bytes() == value.encode()
    assert (tmp_path / "data/raw.parquet").exists()  # the declared artifact path, for emissary to tar
    assert done.stdout == b""  # this step's template result is not captured


@needs_busybox
def test_a_script_steps_stdout_is_replayed(tmp_path: Path) -> None:
    step = parse_pod(pods_by_template("v3.7.18")["report"])
    step = ArgoStep(**{**step.__dict__, "include_script_output": True})
    result = "trained 3 models on 1024 rows"
    pod = patched(step, replay_plan(step, entry_for(step, {}, result=result)))
    done = run_replay(pod["spec"]["containers"][step.main_index], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == result


tricky_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300)


@needs_busybox
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=tricky_text, result=tricky_text)
def test_any_value_survives_the_replay_byte_for_byte(value: str, result: str, tmp_path_factory: Any) -> None:
    root = tmp_path_factory.mktemp("replay")
    step = parse_pod(pods_by_template("v3.7.18")["fetch-data"])
    step = ArgoStep(**{**step.__dict__, "include_script_output": True})
    pod = patched(step, replay_plan(step, entry_for(step, {"rows": value}, result=result)))
    done = run_replay(pod["spec"]["containers"][step.main_index], root)
    assert done.returncode == 0, done.stderr
    assert (root / "tmp/rows").read_bytes() == value.encode()
    assert done.stdout == result.encode()


@needs_busybox
def test_values_over_the_env_limit_are_chunked(tmp_path: Path) -> None:
    step = parse_pod(pods_by_template("v3.7.18")["fetch-data"])
    big = "ü" * 100_000 + "\n" + "x" * 150_000  # 350 kB of UTF-8: several env chunks, each under 128 KiB
    plan = replay_plan(step, entry_for(step, {"rows": big}))
    assert all(len(e["value"].encode()) < 131_072 - len(e["name"]) - 1 for e in plan.env)
    pod = patched(step, plan)
    assert run_replay(pod["spec"]["containers"][step.main_index], tmp_path).returncode == 0
    assert (tmp_path / "tmp/rows").read_text() == big


def test_what_cannot_be_replayed_faithfully_is_a_miss() -> None:
    pods = pods_by_template("v3.7.18")
    fetch = parse_pod(pods["fetch-data"])
    with pytest.raises(NotReplayable, match="entry_missing_parameter:rows"):
        replay_plan(fetch, entry_for(fetch, {"rows": "1"}) | {"parameters": []})  # type: ignore[arg-type]
    with pytest.raises(NotReplayable, match="entry_missing_artifact:raw"):
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
    with pytest.raises(NotReplayable, match="output_on_volume:/tmp/rows"):
        replay_plan(on_volume, entry_for(fetch, {"rows": "1"}))


def test_the_script_is_posix_shell() -> None:
    for bashism in ("[[", "local ", "function ", "$'"):
        assert bashism not in REPLAY_SCRIPT
