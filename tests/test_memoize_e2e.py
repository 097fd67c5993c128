"""Memoization through the HTTPS harness: a miss, a recorded result, then a hit in another workflow whose replay
writes exactly the recorded outputs, whose task result points at the cached artifacts, and whose downstream step
therefore hits too. Against one Valkey and a three-node cluster, for every Argo pod layout."""

from __future__ import annotations

import copy
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.argo_source.pods import ControllerConfig, controller_pod
from tests.argo_source.taskresult import task_result
from tests.conftest import REDIS_DEPLOYMENTS, StartWebhook, Webhook, redis_deployment
from tests.harness.kubelet import BUSYBOX, run_main, wait_reads
from tests.harness.runs import assert_runs_as_it_was
from wfboost.argo.pods import parse_pod
from wfboost.cache import keyspace
from wfboost.cache.entries import CacheEntry
from wfboost.cache.keys import cache_key, key_material
from wfboost_dev.argosim.layouts import LAYOUTS
from wfboost_dev.demo.plan import plan_workflow
from wfboost_dev.demo.runner import default_workflow_text

POLICY = """\
apiVersion: wfboost.io/v1alpha1
kind: Policy
features: {memoize: true}
memoize:
  namespaces: ["ml", "ml-other"]
  maxStaleness: P7D
"""


def workflow(name: str) -> dict[str, Any]:
    wf = yaml.safe_load(default_workflow_text())
    wf["metadata"].pop("generateName")
    wf["metadata"]["name"] = name
    return wf  # type: ignore[no-any-return]


def pods(name: str, layout: str, namespace: str = "ml", outputs: Any = None) -> dict[str, dict[str, Any]]:
    """The workflow's pods, each with a cache seed unique to the test, so tests never share entries."""
    plan = plan_workflow(workflow(name), layout, namespace=namespace, outputs=outputs)
    found = {item.step.split(".", 1)[1]: item.pod for item in plan.pods}
    for pod in found.values():
        pod["metadata"]["annotations"]["wfboost.io/cache-seed"] = SEED
    return found


@pytest.fixture(autouse=True)
def unique_seed(request: pytest.FixtureRequest) -> None:
    global SEED
    SEED = request.node.nodeid


SEED = ""
RUN = "wfboost-run-" + "0123456789abcdef" * 2  # a key segment of a run that wfboost admitted
RAW = {"name": "raw", "path": "/data/raw.parquet", "s3": {"key": f"k/{RUN}/raw.tgz"}}


@pytest.fixture(params=list(REDIS_DEPLOYMENTS))
def memo_webhook(request: pytest.FixtureRequest, start_webhook: StartWebhook, tmp_path: Path) -> Webhook:
    server = redis_deployment(request)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return start_webhook(settings={"policy_path": policy, "redis_url": server.url})


def record(webhook: Webhook, pod: dict[str, Any], parameters: dict[str, str], artifacts: list[dict[str, Any]],
           result: str | None = None, key: str | None = None, ran_ms: int | None = None) -> CacheEntry:
    """What the recorder writes when the step succeeds (its own tests cover the watching)."""
    step = parse_pod(pod)
    entry: dict[str, Any] = {
        "key": key or cache_key(key_material(step, seed=SEED)), "entry_id": pod["metadata"]["name"],
        "finished_at": "2026-11-22T10:00:00Z", "finished_ms": int(time.time() * 1000) - 60_000,
        "staleness_s": 604800, "parameters": [{"name": k, "value": v} for k, v in parameters.items()],
        "artifacts": artifacts, "image": step.main["image"], "image_id": "sha256:" + "2" * 64,
        "producer": {"namespace": step.namespace, "workflow": step.workflow, "workflow_uid": "uid-a",
                     "node_id": step.node_id, "node_name": step.node_name, "pod": step.pod_name},
        "recorded_at": "2026-11-22T10:00:01Z",
    }
    if result is not None:
        entry["result"] = result
    if ran_ms is not None:
        entry["ran_ms"] = ran_ms
    store = webhook.server.store
    assert store is not None
    webhook.running.call(lambda: store.record(entry, retention=timedelta(days=30)))  # type: ignore[arg-type]
    return entry  # type: ignore[return-value]


