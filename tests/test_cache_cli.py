"""`wfboost cache …` through `wfboost.cli.main`, against real Valkey, with the output checked."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.test_recorder import POLICY_TEXT, expected_key, offloading_workflow, workflow_pods
from wfboost.cache import redis_client
from wfboost.cache.entries import CacheEntry
from wfboost.cache.store import CacheStore, now_ms
from wfboost.cli import main
from wfboost_dev.argosim.layouts import V3_7
from wfboost_dev.argosim.pods import build_pod
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import RedisProcess
from wfboost_dev.demo.runner import default_workflow_text

DAY_MS = 86_400_000
NOW = now_ms()
KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64


def entry(key: str, entry_id: str, *, ns: str, workflow: str, age_days: float, staleness_s: int = 604800,
          image: str = "ghcr.io/example/data-tools:1.4.2") -> CacheEntry:
    finished = NOW - int(age_days * DAY_MS)
    return {
        "key": key,
        "entry_id": entry_id,
        "finished_at": f"finished-{entry_id}",
        "finished_ms": finished,
        "staleness_s": staleness_s,
        "parameters": [{"name": "rows", "value": "1204"}],
        "result": "done\n",
        "artifacts": [{"name": "raw", "s3": {"bucket": "b", "key": f"{workflow}/raw.tgz"}}],
        "image": image,
        "image_id": image.split(":")[0] + "@sha256:" + "0" * 64,
        "producer": {"namespace": ns, "workflow": workflow, "workflow_uid": "u-" + workflow, "node_id": "n",
                     "node_name": f"{workflow}.fetch", "pod": f"{workflow}-fetch-1"},
        "recorded_at": "now",
    }


@pytest.fixture
def populated(valkey: RedisProcess) -> str:
    """Three keys: A (two tracks), B (another namespace and image), C (old). Valkey is flushed first."""
    redis.Redis.from_url(valkey.url).flushall()

    async def fill() -> None:
        client = redis_client.connect(valkey.url)
        store = CacheStore(client)
        retention = timedelta(days=90)
        await store.record(entry(KEY_A, "a-old", ns="team-a", workflow="wf-1", age_days=2), retention=retention)
        await store.record(entry(KEY_A, "a-new", ns="team-a", workflow="wf-2", age_days=1, staleness_s=86400),
                           retention=retention)
        await store.record(entry(KEY_B, "b", ns="team-b", workflow="wf-9", age_days=0.5, image="python:3.12"),
                           retention=retention)
        await store.record(entry(KEY_C, "c", ns="team-a", workflow="wf-0", age_days=30), retention=retention)
        await client.aclose()

    asyncio.run(fill())
    return valkey.url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ls_lists_keys_newest_first_with_filters(populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "cache", "ls", "--redis-url", populated)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "NAMESPACE", "WORKFLOW", "NODE", "FINISHED", "TRACKS"]
    assert [line.split()[0] for line in lines[1:4]] == [KEY_B[:16], KEY_A[:16], KEY_C[:16]]
    assert lines[2].split()[1:] == ["team-a", "wf-2", "wf-2.fetch", "finished-a-new", "P1D,P7D"]
    assert lines[-1] == "3 key(s)"

    code, out, _ = run(capsys, "cache", "ls", "--redis-url", populated, "--namespace", "team-a", "--json")
    listed = json.loads(out)
    assert [k["key"] for k in listed] == [KEY_A, KEY_C]
    assert listed[0]["tracks"] == {"86400": "a-new", "604800": "a-old"}

    for flag, value, keys in (("--image", "python", [KEY_B]), ("--image", "ghcr.io/*", [KEY_A, KEY_C]),
                              ("--workflow", "team-a/wf-1", [KEY_A]), ("--workflow", "team-b/wf-1", [])):
        code, out, _ = run(capsys, "cache", "ls", "--redis-url", populated, flag, value, "--json")
        assert (code, [k["key"] for k in json.loads(out)]) == (0, keys), (flag, value)


def test_show_prints_every_track_and_entry(populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "cache", "show", KEY_A[:12], "--redis-url", populated)
    assert code == 0
    assert out.splitlines()[0] == f"key: {KEY_A}"
    assert "track P1D (staleness 86400s): entry a-new" in out
    assert "track P7D (staleness 604800s): entry a-old" in out
    assert "  parameter: rows = 1204" in out and "  result:    done\\n" in out
    assert '  artifact:  raw {"s3":{"bucket":"b","key":"wf-1/raw.tgz"}}' in out

    code, out, _ = run(capsys, "cache", "show", KEY_A, "--redis-url", populated, "--json")
    assert set(json.loads(out)["tracks"]) == {"86400", "604800"}

    code, _, err = run(capsys, "cache", "show", "f" * 64, "--redis-url", populated)
    assert (code, err) == (1, f"wfboost cache show: no entries for key {'f' * 64}\n")


def test_invalidate_dry_run_then_for_real(populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "cache", "invalidate", "--redis-url", populated, "--namespace", "team-a",
                       "--older-than", "P7D", "--dry-run")
    assert code == 0
    assert out.splitlines()[0] == "would remove 1 entry"
    assert f"{KEY_C[:16]} c team-a/wf-0 wf-0.fetch" in out
    assert run(capsys, "cache", "ls", "--redis-url", populated)[1].splitlines()[-1] == "3 key(s)"

    code, out, _ = run(capsys, "cache", "invalidate", "--redis-url", populated, "--workflow", "team-a/wf-1", "--json")
    report = json.loads(out)
    assert (report["removed"], [e["entry_id"] for e in report["entries"]]) == (1, ["a-old"])
    _, out, _ = run(capsys, "cache", "show", KEY_A, "--redis-url", populated, "--json")
    assert set(json.loads(out)["tracks"]) == {"86400"}  # the other track of A stays

    code, _, err = run(capsys, "cache", "invalidate", "--redis-url", populated, "--key", KEY_B[:1])
    assert code == 1 and "--key takes a whole cache key (64 hex digits)" in err  # never a one-character prefix
    code, out, _ = run(capsys, "cache", "invalidate", "--redis-url", populated, "--key", KEY_B)
    assert (code, out.splitlines()[0]) == (0, "removed 1 entry")
    _, out, _ = run(capsys, "cache", "ls", "--redis-url", populated, "--json")
    assert [k["key"] for k in json.loads(out)] == [KEY_A, KEY_C]

    code, out, _ = run(capsys, "cache", "stats", "--redis-url", populated)
    counters = out.split("\n\n", 1)[0]  # then the per-namespace hit counts (tests/test_memoize_e2e.py)
    stats = dict(line.split(":", 1) for line in counters.splitlines())
    assert {k: int(v) for k, v in stats.items()} | {"bytes": 0} == {
        "keys": 2, "recorded": 4, "bytes": 0, "invalidated": 2, "purged": 0
    }
    assert int(stats["bytes"]) > 0

    code, out, _ = run(capsys, "cache", "invalidate", "--redis-url", populated, "--all")
    assert (code, out.splitlines()[0]) == (0, "removed 2 entries")
    assert json.loads(run(capsys, "cache", "stats", "--redis-url", populated, "--json")[1])["keys"] == 0


def test_invalidate_refuses_to_guess(populated: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "cache", "invalidate", "--redis-url", populated)
    assert (code, out) == (1, "")
    assert err.startswith("wfboost cache invalidate: say what to invalidate:") and err.count("\n") == 1
    code, _, err = run(capsys, "cache", "invalidate", "--redis-url", populated, "--older-than", "1 week")
    assert code == 1 and "--older-than: '1 week' is not an ISO-8601 duration" in err
    code, _, err = run(capsys, "cache", "invalidate", "--redis-url", populated, "--workflow", "wf-1")
    assert (code, err) == (1, "wfboost cache invalidate: --workflow takes NAMESPACE/NAME, not 'wf-1'\n")


def test_an_unreachable_redis_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WFBOOST_REDIS_URL", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://:secret@127.0.0.1:{port}/0"
    for command in (["ls"], ["show", KEY_A], ["stats"], ["invalidate", "--all"]):
        code, out, err = run(capsys, "cache", *command, "--redis-url", url)
        assert (code, out) == (1, "")
        assert err.startswith(f"wfboost cache {command[0]}: cannot use Redis at redis://:***@127.0.0.1:{port}/0: ")
        assert err.count("\n") == 1 and "secret" not in err and "Traceback" not in err
    code, _, err = run(capsys, "cache", "ls")
    assert (code, err) == (1, "wfboost cache ls: --redis-url (or WFBOOST_REDIS_URL) is required\n")


# --- explain -------------------------------------------------------------------------------------------------


def write(path: Path, doc: Any) -> str:
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_TEXT)
    return str(path)


def test_explain_prints_the_key_the_material_and_the_decision(
    tmp_path: Path, policy_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pod = workflow_pods("v3.7.18", "team-x")["fetch"]
    path = write(tmp_path / "pod.yaml", pod)
    code, out, _ = run(capsys, "cache", "explain", path, "--policy", policy_file)
    assert code == 0
    lines = out.splitlines()
    assert lines[1] == f"key:       {expected_key(pod)}"
    assert lines[2] == "decision:  memoized: reuses a result up to P7D old"
    material = json.loads("\n".join(lines[4:]))
    assert material["namespace"] == "team-x"
    assert material["containers"][0]["args"][:2] == ["--uri", "s3://datasets/churn/2026-11.parquet"]

    code, out, _ = run(capsys, "cache", "explain", path)  # the default policy memoizes nothing
    assert "decision:  not memoized (memoize_off): memoization is off in namespace 'team-x'" in out

    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "1", "namespace": "team-x", "operation": "CREATE", "object": pod}}
    code, out, _ = run(capsys, "cache", "explain", write(tmp_path / "review.yaml", review), "--json",
                       "--policy", policy_file)
    assert json.loads(out)["key"] == expected_key(pod) and json.loads(out)["memoized"] is True

    off = copy.deepcopy(pod)
    off["metadata"]["labels"]["wfboost.io/cache"] = "false"
    _, out, _ = run(capsys, "cache", "explain", write(tmp_path / "off.yaml", off), "--policy", policy_file)
    assert 'not memoized (cache_off): the step says wfboost.io/cache: "false"' in out


def test_explain_two_pods_shows_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = workflow_pods("v3.5.14", "team-x", name="nightly-1")["fetch"]
    other_run = workflow_pods("v4.1.2", "team-x", name="nightly-2")["fetch"]  # another workflow and Argo release
    same = [write(tmp_path / "a.yaml", first), write(tmp_path / "b.yaml", other_run)]
    code, out, _ = run(capsys, "cache", "explain", *same)
    assert code == 0 and "same key: B can reuse A's result" in out

    workflow = yaml.safe_load(default_workflow_text())  # its three train steps differ by learning rate only
    trains = [p.pod for p in plan_workflow(workflow, "v3.7.18", namespace="team-x").pods if ".train(" in p.step]
    differ = [write(tmp_path / "t0.yaml", trains[0]), write(tmp_path / "t1.yaml", trains[1])]
    code, out, _ = run(capsys, "cache", "explain", *differ)
    assert code == 0
    assert "different keys: 1 input(s) differ" in out
    assert '  containers[0].args[1]: "0.01" → "0.003"' in out
    code, out, _ = run(capsys, "cache", "explain", *differ, "--json")
    diff = json.loads(out)
    assert diff["same_key"] is False
    assert diff["differences"] == [{"path": "containers[0].args[1]", "left": "0.01", "right": "0.003",
                                    "missing": None}]


def test_explain_an_offloaded_pod_needs_its_configmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    built = build_pod(offloading_workflow("team-x"), "big", "big-script", layout=V3_7)
    assert built.configmap is not None
    path = write(tmp_path / "pod.yaml", built.pod)
    code, out, err = run(capsys, "cache", "explain", path)
    assert (code, out) == (1, "")
    assert err == (
        f"wfboost cache explain: {path}: ARGO_TEMPLATE is offloaded to ConfigMap {built.name}; pass it with "
        f"--configmap FILE (kubectl get configmap -n team-x {built.name} -o yaml)\n"
    )
    configmap = write(tmp_path / "cm.yaml", built.configmap)
    code, out, _ = run(capsys, "cache", "explain", path, "--configmap", configmap, "--json")
    assert code == 0
    assert json.loads(out)["key"] == expected_key(built.pod, built.configmap)
    assert json.loads(out)["template"] == "script"


def test_explain_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_pod = write(tmp_path / "cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    plain_pod = write(tmp_path / "plain.yaml", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                                                "spec": {"containers": [{"name": "c", "image": "i"}]}})
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [unclosed")
    cases = [
        ([not_a_pod], f"wfboost cache explain: {not_a_pod}: a ConfigMap is not a pod\n"),
        ([plain_pod], f"wfboost cache explain: {plain_pod}: not an Argo step pod: no workflows.argoproj.io/workflow "
                      "label\n"),
        ([str(tmp_path / "missing.yaml")], f"wfboost cache explain: {tmp_path / 'missing.yaml'}: No such file or "
                                           "directory\n"),
        ([plain_pod, plain_pod, plain_pod], "wfboost cache explain: explain takes one pod, or two to compare\n"),
    ]
    for files, expected in cases:
        code, out, err = run(capsys, "cache", "explain", *files)
        assert (code, out, err) == (1, "", expected)
    code, _, err = run(capsys, "cache", "explain", str(broken))
    assert code == 1 and err.startswith(f"wfboost cache explain: {broken}: neither JSON nor YAML (line 1, column")
    assert err.count("\n") == 1
