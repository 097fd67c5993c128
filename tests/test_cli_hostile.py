"""Every command that reads user input, fed what users actually feed it: one clear line on stderr, exit status 1 or
2, never a traceback. And the metrics follow Prometheus' naming conventions, checked with its own parser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from wfboost.cli.inputs import MAX_INPUT_BYTES
from wfboost.recorder.metrics import RecorderMetrics
from wfboost.sidestore.metrics import SideStoreMetrics
from wfboost.webhook.metrics import Metrics

HOSTILE = {
    "binary": b"\x00\x01\xff\xfe\x89PNG\r\n",
    "truncated-json": b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": ',
    "truncated-yaml": b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: [p\n",
    "wrong-metadata": b'{"apiVersion": "v1", "kind": "Pod", "metadata": "x"}',
    "wrong-labels": b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": ["a"]}}',
    "wrong-spec": b'{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": 7}',
    "a-list-of-numbers": b"[1, 2, 3]",
    "empty": b"",
    "only-comments": b"# nothing here\n---\n",
}
COMMANDS = {
    "review": ["review", "{file}"],
    "cache explain": ["cache", "explain", "{file}"],
    "policy validate": ["policy", "validate", "{file}"],
    "policy show": ["policy", "show", "--policy", "{file}"],
    "review --policy": ["review", "--policy", "{file}", "{pod}"],
    "review --configmap": ["review", "--configmap", "{file}", "{pod}"],
    "cache explain --configmap": ["cache", "explain", "--configmap", "{file}", "{pod}"],
    "shrink": ["shrink", "--dry-run", "{file}"],
    "restore": ["restore", "{file}"],
}


def run(argv: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "wfboost", *argv], input=stdin, capture_output=True, timeout=60,
                          check=False)


@pytest.fixture(scope="module")
def pod_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pod") / "pod.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ml}\nspec: {containers: []}\n")
    return path


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("content", HOSTILE)
def test_hostile_input_is_one_line_and_a_failure_status(
    command: str, content: str, tmp_path: Path, pod_file: Path
) -> None:
    path = tmp_path / "input"
    path.write_bytes(HOSTILE[content])
    argv = [part.format(file=path, pod=pod_file) for part in COMMANDS[command]]
    done = run(argv)
    err = done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr, err
    assert done.returncode in (1, 2), (done.returncode, err)
    assert len(err.strip().splitlines()) >= 1
    assert err.strip().splitlines()[0].startswith("wfboost ") or command.startswith("policy validate"), err


@pytest.mark.parametrize("command", ["review", "cache explain"])
def test_hostile_stdin_is_one_line_too(command: str) -> None:
    argv = [*command.split(), "-"]
    done = run(argv, stdin=HOSTILE["binary"])
    assert b"Traceback" not in done.stderr and done.returncode == 1
    assert done.stderr.decode().strip().endswith("not UTF-8 text (invalid start byte at byte 2)")


def test_input_past_the_cap_is_refused_before_parsing() -> None:
    done = run(["review", "-"], stdin=b"#" * (MAX_INPUT_BYTES + 1))
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert done.stderr.decode().strip().endswith("stdin: larger than 64 MiB")


def test_a_closed_stdout_is_not_a_traceback() -> None:
    process = subprocess.Popen([sys.executable, "-m", "wfboost", "policy", "schema"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.close()  # `| head` that stopped reading
    _, err = process.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_log_options_are_taken_after_the_command_too(pod_file: Path) -> None:
    done = run(["review", str(pod_file), "--log-level", "DEBUG", "--log-format", "json"])
    assert done.returncode == 0, done.stderr


def test_metric_names_follow_the_prometheus_conventions() -> None:
    for metrics in (Metrics(), RecorderMetrics(), SideStoreMetrics()):
        text = generate_latest(metrics.registry).decode()
        assert "_created" not in text
        for family in text_string_to_metric_families(text):
            assert family.name.startswith("wfboost_"), family.name
            assert family.documentation, family.name
            if family.type == "counter":
                assert all(s.name.endswith("_total") for s in family.samples), family.name
            if family.type == "gauge":
                assert not family.name.endswith("_total"), family.name
            for unit in ("seconds", "bytes"):
                if unit in family.name:
                    assert family.name.endswith(unit) or f"{unit}_" not in family.name, family.name


@pytest.mark.parametrize("command", [["shrink", "--dry-run"], ["restore"]])
@pytest.mark.parametrize("document", [
    '{"kind": "Workflow", "metadata": "x"}',
    '{"kind": "Workflow", "metadata": {"name": "w", "namespace": "n"}, "spec": 7}',
    '{"kind": "CronWorkflow", "metadata": {"name": "c", "namespace": "n"}, "spec": {"workflowSpec": []}}',
    '{"kind": "Workflow", "metadata": {"name": "w", "namespace": "n"}, "spec": {"templates": 5}}',
    '{"kind": "Workflow", "metadata": {"name": "w", "namespace": "n"}, "spec": {"templates": ["t"]}}',
    '{"kind": "WorkflowTemplate", "metadata": {"name": "w", "namespace": "n"}, "spec": {"templates": [{"script": 3}]}}',
    '{"kind": "Workflow", "metadata": {"name": "w", "namespace": "n"}, "spec": {"arguments": {"parameters": {}}}}',
])
def test_a_workflow_of_the_wrong_shape_is_named_not_crashed_on(command: list[str], document: str) -> None:
    """Wrong types inside a Workflow, CronWorkflow or WorkflowTemplate: the part that is wrong, in one line."""
    done = run([*command, "-"], stdin=document.encode())
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 1 and "unexpected" not in err and "Traceback" not in err, err
    assert err.count("\n") == 1 and "the API server would store: " in err and " is not a " in err, err


def test_a_reference_that_is_not_one_is_said_before_any_connection() -> None:
    done = run(["sidestore", "show", "--url", "https://127.0.0.1:9", "ml", "wfboost-ref:v1:x"])
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 1 and err.count("\n") == 1, err
    assert "is not a wfboost reference: expected wfboost-ref:v1:<size>:<sha256>" in err, err
