"""Splitting DAGs over Argo 4's schema limits into nested groups that keep the workflow's meaning (docs/split.md)."""

from wfboost.split.workflow import (
    TASK_LIMIT,
    TEMPLATE_LIMIT,
    DagSplit,
    SplitResult,
    dags_over,
    reads_workflow_failures,
    spec_of,
    split_spec,
)

__all__ = ["TASK_LIMIT", "TEMPLATE_LIMIT", "DagSplit", "SplitResult", "dags_over", "reads_workflow_failures", "spec_of",
           "split_spec"]
