"""Pins tests/harness/argo_dag.py (the executable model of Argo's DAG semantics) to Argo's behaviour.

Expected outcomes are derived from Argo's Go source at v4.1.2 (workflow/controller/dag.go, workflow/common/
ancestry.go), each test saying which rule it exercises; the `test_argo_*` tests port Argo's own fixtures
(workflow/controller/dag_test.go, test/e2e, examples/) and cite them. The property test checks that the model is
deterministic and never starts a task before its depends expression is satisfied by what had finished.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.argo_dag import (
    ERROR,
    FAILED,
    OMITTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    Invocation,
    LeafOutcome,
    OrderDependent,
    Trace,
    Unsupported,
    eval_depends,
    outcomes,
    renamed,
    run_workflow,
    should_execute,
    task_dependencies,
)

LEAF = {"name": "leaf", "container": {"image": "busybox"}}
ECHO = {"name": "echo", "inputs": {"parameters": [{"name": "message"}]}, "container": {"image": "busybox"}}


def workflow(tasks: Sequence[Mapping[str, Any]], *, templates: Sequence[Mapping[str, Any]] = (),
             arguments: Mapping[str, str] | None = None, **dag: Any) -> dict[str, Any]:
    """A Workflow named `wf` whose entrypoint `main` is a DAG of `tasks`; `leaf` and `echo` are always there."""
    spec: dict[str, Any] = {
        "entrypoint": "main",
        "templates": [{"name": "main", "dag": {"tasks": list(tasks), **dag}}, LEAF, ECHO, *templates],
    }
    if arguments:
        spec["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in arguments.items()]}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "wf"}, "spec": spec}


def task(name: str, depends: str | None = None, template: str = "leaf", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "template": template, **extra}
    if depends is not None:
        out["depends"] = depends
    return out


def run(wf: Mapping[str, Any], table: Mapping[str, LeafOutcome | str] | None = None) -> Trace:
    return run_workflow(wf, outcomes(table or {}))


# ---------------------------------------------------------------------------------------------------------------
# Scheduling: diamond, start order
# ---------------------------------------------------------------------------------------------------------------


def test_diamond_runs_in_dependency_order_and_succeeds() -> None:
    trace = run(workflow([task("A"), task("B", "A"), task("C", "A"), task("D", "B && C")]))
    assert trace.phase == SUCCEEDED
    assert trace.phases() == {"wf": SUCCEEDED, "wf.A": SUCCEEDED, "wf.B": SUCCEEDED, "wf.C": SUCCEEDED,
                              "wf.D": SUCCEEDED}
    # B and C start together in the pass after A finished (executeDAG starts every ready task in one pass)
    assert trace.nodes["wf.B"].started_after == trace.nodes["wf.C"].started_after == {"wf.A"}
    assert {"wf.A", "wf.B", "wf.C"} <= trace.nodes["wf.D"].started_after


def test_legacy_dependencies_mean_succeeded_skipped_or_daemoned() -> None:
    # ancestry.go:getTaskDependsLogic/expandDependency: dependencies [A, B] == (A.Succeeded||A.Skipped||
    # A.Daemoned) && (B...)
    wf = workflow([task("A"), task("B", when="false"), task("C", dependencies=["A", "B"])])
    assert run(wf).phases()["wf.C"] == SUCCEEDED
    assert run(wf, {"A": FAILED}).phases()["wf.C"] == OMITTED


def test_dependency_extraction_mirrors_ancestry_go() -> None:
    tasks: dict[str, dict[str, Any]] = {
        "A": {"name": "A"}, "B-1": {"name": "B-1", "continueOn": {"failed": True}}, "C": {"name": "C"}}
    deps, logic = task_dependencies({"name": "C", "depends": "A.Succeeded || (B-1 && !A.Failed)"}, tasks)
    assert deps == ["A", "B-1"]
    assert logic == "A.Succeeded || ((B-1.Succeeded || B-1.Skipped || B-1.Daemoned || B-1.Failed) && !A.Failed)"


# ---------------------------------------------------------------------------------------------------------------
# depends: every result and operator
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_outcome", "depends", "runs"),
    [
        (SUCCEEDED, "A.Succeeded", True),
        (FAILED, "A.Succeeded", False),
        (FAILED, "A.Failed", True),
        (ERROR, "A.Failed", False),
        (ERROR, "A.Errored", True),
        (SKIPPED, "A.Skipped", True),
        (SUCCEEDED, "A.Skipped", False),
        (OMITTED, "A.Omitted", True),
        (SUCCEEDED, "A.Omitted", False),
        ("Daemoned", "A.Daemoned", True),
        (SUCCEEDED, "A.Daemoned", False),
        (SUCCEEDED, "!A.Failed", True),
        (FAILED, "!A.Failed", False),
        (FAILED, "A.Succeeded || A.Failed", True),
        (ERROR, "A.Succeeded || A.Failed", False),
        (SUCCEEDED, "A.Succeeded && !A.Skipped", True),
        (FAILED, "!(A.Succeeded || A.Errored)", True),
        (ERROR, "!(A.Succeeded || A.Errored)", False),
        (SKIPPED, "A", True),  # bare name: Succeeded || Skipped || Daemoned
        (FAILED, "A", False),
        ("Daemoned", "A", True),
    ],
)
def test_depends_result_and_operator(a_outcome: str, depends: str, runs: bool) -> None:
    """dag.go:evaluateDependsLogic over TaskResults; A is made Skipped by `when`, Omitted by a failed root."""
    tasks: list[dict[str, Any]] = [task("Z")]
    table: dict[str, LeafOutcome | str] = {}
    if a_outcome == SKIPPED:
        tasks.append(task("A", when="false"))
    elif a_outcome == OMITTED:
        tasks.append(task("A", "Z"))
        table["Z"] = FAILED
    elif a_outcome == "Daemoned":
        tasks.append(task("A"))
        table["A"] = LeafOutcome(daemoned=True)
    else:
        tasks.append(task("A"))
        table["A"] = a_outcome
    tasks.append(task("B", depends))
    phases = run(workflow(tasks), table).phases()
    assert phases["wf.A"] == (SUCCEEDED if a_outcome == "Daemoned" else a_outcome)
    assert phases["wf.B"] == (SUCCEEDED if runs else OMITTED)


def test_depends_precedence_not_and_or() -> None:
    results = {"A": dict.fromkeys(("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned",
                                   "AnySucceeded", "AllFailed"), False)}
    results["A"]["Failed"] = True
    assert eval_depends("A.Succeeded && A.Succeeded || A.Failed", results) is True
    assert eval_depends("A.Succeeded && (A.Succeeded || A.Failed)", results) is False
    assert eval_depends("!A.Succeeded && A.Failed", results) is True
    with pytest.raises(Unsupported):
        eval_depends("A.Failed and A.Failed", results)


def test_depends_waits_for_every_dependency_even_when_the_expression_is_already_decided() -> None:
    # dag.go:evaluateDependsLogic returns proceed=false while any dependency is unfulfilled
    trace = run(workflow([task("A"), task("S1"), task("S2", "S1"), task("B", "A || S2")]), {"A": SUCCEEDED})
    assert {"wf.A", "wf.S1", "wf.S2"} <= trace.nodes["wf.B"].started_after


# ---------------------------------------------------------------------------------------------------------------
# failFast, continueOn, Omitted, when, target
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_fast", [None, True, False])
def test_failed_task_fails_the_dag_but_independent_branches_still_run(fail_fast: bool | None) -> None:
    """v4 dag.go has no fail-fast check in executeDAGTask, and assessDAGPhase returns Running while any node below
    the DAG is unfulfilled, so with or without failFast every ready branch runs; the DAG fails at the end."""
    dag: dict[str, Any] = {} if fail_fast is None else {"failFast": fail_fast}
    wf = workflow([task("A"), task("B", "A"), task("X"), task("Y", "X"), task("Z", "Y")], **dag)
    trace = run(wf, {"B": FAILED})
    assert trace.phase == FAILED
    assert trace.phases() == {"wf": FAILED, "wf.A": SUCCEEDED, "wf.B": FAILED, "wf.X": SUCCEEDED,
                              "wf.Y": SUCCEEDED, "wf.Z": SUCCEEDED}


@pytest.mark.parametrize(("fail_fast", "phase"), [(True, FAILED), (False, RUNNING)])
def test_fail_fast_decides_when_a_target_is_never_created(fail_fast: bool, phase: str) -> None:
    """assessDAGPhase: a target with no node is "" — failFast continues to the next target (here Failed), without
    failFast it breaks with Running. T is never created: its argument names an output A did not produce, so
    resolveDependencyReferences requeues it for ever."""
    wf = workflow(
        [task("A"), task("T", "A.Failed", template="echo",
                         arguments={"parameters": [{"name": "message", "value": "{{tasks.A.outputs.parameters.p}}"}]}),
         task("U")],
        failFast=fail_fast,
    )
    trace = run(wf, {"A": FAILED, "U": FAILED})
    assert "wf.T" not in trace.nodes
    assert trace.phase == phase


def test_continue_on_failed_lets_dependants_run_and_keeps_the_dag_succeeded() -> None:
    wf = workflow([task("A", continueOn={"failed": True}), task("B", "A")])
    assert run(wf, {"A": FAILED}).phases() == {"wf": SUCCEEDED, "wf.A": FAILED, "wf.B": SUCCEEDED}
    # continueOn failed does not cover Error
    assert run(wf, {"A": ERROR}).phases() == {"wf": ERROR, "wf.A": ERROR, "wf.B": OMITTED}


def test_continue_on_error() -> None:
    wf = workflow([task("A", continueOn={"error": True}), task("B", "A")])
    assert run(wf, {"A": ERROR}).phases() == {"wf": SUCCEEDED, "wf.A": ERROR, "wf.B": SUCCEEDED}
    assert run(wf, {"A": FAILED}).phase == FAILED


def test_continue_on_a_target_ignores_its_failure() -> None:
    # assessDAGPhase: task.ContinuesOn(branchPhase) for target tasks
    assert run(workflow([task("A", continueOn={"failed": True})]), {"A": FAILED}).phase == SUCCEEDED


def test_continue_on_is_only_in_the_bare_name_expansion() -> None:
    """expandDependency adds .Failed only for bare names: an explicit A.Succeeded omits B. The omitted target B
    then inherits A's Failed branch (assessDAGPhase), and B has no continueOn of its own, so the DAG fails even
    though A had continueOn failed."""
    wf = workflow([task("A", continueOn={"failed": True}), task("B", "A.Succeeded")])
    assert run(wf, {"A": FAILED}).phases() == {"wf": FAILED, "wf.A": FAILED, "wf.B": OMITTED}


def test_omitted_target_inherits_the_failed_branch_phase() -> None:
    """assessDAGPhase: an omitted target takes the phase of the branch that reached it, Failed preferred."""
    trace = run(workflow([task("A"), task("B", "A")]), {"A": FAILED})
    assert trace.phases() == {"wf": FAILED, "wf.A": FAILED, "wf.B": OMITTED}


def test_omitted_chain_and_depending_on_omitted() -> None:
    wf = workflow([task("A"), task("B", "A"), task("C", "B"), task("D", "B.Omitted")])
    phases = run(wf, {"A": FAILED}).phases()
    assert phases == {"wf": FAILED, "wf.A": FAILED, "wf.B": OMITTED, "wf.C": OMITTED, "wf.D": SUCCEEDED}


def test_when_false_skips_and_dependants_of_a_skipped_task_run() -> None:
    wf = workflow([task("A", when="1 == 2"), task("B", "A"), task("C", "A.Succeeded")])
    assert run(wf).phases() == {"wf": SUCCEEDED, "wf.A": SKIPPED, "wf.B": SUCCEEDED, "wf.C": OMITTED}


def test_when_reads_outputs_status_and_exit_code_of_ancestors() -> None:
    wf = workflow([
        task("A"),
        task("yes", "A", when="{{tasks.A.outputs.parameters.answer}} == yes"),
        task("no", "A", when="{{tasks.A.outputs.parameters.answer}} != yes"),
        task("num", "A", when="{{tasks.A.exitCode}} < 1 && '{{tasks.A.status}}' == 'Succeeded'"),
        task("res", "A", when="{{tasks.A.outputs.result}} == 42"),
    ])
    table = {"A": LeafOutcome(parameters={"answer": "yes"}, exit_code="0", result="42")}
    phases = run(wf, table).phases()
    assert (phases["wf.yes"], phases["wf.no"], phases["wf.num"], phases["wf.res"]) == (
        SUCCEEDED, SKIPPED, SUCCEEDED, SUCCEEDED)


@pytest.mark.parametrize(
    ("when", "expected"),
    [("true", True), ("false", False), ("a == a", True), ("a == b", False), ("1 == 1.0", True),
     ("'1' == 1", False), ("2 > 10", False), ("foo != bar && 3 >= 3", True), ("false || !(1 == 2)", True),
     ("False == True", False), ("(a == a) && (b == c || c == c)", True)],
)
def test_when_follows_govaluate(when: str, expected: bool) -> None:
    assert should_execute(when) is expected


@pytest.mark.parametrize("when", ["a =~ b", "1 + 1 == 2", "abc", "a < b", "{{=1}}", "'2024-01-01' == x", "x-y == z"])
def test_when_outside_the_model_is_unsupported(when: str) -> None:
    with pytest.raises(Unsupported):
        should_execute(when)


def test_target_runs_only_the_targets_and_their_ancestors() -> None:
    """examples/dag-targets.yaml with target E: A, C and E run; B and D get no node."""
    wf = workflow(
        [task(n, d, template="echo", arguments={"parameters": [{"name": "message", "value": n}]})
         for n, d in [("A", None), ("B", "A"), ("C", "A"), ("D", "B && C"), ("E", "C")]],
        arguments={"target": "E"},
        target="{{workflow.parameters.target}}",
    )
    trace = run(wf)
    assert trace.phases() == {"wf": SUCCEEDED, "wf.A": SUCCEEDED, "wf.C": SUCCEEDED, "wf.E": SUCCEEDED}
    assert trace.nodes["wf.E"].inputs == {"message": "E"}


def test_target_ignores_failures_outside_the_targets_branches() -> None:
    # two targets; only their own branch phases count
    wf = workflow([task("A"), task("B", "A"), task("C")], target="B C")
    assert run(wf, {"A": FAILED}).phase == FAILED
    assert run(workflow([task("A"), task("B", "A")], target="A"), {"B": FAILED}).phases() == {
        "wf": SUCCEEDED, "wf.A": SUCCEEDED}


# ---------------------------------------------------------------------------------------------------------------
# Loops
# ---------------------------------------------------------------------------------------------------------------


def test_loop_with_one_failed_item_any_succeeded_and_all_failed() -> None:
    wf = workflow([
        task("L", template="echo", withItems=["a", "b", "c"],
             arguments={"parameters": [{"name": "message", "value": "{{item}}"}]}),
        task("any", "L.AnySucceeded"),
        task("all", "L.AllFailed"),
        task("plain", "L"),
        task("failed", "L.Failed"),
    ])
    trace = run(wf, {"L(1:b)": FAILED})
    phases = trace.phases()
    assert phases["wf.L"] == FAILED  # TaskGroup: Succeeded unless a child failed or errored
    assert (phases["wf.L(0:a)"], phases["wf.L(1:b)"], phases["wf.L(2:c)"]) == (SUCCEEDED, FAILED, SUCCEEDED)
    assert trace.nodes["wf.L(1:b)"].inputs == {"message": "b"}
    assert (phases["wf.any"], phases["wf.all"], phases["wf.plain"], phases["wf.failed"]) == (
        SUCCEEDED, OMITTED, OMITTED, SUCCEEDED)
    every = run(wf, {"L(0:a)": FAILED, "L(1:b)": FAILED, "L(2:c)": FAILED}).phases()
    assert (every["wf.any"], every["wf.all"]) == (OMITTED, SUCCEEDED)


def test_with_param_from_an_output_and_aggregated_outputs() -> None:
    wf = workflow([
        task("gen"),
        task("L", "gen", template="echo", withParam="{{tasks.gen.outputs.result}}",
             arguments={"parameters": [{"name": "message", "value": "{{item.x}}"}]}),
        task("sum", "L", template="echo",
             arguments={"parameters": [{"name": "message", "value": "{{tasks.L.outputs.parameters.out}}"}]}),
    ])

    def oracle(inv: Invocation) -> LeafOutcome:
        if inv.node == "wf.gen":
            return LeafOutcome(result='[{"x": "1"}, {"x": "2"}]')
        return LeafOutcome(parameters={"out": "v" + inv.inputs.get("message", "")})

    trace = run_workflow(wf, oracle)
    assert sorted(n for n in trace.nodes if n.startswith("wf.L(")) == ["wf.L(0:x:1)", "wf.L(1:x:2)"]
    assert trace.nodes["wf.sum"].inputs == {"message": '["v1","v2"]'}


def test_with_sequence_and_empty_loops() -> None:
    wf = workflow([task("S", withSequence={"start": "3", "end": "1"}), task("E", withSequence={"count": "0"}),
                   task("after", "E")])
    phases = run(wf).phases()
    assert [n for n in phases if n.startswith("wf.S(")] == ["wf.S(0:3)", "wf.S(1:2)", "wf.S(2:1)"]
    assert phases["wf.E"] == SKIPPED  # "Skipped, empty params"
    assert phases["wf.after"] == SUCCEEDED


def test_when_per_item_and_when_false_loop_group_succeeds() -> None:
    wf = workflow([task("L", withItems=[1, 2, 3], when="{{item}} > 1"), task("M", withItems=["a"], when="false")])
    phases = run(wf).phases()
    assert (phases["wf.L(0:1)"], phases["wf.L(1:2)"], phases["wf.L(2:3)"], phases["wf.L"]) == (
        SKIPPED, SUCCEEDED, SUCCEEDED, SUCCEEDED)
    assert (phases["wf.M(0:a)"], phases["wf.M"]) == (SKIPPED, SUCCEEDED)


# ---------------------------------------------------------------------------------------------------------------
# Nested DAGs, outputs, hooks, daemons
# ---------------------------------------------------------------------------------------------------------------

INNER = {
    "name": "inner",
    "inputs": {"parameters": [{"name": "msg"}]},
    "dag": {"tasks": [
        {"name": "x", "template": "echo", "arguments": {"parameters": [{"name": "message",
                                                                          "value": "{{inputs.parameters.msg}}"}]}},
        {"name": "y", "template": "leaf", "depends": "x"},
    ]},
    "outputs": {"parameters": [{"name": "out", "valueFrom": {"parameter": "{{tasks.x.outputs.parameters.p}}"}}]},
}


def test_nested_dag_is_a_task_with_its_own_phase_and_outputs() -> None:
    wf = workflow(
        [task("G", template="inner", arguments={"parameters": [{"name": "msg", "value": "hi"}]}),
         task("after", "G", template="echo",
              arguments={"parameters": [{"name": "message", "value": "{{tasks.G.outputs.parameters.out}}"}]})],
        templates=[INNER],
    )
    trace = run(wf, {"x": LeafOutcome(parameters={"p": "from-x"})})
    assert trace.phases() == {"wf": SUCCEEDED, "wf.G": SUCCEEDED, "wf.G.x": SUCCEEDED, "wf.G.y": SUCCEEDED,
                              "wf.after": SUCCEEDED}
    assert trace.nodes["wf.G.x"].inputs == {"message": "hi"}
    assert trace.nodes["wf.after"].inputs == {"message": "from-x"}
    assert trace.nodes["wf.G"].kind == "DAG"

    failed = run(wf, {"y": FAILED, "x": LeafOutcome(parameters={"p": "v"})})
    assert failed.phases() == {"wf": FAILED, "wf.G": FAILED, "wf.G.x": SUCCEEDED, "wf.G.y": FAILED,
                               "wf.after": OMITTED}


def test_nested_dag_missing_output_is_an_error() -> None:
    # getTemplateOutputsFromScope fails (no default) → executeTemplate marks the DAG node Error
    wf = workflow([task("G", template="inner", arguments={"parameters": [{"name": "msg", "value": "hi"}]})],
                  templates=[INNER])
    assert run(wf).phases()["wf.G"] == ERROR


def test_omitted_outer_target_takes_the_branch_phase_from_inside_a_nested_dag() -> None:
    """assessDAGPhase's BFS walks into nested DAG nodes: the outer dependants hang from the inner outbound nodes,
    so an omitted outer target inherits the phase of the inner node it hangs from, not the nested DAG's."""
    inner = {"name": "grp", "dag": {"tasks": [{"name": "f", "template": "leaf", "continueOn": {"failed": True}}]}}
    wf = workflow([task("G", template="grp"), task("O", "G.Failed")], templates=[inner])
    trace = run(wf, {"f": FAILED})
    assert trace.phases() == {"wf": FAILED, "wf.G": SUCCEEDED, "wf.G.f": FAILED, "wf.O": OMITTED}