@pytest.mark.parametrize("layout", [layout.name for layout in LAYOUTS])
def test_miss_record_hit_and_a_chained_hit(memo_webhook: Webhook, layout: str, tmp_path: Path) -> None:
    api = memo_webhook.api
    suffix = layout.replace(".", "-")
    first = pods(f"first-{suffix}", layout)

    # 1. First run: a miss, annotated with its key and why it missed.
    missed = api.admit("pods", first["fetch"])
    annotations = missed.object["metadata"]["annotations"]
    assert annotations["wfboost.io/cache-outcome"] == "miss: no_entry"
    key = annotations["wfboost.io/cache-key"]
    assert key == cache_key(key_material(parse_pod(first["fetch"]), seed=SEED))
    assert_runs_as_it_was(first["fetch"], missed.object)  # a miss runs the step as it was, uploads under its own key

    # 2. It succeeds; the recorder writes its outputs.
    raw = {"name": "raw", "path": "/data/raw.parquet", "s3": {"key": f"first-{suffix}/fetch/{RUN}/raw.tgz"}}
    record(memo_webhook, first["fetch"], {"rows": "1024"}, [raw])

    # 3. The same step in another workflow is a hit, replayed by Argo's own executor.
    second = pods(f"second-{suffix}", layout)
    hit = api.admit("pods", second["fetch"])
    meta = hit.object["metadata"]
    assert meta["labels"]["wfboost.io/cache-hit"] == "true"
    assert meta["annotations"]["wfboost.io/cache-outcome"] == "hit"
    source = orjson.loads(meta["annotations"]["wfboost.io/cache-source"])
    assert source["workflow"] == f"first-{suffix}" and source["namespace"] == "ml"
    step = parse_pod(second["fetch"])
    main = hit.object["spec"]["containers"][step.main_index]
    assert main["command"][: len(step.emissary_prefix)] == list(step.emissary_prefix)
    if BUSYBOX:
        done = run_main(main, tmp_path)
        assert done.returncode == 0, done.stderr
        assert wait_reads((tmp_path / "tmp/rows").read_bytes()) == "1024"
        assert not (tmp_path / "data").exists()  # no placeholder: nothing to upload

    # A reinvocation (reinvocationPolicy: IfNeeded) of the replayed pod changes nothing.
    assert api.admit("pods", hit.object).patch == []

    # 4. Its wait container (Argo's, modelled from its source) reports what the patched pod's template declares: the
    # parameter and the replay marker, no artifact; the webhook puts the cached artifact back.
    taskresult = task_result(layout.removesuffix("-initless"), hit.object, {"parameters": {"rows": "1024\n"}})
    assert "artifacts" not in taskresult["outputs"]  # nothing uploaded, not even the replay's logs
    reported = api.admit("workflowtaskresults", taskresult, operation="UPDATE", old_object=taskresult)
    # The cached data is shared by every run that hits it: this run's artifact GC must leave it alone.
    assert reported.object["outputs"]["artifacts"] == [{**raw, "artifactGC": {"strategy": "Never"}}]
    assert [p["name"] for p in reported.object["outputs"]["parameters"]] == ["rows"]
    # A task result without the marker (a step that ran for real) is never touched.
    real = copy.deepcopy(taskresult)
    real["outputs"] = {"parameters": reported.object["outputs"]["parameters"], "artifacts": [raw]}
    assert api.admit("workflowtaskresults", real).patch == []

    # 5. Downstream, the second run's features step now reads the first run's artifact: same key, a hit.
    first_down = pods(f"first-{suffix}", layout, outputs={"fetch": {"artifacts": {"raw": raw}}})
    second_down = pods(f"second-{suffix}", layout, outputs={"fetch": {"artifacts": {"raw": reported.object[
        "outputs"]["artifacts"][0]}}})
    assert cache_key(key_material(parse_pod(first_down["features"]))) == cache_key(
        key_material(parse_pod(second_down["features"]))
    )


def test_entries_are_not_shared_across_namespaces(memo_webhook: Webhook) -> None:
    layout = "v3.7.18"
    first = pods("ns-a", layout)
    record(memo_webhook, first["fetch"], {"rows": "7"}, [RAW])
    assert memo_webhook.api.admit("pods", pods("ns-b", layout)["fetch"]).object["metadata"]["annotations"][
        "wfboost.io/cache-outcome"] == "hit"
    # The identical step in another namespace where memoization is on too: a miss, the entry is ml's.
    other_ns = pods("ns-d", layout, namespace="ml-other")["fetch"]
    answered = memo_webhook.api.admit("pods", other_ns)
    assert answered.object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "miss: no_entry"
    assert_runs_as_it_was(other_ns, answered.object)
    # A namespace where memoization is off: untouched.
    assert memo_webhook.api.admit("pods", pods("ns-e", layout, namespace="team-b")["fetch"]).patch == []


