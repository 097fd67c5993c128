"""The pod (and offload ConfigMap) the Argo controller creates for a step, written from Argo's Go source only.

The steps of `controller_pod` follow, in order, workflow/controller/operator.go executeTemplate ->
executeContainer / executeScript / executeResource / executeData -> workflowpod.go createWorkflowPod (v3.5.14,
v3.6.19, v3.7.18) or podBuilder.build (v4.1.2, with workflowpod_layout.go choosing legacyLayout or initlessLayout).
Comments name the Go function each field comes from; "3.x" means the three v3 tags, a tag is named where they differ.

Modelled: container, script, resource and data templates; input parameters (arguments, defaults) and input
artifacts; output parameters and artifacts; template env, volumeMounts, volumes, initContainers, sidecars, metadata,
nodeSelector, affinity, tolerations, serviceAccountName, activeDeadlineSeconds, retryStrategy; workflow-level volumes,
podMetadata, nodeSelector, imagePullSecrets, serviceAccountName, podGC, retryStrategy; an S3 artifact repository;
the controller's executor image, log flags, instance ID, progress ticks, status finalizer and v4.1.2's initlessPod.
Not modelled (raise or are ignored, see README): containerSet, podSpecPatch, templateDefaults, workflow deadlines,
executor service accounts, kubeconfig, mainContainer defaults, artifact plugins, boundary-template scheduling.
"""

from __future__ import annotations

import copy
import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.argo_source import argo, gojson, substitute
from tests.argo_source.argo import Tag

Json = dict[str, Any]


@dataclass(frozen=True)
class ControllerConfig:
    """What the workflow-controller's flags, environment and ConfigMap decide for every pod (defaults = Argo's)."""

    executor_image: str | None = None  # config.go executorImage: --executor-image, executor.image, else the tag
    executor_image_pull_policy: str = ""  # config.go executorImagePullPolicy
    executor_env: Sequence[Json] = ()  # createEnvVars: Config.Executor.Env
    executor_resources: Json | None = None  # newExecContainer: Config.GetExecutor().Resources
    executor_security_context: Json | None = None  # newExecContainer: Config.GetExecutor().SecurityContext
    executor_args: Sequence[str] | None = None  # newExecContainer: Config.GetExecutor().Args
    log_level: str = "info"  # cmd/workflow-controller/main.go --loglevel default
    log_format: str = "text"  # cmd/workflow-controller/main.go --log-format default (executorLogFormat)
    glog_level: str = "0"  # --gloglevel default, read back by util/cmd GetGLogLevel (3.6+)
    instance_id: str = ""  # Config.InstanceID
    artifact_repository: Json | None = None  # wfv1.ArtifactRepository JSON; None = an empty repository
    progress_patch_tick: str | None = "1m0s"  # controller.go EnvVarProgressPatchTickDuration default 1m (Go String)
    progress_file_tick: str | None = "3s"  # controller.go EnvVarProgressFileTickDuration default 3s
    initless: bool = False  # v4.1.2 config.go InitlessPod.Enabled (isInitlessPodEnabled)
    pod_name_version: str = "v2"  # pod_name.go GetPodNameVersion: POD_NAMES, default v2
    pod_status_capture_finalizer: bool = False  # ARGO_POD_STATUS_CAPTURE_FINALIZER=true in the controller (3.6+)
    pod_gc_delete_delay: str = "5s"  # config.go GetPodGCDeleteDelayDuration default 5s (3.6+ annotation)
    # entrypoint.Lookup: image -> {"entrypoint": [...], "cmd": [...]} for containers without a command
    image_entrypoints: Mapping[str, Json] = field(default_factory=dict)


@dataclass(frozen=True)
class CreatedPod:
    pod: Json
    configmap: Json | None  # the offload ConfigMap named after the pod (3.6+), None when nothing was offloaded
    node_name: str  # as created: `name(N)` for a retried step
    node_id: str
    pod_name: str
    template: Json  # ARGO_TEMPLATE as the executor reads it (decoded), whether inline or offloaded
    template_json: str  # the exact ARGO_TEMPLATE text (Go encoding/json)


