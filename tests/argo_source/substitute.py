"""The controller's `{{...}}` substitution, simplified to what a step pod needs.

Mirrors workflow/common/util.go ProcessArgs -> SubstituteParams (run by operator.go executeTemplate before the pod is
built) and workflowpod.go substitutePodParams (run over the whole pod JSON inside createWorkflowPod). Argo replaces on
the JSON text with util/template simpleReplace, which JSON-quotes the value (strconv.Quote) so the decoded string holds
the raw value; replacing inside each decoded string, as done here, gives the same objects. Expression tags (`{{=...}}`)
and unknown tags are left as they are (allowUnresolved=true at both call sites).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.argo_source import gojson

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def replace(value: Any, params: Mapping[str, str]) -> Any:
    """Replace `{{tag}}` (tag trimmed, as simpleReplace does) in every string of a JSON-like value."""
    if isinstance(value, str):
        return _TAG.sub(lambda m: params.get(m.group(1).strip(), m.group(0)), value)
    if isinstance(value, list):
        return [replace(v, params) for v in value]
    if isinstance(value, dict):
        return {k: replace(v, params) for k, v in value.items()}
    return value


def process_args(
    template: Mapping[str, Any],
    arguments: Mapping[str, Any],
    artifact_arguments: Mapping[str, Mapping[str, Any]],
    global_params: Mapping[str, str],
    local_params: Mapping[str, str],
) -> dict[str, Any]:
    """common.ProcessArgs + SubstituteParams: fill inputs from arguments/defaults, then substitute."""
    tmpl = gojson.template(template)
    params = []
    for p in tmpl["inputs"].get("parameters", []):
        p = dict(p)
        # overwriteWithDefaultParams
        if p.get("value") is None and p.get("default") is not None:
            p["value"] = p["default"]
        # overwriteWithArguments
        if p["name"] in arguments:
            p["value"] = gojson.any_string(arguments[p["name"]])
            p.pop("valueFrom", None)
        if p.get("value") is None and not (p.get("valueFrom") or {}).get("configMapKeyRef"):
            raise ValueError(f"inputs.parameters.{p['name']} was not supplied")  # substituteAndGetConfigMapValue
        params.append(gojson.parameter(p))
    if params:
        tmpl["inputs"]["parameters"] = params
    arts = []
    for a in tmpl["inputs"].get("artifacts", []):
        if a["name"] in artifact_arguments:
            given = dict(artifact_arguments[a["name"]])
            given["name"] = a["name"]
            # ProcessArgs keeps the template's path, mode and recurseMode over the argument's
            for key in ("path", "mode", "recurseMode"):
                if key in a:
                    given[key] = a[key]
                else:
                    given.pop(key, None)
            a = gojson.artifact(given)
        arts.append(a)
    if arts:
        tmpl["inputs"]["artifacts"] = arts

    # SubstituteParams: globals and locals first, then what the template itself defines
    tmpl = replace(tmpl, {**global_params, **local_params})
    own: dict[str, str] = {}
    for p in tmpl["inputs"].get("parameters", []):
        if p.get("value") is not None:
            own["inputs.parameters." + p["name"]] = p["value"]
    own["inputs.parameters"] = gojson.marshal(tmpl["inputs"].get("parameters") or None)
    for a in tmpl["inputs"].get("artifacts", []):
        if a.get("path"):
            own[f"inputs.artifacts.{a['name']}.path"] = a["path"]
    for a in tmpl["outputs"].get("artifacts", []):
        if a.get("path"):
            own[f"outputs.artifacts.{a['name']}.path"] = a["path"]
    for p in tmpl["outputs"].get("parameters", []):
        if (p.get("valueFrom") or {}).get("path"):
            own[f"outputs.parameters.{p['name']}.path"] = p["valueFrom"]["path"]
    return gojson.template(replace(tmpl, own))


def pod_params(
    global_params: Mapping[str, str], template: Mapping[str, Any], pod_name: str
) -> dict[str, str]:
    """workflowpod.go substitutePodParams: globals, the template's input parameter values, and pod.name."""
    params = dict(global_params)
    for p in (template.get("inputs") or {}).get("parameters", []):
        params["inputs.parameters." + p["name"]] = p.get("value") or ""
    params["pod.name"] = pod_name
    return params