def test_on_exit_runs_after_the_task_and_dependants_wait_for_it() -> None:
    exit_tmpl = {"name": "cleanup", "container": {"image": "busybox"}}
    wf = workflow([task("A", onExit="cleanup"), task("B", "A")], templates=[exit_tmpl])
    trace = run(wf, {"cleanup": FAILED})
    assert trace.phases() == {"wf": SUCCEEDED, "wf.A": SUCCEEDED, "wf.A.onExit": FAILED, "wf.B": SUCCEEDED}
    assert trace.nodes["wf.A.onExit"].hooked
    assert "wf.A.onExit" in trace.nodes["wf.B"].started_after  # CheckAllHooksFullfilled
    assert "wf.A" in trace.nodes["wf.A.onExit"].started_after


def test_exit_hook_arguments_see_the_task_status() -> None:
    exit_tmpl = {"name": "report", "inputs": {"parameters": [{"name": "s"}]}, "container": {"image": "busybox"}}
    hooks = {"exit": {"template": "report", "arguments": {"parameters": [{"name": "s",
                                                                           "value": "{{tasks.A.status}}"}]}}}
    trace = run(workflow([task("A", hooks=hooks)], templates=[exit_tmpl]), {"A": FAILED})
    assert trace.nodes["wf.A.onExit"].inputs == {"s": FAILED}
    assert trace.phase == FAILED


