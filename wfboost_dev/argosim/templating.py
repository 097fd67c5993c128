"""Argo's `{{…}}` substitution and input processing, as the controller applies them before building a pod.

Read from `util/template` (fasttemplate with `{{`/`}}`, tag trimmed, unresolved tags written back verbatim
when allowed) and `workflow/common/util.go` `ProcessArgs`/`SubstituteParams` (v3.7.18 util.go:160-288;
same logic at v3.5.14, v3.6.19 and v4.1.2).

Differences from the Go code, on purpose:

* Argo substitutes inside the *JSON text* of the template; we walk the object and substitute inside each string
  (and map key). The result is the same for every value that does not itself contain JSON-breaking quotes.
* `{{=expression}}` tags (expr-lang) are left unresolved: evaluating expr is out of scope. Such pods keep the
  literal tag, which a reader of the fixture can see.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any, cast

from wfboost_dev.argosim.gojson import go_json, go_order

__all__ = [
    "PodBuildError",
    "any_string",
    "artifact_has_location",
    "artifact_has_location_or_key",
    "find_tags",
    "process_args",
    "substitute",
    "substitute_string",
]

_TAG = re.compile(r"\{\{(.*?)\}\}", re.S)

# ArtifactLocation drivers and the field that holds each one's key (`GetKey` in workflow_types.go).
_KEY_FIELDS = {
    "s3": "key",
    "oss": "key",
    "gcs": "key",
    "azure": "blob",
    "hdfs": "path",
    "artifactory": "url",
    "http": "url",
    "git": "repo",
    "raw": "data",
    "plugin": "key",
}


class PodBuildError(ValueError):
    """The controller would refuse to create this pod (it marks the node Error with this message)."""


def any_string(value: Any) -> str:
    """Render a parameter value as Argo's `AnyString` does: YAML numbers/bools become their JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return go_json(value)


def find_tags(text: str) -> list[str]:
    """The trimmed tags (`inputs.parameters.x`, `=expr`) in a string, in order."""
    return [m.group(1).strip() for m in _TAG.finditer(text)]


