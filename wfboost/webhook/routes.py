"""The admitted kinds and their URL paths (`/mutate/<name>`), in one table."""

from __future__ import annotations

from wfboost.webhook import pods, restore, splitting, taskresults, workflows
from wfboost.webhook.admission import Route

ROUTES: dict[str, Route] = {
    "restore": Route("restore", restore.KINDS, restore.admit_restore, fail_closed=True),
    "pods": Route("pods", pods.KINDS, pods.admit_pod),
    "split": Route("split", splitting.KINDS, splitting.admit_split, cluster_scoped=True),
    "workflows": Route("workflows", workflows.KINDS, workflows.admit_workflow),
    "workflowtaskresults": Route("workflowtaskresults", taskresults.KINDS, taskresults.admit_taskresult),
}

# Which route reviews an object of a given kind, for `wfboost review` on bare objects. The split has its own command
# (`wfboost split`); review says in a line what it would do.
ROUTE_BY_KIND: dict[str, str] = {
    kind: route.name for route in ROUTES.values() if not route.fail_closed and route.name != "split"
    for _, kind in route.kinds
}
