"""What memoization decides for one step pod, and the patch that carries it out. Pure: no I/O.

`decide` takes what is known once the store has answered (the parsed step, how the step is memoized, the lookup's
answer) and says hit, miss or skipped, with the reason; `patch_for` turns that into JSON Patch operations on the pod
as received: a replay for a hit (replay.py), a run of its own for a miss (its uploads under its own key, runs.py),
and annotations saying what happened and why, so a user sees it in `kubectl describe pod`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from wfboost.argo.pods import ArgoStep
from wfboost.cache.eligibility import Candidate, Skip
from wfboost.cache.entries import CacheEntry
from wfboost.cache.leases import LEASE_ANNOTATION, describe_owner
from wfboost.cache.runs import RUN_ANNOTATION
from wfboost.cache.store import Lookup, Verdict
from wfboost.policy import ReplaySettings
from wfboost.policy.controls import CACHE_HIT, CACHE_KEY, CACHE_OUTCOME, CACHE_SOURCE
from wfboost.structs.patch import PatchOp
from wfboost.webhook.replay import NotReplayable, ReplayPlan, hit_patch, metadata_ops, replay_plan
from wfboost.webhook.runs import write_once_ops

MemoVerdict = Literal["hit", "miss", "skipped", "deferred"]


@dataclass(frozen=True)
class MemoDecision:
    """Hit (with the entry and how to replay it), miss or skipped, and why."""

    verdict: MemoVerdict
    reason: str  # metric label: no_entry, staleness_zero, cache_off, entry_missing_stdout…; "" for hits
    detail: str = ""  # what exactly, for the pod's annotation and `wfboost review`
    key: str = ""
    entry: CacheEntry | None = None
    plan: ReplayPlan | None = None
    lease_owner: str = ""  # a miss that leads its key's run (latching): the lease it holds
    leader: str = ""  # deferred: who leads

    @property
    def outcome(self) -> str:
        """The label counted by the admission metrics and shown by `wfboost review`."""
        return "hit" if self.verdict == "hit" else f"{self.verdict}_{self.reason}"

    @property
    def annotation(self) -> str:
        """`hit`, or `miss: <reason> (<detail>)` / `skipped: <reason> (<detail>)`: the pod's cache-outcome."""
        if self.verdict == "hit":
            return "hit"
        return f"{self.verdict}: {self.reason}" + (f" ({self.detail})" if self.detail else "")

    @property
    def replayed_bytes(self) -> int:
        return self.plan.payload if self.plan is not None else 0


def decide(step: ArgoStep, assessment: Skip | Candidate, found: Lookup | None, *, owner: str = "") -> MemoDecision:
    """The decision for a step, given how it is memoized and what the store answered (None: not asked); `owner` is
    the lease this pod asked for, when it asked for one."""
    if isinstance(assessment, Skip):
        return MemoDecision("skipped", assessment.reason, assessment.detail)
    key = assessment.key
    if assessment.staleness.total_seconds() <= 0:
        return MemoDecision("miss", "staleness_zero", key=key)
    if found is not None and found.verdict is Verdict.RERUN:
        detail = "this node was replayed before and came back (a retry): it runs for real"
        return MemoDecision("miss", "rerun_after_hit", detail, key=key)
    if found is not None and found.verdict is Verdict.FOLLOWER:
        leader = describe_owner(found.lease_holder, step.namespace)
        return MemoDecision("deferred", "latch_follower", f"waiting for {leader}", key=key, leader=leader)
    if found is not None and found.verdict is Verdict.WAITED:
        detail = (f"waited {found.waited_ms // 1000} s for {describe_owner(found.lease_holder, step.namespace)}: "
                  "it runs for real")
        return MemoDecision("miss", "latch_wait_over", detail, key=key)
    if found is not None and found.verdict is Verdict.LEADER:
        return MemoDecision("miss", "no_entry", "it leads: identical steps wait for it", key=key, lease_owner=owner)
    if found is None or found.verdict is not Verdict.HIT or found.entry is None:
        return MemoDecision("miss", "no_entry", key=key)
    try:
        plan = replay_plan(step, found.entry)
    except NotReplayable as exc:
        return MemoDecision("miss", exc.reason, exc.detail, key=key)
    return MemoDecision("hit", "", key=key, entry=found.entry, plan=plan)


def patch_for(step: ArgoStep, decision: MemoDecision, replay: ReplaySettings, *, run_id: str) -> list[PatchOp]:
    """The operations that carry the decision out on the pod as received; `run_id` (cache/runs.py) names a miss's
    run."""
    if decision.verdict != "hit" or decision.entry is None or decision.plan is None:
        annotations = {CACHE_OUTCOME: decision.annotation}
        ops: list[PatchOp] = []
        if decision.key:
            annotations[CACHE_KEY] = decision.key
        if decision.verdict == "miss":
            annotations[RUN_ANNOTATION] = run_id
            ops = write_once_ops(step, run_id)
        if decision.lease_owner:
            annotations[LEASE_ANNOTATION] = decision.lease_owner
        return [*ops, *metadata_ops(step.pod, labels={}, annotations=annotations)]
    entry = decision.entry
    producer = entry["producer"]
    source = {
        "namespace": producer["namespace"],
        "workflow": producer["workflow"],
        "node": producer["node_name"],
        "finishedAt": entry["finished_at"],
        "entry": entry["entry_id"],
    }
    annotations = {CACHE_KEY: decision.key, CACHE_OUTCOME: "hit", CACHE_SOURCE: orjson.dumps(source).decode()}
    return hit_patch(step, decision.plan, replay, labels={CACHE_HIT: "true"}, annotations=annotations)
