"""The WorkflowTaskResult that Argo's wait container (v4.1.2 init-less: supervisor) leaves behind for a step.

Mirrors cmd/argoexec/commands/wait.go waitContainer (3.x) / postmain.go PostMain (v4.1.2, both auxiliary kinds) and
workflow/executor: InitializeOutput -> upsertTaskResult(NodeResult{}) -> createTaskResult (taskresult.go: name = node
id, labels workflow + report-outputs-completed=false [+ controller-instanceid], owner reference to the Workflow),
then CaptureScriptResult, SaveParameters, SaveArtifacts, SaveLogs, ReportOutputs (a JSON merge patch of
`{outputs: ...}`), and finally FinalizeOutput (merge patch of the label to "true"). monitorProgress may patch
`progress`. The executor reads its identity from its own env (ARGO_WORKFLOW_NAME, ARGO_WORKFLOW_UID, ARGO_NODE_ID,
ARGO_INCLUDE_SCRIPT_OUTPUT, ARGO_INSTANCE_ID) and the template from ARGO_TEMPLATE or, without it, from the file the
init container wrote from its own ARGO_TEMPLATE (cmd/argoexec/commands/root.go initExecutor, 3.x;
cmd/argoexec/executor/init.go Init, v4.1.2), which may be the offload ConfigMap.
"""

from __future__ import annotations

import copy
import json
import posixpath
from collections.abc import Collection, Mapping
from typing import Any

from tests.argo_source import argo, gojson
from tests.argo_source.pods import env_value

Json = dict[str, Any]

_MAX_RESULT = 256 * (1 << 10)  # CaptureScriptResult maxAnnotationSize


