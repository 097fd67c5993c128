"""Names of the per-step controls (pod labels or annotations, set through a template's `metadata`).

They live next to the policy because each one refines a policy default of the same name: `wfboost.io/cache`
switches memoization for one step where `memoize` is on for the namespace, `wfboost.io/max-staleness` replaces
`memoize.maxStaleness` (and is clamped by `memoize.maxStalenessLimit`), `wfboost.io/latch` switches latching
for one step where `latch` is on. Keeping the names here lets every layer above use them without a second
spelling.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CACHE",
    "CACHE_HIT",
    "CACHE_KEY",
    "CACHE_OUTCOME",
    "CACHE_SEED",
    "CACHE_SOURCE",
    "LATCH",
    "MAX_STALENESS",
    "PREFIX",
    "SPLIT",
]

PREFIX: Final = "wfboost.io/"
# "false" turns memoization off for the step (nothing looked up, nothing recorded).
CACHE: Final = PREFIX + "cache"
# ISO-8601 duration; "P0D" never reuses an entry (the result is still recorded).
MAX_STALENESS: Final = PREFIX + "max-staleness"
# Any string; part of the cache key, so changing it starts a fresh cache for the step.
CACHE_SEED: Final = PREFIX + "cache-seed"
# "false" makes the step run even when an identical one is in flight.
LATCH: Final = PREFIX + "latch"

# An annotation of a Workflow, WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow: "false" leaves its DAGs
# as they are where `splitDags` is on (the API server then refuses a DAG over Argo 4's limit, as without wfboost).
SPLIT: Final = PREFIX + "split"

# Set by the webhook on a replayed (cache hit) pod; the recorder never records such a pod (its outputs are cached).
CACHE_HIT: Final = PREFIX + "cache-hit"
# Annotations the webhook writes on every memoized pod, for people (`kubectl describe pod`) and for the recorder's
# consistency check; never trusted as input.
CACHE_KEY: Final = PREFIX + "cache-key"
CACHE_OUTCOME: Final = PREFIX + "cache-outcome"  # "hit", "miss: <reason>", "skipped: <reason>"
CACHE_SOURCE: Final = PREFIX + "cache-source"  # on hits: where the outputs came from (JSON)