def controller_pod(
    version: str,
    workflow_name: str,
    workflow_uid: str,
    namespace: str,
    template: Mapping[str, Any],
    node_name: str,
    *,
    inputs: Mapping[str, Any] | None = None,
    input_artifacts: Mapping[str, Mapping[str, Any]] | None = None,
    include_script_output: bool = False,
    on_exit: bool = False,
    retry_attempt: int = 0,
    step_name: str | None = None,
    task_name: str | None = None,
    workflow_spec: Mapping[str, Any] | None = None,
    workflow_parameters: Mapping[str, Any] | None = None,
    deadline: str = "0001-01-01T00:00:00Z",
    config: ControllerConfig | None = None,
    trace: tuple[str, str] | None = None,
) -> CreatedPod:
    """Build the pod Argo's controller submits for `template` run as node `node_name` of workflow `workflow_name`.

    `inputs` are the step's parameter arguments, `input_artifacts` its artifact arguments (resolved locations).
    `include_script_output` is what operator.go includeScriptOutput computes (a later step references
    `outputs.result`). `deadline` is ARGO_DEADLINE (getDeadline: zero time unless the workflow has a deadline).
    `trace` (v4.1.2) is (trace id, span id) of a recording create_workflow_pod span.
    """
    t = argo.tag(version)
    cfg = config or ControllerConfig()
    spec = dict(workflow_spec or {})
    if trace is not None and not t.v4:
        raise ValueError("trace propagation into pods exists at v4.1.2 only")
    if cfg.initless and not t.has_initless:
        raise ValueError("initlessPod exists at v4.1.2 only")
    initless = cfg.initless
    executor_image = cfg.executor_image or argo.default_executor_image(t.name)

    # --- operator.go executeTemplate ------------------------------------------------------------------------------
    raw = copy.deepcopy(dict(template))
    kind = _template_type(raw)
    if kind == "containerSet":
        raise NotImplementedError("containerSet templates are not modelled")
    retry = raw.get("retryStrategy") or spec.get("retryStrategy")  # woc.retryStrategy: template, else workflow
    # executeTemplate: a retried template runs as child `<node>(<n>)` of a Retry node
    created_node = f"{node_name}({retry_attempt})" if retry else node_name
    nid = argo.node_id(workflow_name, created_node)  # createWorkflowPod: woc.wf.NodeID(nodeName)
    pname = argo.pod_name(workflow_name, created_node, raw.get("name", ""), nid, cfg.pod_name_version)
    global_params = _global_params(workflow_name, namespace, workflow_uid, spec, workflow_parameters)
    local_params = {"node.name": node_name}  # executeTemplate localParams
    if step_name is not None:
        local_params["steps.name"] = step_name
    if task_name is not None:
        local_params["tasks.name"] = task_name
    if not retry:  # pod.name is injected now only when there is no retryStrategy
        local_params["pod.name"] = pname
    tmpl = substitute.process_args(raw, inputs or {}, input_artifacts or {}, global_params, local_params)
    if retry:  # executeTemplate: SubstituteParams(processedTmpl, globalParams, {pod.name, retries})
        tmpl = gojson.template(
            substitute.replace(tmpl, {**global_params, "pod.name": pname, "retries": str(retry_attempt)})
        )

    def exec_container(name: str) -> Json:  # newExecContainer + createEnvVars
        env: list[Json] = [
            {"name": argo.ENV_POD_NAME, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
            {"name": argo.ENV_POD_UID, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.uid"}}},
        ]
        if t.has_godebug:  # createEnvVars v3.5.14 only
            env.append({"name": "GODEBUG", "value": "x509ignoreCN=0"})
        env.append({"name": argo.ENV_WORKFLOW_NAME, "value": workflow_name})
        env.append({"name": argo.ENV_WORKFLOW_UID, "value": workflow_uid})
        if cfg.instance_id:
            env.append({"name": argo.ENV_INSTANCE_ID, "value": cfg.instance_id})
        env.extend(copy.deepcopy(list(cfg.executor_env)))
        ctr: Json = {"name": name, "image": executor_image, "env": env, "resources": dict(cfg.executor_resources or {})}
        if cfg.executor_image_pull_policy:
            ctr["imagePullPolicy"] = cfg.executor_image_pull_policy
        if cfg.executor_security_context is not None:
            ctr["securityContext"] = copy.deepcopy(cfg.executor_security_context)
        if cfg.executor_args is not None:
            ctr["args"] = list(cfg.executor_args)
        if kind == "resource" and "securityContext" not in ctr:  # newExecContainer: lock down resource pods
            ctr["securityContext"] = _resource_security_context(t, name)
        return ctr

    log_opts = ["--loglevel", cfg.log_level, "--log-format", cfg.log_format]  # getExecutorLogLevel (3.5)
    if t.has_gloglevel:  # getExecutorLogOpts (3.6+)
        log_opts += ["--gloglevel", cfg.glog_level]

    # executeContainer / executeScript / executeResource / executeData: the main container
    if kind == "container":
        main = copy.deepcopy(tmpl["container"])
    elif kind == "script":
        main = {k: copy.deepcopy(v) for k, v in tmpl["script"].items() if k != "source"}
        if tmpl["script"].get("source"):
            main["args"] = [*(main.get("args") or []), argo.SCRIPT_SOURCE_PATH]
    elif kind == "resource":
        main = exec_container(argo.MAIN)
        main["command"] = ["argoexec", "resource", tmpl["resource"].get("action", "")]
        if not t.v35:
            main["command"] += log_opts
    elif kind == "data":
        main = exec_container(argo.MAIN)
        main["command"] = ["argoexec", "data", gojson.marshal(tmpl["data"])]
        if not t.v35:
            main["command"] += log_opts
        include_script_output = True  # executeData passes includeScriptOutput: true
    else:
        raise NotImplementedError(f"{kind} templates create no step pod here")

    # --- createWorkflowPod / podBuilder.build -----------------------------------------------------------------------
    tmpl = copy.deepcopy(tmpl)
    main["name"] = argo.MAIN  # mainCtrs loop: not a containerSet, so the container is `main`
    main_ctrs = [main]

    active_deadline = _int64(tmpl.get("activeDeadlineSeconds"))  # intstr.Int64(tmpl.ActiveDeadlineSeconds)
    for c in main_ctrs:  # "If the template is marked for debugging no deadline will be set"
        if any(e.get("name") in ("ARGO_DEBUG_PAUSE_BEFORE", "ARGO_DEBUG_PAUSE_AFTER") for e in c.get("env") or []):
            active_deadline = None

    owner = {  # metav1.NewControllerRef(woc.wf, Workflow)
        "apiVersion": argo.API_VERSION,
        "kind": argo.KIND_WORKFLOW,
        "name": workflow_name,
        "uid": workflow_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pod: Json = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pname,
            "namespace": namespace,
            "labels": {argo.LABEL_WORKFLOW: workflow_name, argo.LABEL_COMPLETED: "false"},
            "annotations": {argo.ANNOTATION_NODE_NAME: created_node, argo.ANNOTATION_NODE_ID: nid},
            "ownerReferences": [owner],
        },
        "spec": {"restartPolicy": "Never", "volumes": _create_volumes(tmpl)},
    }
    meta, pspec = pod["metadata"], pod["spec"]
    if active_deadline is not None:
        pspec["activeDeadlineSeconds"] = active_deadline
    if spec.get("imagePullSecrets"):
        pspec["imagePullSecrets"] = copy.deepcopy(spec["imagePullSecrets"])
    if initless:  # initlessLayout.extraVolumes -> buildArgoBinVolume
        image_ref: Json = {"reference": executor_image}
        if cfg.executor_image_pull_policy:
            image_ref["pullPolicy"] = cfg.executor_image_pull_policy
        pspec["volumes"].append({"name": argo.ARGOEXEC_BIN_VOLUME, "image": image_ref})
    if t.has_status_finalizer and cfg.pod_status_capture_finalizer:
        meta["finalizers"] = [argo.FINALIZER_POD_STATUS]
    if on_exit:  # "This pod is part of an onExit handler, label it so"
        meta["labels"][argo.LABEL_ON_EXIT] = "true"
    if spec.get("hostNetwork") is not None:
        pspec["hostNetwork"] = spec["hostNetwork"]
    if spec.get("dnsPolicy"):  # addDNSConfig
        pspec["dnsPolicy"] = spec["dnsPolicy"]
    if spec.get("dnsConfig"):
        pspec["dnsConfig"] = copy.deepcopy(spec["dnsConfig"])
    if cfg.instance_id:
        meta["labels"][argo.LABEL_INSTANCE_ID] = cfg.instance_id

    _add_archive_location(tmpl, cfg.artifact_repository, spec)
    _setup_service_account(pod, tmpl, spec)

    # the wait container (legacy) or supervisor (init-less)
    needs_aux = kind not in ("resource", "data") or (
        t.resource_wait_when_archiving_logs and kind == "resource" and _saves_logs(tmpl)
    )
    if initless:  # initlessLayout.templateRequiresAuxContainer
        needs_aux = needs_aux or (kind == "resource" and bool(tmpl["resource"].get("manifestFrom")))
    containers: list[Json] = []
    if needs_aux:
        if initless:  # newSupervisorContainer
            aux = exec_container(argo.SUPERVISOR)
            aux["command"] = ["argoexec", "supervisor", *log_opts]
            aux["env"].append({"name": argo.ENV_INITLESS_POD, "value": "true"})
        else:  # newWaitContainer
            aux = exec_container(argo.WAIT)
            aux["command"] = ["argoexec", "wait", *log_opts]
        containers.append(aux)
    containers.extend(main_ctrs)  # "the order of the container list is significant": wait first
    pspec["containers"] = containers
    default = containers[-1]["name"]
    if any(c["name"] == argo.MAIN for c in containers):
        default = argo.MAIN
    meta["annotations"][argo.ANNOTATION_DEFAULT_CONTAINER] = default
    if t.has_status_finalizer and spec.get("podGC") is not None:
        pod_gc = spec["podGC"]
        delay = pod_gc.get("deleteDelayDuration") or cfg.pod_gc_delete_delay  # getPodGCDelay (Go duration text)
        meta["annotations"][argo.ANNOTATION_POD_GC_STRATEGY] = f"{pod_gc.get('strategy', '')}/{delay}"

    # init containers: newInitContainer (3.x) / legacyLayout.initContainers; none in the init-less layout
    init_containers: list[Json] = []
    if not initless:
        init = exec_container(argo.INIT)
        init["command"] = ["argoexec", "init", *log_opts]
        init_containers.append(init)
    pspec["initContainers"] = init_containers

    _add_scheduling_constraints(t, pspec, spec, tmpl)
    _add_metadata(meta, spec, tmpl)
    if t.v4:  # podBuilder.build: pod-level resources and DRA claims, template over workflow
        if tmpl.get("podResources") or spec.get("podResources"):
            pspec["resources"] = copy.deepcopy(tmpl.get("podResources") or spec.get("podResources"))
        if tmpl.get("resourceClaims") or spec.get("resourceClaims"):
            pspec["resourceClaims"] = copy.deepcopy(tmpl.get("resourceClaims") or spec.get("resourceClaims"))

    _add_volume_references(t, pod, spec.get("volumes") or [], tmpl, kind)
    _add_input_artifacts_volumes(pod, tmpl, initless)
    if kind == "script":
        _add_script_staging_volume(t, pod)
    main_now = _find(pspec["containers"], argo.MAIN)
    for user in tmpl.get("initContainers") or []:  # addInitContainers
        pspec["initContainers"].append(_user_container(user, main_now))
    for user in tmpl.get("sidecars") or []:  # addSidecars
        pspec["containers"].append(_user_container(user, main_now))
    _add_output_artifacts_volumes(t, pod, kind)
    for c in pspec["initContainers"]:
        c.setdefault("volumeMounts", []).append(_var_run_argo_mount())

    # ARGO_TEMPLATE: the whole template (3.5), or parameters cleared, artifacts kept (3.6+)
    if t.template_on_every_container:
        template_json = gojson.marshal(gojson.template(tmpl))
    else:
        simplified = copy.deepcopy(tmpl)
        simplified["inputs"] = {"artifacts": simplified["inputs"]["artifacts"]} if simplified["inputs"].get(
            "artifacts"
        ) else {}
        template_json = gojson.marshal(gojson.template(simplified))

    env_vars: list[Json] = []
    if t.template_on_every_container:
        env_vars.append({"name": argo.ENV_TEMPLATE, "value": template_json})
    env_vars += [
        {"name": argo.ENV_NODE_ID, "value": nid},
        {"name": argo.ENV_INCLUDE_SCRIPT_OUTPUT, "value": "true" if include_script_output else "false"},
        {"name": argo.ENV_DEADLINE, "value": deadline},
    ]
    if t.workflow_name_in_env_vars:
        env_vars.append({"name": argo.ENV_WORKFLOW_NAME, "value": workflow_name})
    if trace is not None:  # propagation.TraceContext.Inject into telemetry.Carrier (keys upper-cased)
        env_vars.append({"name": "TRACEPARENT", "value": f"00-{trace[0]}-{trace[1]}-01"})
    if cfg.progress_patch_tick and cfg.progress_file_tick:  # "only set ... if progress is enabled"
        env_vars += [
            {"name": argo.ENV_PROGRESS_FILE, "value": argo.PROGRESS_PATH},
            {"name": argo.ENV_PROGRESS_PATCH_TICK, "value": cfg.progress_patch_tick},
            {"name": argo.ENV_PROGRESS_FILE_TICK, "value": cfg.progress_file_tick},
        ]
    for c in pspec["initContainers"]:
        c.setdefault("env", []).append({"name": argo.ENV_CONTAINER_NAME, "value": c["name"]})
        if not t.template_on_every_container:
            c["env"].append({"name": argo.ENV_TEMPLATE, "value": template_json})
        c["env"] += copy.deepcopy(env_vars)
    for c in pspec["containers"]:
        c.setdefault("env", []).append({"name": argo.ENV_CONTAINER_NAME, "value": c["name"]})
        c["env"] += copy.deepcopy(env_vars)
        if t.v4 and c["name"] == argo.SUPERVISOR:
            c["env"].append({"name": argo.ENV_TEMPLATE, "value": template_json})
        if initless and not needs_aux and c["name"] == argo.MAIN:  # initlessLayout.mainNeedsTemplateEnv
            c["env"].append({"name": argo.ENV_TEMPLATE, "value": template_json})

    # substitutePodParams: one last pass over the whole pod JSON
    pod = substitute.replace(pod, substitute.pod_params(global_params, tmpl, pname))
    meta, pspec = pod["metadata"], pod["spec"]
    template_json = substitute.replace(template_json, substitute.pod_params(global_params, tmpl, pname))
    if "{{" in gojson.marshal(_decode(template_json).get("archiveLocation") or {}):
        raise ValueError("archiveLocation has unresolved variables")  # validate.VerifyResolvedVariables
    pspec["initContainers"] = [gojson.container(c) for c in pspec["initContainers"]]
    pspec["containers"] = [gojson.container(c) for c in pspec["containers"]]  # the JSON round trip drops args: []

    # the emissary loop: wrap every user container's command, mount var-run-argo everywhere
    argoexec = argo.ARGOEXEC_BIN_PATH if initless else argo.LEGACY_ARGOEXEC  # podLayout.argoexecBinaryPath
    for i, c in enumerate(pspec["containers"]):
        if not _is_argo_sidecar(t, c["name"]):
            if not c.get("command"):  # entrypoint.Lookup for images without an explicit command
                found = cfg.image_entrypoints.get(c.get("image", ""))
                if found is None:
                    raise LookupError(f"failed to look-up entrypoint/cmd for image {c.get('image')!r}")
                c["command"] = list(found.get("entrypoint") or [])
                if c.get("args") is None:
                    c["args"] = list(found.get("cmd") or [])
                    if not c["args"]:
                        del c["args"]
            c["command"] = [argoexec, "emissary", *log_opts, "--", *c["command"]]
            if initless:  # initlessLayout.decorateUserContainer
                if needs_aux:
                    c.setdefault("env", []).append({"name": argo.ENV_WAIT_FOR_READY, "value": "true"})
                c.setdefault("volumeMounts", []).append(
                    {"name": argo.ARGOEXEC_BIN_VOLUME, "readOnly": True, "mountPath": argo.ARGOEXEC_BIN_MOUNT}
                )
        if c.get("image") == executor_image:  # "mount tmp dir to wait container"
            c.setdefault("volumeMounts", []).append(
                {"name": argo.VOLUME_TMP_DIR, "mountPath": "/tmp", "subPath": str(i)}
            )
        c.setdefault("volumeMounts", []).append(_var_run_argo_mount())

    if not pspec["initContainers"]:
        del pspec["initContainers"]  # a nil slice: init-less pods schedule with zero init containers

    configmap = None
    if t.offloads_template:
        configmap = _offload(t, pod, nid, created_node, owner)
    offloaded_template = configmap is not None and argo.ENV_TEMPLATE in configmap["data"]
    return CreatedPod(
        pod=pod,
        configmap=configmap,
        node_name=created_node,
        node_id=nid,
        pod_name=pname,
        template=_decode(configmap["data"][argo.ENV_TEMPLATE] if offloaded_template and configmap else template_json),
        template_json=template_json,
    )


# --- helpers, each named after the Go function it mirrors ---------------------------------------------------------


def _decode(text: str) -> Json:
    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def _template_type(tmpl: Mapping[str, Any]) -> str:
    # (Template).GetType: the first non-nil of these, in this order
    for key in ("container", "containerSet", "steps", "dag", "script", "resource", "data", "suspend", "http",
                "plugin"):
        if tmpl.get(key) is not None:
            return key
    return "unknown"


def _int64(value: Any) -> int | None:
    if value is None:
        return None
    return int(value)


def _global_params(
    workflow_name: str,
    namespace: str,
    uid: str,
    spec: Mapping[str, Any],
    parameters: Mapping[str, Any] | None,
) -> dict[str, str]:
    # operator.go setGlobalParameters (the part a step pod can reference)
    params = {"workflow.name": workflow_name, "workflow.namespace": namespace, "workflow.uid": uid}
    if spec.get("serviceAccountName"):
        params["workflow.serviceAccountName"] = spec["serviceAccountName"]
    if spec.get("entrypoint"):
        params["workflow.mainEntrypoint"] = spec["entrypoint"]
    for k, v in (parameters or {}).items():
        params[f"workflow.parameters.{k}"] = gojson.any_string(v)
    return params


def _resource_security_context(t: Tag, name: str) -> Json:
    # newExecContainer "lock down resource pods by default": v3.5.14 literal, 3.6+ common.MinimalCtrSC()
    if t.v35:
        sc: Json = {"capabilities": {"drop": ["ALL"]}, "runAsUser": 8737, "runAsNonRoot": True,
                    "allowPrivilegeEscalation": False}
    else:
        sc = {"capabilities": {"drop": ["ALL"]}, "privileged": False, "runAsUser": 8737, "runAsNonRoot": True,
              "allowPrivilegeEscalation": False, "seccompProfile": {"type": "RuntimeDefault"}}
    if name not in (argo.INIT, argo.WAIT, argo.SUPERVISOR):
        sc["readOnlyRootFilesystem"] = True
    return sc


def _create_volumes(tmpl: Mapping[str, Any]) -> list[Json]:
    # createVolumes (kubeconfig volume not modelled): var-run-argo, tmp-dir-argo, then the template's volumes
    return [
        {"name": argo.VOLUME_VAR_RUN_ARGO, "emptyDir": {}},
        {"name": argo.VOLUME_TMP_DIR, "emptyDir": {}},
        *copy.deepcopy(tmpl.get("volumes") or []),
    ]


def _var_run_argo_mount() -> Json:
    return {"name": argo.VOLUME_VAR_RUN_ARGO, "mountPath": argo.VAR_RUN_ARGO}  # volumeMountVarArgo


def _location_kind(loc: Mapping[str, Any]) -> str | None:
    # (ArtifactLocation).Get: the first configured kind, in Go's order
    for key in ("artifactory", "azure", "git", "gcs", "hdfs", "http", "oss", "raw", "s3", "plugin"):
        if loc.get(key) is not None:
            return key
    return None


def _has_location(loc: Mapping[str, Any] | None) -> bool:
    # (ArtifactLocation).HasLocation -> the kind's HasLocation
    if not loc:
        return False
    kind = _location_kind(loc)
    if kind is None:
        return False
    v = loc[kind]
    return bool({
        "s3": lambda: v.get("endpoint") and v.get("bucket") and v.get("key"),
        "oss": lambda: v.get("endpoint") and v.get("bucket") and v.get("key"),
        "gcs": lambda: v.get("bucket") and v.get("key"),
        "http": lambda: v.get("url"),
        "artifactory": lambda: v.get("url"),
        "git": lambda: v.get("repo"),
        "raw": lambda: v.get("data"),
        "hdfs": lambda: v.get("addresses") and v.get("path"),
        "azure": lambda: v.get("endpoint") and v.get("container") and v.get("blob"),
        "plugin": lambda: v.get("name") and v.get("key"),
    }[kind]())


def _has_key(loc: Mapping[str, Any]) -> bool:
    # (ArtifactLocation).HasKey: GetKey() != ""
    kind = _location_kind(loc)
    if kind is None:
        return False
    v = loc[kind]
    key = {"http": "url", "artifactory": "url", "git": "repo", "raw": "data", "hdfs": "path", "azure": "blob"}.get(
        kind, "key"
    )
    return bool(v.get(key))


def _is_archive_logs(tmpl: Mapping[str, Any], repo: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    # IsArchiveLogs: controller(on) > template > workflow > controller(off)
    archive = bool(repo.get("archiveLogs"))
    if not archive:
        if spec.get("archiveLogs") is not None:
            archive = bool(spec["archiveLogs"])
        loc = tmpl.get("archiveLocation") or {}
        if loc.get("archiveLogs") is not None:
            archive = bool(loc["archiveLogs"])
    return archive


def _repository_location(repo: Mapping[str, Any]) -> Json:
    # (ArtifactRepository).ToArtifactLocation -> S3ArtifactRepository.IntoArtifactLocation
    loc: Json = {}
    if repo.get("archiveLogs") is not None:
        loc["archiveLogs"] = repo["archiveLogs"]
    if repo.get("s3") is not None:
        s3 = dict(repo["s3"])
        key_format = s3.pop("keyFormat", "")
        key_prefix = s3.pop("keyPrefix", "")
        s3["key"] = key_format or posixpath.join(key_prefix, argo.DEFAULT_ARCHIVE_PATTERN)
        loc["s3"] = s3
    elif any(repo.get(k) for k in ("gcs", "oss", "artifactory", "azure", "hdfs")):
        raise NotImplementedError("only S3 artifact repositories are modelled")
    return loc


def _add_archive_location(tmpl: Json, repository: Mapping[str, Any] | None, spec: Mapping[str, Any]) -> None:
    # addArchiveLocation: the default repository, when some artifact (or the logs) has nowhere else to go
    if _has_location(tmpl.get("archiveLocation")):
        return
    repo = repository or {}
    archive_logs = _is_archive_logs(tmpl, repo, spec)
    need = archive_logs
    for art in [*tmpl["inputs"].get("artifacts", []), *tmpl["outputs"].get("artifacts", [])]:
        if not _has_location(art):
            need = True
    source_art = ((tmpl.get("data") or {}).get("source") or {}).get("artifactPaths")
    if source_art is not None and not _has_location(source_art):
        need = True
    if not need:
        return
    loc = _repository_location(repo)
    loc["archiveLogs"] = archive_logs
    tmpl["archiveLocation"] = gojson.template({"archiveLocation": loc})["archiveLocation"]


def _saves_logs(tmpl: Mapping[str, Any]) -> bool:
    # (Template).SaveLogsAsArtifact -> ArchiveLocation.IsArchiveLogs
    return bool((tmpl.get("archiveLocation") or {}).get("archiveLogs"))


def _setup_service_account(pod: Json, tmpl: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    # setupServiceAccount (the executor token volume needs a live API lookup and is not modelled)
    pspec = pod["spec"]
    if tmpl.get("serviceAccountName"):
        pspec["serviceAccountName"] = tmpl["serviceAccountName"]
    elif spec.get("serviceAccountName"):
        pspec["serviceAccountName"] = spec["serviceAccountName"]
    automount = tmpl.get("automountServiceAccountToken")
    if automount is None:
        automount = spec.get("automountServiceAccountToken")
    if automount is False:
        pspec["automountServiceAccountToken"] = False
    if (tmpl.get("executor") or {}).get("serviceAccountName") or (spec.get("executor") or {}).get(
        "serviceAccountName"
    ):
        raise NotImplementedError("executor service accounts need the token secret's name from the API")
    if automount is False:
        raise ValueError("executor.serviceAccountName must not be empty if automountServiceAccountToken is false")


def _add_scheduling_constraints(t: Tag, pspec: Json, spec: Mapping[str, Any], tmpl: Mapping[str, Any]) -> None:
    # addSchedulingConstraints (no boundary template: the step's parent is not modelled)
    for field_, wf_field in (("nodeSelector", "nodeSelector"), ("affinity", "affinity"),
                             ("tolerations", "tolerations"), ("schedulerName", "schedulerName"),
                             ("priorityClassName", "podPriorityClassName")):
        value = tmpl.get(field_) or spec.get(wf_field)
        if value:
            pspec[field_] = copy.deepcopy(value)
    if t.sets_priority:
        priority = tmpl.get("priority") if tmpl.get("priority") is not None else spec.get("podPriority")
        if priority is not None:
            pspec["priority"] = priority
    aliases = [*(spec.get("hostAliases") or []), *(tmpl.get("hostAliases") or [])]
    if aliases:
        pspec["hostAliases"] = copy.deepcopy(aliases)
    security = tmpl.get("securityContext") or spec.get("securityContext")
    if security:
        pspec["securityContext"] = copy.deepcopy(security)


def _add_metadata(meta: Json, spec: Mapping[str, Any], tmpl: Mapping[str, Any]) -> None:
    # addMetadata: workflow podMetadata, then the template's metadata, over the controller's own keys
    for source in (spec.get("podMetadata") or {}, tmpl.get("metadata") or {}):
        meta["annotations"].update(source.get("annotations") or {})
        meta["labels"].update(source.get("labels") or {})


def _find(containers: Sequence[Json], name: str) -> Json | None:
    return next((c for c in containers if c.get("name") == name), None)


def _is_argo_sidecar(t: Tag, name: str) -> bool:
    # the emissary loop skips `wait` (3.x) or common.IsArgoSidecar: wait, supervisor, artifact-plugin-* (v4.1.2)
    if not t.v4:
        return name == argo.WAIT
    return name in (argo.WAIT, argo.SUPERVISOR) or name.startswith(argo.ARTIFACT_PLUGIN_SIDECAR_PREFIX)


def _template_mounts(tmpl: Mapping[str, Any]) -> list[Json]:
    # (Template).GetVolumeMounts: the template's own slice (FindOverlappingVolume sorts it in place)
    for key in ("container", "script"):
        if tmpl.get(key) is not None:
            mounts = tmpl[key].get("volumeMounts")
            return mounts if isinstance(mounts, list) else []
    return []


def _add_volume_references(t: Tag, pod: Json, wf_volumes: Sequence[Json], tmpl: Json, kind: str) -> None:
    # addVolumeReferences: volumes that mounts reference, then the artifact secrets
    pspec = pod["spec"]

    def by_name(name: str) -> Json | None:
        for source in (tmpl.get("volumes") or [], wf_volumes):
            for vol in source:
                if vol.get("name") == name:
                    return copy.deepcopy(vol)
        return None

    mounts = [*_template_mounts(tmpl)]
    for user in [*(tmpl.get("initContainers") or []), *(tmpl.get("sidecars") or [])]:
        mounts += user.get("volumeMounts") or []
    for mnt in mounts:
        vol = by_name(mnt["name"])
        if vol is None:
            raise ValueError(f"volume '{mnt['name']}' not found in workflow spec")
        if not any(v["name"] == vol["name"] for v in pspec["volumes"]):
            pspec["volumes"].append(vol)

    # createSecretVolumesAndMounts: Go ranges over a map here, so with several secrets the order is random;
    # this builder sorts by secret name
    secrets: dict[str, list[str]] = {}

    def note(selector: Mapping[str, Any] | None) -> None:
        if selector and selector.get("name") and selector.get("key"):
            keys = secrets.setdefault(selector["name"], [])
            if selector["key"] not in keys:
                keys.append(selector["key"])

    locations = [tmpl.get("archiveLocation") or {}, *tmpl["outputs"].get("artifacts", []),
                 *tmpl["inputs"].get("artifacts", [])]
    for loc in locations:  # createSecretVolumesFromArtifactLocations (S3, GCS, HTTP basic auth shown)
        if loc.get("s3"):
            for k in ("accessKeySecret", "secretKeySecret", "sessionTokenSecret", "caSecret"):
                note(loc["s3"].get(k))
        elif loc.get("gcs"):
            note(loc["gcs"].get("serviceAccountKeySecret"))
        elif loc.get("git"):
            for k in ("usernameSecret", "passwordSecret", "sshPrivateKeySecret"):
                note(loc["git"].get(k))
    volumes = [
        {"name": name, "secret": {"secretName": name, "items": [{"key": k, "path": k} for k in keys]}}
        for name, keys in sorted(secrets.items())
    ]
    secret_mounts = [{"name": v["name"], "mountPath": f"{argo.SECRET_MOUNT}/{v['name']}", "readOnly": True}
                     for v in volumes]
    pspec["volumes"] += volumes
    aux_names = (argo.WAIT, argo.SUPERVISOR) if t.v4 else (argo.WAIT,)
    for c in pspec["containers"]:
        if c["name"] in aux_names:
            c.setdefault("volumeMounts", []).extend(copy.deepcopy(secret_mounts))
            break
    for c in pspec["initContainers"]:
        if c["name"] == argo.INIT:
            c.setdefault("volumeMounts", []).extend(copy.deepcopy(secret_mounts))
            break
    if kind == "data":
        main = _find(pspec["containers"], argo.MAIN)
        if main is not None:
            main.setdefault("volumeMounts", []).extend(copy.deepcopy(secret_mounts))


def _main_fs(path: str) -> str:
    # filepath.Join(common.ExecutorMainFilesystemDir, path)
    return posixpath.normpath(posixpath.join(argo.MAIN_FS_DIR, path.lstrip("/")))


def _overlapping(mounts: list[Json], path: str) -> Json | None:
    # common.FindOverlappingVolume. NB it sort.Slice-s the template's own mounts in place, longest path first (for
    # fewer than 13 mounts Go's pdqsort is an insertion sort, so stable): ARGO_TEMPLATE shows that order.
    mounts.sort(key=lambda m: -len(m.get("mountPath", "")))
    for mnt in mounts:
        normalized = mnt.get("mountPath", "").rstrip("/")
        if path == normalized or path.startswith(normalized + "/"):
            return mnt
    return None


def _add_input_artifacts_volumes(pod: Json, tmpl: Json, initless: bool) -> None:
    # addInputArtifactsVolumes
    arts = tmpl["inputs"].get("artifacts") or []
    if not arts:
        return
    pspec = pod["spec"]
    if initless:  # "this is not supported in init-less pod mode because staging the artifact would clear ..."
        for art in arts:
            for mnt in _template_mounts(tmpl):
                rel = posixpath.relpath(mnt["mountPath"], art.get("path") or "/")
                if art.get("path") and not rel.startswith("..") and rel != ".":
                    raise ValueError(f"input artifact {art['name']!r} path is an ancestor of volume mount")
    pspec["volumes"].append({"name": argo.VOLUME_INPUT_ARTIFACTS, "emptyDir": {}})
    executor_mounts = [{"name": argo.VOLUME_INPUT_ARTIFACTS, "mountPath": argo.ARTIFACT_BASE_DIR}]
    for mnt in _template_mounts(tmpl):  # inputArtifactExecutorMounts (v4.1.2) / the init block (3.x)
        executor_mounts.append({**copy.deepcopy(mnt), "mountPath": _main_fs(mnt["mountPath"])})
    for c in pspec["initContainers"]:
        if c["name"] == argo.INIT:
            c.setdefault("volumeMounts", []).extend(copy.deepcopy(executor_mounts))
            break
    if initless:
        sup = _find(pspec["containers"], argo.SUPERVISOR)
        if sup is not None:
            sup.setdefault("volumeMounts", []).extend(copy.deepcopy(executor_mounts))
    main = _find(pspec["containers"], argo.MAIN)
    if main is None:
        return
    if initless:  # "mount the whole input-artifacts volume on main at a known location"
        main.setdefault("volumeMounts", []).append(
            {"name": argo.VOLUME_INPUT_ARTIFACTS, "mountPath": argo.ARTIFACT_BASE_DIR}
        )
        return
    for art in arts:
        if not art.get("path"):
            raise ValueError(f"error in inputs.artifacts.{art['name']}: did not specify a path")  # CleanPath
        path = posixpath.normpath(art["path"])
        if not (_has_location(art) or _has_key(art)) and art.get("optional"):
            continue  # "skip volume mount ... optional artifact was not provided"
        if _overlapping(_template_mounts(tmpl), path) is not None:
            continue  # "init would have copied the artifact to the user's volume instead"
        main.setdefault("volumeMounts", []).append(
            {"name": argo.VOLUME_INPUT_ARTIFACTS, "mountPath": path, "subPath": art["name"]}
        )


def _add_script_staging_volume(t: Tag, pod: Json) -> None:
    # addScriptStagingVolume: init (3.x, legacy) or supervisor (v4.1.2 init-less) and main share /argo/staging
    pspec = pod["spec"]
    pspec["volumes"].append({"name": argo.VOLUME_STAGING, "emptyDir": {}})
    mount = {"name": argo.VOLUME_STAGING, "mountPath": argo.STAGING_DIR}
    init = _find(pspec["initContainers"], argo.INIT)
    if init is not None:
        init.setdefault("volumeMounts", []).append(dict(mount))
    if t.v4:
        sup = _find(pspec["containers"], argo.SUPERVISOR)
        if sup is not None:
            sup.setdefault("volumeMounts", []).append(dict(mount))
    main = _find(pspec["containers"], argo.MAIN)
    if main is None:
        raise RuntimeError("Unable to locate main container")
    main.setdefault("volumeMounts", []).append(dict(mount))


def _user_container(user: Mapping[str, Any], main: Json | None) -> Json:
    # addInitContainers / addSidecars with mirrorVolumeMounts
    ctr = copy.deepcopy(dict(user))
    mirror = ctr.pop("mirrorVolumeMounts", None)
    if main is not None and mirror:
        ctr.setdefault("volumeMounts", []).extend(copy.deepcopy(main.get("volumeMounts") or []))
    return ctr


def _add_output_artifacts_volumes(t: Tag, pod: Json, kind: str) -> None:
    # addOutputArtifactsVolumes: main's mounts mirrored under /mainctrfs, read-write, on wait (3.x: the last container
    # named wait, FindWaitCtrIndex) or on every Argo sidecar skipping mount paths already there (v4.1.2)
    if kind in ("resource", "data"):
        return
    containers = pod["spec"]["containers"]
    main = _find(containers, argo.MAIN)
    main_mounts = copy.deepcopy((main or {}).get("volumeMounts") or [])

    def mirrored() -> list[Json]:
        out = []
        for mnt in main_mounts:
            m = {k: v for k, v in mnt.items() if k != "readOnly"}
            m["mountPath"] = _main_fs(mnt["mountPath"])
            out.append(m)
        return out

    if not t.v4:
        waits = [c for c in containers if c["name"] == argo.WAIT]
        if waits:
            waits[-1].setdefault("volumeMounts", []).extend(mirrored())
        return
    for c in containers:
        if not _is_argo_sidecar(t, c["name"]):
            continue
        existing = {m["mountPath"] for m in c.get("volumeMounts") or []}
        for m in mirrored():
            if m["mountPath"] in existing:
                continue
            existing.add(m["mountPath"])
            c.setdefault("volumeMounts", []).append(m)


def _offload(t: Tag, pod: Json, nid: str, node: str, owner: Json) -> Json | None:
    # createWorkflowPod (3.6.19, 3.7.18) / podBuilder.build (4.1.2): the ConfigMap offload of ARGO_TEMPLATE and,
    # from 3.7.10, of a container's args
    pspec = pod["spec"]
    args_value = args_owner = None
    if t.offloads_args:
        for c in pspec["containers"]:
            if _is_argo_sidecar(t, c["name"]):
                continue
            if c.get("args") is not None:
                text = gojson.marshal(c["args"])
                if gojson.byte_len(text) > argo.MAX_ENV_VAR_LEN:
                    args_value, args_owner = text, c["name"]
                    break
    template_value = None
    offload_template = False
    inits = pspec.get("initContainers") or []
    scanned = inits if not t.v4 else [*inits, *pspec["containers"]]
    for c in scanned:  # 3.x scans init containers; v4.1.2 eachContainer (init, then regular)
        for e in c.get("env") or []:
            if e["name"] == argo.ENV_TEMPLATE:
                template_value = e["value"]
                if gojson.byte_len(template_value) > argo.MAX_ENV_VAR_LEN:
                    offload_template = True
    if not offload_template and args_value is None:
        return None
    data: dict[str, str] = {}
    if offload_template and template_value is not None:
        data[argo.ENV_TEMPLATE] = template_value
    if args_value is not None:
        data[argo.ENV_CONTAINER_ARGS_FILE] = args_value
    cm_name = pod["metadata"]["name"]
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cm_name,
            "namespace": pod["metadata"]["namespace"],
            "labels": {argo.LABEL_WORKFLOW: pod["metadata"]["labels"][argo.LABEL_WORKFLOW]},
            "annotations": {argo.ANNOTATION_NODE_NAME: node, argo.ANNOTATION_NODE_ID: nid},
            "ownerReferences": [copy.deepcopy(owner)],
        },
        "data": data,
    }
    pspec["volumes"].append({"name": argo.VOLUME_ENV_CONFIG, "configMap": {"name": cm_name}})
    mount = {"name": argo.VOLUME_ENV_CONFIG, "mountPath": argo.ENV_CONFIG_MOUNT}
    if offload_template:
        if not t.v4:  # 3.6/3.7: every init container gets the sentinel and the mount
            for c in inits:
                for e in c.get("env") or []:
                    if e["name"] == argo.ENV_TEMPLATE:
                        e["value"] = argo.TEMPLATE_OFFLOADED
                c.setdefault("volumeMounts", []).append(dict(mount))
        else:  # v4.1.2: every container that carried ARGO_TEMPLATE
            for c in [*inits, *pspec["containers"]]:
                replaced = False
                for e in c.get("env") or []:
                    if e["name"] == argo.ENV_TEMPLATE:
                        e["value"] = argo.TEMPLATE_OFFLOADED
                        replaced = True
                if replaced:
                    c.setdefault("volumeMounts", []).append(dict(mount))
    if args_owner is not None:
        for c in pspec["containers"]:
            if c["name"] == args_owner:
                del c["args"]  # "Clear the args - they will be read from file"
                c.setdefault("env", []).append(
                    {"name": argo.ENV_CONTAINER_ARGS_FILE,
                     "value": f"{argo.ENV_CONFIG_MOUNT}/{argo.ENV_CONTAINER_ARGS_FILE}"}
                )
                c.setdefault("volumeMounts", []).append(dict(mount))
    return configmap


def env_value(container: Mapping[str, Any], name: str) -> str | None:
    """The value of env var `name` on a container (None when unset) — a reader for tests, not Argo code."""
    for e in container.get("env") or []:
        if e.get("name") == name:
            return str(e.get("value", ""))
    return None


def container_named(pod: Mapping[str, Any], name: str) -> Json:
    for c in [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]:
        if c["name"] == name:
            return c  # type: ignore[no-any-return]
    raise KeyError(name)
