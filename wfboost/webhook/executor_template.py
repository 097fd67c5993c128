"""The template Argo's executor reads, rewritten in the pod: where both a replay and a write-once run change it.

The controller hands the executor the step's template as JSON in the env var ARGO_TEMPLATE, on the containers that
read it: every container at 3.5, the init container from 3.6 (it writes /var/run/argo/template for the others), the
supervisor in 4.1's init-less layout (workflow/controller/workflowpod.go createWorkflowPod at v3.5.14, v3.6.19,
v4.1.2). A template over the env limit is offloaded: the value is then `offloaded` and the JSON sits in a ConfigMap
the executor reads (`common.ResolveTemplateEnvValue`); the step already holds that copy, and a rewrite inlines it.

The kubelet expands `$(NAME)` and turns `$$` into `$` in env values. The controller's own JSON went through that
expansion before the executor read it, so a rewrite of it keeps every `$` as written and is expanded the same way.
The offloaded copy never did (the executor read it from a file), so an inlined copy has every `$` doubled
(`kubelet_literal`) and reaches the executor exactly as the file held it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wfboost.argo import names
from wfboost.argo.pods import ArgoStep
from wfboost.argo.template_json import dumps_template, loads_template
from wfboost.structs.patch import PatchOp
from wfboost.webhook.errors import WebhookError

# One env string, "ARGO_TEMPLATE=" and its value with the terminating NUL, must stay within MAX_ARG_STRLEN (128 KiB)
# or the container cannot start (E2BIG); the controller offloads at this size for the same reason.
MAX_ENV_VALUE = 131072 - len("ARGO_TEMPLATE=") - 1

# Where an ARGO_TEMPLATE value sits in the pod: (field, container index, env index).
EnvSlot = tuple[str, int, int]
Transform = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class TemplateTooLarge(WebhookError, ValueError):
    """The rewritten template would not fit in one env string (and the pod could not start)."""


def kubelet_literal(text: str) -> str:
    """`text` such that the kubelet's `$(VAR)` expansion hands it over unchanged (`$$` is its escape for `$`)."""
    return text.replace("$", "$$")


def template_slots(step: ArgoStep) -> list[EnvSlot]:
    """Every place the pod carries ARGO_TEMPLATE."""
    spec = step.pod.get("spec") or {}
    slots = []
    for field in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(field) or []):
            for position, env in enumerate(container.get("env") or []):
                if type(env) is dict and env.get("name") == names.ENV_TEMPLATE:  # a pod read from JSON: dicts
                    slots.append((field, index, position))
    return slots


def rewritten_values(step: ArgoStep, transform: Transform,
                     slots: list[EnvSlot] | None = None) -> dict[EnvSlot, str]:
    """The new ARGO_TEMPLATE value of each slot (`slots`: template_slots, when the caller has them); TemplateTooLarge
    when one would not fit."""
    spec = step.pod.get("spec") or {}
    values = {}
    done: dict[Any, str] = {}  # at 3.5 every container carries the same text: rewritten once
    for slot in template_slots(step) if slots is None else slots:
        field, index, position = slot
        value = (spec[field][index]["env"][position]).get("value")
        if value not in done:
            done[value] = _rewritten(value, step, transform)
        values[slot] = done[value]
    return values


def offloaded(step: ArgoStep, slots: list[EnvSlot] | None = None) -> bool:
    """Whether some executor container reads the template from Argo's ConfigMap instead of its env."""
    spec = step.pod.get("spec") or {}
    return any(
        spec[field][index]["env"][position].get("value") in (None, names.TEMPLATE_OFFLOADED)
        for field, index, position in (template_slots(step) if slots is None else slots)
    )


def value_ops(values: Mapping[EnvSlot, str], *, skip_container: tuple[str, int] | None = None) -> list[PatchOp]:
    """Operations that put the values in place (a container replaced whole is skipped). `add`, which replaces an
    existing member and creates a missing one: an env entry may lack `value` (a `replace` there fails the pod)."""
    return [
        {"op": "add", "path": f"/spec/{field}/{index}/env/{position}/value", "value": value}
        for (field, index, position), value in values.items()
        if (field, index) != skip_container
    ]


def _rewritten(value: Any, step: ArgoStep, transform: Transform) -> str:
    template: Any = None
    inlined = value in (None, names.TEMPLATE_OFFLOADED)
    if not inlined and value == step.template_text:
        template = step.template  # the copy parse_pod read: not parsed again
    elif not inlined:
        try:
            template = loads_template(str(value))
        except ValueError:
            template = None
    if not isinstance(template, Mapping):
        template, inlined = step.template or {}, True
    text = dumps_template(transform(template))
    if inlined:
        text = kubelet_literal(text)
    if len(text.encode()) > MAX_ENV_VALUE:
        raise TemplateTooLarge(f"the executor's template would be {len(text.encode())} bytes, over one env string")
    return text
