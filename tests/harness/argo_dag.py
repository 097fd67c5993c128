"""An executable model of Argo Workflows' DAG semantics, written from Argo's Go source (v4.0.10 and v4.1.2).

Why it exists: issue 13 splits DAGs over Argo 4's 200-task limit into nested DAG groups, and the split must keep the
meaning of every workflow exactly. This model is the referee: run the original and the split workflow through it
with the same task outcomes and compare the traces. It is written from `workflow/controller/dag.go`,
`workflow/common/ancestry.go` and the code they call, never from the split code, and imports nothing from wfboost.

Every rule below names the Go function it mirrors as `[file:function]` (tag v4.1.2 unless said otherwise; the DAG
code paths modelled here are the same at v4.0.10, whose differences are refactors: the scope keys became
`varkeys` helpers, error wrapping changed, and `GetTaskDependencies` is cached per operation).

How it runs: the controller's `operate` is modelled as a sequence of passes. In a pass the entrypoint is executed
as `executeTemplate` does, which walks each DAG as `executeDAG` does (targets first, recursing upwards through
dependencies, every task whose dependencies are fulfilled starts in that same pass, as in Argo). Between passes
every pod created in an earlier pass finishes with the outcome the oracle gives for it (pod reconciliation), so
the model is deterministic without relying on an order Argo does not guarantee. In the modelled subset the
resulting phases do not depend on that timing: in v4 `failFast` does not stop ready tasks from being created
(`assessDAGPhase` returns Running as soon as any node under the DAG is unfulfilled, and nothing in
`executeDAGTask` checks failFast), so it only changes the DAG's phase when a target task was never created
(maintainers confirmed this reading and kept it: argoproj/argo-workflows #5223, #5227; #10312 is still open).
The run stops when the entrypoint node is fulfilled, or when a pass changes nothing (Argo would hang; the
workflow phase is then reported as Running). The entrypoint node is named after the workflow (`metadata.name`,
else `generateName` without its trailing dash), so task nodes are `wf.task`, `wf.group.task`, `wf.loop(0:a)`.

Modelled:
- `depends` with `.Succeeded .Failed .Errored .Skipped .Omitted .Daemoned .AnySucceeded .AllFailed`, bare task
  names (expanded as `expandDependency` does, including the task's `continueOn`), `!`, `&&`, `||`, parentheses;
  the legacy `dependencies` list; `-` in names becoming `_` for evaluation.
- Omitted tasks (depends false), `when` false (Skipped), `continueOn` (in dependants' bare-name expansion and for
  target tasks in `assessDAGPhase`), `failFast` (default true), `target` (space separated), the default targets
  (leaf tasks, sorted), the branch-phase BFS that gives omitted targets the phase of their branch.
- Loops: `withItems` (strings, numbers, booleans, maps), `withParam` (a JSON list after substitution),
  `withSequence` (`count`/`start`/`end`, no `format`); the TaskGroup node and its aggregated phase; node names
  `task(i:item)`; an empty list gives a Skipped node; aggregated `tasks.X.outputs.parameters.p`.
- Nested DAG templates as tasks: their own phase decided by their own `assessDAGPhase`; their outputs
  `outputs.parameters[].valueFrom.parameter` (and `default`) resolved from their tasks when they succeed.
- Task `onExit` and `hooks.exit` (a node `<task node>.onExit`, hooked, a child of the task node; dependants wait
  for it); daemoned tasks (fulfilled while Running, `.Daemoned`, killed to Succeeded when their DAG completes).
- Substitution of `{{workflow.parameters.x}}`, `{{inputs.parameters.x}}`, `{{item}}`, `{{item.k}}` and of
  `{{tasks.X.outputs.parameters.p}}`, `{{tasks.X.outputs.result}}`, `{{tasks.X.status}}`, `{{tasks.X.exitCode}}`
  for ancestors X (a missing value requeues: the task waits, as `ReplaceStrictAny` makes it).
- `when` after substitution, as govaluate evaluates it in `shouldExecute`: `==`, `!=`, `<`, `<=`, `>`, `>=` on
  numbers, `==`/`!=` on strings and booleans, `&&`, `||`, `!`, parentheses; bare words are strings.

Use: `run_workflow(workflow, oracle)` gives a `Trace`; `outcomes({...})` builds an oracle from a table;
`renamed(trace, rename)` maps a split workflow's node names back onto the original's for comparison.

Raises `Unsupported` (the model cannot be exact there, so it refuses rather than guess): steps templates,
templateRef and inline templates, retryStrategy, parallelism, memoize, template-level failFast, timeouts and
deadlines, non-exit lifecycle hooks, hooks with expressions, workflow `onExit`, expression tags `{{=...}}`,
`valueFrom.expression`, artifacts, references to `tasks.X.id/.ip/.startedAt/.finishedAt/.hostNodeName`, to a
non-ancestor task, or to outputs of a skipped/omitted task, any `depends` or `when` syntax beyond the above, and
the order-dependent case where an omitted target is reached both from a Failed and an Errored branch (Argo's
answer then depends on the order in which nodes were linked, which Go's map iteration leaves unspecified).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SUCCEEDED = "Succeeded"
FAILED = "Failed"
ERROR = "Error"
SKIPPED = "Skipped"
OMITTED = "Omitted"
RUNNING = "Running"
PENDING = "Pending"

LEAF_PHASES = (SUCCEEDED, FAILED, ERROR)


class Unsupported(Exception):
    """The workflow uses something this model does not reproduce exactly."""


class OrderDependent(Unsupported):
    """Argo's result depends on an order its code leaves unspecified (Go map iteration)."""


@dataclass(frozen=True)
class Invocation:
    """One leaf pod the controller would create: its node name, template and input parameter values."""

    node: str
    template: str
    inputs: Mapping[str, str]


@dataclass(frozen=True)
class LeafOutcome:
    """What a leaf pod ends with. `daemoned` pods stay Running and fulfilled until their DAG completes."""

    phase: str = SUCCEEDED
    daemoned: bool = False
    parameters: Mapping[str, str] = field(default_factory=dict)
    result: str | None = None
    exit_code: str | None = None


Oracle = Callable[[Invocation], LeafOutcome]


@dataclass(frozen=True)
class NodeRecord:
    """A node of the trace: its final phase, the inputs it ran with, and what was fulfilled when it was created."""

    name: str
    kind: str  # Pod, DAG, TaskGroup, Skipped
    template: str
    phase: str
    inputs: Mapping[str, str]
    started_after: frozenset[str]
    hooked: bool
    outputs: Mapping[str, str]
    daemons_running: frozenset[str] = frozenset()  # daemoned pods alive when this node was created


@dataclass(frozen=True)
class Trace:
    """The model's answer: every node by full name, and the workflow's phase."""

    nodes: Mapping[str, NodeRecord]
    phase: str
    passes: int

    def phases(self) -> dict[str, str]:
        """Node name to final phase, for compact assertions."""
        return {name: rec.phase for name, rec in self.nodes.items()}