def test_no_on_exit_for_skipped_or_omitted_tasks() -> None:
    exit_tmpl = {"name": "cleanup", "container": {"image": "busybox"}}
    wf = workflow([task("A", when="false", onExit="cleanup"), task("B", "A.Succeeded", onExit="cleanup")],
                  templates=[exit_tmpl])
    assert set(run(wf).nodes) == {"wf", "wf.A", "wf.B"}


def test_daemoned_task_is_fulfilled_while_running_and_killed_to_succeeded() -> None:
    wf = workflow([task("svc"), task("client", "svc.Daemoned")])
    trace = run(wf, {"svc": LeafOutcome(daemoned=True)})
    assert trace.phases() == {"wf": SUCCEEDED, "wf.svc": SUCCEEDED, "wf.client": SUCCEEDED}
    assert "wf.svc" in trace.nodes["wf.client"].started_after


# ---------------------------------------------------------------------------------------------------------------
# Outside the model
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wf",
    [
        workflow([task("A", template="retry")], templates=[{"name": "retry", "retryStrategy": {"limit": 1},
                                                           "container": {"image": "x"}}]),
        workflow([task("A", template="s")], templates=[{"name": "s", "steps": [[{"name": "a", "template": "leaf"}]]}]),
        workflow([task("A"), task("B", template="echo",
                                  arguments={"parameters": [{"name": "message",
                                                             "value": "{{tasks.A.outputs.result}}"}]})]),
        workflow([task("A"), task("B", "A", template="echo",
                                  arguments={"parameters": [{"name": "message", "value": "{{tasks.A.id}}"}]})]),
        workflow([task("A", when="{{=true}}")]),
        workflow([task("A", "nope")]),
        workflow([task("A", hooks={"running": {"template": "leaf", "expression": "true"}})]),
    ],
    ids=["retryStrategy", "steps", "non-ancestor-ref", "node-id-ref", "expression-tag", "unknown-task",
         "lifecycle-hook"],
)
def test_unsupported(wf: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        run(wf)


def test_omitted_target_reached_from_failed_and_errored_branches_is_order_dependent() -> None:
    with pytest.raises(OrderDependent):
        run(workflow([task("A"), task("B"), task("C", "A && B")]), {"A": FAILED, "B": ERROR})


# ---------------------------------------------------------------------------------------------------------------
# Ported from Argo's own tests and examples (argoproj/argo-workflows v4.1.2)
# ---------------------------------------------------------------------------------------------------------------


def test_argo_evaluate_depends_logic_and_dag_depends_e2e() -> None:
    """workflow/controller/dag_test.go:TestEvaluateDependsLogic, examples/dag-enhanced-depends.yaml and
    test/e2e/functional_test.go:TestDAGDepends (should-execute-1/2 Succeeded, should-not-execute Omitted)."""
    wf = workflow([
        task("A"), task("B", "A"), task("C", "A"),
        task("should-execute-1", "A && (C.Succeeded || C.Failed)"),
        task("should-execute-2", "B || C"),
        task("should-not-execute", "B && C"),
        task("should-execute-3", "should-execute-2.Succeeded || should-not-execute"),
    ])
    phases = run(wf, {"C": FAILED}).phases()
    assert phases["wf.should-execute-1"] == SUCCEEDED
    assert phases["wf.should-execute-2"] == SUCCEEDED
    assert phases["wf.should-not-execute"] == OMITTED
    assert phases["wf.should-execute-3"] == SUCCEEDED
    # derived: the targets are should-execute-1 and -3, both Succeeded, so C's failure does not fail the DAG
    assert phases["wf"] == SUCCEEDED


@pytest.mark.parametrize("status", [SUCCEEDED, FAILED, SKIPPED])
def test_argo_single_dependency_and_all_evaluate_depends_logic(status: str) -> None:
    """dag_test.go:TestSingleDependency (TestSingle, depends A.<status>, is created) and
    TestAllEvaluateDependsLogic (`same.<status>` runs, `!same.<status>` does not)."""
    a = task("A", when="False == True") if status == SKIPPED else task("A")
    phases = run(workflow([a, task("TestSingle", f"A.{status}"), task("NotRun", f"!A.{status}")]),
                 {"A": status}).phases()
    assert phases["wf.TestSingle"] == SUCCEEDED
    assert phases["wf.NotRun"] == OMITTED


def test_argo_evaluate_any_all_depends_logic() -> None:
    """dag_test.go:TestEvaluateAnyAllDependsLogic: B (A.AnySucceeded) waits for the group, runs once a child
    succeeded; C (B.AllFailed) runs only when every child of B failed."""
    wf = workflow([task("A", withItems=["1", "2"]), task("B", "A.AnySucceeded", withItems=["1", "2"]),
                   task("C", "B.AllFailed")])
    phases = run(wf, {"A(0:1)": FAILED, "B(0:1)": FAILED, "B(1:2)": FAILED}).phases()
    assert (phases["wf.B"], phases["wf.C"]) == (FAILED, SUCCEEDED)
    assert run(wf, {"B(0:1)": FAILED}).phases()["wf.C"] == OMITTED
    assert run(wf, {"A(0:1)": FAILED, "A(1:2)": FAILED}).phases()["wf.B"] == OMITTED


def test_argo_depends_on_daemon_and_on_omitted() -> None:
    """dag_test.go:TestEvaluateDependsLogicWhenDaemonFailed (B depends A; A daemoned and Running: B runs) and
    TestEvaluateDependsLogicWhenTaskOmitted (B depends A.Omitted runs)."""
    assert run(workflow([task("A"), task("B", "A")]), {"A": LeafOutcome(daemoned=True)}).phases()["wf.B"] == SUCCEEDED
    omitted = run(workflow([task("Z"), task("A", "Z"), task("B", "A.Omitted")]), {"Z": FAILED}).phases()
    assert (omitted["wf.A"], omitted["wf.B"]) == (OMITTED, SUCCEEDED)


def test_argo_leaf_continue_on_and_continue_on_fail_dag() -> None:
    """dag_test.go:TestLeafContinueOn (B fails with continueOn failed: Succeeded) and
    test/e2e/functional_test.go:TestContinueOnFailDag (F Failed, P Succeeded, workflow Succeeded)."""
    leaf = run(workflow([task("A"), task("B", template="fail", dependencies=["A"], continueOn={"failed": True})],
                        templates=[{"name": "fail", "container": {"image": "busybox"}}]), {"fail": FAILED})
    assert leaf.phase == SUCCEEDED
    e2e = run(workflow([task("F", template="fail", continueOn={"failed": True}),
                        task("P", dependencies=["F"])], templates=[{"name": "fail", "container": {"image": "x"}}],
                       failFast=False), {"fail": FAILED})
    assert (e2e.phase, e2e.phases()["wf.F"], e2e.phases()["wf.P"]) == (SUCCEEDED, FAILED, SUCCEEDED)


def test_argo_dag_continue_on_fail_example() -> None:
    """examples/dag-continue-on-fail.yaml (labelled expected-failure): D (B.Failed && C) runs, G (E && F) is
    omitted, and the omitted target G takes E's Failed branch: the workflow fails."""
    wf = workflow([task("A"), task("B", "A"), task("C", "A"), task("D", "B.Failed && C"), task("E", "A"),
                   task("F", "A"), task("G", "E && F")])
    trace = run(wf, {"B": FAILED, "E": FAILED})
    assert (trace.phases()["wf.D"], trace.phases()["wf.G"], trace.phase) == (SUCCEEDED, OMITTED, FAILED)


def test_argo_dag_disable_fail_fast() -> None:
    """workflow/controller/testdata/dag-disable-fail-fast.yaml and test/e2e/expectedfailures/
    dag-disable-failFast.yaml (retryStrategy left out: C's retries all fail): failFast false, C fails, B, D, E
    still run, the workflow is Failed (dag_test.go:TestDagDisableFailFast)."""
    wf = workflow([task("A"), task("B", dependencies=["A"]), task("C", dependencies=["A"]),
                   task("D", dependencies=["B"]), task("E", dependencies=["D"])], failFast=False)
    trace = run(wf, {"C": FAILED})
    assert trace.phase == FAILED
    assert all(trace.phases()[f"wf.{n}"] == SUCCEEDED for n in "ABDE")


def test_argo_assess_phase_continue_on_expanded_task() -> None:
    """dag_test.go:TestDagAssessPhaseContinueOnExpandedTask: a loop with continueOn failed whose item 1 fails;
    whalesay (dependencies [one-will-fail], continueOn failed) runs; the workflow Succeeds."""
    num = {"name": "one-will-fail", "inputs": {"parameters": [{"name": "num"}]}, "container": {"image": "alpine"}}
    wf = workflow([task("one-will-fail", template="one-will-fail", withItems=[1, 2], continueOn={"failed": True},
                        arguments={"parameters": [{"name": "num", "value": "{{item}}"}]}),
                   task("whalesay", dependencies=["one-will-fail"], continueOn={"failed": True})], templates=[num])
    trace = run_workflow(wf, lambda inv: LeafOutcome(phase=FAILED if inv.inputs.get("num") == "1" else SUCCEEDED))
    assert (trace.phases()["wf.one-will-fail"], trace.phases()["wf.whalesay"], trace.phase) == (
        FAILED, SUCCEEDED, SUCCEEDED)


def test_argo_empty_with_param_dag() -> None:
    """dag_test.go:TestEmptyWithParamDAG: withParam of an empty list makes a Skipped node, its dependant runs,
    the workflow Succeeds."""
    wf = workflow([task("scheduler"),
                   task("children", dependencies=["scheduler"], withParam="{{tasks.scheduler.outputs.parameters.jobs}}",
                        arguments={"parameters": [{"name": "job_name", "value": "{{item.job_name}}"}]}),
                   task("postprocess", dependencies=["children"])])
    trace = run(wf, {"scheduler": LeafOutcome(parameters={"jobs": "[]"})})
    assert (trace.phases()["wf.children"], trace.phases()["wf.postprocess"], trace.phase) == (
        SKIPPED, SUCCEEDED, SUCCEEDED)


def test_argo_fails_with_param_dag() -> None:
    """dag_test.go:TestFailsWithParamDAG (retryStrategy and deadlines left out): chunk 3 of ten fails, finish is
    omitted and the workflow Fails."""
    chunk = {"name": "process", "inputs": {"parameters": [{"name": "chunk"}]}, "script": {"image": "python"}}
    wf = workflow([task("gen-tasks"),
                   task("process-tasks", dependencies=["gen-tasks"], template="process",
                        withParam="{{tasks.gen-tasks.outputs.result}}",
                        arguments={"parameters": [{"name": "chunk", "value": "{{item}}"}]}),
                   task("finish", dependencies=["process-tasks"])], templates=[chunk])

    def oracle(inv: Invocation) -> LeafOutcome:
        if inv.template == "leaf" and inv.node == "wf.gen-tasks":
            return LeafOutcome(result='["0","1","2","3","4","5","6","7","8","9"]')
        return LeafOutcome(phase=FAILED if inv.inputs.get("chunk") == "3" else SUCCEEDED)

    trace = run_workflow(wf, oracle)
    assert len([n for n in trace.nodes if n.startswith("wf.process-tasks(")]) == 10
    assert (trace.phases()["wf.process-tasks"], trace.phases()["wf.finish"], trace.phase) == (FAILED, OMITTED, FAILED)


# ---------------------------------------------------------------------------------------------------------------
# Property: deterministic, and every task starts only once its depends expression is satisfied
# ---------------------------------------------------------------------------------------------------------------

RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "AnySucceeded", "AllFailed")


