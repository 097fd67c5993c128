"""Expand a Workflow into the step invocations the Argo controller would create pods for, in a valid order.

Used by the demo (`make run` replays a workflow's pods through the webhook) and by tests as fixtures, so the
priority is the *pod shape* of each invocation (node name, template, resolved inputs, include-script-output,
boundary template); control flow is followed faithfully for the common cases and reported, never guessed
silently, for the rest:

* `steps` (groups in order, steps in a group in order) and `dag` (topological, declaration order breaking
  ties, `dependencies`/`depends`/`target`), nested templates, `templateRef` into (Cluster)WorkflowTemplates
  of the same file set, `inline` templates, workflow `onExit` and step/task exit hooks, retry nodes
  (`…(0)`);
* `withItems`, `withSequence` and `withParam` (when its value resolves to a JSON list);
* `{{inputs.*}}`, `{{workflow.*}}`, `{{item}}`/`{{item.x}}`, `{{steps.X.outputs…}}`/`{{tasks.X…}}`
  from a caller-supplied `outputs` mapping, else from the producer's static output values, else its
  `valueFrom.default`, else a placeholder `wfboost-unknown:<node>.outputs…`;
* `when` and `depends` are evaluated assuming every step succeeds; a `when` we cannot evaluate (an
  unknown output, an `{{=expr}}`) is assumed true and noted on the invocation.

Node names follow the controller: `<wf>` for the entrypoint, `<parent>[i].<step>` for steps (steps.go:70,131),
`<dag node>.<task>` for DAG tasks (dag.go:115), `<name>(i:<item>)` for expanded items (operator.go
`generateNodeName`/`processItem`), `<node>(0)` for the first attempt under a retry node (operator.go:2288),
`<node>.onExit` for exit handlers. Node IDs and pod names then follow `wfboost_dev.argosim.pods.node_id` /
`~wfboost_dev.argosim.pods.pod_name`.

What the expansion does *not* model, by design: failures and retries beyond the first attempt, suspend resumption,
memoization hits, `{{=expr}}` expressions, `withParam` over unknown outputs, lifecycle hooks other than
`exit`. Those nodes are yielded as `skipped` or `not-a-pod` with the reason.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml

from wfboost.argo.names import ARTIFACT_DRIVERS
from wfboost_dev.argosim.expressions import TaskState, depends_task_names, evaluate_depends, evaluate_when
from wfboost_dev.argosim.gojson import go_json
from wfboost_dev.argosim.pods import (
    DEFAULT_CONFIG,
    POD_TEMPLATE_TYPES,
    ArgoLayout,
    BuiltPod,
    ControllerConfig,
    PodBuildError,
    StepInputs,
    WorkflowIdentity,
    build_pod,
    global_parameters,
    node_id,
    pod_name,
    template_type,
    workflow_identity,
    workflow_spec,
)
from wfboost_dev.argosim.strategic_merge import strategic_merge
from wfboost_dev.argosim.templating import any_string, process_args, substitute

__all__ = [
    "PLACEHOLDER_PREFIX",
    "Expansion",
    "Invocation",
    "InvocationKind",
    "NodeOutputs",
    "as_workflow",
    "expand_workflow",
    "load_documents",
]

PLACEHOLDER_PREFIX = "wfboost-unknown:"
"""Prefix of every value the expansion had to invent for an output it does not know."""

InvocationKind = Literal["pod", "not-a-pod", "skipped"]

_NOT_A_POD_REASONS = {
    "suspend": "suspend template: the controller creates no pod",
    "resource": "resource template: argoexec itself runs as main (`argoexec resource`); not modelled",
    "data": "data template: argoexec itself runs as main (`argoexec data`); not modelled",
    "http": "http template: executed by the workflow's agent pod, not a step pod",
    "plugin": "plugin template: executed by the workflow's agent pod, not a step pod",
    "unknown": "template has no container, script, containerSet, steps or dag body",
}
_MAX_INVOCATIONS = 5000


class NodeOutputs(TypedDict, total=False):
    """Known outputs of a finished node, keyed in `expand_workflow`'s `outputs` by node name (or step/task name)."""

    parameters: Mapping[str, str]
    result: str
    artifacts: Mapping[str, Mapping[str, Any]]
    exitCode: str


@dataclass(frozen=True)
class Invocation:
    """One node of the expanded workflow: a pod to create, or a node that creates none (and why)."""

    kind: InvocationKind
    node_name: str
    node_id: str
    template_name: str
    template: dict[str, Any] | None
    """The resolved template as written (before inputs are applied); `None` when it could not be resolved."""
    inputs: StepInputs
    reason: str = ""
    pod_name: str = ""
    include_script_output: bool = False
    on_exit: bool = False
    boundary_template: dict[str, Any] | None = None
    local_params: dict[str, str] = field(default_factory=dict)
    global_params: dict[str, str] = field(default_factory=dict, repr=False)
    retry_attempt: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Expansion:
    """The expansion of one workflow: the execution Workflow (name and UID fixed) and its invocations in order."""

    workflow: dict[str, Any]
    identity: WorkflowIdentity
    invocations: tuple[Invocation, ...]
    notes: tuple[str, ...] = ()

    @property
    def pods(self) -> list[Invocation]:
        return [x for x in self.invocations if x.kind == "pod"]

    def build(
        self, invocation: Invocation, *, layout: ArgoLayout, config: ControllerConfig = DEFAULT_CONFIG
    ) -> BuiltPod:
        """The pod `layout`'s controller creates for `invocation`."""
        if invocation.kind != "pod" or invocation.template is None:
            raise PodBuildError(f"{invocation.node_name}: {invocation.kind} ({invocation.reason})")
        return build_pod(
            self.workflow,
            invocation.template,
            invocation.node_name,
            invocation.inputs,
            layout=layout,
            config=config,
            include_script_output=invocation.include_script_output,
            on_exit=invocation.on_exit,
            boundary_template=invocation.boundary_template,
            local_params=invocation.local_params,
            global_params=invocation.global_params,
            retry_attempt=invocation.retry_attempt,
        )

    def build_pods(
        self, *, layout: ArgoLayout, config: ControllerConfig = DEFAULT_CONFIG
    ) -> tuple[list[BuiltPod], list[tuple[Invocation, str]]]:
        """Every pod of the walk, and the invocations whose pod the controller would refuse to create (why)."""
        built: list[BuiltPod] = []
        failed: list[tuple[Invocation, str]] = []
        for invocation in self.pods:
            try:
                built.append(self.build(invocation, layout=layout, config=config))
            except PodBuildError as exc:
                failed.append((invocation, str(exc)))
        return built, failed