# --------------------------------------------------------------------------------------------------------------
# Node store
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Node:
    name: str
    kind: str
    phase: str
    boundary: str
    template: str
    inputs: dict[str, str]
    started_after: frozenset[str]
    created_pass: int
    daemons_running: frozenset[str] = frozenset()
    children: list[str] = field(default_factory=list)
    outbound: list[str] = field(default_factory=list)
    daemoned: bool = False
    hooked: bool = False
    parameters: dict[str, str] | None = None
    result: str | None = None
    exit_code: str | None = None
    pending: LeafOutcome | None = None
    message: str = ""

    def fulfilled(self) -> bool:
        """[pkg/apis/workflow/v1alpha1/workflow_types.go:NodeStatus.Fulfilled] completed, skipped, omitted, or a
        daemon that is past Pending."""
        return self.phase_fulfilled() or (self.daemoned and self.phase != PENDING)

    def phase_fulfilled(self) -> bool:
        """[workflow_types.go:NodePhase.Fulfilled] the phase alone (a running daemon is not phase-fulfilled)."""
        return self.completed() or self.phase in (SKIPPED, OMITTED)

    def completed(self) -> bool:
        """[workflow_types.go:NodePhase.Completed] Succeeded, Failed or Error; Skipped and Omitted are not."""
        return self.phase in LEAF_PHASES


class _Requeue(Exception):
    """[dag.go:resolveDependencyReferences] a tasks.* reference is missing: ErrRequeue, the task waits."""


def _is_failed_or_error(phase: str) -> bool:
    """[workflow_types.go:NodePhase.FailedOrError]"""
    return phase in (FAILED, ERROR)


# --------------------------------------------------------------------------------------------------------------
# depends: dependency extraction and expansion [workflow/common/ancestry.go]
# --------------------------------------------------------------------------------------------------------------

# [ancestry.go:taskNameRegex] the same alternation: Task.Result first, else a bare task name.
_TASK_NAME_RE = re.compile(r"([a-zA-Z0-9][-a-zA-Z0-9]*?\.[A-Z][a-zA-Z]+)|([a-zA-Z0-9][-a-zA-Z0-9]*)")
_RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed")


def expand_dependency(dep_name: str, dep_task: Mapping[str, Any]) -> str:
    """[ancestry.go:expandDependency] a bare name means Succeeded, Skipped or Daemoned, plus Errored/Failed when
    that dependency has continueOn error/failed."""
    results = [f"{dep_name}.Succeeded", f"{dep_name}.Skipped", f"{dep_name}.Daemoned"]
    continue_on = dep_task.get("continueOn") or {}
    if continue_on.get("error"):
        results.append(f"{dep_name}.Errored")
    if continue_on.get("failed"):
        results.append(f"{dep_name}.Failed")
    return "(" + " || ".join(results) + ")"


def task_depends_logic(task: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """[ancestry.go:getTaskDependsLogic] `depends` wins; else `dependencies` joined with && after expansion."""
    depends = task.get("depends") or ""
    if depends:
        return str(depends)
    parts = [expand_dependency(dep, _task_or_raise(tasks, dep)) for dep in task.get("dependencies") or []]
    return " && ".join(parts)


def task_dependencies(task: Mapping[str, Any], tasks: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], str]:
    """[ancestry.go:GetTaskDependencies] the tasks named in the depends logic, and the logic with every bare name
    expanded (right to left so indexes stay valid)."""
    depends = task_depends_logic(task, tasks)
    deps: dict[str, None] = {}
    bare: list[tuple[int, int, str]] = []
    for match in _TASK_NAME_RE.finditer(depends):
        if match.group(1) is not None:
            name, result = match.group(1).split(".", 1)
            if result not in _RESULTS:
                # [ancestry.go:ValidateTaskResults] rejected at submission
                raise Unsupported(f"task result {result!r} for task {name!r} is invalid")
            deps[name] = None
        else:
            name = match.group(2)
            deps[name] = None
            bare.append((match.start(2), match.end(2), name))
    for name in deps:
        _task_or_raise(tasks, name)
    for start, end, name in sorted(bare, reverse=True):
        depends = depends[:start] + expand_dependency(name, tasks[name]) + depends[end:]
    # Go collects the names from a map (random order); sorted here so the model never depends on that order.
    return sorted(deps), depends