@st.composite
def depends_expr(draw: st.DrawFn, earlier: Sequence[str]) -> str:
    def atom() -> str:
        name = draw(st.sampled_from(earlier))
        return name if draw(st.booleans()) else f"{name}.{draw(st.sampled_from(RESULTS))}"

    expr = atom()
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["&&", "||"]))
        right = atom()
        expr = f"({expr} {op} {right})" if draw(st.booleans()) else f"{expr} {op} {right}"
    return f"!({expr})" if draw(st.integers(0, 5)) == 0 else expr


PAIR = {
    "name": "pair",
    "inputs": {"parameters": [{"name": "message"}]},
    "dag": {"tasks": [
        {"name": "x", "template": "echo",
         "arguments": {"parameters": [{"name": "message", "value": "{{inputs.parameters.message}}"}]}},
        {"name": "y", "template": "leaf", "depends": "x"},
    ]},
    "outputs": {"parameters": [{"name": "p", "valueFrom": {"parameter": "{{tasks.x.outputs.parameters.p}}"}}]},
}


@st.composite
def random_dag(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """Random DAGs: depends expressions over every result and operator, legacy dependencies, loops, nested DAG
    tasks, continueOn, `when` and arguments reading another task's status or output parameter, failFast."""
    names = [f"t{i}" for i in range(draw(st.integers(1, 7)))]
    tasks: list[dict[str, Any]] = []
    plain: set[str] = set()  # no loop and no when: never Skipped, so their outputs may be read
    for i, name in enumerate(names):
        template = "pair" if draw(st.integers(0, 4)) == 0 else "echo"
        t: dict[str, Any] = {"name": name, "template": template,
                             "arguments": {"parameters": [{"name": "message", "value": name}]}}
        deps: list[str] = []
        if i and draw(st.booleans()):
            if draw(st.booleans()):
                deps = draw(st.lists(st.sampled_from(names[:i]), min_size=1, max_size=2, unique=True))
                t["dependencies"] = deps
            else:
                t["depends"] = draw(depends_expr(names[:i]))
        looped = draw(st.integers(0, 4)) == 0
        if looped:
            t["withItems"] = ["a", "b"]
            t["arguments"]["parameters"][0]["value"] = "{{item}}"
        if draw(st.integers(0, 5)) == 0:
            t["continueOn"] = {draw(st.sampled_from(["failed", "error"])): True}
        readable = [d for d in deps if d in plain]
        if readable and not looped and draw(st.booleans()):
            source = draw(st.sampled_from(readable))
            t["arguments"]["parameters"][0]["value"] = f"{{{{tasks.{source}.outputs.parameters.p}}}}"
        if deps or t.get("depends"):
            choices = readable or sorted(task_dependencies(t, {x["name"]: x for x in tasks})[0])
            source = draw(st.sampled_from(choices))
            kind = draw(st.integers(0, 3))
            if kind == 0:
                t["when"] = f"'{{{{tasks.{source}.status}}}}' == Succeeded || {i} > 5"
            elif kind in (1, 2) and readable:
                t["when"] = f"{{{{tasks.{draw(st.sampled_from(readable))}.outputs.parameters.p}}}} == yes"
        if not looped and "when" not in t:
            plain.add(name)
        tasks.append(t)
    keys = [*names, *[f"{n}(1:b)" for n in names], *[f"wf.{n}.y" for n in names]]
    outcome_names = draw(st.dictionaries(st.sampled_from(keys), st.sampled_from([SUCCEEDED, FAILED, ERROR]),
                                         max_size=4))
    outcome_names["salt"] = str(draw(st.integers(0, 7)))
    dag: dict[str, Any] = {}
    if draw(st.booleans()):
        dag["failFast"] = draw(st.booleans())
    return workflow(tasks, templates=[PAIR], **dag), outcome_names


def property_oracle(table: Mapping[str, str]) -> Callable[[Invocation], LeafOutcome]:
    """Phases from the table; every pod outputs p, yes or no depending on its name, input and the table's salt."""
    salt = int(table.get("salt", "0"))

    def oracle(inv: Invocation) -> LeafOutcome:
        phase = table.get(inv.node, table.get(inv.node.rsplit(".", 1)[-1], SUCCEEDED))
        total = sum(map(ord, inv.node + inv.inputs.get("message", "")))
        answer = "yes" if ((total >> salt % 3) + salt) % 2 else "no"
        return LeafOutcome(phase=phase, parameters={"p": answer})

    return oracle


def _results_for(trace: Trace, node_name: str) -> dict[str, bool]:
    """TaskResults computed from the trace, independently of the model's own evaluator."""
    rec = trace.nodes[node_name]
    children = [r for n, r in trace.nodes.items() if re.fullmatch(re.escape(node_name) + r"\(\d+:[^()]*\)", n)]
    return {
        "Succeeded": rec.phase == SUCCEEDED, "Failed": rec.phase == FAILED, "Errored": rec.phase == ERROR,
        "Skipped": rec.phase == SKIPPED, "Omitted": rec.phase == OMITTED, "Daemoned": False,
        "AnySucceeded": any(c.phase == SUCCEEDED for c in children) if rec.kind == "TaskGroup" else False,
        "AllFailed": bool(children) and all(c.phase == FAILED for c in children) if rec.kind == "TaskGroup"
        else False,
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_dag())
def test_property_deterministic_and_starts_only_after_depends_hold(case: tuple[dict[str, Any], dict[str, str]]
                                                                   ) -> None:
    wf, table = case
    oracle = property_oracle(table)
    try:
        first = run_workflow(wf, oracle)
    except OrderDependent:
        with pytest.raises(OrderDependent):
            run_workflow(wf, oracle)
        return
    assert run_workflow(wf, oracle) == first
    tasks = {t["name"]: t for t in wf["spec"]["templates"][0]["dag"]["tasks"]}
    for name, spec in tasks.items():
        node_name = f"wf.{name}"
        if node_name not in first.nodes:
            continue
        deps, logic = task_dependencies(spec, tasks)
        record = first.nodes[node_name]
        assert {f"wf.{d}" for d in deps} <= record.started_after, f"{name} started before its dependencies"
        if logic:
            results = {d.replace("-", "_"): _results_for(first, f"wf.{d}") for d in deps}
            assert eval_depends(logic.replace("-", "_"), results) is (record.phase != OMITTED)
        message = spec["arguments"]["parameters"][0]["value"]
        if record.kind in ("Pod", "DAG") and record.phase != SKIPPED:
            if message.startswith("{{tasks."):
                source = message.split(".")[1]
                assert record.inputs == {"message": first.nodes[f"wf.{source}"].outputs["p"]}
            else:
                assert record.inputs == {"message": name}
        for child_name, child in first.nodes.items():
            item = re.fullmatch(re.escape(node_name) + r"\(\d+:([ab])\)", child_name)
            if item and child.kind in ("Pod", "DAG"):
                assert child.inputs == {"message": item.group(1)}
    assert first.phase in (SUCCEEDED, FAILED, ERROR, RUNNING)


# ---------------------------------------------------------------------------------------------------------------
# What a nested DAG boundary changes: facts of Argo's semantics that issue 13's split has to respect
# ---------------------------------------------------------------------------------------------------------------


def group(name: str, tasks: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]] = (),
          **dag: Any) -> dict[str, Any]:
    template: dict[str, Any] = {"name": name, "dag": {"tasks": list(tasks), **dag}}
    if outputs:
        template["outputs"] = {"parameters": list(outputs)}
    return template