def test_entries_are_shared_across_namespaces_when_the_policy_says_so(
    start_webhook: StartWebhook, valkey: Any, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("maxStaleness: P7D", "maxStaleness: P7D\n  shareAcrossNamespaces: true"))
    webhook = start_webhook(settings={"policy_path": policy, "redis_url": valkey.url})
    first = pods("share-a", "v3.7.18")
    step = parse_pod(first["fetch"])
    entry_key = cache_key(key_material(step, share_across_namespaces=True, seed=SEED))
    record(webhook, first["fetch"], {"rows": "7"}, [RAW], key=entry_key)
    elsewhere = webhook.api.admit("pods", pods("share-b", "v3.7.18", namespace="ml-other")["fetch"])
    assert elsewhere.object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"


def test_p0d_never_reuses(memo_webhook: Webhook) -> None:
    first = pods("fresh-a", "v3.7.18")
    record(memo_webhook, first["fetch"], {"rows": "7"}, [RAW])
    pod = copy.deepcopy(pods("fresh-b", "v3.7.18")["fetch"])
    pod["metadata"]["annotations"]["wfboost.io/max-staleness"] = "P0D"
    answered = memo_webhook.api.admit("pods", pod)
    assert answered.object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "miss: staleness_zero"
    assert_runs_as_it_was(pod, answered.object)


def test_a_bad_control_is_said_on_the_pod(memo_webhook: Webhook) -> None:
    pod = copy.deepcopy(pods("bad-control", "v3.7.18")["fetch"])
    pod["metadata"]["annotations"]["wfboost.io/max-staleness"] = "a week"
    answered = memo_webhook.api.admit("pods", pod)
    outcome = answered.object["metadata"]["annotations"]["wfboost.io/cache-outcome"]
    assert outcome.startswith("skipped: bad_control (wfboost.io/max-staleness")
    assert answered.object["spec"] == pod["spec"]


def test_redis_down_admits_every_pod_untouched(start_webhook: StartWebhook, tmp_path: Path) -> None:
    from wfboost_dev.demo.processes import redis_server

    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with redis_server() as gone:
        url = gone.url
    webhook = start_webhook(settings={"policy_path": policy, "redis_url": url})
    asked = 0
    for pod in pods("down", "v3.7.18").values():
        answered = webhook.api.admit("pods", pod)
        if answered.patch:  # decided without the store (its input lies where any run writes): says why
            assert [op["path"] for op in answered.patch] == ["/metadata/annotations/wfboost.io~1cache-outcome"]
            assert answered.object["spec"] == pod["spec"]
        else:
            asked += 1
            assert answered.object == pod
    page = webhook.api.request("GET", "/metrics").body.decode()
    assert asked == 2 and f'wfboost_fail_open_total{{reason="store_unavailable"}} {asked}.0' in page


def test_a_dry_run_writes_nothing(memo_webhook: Webhook) -> None:
    first = pods("dry-a", "v3.7.18")
    entry = record(memo_webhook, first["fetch"], {"rows": "3"}, [{"name": "raw", "path": "/data/raw.parquet",
                                                                  "s3": {"key": "k"}}])
    pod = pods("dry-b", "v3.7.18")["fetch"]
    answered = memo_webhook.api.admit("pods", pod, dry_run=True)
    assert answered.object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"
    store = memo_webhook.server.store
    assert store is not None
    assert not memo_webhook.running.call(lambda: store.redis.exists(keyspace.served_key(entry["key"])))
    # The real request after the dry run is still a hit: the dry run did not count as having served the node.
    real = memo_webhook.api.admit("pods", pod)
    assert real.object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"


@pytest.mark.parametrize(("version", "initless"), [("v3.5.14", False), ("v3.7.18", False), ("v4.1.2", True)])
def test_a_resource_step_is_skipped_not_counted_as_a_failure(
    memo_webhook: Webhook, version: str, initless: bool
) -> None:
    """A resource template's main runs `argoexec resource` (under emissary, like any container: workflowpod.go
    createWorkflowPod, operator.go executeResource): not a step to memoize, and not an error either. The pod is
    built from Argo's source independently of wfboost's own model (tests/argo_source)."""
    template = {"name": "make-cm", "resource": {"action": "create", "manifest": "apiVersion: v1\nkind: ConfigMap\n"}}
    pod = controller_pod(
        version, "wf-res", "uid-res", "ml", template, "wf-res[0].make", config=ControllerConfig(initless=initless)
    ).pod
    assert memo_webhook.api.admit("pods", pod).patch == []
    page = memo_webhook.api.request("GET", "/metrics").body.decode()
    assert 'wfboost_fail_open_total{reason="unparseable"} 0.0' in page
    assert 'wfboost_memo_decisions_total{decision="skipped",reason="template_resource"} 1.0' in page