def _task_or_raise(tasks: Mapping[str, Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    """[dag.go:dagContext.GetTask] panics for an unknown task; validation refuses such a workflow first."""
    if name not in tasks:
        raise Unsupported(f"depends names {name!r}, which is not a task of this DAG")
    return tasks[name]


def task_ancestry(name: str, deps_of: Callable[[str], list[str]]) -> list[str]:
    """[ancestry.go:GetTaskAncestry] every transitive dependency (Go orders them by finish time; only the set
    matters for the scope, since each ancestor contributes its own keys)."""
    seen: set[str] = set()
    order: list[str] = []

    def visit(current: str) -> None:
        if current in seen:
            return
        seen.add(current)
        for dep in deps_of(current):
            visit(dep)
        if current != name:
            order.append(current)

    visit(name)
    return sorted(order)


# --------------------------------------------------------------------------------------------------------------
# The depends evaluator: expr-lang (argoexpr.EvalBool) over TaskResults, restricted to ! && || ( )
# --------------------------------------------------------------------------------------------------------------

_DEPENDS_TOKEN = re.compile(r"\s*(?:(\(|\)|!|&&|\|\|)|([A-Za-z0-9_]+)\.([A-Za-z]+)|(\S))")


def _depends_tokens(logic: str) -> list[str]:
    """[argoexpr.EvalBool → expr-lang lexer] only the tokens the modelled subset needs; `and`, `or`, `not`,
    comparisons and literals are refused (GetTaskDependencies would even take `and` for a task name)."""
    tokens: list[str] = []
    pos = 0
    while pos < len(logic):
        if logic[pos:].strip() == "":
            break
        match = _DEPENDS_TOKEN.match(logic, pos)
        if match is None or match.group(4) is not None:
            raise Unsupported(f"depends syntax beyond ! && || ( ) Task.Result: {logic!r}")
        tokens.append(match.group(1) or f"{match.group(2)}.{match.group(3)}")
        pos = match.end()
    return tokens


def eval_depends(logic: str, results: Mapping[str, Mapping[str, bool]]) -> bool:
    """[dag.go:evaluateDependsLogic → util/expr/argoexpr/eval.go:EvalBool] `!` binds tightest, then `&&`, then
    `||`, as in expr-lang. `results` is keyed by task name with `-` already replaced by `_`."""
    tokens = _depends_tokens(logic)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise Unsupported(f"depends expression ends early: {logic!r}")
        pos += 1
        return tokens[pos - 1]

    def or_expr() -> bool:
        value = and_expr()
        while peek() == "||":
            take()
            right = and_expr()
            value = value or right
        return value

    def and_expr() -> bool:
        value = unary()
        while peek() == "&&":
            take()
            right = unary()
            value = value and right
        return value

    def unary() -> bool:
        token = take()
        if token == "!":
            return not unary()
        if token == "(":
            value = or_expr()
            if take() != ")":
                raise Unsupported(f"unbalanced parentheses in depends: {logic!r}")
            return value
        if token in (")", "&&", "||"):
            raise Unsupported(f"depends syntax error: {logic!r}")
        name, result = token.split(".", 1)
        if name not in results or result not in _RESULTS:
            raise Unsupported(f"depends refers to unknown {token!r}")
        return results[name][result]

    value = or_expr()
    if pos != len(tokens):
        raise Unsupported(f"depends syntax error: {logic!r}")
    return value


# --------------------------------------------------------------------------------------------------------------
# `when`: govaluate as used by shouldExecute [workflow/controller/steps.go:shouldExecute]
# --------------------------------------------------------------------------------------------------------------

_WHEN_TOKEN = re.compile(
    r"\s*(?:(==|!=|<=|>=|<|>|&&|\|\||!|\(|\))"  # operators
    r"|(\d+(?:\.\d+)?)(?![A-Za-z0-9_.])"  # numbers (float64 in govaluate)
    r"|\"([^\"\\]*)\"|'([^'\\]*)'"  # string literals
    r"|([A-Za-z_][A-Za-z0-9_.]*)"  # variables, which shouldExecute turns into strings; true/false are booleans
    r"|(\S))"
)
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}|^\d{1,2}:\d{2}")

WhenValue = bool | float | str


def _when_tokens(when: str) -> list[tuple[str, WhenValue]]:
    """[steps.go:shouldExecute → govaluate lexer] numbers are float64, quoted strings are strings, `true`/`false`
    booleans, and every VARIABLE token is turned into a STRING by shouldExecute; anything else is refused."""
    tokens: list[tuple[str, WhenValue]] = []
    pos = 0
    while pos < len(when) and when[pos:].strip():
        match = _WHEN_TOKEN.match(when, pos)
        if match is None or match.group(6) is not None:
            raise Unsupported(f"'when' syntax beyond the modelled govaluate subset: {when!r}")
        op, number, dq, sq, word = match.group(1, 2, 3, 4, 5)
        if op is not None:
            tokens.append(("op", op))
        elif number is not None:
            tokens.append(("lit", float(number)))
        elif dq is not None or sq is not None:
            text = dq if dq is not None else sq
            assert text is not None
            if _DATE_LIKE.match(text):
                # govaluate parses a quoted string that looks like a date as a time value
                raise Unsupported(f"date-like string literal in 'when': {text!r}")
            tokens.append(("lit", text))
        else:
            assert word is not None
            tokens.append(("lit", {"true": True, "false": False}.get(word, word)))
        pos = match.end()
    return tokens


def should_execute(when: str) -> bool:
    """[steps.go:shouldExecute] an empty `when` runs; otherwise the substituted expression must be a boolean.
    Comparators bind tighter than `&&`, which binds tighter than `||` (govaluate's precedence)."""
    if when == "":
        return True
    if "{{" in when:
        raise Unsupported(f"'when' still holds an unresolved tag: {when!r}")
    tokens = _when_tokens(when)
    pos = 0

    def peek() -> str | None:
        return str(tokens[pos][1]) if pos < len(tokens) and tokens[pos][0] == "op" else None

    def take() -> tuple[str, WhenValue]:
        nonlocal pos
        if pos >= len(tokens):
            raise Unsupported(f"'when' ends early: {when!r}")
        pos += 1
        return tokens[pos - 1]

    def logical(value: WhenValue) -> bool:
        if not isinstance(value, bool):
            raise Unsupported(f"non-boolean operand of && / || / ! in 'when': {when!r}")
        return value

    def or_expr() -> WhenValue:
        value = and_expr()
        while peek() == "||":
            take()
            right = and_expr()
            value = logical(value) or logical(right)
        return value

    def and_expr() -> WhenValue:
        value = comparison()
        while peek() == "&&":
            take()
            right = comparison()
            value = logical(value) and logical(right)
        return value

    def comparison() -> WhenValue:
        left = unary()
        op = peek()
        if op not in ("==", "!=", "<", "<=", ">", ">="):
            return left
        take()
        right = unary()
        if peek() in ("==", "!=", "<", "<=", ">", ">="):
            raise Unsupported(f"chained comparison in 'when': {when!r}")
        if op in ("==", "!="):
            # govaluate: reflect.DeepEqual, so values of different types are never equal
            same = type(left) is type(right) and left == right
            return same if op == "==" else not same
        if not (isinstance(left, float) and isinstance(right, float)):
            raise Unsupported(f"ordering comparison of non-numbers in 'when': {when!r}")
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]

    def unary() -> WhenValue:
        kind, value = take()
        if kind == "op" and value == "!":
            return not logical(unary())
        if kind == "op" and value == "(":
            inner = or_expr()
            if take() != ("op", ")"):
                raise Unsupported(f"unbalanced parentheses in 'when': {when!r}")
            return inner
        if kind == "op":
            raise Unsupported(f"'when' syntax error: {when!r}")
        return value

    result = or_expr()
    if pos != len(tokens):
        raise Unsupported(f"'when' syntax error: {when!r}")
    if not isinstance(result, bool):
        # [steps.go:shouldExecute] "Expected boolean evaluation"; the task would be an Error node
        raise Unsupported(f"'when' does not evaluate to a boolean: {when!r}")
    return result


# --------------------------------------------------------------------------------------------------------------
# Substitution [util/template: Replace / ReplaceStrictAny with strict prefixes tasks, steps]
# --------------------------------------------------------------------------------------------------------------

_TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_TASK_REF = re.compile(
    r"^tasks\.([a-zA-Z0-9][-a-zA-Z0-9]*)\.(status|exitCode|outputs\.result|outputs\.parameters\.[-\w]+|"
    r"id|ip|startedAt|finishedAt|hostNodeName|outputs\.parameters|outputs\.artifacts\.[-\w]+)$"
)


def substitute(text: str, values: Mapping[str, str], *, strict_prefixes: Sequence[str] = (), leave: Sequence[str] = ()
               ) -> str:
    """Replace `{{name}}` tags found in `values`. A tag under a strict prefix that is missing raises _Requeue
    ([dag.go:resolveDependencyReferences] ReplaceStrictAny). Tags under `leave` stay for a later stage (Argo's
    non-strict replace leaves them). Anything else is outside the model."""

    def replace(match: re.Match[str]) -> str:
        tag = match.group(1)
        if tag.startswith("="):
            raise Unsupported(f"expression tag {{{{{tag}}}}}")
        if tag in values:
            return values[tag]
        if any(tag == p or tag.startswith(p + ".") for p in strict_prefixes):
            raise _Requeue(tag)
        if any(tag == p or tag.startswith(p + ".") for p in leave):
            return match.group(0)
        raise Unsupported(f"reference {{{{{tag}}}}} is outside the model")

    return _TAG.sub(replace, text)


def _deep_substitute(value: Any, values: Mapping[str, str], leave: Sequence[str]) -> Any:
    """[util/template:Replace via common.SubstituteParams / processItem] substitute through a YAML-shaped value:
    Argo marshals the template to JSON and replaces in that string."""
    if isinstance(value, str):
        return substitute(value, values, leave=leave)
    if isinstance(value, list):
        return [_deep_substitute(v, values, leave) for v in value]
    if isinstance(value, dict):
        return {k: _deep_substitute(v, values, leave) for k, v in value.items()}
    return value


