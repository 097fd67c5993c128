"""DAGs over Argo 4's task limit split into nested groups at admission (wfboost.split, docs/split.md).

Where `splitDags` is on: a Workflow at CREATE, and the spec inside a WorkflowTemplate, ClusterWorkflowTemplate or
CronWorkflow at CREATE and at each UPDATE that changes it (every Workflow made from them copies or references its
templates). A Workflow's UPDATEs are the controller's status writes: its spec was settled at CREATE, and a split
now would change the shape of a running tree. The annotation `wfboost.io/split: "false"` on the object leaves it as
it is.

Nothing is stored anywhere, so a dry run gets the same patch. The split is deterministic and leaves every DAG within
the limit, so a second admission of what it wrote changes nothing. A DAG whose meaning a split cannot keep is left
as it is, with a warning saying why (the API server then refuses it, as it would without wfboost); a split DAG gets
a warning too, since the person who submitted it will see the groups in the Argo UI.

This route is listed before `workflows.wfboost.io` in the webhook configuration, so shrinking (which may move
values out of the groups' arguments) sees the split Workflow.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from wfboost.policy.controls import SPLIT
from wfboost.split import DagSplit, SplitResult, dags_over, reads_workflow_failures, spec_of, split_spec
from wfboost.structs.admission import AdmissionRequest
from wfboost.structs.patch import PatchOp
from wfboost.webhook.admission import AdmissionContext, Decision

log = logging.getLogger(__name__)

KINDS = frozenset({("argoproj.io", kind)
                   for kind in ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")})

# The API server may truncate a response's warnings past a few; one per DAG is plenty.
MAX_WARNINGS = 5

# Planning is CPU work (about 0.1 s per 1,000 tasks): off the event loop, which serves pod admissions meanwhile, and
# in a thread of its own, so that a burst of big CREATEs never holds up the default pool that compresses the
# controller's status writes (threads start at the first use: after the workers fork).
class _Planner:
    """The planning thread. A plan that outlives its admission's deadline keeps running (a thread cannot be stopped):
    later plans then get a new thread instead of waiting behind it."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wfboost-split")

    async def run(self, plan: Callable[[], SplitResult]) -> SplitResult:
        future = self.executor.submit(plan)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():
                log.error("a DAG plan ran past the admission's deadline; later plans get a new thread")
                stuck, self.executor = self.executor, ThreadPoolExecutor(max_workers=1,
                                                                         thread_name_prefix="wfboost-split")
                stuck.shutdown(wait=False, cancel_futures=True)
            raise


_PLANNER = _Planner()

CONTROLLER_DEFAULTS = ("the controller's workflowDefaults set templateDefaults or read workflow.failures "
                       "(policy split.controllerTemplateDefaults): they would apply to the groups too")


async def admit_split(request: AdmissionRequest, ctx: AdmissionContext) -> Decision:
    obj: Any = request.get("object") or {}
    kind = (request.get("kind") or {}).get("kind", "Workflow")
    if request.get("operation") != "CREATE":
        if kind == "Workflow":
            return Decision(outcome="not_create")
        if (request.get("oldObject") or {}).get("spec") == obj.get("spec"):
            return Decision(outcome="spec_unchanged")
    if not ctx.policy.split_dags_in(request.get("namespace") or "", ctx.namespace_labels):
        return Decision(outcome="split_off")
    if ((obj.get("metadata") or {}).get("annotations") or {}).get(SPLIT) == "false":
        return Decision(outcome="split_opted_out")
    spec, where = spec_of(obj)
    limit = ctx.policy.split.max_tasks
    if spec is None or not dags_over(spec, limit):
        warning = _defaults_over_templates(spec) if kind == "Workflow" else None
        return Decision(outcome="within_limits", warnings=[warning] if warning else [])
    refused = CONTROLLER_DEFAULTS if ctx.policy.split.controller_template_defaults else None
    result = await _PLANNER.run(functools.partial(split_spec, spec, task_limit=limit, refused=refused))
    split = [dag for dag in result.dags if dag.refused is None]
    for dag in result.dags:
        ctx.metrics.split.dags.labels(result="refused" if dag.refused else "split").inc()
        log.log(logging.WARNING if dag.refused else logging.INFO, "%s %s/%s %s: %s", kind,
                request.get("namespace") or "", request.get("name") or "(generateName)", ".".join(where),
                dag.summary())
    warnings = [dag.warning() for dag in result.refused] + [_told(dag) for dag in split]
    if result.spec is None:
        return Decision(outcome="split_refused", warnings=warnings[:MAX_WARNINGS])
    ops = template_ops(spec.get("templates") or [], result.spec["templates"], "/" + "/".join(where))
    return Decision(ops, "dags_split" if not result.refused else "dags_split_partly", warnings[:MAX_WARNINGS])


def _defaults_over_templates(spec: Mapping[str, Any] | None) -> str | None:
    """A Workflow that runs templates of a WorkflowTemplate or ClusterWorkflowTemplate, with its own
    `templateDefaults` or a `workflow.failures` reader: Argo applies those to every template it resolves, the groups
    of a DAG wfboost split there included (v4.1.2 operator.go `setStoredWfSpec`, `mergedTemplateDefaultsInto`).
    Whether that template was split is not known here, so this is a warning, not a refusal."""
    if not isinstance(spec, Mapping):
        return None
    text = orjson.dumps(spec).decode()
    if "workflowTemplateRef" not in spec and "templateRef" not in text:
        return None
    why = "sets spec.templateDefaults" if spec.get("templateDefaults") else (
        "reads workflow.failures" if reads_workflow_failures(text) else None)
    if why is None:
        return None
    return (f"this Workflow {why} and runs templates of a WorkflowTemplate: if wfboost split a DAG there, that "
            f"applies to its groups too (docs/split.md); annotate the template {SPLIT}: \"false\" to keep it "
            "whole")[:256]


def template_ops(before: Sequence[Any], after: Sequence[Any], prefix: str) -> list[PatchOp]:
    """The rewritten DAG templates replaced where they are, the group templates added after the others (split_spec
    keeps every other template object as it was)."""
    ops: list[PatchOp] = [{"op": "replace", "path": f"{prefix}/templates/{index}", "value": new}
                          for index, (old, new) in enumerate(zip(before, after, strict=False)) if new is not old]
    ops.extend({"op": "add", "path": f"{prefix}/templates/-", "value": new} for new in after[len(before):])
    return ops


def _told(dag: DagSplit) -> str:
    """What the submitter is told about a split DAG, under 256 characters."""
    return (f"wfboost split DAG template {dag.template} ({dag.tasks} tasks, over Argo 4's limit) into "
            f"{len(dag.groups)} nested groups that run it the same way; parallelism kept "
            f"{dag.parallelism_kept:.0%}; opt out with annotation {SPLIT}: \"false\"")[:256]