@pytest.mark.parametrize("again", ["retry attempt", "argo retry"])
def test_a_node_that_comes_back_after_a_hit_runs_for_real_and_keeps_its_own_outputs(
    memo_webhook: Webhook, again: str
) -> None:
    """A replayed node that comes back failed after the replay (its image could not be pulled, say): a retry attempt
    (`name(1)`, a new node id) or `argo retry` (the same node, a new pod) must run for real, or the replay would be
    retried forever; and its task result, which carries no replay marker, keeps what it really produced."""
    first = pods("retry-a", "v3.7.18")
    record(memo_webhook, first["fetch"], {"rows": "7"}, [RAW])
    second = pods("retry-b", "v3.7.18")["fetch"]
    assert memo_webhook.api.admit("pods", second).object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"
    rerun = copy.deepcopy(second)
    if again == "retry attempt":
        node_name = rerun["metadata"]["annotations"]["workflows.argoproj.io/node-name"]
        rerun["metadata"]["annotations"]["workflows.argoproj.io/node-name"] = node_name + "(1)"
        rerun["metadata"]["annotations"]["workflows.argoproj.io/node-id"] += "-1"
        rerun["metadata"]["name"] += "-1"
    answered = memo_webhook.api.admit("pods", rerun)
    assert answered.object["metadata"]["annotations"]["wfboost.io/cache-outcome"].startswith("miss: rerun_after_hit")
    assert_runs_as_it_was(rerun, answered.object)
    produced = {"name": "raw", "path": "/data/raw.parquet", "s3": {"key": "retry-b/real/raw.tgz"}}
    taskresult = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTaskResult",
        "metadata": {"name": rerun["metadata"]["annotations"]["workflows.argoproj.io/node-id"], "namespace": "ml",
                     "labels": {"workflows.argoproj.io/workflow": "retry-b"},
                     "ownerReferences": second["metadata"]["ownerReferences"]},
        "outputs": {"parameters": [{"name": "rows", "value": "8"}], "artifacts": [produced]},
    }
    assert memo_webhook.api.admit("workflowtaskresults", taskresult).patch == []


def test_cache_stats_say_the_hit_rate_and_the_compute_time_saved(
    memo_webhook: Webhook, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache that silently does nothing is what users fear: `wfboost cache stats` says, per namespace and day, how
    many steps hit, missed or were not memoizable, and how much compute the hits saved (the producers' run time).
    Other tests' webhooks share the server and count in `ml` too: what this test adds is compared."""
    from wfboost.cli import main

    url = memo_webhook.server.config.redis_url
    assert url is not None

    def counted() -> dict[str, Any]:
        assert main(["cache", "stats", "--redis-url", str(url), "--json"]) == 0
        return dict(orjson.loads(capsys.readouterr().out)["namespaces"].get("ml") or dict.fromkeys(
            ("hits", "misses", "skipped", "saved_ms"), 0))

    tally, store = memo_webhook.server.admission.tally, memo_webhook.server.store
    assert tally is not None and store is not None
    memo_webhook.running.call(lambda: tally.flush(store.redis))
    before = counted()
    saved = memo_webhook.server.metrics.memo.saved_seconds
    saved_before = saved._value.get()
    api = memo_webhook.api
    first = pods("stats-first", "v3.7.18")
    assert api.admit("pods", first["fetch"]).object["metadata"]["annotations"][
        "wfboost.io/cache-outcome"] == "miss: no_entry"
    record(memo_webhook, first["fetch"], {"rows": "1024"}, [RAW], ran_ms=95_000)
    second = pods("stats-second", "v3.7.18")
    api.admit("pods", second["fetch"], dry_run=True)  # a dry run is not an admission that happened
    assert api.admit("pods", second["fetch"]).object["metadata"]["annotations"]["wfboost.io/cache-outcome"] == "hit"
    memo_webhook.running.call(lambda: tally.flush(store.redis))  # what the webhook does every 10 s
    after = counted()
    assert {k: after[k] - before[k] for k in ("hits", "misses", "skipped", "saved_ms")} == {
        "hits": 1, "misses": 1, "skipped": 0, "saved_ms": 95_000}
    assert saved._value.get() - saved_before == 95.0  # wfboost_memo_saved_seconds: the dashboard's time saved
    assert after["hit_rate"] == round(after["hits"] / (after["hits"] + after["misses"]), 4)

    assert main(["cache", "stats", "--redis-url", url, "--days", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("ml ")]
    assert rows[0][:4] == ["ml", "total", str(after["hits"]), str(after["misses"])], out
    assert rows[0][4] == f"{after['hit_rate']:.1%}" and len(rows) == 3, out  # the total, today, yesterday
    assert main(["cache", "stats", "--redis-url", url, "--days", "91"]) == 1
    assert "--days must be between 0 and 90" in capsys.readouterr().err