def _scalar(value: Any) -> str:
    """[pkg/apis/workflow/v1alpha1/anystring.go:AnyString] strings as is, numbers and booleans in JSON form."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


# --------------------------------------------------------------------------------------------------------------
# The workflow model
# --------------------------------------------------------------------------------------------------------------

_UNSUPPORTED_TEMPLATE_KEYS = (
    "steps", "retryStrategy", "parallelism", "memoize", "failFast", "timeout", "activeDeadlineSeconds",
    "synchronization", "templateRef", "inline",
)
_UNSUPPORTED_TASK_KEYS = ("templateRef", "inline")


@dataclass
class _DagContext:
    """[dag.go:dagContext] the boundary node, its tasks, and per-pass caches."""

    boundary: str
    tasks: dict[str, dict[str, Any]]
    template: dict[str, Any]
    visited: set[str] = field(default_factory=set)
    deps: dict[str, tuple[list[str], str]] = field(default_factory=dict)

    def task_node_name(self, task_name: str) -> str:
        """[dag.go:dagContext.taskNodeName] `<boundary>.<task>`: nested DAGs give dotted paths."""
        return f"{self.boundary}.{task_name}"

    def dependencies(self, task_name: str) -> list[str]:
        """[dag.go:dagContext.GetTaskDependencies]"""
        return self._resolve(task_name)[0]

    def depends_logic(self, task_name: str) -> str:
        """[dag.go:dagContext.GetTaskDependsLogic]"""
        return self._resolve(task_name)[1]

    def _resolve(self, task_name: str) -> tuple[list[str], str]:
        """[dag.go:dagContext.resolveDependencies]"""
        if task_name not in self.deps:
            self.deps[task_name] = task_dependencies(self.tasks[task_name], self.tasks)
        return self.deps[task_name]


class _Model:
    def __init__(self, workflow: Mapping[str, Any], oracle: Oracle) -> None:
        spec = workflow.get("spec", workflow)
        meta = workflow.get("metadata") or {}
        self.name = str(meta.get("name") or meta.get("generateName") or "wf").rstrip("-") or "wf"
        self.oracle = oracle
        for key in ("onExit", "parallelism", "hooks", "templateDefaults", "activeDeadlineSeconds"):
            if spec.get(key):
                raise Unsupported(f"workflow spec.{key}")
        args = (spec.get("arguments") or {}).get("parameters") or []
        self.workflow_args: dict[str, str] = {}
        for param in args:
            if "value" not in param:
                raise Unsupported(f"workflow parameter {param.get('name')!r} without a value")
            self.workflow_args[str(param["name"])] = _scalar(param["value"])
        # [operator.go:operate → setGlobalParameters] substituted into DAG templates together with their inputs
        self.global_values = {f"workflow.parameters.{k}": v for k, v in self.workflow_args.items()}
        self.templates: dict[str, dict[str, Any]] = {str(t["name"]): t for t in spec.get("templates") or []}
        self.entrypoint = str(spec.get("entrypoint") or "")
        if self.entrypoint not in self.templates:
            raise Unsupported(f"entrypoint {self.entrypoint!r} is not a template of the workflow")
        if "dag" not in self.templates[self.entrypoint]:
            raise Unsupported("the entrypoint is not a DAG template")
        self.nodes: dict[str, _Node] = {}
        self.pass_no = 0
        self.changed = False

    # -- node store ---------------------------------------------------------------------------------------------

    def _fulfilled_names(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes.values() if n.fulfilled())

    def _init_node(self, name: str, kind: str, phase: str, boundary: str, template: str,
                   inputs: Mapping[str, str] | None = None, hooked: bool = False) -> _Node:
        """[operator.go:initializeNode] records the node; started_after is what was fulfilled at that moment."""
        if name in self.nodes:
            raise AssertionError(f"node {name} initialised twice")
        node = _Node(name=name, kind=kind, phase=phase, boundary=boundary, template=template,
                     inputs=dict(inputs or {}), started_after=self._fulfilled_names(), created_pass=self.pass_no,
                     hooked=hooked,
                     daemons_running=frozenset(n.name for n in self.nodes.values()
                                               if n.daemoned and n.phase == RUNNING))
        self.nodes[name] = node
        self.changed = True
        return node

    def _mark_phase(self, node: _Node, phase: str) -> None:
        """[operator.go:markNodePhase]"""
        if node.phase != phase:
            node.phase = phase
            self.changed = True

    def _add_child(self, parent: str, child: str) -> None:
        """[operator.go:addChildNode] children are kept in insertion order; duplicates are ignored."""
        children = self.nodes[parent].children
        if child not in children:
            children.append(child)
            self.changed = True

    def _outbound(self, name: str) -> list[str]:
        """[operator.go:getOutboundNodes] a pod or skipped node is its own outbound node; a TaskGroup's are its
        children's; a DAG's are the outbound nodes of its targets, set when it completes."""
        node = self.nodes[name]
        if node.kind in ("Pod", "Skipped"):
            return [name]
        if node.kind == "TaskGroup":
            if not node.children:
                return [name]
            return [o for child in node.children for o in self._outbound(child)]
        return [o for out in node.outbound for o in self._outbound(out)]

    # -- passes ------------------------------------------------------------------------------------------------

    def run(self, max_passes: int = 10_000) -> Trace:
        """[operator.go:operate] one executeTemplate of the entrypoint per pass, until it is fulfilled or stuck."""
        while self.pass_no < max_passes:
            self.pass_no += 1
            self.changed = self._reconcile_pods()
            entry = self._execute_template(self.name, self.entrypoint, dict(self.workflow_args), boundary="",
                                           hooked=False)
            if entry.phase_fulfilled():
                return self._trace(entry.phase)
            if not self.changed:
                return self._trace(RUNNING)
        raise Unsupported("the model did not settle")

    def _reconcile_pods(self) -> bool:
        """[operator.go:podReconciliation / assessNodeStatus] every pod created in an earlier pass reaches its
        outcome; a daemoned pod becomes Running with Daemoned set (assessNodeStatus: a daemon template's pod that
        is running and ready). A daemon that later exits is not modelled (assessNodeStatus would mark it Failed)."""
        changed = False
        for node in self.nodes.values():
            if node.pending is None or node.created_pass >= self.pass_no:
                continue
            outcome, node.pending = node.pending, None
            node.parameters = dict(outcome.parameters)
            node.result = outcome.result
            node.exit_code = outcome.exit_code
            if outcome.daemoned:
                node.daemoned = True
                node.phase = RUNNING
            else:
                node.phase = outcome.phase
            changed = True
        return changed

    def _trace(self, phase: str) -> Trace:
        records = {
            n.name: NodeRecord(name=n.name, kind=n.kind, template=n.template, phase=n.phase, inputs=dict(n.inputs),
                               started_after=n.started_after, hooked=n.hooked, outputs=dict(n.parameters or {}),
                               daemons_running=n.daemons_running)
            for n in self.nodes.values()
        }
        workflow_phase = phase if phase in LEAF_PHASES else RUNNING
        return Trace(nodes=records, phase=workflow_phase, passes=self.pass_no)

    # -- templates ---------------------------------------------------------------------------------------------

    def _template(self, name: str) -> dict[str, Any]:
        """[templateresolution:TemplateContext.ResolveTemplate] local templates only; the features whose
        semantics this model does not reproduce are refused here."""
        if name not in self.templates:
            raise Unsupported(f"template {name!r} not found")
        template = self.templates[name]
        for key in _UNSUPPORTED_TEMPLATE_KEYS:
            if template.get(key) is not None:
                raise Unsupported(f"template {name!r} uses {key}")
        if (template.get("inputs") or {}).get("artifacts") or (template.get("outputs") or {}).get("artifacts"):
            raise Unsupported(f"template {name!r} has artifacts")
        return template

    def _process_inputs(self, template: dict[str, Any], args: Mapping[str, str]) -> dict[str, str]:
        """[workflow/common/util.go:ProcessArgs] an input takes the argument of its name, else its default."""
        inputs: dict[str, str] = {}
        for param in (template.get("inputs") or {}).get("parameters") or []:
            pname = str(param["name"])
            if pname in args:
                inputs[pname] = args[pname]
            elif "value" in param:
                inputs[pname] = _scalar(param["value"])
            elif "default" in param:
                inputs[pname] = _scalar(param["default"])
            else:
                raise Unsupported(f"input {pname!r} of template {template['name']!r} not supplied")
        return inputs

    def _execute_template(self, node_name: str, template_name: str, args: Mapping[str, str], boundary: str,
                          hooked: bool) -> _Node:
        """[operator.go:executeTemplate] a fulfilled node is returned as is (handleNodeFulfilled); a leaf becomes
        a pod whose outcome the oracle decides; a DAG template runs executeDAG with its inputs substituted."""
        node = self.nodes.get(node_name)
        if node is not None and node.phase_fulfilled():
            return node
        template = self._template(template_name)
        inputs = self._process_inputs(template, args)
        if "dag" in template:
            return self._execute_dag(node_name, template, inputs, boundary, hooked)
        if node is not None:
            return node
        node = self._init_node(node_name, "Pod", PENDING, boundary, template_name, inputs, hooked)
        node.pending = self.oracle(Invocation(node=node_name, template=template_name, inputs=dict(inputs)))
        if node.pending.phase not in LEAF_PHASES:
            raise Unsupported(f"oracle phase {node.pending.phase!r} for {node_name}")
        return node

    # -- executeDAG --------------------------------------------------------------------------------------------

    def _execute_dag(self, node_name: str, template: dict[str, Any], inputs: Mapping[str, str], boundary: str,
                     hooked: bool) -> _Node:
        """[dag.go:executeDAG]"""
        # [operator.go:executeTemplate → common.ProcessArgs → SubstituteParams] inputs and globals into the body
        in_values = {**self.global_values, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}
        dag = _deep_substitute(template["dag"], in_values, ("item", "tasks", "steps"))
        node = self.nodes.get(node_name)
        if node is None:
            node = self._init_node(node_name, "DAG", RUNNING, boundary, str(template["name"]), inputs, hooked)
        tasks: dict[str, dict[str, Any]] = {}
        for task in dag.get("tasks") or []:
            for key in _UNSUPPORTED_TASK_KEYS:
                if task.get(key) is not None:
                    raise Unsupported(f"task {task.get('name')!r} uses {key}")
            for hook_name, hook in (task.get("hooks") or {}).items():
                if hook_name != "exit" or hook.get("expression"):
                    raise Unsupported(f"task {task.get('name')!r} has lifecycle hook {hook_name!r}")
            if (task.get("arguments") or {}).get("artifacts"):
                raise Unsupported(f"task {task.get('name')!r} passes artifacts")
            tasks[str(task["name"])] = task
        ctx = _DagContext(boundary=node_name, tasks=tasks, template={**template, "dag": dag})
        targets = self._targets(ctx, dag)

        # [dag.go:executeDAG] pre-execute daemoned tasks
        for task_name in tasks:
            task_node = self.nodes.get(ctx.task_node_name(task_name))
            if task_node is not None and task_node.daemoned:
                self._execute_dag_task(ctx, task_name)
        # [dag.go:executeDAG] kick off execution of each target task
        for task_name in targets:
            self._execute_dag_task(ctx, task_name)

        phase = self._assess_dag_phase(ctx, targets, dag)
        if phase == RUNNING:
            return node
        if phase in (FAILED, ERROR):
            self._update_outbound(ctx, node, targets)
            self._mark_phase(node, phase)
            self._kill_daemoned_children(node)
            return node
        try:
            outputs = self._dag_outputs(ctx, template)
        except _Requeue as missing:
            # [dag.go:executeDAG] returns the error before updateOutboundNodesForTargetTasks, and its deferred
            # killDaemonedChildren runs before [operator.go:executeTemplate] marks the node Error: the DAG keeps no
            # outbound nodes (its dependants hang from nothing) and its daemons are not stopped.
            self._mark_phase(node, ERROR)
            node.message = f"unresolved {missing}"
            return node
        node.parameters = outputs
        self._update_outbound(ctx, node, targets)
        self._mark_phase(node, SUCCEEDED)
        self._kill_daemoned_children(node)
        return node

    def _targets(self, ctx: _DagContext, dag: Mapping[str, Any]) -> list[str]:
        """[dag.go:executeDAG / findLeafTaskNames] `target` split on spaces, else every task nobody depends on,
        sorted."""
        target = str(dag.get("target") or "")
        if target:
            names = target.split(" ")
            for name in names:
                if name not in ctx.tasks:
                    raise Unsupported(f"target {name!r} is not a task")
            return names
        depended = {dep for name in ctx.tasks for dep in ctx.dependencies(name)}
        return sorted(name for name in ctx.tasks if name not in depended)

    def _update_outbound(self, ctx: _DagContext, node: _Node, targets: list[str]) -> None:
        """[dag.go:updateOutboundNodesForTargetTasks] a missing target node is left out."""
        outbound: list[str] = []
        for name in targets:
            task_node = ctx.task_node_name(name)
            if task_node in self.nodes:
                outbound.extend(self._outbound(task_node))
        node.outbound = outbound

    def _kill_daemoned_children(self, dag_node: _Node) -> None:
        """[exec_control.go:killDaemonedChildren] via executeDAG's defer: once the DAG is fulfilled, daemons whose
        boundary is this DAG are stopped and recorded Succeeded."""
        for node in self.nodes.values():
            if node.boundary == dag_node.name and node.daemoned:
                node.daemoned = False
                node.phase = SUCCEEDED
                self.changed = True

    def _assess_dag_phase(self, ctx: _DagContext, targets: list[str], dag: Mapping[str, Any]) -> str:
        """[dag.go:assessDAGPhase] BFS over every node below the boundary (nested DAGs included), carrying the
        last completed phase of each branch; omitted targets take their branch phase, Failed/Error preferred."""
        target_phases: dict[str, str] = {ctx.task_node_name(t): "" for t in targets}
        failed_arrivals: dict[str, set[str]] = {name: set() for name in target_phases}
        queue: list[tuple[str, str]] = [(c, SUCCEEDED) for c in self.nodes[ctx.boundary].children]
        seen: set[tuple[str, str]] = set(queue)  # [phase_node.go:uniquePhaseNodeQueue] unique per node and phase
        groups_to_complete: dict[str, str] = {}
        while queue:
            current, branch = queue.pop(0)
            node = self.nodes.get(current)
            if node is None:
                return RUNNING
            if not node.fulfilled():
                group_phase = self._completable_task_group_phase(node)
                if group_phase is None:
                    return RUNNING
                groups_to_complete[node.name] = group_phase
                branch = group_phase
            elif node.completed():
                branch = node.phase
            if current in target_phases:
                if _is_failed_or_error(branch):
                    failed_arrivals[current].add(branch)
                if not _is_failed_or_error(target_phases[current]):
                    target_phases[current] = branch
            for child in node.children:
                if (child, branch) not in seen:
                    seen.add((child, branch))
                    queue.append((child, branch))
        for name, phase in groups_to_complete.items():
            self._mark_phase(self.nodes[name], phase)
        for name, arrivals in failed_arrivals.items():
            node = self.nodes.get(name)
            if len(arrivals) > 1 and node is not None and not node.completed():
                raise OrderDependent(f"omitted target {name} is reached from both Failed and Error branches")

        fail_fast = dag.get("failFast") is None or bool(dag.get("failFast"))
        result = SUCCEEDED
        for target in targets:
            branch = target_phases[ctx.task_node_name(target)]
            if branch == "":
                result = RUNNING
                if not fail_fast:
                    break
            elif _is_failed_or_error(branch):
                if _continues_on(ctx.tasks[target], branch):
                    continue
                result = branch
                if fail_fast:
                    break
        return result

    def _completable_task_group_phase(self, node: _Node) -> str | None:
        """[dag.go:completableTaskGroupPhase] a Running TaskGroup whose children are all fulfilled completes."""
        if node.kind != "TaskGroup" or not node.children:
            return None
        phase = SUCCEEDED
        for child in node.children:
            child_node = self.nodes.get(child)
            if child_node is None or not child_node.fulfilled():
                return None
            if _is_failed_or_error(child_node.phase):
                phase = child_node.phase
        return phase

    # -- executeDAGTask ----------------------------------------------------------------------------------------

    def _execute_dag_task(self, ctx: _DagContext, task_name: str) -> None:
        """[dag.go:executeDAGTask] recurse into dependencies, then evaluate depends, then run (or omit/skip)."""
        if task_name in ctx.visited:
            return
        ctx.visited.add(task_name)
        task = ctx.tasks[task_name]
        node_name = ctx.task_node_name(task_name)
        node = self.nodes.get(node_name)

        if node is not None and node.phase_fulfilled():
            if node.completed():
                self._run_on_exit(ctx, task, node)
            return

        deps = ctx.dependencies(task_name)
        group: list[_Node | None] = [None]
        if node is not None and node.kind == "TaskGroup":
            group[0] = node

        def connect(child_name: str) -> None:
            """[dag.go:executeDAGTask connectDependencies] a root task (or a loop child) hangs from the boundary
            (or its TaskGroup); otherwise from every outbound node of each dependency."""
            if not deps or group[0] is not None:
                parent = group[0].name if group[0] is not None else ctx.boundary
                self._add_child(parent, child_name)
                return
            for dep in deps:
                for out in self._outbound(ctx.task_node_name(dep)):
                    self._add_child(out, child_name)

        if ctx.depends_logic(task_name) != "":
            for dep in deps:
                self._execute_dag_task(ctx, dep)
            execute, proceed = self._evaluate_depends(ctx, task_name)
            if not proceed:
                return
            if not execute:
                self._init_node(node_name, "Skipped", OMITTED, ctx.boundary, str(task.get("template", "")))
                connect(node_name)
                return

        try:
            new_task = self._resolve_dependency_references(ctx, task)
        except _Requeue:
            return
        expanded = self._expand_task(new_task, task_name)

        if _should_expand(task):
            if not expanded:
                # [dag.go:executeDAGTask] "Skipped, empty params"
                if node is None:
                    self._init_node(node_name, "Skipped", SKIPPED, ctx.boundary, str(task.get("template", "")))
                    connect(node_name)
            elif group[0] is None:
                connect(node_name)
                group[0] = self._init_node(node_name, "TaskGroup", RUNNING, ctx.boundary,
                                           str(task.get("template", "")))

        for child_name, child_task in expanded:
            child_node_name = ctx.task_node_name(child_name)
            child = self.nodes.get(child_node_name)
            if child is None:
                connect(child_node_name)
                if not should_execute(str(child_task.get("when") or "")):
                    self._init_node(child_node_name, "Skipped", SKIPPED, ctx.boundary,
                                    str(child_task.get("template", "")))
                    continue
            args = {str(p["name"]): _scalar(p.get("value", ""))
                    for p in (child_task.get("arguments") or {}).get("parameters") or []}
            for p in (child_task.get("arguments") or {}).get("parameters") or []:
                if "value" not in p:
                    raise Unsupported(f"argument {p.get('name')!r} of {child_name} without a value")
            child = self._execute_template(child_node_name, str(child_task["template"]), args, ctx.boundary, False)
            if child.completed():
                has_exit, exit_node = self._run_on_exit(ctx, task, child)
                if has_exit and (exit_node is None or not exit_node.fulfilled()):
                    return

        if group[0] is not None:
            group_phase = SUCCEEDED
            for child_name, _ in expanded:
                child = self.nodes.get(ctx.task_node_name(child_name))
                if child is None or not child.fulfilled():
                    return
                if _is_failed_or_error(child.phase):
                    group_phase = child.phase
            self._mark_phase(group[0], group_phase)

    def _evaluate_depends(self, ctx: _DagContext, task_name: str) -> tuple[bool, bool]:
        """[dag.go:evaluateDependsLogic] (execute, proceed): wait until every dependency is fulfilled and its
        hooks too, then evaluate the resolved logic over TaskResults."""
        if ctx.task_node_name(task_name) in self.nodes:
            return True, True
        scope: dict[str, dict[str, bool]] = {}
        for dep in ctx.dependencies(task_name):
            dep_node = self.nodes.get(ctx.task_node_name(dep))
            if dep_node is None or not dep_node.fulfilled() or not self._all_hooks_fulfilled(dep_node):
                return False, False
            scope[dep.replace("-", "_")] = self.task_results(dep_node)
        return eval_depends(ctx.depends_logic(task_name).replace("-", "_"), scope), True

    def task_results(self, node: _Node) -> dict[str, bool]:
        """[dag.go:evaluateDependsLogic TaskResults] AnySucceeded/AllFailed look at a TaskGroup's children."""
        any_succeeded = False
        all_failed = False
        if node.kind == "TaskGroup":
            all_failed = len(node.children) > 0
            for child in node.children:
                phase = self.nodes[child].phase
                any_succeeded = any_succeeded or phase == SUCCEEDED
                all_failed = all_failed and phase == FAILED
        return {
            "Succeeded": node.phase == SUCCEEDED,
            "Failed": node.phase == FAILED,
            "Errored": node.phase == ERROR,
            "Skipped": node.phase == SKIPPED,
            "Omitted": node.phase == OMITTED,
            "Daemoned": node.daemoned and node.phase != PENDING,
            "AnySucceeded": any_succeeded,
            "AllFailed": all_failed,
        }

    def _all_hooks_fulfilled(self, node: _Node) -> bool:
        """[workflow/common/util.go:CheckAllHooksFullfilled] hooked children (onExit nodes) must be fulfilled."""
        return all(self.nodes[c].fulfilled() for c in node.children if c in self.nodes and self.nodes[c].hooked)

    def _run_on_exit(self, ctx: _DagContext, task: Mapping[str, Any], parent: _Node) -> tuple[bool, _Node | None]:
        """[exit_handler.go:runOnExitNode] `<node>.onExit`, hooked, child of the task node, same boundary.
        `onExit: t` gets the workflow's arguments ([workflow_types.go:DAGTask.GetExitHook])."""
        hook = (task.get("hooks") or {}).get("exit")
        if task.get("onExit"):
            template = str(task["onExit"])
            args: dict[str, str] = dict(self.workflow_args)
        elif hook is not None:
            template = str(hook["template"])
            if (hook.get("arguments") or {}).get("parameters"):
                args = self._exit_hook_args(ctx, hook, str(task["name"]), parent)
            else:
                # [workflow_types.go:LifecycleHook.WithArgs] a hook without arguments gets the workflow's
                args = dict(self.workflow_args)
        else:
            return False, None
        exit_name = f"{parent.name}.onExit"
        exit_node = self._execute_template(exit_name, template, args, ctx.boundary, hooked=True)
        self._add_child(parent.name, exit_name)
        return True, exit_node

    def _exit_hook_args(self, ctx: _DagContext, hook: Mapping[str, Any], task_name: str, parent: _Node
                        ) -> dict[str, str]:
        """[exit_handler.go:resolveExitTmplArgument] the hook's arguments see the parent's outputs and status."""
        values = self._local_scope(ctx, task_name)
        values[f"tasks.{task_name}.status"] = parent.phase
        for pname, pvalue in (parent.parameters or {}).items():
            values[f"tasks.{task_name}.outputs.parameters.{pname}"] = pvalue
        args: dict[str, str] = {}
        for p in (hook.get("arguments") or {}).get("parameters") or []:
            try:
                args[str(p["name"])] = substitute(_scalar(p.get("value", "")), values, strict_prefixes=("tasks",))
            except _Requeue as missing:
                raise Unsupported(f"exit hook argument refers to missing {missing}") from None
        return args

    # -- scope and substitution --------------------------------------------------------------------------------

    def _local_scope(self, ctx: _DagContext, task_name: str) -> dict[str, str]:
        """[dag.go:buildLocalScopeFromTask] the keys of every ancestor ([operator.go:buildLocalScope]); a TaskGroup
        ancestor adds aggregated outputs ([operator.go:processAggregateNodeOutputs])."""
        values: dict[str, str] = {}
        for ancestor in task_ancestry(task_name, ctx.dependencies):
            node = self.nodes.get(ctx.task_node_name(ancestor))
            if node is None:
                continue
            values.update(self._node_scope(ancestor, node))
        return values

    def _node_scope(self, task_name: str, node: _Node) -> dict[str, str]:
        """[operator.go:buildLocalScope / addNodeOutputsToLocalScope] status always; result, exitCode and
        parameters only when the node has them (a DAG node has only its declared outputs, never an exitCode)."""
        values = {f"tasks.{task_name}.status": node.phase}
        if node.kind == "TaskGroup":
            values.update(self._aggregate_scope(task_name, node))
            return values
        if node.parameters is not None:
            for pname, pvalue in node.parameters.items():
                values[f"tasks.{task_name}.outputs.parameters.{pname}"] = pvalue
        if node.result is not None:
            values[f"tasks.{task_name}.outputs.result"] = node.result
        if node.exit_code is not None:
            values[f"tasks.{task_name}.exitCode"] = node.exit_code
        return values

    def _aggregate_scope(self, task_name: str, group: _Node) -> dict[str, str]:
        """[operator.go:processAggregateNodeOutputs / aggregatedJSONValueList] only Succeeded children count; the
        values form a JSON list (of strings unless every value is a JSON list or object)."""
        children = sorted((self.nodes[c] for c in group.children if not self.nodes[c].hooked),
                          key=lambda n: _loop_index(n.name))
        lists: dict[str, list[str]] = {}
        for child in children:
            if child.phase != SUCCEEDED or child.parameters is None:
                continue
            for pname, pvalue in child.parameters.items():
                lists.setdefault(pname, []).append(pvalue)
        values: dict[str, str] = {}
        for pname, plist in lists.items():
            parsed: list[Any] = []
            for item in plist:
                try:
                    loaded = json.loads(item)
                except ValueError:
                    parsed = []
                    break
                if not isinstance(loaded, list | dict):
                    parsed = []
                    break
                parsed.append(loaded)
            rendered = parsed if parsed and len(parsed) == len(plist) else plist
            values[f"tasks.{task_name}.outputs.parameters.{pname}"] = _go_json(rendered)
        return values

    def _check_refs(self, ctx: _DagContext, task: Mapping[str, Any], text: str) -> None:
        """Refuse what the model cannot reproduce: non-ancestors ([workflow/validate/validate.go:validateDAG,
        validateDAGTaskArgumentDependency] refuse them at submission), node ids and pod ips (hashes of node names
        and addresses), outputs of skipped/omitted tasks ([dag.go:buildLocalScopeFromTask →
        addSkippedNodeOutputsToScope] placeholders and defaults)."""
        ancestors = set(task_ancestry(str(task["name"]), ctx.dependencies))
        for match in _TAG.finditer(text):
            tag = match.group(1)
            if not tag.startswith(("tasks.", "steps.")):
                continue
            ref = _TASK_REF.match(tag)
            if ref is None:
                raise Unsupported(f"reference {{{{{tag}}}}} is outside the model")
            dep, what = ref.group(1), ref.group(2)
            if dep not in ancestors:
                raise Unsupported(f"{{{{{tag}}}}} refers to {dep!r}, not an ancestor of {task['name']!r}")
            if what not in ("status", "exitCode", "outputs.result") and not what.startswith("outputs.parameters."):
                raise Unsupported(f"reference {{{{{tag}}}}} is outside the model")
            dep_node = self.nodes.get(ctx.task_node_name(dep))
            if dep_node is not None and dep_node.kind == "TaskGroup" and what == "outputs.result":
                raise Unsupported(f"{{{{{tag}}}}}: aggregated results of a loop are not modelled")
            if dep_node is not None and dep_node.phase in (SKIPPED, OMITTED) and what != "status":
                raise Unsupported(f"{{{{{tag}}}}} reads outputs of a {dep_node.phase.lower()} task")

    def _resolve_dependency_references(self, ctx: _DagContext, task: Mapping[str, Any]) -> dict[str, Any]:
        """[dag.go:resolveDependencyReferences] `when` first (a false `when` returns the task unresolved), then the
        whole task; a missing tasks.* value requeues. `{{item}}` stays for expansion."""
        values = self._local_scope(ctx, str(task["name"]))
        leave = ("item",)
        when = str(task.get("when") or "")
        self._check_refs(ctx, task, json.dumps({k: v for k, v in task.items() if k not in ("hooks", "onExit")}))
        if when:
            resolved_when = substitute(when, values, strict_prefixes=("tasks", "steps"), leave=leave)
            try:
                proceed = should_execute(resolved_when)
            except Unsupported:
                if not _should_expand(task) or "{{item" not in resolved_when:
                    raise
                proceed = True
            if not proceed:
                return {**task, "when": resolved_when}
        resolved: dict[str, Any] = {}
        for key, value in task.items():
            if key in ("hooks", "onExit", "name", "depends", "dependencies", "continueOn", "template"):
                resolved[key] = value
            else:
                resolved[key] = _deep_substitute_strict(value, values, leave)
        return resolved

    def _expand_task(self, task: Mapping[str, Any], task_name: str) -> list[tuple[str, dict[str, Any]]]:
        """[dag.go:expandTask] withItems / withParam / withSequence into `name(i:item)` tasks
        ([operator.go:processItem, generateNodeName]); a task without a loop is itself."""
        when = str(task.get("when") or "")
        items: list[Any]
        if task.get("withItems"):
            items = list(task["withItems"])
        elif task.get("withParam"):
            try:
                loaded = json.loads(str(task["withParam"]))
            except ValueError:
                loaded = None
            if not isinstance(loaded, list):
                if "{{" not in when and not should_execute(when):
                    return []
                raise Unsupported(f"withParam of {task_name!r} is not a JSON list (the task would be Error)")
            items = loaded
        elif task.get("withSequence") is not None:
            items = _expand_sequence(task["withSequence"])
        else:
            return [(task_name, dict(task))]
        body = {k: v for k, v in task.items() if k not in ("withItems", "withParam", "withSequence")}
        expanded: list[tuple[str, dict[str, Any]]] = []
        for index, item in enumerate(items):
            values, desc = _item_values(item)
            child = _deep_substitute(body, values, ("tasks", "steps", "workflow", "inputs", "pod"))
            expanded.append((f"{task_name}({index}:{desc})", child))
        return expanded

    def _dag_outputs(self, ctx: _DagContext, template: Mapping[str, Any]) -> dict[str, str]:
        """[dag.go:executeDAG → operator.go:getTemplateOutputsFromScope / scope.go:resolveParameter] every task's
        keys (not only ancestors), then each `valueFrom.parameter`, else its `default`."""
        params = (template.get("outputs") or {}).get("parameters") or []
        if not params:
            return {}
        values: dict[str, str] = {}
        for task_name in ctx.tasks:
            node = self.nodes.get(ctx.task_node_name(task_name))
            if node is not None:
                if node.phase in (SKIPPED, OMITTED) and any(
                        f"tasks.{task_name}.outputs" in str(p.get("valueFrom")) for p in params):
                    raise Unsupported(f"DAG output reads outputs of {node.phase.lower()} task {task_name!r}")
                values.update(self._node_scope(task_name, node))
        outputs: dict[str, str] = {}
        for param in params:
            value_from = param.get("valueFrom") or {}
            if value_from.get("expression") or set(value_from) - {"parameter", "default"}:
                raise Unsupported(f"DAG output {param.get('name')!r} uses {sorted(value_from)}")
            ref = str(value_from.get("parameter") or "")
            match = _TAG.fullmatch(ref.strip())
            if match is None:
                raise Unsupported(f"DAG output {param.get('name')!r} is not a single {{{{tag}}}}")
            tag = match.group(1)
            if tag in values:
                outputs[str(param["name"])] = values[tag]
            elif "default" in value_from:
                outputs[str(param["name"])] = _scalar(value_from["default"])
            else:
                raise _Requeue(tag)
        return outputs


