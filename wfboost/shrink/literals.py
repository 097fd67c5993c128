"""Template literals: bulky strings written into a container or script template itself, moved out.

Workflow arguments are one source of bulk; the templates are the other. Kubeflow v1 puts each component's whole
spec in a template annotation (`pipelines.kubeflow.org/component_spec`) and its Python code in the container's
`command`; hand-written Workflows carry long `script.source` bodies and long input defaults. Each such string of at
least `shrink.valueThresholdBytes` is replaced by a reference, and the template gets the restore label, so its pods
go through the fail-closed restore entry, which puts the value back where Argo copied it:

- `script.source`: into `ARGO_TEMPLATE`, where the executor reads it (executor.go `StageFiles`, v3.5.14 to v4.1.2);
  only for a template whose JSON, as Go writes it, stays well under the size past which Argo moves `ARGO_TEMPLATE` to
  a ConfigMap, and that substitutes nothing and takes no input parameters (either can make it any size at run time);
- main's `command[]`, `args[]` and `env[].value` (of `container` or `script`): into the pod's main container;
- `metadata.annotations` values under `pipelines.kubeflow.org/` (Kubeflow v1's component specs): Argo copies a
  template's annotations onto its pods (workflowpod.go `addMetadata`), and restoring puts the value back there. Other
  keys stay: another product's webhook may read them at pod CREATE before wfboost's has restored them;
- the effective input default (`inputs.parameters[].value`, else `default`, what ProcessArgs gives an input no call
  passes) of an input the template only substitutes into those container strings (analysis.uses_reason), only where
  the whole spec is visible (a Workflow or a CronWorkflow's `workflowSpec`, no templates from elsewhere and no
  expression reading values: analysis.whole_spec_reason).

A literal holding `{{` stays (the controller substitutes inside it), as does one that starts with `}` or ends with `{`
(with the JSON text around it a tag could form) and one over 120 KiB (restored into one string it passes Linux's
128 KiB limit). Nothing moves in a spec that already holds reference text anywhere (a pod could receive that text
and restoring would change it). Nothing here is evaluated by the controller: these fields are copied into pods as
text (the substitution pass over the template's JSON leaves a string without `{{` as it is). Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from wfboost.argo import names
from wfboost.argo.offload import go_json_size
from wfboost.shrink.analysis import go_quotes_as_json, uses_reason, whole_spec_reason
from wfboost.shrink.refs import MARK, Reference, reference_for
from wfboost.structs.patch import PatchOp

__all__ = ["MOVED_ANNOTATIONS", "LiteralsPlan", "MovedValue", "plan_template_literals"]

# Annotations move only where every reader reads the stored pod: Kubeflow v1's (its metadata writer watches pods).
# Others may be read at pod CREATE by another product's webhook that runs before wfboost's (mutating webhook
# configurations are called in name order): Vault's agent templates, Istio's sidecar settings, and so on.
MOVED_ANNOTATIONS: Final = ("pipelines.kubeflow.org/",)


@dataclass(frozen=True)
class MovedValue:
    """A value moved to the side store: a workflow argument (by its name) or a template literal (by its place)."""

    name: str  # the argument's name, or where the literal was: templates[main].script.source
    reference: Reference
    value: str


@dataclass
class LiteralsPlan:
    moved: list[MovedValue] = field(default_factory=list)
    ops: list[PatchOp] = field(default_factory=list)
    receivers: set[str] = field(default_factory=set)  # templates whose pods now need restoring
    kept: dict[str, str] = field(default_factory=dict)  # where -> why a literal over the threshold stays
    saved: int = 0  # bytes, as JSON


def plan_template_literals(
    spec: Mapping[str, Any],
    *,
    min_bytes: int,
    max_bytes: int,
    max_template: int,
    defaults: bool,
    skip: frozenset[str] = frozenset(),
) -> LiteralsPlan:
    """The literals worth moving out of the templates of `spec`, except in templates `skip` (rewritten whole by an
    argument table), with the operations written against a Workflow (`/spec/templates/…`). `defaults`: input
    defaults may move (the whole spec is here)."""
    plan = LiteralsPlan()
    if MARK in orjson.dumps(spec).decode():
        return plan
    defaults = defaults and whole_spec_reason(spec) is None
    templates = {t["name"]: t for t in spec.get("templates") or [] if isinstance(t, Mapping) and "name" in t}
    for index, template in enumerate(spec.get("templates") or []):
        if not isinstance(template, Mapping) or not isinstance(template.get("name"), str):
            continue
        name = template["name"]
        if name in skip or ("container" not in template and "script" not in template):
            continue
        if "metadata" in template and not isinstance(template["metadata"], Mapping):
            continue
        script_stays = _script_stays(template, max_template)
        candidates = list(_strings(template))
        if defaults:
            candidates += list(_defaults(spec, templates, template))
        for path, where, value in candidates:
            if not isinstance(value, str) or len(value.encode()) < min_bytes:
                continue
            label = f"templates[{name}].{where}"
            why = _why_kept(value, max_bytes) or (script_stays if where == "script.source" else None)
            if why:
                plan.kept[label] = why
                continue
            reference = reference_for(value)
            plan.moved.append(MovedValue(label, reference, value))
            plan.ops.append({"op": "replace", "path": f"/spec/templates/{index}/{path}", "value": reference.text})
            plan.receivers.add(name)
            plan.saved += len(orjson.dumps(value)) - len(orjson.dumps(reference.text))
    return plan


def _script_stays(template: Mapping[str, Any], max_template: int) -> str | None:
    """Why a template's script source must stay inline: restored into ARGO_TEMPLATE, it must leave that string
    under the 128 KiB past which Argo (3.6+) moves it to a ConfigMap restoring cannot reach, as the controller
    measures it (Go's JSON, workflowpod.go createWorkflowPod) and as it will be at run time. Substituted values
    and input parameters (which ARGO_TEMPLATE carries before 3.7) can make it any size: such a template keeps it."""
    size = go_json_size(template)
    if size > max_template:
        return (f"the template is {size} bytes as Go writes it, near the 128 KiB past which Argo moves ARGO_TEMPLATE "
                "to a ConfigMap restoring cannot reach")
    inputs = template.get("inputs")
    if "{{" in orjson.dumps(template).decode() or (isinstance(inputs, Mapping) and inputs.get("parameters")):
        return ("the template substitutes values or takes input parameters: at run time its ARGO_TEMPLATE can pass "
                "the 128 KiB past which Argo moves it to a ConfigMap restoring cannot reach")
    return None


def _why_kept(value: str, max_bytes: int) -> str | None:
    size = len(value.encode())
    if size > max_bytes:
        return f"{size} bytes: restored into one string it would pass Linux's 128 KiB per-string limit"
    if "{{" in value:
        return "holds `{{`: the controller substitutes inside it"
    if value.endswith("{") or value.startswith("}"):
        return "starts with `}` or ends with `{`: with the text around it the controller could read a tag"
    return None


def _strings(template: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(JSON pointer under the template, readable place, value) of each literal Argo copies into a pod as text."""
    for key in ("container", "script"):
        body = template.get(key)
        if not isinstance(body, Mapping):
            continue
        for list_name in ("command", "args"):
            items = body.get(list_name)
            for position, text in enumerate(items if isinstance(items, list) else []):
                yield f"{key}/{list_name}/{position}", f"{key}.{list_name}[{position}]", text
        env = body.get("env")
        for position, variable in enumerate(env if isinstance(env, list) else []):
            if isinstance(variable, Mapping) and "valueFrom" not in variable:
                yield (f"{key}/env/{position}/value", f"{key}.env[{variable.get('name')}]",
                       variable.get("value"))
        if key == "script":
            yield "script/source", "script.source", body.get("source")
    annotations = (template.get("metadata") or {}).get("annotations")
    for key, text in (annotations.items() if isinstance(annotations, Mapping) else ()):
        if isinstance(key, str) and key.startswith(MOVED_ANNOTATIONS):
            yield (f"metadata/annotations/{key.replace('~', '~0').replace('/', '~1')}",
                   f"metadata.annotations[{key}]", text)


def _defaults(
    spec: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]], template: Mapping[str, Any]
) -> Iterator[tuple[str, str, Any]]:
    """The effective default of each input only substituted into container strings, when Argo's substitution gives
    it to the pod as it is (no reference, not the absent-optional marker, Go quotes it as JSON)."""
    inputs = template.get("inputs")
    parameters = inputs.get("parameters") if isinstance(inputs, Mapping) else None
    for position, parameter in enumerate(parameters if isinstance(parameters, list) else []):
        if not isinstance(parameter, Mapping) or not isinstance(parameter.get("name"), str):
            continue
        if "enum" in parameter or "valueFrom" in parameter:
            continue
        key = "value" if "value" in parameter else "default"
        value = parameter.get(key)
        if not isinstance(value, str) or value == names.ABSENT_OPTIONAL_OUTPUT or not go_quotes_as_json(value):
            continue
        if uses_reason(spec, templates, f"inputs.parameters.{parameter['name']}", template["name"]) is not None:
            continue
        yield f"inputs/parameters/{position}/{key}", f"inputs.parameters[{parameter['name']}].{key}", value