def _aux(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for c in pod["spec"]["containers"]:
        if c["name"] in (argo.WAIT, argo.SUPERVISOR):
            return c  # type: ignore[no-any-return]
    raise ValueError("no wait or supervisor container: resource/data pods report through argoexec in main")


def kubelet_expand(text: str, defined: Mapping[str, str]) -> str:
    """An env value as the process sees it: Kubernetes' third_party/forked/golang/expansion Expand, which the
    kubelet applies to env values (`$$` is a `$`, `$(NAME)` the value of an env var defined before it, anything
    else as written)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            if text[i + 1] == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(defined.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _expanded_env(container: Mapping[str, Any], name: str) -> str | None:
    defined: dict[str, str] = {}
    for e in container.get("env") or []:
        value = kubelet_expand(str(e.get("value", "")), defined)
        if e.get("name") == name:
            return value
        defined[str(e.get("name"))] = value
    return None


def executor_template(pod: Mapping[str, Any], configmap: Mapping[str, Any] | None = None) -> Json:
    """The template the executor works from (initExecutor / Init), as its process reads the env var."""
    raw = _expanded_env(_aux(pod), argo.ENV_TEMPLATE)
    if raw is None:  # "wait container reads template from the file written by init container"
        init = next(c for c in pod["spec"].get("initContainers") or [] if c["name"] == argo.INIT)
        raw = _expanded_env(init, argo.ENV_TEMPLATE)
    if raw == argo.TEMPLATE_OFFLOADED:  # read from /argo/config/ARGO_TEMPLATE, the ConfigMap volume
        if configmap is None:
            raise ValueError("the template is offloaded: pass the ConfigMap")
        raw = configmap["data"][argo.ENV_TEMPLATE]
    assert raw is not None
    value = json.loads(raw)
    assert isinstance(value, dict)
    return value


def _file_name(art: Mapping[str, Any]) -> str:
    # stageArchiveFile: no archive -> the path's base name; zip -> <name>.zip; tar (the default) -> <name>.tgz
    archive = art.get("archive")
    if archive and archive.get("none") is not None:
        return posixpath.basename(str(art["path"]).rstrip("/"))
    if archive and archive.get("zip") is not None:
        return f"{art['name']}.zip"
    return f"{art['name']}.tgz"


def _kind(loc: Mapping[str, Any]) -> str | None:
    for key in ("artifactory", "azure", "git", "gcs", "hdfs", "http", "oss", "raw", "s3"):
        if loc.get(key) is not None:
            return key
    return None


def _saved(art: Mapping[str, Any], archive: Mapping[str, Any] | None, file_name: str) -> Json:
    # saveArtifactFromFile: without a key of its own, the artifact gets the archive location's kind and
    # path.Join(archive key, file name) (SetType creates an empty location of that kind, SetKey sets only the key)
    out = copy.deepcopy(dict(art))
    own = _kind(out)
    if own is not None and (out[own].get("key") or out[own].get("url")):
        return gojson.artifact(out)
    kind = _kind(archive or {})
    if archive is None or kind is None:
        raise ValueError("You need to configure artifact storage")
    out[kind] = {"key": posixpath.join(archive[kind].get("key", ""), file_name)}
    return gojson.artifact(out)


def task_result(
    version: str,
    pod: Mapping[str, Any],
    outputs: Mapping[str, Any] | None,
    *,
    completed: bool = True,
    configmap: Mapping[str, Any] | None = None,
    progress: str | None = None,
) -> Json:
    """The WorkflowTaskResult as stored once the executor is done with it.

    `outputs` describes what the step left behind: {"parameters": {name: file content or None when the file is
    missing}, "stdout": main's stdout, "missing_artifacts": names of output artifacts whose path does not exist}.
    None means the executor only created the placeholder (InitializeOutput) and has not reported yet.
    `completed` is whether FinalizeOutput has run (the label report-outputs-completed is "true").
    """
    argo.tag(version)  # the four tags write the same object (taskresult.go unchanged but for field names)
    aux = _aux(pod)
    wf_name = env_value(aux, argo.ENV_WORKFLOW_NAME) or ""
    labels = {argo.LABEL_WORKFLOW: wf_name, argo.LABEL_REPORT_OUTPUTS_COMPLETED: "true" if completed else "false"}
    instance = env_value(aux, argo.ENV_INSTANCE_ID)
    if instance:
        labels[argo.LABEL_INSTANCE_ID] = instance
    result: Json = {
        "apiVersion": argo.API_VERSION,
        "kind": argo.KIND_TASK_RESULT,
        "metadata": {
            "name": env_value(aux, argo.ENV_NODE_ID),  # createTaskResult: Name = we.nodeID
            "namespace": pod["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [  # a plain reference: no controller / blockOwnerDeletion
                {"apiVersion": argo.API_VERSION, "kind": argo.KIND_WORKFLOW, "name": wf_name,
                 "uid": env_value(aux, argo.ENV_WORKFLOW_UID) or ""}
            ],
        },
    }
    if outputs is not None:
        result["outputs"] = _report_outputs(pod, outputs, configmap)
    if progress:
        result["progress"] = progress  # monitorProgress -> reportResult(NodeResult{Progress})
    return result


def _report_outputs(pod: Mapping[str, Any], given: Mapping[str, Any], configmap: Mapping[str, Any] | None) -> Json:
    aux = _aux(pod)
    tmpl = executor_template(pod, configmap)
    archive = tmpl.get("archiveLocation")
    if tmpl.get("resource") is not None:  # 3.7+ wait for a resource template: ReportOutputsLogs, logs only
        logs = [_saved({"name": "main-logs"}, archive, "main.log")] if (archive or {}).get("archiveLogs") else []
        return {"artifacts": logs} if logs else {}
    outs = copy.deepcopy(tmpl.get("outputs") or {})  # ReportOutputs: we.Template.Outputs.DeepCopy()

    if env_value(aux, argo.ENV_INCLUDE_SCRIPT_OUTPUT) == "true" and any(
        tmpl.get(k) is not None for k in ("container", "script", "containerSet", "data")
    ):  # CaptureScriptResult (Template.HasOutput)
        out = str(given.get("stdout", ""))
        if out.endswith("\n"):
            out = out[:-1]  # "Trims off a single newline for user convenience"
        raw = out.encode()
        if len(raw) > _MAX_RESULT:
            out = raw[-_MAX_RESULT:].decode(errors="ignore")
        outs["result"] = out

    files = given.get("parameters") or {}
    for p in outs.get("parameters") or []:  # SaveParameters: only valueFrom.path parameters are read
        path = (p.get("valueFrom") or {}).get("path")
        if not path:
            continue
        content = files.get(p["name"])
        if content is None:
            default = p["valueFrom"].get("default")
            if default is None:
                raise FileNotFoundError(path)
            content = default
        p["value"] = content[:-1] if content.endswith("\n") else content
    if outs.get("parameters"):
        outs["parameters"] = [gojson.parameter(p) for p in outs["parameters"]]

    missing: Collection[str] = given.get("missing_artifacts") or ()
    saved = []
    for art in tmpl.get("outputs", {}).get("artifacts") or []:  # SaveArtifacts
        if art["name"] in missing:
            if art.get("optional"):
                continue  # "Ignoring optional artifact ... which does not exist"
            raise FileNotFoundError(art.get("path"))
        saved.append(_saved(art, archive, _file_name(art)))
    if (archive or {}).get("archiveLogs"):  # SaveLogs: SaveLogsAsArtifact, one per main container
        saved.append(_saved({"name": "main-logs"}, archive, "main.log"))
    if saved:
        outs["artifacts"] = saved
    else:
        outs.pop("artifacts", None)  # an empty Artifacts slice is omitted
    ordered = {k: outs[k] for k in ("parameters", "artifacts", "result", "exitCode") if k in outs}
    ordered.update((k, v) for k, v in outs.items() if k not in ordered)
    return ordered