def _go_json(value: Any) -> str:
    """json.Marshal's output: compact, map keys sorted, UTF-8 kept, and <, >, &, U+2028, U+2029 escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _deep_substitute_strict(value: Any, values: Mapping[str, str], leave: Sequence[str]) -> Any:
    """Strict substitution of tasks.* through a task's fields ([util/template:ReplaceStrictAny])."""
    if isinstance(value, str):
        return substitute(value, values, strict_prefixes=("tasks", "steps"), leave=leave)
    if isinstance(value, list):
        return [_deep_substitute_strict(v, values, leave) for v in value]
    if isinstance(value, dict):
        return {k: _deep_substitute_strict(v, values, leave) for k, v in value.items()}
    return value


def _should_expand(task: Mapping[str, Any]) -> bool:
    """[workflow_types.go:DAGTask.ShouldExpand]"""
    return bool(task.get("withItems")) or bool(task.get("withParam")) or task.get("withSequence") is not None


def _continues_on(task: Mapping[str, Any], phase: str) -> bool:
    """[workflow_types.go:DAGTask.ContinuesOn / continues]"""
    continue_on = task.get("continueOn") or {}
    return (bool(continue_on.get("error")) and phase == ERROR) or (bool(continue_on.get("failed")) and phase == FAILED)


