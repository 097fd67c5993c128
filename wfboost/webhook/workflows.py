"""Workflows: at CREATE, bulky arguments and template literals that only reach containers moved to the side store
(wfboost.shrink.workflow, where `shrinkWorkflows` is on), and the same for WorkflowTemplates and CronWorkflows at
CREATE and at each UPDATE that changes their spec (every Workflow made from them copies what they hold); at every
Workflow write, large node statuses stored compressed in the controller's own format
(wfboost.shrink.status, where `compressStatus` is on); and at CREATE a warning for a Workflow that Argo 4's schema
will refuse (wfboost.argo.schema_limits); where `shrinkTaskResults` is on, at Workflow CREATE the templates that may
receive a step output moved out of its task result are marked for restoring (wfboost.shrink.outputs). The warning
is given whatever the policy says: it changes nothing, and it is the one place a user learns why the API server is
about to refuse the Workflow and what to do.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from wfboost.argo.schema_limits import schema_limits_exceeded
from wfboost.shrink.outputs import plan_output_marks
from wfboost.shrink.status import compress_status, status_nodes_json
from wfboost.shrink.workflow import RESTORE_LABEL, label_ops, plan_workflow_shrink
from wfboost.structs.admission import AdmissionRequest
from wfboost.webhook.admission import UNCHANGED, AdmissionContext, Decision

log = logging.getLogger(__name__)

KINDS = frozenset({("argoproj.io", "Workflow"), ("argoproj.io", "WorkflowTemplate"), ("argoproj.io", "CronWorkflow")})

# Warnings past the first few add nothing a user can act on; the API server caps their total size too.
MAX_WARNINGS = 5

# Below this, compressing in the event loop is cheaper than handing the work to a thread.
_INLINE_BYTES = 256 * 1024


async def admit_workflow(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    workflow = request.get("object") or {}
    create = request.get("operation") == "CREATE"
    if (request.get("kind") or {}).get("kind", "Workflow") != "Workflow":
        return await _template_holder(request, workflow, ctx, create)
    warnings = schema_warnings(workflow.get("spec"), "spec", ctx) if create else []
    decisions = []
    if create:
        moved, labelled = await _moved(request, workflow, ctx)
        decisions += [moved, await _outputs_marked(request, workflow, ctx, labelled)]
    else:
        decisions.append(_restore_marks_kept(request, workflow))
    decisions.append(await _compressed(request, workflow, ctx))
    ops = [op for decision in decisions for op in decision.patch]
    patched = [decision.outcome for decision in decisions if decision.patch]
    if patched:
        outcome = patched[0]
    elif warnings:
        outcome = "schema_limit_warned"
    else:
        outcome = next((d.outcome for d in decisions if d.outcome != UNCHANGED.outcome), UNCHANGED.outcome)
    return Decision(ops, outcome, warnings)


async def _moved(request: AdmissionRequest, workflow: dict[str, object],
                 ctx: AdmissionContext) -> tuple[Decision, set[str]]:
    """Bulky arguments to the side store (before the answer: a pod may need them as soon as the Workflow exists);
    with the templates the patch gives the restore label."""
    namespace = request.get("namespace") or ""
    if not ctx.policy.shrink_workflows_in(namespace, ctx.namespace_labels):
        return UNCHANGED, set()
    if ctx.dry_run:
        return Decision(outcome="dry_run"), set()  # nothing written, so nothing may point at the side store either
    plan = plan_workflow_shrink(workflow, ctx.policy.shrink)
    if isinstance(plan, str):
        return Decision(outcome=plan), set()
    client = ctx.require_sidestore()
    await asyncio.gather(*(client.put(namespace, data) for data in plan.blobs()))
    ctx.metrics.shrink.values_moved.inc(len(plan.moved) + sum(table.calls * len(table.inputs) for table in plan.tables))
    ctx.metrics.shrink.bytes_saved.labels(what="values").inc(max(0, plan.size_before - plan.size_after))
    log.info(
        "%s %s/%s: %d value(s) and %d argument table(s) moved to the side store, %d -> %d bytes",
        workflow.get("kind") or "Workflow", namespace, request.get("name") or "(generateName)", len(plan.moved),
        len(plan.tables), plan.size_before, plan.size_after,
    )
    return Decision(plan.ops, "values_moved"), plan.labelled


async def _outputs_marked(request: AdmissionRequest, workflow: dict[str, object], ctx: AdmissionContext,
                          labelled: set[str]) -> Decision:
    """The templates that may receive a step output moved out of its task result, marked for restoring
    (wfboost.shrink.outputs). Nothing is stored: a dry run gets the same patch."""
    if not ctx.policy.shrink_task_results_in(request.get("namespace") or "", ctx.namespace_labels):
        return UNCHANGED
    if len(orjson.dumps(workflow.get("spec"))) < _INLINE_BYTES:
        marks = plan_output_marks(workflow, labelled)
    else:  # about a second of CPU for a 2,000-task Kubeflow spec
        marks = await asyncio.to_thread(plan_output_marks, workflow, labelled)
    if marks.analysis.movable:
        log.debug("Workflow %s/%s: outputs that may move: %s", request.get("namespace"),
                  request.get("name") or "(generateName)", ", ".join(sorted(marks.analysis.movable)))
    return Decision(marks.ops, "outputs_marked" if marks.analysis.movable else "no_movable_outputs")


def _restore_marks_kept(request: AdmissionRequest, workflow: dict[str, object]) -> Decision:
    """At UPDATE, whatever the policy says: a template that carried the restore mark keeps it. Its calls may hold
    references already (moved arguments, a moved output in a node's status): a spec written back without the marks
    (`kubectl replace -f` of the original manifest, a GitOps sync) would start its pods with them. Cheap on the
    controller's hot path: only the templates' labels are compared."""
    old: Any = request.get("oldObject") or {}
    marked = {t.get("name") for t in (old.get("spec") or {}).get("templates") or []
              if isinstance(t, dict) and ((t.get("metadata") or {}).get("labels") or {}).get(RESTORE_LABEL) == "true"}
    if not marked:
        return UNCHANGED
    spec: Any = workflow.get("spec") or {}
    lost = {t.get("name") for t in spec.get("templates") or [] if isinstance(t, dict) and t.get("name") in marked
            and ((t.get("metadata") or {}).get("labels") or {}).get(RESTORE_LABEL) != "true"}
    if not lost:
        return UNCHANGED
    log.warning("Workflow %s/%s: the restore mark of %s kept (its pods may receive references)",
                request.get("namespace"), request.get("name"), ", ".join(sorted(str(n) for n in lost)))
    return Decision(label_ops(spec, {str(n) for n in lost}), "restore_marks_kept")


async def _template_holder(request: AdmissionRequest, holder: dict[str, object], ctx: AdmissionContext,
                           create: bool) -> Decision:
    """A WorkflowTemplate or CronWorkflow: shrunk at CREATE, and at an UPDATE only when its spec changed (the cron
    controller's status writes leave it as it is). Argo 4's CRDs for both embed the Workflow spec's schema, limits
    included, so its warnings come at CREATE too: the cron controller's own CREATEs would say it only in its log."""
    if not create and (request.get("oldObject") or {}).get("spec") == holder.get("spec"):
        return Decision(outcome="spec_unchanged")
    spec: Any = holder.get("spec")
    warnings = []
    if create and isinstance(spec, dict):
        cron = (request.get("kind") or {}).get("kind") == "CronWorkflow"
        warnings = schema_warnings(spec.get("workflowSpec") if cron else spec, "spec.workflowSpec" if cron else "spec",
                                   ctx)
    decision, _ = await _moved(request, holder, ctx)
    outcome = "schema_limit_warned" if warnings and not decision.patch else decision.outcome
    return Decision(decision.patch, outcome, warnings)


def schema_warnings(spec: object, where: str, ctx: AdmissionContext) -> list[str]:
    """Argo 4's schema limits, unless the policy says every controller is 3.x or the CRDs are minimal (neither has
    them).

    Only at CREATE: the controller's status UPDATEs would repeat the warning into its log at every write.
    """
    version = ctx.policy.shrink.controller_version
    if ctx.policy.split.argo_crds == "minimal":
        return []
    if version is not None and version.lstrip("v").split(".")[0] in ("1", "2", "3"):
        return []
    return [limit.warning() for limit in schema_limits_exceeded(spec, where)[:MAX_WARNINGS]]


async def _compressed(request: AdmissionRequest, workflow: dict[str, object], ctx: AdmissionContext) -> Decision:
    namespace = request.get("namespace") or ""
    if not ctx.policy.compress_status_in(namespace, ctx.namespace_labels):
        return UNCHANGED
    settings = ctx.policy.shrink
    chosen = status_nodes_json(workflow, settings.status_threshold_bytes)
    if isinstance(chosen, str):
        return Decision(outcome=chosen)
    if len(chosen) < _INLINE_BYTES:
        compressed = compress_status(chosen, settings.status_compression)
    else:
        compressed = await asyncio.to_thread(compress_status, chosen, settings.status_compression)
    saved = compressed.nodes_bytes - compressed.compressed_bytes
    if saved <= 0:
        return Decision(outcome="status_incompressible")
    ctx.metrics.shrink.bytes_saved.labels(what="status").inc(saved)
    log.debug(
        "Workflow %s/%s: status.nodes %d bytes stored as compressedNodes of %d",
        namespace, request.get("name", ""), compressed.nodes_bytes, compressed.compressed_bytes,
    )
    return Decision(compressed.ops, "status_compressed")