def test_boundary_an_omitted_group_leaves_its_tasks_without_nodes() -> None:
    """Flat, B is an Omitted node. Behind a group that is omitted as a whole, B gets no node at all: Omitted
    (and Skipped) come only from depends (and when) evaluated inside the same DAG."""
    flat = run(workflow([task("A"), task("B", "A")]), {"A": FAILED})
    assert flat.phases() == {"wf": FAILED, "wf.A": FAILED, "wf.B": OMITTED}
    split = run(workflow([task("g1", template="p1"), task("g2", "g1", template="p2")],
                         templates=[group("p1", [task("A")]), group("p2", [task("B")])]), {"A": FAILED})
    assert split.phases() == {"wf": FAILED, "wf.g1": FAILED, "wf.g1.A": FAILED, "wf.g2": OMITTED}


def test_boundary_a_group_fails_on_its_own_leaves() -> None:
    """assessDAGPhase counts only the DAG's targets. Flat, A's failure is handled by B (A.Failed) and the DAG
    succeeds; as the leaf of its group A fails the group, so the outer edge must accept the group's failure."""
    flat = run(workflow([task("A"), task("B", "A.Failed")]), {"A": FAILED})
    assert flat.phase == SUCCEEDED
    split = run(workflow([task("g1", template="p1"), task("g2", "g1", template="p2")],
                         templates=[group("p1", [task("A")]), group("p2", [task("B")])]), {"A": FAILED})
    assert (split.phases()["wf.g1"], split.phases()["wf.g2"], split.phase) == (FAILED, OMITTED, FAILED)