def _loop_index(name: str) -> int:
    """[operator.go:loopNodes sort → util.RecoverIndexFromNodeName] the index in `task(i:item)`."""
    match = re.search(r"\((\d+):[^()]*\)$", name)
    return int(match.group(1)) if match else 0


def _item_text(value: Any) -> str:
    """[item.go:Item.String / Format] json.Marshal of the item, a string's quotes removed; only values whose JSON
    form is unambiguous from Python are accepted (no floats, whose YAML→JSON form Go normalises differently, and
    no strings that JSON would escape)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if any(c in value for c in '"\\\u2028\u2029') or any(ord(c) < 0x20 for c in value):
            raise Unsupported("loop item string with characters JSON escapes")
        return value
    raise Unsupported(f"loop item value of type {type(value).__name__}")


def _item_values(item: Any) -> tuple[dict[str, str], str]:
    """[operator.go:processItem] the `{{item}}` / `{{item.key}}` values and the description of one item; a map's
    description is its sorted `key:value` pairs joined by commas."""
    if isinstance(item, dict):
        values = {"item": _go_json(item)}
        parts = []
        for key, val in item.items():
            rendered = _item_text(val)
            values[f"item.{key}"] = rendered
            parts.append(f"{key}:{rendered}")
        return values, _node_desc(",".join(sorted(parts)))
    text = _item_text(item)
    return {"item": text}, _node_desc(text)


def _node_desc(desc: str) -> str:
    """[operator.go:generateNodeName] parentheses are removed from the description in `name(i:desc)`."""
    return desc.replace("(", "").replace(")", "")


def _expand_sequence(seq: Mapping[str, Any]) -> list[str]:
    """[operator.go:expandSequence] start..end inclusive (descending if start > end), or count from start."""
    if seq.get("format"):
        raise Unsupported("withSequence.format (Go's fmt verbs)")
    try:
        start = int(str(seq.get("start", 0)))
        if seq.get("end") is not None:
            end = int(str(seq["end"]))
        elif seq.get("count") is not None:
            count = int(str(seq["count"]))
            if count == 0:
                return []
            end = start + count - 1
        else:
            raise Unsupported("withSequence without end or count")
    except ValueError as exc:
        raise Unsupported(f"withSequence value is not an integer: {exc}") from None
    step = 1 if start <= end else -1
    return [str(i) for i in range(start, end + step, step)]


def run_workflow(workflow: Mapping[str, Any], oracle: Oracle) -> Trace:
    """Run a Workflow (as YAML loads it, or just its spec) through the model with leaf outcomes from `oracle`."""
    return _Model(workflow, oracle).run()


def outcomes(table: Mapping[str, LeafOutcome | str], default: LeafOutcome | None = None) -> Oracle:
    """An oracle from a table keyed by node name (`wf.main.A`), by its last path element (`A`, `A(0:x)`), or by
    template name; a string value is a phase."""

    def oracle(inv: Invocation) -> LeafOutcome:
        for key in (inv.node, inv.node.rsplit(".", 1)[-1], inv.template):
            if key in table:
                value = table[key]
                return LeafOutcome(phase=value) if isinstance(value, str) else value
        return default if default is not None else LeafOutcome()

    return oracle


def renamed(trace: Trace, rename: Callable[[str], str | None]) -> Trace:
    """The trace with every node name (and every name in `started_after`/`daemons_running`) mapped by `rename`;
    nodes it maps to None are dropped. For comparing a split workflow with its original: map `wf.part-2.t7` to
    `wf.t7` and drop the group nodes, then compare phases, inputs and start order."""

    def names(group: frozenset[str]) -> frozenset[str]:
        return frozenset(n for n in map(rename, group) if n is not None)

    nodes: dict[str, NodeRecord] = {}
    for name, record in trace.nodes.items():
        new_name = rename(name)
        if new_name is None:
            continue
        if new_name in nodes:
            raise ValueError(f"rename maps two nodes to {new_name!r}")
        nodes[new_name] = NodeRecord(name=new_name, kind=record.kind, template=record.template, phase=record.phase,
                                     inputs=record.inputs, started_after=names(record.started_after),
                                     hooked=record.hooked, outputs=record.outputs,
                                     daemons_running=names(record.daemons_running))
    return Trace(nodes=nodes, phase=trace.phase, passes=trace.passes)


def iter_task_records(trace: Trace) -> Iterator[NodeRecord]:
    """The records of task nodes (not onExit nodes), in name order."""
    for name in sorted(trace.nodes):
        record = trace.nodes[name]
        if not record.hooked:
            yield record
