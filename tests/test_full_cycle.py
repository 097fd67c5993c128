"""Issue 3's whole cycle, with every part real: pods go through the HTTPS admission path (the API server's part
played by the harness), are stored in kmock's emulator, run (the kubelet's and the wait container's parts), are
recorded by the recorder watching the emulator, and the same step in another workflow is then a hit whose replay,
run by busybox, writes exactly the recorded values. For pods of corpus workflows and of our pipeline under every
Argo layout; against one Valkey and against a three-node cluster."""

from __future__ import annotations

import asyncio
import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.argo_source.taskresult import executor_template
from tests.argo_source.taskresult import task_result as argo_task_result
from tests.conftest import REDIS_DEPLOYMENTS, StartWebhook, Webhook, corpus_dir, redis_deployment
from tests.harness.emulated import Cluster, recorded, running, task_result
from tests.harness.kubelet import BUSYBOX, run_main, wait_reads
from wfboost.argo.pods import parse_pod
from wfboost.cache import redis_client
from wfboost.cache.store import CacheStore
from wfboost.policy import load_policy
from wfboost_dev.argosim.expand import expand_workflow
from wfboost_dev.argosim.layouts import LAYOUTS, layout_by_name
from wfboost_dev.argosim.pods import QUICK_START_CONFIG
from wfboost_dev.demo.runner import default_workflow_text

# The corpus' images are tags (python:alpine3.6): the test trusts named tags, as a policy may (memoize.trustImageTags).
POLICY = ("apiVersion: wfboost.io/v1alpha1\nkind: Policy\nfeatures: {memoize: true}\n"
          "memoize: {namespaces: [cycle-*], trustImageTags: true}\n")


UPSTREAM_RUN = "wfboost-run-" + "0123456789abcdef" * 2


def step_pods(workflow: dict[str, Any], name: str, namespace: str, layout: str) -> dict[str, dict[str, Any]]:
    """The pods of `workflow` run as `name`, by step (node name without the workflow name)."""
    wf = copy.deepcopy(workflow)
    wf["metadata"] = {**{k: v for k, v in wf["metadata"].items() if k != "generateName"}, "name": name,
                      "namespace": namespace}
    # Upstream steps reported the same outputs in both runs (as they do when they hit): a step's inputs are equal,
    # and lie where a memoized run wrote them once.
    upstream = {"fetch": {"parameters": {"rows": "1024"},
                          "artifacts": {"raw": {"name": "raw", "s3": {"key": f"cached/{UPSTREAM_RUN}/raw.tgz"}}}}}
    expansion = expand_workflow(wf, outputs=upstream)
    built, _ = expansion.build_pods(layout=layout_by_name(layout), config=QUICK_START_CONFIG)
    return {b.node_name.split(".", 1)[1].split("(")[0].lstrip("[0123456789]"): b.pod for b in built}


def outputs_for(pod: dict[str, Any], run: str) -> dict[str, Any]:
    """What the step's real run produced: values naming the run (so a replay of another run's values shows), its
    artifacts where the executor uploads them, under the archive key of the template it reads from the admitted
    pod (executor.go saveArtifactFromFile)."""
    step = parse_pod(pod)
    declared = (step.template or {}).get("outputs") or {}
    archive_key = executor_template(pod)["archiveLocation"]["s3"]["key"]
    outputs: dict[str, Any] = {
        "parameters": [{"name": p["name"], "value": f"{p['name']} from {run}\nline two ✓"}
                       for p in declared.get("parameters") or [] if (p.get("valueFrom") or {}).get("path")],
        "artifacts": [{"name": a["name"], "path": a.get("path"), "s3": {"key": f"{archive_key}/{a['name']}.tgz"}}
                      for a in declared.get("artifacts") or []],
        "exitCode": "0",
    }
    if step.include_script_output:
        outputs["result"] = f"stdout of {run}: heads"
    return outputs