def test_boundary_group_outputs_exist_only_when_the_group_succeeds() -> None:
    """executeDAG resolves outputs.parameters only on Succeeded: a value read from a failed task behind a failed
    group is never there, so the reader requeues for ever (flat, it runs with the value)."""
    def reader(name: str, depends: str, ref: str) -> dict[str, Any]:
        return task(name, depends, template="echo", arguments={"parameters": [{"name": "message", "value": ref}]})

    table = {"A": LeafOutcome(phase=FAILED, parameters={"p": "v"})}
    flat = run(workflow([task("A"), reader("B", "A.Failed", "{{tasks.A.outputs.parameters.p}}")]), table)
    assert (flat.phase, flat.nodes["wf.B"].inputs) == (SUCCEEDED, {"message": "v"})
    split_b = reader("B", "g1.Failed", "{{tasks.g1.outputs.parameters.p}}")
    out = [{"name": "p", "valueFrom": {"parameter": "{{tasks.A.outputs.parameters.p}}"}}]
    split = run(workflow([task("g1", template="p1"), split_b], templates=[group("p1", [task("A")], out)]), table)
    assert "wf.B" not in split.nodes
    assert split.phase == RUNNING


def test_boundary_daemons_are_killed_when_their_group_completes() -> None:
    """killDaemonedChildren runs when the daemon's own DAG is fulfilled: a daemon in an earlier group is gone
    (Succeeded) before a later group's client starts; flat, it serves the client."""
    table = {"svc": LeafOutcome(daemoned=True)}
    flat = run(workflow([task("svc"), task("client", "svc")]), table)
    assert flat.nodes["wf.client"].daemons_running == {"wf.svc"}
    split = run(workflow([task("g1", template="p1"), task("client", "g1")], templates=[group("p1", [task("svc")])]),
                table)
    assert split.nodes["wf.client"].daemons_running == frozenset()


