"""Splitting DAGs over Argo 4's 200-task limit keeps every workflow's meaning (issue 13).

The referee is tests/harness/argo_dag.py, an executable model of Argo's DAG semantics written from dag.go, not from
the split code: the original and the split workflow are run with the same task outcomes and must run the same tasks
with the same inputs, each only after its original dependencies, with the same phases, and end in the same phase.
A task Omitted flat may have no node at all when its whole group is Omitted (docs/split.md, boundary 1): either way
it did not run. The CRD checks evaluate Argo v4.1.2's full-CRD rules with a CEL interpreter (tests/argo_crd).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.argo_crd.rules import MAX_ITEMS, RULES, crd_violations
from tests.conftest import corpus_dir
from tests.harness.argo_dag import (
    ERROR,
    FAILED,
    OMITTED,
    SUCCEEDED,
    Invocation,
    LeafOutcome,
    Trace,
    Unsupported,
    renamed,
    run_workflow,
    task_dependencies,
)
from tests.test_argo_dag_model import ECHO, LEAF, PAIR  # the DAG model's own test templates
from wfboost.split import split_spec
from wfboost_dev.argosim.kubeflow import kubeflow_compiled


def workflow(tasks: Sequence[Mapping[str, Any]], *, seed: str = "s0", **dag: Any) -> dict[str, Any]:
    """A Workflow `wf` whose entrypoint `main` is a DAG of `tasks` taking input `seed` from the arguments."""
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "wf"},
            "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "seed", "value": seed}]},
                     "templates": [{"name": "main", "inputs": {"parameters": [{"name": "seed"}]},
                                    "dag": {"tasks": list(tasks), **dag}}, LEAF, ECHO, PAIR]}}


def echo(name: str, depends: str | None = None, message: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "template": "echo",
                           "arguments": {"parameters": [{"name": "message", "value": message or name}]}, **extra}
    if depends is not None:
        out["depends"] = depends
    return out


def split(wf: Mapping[str, Any], limit: int) -> dict[str, Any] | None:
    result = split_spec(wf["spec"], task_limit=limit)
    if result.spec is None:
        return None
    return {**wf, "spec": result.spec}


# Group nodes: `part-<n>` (`wfboost-part-<n>`), or `<first leaf>-part` (`-part-<n>`) for a group that ends the DAG.
_GROUP = re.compile(r"^([^.]+(?:\.[^.]+)*?)\.(?:(?:wfboost-)?part-\d+|[^.]+-part(?:-\d+)?)(?=\.|$)")


def flat_name(name: str) -> str | None:
    """`wf.part-2.t7` → `wf.t7`, `wf.t7-part.t7` → `wf.t7`; a group node itself → None."""
    while True:
        match = _GROUP.match(name)
        if match is None:
            return name
        rest = name[match.end():]
        if not rest:
            return None
        name = match.group(1) + rest


def oracle_from(table: Mapping[str, str]) -> Callable[[Invocation], LeafOutcome]:
    """Phases by task name; every pod outputs p from its name, its input and a salt, so values differ by path."""
    salt = int(table.get("salt", "0"))

    def oracle(inv: Invocation) -> LeafOutcome:
        name = flat_name(inv.node) or inv.node
        phase = table.get(name.rsplit(".", 1)[-1], table.get(name, SUCCEEDED))
        total = sum(map(ord, name + inv.inputs.get("message", "")))
        return LeafOutcome(phase=phase, parameters={"p": f"v{(total >> salt % 3) % 5}"}, result=f"r{total % 7}")

    return oracle


def assert_same_run(original: Mapping[str, Any], rewritten: Mapping[str, Any],
                    oracle: Callable[[Invocation], LeafOutcome]) -> Trace | None:
    """The original's trace, or None when the model refuses the original (Argo's answer depends on map order, or
    the workflow reads what the model does not reproduce): then there is nothing to compare against."""
    try:
        flat = run_workflow(original, oracle)
    except Unsupported:
        return None
    trace = renamed(run_workflow(rewritten, oracle), flat_name)
    assert trace.phase == flat.phase
    for name, record in flat.nodes.items():
        if record.phase == OMITTED and name not in trace.nodes:
            continue  # its whole group was Omitted: it did not run either way
        assert name in trace.nodes, f"{name} ({record.phase}) has no node after the split"
        got = trace.nodes[name]
        assert (got.phase, got.kind, dict(got.inputs)) == (record.phase, record.kind, dict(record.inputs)), name
    assert set(trace.nodes) <= set(flat.nodes), "the split ran tasks the original did not"
    root = next(name for name in flat.nodes if "." not in name)
    entry = next(t for t in original["spec"]["templates"] if t["name"] == original["spec"]["entrypoint"])
    tasks = {t["name"]: t for t in entry["dag"]["tasks"]}  # the model runs only DAG entrypoints
    for name, spec in tasks.items():
        record = trace.nodes.get(f"{root}.{name}")
        if record is not None:
            deps, _ = task_dependencies(spec, tasks)
            # a dependency without a node was Omitted with its whole group: nothing to wait for, flat or split
            present = {f"{root}.{d}" for d in deps if f"{root}.{d}" in trace.nodes}
            assert present <= record.started_after, f"{name} started before its dependencies"
    return flat


# ---------------------------------------------------------------------------------------------------------------
# Property: random DAGs, random outcomes
# ---------------------------------------------------------------------------------------------------------------

RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted")


@st.composite
def random_case(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str], int]:
    """DAGs grown from chains and fans (the shapes a split can group) with cross links, any depends operator and
    result, legacy dependencies, when, loops, continueOn, nested DAG tasks, and arguments reading ancestors'
    outputs, results and the DAG's input, listed in order or shuffled; a random limit small enough to force a
    split."""
    count = draw(st.integers(3, 12))
    names = [f"t{i}" for i in range(count)]
    tasks: list[dict[str, Any]] = []
    readable: set[str] = set()  # never Skipped and one pod: their outputs can be read by dependants
    for i, name in enumerate(names):
        shape = draw(st.integers(0, 9))
        deps: list[str] = []
        if i and shape < 4:
            deps = [names[i - 1]]  # chain
        elif i and shape < 7:
            deps = draw(st.lists(st.sampled_from(names[:i]), min_size=1, max_size=3, unique=True))
        elif i and shape == 7:
            deps = [names[0]]  # fan out from the first
        t = echo(name, template=draw(st.sampled_from(["echo"] * 5 + ["pair"])))
        form = draw(st.integers(0, 9))
        if deps and form < 6:
            t["depends"] = " && ".join(d if draw(st.booleans()) else f"{d}.Succeeded" for d in deps)
        elif deps and form < 8:
            t["dependencies"] = deps
        elif deps:
            terms = [f"{d}.{draw(st.sampled_from(RESULTS))}" if draw(st.booleans()) else d for d in deps]
            t["depends"] = f" {draw(st.sampled_from(['&&', '||']))} ".join(terms)
            if draw(st.integers(0, 3)) == 0:
                t["depends"] = f"!({t['depends']})"
        sources = [d for d in deps if d in readable]
        value = draw(st.integers(0, 5))
        if value == 0:
            t["arguments"]["parameters"][0]["value"] = f"{name}-{{{{inputs.parameters.seed}}}}"
        elif value in (1, 2) and sources:
            key = draw(st.sampled_from(["outputs.parameters.p", "outputs.result"]))
            source = draw(st.sampled_from(sources))
            if key == "outputs.result" and tasks[names.index(source)]["template"] == "pair":
                key = "outputs.parameters.p"
            t["arguments"]["parameters"][0]["value"] = f"{{{{tasks.{source}.{key}}}}}"
        extra = draw(st.integers(0, 14))
        if extra == 0:
            t["when"] = f"{{{{tasks.{sources[0]}.outputs.parameters.p}}}} != v1" if sources else f"{i} > 2"
        elif extra == 1:
            t["withItems"] = ["a", "b"]
            t["arguments"]["parameters"][0]["value"] = "{{item}}"
        elif extra == 2 and "dependencies" in t:
            t["continueOn"] = {draw(st.sampled_from(["failed", "error"])): True}
        if "when" not in t and "withItems" not in t:
            readable.add(name)
        tasks.append(t)
    table = draw(st.dictionaries(st.sampled_from([*names, "x", "y"]), st.sampled_from([SUCCEEDED, FAILED, ERROR]),
                                 max_size=3))
    table["salt"] = str(draw(st.integers(0, 5)))
    if draw(st.integers(0, 3)) == 0:  # a DAG may list its tasks in any order, dependants before what they wait for
        tasks = draw(st.permutations(tasks))
    return workflow(tasks), table, draw(st.integers(2, max(2, count - 1)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_case())
def test_property_a_split_dag_runs_exactly_as_the_original(case: tuple[dict[str, Any], dict[str, str], int]
                                                            ) -> None:
    wf, table, limit = case
    rewritten = split(wf, limit)
    if rewritten is None:
        event("left as it is")
        return
    event("split")
    assert split(rewritten, limit) is None, "a split DAG is split again"
    assert split(copy.deepcopy(wf), limit) == rewritten, "the split is not deterministic"
    for dag in rewritten["spec"]["templates"]:
        if "dag" in dag:
            assert len(dag["dag"]["tasks"]) <= max(limit, len(PAIR["dag"]["tasks"]))
    try:
        assert_same_run(wf, rewritten, oracle_from(table))
    except Unsupported as error:
        if "order" in str(error):
            return
        raise
    assert crd_violations(rewritten) == crd_violations(wf)


# ---------------------------------------------------------------------------------------------------------------
# Shapes that split, and what is reported
# ---------------------------------------------------------------------------------------------------------------


def test_a_chain_splits_into_consecutive_groups_that_wait_for_each_other() -> None:
    wf = workflow([echo("t0"), *(echo(f"t{i}", f"t{i - 1}") for i in range(1, 7))])
    result = split_spec(wf["spec"], task_limit=3)
    assert [d.groups for d in result.dags] == [(3, 3)]  # t6 stays at the top: 3 entries
    main = result.spec["templates"][0] if result.spec else {}
    assert [(t["name"], t.get("depends")) for t in main["dag"]["tasks"]] == [
        ("part-1", None), ("part-2", "part-1.Succeeded"), ("t6", "part-2.Succeeded")]
    assert result.dags[0].parallelism_kept == 1.0
    for outcome in ({}, {"t1": FAILED}, {"t4": ERROR}, {"t6": FAILED}):
        assert assert_same_run(wf, {**wf, "spec": result.spec}, oracle_from(outcome)) is not None


def test_a_fan_out_and_in_keeps_its_parallelism() -> None:
    wf = workflow([echo("src"), *(echo(f"b{i}", "src") for i in range(8)),
                   echo("sink", " && ".join(f"b{i}.Succeeded" for i in range(8)))])
    result = split_spec(wf["spec"], task_limit=4)
    assert result.dags[0].groups == (4, 4) and result.dags[0].entries == 4
    assert result.dags[0].parallelism_kept == 1.0
    rewritten = {**wf, "spec": result.spec}
    sink = next(t for t in rewritten["spec"]["templates"][0]["dag"]["tasks"] if t["name"] == "sink")
    assert sink["depends"] == "part-1.Succeeded && part-2.Succeeded"
    # (b0 Error with b7 Failed is not here: the sink, omitted from both, takes whichever Argo meets first)
    for outcome in ({}, {"b3": FAILED}, {"b0": ERROR, "b7": ERROR}, {"b1": FAILED, "b6": FAILED}, {"src": FAILED},
                    {"sink": ERROR}):
        assert assert_same_run(wf, rewritten, oracle_from(outcome)) is not None


def test_values_cross_groups_through_group_inputs_and_outputs() -> None:
    tasks = [echo("t0", message="{{inputs.parameters.seed}}")]
    tasks += [echo(f"t{i}", f"t{i - 1}", message=f"{{{{tasks.t{i - 1}.outputs.parameters.p}}}}") for i in range(1, 4)]
    tasks += [echo("t4", "t3", message="{{tasks.t0.outputs.result}}-{{tasks.t3.outputs.parameters.p}}")]
    wf = workflow(tasks)
    rewritten = split(wf, 3)
    assert rewritten is not None
    # Group templates are named by DAG, calling task and content: `main-part-1-<8 hex>`.
    templates = {re.sub(r"-[0-9a-f]{8}$", "", t["name"]): t for t in rewritten["spec"]["templates"]}
    assert all(re.fullmatch(r"main-(part-1|t4-part)-[0-9a-f]{8}", t["name"])
               for t in rewritten["spec"]["templates"][4:])
    assert templates["main-part-1"]["inputs"]["parameters"] == [{"name": "seed"}]
    assert templates["main-part-1"]["outputs"]["parameters"] == [
        {"name": "t2--p", "valueFrom": {"parameter": "{{tasks.t2.outputs.parameters.p}}"}},
        {"name": "t0--result", "valueFrom": {"parameter": "{{tasks.t0.outputs.result}}"}}]
    t4 = templates["main-t4-part"]["dag"]["tasks"][1]  # the group ending the DAG is named after its leaf
    assert t4["arguments"]["parameters"][0]["value"] == "{{inputs.parameters.t0--result}}-" \
        "{{tasks.t3.outputs.parameters.p}}"
    for outcome in ({}, {"salt": "3"}, {"t1": FAILED}):
        flat = assert_same_run(wf, rewritten, oracle_from(outcome))
        assert flat is not None
        if not outcome:
            assert flat.nodes["wf.t4"].inputs["message"].startswith("r")


def test_a_kubeflow_pipeline_keeps_every_driver_with_its_executor() -> None:
    wf = kubeflow_compiled(150)
    result = split_spec(wf["spec"])
    assert result.dags[0].groups == (200, 100)
    for template in result.spec["templates"] if result.spec else []:
        names = [t["name"] for t in (template.get("dag") or {}).get("tasks", [])]
        for name in names:
            if name.endswith("-driver"):
                assert name.removesuffix("-driver") in names, f"{name} is apart from its executor"


@pytest.mark.parametrize("tasks", [150, 600, 2000])
def test_kubeflow_pipelines_pass_argo_4s_crd_rules_after_the_split(tasks: int) -> None:
    wf = kubeflow_compiled(tasks)
    assert crd_violations(wf) != []  # refused as compiled
    result = split_spec(wf["spec"])
    assert result.spec is not None and not result.refused
    rewritten = {**wf, "spec": result.spec}
    assert crd_violations(rewritten) == []
    assert result.dags[0].parallelism_kept == 1.0
    assert split_spec(result.spec).spec is None  # idempotent


def test_what_cannot_be_kept_exactly_is_left_as_it_is_with_the_reason() -> None:
    tangled = workflow([echo("a"), echo("b"), *(echo(f"t{i}", "a || b") for i in range(5))])
    result = split_spec(tangled["spec"], task_limit=3)
    assert result.spec is None
    assert result.refused[0].refused is not None and "can be grouped" in result.refused[0].refused
    warning = result.refused[0].warning()
    assert warning.startswith("wfboost did not split DAG template main (7 tasks") and len(warning) <= 256

    wf = workflow([echo(f"t{i}") for i in range(5)])
    wf["spec"]["templateDefaults"] = {"timeout": "1h"}
    assert "templateDefaults" in (split_spec(wf["spec"], task_limit=2).refused[0].refused or "")
    wf = workflow([echo(f"t{i}", message="{{workflow.failures}}") for i in range(5)])
    assert "workflow.failures" in (split_spec(wf["spec"], task_limit=2).refused[0].refused or "")
    wf = workflow([echo(f"t{i}") for i in range(5)], failFast=False)
    assert "failFast" in (split_spec(wf["spec"], task_limit=2).refused[0].refused or "")
    wf = workflow([echo(f"t{i}") for i in range(5)])
    assert "templates" in (split_spec(wf["spec"], task_limit=3, template_limit=5).refused[0].refused or "")


def test_tasks_whose_node_identity_is_read_stay_at_the_top() -> None:
    tasks = [echo("t0"), *(echo(f"t{i}", f"t{i - 1}") for i in range(1, 5)),
             echo("t5", "t4", message="{{tasks.t1.id}}")]
    rewritten = split(workflow(tasks), 4)
    assert rewritten is not None
    top = [t["name"] for t in rewritten["spec"]["templates"][0]["dag"]["tasks"]]
    assert "t1" in top and "t5" in top


# ---------------------------------------------------------------------------------------------------------------
# Corpus: real workflows, split at a tiny limit, must run as they did
# ---------------------------------------------------------------------------------------------------------------


def _corpus_workflows() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(corpus_dir().rglob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Workflow" and isinstance(doc.get("spec"), dict):
                found.append((str(path.relative_to(corpus_dir())), doc))
    return found


def test_every_corpus_workflow_is_unchanged_or_runs_the_same_when_split_at_a_tiny_limit() -> None:
    if not corpus_dir().is_dir():
        pytest.skip(f"the shared corpus is not at {corpus_dir()}")
    compared = split_count = 0
    for name, wf in _corpus_workflows():
        assert split_spec(wf["spec"]).spec is None, f"{name} is within the limits and must stay as it is"
        result = split_spec(wf["spec"], task_limit=2)
        if result.spec is None:
            continue
        split_count += 1
        rewritten = {**wf, "spec": result.spec}
        assert crd_violations(rewritten, "spec") == [] or crd_violations(rewritten) == crd_violations(wf), name
        for table in ({}, {"salt": "1"}):
            try:
                if assert_same_run(wf, rewritten, oracle_from(table)) is None:
                    break  # the model does not reproduce this workflow exactly (steps, artifacts, ...)
            except Unsupported:
                break
            compared += 1
    assert split_count > 0 and compared > 0


# ---------------------------------------------------------------------------------------------------------------
# The rules are Argo's; the CLI
# ---------------------------------------------------------------------------------------------------------------

ARGO_MIRROR = Path("/work/.mirror/argoproj+argo-workflows/repo")


def test_the_rules_are_argos() -> None:
    """The rules in tests/argo_crd match the CRD of Argo v4.1.2, read from a copy of Argo's repository."""
    if not ARGO_MIRROR.is_dir():
        pytest.skip(f"no copy of argoproj/argo-workflows at {ARGO_MIRROR}")
    text = subprocess.run(["git", "-C", str(ARGO_MIRROR), "show",
                           "v4.1.2:manifests/base/crds/full/argoproj.io_workflows.yaml"],
                          capture_output=True, text=True, check=True).stdout
    schema = yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    templates = schema["properties"]["templates"]
    dag_tasks = templates["items"]["properties"]["dag"]["properties"]["tasks"]
    assert MAX_ITEMS["spec.templates"] == templates["maxItems"]
    assert MAX_ITEMS["spec.templates[].dag.tasks"] == dag_tasks["maxItems"]
    assert MAX_ITEMS["spec.templates[].inputs.parameters"] == \
        templates["items"]["properties"]["inputs"]["properties"]["parameters"]["maxItems"]
    found = {(rule["rule"], rule["message"]) for rule in templates["x-kubernetes-validations"]}
    found |= {(rule["rule"], rule["message"]) for rule in dag_tasks["items"]["x-kubernetes-validations"]}
    assert {(rule, message) for _, rule, message in RULES} == found


def test_wfboost_split_prints_the_groups_and_writes_the_split_workflow(tmp_path: Path) -> None:
    source = tmp_path / "pipeline.json"
    source.write_text(json.dumps(kubeflow_compiled(600)))
    out = subprocess.run([sys.executable, "-m", "wfboost", "split", str(source)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    written = yaml.safe_load(out.stdout)
    assert crd_violations(written) == []
    assert "root: 1200 tasks into 6 groups" in out.stderr and "parallelism kept 100%" in out.stderr

    tangled = workflow([echo("a"), echo("b"), *(echo(f"t{i}", "a || b") for i in range(300))])
    source.write_text(json.dumps(tangled))
    out = subprocess.run([sys.executable, "-m", "wfboost", "split", str(source)], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (2, "") and "not split" in out.stderr and "Traceback" not in out.stderr
    source.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "wfboost", "split", str(source)], capture_output=True, text=True)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