async def cycle(webhook: Webhook, cluster: Cluster, store: CacheStore, workflow: dict[str, Any], step: str,
                layout: str, tmp_path: Path) -> None:
    namespace = f"cycle-{uuid.uuid4().hex[:8]}"
    first = step_pods(workflow, "first", namespace, layout)[step]
    missed = await asyncio.to_thread(webhook.api.admit, "pods", first)
    annotations = missed.object["metadata"]["annotations"]
    assert annotations["wfboost.io/cache-outcome"] == "miss: no_entry", annotations
    await cluster.create_pod(missed.object)
    await cluster.finish_pod(missed.object)
    produced = outputs_for(missed.object, "first")
    reported = await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", task_result(first, produced))
    await cluster.store_task_result(reported.object, missed.object)
    tracks = await recorded(store, annotations["wfboost.io/cache-key"])
    (entry,) = tracks.values()
    assert entry["parameters"] == [{"name": p["name"], "value": p["value"]} for p in produced["parameters"]]
    # Recorded with their whole location (the producer's repository), never as a key a consumer would resolve
    # against its own repository.
    for artifact, reported_artifact in zip(entry["artifacts"], produced["artifacts"], strict=True):
        assert artifact["s3"]["key"] == reported_artifact["s3"]["key"]
        assert artifact["s3"]["endpoint"] == "minio:9000" and artifact["s3"]["bucket"] == "my-bucket"

    second = step_pods(workflow, "second", namespace, layout)[step]
    hit = await asyncio.to_thread(webhook.api.admit, "pods", second)
    assert hit.object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"
    files: dict[str, str] = {}
    stdout = produced.get("result", "")
    if BUSYBOX:
        done = run_main(hit.object["spec"]["containers"][parse_pod(hit.object).main_index], tmp_path)
        assert done.returncode == 0, done.stderr
        for parameter in (parse_pod(second).template or {}).get("outputs", {}).get("parameters", []):
            path = parameter.get("valueFrom", {}).get("path")
            if path:
                value = next(p["value"] for p in produced["parameters"] if p["name"] == parameter["name"])
                files[parameter["name"]] = (tmp_path / path.lstrip("/")).read_text()
                assert wait_reads(files[parameter["name"]].encode()) == value
        for artifact in (parse_pod(second).template or {}).get("outputs", {}).get("artifacts", []):
            assert not (tmp_path / artifact["path"].lstrip("/")).exists()  # no placeholder to upload
        stdout = done.stdout.decode()
        assert wait_reads(done.stdout) == produced.get("result", "")
    else:
        files = {p["name"]: p["value"] + "\n" for p in produced["parameters"]}
    # Argo's wait container (modelled from its source) reports what the patched pod's template declares: the
    # parameters and the replay marker, no artifact; the webhook puts the recorded artifacts back.
    version = layout.removesuffix("-initless")
    reported_hit = argo_task_result(version, hit.object, {"parameters": files, "stdout": stdout})
    assert "artifacts" not in reported_hit["outputs"]  # nothing uploaded, not even the replay's logs
    restored = await asyncio.to_thread(webhook.api.admit, "workflowtaskresults", reported_hit)
    assert restored.object["outputs"].get("artifacts", []) == [
        {**artifact, "artifactGC": {"strategy": "Never"}} for artifact in entry["artifacts"]
    ]
    assert [p["name"] for p in restored.object["outputs"].get("parameters", [])] == [
        p["name"] for p in produced["parameters"]
    ]


@pytest.fixture(params=list(REDIS_DEPLOYMENTS))
async def parts(request: pytest.FixtureRequest, cluster: Cluster, start_webhook: StartWebhook,
                tmp_path: Path) -> Any:
    server = redis_deployment(request)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    webhook = start_webhook(settings={"policy_path": policy_file, "redis_url": server.url})
    client = redis_client.connect(server.url)
    store = CacheStore(client)
    policy = load_policy(POLICY)
    async with running(cluster, store, lambda: policy):
        yield webhook, cluster, store
    await client.aclose()


@pytest.mark.parametrize("layout", [layout.name for layout in LAYOUTS])
@pytest.mark.parametrize("step", ["fetch", "features"])  # a container and a script step
async def test_our_pipeline_under_every_layout(parts: Any, layout: str, step: str, tmp_path: Path) -> None:
    await cycle(*parts, yaml.safe_load(default_workflow_text()), step, layout, tmp_path)


CORPUS_STEPS = [
    ("examples__scripts-python.yaml", "generate"),  # a script step whose stdout result is used downstream
    ("examples__coinflip.yaml", "flip-coin"),  # the same, with a random result: cached, it stops being random
]
# Steps whose image has no fixed tag (`busybox`, i.e. latest): never memoized, even where tags are trusted.
CORPUS_UNPINNED = [
    ("examples__output-parameter.yaml", "generate-parameter"),  # a container step with an output parameter
    ("examples__artifact-passing.yaml", "generate-artifact"),  # a container step with an output artifact
]


def corpus_workflow(file: str) -> dict[str, Any]:
    path = corpus_dir("argo-examples") / file
    return next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Workflow")


@pytest.mark.parametrize(("file", "step"), CORPUS_STEPS)
async def test_corpus_workflows(parts: Any, file: str, step: str, tmp_path: Path) -> None:
    await cycle(*parts, corpus_workflow(file), step, "v3.7.18", tmp_path)


@pytest.mark.parametrize(("file", "step"), CORPUS_UNPINNED)
async def test_corpus_steps_whose_image_can_move_are_not_memoized(parts: Any, file: str, step: str) -> None:
    webhook, _, _ = parts
    pod = step_pods(corpus_workflow(file), "first", f"cycle-{uuid.uuid4().hex[:8]}", "v3.7.18")[step]
    answered = await asyncio.to_thread(webhook.api.admit, "pods", pod)
    outcome = answered.object["metadata"]["annotations"]["wfboost.io/cache-outcome"]
    assert outcome.startswith("skipped: image_tag_latest (main: image busybox has no fixed tag"), outcome
    assert answered.object["spec"] == pod["spec"]