def test_boundary_node_names_gain_the_group_and_targets_do_not_cross() -> None:
    """dagContext.taskNodeName is `<boundary>.<task>`, so names (and the ids hashed from them, and the onExit
    node `<task node>.onExit`) change; a DAG's `target` restricts only its own tasks: a group runs all of its
    leaves unless given its own target."""
    exit_tmpl = {"name": "cleanup", "container": {"image": "busybox"}}
    split = run(workflow([task("g1", template="p1")], templates=[
        exit_tmpl, group("p1", [task("A", onExit="cleanup"), task("B", "A"), task("C", "A")])]))
    assert set(split.nodes) == {"wf", "wf.g1", "wf.g1.A", "wf.g1.A.onExit", "wf.g1.B", "wf.g1.C"}
    flat = run(workflow([task("A"), task("B", "A"), task("C", "A")], target="B"))
    assert set(flat.nodes) == {"wf", "wf.A", "wf.B"}


def test_dag_output_error_leaves_no_outbound_nodes() -> None:
    """executeDAG returns the outputs error before setting OutboundNodes: a dependant of the Error DAG runs but
    hangs from no node, so the outer assessDAGPhase never reaches it and the workflow stays Running (as the Go
    code reads; most likely an Argo bug, but it is what a split must not newly expose)."""
    wf = workflow([task("G", template="inner", arguments={"parameters": [{"name": "msg", "value": "hi"}]}),
                   task("after", "G.Errored")], templates=[INNER])
    trace = run(wf)
    assert (trace.phases()["wf.G"], trace.phases()["wf.after"], trace.phase) == (ERROR, SUCCEEDED, RUNNING)


def test_renamed_maps_a_grouped_trace_onto_the_flat_names() -> None:
    flat = run(workflow([task("A"), task("B", "A")]))
    grouped = run(workflow([task("g1", template="p1"), task("g2", "g1", template="p2")],
                           templates=[group("p1", [task("A")]), group("p2", [task("B")])]))

    def strip(name: str) -> str | None:
        parts = name.split(".")
        return None if len(parts) == 2 else ".".join([parts[0], *parts[2:]])

    view = renamed(grouped, strip)
    assert view.phases() == flat.phases()
    assert view.nodes["wf.B"].started_after == flat.nodes["wf.B"].started_after == {"wf.A"}