def load_documents(path: str | Path) -> list[dict[str, Any]]:
    """The mapping documents of a (possibly multi-document) YAML file."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster on big KFP files
    with open(path, encoding="utf-8") as handle:
        return [doc for doc in yaml.load_all(handle, Loader=loader) if isinstance(doc, dict)]


# --------------------------------------------------------------------------------------------------------------
# From any workflow-ish document to the Workflow the controller executes
# --------------------------------------------------------------------------------------------------------------


def _find_template_doc(
    sources: Sequence[Mapping[str, Any]], name: str, cluster_scope: bool
) -> Mapping[str, Any] | None:
    kind = "ClusterWorkflowTemplate" if cluster_scope else "WorkflowTemplate"
    for doc in sources:
        if doc.get("kind") == kind and (doc.get("metadata") or {}).get("name") == name:
            return doc
    return None


def _merge_arguments(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("parameters", "artifacts"):
        merged: dict[str, Any] = {}
        for item in [*(base.get(kind) or []), *(override.get(kind) or [])]:
            merged[str(item.get("name"))] = item
        if merged:
            out[kind] = list(merged.values())
    return out


def as_workflow(doc: Mapping[str, Any], template_sources: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any] | str:
    """The execution Workflow for a Workflow, CronWorkflow, WorkflowTemplate or ClusterWorkflowTemplate.

    A `workflowTemplateRef` is resolved against `template_sources` and merged the way the controller builds
    its `execWf` (template spec, then the workflow's own fields; arguments merged by name). Returns a string
    reason instead when the document cannot be executed here.
    """
    kind = doc.get("kind")
    meta = dict(doc.get("metadata") or {})
    if kind == "CronWorkflow":
        name = str(meta.get("name") or "cron")
        scheduled = int(DEFAULT_CONFIG.started_at.timestamp())
        workflow: dict[str, Any] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "name": f"{name}-{scheduled}",
                **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
                "labels": {"workflows.argoproj.io/cron-workflow": name},
                "annotations": {"workflows.argoproj.io/scheduled-time": "2025-01-01T00:00:00Z"},
            },
            "spec": copy.deepcopy(workflow_spec(doc)),
        }
    elif kind in ("WorkflowTemplate", "ClusterWorkflowTemplate"):
        name = str(meta.get("name") or "template")
        label = "cluster-workflow-template" if kind == "ClusterWorkflowTemplate" else "workflow-template"
        workflow = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Workflow",
            "metadata": {
                "generateName": f"{name}-",
                **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
                "labels": {f"workflows.argoproj.io/{label}": name},
            },
            "spec": copy.deepcopy(dict(doc.get("spec") or {})),
        }
    elif kind in ("Workflow", None):
        workflow = copy.deepcopy(dict(doc))
        workflow.setdefault("apiVersion", "argoproj.io/v1alpha1")
        workflow["kind"] = "Workflow"
    else:
        return f"{kind} is not a workflow kind"
    spec = workflow.setdefault("spec", {})
    ref = spec.get("workflowTemplateRef")
    if isinstance(ref, Mapping):
        source = _find_template_doc(template_sources, str(ref.get("name")), bool(ref.get("clusterScope")))
        if source is None:
            scope = "ClusterWorkflowTemplate" if ref.get("clusterScope") else "WorkflowTemplate"
            return f"workflowTemplateRef {scope}/{ref.get('name')} is not in the file set"
        merged = copy.deepcopy(dict(source.get("spec") or {}))
        for key, value in spec.items():
            if key == "workflowTemplateRef":
                continue
            if key == "arguments":
                merged["arguments"] = _merge_arguments(merged.get("arguments") or {}, value or {})
            else:
                merged[key] = copy.deepcopy(value)
        workflow["spec"] = merged
    return workflow


# --------------------------------------------------------------------------------------------------------------
# The walker
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _TemplateScope:
    """Where plain `template:` names resolve: the workflow, or the WorkflowTemplate a templateRef entered."""

    label: str
    templates: dict[str, dict[str, Any]]


@dataclass
class _Result:
    """What a finished node offers to later references (`steps.X.…`) and to `depends`."""

    node_id: str
    state: TaskState
    parameters: dict[str, str] = field(default_factory=dict)
    result: str | None = None
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    exit_code: str | None = None
    children: list[_Result] | None = None


_ERROR = TaskState(errored=True)


class _Expander:
    def __init__(
        self,
        workflow: dict[str, Any],
        identity: WorkflowIdentity,
        outputs: Mapping[str, NodeOutputs],
        sources: Sequence[Mapping[str, Any]],
        config: ControllerConfig,
    ) -> None:
        self.workflow = workflow
        self.identity = identity
        self.spec = workflow_spec(workflow)
        self.outputs = outputs
        self.sources = sources
        self.config = config
        self.invocations: list[Invocation] = []
        self.notes: list[str] = []
        self.globals = global_parameters(workflow, identity, config=config)
        self.exit_globals = {**self.globals, "workflow.status": "Succeeded", "workflow.failures": "null"}
        self.root_ctx = _TemplateScope("workflow", {str(t.get("name")): t for t in self.spec.get("templates") or []})
        self.truncated = False

    # -- bookkeeping -----------------------------------------------------------------------------------------------
    def record(self, invocation: Invocation) -> None:
        if len(self.invocations) >= _MAX_INVOCATIONS:
            if not self.truncated:
                self.notes.append(f"stopped after {_MAX_INVOCATIONS} invocations")
                self.truncated = True
            return
        self.invocations.append(invocation)

    def skip(
        self,
        node_name: str,
        kind: InvocationKind,
        reason: str,
        template: Mapping[str, Any] | None = None,
        name: str = "",
    ) -> None:
        self.record(
            Invocation(
                kind=kind,
                node_name=node_name,
                node_id=node_id(self.identity.name, node_name),
                template_name=name or str((template or {}).get("name") or ""),
                template=copy.deepcopy(dict(template)) if template is not None else None,
                inputs={},
                reason=reason,
            )
        )

    def placeholder(self, node_name: str, what: str) -> str:
        return f"{PLACEHOLDER_PREFIX}{node_name}.outputs.{what}"

    def known_outputs(self, keys: Sequence[str]) -> NodeOutputs | None:
        for key in keys:
            if key and key in self.outputs:
                return self.outputs[key]
        return None

    # -- template resolution ------------------------------------------------------------------------------------------
    def resolve(self, holder: Mapping[str, Any], ctx: _TemplateScope) -> tuple[dict[str, Any], _TemplateScope] | str:
        inline = holder.get("inline")
        if isinstance(inline, Mapping):
            return copy.deepcopy(dict(inline)), ctx
        ref = holder.get("templateRef")
        if isinstance(ref, Mapping):
            cluster = bool(ref.get("clusterScope"))
            source = _find_template_doc(self.sources, str(ref.get("name")), cluster)
            scope = "ClusterWorkflowTemplate" if cluster else "WorkflowTemplate"
            if source is None:
                return f"templateRef {scope}/{ref.get('name')} is not in the file set (unsupported here)"
            templates = {str(t.get("name")): t for t in (source.get("spec") or {}).get("templates") or []}
            wanted = str(ref.get("template"))
            if wanted not in templates:
                return f"templateRef {scope}/{ref.get('name')} has no template {wanted!r}"
            return copy.deepcopy(templates[wanted]), _TemplateScope(f"{scope}/{ref.get('name')}", templates)
        name = holder.get("template")
        if isinstance(name, str) and name:
            if name not in ctx.templates:
                return f"template {name!r} not found in {ctx.label}"
            return copy.deepcopy(ctx.templates[name]), ctx
        return "step names no template"

    # -- the entry point --------------------------------------------------------------------------------------------
    def run(self) -> None:
        entrypoint = self.spec.get("entrypoint")
        args = dict(self.spec.get("arguments") or {})
        if not entrypoint:
            self.notes.append("workflow has no entrypoint")
        else:
            self.execute(self.identity.name, {"template": entrypoint}, args, self.root_ctx, None, (), False, {}, "")
        exit_holder: Mapping[str, Any] | None = None
        if self.spec.get("onExit"):
            exit_holder = {"template": self.spec["onExit"]}
        elif isinstance((self.spec.get("hooks") or {}).get("exit"), Mapping):
            exit_holder = self.spec["hooks"]["exit"]
        if exit_holder is not None:
            self.execute(
                f"{self.identity.name}.onExit",
                exit_holder,
                dict(exit_holder.get("arguments") or {}),
                self.root_ctx,
                None,
                (),
                True,
                {},
                "",
            )
        other_hooks = [k for k in (self.spec.get("hooks") or {}) if k != "exit"]
        if other_hooks:
            self.notes.append(f"workflow lifecycle hooks not modelled: {', '.join(map(str, other_hooks))}")

    # -- one node --------------------------------------------------------------------------------------------------
    def execute(
        self,
        node_name: str,
        holder: Mapping[str, Any],
        args: Mapping[str, Any],
        ctx: _TemplateScope,
        boundary: Mapping[str, Any] | None,
        stack: tuple[str, ...],
        on_exit: bool,
        local_params: Mapping[str, str],
        short_name: str,
    ) -> _Result:
        nid = node_id(self.identity.name, node_name)
        resolved = self.resolve(holder, ctx)
        if isinstance(resolved, str):
            self.skip(node_name, "skipped", resolved, name=str(holder.get("template") or ""))
            return _Result(nid, _ERROR)
        tmpl, tmpl_ctx = resolved
        raw_tmpl = copy.deepcopy(tmpl)
        step_node = node_name
        defaults = self.spec.get("templateDefaults")
        if isinstance(defaults, Mapping) and defaults:
            tmpl = strategic_merge(defaults, tmpl, "Template")
        # Inline templates have no name: each is its own key, so nesting them is never taken for recursion.
        key = f"{tmpl_ctx.label}#{tmpl['name']}" if tmpl.get("name") else f"inline@{node_name}"
        kind = template_type(tmpl)
        if kind in ("steps", "dag") and key in stack:
            self.skip(node_name, "skipped", f"recursive reference to template {tmpl.get('name')!r} not expanded", tmpl)
            return _Result(nid, TaskState(succeeded=True))
        globals_ = self.exit_globals if on_exit else self.globals
        if tmpl.get("retryStrategy") is not None or self.spec.get("retryStrategy") is not None:
            node_name = f"{node_name}(0)"
            local_params = {**local_params, "retries": "0"}
        params, artifacts, arg_notes = self.arguments(args)
        if kind in POD_TEMPLATE_TYPES:
            return self.pod_node(
                node_name,
                raw_tmpl,
                tmpl,
                params,
                artifacts,
                boundary,
                on_exit,
                local_params,
                globals_,
                short_name,
                (node_name, step_node, short_name),
                arg_notes,
            )
        if kind not in ("steps", "dag"):
            self.skip(node_name, "not-a-pod", _NOT_A_POD_REASONS.get(kind, _NOT_A_POD_REASONS["unknown"]), tmpl)
            outputs = self.static_outputs(node_name, tmpl, {}, (node_name, step_node, short_name))
            return outputs
        locals_ = {"node.name": node_name, **local_params}
        try:
            processed = process_args(tmpl, params, artifacts, globals_, locals_)
        except PodBuildError as exc:
            self.skip(node_name, "skipped", str(exc), tmpl)
            return _Result(nid, _ERROR)
        scope: dict[str, str] = {}
        art_scope: dict[str, dict[str, Any]] = {
            f"inputs.artifacts.{a.get('name')}": dict(a) for a in (processed.get("inputs") or {}).get("artifacts") or []
        }
        inner_stack = (*stack, key)
        if kind == "steps":
            self.run_steps(node_name, tmpl, processed, tmpl_ctx, scope, art_scope, inner_stack, on_exit, globals_)
        else:
            self.run_dag(node_name, tmpl, processed, tmpl_ctx, scope, art_scope, inner_stack, on_exit, globals_)
        return self.composite_outputs(node_name, processed, scope, art_scope, (node_name, step_node, short_name))

    def arguments(self, args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
        params: dict[str, Any] = {}
        notes: list[str] = []
        for param in args.get("parameters") or []:
            name = str(param.get("name"))
            if param.get("value") is not None:
                params[name] = any_string(param["value"])
            else:
                value_from = param.get("valueFrom") or {}
                if isinstance(value_from, Mapping) and value_from.get("default") is not None:
                    params[name] = any_string(value_from["default"])
                    notes.append(f"argument {name} taken from valueFrom.default")
        artifacts = {str(a.get("name")): dict(a) for a in args.get("artifacts") or [] if isinstance(a, Mapping)}
        return params, artifacts, notes

    def boundary_copy(self, boundary: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """One copy per boundary template, shared by the invocations under it (read only): a copy per pod made
        expanding a DAG of n tasks cost n copies of n tasks."""
        if boundary is None:
            return None
        copies: dict[int, tuple[Mapping[str, Any], dict[str, Any]]] = self.__dict__.setdefault("_boundaries", {})
        if id(boundary) not in copies:
            copies[id(boundary)] = (boundary, copy.deepcopy(dict(boundary)))
        return copies[id(boundary)][1]

    def pod_node(
        self,
        node_name: str,
        raw_tmpl: dict[str, Any],
        tmpl: dict[str, Any],
        params: dict[str, Any],
        artifacts: dict[str, dict[str, Any]],
        boundary: Mapping[str, Any] | None,
        on_exit: bool,
        local_params: Mapping[str, str],
        globals_: dict[str, str],
        short_name: str,
        lookup: tuple[str, ...],
        notes: list[str],
    ) -> _Result:
        nid = node_id(self.identity.name, node_name)
        pname = pod_name(self.identity.name, node_name, str(tmpl.get("name") or ""), self.config.pod_name_version)
        locals_ = {"pod.name": pname, "node.name": node_name, **local_params}
        try:
            processed = process_args(tmpl, params, artifacts, globals_, locals_)
        except PodBuildError as exc:
            self.skip(node_name, "skipped", str(exc), tmpl)
            return _Result(nid, _ERROR)
        patch = str(processed.get("podSpecPatch") or "") + str(self.spec.get("podSpecPatch") or "")
        if PLACEHOLDER_PREFIX in patch:
            self.skip(node_name, "skipped", "podSpecPatch depends on outputs the expansion does not know", tmpl)
            return self.static_outputs(node_name, processed, {"pod.name": pname}, lookup, pod=pname)
        include = False
        if boundary is not None and short_name:
            include = _has_output_result_ref(short_name, boundary)
        self.record(
            Invocation(
                kind="pod",
                node_name=node_name,
                node_id=nid,
                template_name=str(tmpl.get("name") or ""),
                template=raw_tmpl,
                inputs={"parameters": dict(params), "artifacts": {k: dict(v) for k, v in artifacts.items()}},
                pod_name=pname,
                include_script_output=include,
                on_exit=on_exit,
                boundary_template=self.boundary_copy(boundary),
                local_params={k: v for k, v in local_params.items() if k != "retries"},
                global_params=globals_,
                retry_attempt=0,
                notes=tuple(notes),
            )
        )
        result = self.static_outputs(node_name, processed, {"pod.name": pname}, lookup, pod=pname)
        if tmpl.get("daemon"):
            result.state = TaskState(daemoned=True, succeeded=False)
        return result

    # -- outputs ---------------------------------------------------------------------------------------------------
    def static_outputs(
        self,
        node_name: str,
        processed: Mapping[str, Any],
        extra: Mapping[str, str],
        lookup: tuple[str, ...],
        pod: str | None = None,
    ) -> _Result:
        """Outputs of a leaf node: caller-supplied, else static `value`, else `valueFrom.default`, else a
        placeholder; artifacts at the repository's default key `<wf>/<pod>/<name>.tgz`."""
        known = self.known_outputs(lookup) or {}
        outputs = processed.get("outputs") or {}
        result = _Result(node_id(self.identity.name, node_name), TaskState(succeeded=True, any_succeeded=True))
        known_params = known.get("parameters") or {}
        for param in outputs.get("parameters") or []:
            name = str(param.get("name"))
            value_from = param.get("valueFrom") or {}
            if name in known_params:
                result.parameters[name] = str(known_params[name])
            elif param.get("value") is not None:
                result.parameters[name] = any_string(substitute(any_string(param["value"]), extra))
            elif isinstance(value_from, Mapping) and value_from.get("default") is not None:
                result.parameters[name] = any_string(value_from["default"])
            else:
                result.parameters[name] = self.placeholder(node_name, f"parameters.{name}")
        known_arts = known.get("artifacts") or {}
        for art in outputs.get("artifacts") or []:
            name = str(art.get("name"))
            if name in known_arts:
                result.artifacts[name] = dict(known_arts[name])
                continue
            produced = {k: copy.deepcopy(v) for k, v in art.items() if k in ("name", "path", *ARTIFACT_DRIVERS)}
            if not any(k in produced for k in ARTIFACT_DRIVERS):
                suffix = "" if isinstance((art.get("archive") or {}).get("none"), Mapping) else ".tgz"
                owner = pod or node_id(self.identity.name, node_name)
                produced["s3"] = {"key": f"{self.identity.name}/{owner}/{name}{suffix}"}
            result.artifacts[name] = produced
        result.result = known.get("result") if "result" in known else self.placeholder(node_name, "result")
        result.exit_code = str(known.get("exitCode", "0"))
        return result

    def composite_outputs(
        self,
        node_name: str,
        processed: Mapping[str, Any],
        scope: Mapping[str, str],
        art_scope: Mapping[str, Mapping[str, Any]],
        lookup: tuple[str, ...],
    ) -> _Result:
        """Outputs of a steps/dag node: `valueFrom.parameter` and artifact `from` resolved in its scope."""
        known = self.known_outputs(lookup) or {}
        result = _Result(node_id(self.identity.name, node_name), TaskState(succeeded=True, any_succeeded=True))
        outputs = processed.get("outputs") or {}
        values = {**self.globals, **scope}
        known_params = known.get("parameters") or {}
        for param in outputs.get("parameters") or []:
            name = str(param.get("name"))
            value_from = param.get("valueFrom") or {}
            value: str | None = None
            if name in known_params:
                value = str(known_params[name])
            elif param.get("value") is not None:
                value = any_string(substitute(any_string(param["value"]), values))
            elif isinstance(value_from, Mapping) and value_from.get("parameter"):
                value = str(substitute(str(value_from["parameter"]), values))
                if "{{" in value:
                    value = None
            if value is None and isinstance(value_from, Mapping) and value_from.get("default") is not None:
                value = any_string(value_from["default"])
            result.parameters[name] = value if value is not None else self.placeholder(node_name, f"parameters.{name}")
        for art in outputs.get("artifacts") or []:
            name = str(art.get("name"))
            source = str(art.get("from") or "")
            ref = source.strip()[2:-2].strip() if source.strip().startswith("{{") else ""
            if ref in art_scope:
                result.artifacts[name] = {**dict(art_scope[ref]), "name": name}
        if "result" in known:
            result.result = known.get("result")
        return result

    def register(
        self, prefix: str, name: str, result: _Result, scope: dict[str, str], art_scope: dict[str, dict[str, Any]]
    ) -> None:
        """Expose a finished node as `<prefix>.<name>.…` (steps.go/dag.go `addOutputsToScope`)."""
        base = f"{prefix}.{name}"
        scope[f"{base}.id"] = result.node_id
        scope[f"{base}.status"] = _phase(result.state)
        started = self.globals["workflow.creationTimestamp"]
        scope[f"{base}.startedAt"] = started
        scope[f"{base}.finishedAt"] = started
        if result.children is not None:
            values: list[Any] = []
            per_child: list[dict[str, str]] = []
            for child in result.children:
                per_child.append(dict(child.parameters))
                if child.result is not None:
                    try:
                        values.append(json.loads(child.result))
                    except ValueError:
                        values.append(child.result)
            scope[f"{base}.outputs.result"] = go_json(values)
            scope[f"{base}.outputs.parameters"] = go_json(per_child)
            names = {n for child in result.children for n in child.parameters}
            for param in sorted(names):
                scope[f"{base}.outputs.parameters.{param}"] = go_json(
                    [c.parameters[param] for c in result.children if param in c.parameters]
                )
            return
        if result.exit_code is not None:
            scope[f"{base}.exitCode"] = result.exit_code
        if result.result is not None:
            scope[f"{base}.outputs.result"] = result.result
        for param, value in result.parameters.items():
            scope[f"{base}.outputs.parameters.{param}"] = value
        if result.parameters:
            scope[f"{base}.outputs.parameters"] = go_json(result.parameters)
        for art_name, art in result.artifacts.items():
            art_scope[f"{base}.outputs.artifacts.{art_name}"] = dict(art)

    # -- expansion -------------------------------------------------------------------------------------------------
    def expand(self, item_holder: Mapping[str, Any], values: Mapping[str, str]) -> list[dict[str, Any]] | str:
        """`expandStep`/`expandTask`: one step per item, named `<name>(i:<item>)`; a reason if impossible."""
        name = str(item_holder.get("name"))
        items: list[Any]
        if item_holder.get("withItems") is not None:
            items = list(item_holder["withItems"])
        elif item_holder.get("withParam") is not None:
            raw = substitute(item_holder["withParam"], values)
            if isinstance(raw, list):
                items = raw
            else:
                text = str(raw)
                if "{{" in text or PLACEHOLDER_PREFIX in text:
                    return f"withParam {item_holder['withParam']!r} depends on outputs the expansion does not know"
                try:
                    parsed = json.loads(text)
                except ValueError:
                    return f"withParam value is not a JSON list: {text[:80]!r}"
                if not isinstance(parsed, list):
                    return f"withParam value is not a JSON list: {text[:80]!r}"
                items = parsed
        elif item_holder.get("withSequence") is not None:
            sequence = substitute(dict(item_holder["withSequence"]), values)
            try:
                items = _expand_sequence(sequence)
            except ValueError as exc:
                return f"withSequence {item_holder['withSequence']!r} cannot be expanded: {exc}"
        else:
            return [dict(item_holder)]
        base = {k: v for k, v in item_holder.items() if k not in ("withItems", "withParam", "withSequence")}
        expanded: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            item_values, desc = _item_values(item)
            new = dict(substitute(base, {**values, **item_values}))
            new["name"] = _generate_node_name(name, index, desc)
            new["template"] = base.get("template")
            if base.get("template") is None:
                new.pop("template", None)
            expanded.append(new)
        return expanded

    def step_call(
        self,
        child_name: str,
        step: Mapping[str, Any],
        original_name: str,
        values: Mapping[str, str],
        art_scope: Mapping[str, Mapping[str, Any]],
        ctx: _TemplateScope,
        boundary: Mapping[str, Any],
        stack: tuple[str, ...],
        on_exit: bool,
        prefix: str,
    ) -> _Result:
        """Resolve a step's references, evaluate `when`, execute it (and its exit hook)."""
        nid = node_id(self.identity.name, child_name)
        notes: list[str] = []
        when = step.get("when")
        if when:
            resolved_when = str(substitute(str(when), values))
            verdict = evaluate_when(resolved_when, (PLACEHOLDER_PREFIX,))
            if verdict is False:
                self.skip(
                    child_name,
                    "skipped",
                    f"when {resolved_when!r} evaluated false",
                    name=str(step.get("template") or ""),
                )
                return _Result(nid, TaskState(skipped=True))
            if verdict is None:
                notes.append(f"when {resolved_when!r} could not be evaluated; assumed true")
        resolved = substitute({k: v for k, v in step.items() if k not in ("hooks", "onExit")}, values)
        args = dict(resolved.get("arguments") or {})
        arts = []
        for art in args.get("artifacts") or []:
            source = str(art.get("from") or "").strip()
            if source.startswith("{{") and source.endswith("}}"):
                ref = source[2:-2].strip()
                if ref in art_scope:
                    arts.append({**dict(art_scope[ref]), "name": art.get("name")})
                    continue
                if art.get("optional"):
                    continue
                arts.append({"name": art.get("name"), "s3": {"key": f"{PLACEHOLDER_PREFIX}{ref}"}})
                notes.append(f"artifact {art.get('name')} from {ref} unknown; placeholder key")
            elif art.get("fromExpression"):
                arts.append(
                    {"name": art.get("name"), "s3": {"key": f"{PLACEHOLDER_PREFIX}{art.get('fromExpression')}"}}
                )
                notes.append(f"artifact {art.get('name')} fromExpression not evaluated; placeholder key")
            else:
                arts.append(dict(art))
        args["artifacts"] = arts
        local = {f"{prefix}.name": str(step.get("name"))}
        before = len(self.invocations)
        result = self.execute(child_name, resolved, args, ctx, boundary, stack, on_exit, local, original_name)
        if notes:
            self.annotate(before, notes)
        exit_hook: Mapping[str, Any] | None = None
        if step.get("onExit"):
            exit_hook = {"template": step["onExit"]}
        elif isinstance((step.get("hooks") or {}).get("exit"), Mapping):
            exit_hook = step["hooks"]["exit"]
        if exit_hook is not None:
            hook = substitute(dict(exit_hook), values)
            self.execute(
                f"{child_name}.onExit", hook, dict(hook.get("arguments") or {}), ctx, boundary, stack, True, {}, ""
            )
        other = [k for k in (step.get("hooks") or {}) if k != "exit"]
        if other:
            self.notes.append(f"{child_name}: lifecycle hooks not modelled: {', '.join(map(str, other))}")
        return result

    def annotate(self, start: int, notes: list[str]) -> None:
        """Attach notes to the invocations a step produced (its pod, or its subtree)."""
        for index in range(start, len(self.invocations)):
            inv = self.invocations[index]
            self.invocations[index] = dataclasses.replace(inv, notes=(*inv.notes, *notes))

    def run_group_item(
        self,
        parent: str,
        step: Mapping[str, Any],
        values: Mapping[str, str],
        art_scope: Mapping[str, Mapping[str, Any]],
        ctx: _TemplateScope,
        boundary: Mapping[str, Any],
        stack: tuple[str, ...],
        on_exit: bool,
        prefix: str,
    ) -> _Result:
        """Expand one step/task and run each expansion; a group result when it expanded."""
        name = str(step.get("name"))
        group_node = f"{parent}.{name}"
        expanded = self.expand(step, values)
        if isinstance(expanded, str):
            self.skip(group_node, "skipped", expanded, name=str(step.get("template") or ""))
            return _Result(node_id(self.identity.name, group_node), TaskState(skipped=True))
        is_group = any(step.get(k) is not None for k in ("withItems", "withParam", "withSequence"))
        results = [
            self.step_call(
                f"{parent}.{item['name']}", item, name, values, art_scope, ctx, boundary, stack, on_exit, prefix
            )
            for item in expanded
        ]
        if not is_group:
            return results[0]
        succeeded = all(r.state.succeeded or r.state.skipped for r in results)
        state = TaskState(
            succeeded=succeeded,
            skipped=not results,
            any_succeeded=any(r.state.succeeded for r in results),
        )
        return _Result(node_id(self.identity.name, group_node), state, children=results)

    def run_steps(
        self,
        node_name: str,
        tmpl: Mapping[str, Any],
        processed: Mapping[str, Any],
        ctx: _TemplateScope,
        scope: dict[str, str],
        art_scope: dict[str, dict[str, Any]],
        stack: tuple[str, ...],
        on_exit: bool,
        globals_: Mapping[str, str],
    ) -> None:
        for index, group in enumerate(processed.get("steps") or []):
            group_node = f"{node_name}[{index}]"
            steps = group if isinstance(group, list) else [group]
            finished: list[tuple[str, _Result]] = []
            for step in steps:
                if not isinstance(step, Mapping):
                    continue
                values = {**globals_, **scope}
                result = self.run_group_item(group_node, step, values, art_scope, ctx, tmpl, stack, on_exit, "steps")
                finished.append((str(step.get("name")), result))
            for name, result in finished:
                self.register("steps", name, result, scope, art_scope)

    def run_dag(
        self,
        node_name: str,
        tmpl: Mapping[str, Any],
        processed: Mapping[str, Any],
        ctx: _TemplateScope,
        scope: dict[str, str],
        art_scope: dict[str, dict[str, Any]],
        stack: tuple[str, ...],
        on_exit: bool,
        globals_: Mapping[str, str],
    ) -> None:
        dag = processed.get("dag") or {}
        tasks = [t for t in dag.get("tasks") or [] if isinstance(t, Mapping)]
        by_name = {str(t.get("name")): t for t in tasks}
        deps = {name: _task_dependencies(task) for name, task in by_name.items()}
        wanted = _dag_targets(dag, deps)
        states: dict[str, TaskState] = {}
        pending = [name for name in by_name if name in wanted]
        while pending:
            ready = next((n for n in pending if all(d in states or d not in by_name for d in deps[n])), None)
            if ready is None:
                self.notes.append(f"{node_name}: dependency cycle among {', '.join(pending)}; not expanded")
                for name in pending:
                    self.skip(f"{node_name}.{name}", "skipped", "dependency cycle")
                return
            pending.remove(ready)
            task = by_name[ready]
            task_node = f"{node_name}.{ready}"
            go = _task_should_run(task, states)
            if go is False:
                states[ready] = TaskState(omitted=True)
                self.skip(
                    task_node,
                    "skipped",
                    "depends/dependencies not satisfied when every step succeeds",
                    name=str(task.get("template") or ""),
                )
                continue
            values = {**globals_, **scope}
            result = self.run_group_item(node_name, task, values, art_scope, ctx, tmpl, stack, on_exit, "tasks")
            if go is None:
                self.notes.append(f"{task_node}: depends {task.get('depends')!r} not understood; assumed satisfied")
            states[ready] = result.state
            self.register("tasks", ready, result, scope, art_scope)




def _phase(state: TaskState) -> str:
    if state.skipped:
        return "Skipped"
    if state.omitted:
        return "Omitted"
    if state.errored:
        return "Error"
    if state.daemoned:
        return "Running"
    return "Succeeded"


def _task_dependencies(task: Mapping[str, Any]) -> list[str]:
    if task.get("depends"):
        return depends_task_names(str(task["depends"]))
    return [str(d) for d in task.get("dependencies") or []]


def _task_should_run(task: Mapping[str, Any], states: Mapping[str, TaskState]) -> bool | None:
    if task.get("depends"):
        return evaluate_depends(str(task["depends"]), states)
    for dep in task.get("dependencies") or []:
        state = states.get(str(dep))
        if state is not None and not (state.succeeded or state.skipped or state.daemoned):
            return False
    return True


def _dag_targets(dag: Mapping[str, Any], deps: Mapping[str, list[str]]) -> set[str]:
    target = dag.get("target")
    if not target:
        return set(deps)
    wanted: set[str] = set()
    todo = [t for t in re.split(r"[\s,]+", str(target)) if t]
    while todo:
        name = todo.pop()
        if name in wanted or name not in deps:
            continue
        wanted.add(name)
        todo.extend(deps[name])
    return wanted


def _expand_sequence(sequence: Mapping[str, Any]) -> list[Any]:
    """`expandSequence` (operator.go): string items formatted with `format` (default `%d`)."""

    def as_int(value: Any) -> int:
        text = str(value).strip()
        if "{{" in text or PLACEHOLDER_PREFIX in text:
            raise ValueError(f"unresolved value {text!r}")
        return int(text)

    start = as_int(sequence["start"]) if sequence.get("start") is not None else 0
    if sequence.get("end") is not None:
        end = as_int(sequence["end"])
    elif sequence.get("count") is not None:
        count = as_int(sequence["count"])
        if count == 0:
            return []
        end = start + count - 1
    else:
        raise ValueError("neither end nor count was specified")
    fmt = str(sequence.get("format") or "%d")
    step = 1 if start <= end else -1
    return [fmt % i for i in range(start, end + step, step)]


def _item_string(value: Any) -> str:
    """`Item.String`: JSON of the value, unquoted for strings, HTML escapes undone (jsonutil.Fix)."""
    text = go_json(value)
    if isinstance(value, str):
        text = text[1:-1]
    return text.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")


def _item_values(item: Any) -> tuple[dict[str, str], str]:
    """`processItem`: the `item`/`item.x` variables and the node-name description of one item."""
    if isinstance(item, Mapping):
        values = {f"item.{k}": _item_string(v) for k, v in item.items()}
        values["item"] = go_json({k: item[k] for k in sorted(item)})
        desc = ",".join(sorted(f"{k}:{_item_string(v)}" for k, v in item.items()))
        return values, desc
    if isinstance(item, list):
        return {"item": go_json(item)}, "[" + " ".join(_item_string(x) for x in item) + "]"
    if isinstance(item, str):
        return {"item": item}, _item_string(item)
    return {"item": _item_string(item)}, _item_string(item)


def _generate_node_name(name: str, index: int, desc: str) -> str:
    """`generateNodeName`: `name(index:desc)` with parentheses removed from the description."""
    clean = desc.replace("(", "").replace(")", "")
    return f"{name}({index}:{clean})"


def _has_output_result_ref(name: str, parent: Mapping[str, Any]) -> bool:
    """`hasOutputResultRef`: does the parent template mention `steps|tasks.<name>.outputs.result`?"""
    text = json.dumps(parent)
    prefix = "tasks" if parent.get("dag") is not None else "steps" if parent.get("steps") is not None else ""
    reference = prefix + rf"\.{name}\.outputs\.result"
    expression = prefix + rf"\[['\"]{name}['\"]\]\.outputs.result"
    try:
        return re.search(reference, text) is not None or re.search(expression, text) is not None
    except re.error:
        return False


def expand_workflow(
    workflow: Mapping[str, Any],
    *,
    outputs: Mapping[str, NodeOutputs] | None = None,
    template_sources: Sequence[Mapping[str, Any]] = (),
    parameters: Mapping[str, Any] | None = None,
    config: ControllerConfig = DEFAULT_CONFIG,
) -> Expansion:
    """Expand `workflow` (any workflow kind; see `as_workflow`) into its step invocations, in order.

    `outputs` supplies known outputs of finished nodes, keyed by node name (`wf[0].generate`) or, as a
    fallback, by step/task name (`generate`). `template_sources` are the documents `templateRef` and
    `workflowTemplateRef` may point at. `parameters` override workflow arguments like `argo submit -p`;
    parameters left without a value get a placeholder. Never raises for a malformed or unsupported workflow:
    what cannot be walked is reported in the result.
    """
    converted = as_workflow(workflow, template_sources)
    if isinstance(converted, str):
        ident = workflow_identity(workflow)
        return Expansion(workflow=dict(workflow), identity=ident, invocations=(), notes=(converted,))
    notes = _fill_workflow_parameters(converted, parameters or {})
    ident = workflow_identity(converted)
    meta = converted.setdefault("metadata", {})
    meta["name"] = ident.name
    meta.pop("generateName", None)
    meta["namespace"] = ident.namespace
    meta["uid"] = ident.uid
    walker = _Expander(converted, ident, outputs or {}, template_sources, config)
    walker.run()
    return Expansion(
        workflow=converted, identity=ident, invocations=tuple(walker.invocations), notes=(*notes, *walker.notes)
    )


def _fill_workflow_parameters(workflow: dict[str, Any], overrides: Mapping[str, Any]) -> list[str]:
    """Apply submit-time `-p name=value` overrides; give value-less parameters a placeholder (and say so).

    The controller refuses a workflow whose parameter has neither value nor a resolvable `valueFrom`; KFP
    files leave pipeline parameters empty for the UI to fill, so the expansion fills them rather than stopping.
    """
    notes: list[str] = []
    spec = workflow.setdefault("spec", {})
    arguments = spec.setdefault("arguments", {}) if isinstance(spec.get("arguments"), Mapping | None) else {}
    params = arguments.get("parameters") or []
    seen: set[str] = set()
    filled: list[dict[str, Any]] = []
    for raw in params:
        param = dict(raw)
        name = str(param.get("name"))
        seen.add(name)
        value_from = param.get("valueFrom") or {}
        if name in overrides:
            param["value"] = any_string(overrides[name])
            param.pop("valueFrom", None)
        elif param.get("value") is None and not (isinstance(value_from, Mapping) and "default" in value_from):
            param["value"] = f"{PLACEHOLDER_PREFIX}workflow.parameters.{name}"
            param.pop("valueFrom", None)
            notes.append(f"workflow parameter {name} has no value; placeholder used")
        filled.append(param)
    for name, value in overrides.items():
        if name not in seen:
            filled.append({"name": name, "value": any_string(value)})
    if filled:
        arguments["parameters"] = filled
        spec["arguments"] = arguments
    return notes


def iter_corpus_documents(root: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """Every YAML file under `root` with its documents (helper for tests and the demo; reads, never copies)."""
    for path in sorted(root.rglob("*.yaml")):
        yield path, load_documents(path)
