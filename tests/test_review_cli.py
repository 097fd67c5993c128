"""`wfboost review FILE|-`: the admission pipeline offline, on pods, Workflows and AdmissionReviews."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import corpus_dir
from tests.test_recorder import offloading_workflow
from wfboost.webhook.wire import review_for_object
from wfboost_dev.argosim.layouts import V3_7
from wfboost_dev.argosim.pods import build_pod
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.processes import RedisProcess
from wfboost_dev.demo.runner import default_workflow_text

REVIEW = [sys.executable, "-m", "wfboost", "review"]


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REVIEW, *args], input=stdin, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def argo_pod() -> dict[str, object]:
    plan = plan_workflow(yaml.safe_load(default_workflow_text()), V3_7.name, namespace="ml-team")
    return plan.pods[0].pod


def test_review_of_a_pod_file_prints_the_admission_response(argo_pod: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / "pod.json"
    path.write_bytes(orjson.dumps(argo_pod))
    done = run(str(path))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["allowed"] is True
    assert "pods: memoize_off" in done.stderr  # the default policy: memoization off


def test_review_of_a_corpus_workflow_with_show_object() -> None:
    path = corpus_dir("argo-examples") / "examples__dag-diamond-steps.yaml"
    original = yaml.safe_load(path.read_text())
    done = run(str(path), "--show-object")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == original


def test_review_from_stdin_of_an_admission_review(argo_pod: dict[str, object]) -> None:
    review = review_for_object(argo_pod, uid="from-stdin", api_version="admission.k8s.io/v1beta1")
    done = run("-", stdin=json.dumps(review))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1" and answer["response"]["uid"] == "from-stdin"


def test_review_of_a_multi_document_file_answers_each(tmp_path: Path) -> None:
    path = corpus_dir("argo-examples") / "examples__cluster-workflow-template__clustertemplates.yaml"
    done = run(str(path))
    assert done.returncode == 0, done.stderr  # each template reviewed as the Workflow `argo submit --from` creates
    documents = yaml.safe_load_all(path.read_text())
    count = sum(1 for d in documents if isinstance(d, dict))
    assert done.stderr.count("(not admitted itself: reviewed as the Workflow it creates)") == count
    assert "Traceback" not in done.stderr
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    done = run("-", stdin=json.dumps(secret))
    assert done.returncode == 1 and "kind 'Secret' is not admitted by wfboost" in done.stderr
    two = tmp_path / "two.yaml"
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "a"}, "spec": {}}
    two.write_text(yaml.safe_dump_all([wf, {**wf, "metadata": {"name": "b"}}]))
    done = run(str(two))
    assert done.returncode == 0 and done.stderr.count("workflows: unchanged") == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not: [valid", "neither JSON nor YAML"),
        ("- just\n- a list\n", "document 1 is a string, not an object"),
        ("kind: Pod\n", "no apiVersion/kind"),
        ("", "no document found"),
    ],
)
def test_bad_input_is_one_clear_line(content: str, message: str, tmp_path: Path) -> None:
    done = run("-", stdin=content)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_missing_file_and_a_bad_policy_are_clear(tmp_path: Path, argo_pod: dict[str, object]) -> None:
    done = run(str(tmp_path / "absent.yaml"))
    assert done.returncode == 1 and "No such file or directory" in done.stderr
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nmemoize: {maxStaleness: P7X}\n")
    done = run("-", "--policy", str(policy), stdin=json.dumps(argo_pod))
    assert done.returncode == 1 and "is invalid" in done.stderr and "memoize.maxStaleness" in done.stderr


def test_redis_url_from_the_environment_and_down_means_unchanged(argo_pod: dict[str, object]) -> None:
    import os

    env = {**os.environ, "WFBOOST_REDIS_URL": "redis://127.0.0.1:1/0"}
    done = run("-", stdin=json.dumps(argo_pod), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["response"]["allowed"] is True


def test_review_says_what_shrinking_would_move(tmp_path: Path) -> None:
    from wfboost_dev.argosim.kubeflow import kubeflow_shaped

    workflow = kubeflow_shaped(3, 30_000)
    # the controller evaluates a podSpecPatch: what reaches it stays inline
    workflow["spec"]["templates"][0]["podSpecPatch"] = '{"containers":[{"name":"main","env":[{"name":"C",'
    workflow["spec"]["templates"][0]["podSpecPatch"] += '"value":"{{inputs.parameters.component}}"}]}]}'

    path = tmp_path / "wf.json"
    path.write_bytes(orjson.dumps(workflow))
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {shrinkWorkflows: true}\n")
    done = run("--policy", str(policy), str(path))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("wfboost review: shrink:")]
    assert lines[0].startswith("wfboost review: shrink: would move 3 value(s) to the side store, ")
    assert "implementations-" in lines[0] and "components-" not in lines[0]
    kept = [line for line in lines if "kept inline" in line]
    assert len(kept) == 3 and all(
        "kept inline: components-" in line and "podSpecPatch: a field the controller evaluates" in line for line in kept
    )
    # the one call of each driver passes only a small static `task`: a table would not pay for itself
    [untabled] = lines[4:]
    assert untabled.startswith("wfboost review: shrink: no argument table for system-container-driver: a table would "
                               "save ") and untabled.endswith(" bytes, under shrink.valueThresholdBytes")
    assert "workflows: fail_open (sidestore_unavailable" in done.stderr  # review itself has no side store


def test_explain_says_what_would_happen_and_why(argo_pod: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / "pod.json"
    path.write_bytes(orjson.dumps(argo_pod))
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                      "memoize: {namespaces: [ml-team]}\n")
    done = run("--explain", "--policy", str(policy), str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("document 1 (Pod ml-team/") and "route pods: fail_open" in lines[0]
    assert "admitted unchanged because store_unavailable" in lines[1]  # memoization on, and no Redis to ask
    assert "patch: none" in done.stdout
    assert "wfboost review: document 1 (Pod ml-team/" in done.stderr


def test_explain_decodes_the_patch(tmp_path: Path) -> None:
    from wfboost_dev.argosim.status import kubeflow_run_nodes

    workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": "w", "namespace": "ml"},
                "spec": {"entrypoint": "m", "templates": [{"name": "m", "container": {"image": "busybox"}}]},
                "status": {"phase": "Running", "nodes": kubeflow_run_nodes(100)}}
    path = tmp_path / "wf.json"
    path.write_bytes(orjson.dumps(workflow))
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {compressStatus: true}\n")
    done = run("--explain", "--policy", str(policy), str(path))
    assert done.returncode == 0, done.stderr
    assert "document 1 (Workflow ml/w), route workflows: status_compressed" in done.stdout
    assert "  patch: 2 operation(s)\n    remove /status/nodes\n    add /status/compressedNodes = \"H4sI" in done.stdout
    assert "characters)" in done.stdout  # the long value shortened, its length said


def test_a_cron_workflow_and_a_workflow_template_are_reviewed_as_themselves(tmp_path: Path) -> None:
    """The webhook admits CronWorkflows and WorkflowTemplates at their own CREATE: that is what is reviewed (here:
    an Argo 4 schema-limit warning on the spec the cron controller copies into each Workflow it creates, which Argo
    4's CronWorkflow CRD refuses already)."""
    tasks = [{"name": f"t{i}", "template": "m"} for i in range(201)]
    cron = {"apiVersion": "argoproj.io/v1alpha1", "kind": "CronWorkflow",
            "metadata": {"name": "nightly", "namespace": "ml"},
            "spec": {"schedules": ["0 1 * * *"], "workflowSpec": {"entrypoint": "d", "templates": [
                {"name": "m", "container": {"image": "busybox"}}, {"name": "d", "dag": {"tasks": tasks}}]}}}
    path = tmp_path / "cron.yaml"
    path.write_text(yaml.safe_dump(cron))
    done = run("--explain", str(path))
    assert done.returncode == 0, done.stderr
    assert "document 1 (CronWorkflow ml/nightly)" in done.stdout
    assert ("warning: Argo 4's Workflow schema allows at most 200 items in spec.workflowSpec.templates[1].dag.tasks"
            in done.stdout)
    assert "workflows: schema_limit_warned" in done.stderr and "reviewed as" not in done.stderr
    template = {"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate", "metadata": {"name": "t"},
                "spec": {"entrypoint": "m", "templates": [{"name": "m", "container": {"image": "busybox"}}]}}
    done = run("-", "--namespace", "ml", stdin=json.dumps(template))
    assert done.returncode == 0, done.stderr
    assert "workflows: unchanged\n" in done.stderr


def test_an_offloaded_pod_is_reviewed_with_its_configmap(tmp_path: Path, valkey: RedisProcess) -> None:
    """A pod whose ARGO_TEMPLATE Argo moved to a ConfigMap: without it the review fails open and says how to give it;
    with `--configmap` the step is decided as the server decides it (here a miss against a real Valkey)."""
    built = build_pod(offloading_workflow("ml"), "big", "big-script", layout=V3_7)
    assert built.configmap is not None
    pod, configmap, policy = tmp_path / "pod.json", tmp_path / "cm.yaml", tmp_path / "policy.yaml"
    pod.write_bytes(orjson.dumps(built.pod))
    configmap.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [built.configmap]}))
    policy.write_text("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
                      "memoize: {namespaces: [ml], trustImageTags: true}\n")
    common = [str(pod), "--policy", str(policy), "--redis-url", valkey.url]
    done = run(*common)
    assert done.returncode == 0, done.stderr
    assert "pods: fail_open (kube_unavailable: big-script: ARGO_TEMPLATE offloaded" in done.stderr
    assert "give Argo's ConfigMap named after the pod with --configmap FILE" in done.stderr
    done = run(*common, "--configmap", str(configmap), "--explain")
    assert done.returncode == 0, done.stderr
    assert "document 1 (Pod ml/big-script), route pods: miss" in done.stdout
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**built.configmap, "metadata": {"name": "someone-else", "namespace": "ml"}}))
    done = run(*common, "--configmap", str(other))
    assert "pods: fail_open (kube_unavailable: reading ConfigMap ml/big-script: 404 NotFound: ConfigMap " \
           "ml/big-script not given (--configmap FILE))" in done.stderr
    done = run(*common, "--configmap", str(pod))
    assert done.returncode == 1
    assert done.stderr == f"wfboost review: --configmap {pod}: document 1 is not a ConfigMap with metadata and data\n"
