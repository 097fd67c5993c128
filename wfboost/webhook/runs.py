"""A memoizable step that runs for real: its outputs go under a key of its own (wfboost.cache.runs explains why).

The patch names the run (`wfboost.io/run`) and, when the template has output artifacts, appends the run's segment
to the key of the archive location in every copy of the executor's template. The controller never reads the pod's
copy back (it keeps its own template, and takes the reported locations from the task result as they are:
controller/taskresult.go taskResultReconciliation), so the locations the step reports, which every consumer reads
and the artifact GC deletes, are the ones the executor wrote.

When the key cannot be rewritten (the template would not fit in one env string, the archive location has no key),
the run goes ahead unchanged: the recorder then keeps none of its artifacts, because nothing proves they will not
be written over.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from wfboost.argo.artifacts import ArtifactLocationError, get_key, set_key
from wfboost.argo.pods import ArgoStep
from wfboost.cache.runs import run_key
from wfboost.structs.patch import PatchOp
from wfboost.webhook.executor_template import (
    TemplateTooLarge,
    offloaded,
    rewritten_values,
    template_slots,
    value_ops,
)

log = logging.getLogger(__name__)


def write_once_ops(step: ArgoStep, run_id: str) -> list[PatchOp]:
    """Operations that move the run's uploads under its own segment; none when it has no output artifacts or its
    archive key cannot be rewritten."""
    template = step.template or {}
    if not (template.get("outputs") or {}).get("artifacts"):
        return []
    slots = template_slots(step)
    if offloaded(step, slots):
        # Inlining the template Argo moved to its ConfigMap would make the pod differ from what the recorder keys
        # (every `$` doubled for the kubelet), and would copy up to 128 KiB into each executor container.
        log.info("pod %s/%s: outputs stay at Argo's own key (not cached): its template is offloaded to a ConfigMap",
                 step.namespace, step.pod_name)
        return []
    try:
        ours = under_run(template, run_id)  # raises for a location whose key cannot be rewritten
        return value_ops(rewritten_values(step, lambda t: ours if t is template else under_run(t, run_id), slots))
    except (ArtifactLocationError, TemplateTooLarge) as exc:
        log.info("pod %s/%s: outputs stay at Argo's own key (not cached): %s", step.namespace, step.pod_name, exc)
        return []


def under_run(template: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The template with its archive location's key under the run's segment."""
    archive = template.get("archiveLocation")
    if not isinstance(archive, Mapping):
        raise ArtifactLocationError("the template has no archive location")
    return {**template, "archiveLocation": set_key(archive, run_key(get_key(archive), run_id))}
