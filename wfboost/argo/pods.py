"""Reading an Argo step pod, whatever controller release created it.

The layouts differ in where the step's template travels (docs/argo-pods.md): on every container with parameter
values (3.5), on the `init` container only with parameters cleared (3.6+), in a ConfigMap named after the pod when
over 128 KiB (`ARGO_TEMPLATE=offloaded`, 3.6+), on the `supervisor` container (4.1 init-less). Main-container args
over 128 KiB move to the same ConfigMap (3.7.10+). The user's command always follows emissary's `--`.

`parse_pod` is pure; `ArgoStep.offloads` names what must be read from the ConfigMap first, and `with_offloaded`
completes the step once it has been read (the webhook does that through the Kubernetes API, rarely).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from wfboost.argo import names
from wfboost.argo.template_json import loads_template

Layout = Literal["v3.5", "v3.6+", "v4.1-initless"]
TemplateKind = Literal["container", "script", "containerSet", "resource", "data", "http", "plugin", "unknown"]

_TEMPLATE_KINDS: tuple[TemplateKind, ...] = (
    "container", "script", "containerSet", "resource", "data", "http", "plugin"
)


class NotAnArgoStep(ValueError):
    """The pod was not created by the Argo controller for a step (or not in a shape we know)."""


class NotAContainerStep(NotAnArgoStep):
    """An Argo pod whose main container is argoexec itself (resource and data templates): nothing to memoize."""


@dataclass(frozen=True)
class ArgoStep:
    """An Argo step pod, parsed: who it belongs to and what the step runs."""

    pod: Mapping[str, Any]
    namespace: str
    pod_name: str
    workflow: str
    node_id: str
    node_name: str
    layout: Layout
    template: Mapping[str, Any] | None  # ARGO_TEMPLATE parsed; None while it sits in the offload ConfigMap
    main_index: int  # index of `main` in spec.containers (containerSet: of its first wrapped container)
    emissary_prefix: tuple[str, ...]  # main's command up to and including `--`
    command: tuple[str, ...]  # the user's command after `--`
    args: tuple[str, ...] | None  # None while offloaded to the ConfigMap (3.7.10+)
    include_script_output: bool
    template_text: str | None = None  # the ARGO_TEMPLATE text `template` was read from (a rewrite reuses it)

    @property
    def main(self) -> Mapping[str, Any]:
        return self.pod["spec"]["containers"][self.main_index]  # type: ignore[no-any-return]

    @property
    def workflow_uid(self) -> str:
        """The owning Workflow's uid (Argo sets the owner reference on every step pod); '' when absent."""
        return owner_workflow_uid(self.pod)

    @property
    def labels(self) -> Mapping[str, str]:
        return self.pod.get("metadata", {}).get("labels") or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.pod.get("metadata", {}).get("annotations") or {}

    @property
    def template_kind(self) -> TemplateKind:
        return template_kind(self.template)

    @property
    def offloads(self) -> tuple[str, ...]:
        """ConfigMap keys still to be read (the ConfigMap is named after the pod)."""
        missing = []
        if self.template is None:
            missing.append(names.ENV_TEMPLATE)
        if self.args is None:
            missing.append(names.ENV_CONTAINER_ARGS_FILE)
        return tuple(missing)

    def with_offloaded(self, data: Mapping[str, str]) -> ArgoStep:
        """The step completed with the offload ConfigMap's `data`."""
        template, args = self.template, self.args
        if template is None:
            if names.ENV_TEMPLATE not in data:
                raise NotAnArgoStep(f"ConfigMap {self.pod_name} has no {names.ENV_TEMPLATE}")
            template = _json_object(data[names.ENV_TEMPLATE], "offloaded ARGO_TEMPLATE")
        if args is None:
            if names.ENV_CONTAINER_ARGS_FILE not in data:
                raise NotAnArgoStep(f"ConfigMap {self.pod_name} has no {names.ENV_CONTAINER_ARGS_FILE}")
            loaded = json.loads(data[names.ENV_CONTAINER_ARGS_FILE])
            if not isinstance(loaded, list) or not all(isinstance(a, str) for a in loaded):
                raise NotAnArgoStep("offloaded args are not a JSON list of strings")
            args = tuple(loaded)
        return replace(self, template=template, args=args)