def substitute_string(text: str, values: Mapping[str, str]) -> str:
    """Replace every `{{tag}}` whose trimmed name is in `values`; leave the others exactly as written."""
    if "{{" not in text:
        return text

    def repl(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        value = values.get(key)
        return match.group(0) if value is None else value

    return _TAG.sub(repl, text)


def substitute(obj: Any, values: Mapping[str, str]) -> Any:
    """Substitute in every string (values and keys) of a JSON-like object.

    Parts without any change are returned as they are (not copied): callers that mutate the result must own
    the input. This keeps a pass over a multi-megabyte KFP template cheap when it holds no tags.
    """
    if isinstance(obj, str):
        return substitute_string(obj, values) if "{{" in obj else obj
    if isinstance(obj, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, value in obj.items():
            new_key = substitute_string(key, values) if isinstance(key, str) and "{{" in key else key
            new_value = substitute(value, values)
            changed = changed or new_key is not key or new_value is not value
            out[new_key] = new_value
        return out if changed else obj
    if isinstance(obj, list):
        items = [substitute(x, values) for x in obj]
        return items if any(a is not b for a, b in zip(items, obj, strict=True)) else obj
    return obj


def artifact_has_location(art: Mapping[str, Any]) -> bool:
    """`ArtifactLocation.HasLocation`: a driver block complete enough to fetch from (workflow_types.go)."""
    s3 = art.get("s3")
    if isinstance(s3, Mapping) and s3.get("endpoint") and s3.get("bucket") and s3.get("key"):
        return True
    oss = art.get("oss")
    if isinstance(oss, Mapping) and oss.get("endpoint") and oss.get("bucket") and oss.get("key"):
        return True
    gcs = art.get("gcs")
    if isinstance(gcs, Mapping) and gcs.get("bucket") and gcs.get("key"):
        return True
    azure = art.get("azure")
    if isinstance(azure, Mapping) and azure.get("endpoint") and azure.get("container") and azure.get("blob"):
        return True
    git = art.get("git")
    if isinstance(git, Mapping) and git.get("repo"):
        return True
    http = art.get("http")
    if isinstance(http, Mapping) and http.get("url"):
        return True
    hdfs = art.get("hdfs")
    if isinstance(hdfs, Mapping) and hdfs.get("addresses"):
        return True
    artifactory = art.get("artifactory")
    if isinstance(artifactory, Mapping) and artifactory.get("url") and artifactory.get("usernameSecret"):
        return True
    return isinstance(art.get("raw"), Mapping)


def artifact_has_location_or_key(art: Mapping[str, Any]) -> bool:
    """`Artifact.HasLocationOrKey`: a full location, or at least a key the repository can complete."""
    if artifact_has_location(art):
        return True
    for driver, field in _KEY_FIELDS.items():
        block = art.get(driver)
        if isinstance(block, Mapping) and block.get(field):
            return True
    return False


def process_args(
    template: Mapping[str, Any],
    parameters: Mapping[str, Any],
    artifacts: Mapping[str, Mapping[str, Any]],
    global_params: Mapping[str, str],
    local_params: Mapping[str, str],
) -> dict[str, Any]:
    """`common.ProcessArgs` then `SubstituteParams`: give each input its value, then substitute.

    A parameter's value is, in order of precedence: the argument supplied, the template's own `value`, its
    `default`. Input artifacts supplied as arguments replace the template's declaration but keep its
    `path`, `mode` and `recurseMode` (util.go:194-215). Globals and locals are substituted first, then
    inputs, so inputs may reference globals (util.go:239-282).
    """
    tmpl: dict[str, Any] = copy.deepcopy(dict(template))
    inputs = tmpl.get("inputs")
    if isinstance(inputs, Mapping):
        inputs = dict(inputs)
        tmpl["inputs"] = inputs
        new_params: list[dict[str, Any]] = []
        for raw in inputs.get("parameters") or []:
            param = dict(raw)
            name = str(param.get("name", ""))
            if param.get("value") is None and param.get("default") is not None:
                param["value"] = param["default"]
            if name in parameters and parameters[name] is not None:
                param["value"] = parameters[name]
                param.pop("valueFrom", None)
            if param.get("value") is not None:
                param["value"] = any_string(param["value"])
            if param.get("default") is not None:
                param["default"] = any_string(param["default"])
            if param.get("value") is None and param.get("valueFrom") is None:
                raise PodBuildError(f"inputs.parameters.{name} was not supplied")
            new_params.append(param)
        if "parameters" in inputs:
            inputs["parameters"] = new_params
        new_arts: list[dict[str, Any]] = []
        for raw_art in inputs.get("artifacts") or []:
            art = dict(raw_art)
            name = str(art.get("name", ""))
            supplied = artifacts.get(name)
            if supplied is not None:
                replaced = copy.deepcopy(dict(supplied))
                replaced["name"] = name
                for field in ("path", "mode", "recurseMode"):
                    if field in art:
                        replaced[field] = art[field]
                    else:
                        replaced.pop(field, None)
                art = replaced
            elif not art.get("optional") and not artifact_has_location_or_key(art):
                raise PodBuildError(f"inputs.artifacts.{name} was not supplied")
            new_arts.append(art)
        if "artifacts" in inputs:
            inputs["artifacts"] = new_arts

    replace_map: dict[str, str] = {**global_params, **local_params}
    tmpl = substitute(tmpl, replace_map)
    inputs = tmpl.get("inputs") if isinstance(tmpl.get("inputs"), Mapping) else {}
    params = list(inputs.get("parameters") or []) if isinstance(inputs, Mapping) else []
    for param in params:
        if param.get("value") is not None:
            replace_map[f"inputs.parameters.{param.get('name')}"] = any_string(param["value"])
    replace_map["inputs.parameters"] = go_json(go_order(params, "[]Parameter"))
    for art in (inputs.get("artifacts") or []) if isinstance(inputs, Mapping) else []:
        if art.get("path"):
            replace_map[f"inputs.artifacts.{art.get('name')}.path"] = str(art["path"])
    outputs = tmpl.get("outputs") if isinstance(tmpl.get("outputs"), Mapping) else {}
    for art in (outputs.get("artifacts") or []) if isinstance(outputs, Mapping) else []:
        if art.get("path"):
            replace_map[f"outputs.artifacts.{art.get('name')}.path"] = str(art["path"])
    for param in (outputs.get("parameters") or []) if isinstance(outputs, Mapping) else []:
        value_from = param.get("valueFrom")
        if isinstance(value_from, Mapping) and value_from.get("path"):
            replace_map[f"outputs.parameters.{param.get('name')}.path"] = str(value_from["path"])
    return cast(dict[str, Any], substitute(tmpl, replace_map))
