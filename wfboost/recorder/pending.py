"""What the recorder remembers between events: one small record per step, bounded in number and in time.

A step's two halves (pod status, task result) arrive on two watches in any order, and the pod may be gone before
the task result is complete, so the half that arrives first waits here. A node can be run by several pods over
time (a pod deleted while pending and created again, `argo retry`): the record follows the newest pod, and what it
learnt of an older one (its parsed step, its exit, its tombstone) goes when a newer one appears.

Waiting is bounded: a record is dropped after `ttl` seconds without news (every event and every relist refreshes it,
so a long-running pod is not forgotten while it runs), and the oldest records go first when `capacity` is reached. A
finished record stays as a small tombstone for the same time, so replayed watch events and relists cost a dictionary
lookup instead of a parse and a Redis write (the store is idempotent anyway; the tombstone only saves work).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from wfboost.recorder.join import MainExit, PendingStep, TaskOutputs

StepId = tuple[str, str]  # (namespace, node id): the task result's name is the node id


@dataclass
class StepState:
    touched: float
    pod: str = ""  # the run: the newest pod's uid (or name-based id)
    pod_created: str = ""
    step: PendingStep | None = None
    exit: MainExit | None = None
    outputs: TaskOutputs | None = None  # the newest complete task result of the node
    pod_succeeded: bool = False  # the whole pod succeeded, not only main (wait saved every output)
    pod_gone: bool = False
    done: str | None = None  # for this pod: "recorded", or the reason nothing will be recorded
    recording: bool = False  # a write is in flight (the two watches run concurrently)
    write_failed: bool = False  # the store refused or was unreachable; the housekeeping tick retries
    awaiting_node: bool = False  # the controller has not marked the node yet; the housekeeping tick asks again
    finished_seen: float = 0.0  # when main's termination was first seen (the recorder's clock): latching's grace

    @property
    def ready(self) -> bool:
        return (
            self.done is None
            and not self.recording
            and self.pod_succeeded
            and None not in (self.step, self.exit, self.outputs)
        )

    def new_run(self, pod: str, created: str) -> None:
        """Another pod runs the node now: forget the earlier one (the task result stays; whether it belongs to
        the new run is decided when they are joined)."""
        self.pod, self.pod_created = pod, created
        self.step, self.exit, self.pod_succeeded, self.pod_gone = None, None, False, False
        self.done, self.write_failed, self.awaiting_node, self.finished_seen = None, False, False, 0.0


@dataclass
class PendingTable:
    ttl: float
    capacity: int
    _states: OrderedDict[StepId, StepState] = field(default_factory=OrderedDict)
    evicted: int = 0  # records dropped for capacity while still waiting
    expired: int = 0  # records dropped after `ttl` while still waiting

    def get(self, ident: StepId) -> StepState | None:
        return self._states.get(ident)

    def touch(self, ident: StepId, now: float) -> StepState:
        """The record for a step, created when missing, marked as the most recently seen."""
        state = self._states.get(ident)
        if state is None:
            state = self._states[ident] = StepState(touched=now)
            while len(self._states) > self.capacity:
                _, oldest = self._states.popitem(last=False)
                self.evicted += int(oldest.done is None)
        else:
            state.touched = now
            self._states.move_to_end(ident)
        return state

    def expire(self, now: float) -> list[tuple[StepId, StepState]]:
        """Drop records older than `ttl`; returns the ones that were still waiting (for logs and metrics)."""
        dropped = []
        while self._states:
            ident, oldest = next(iter(self._states.items()))
            if now - oldest.touched < self.ttl:
                break
            del self._states[ident]
            if oldest.done is None:
                self.expired += 1
                dropped.append((ident, oldest))
        return dropped

    def waiting(self) -> int:
        return sum(1 for state in self._states.values() if state.done is None)

    def items(self) -> Iterator[tuple[StepId, StepState]]:
        return iter(list(self._states.items()))

    def __len__(self) -> int:
        return len(self._states)