def owner_workflow_uid(obj: Mapping[str, Any]) -> str:
    """The uid of the Workflow owning a pod or a WorkflowTaskResult (both carry the owner reference)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("kind") == "Workflow":
            return str(ref.get("uid") or "")
    return ""


def is_argo_step_pod(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata")
    if not isinstance(meta, Mapping):
        return False
    labels, annotations = meta.get("labels"), meta.get("annotations")
    return (isinstance(labels, Mapping) and names.LABEL_WORKFLOW in labels
            and isinstance(annotations, Mapping) and names.ANNOTATION_NODE_ID in annotations)


def parse_pod(pod: Mapping[str, Any], namespace: str | None = None) -> ArgoStep:
    """Parse a pod as the Argo controller sent it; raises NotAnArgoStep with the reason otherwise."""
    meta = _object(pod.get("metadata"), "metadata")
    labels = _object(meta.get("labels"), "metadata.labels")
    annotations = _object(meta.get("annotations"), "metadata.annotations")
    _object(pod.get("spec"), "spec")
    if names.LABEL_WORKFLOW not in labels:
        raise NotAnArgoStep(f"no {names.LABEL_WORKFLOW} label")
    if names.ANNOTATION_NODE_ID not in annotations:
        raise NotAnArgoStep(f"no {names.ANNOTATION_NODE_ID} annotation (an agent or daemon pod?)")
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    init_containers = spec.get("initContainers") or []
    if not isinstance(containers, list) or not containers:
        raise NotAnArgoStep("no containers")
    by_name = {c.get("name"): i for i, c in enumerate(containers) if isinstance(c, dict)}
    layout = pod_layout(pod)

    raw_template = None
    for container in [*init_containers, *containers]:
        value = _env(container, names.ENV_TEMPLATE)
        if value is not None:
            raw_template = value
            break
    if raw_template is None:
        raise NotAnArgoStep(f"no {names.ENV_TEMPLATE} on any container")
    template = None if raw_template == names.TEMPLATE_OFFLOADED else _json_object(raw_template, "ARGO_TEMPLATE")

    main_index = by_name.get(names.CONTAINER_MAIN)
    if main_index is None:  # containerSet: user-named containers, each wrapped by emissary
        candidates = [i for i, c in enumerate(containers) if c.get("name") not in names.EXECUTOR_CONTAINERS]
        if not candidates:
            raise NotAnArgoStep("no main container")
        main_index = candidates[0]
    main = containers[main_index]
    command = list(main.get("command") or [])
    if names.EMISSARY_SEPARATOR not in command or "emissary" not in command:
        raise NotAnArgoStep("main container is not wrapped by emissary (only the emissary executor is supported)")
    cut = command.index(names.EMISSARY_SEPARATOR) + 1
    kind = template_kind(template)
    if kind in ("resource", "data") or _runs_argoexec(command[cut:]):
        # Argo wraps these with emissary too, around `argoexec resource|data` (operator.go executeResource,
        # executeData): the step is the executor acting on the API or on artifacts, not a function of a container.
        raise NotAContainerStep(f"a {kind if kind in ('resource', 'data') else 'resource or data'} step")
    args: tuple[str, ...] | None = tuple(str(a) for a in main.get("args") or [])
    if _env(main, names.ENV_CONTAINER_ARGS_FILE) is not None:
        args = None
    return ArgoStep(
        pod=pod,
        namespace=namespace or meta.get("namespace") or "",
        pod_name=str(meta.get("name") or ""),
        workflow=str(labels[names.LABEL_WORKFLOW]),
        node_id=str(annotations[names.ANNOTATION_NODE_ID]),
        node_name=str(annotations.get(names.ANNOTATION_NODE_NAME, "")),
        layout=layout,
        template=template,
        main_index=main_index,
        emissary_prefix=tuple(str(c) for c in command[:cut]),
        command=tuple(str(c) for c in command[cut:]),
        args=args,
        include_script_output=(_env(main, names.ENV_INCLUDE_SCRIPT_OUTPUT) or "").lower() == "true",
        template_text=None if template is None else raw_template,
    )


def pod_layout(pod: Mapping[str, Any]) -> Layout:
    """Which controller layout a step pod has (docs/argo-pods.md): init-less (v4.1 opt-in: a `supervisor`
    container, or no `init` container and argoexec from the `argoexec-bin` image volume; resource and data pods of
    that layout have no supervisor and carry ARGO_TEMPLATE on main, workflowpod_layout.go mainNeedsTemplateEnv),
    3.5 (ARGO_TEMPLATE on main), else 3.6+ (ARGO_TEMPLATE on init only)."""
    spec = pod.get("spec") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    init_names = {c.get("name") for c in spec.get("initContainers") or [] if isinstance(c, dict)}
    volumes = {v.get("name") for v in spec.get("volumes") or [] if isinstance(v, dict)}
    if any(c.get("name") == names.CONTAINER_SUPERVISOR for c in containers):
        return "v4.1-initless"
    if names.CONTAINER_INIT not in init_names and names.VOLUME_ARGOEXEC_BIN in volumes:
        return "v4.1-initless"
    if any(_env(c, names.ENV_TEMPLATE) is not None for c in containers if c.get("name") == names.CONTAINER_MAIN):
        return "v3.5"
    return "v3.6+"


def template_kind(template: Mapping[str, Any] | None) -> TemplateKind:
    """The kind of a template: which of the pod-creating fields it sets ("unknown" for none, or no template)."""
    if template is None:
        return "unknown"
    for kind in _TEMPLATE_KINDS:
        if template.get(kind) is not None:
            return kind
    return "unknown"


def _runs_argoexec(user_command: list[Any]) -> bool:
    """`argoexec resource …` / `argoexec data …` after emissary's `--`: a resource or data step, even when its
    template is still in the offload ConfigMap."""
    return len(user_command) >= 2 and str(user_command[0]).rsplit("/", 1)[-1] == "argoexec" and str(
        user_command[1]
    ) in ("resource", "data")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise NotAnArgoStep(f"{where} is a {type(value).__name__}, not an object")
    return value


def _env(container: Mapping[str, Any], name: str) -> str | None:
    for env in container.get("env") or []:
        if isinstance(env, dict) and env.get("name") == name:
            value = env.get("value")
            return str(value) if value is not None else ""
    return None


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = loads_template(text)
    except json.JSONDecodeError as exc:
        raise NotAnArgoStep(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise NotAnArgoStep(f"{what} is not a JSON object")
    return value
