"""`make run` (`python -m wfboost_dev.demo`): the account it prints, and a clean stop with nothing left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import corpus_dir

DEMO = [sys.executable, "-m", "wfboost_dev.demo"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but the process table.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_the_demo_misses_records_then_hits_every_step(tmp_path: Path) -> None:
    """Memoization is on by namespace label in the demo's policy: every hit also shows the webhook's and the
    recorder's namespace watches synced (nothing in their logs says otherwise)."""
    done = subprocess.run([*DEMO, "--keep", str(tmp_path)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "namespace ml-team (labels wfboost.io/memoize=enabled)" in out
    for log in ("webhook.log", "recorder.log"):
        text = next(tmp_path.glob(f"kept-*/{log}")).read_text()
        assert "namespaces:" not in text and "Traceback" not in text, text[-2000:]
    first, second = out.split("second run: churn-model-second")[0], out.split("second run: churn-model-second")[1]
    assert len(re.findall(r"miss: no_entry .* ran, then recorded$", first, re.M)) == 6
    hits = re.findall(r"hit: outputs of churn-model-first replayed", second)
    assert len(hits) == 6  # chained: downstream steps read the first run's artifacts, so their keys match too
    assert len(re.findall(r"task result → cached artifacts", second)) == 5  # every step that has artifacts
    assert "first run:  6 steps, 6 missed and ran, 6 recorded" in out
    assert "second run: 6 steps, 6 replayed from the cache, 0 ran" in out
    assert "fail-open answers: 0" in out
    assert "shrinking: a Kubeflow-shaped pipeline of 12 components, 1,986,757 bytes" in out
    assert "24 values moved to the side store" in out
    assert "12 of 12 driver pods restored by the webhook, every argument and env value byte for byte" in out
    pids = list(map(int, re.findall(r"pid (\d+)", out)))
    assert len(pids) == 4  # valkey, side store, webhook, recorder
    for pid in pids:
        assert not pid_alive(pid), f"process {pid} left behind"


def test_the_demo_replays_a_corpus_workflow() -> None:
    folder = corpus_dir("kfp-v2-argo-compiled-workflows")
    done = subprocess.run(
        [*DEMO, "--workflow", str(folder / "add_numbers.yaml"), "--layout", "v3.5.14"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped: kfp_driver" in done.stdout  # Kubeflow's driver pods read its metadata store: never memoized
    assert "first run:  3 steps" in done.stdout


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_everything_it_started(stop: signal.Signals, tmp_path: Path) -> None:
    """Ctrl-C, or SIGTERM (a CI cancel, `kill`); with --keep, the logs stay where the user asked.

    The demo starts as from a terminal, with SIGINT's default action: a test run in the background (a CI job
    started with `&`) has SIGINT ignored, the demo would inherit that, and Python then raises no KeyboardInterrupt.
    """
    keep = tmp_path / "logs"
    proc = subprocess.Popen([*DEMO, "--pace", "5", "--keep", str(keep)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    pids: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(pids) < 4:
        line = proc.stdout.readline()
        pids += [int(p) for p in re.findall(r"pid (\d+)", line)]
    if len(pids) < 4:
        proc.kill()
        _, err = proc.communicate(timeout=60)
        raise AssertionError(f"the demo did not report its Valkey, side store, webhook and recorder processes: {err}")
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "interrupted; everything it started has been stopped" in err
    assert "Traceback" not in err
    for pid in pids:
        assert not pid_alive(pid), f"process {pid} left behind after {stop.name}"
    kept = list(keep.glob("kept-*"))
    assert len(kept) == 1 and (kept[0] / "webhook.log").exists()


def test_a_missing_workflow_file_is_one_clear_line() -> None:
    done = subprocess.run([*DEMO, "--workflow", "/nonexistent.yaml"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("demo: cannot read /nonexistent.yaml")


def test_the_demo_plays_what_a_cron_workflow_or_workflow_template_creates(tmp_path: Path) -> None:
    """A CronWorkflow (its workflowSpec) and a WorkflowTemplate (what `argo submit --from` runs) are played as the
    Workflow they create; a file holding neither says which kinds it takes."""
    from wfboost_dev.demo.runner import default_workflow_text

    workflow = yaml.safe_load(default_workflow_text())
    cron = {"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow", "metadata": {"name": "nightly"},
            "spec": {"schedules": ["0 1 * * *"], "workflowSpec": workflow["spec"]}}
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "churn"},
                "spec": workflow["spec"]}
    for document, what in ((cron, "CronWorkflow nightly"), (template, "WorkflowTemplate churn")):
        path = tmp_path / "object.yaml"
        path.write_text(yaml.safe_dump(document))
        done = subprocess.run([*DEMO, "--workflow", str(path)], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        assert f"(the Workflow its {what} creates)" in done.stdout
        assert "second run: 6 steps, 6 replayed from the cache, 0 ran" in done.stdout
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}))
    done = subprocess.run([*DEMO, "--workflow", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "holds no Workflow, CronWorkflow, WorkflowTemplate or ClusterWorkflowTemplate" in done.stderr
