"""Which tasks of a DAG go together into nested groups, chosen so that no outcome of any task changes.

A set S of movable tasks (graph.py) can become one nested DAG when, over every outcome of every task:
- **one way in**: every task in S needs (itself or through the tasks of S it waits for) the same external terms E;
  the group waits for E, and each task in S keeps only its terms on tasks of S. When E fails flat, every task of S
  is Omitted; split, the group is Omitted and none of them has a node (docs/split.md, boundary 1), which is the
  same run: nothing in S runs.
- **one way out**: every task outside S that depends on a task of S depends, with success terms, on every sink of
  S (a task of S nothing in S depends on). Inside S conditions are conjunctions of success terms on tasks that can
  only be Succeeded, Failed, Errored or Omitted, so "every sink succeeded" holds exactly when every task of S
  succeeded, which is when the group succeeds: `G.Succeeded` is what each such dependant asked for.

Such sets are found by the series-parallel reduction of the movable part of the graph (after Valdes, Tarjan and
Lawler's recognition of series-parallel digraphs): two blocks with the same way in and the same dependants are
merged side by side, and a block whose only way in is the whole of one block that nothing else depends on is merged
after it. Every block built this way is a valid set, and so is any run of consecutive parts of a series block and
any subset of the parts of a parallel one: a block larger than the limit is cut there. Parallelism is not lost:
a task in a group waits for nothing flat did not also make it wait for (the group's way in is its own), and a
dependant of the group waited flat for every sink of it already.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from wfboost.split.depends import Term
from wfboost.split.graph import DagGraph

__all__ = ["Block", "Part", "plan_groups"]


@dataclass
class Part:
    """A node of a block's decomposition: a task, a series of parts, or parts side by side."""

    kind: str  # task | series | parallel
    task: str | None = None
    parts: list[Part] = field(default_factory=list)

    def tasks(self) -> list[str]:
        if self.task is not None:
            return [self.task]
        return [name for part in self.parts for name in part.tasks()]

    def size(self) -> int:
        return 1 if self.task is not None else sum(part.size() for part in self.parts)


@dataclass(eq=False)  # identity: blocks are merged and tracked by object
class Block:
    entry: frozenset[Term]
    consumers: frozenset[str]
    sinks: frozenset[str]
    part: Part
    first: int  # the smallest task index in it: blocks are visited in the DAG's order
    members: set[str]  # grows as the block absorbs others (small into large: linear on long chains)

    def tasks(self) -> list[str]:
        return self.part.tasks()


def plan_groups(graph: DagGraph, limit: int) -> list[list[str]]:
    """Groups (lists of task names, each of at most `limit` tasks and more than one), as few as it takes to bring the
    DAG to `limit` entries, largest blocks first; the rest of the tasks stay where they are."""
    blocks = _reduce(graph)
    entries = len(graph.tasks)
    groups: list[list[str]] = []
    order = {name: task.index for name, task in graph.tasks.items()}
    for block in sorted(blocks, key=lambda b: (-len(b.members), b.first)):
        if entries <= limit or len(block.members) < 2:
            break
        pieces = _cut(block.part, limit, graph, ordered=not block.consumers)
        entries -= len(block.members) - len(pieces)
        groups.extend(sorted(piece, key=order.__getitem__) for piece in pieces if len(piece) > 1)
    return sorted(groups, key=lambda g: order[g[0]])


def _reduce(graph: DagGraph) -> list[Block]:
    blocks: list[Block] = []
    for name, task in graph.tasks.items():
        if task.stays is None:
            blocks.append(Block(frozenset(graph.terms(name)), frozenset(graph.dependants[name]), frozenset({name}),
                                Part("task", name), task.index, {name}))
    changed = True
    while changed:
        blocks, changed = _side_by_side(blocks)
        owner = {name: block for block in blocks for name in block.members}
        alive = {id(block) for block in blocks}
        for block in list(blocks):
            if id(block) not in alive or not block.entry:
                continue
            before = {owner.get(term.task) for term in block.entry}
            if len(before) != 1:
                continue
            (earlier,) = before
            if earlier is None or earlier is block or id(earlier) not in alive:
                continue
            if not all(term.positive for term in block.entry) or not earlier.consumers <= block.members \
                    or not earlier.sinks <= {term.task for term in block.entry}:
                continue
            survivor = _in_series(earlier, block)
            absorbed = block if survivor is earlier else earlier
            alive.discard(id(absorbed))
            for name in absorbed.members:
                owner[name] = survivor
            changed = True
        blocks = sorted((b for b in blocks if id(b) in alive), key=lambda b: b.first)
    return blocks


def _side_by_side(blocks: list[Block]) -> tuple[list[Block], bool]:
    """Blocks with the same way in and the same dependants merged into one parallel block each."""
    by_shape: dict[tuple[frozenset[Term], frozenset[str]], list[Block]] = defaultdict(list)
    for block in blocks:
        by_shape[(block.entry, block.consumers)].append(block)
    merged: list[Block] = []
    changed = False
    for together in by_shape.values():
        if len(together) == 1:
            merged.append(together[0])
            continue
        changed = True
        merged.append(Block(together[0].entry, together[0].consumers,
                            frozenset().union(*(b.sinks for b in together)),
                            _join("parallel", [b.part for b in together]),
                            min(b.first for b in together),
                            set().union(*(b.members for b in together))))
    return sorted(merged, key=lambda b: b.first), changed


def _in_series(earlier: Block, later: Block) -> Block:
    """`later` after `earlier` as one block, kept in whichever of the two is larger (the other's members move):
    merging a long chain one task at a time stays linear."""
    survivor, absorbed = (earlier, later) if len(earlier.members) >= len(later.members) else (later, earlier)
    survivor.members |= absorbed.members
    if earlier.part.kind == "series":  # extended in place: the absorbed block is gone, nothing else holds it
        earlier.part.parts.extend(later.part.parts if later.part.kind == "series" else [later.part])
        part = earlier.part
    else:
        part = _join("series", [earlier.part, later.part])
    survivor.entry, survivor.consumers, survivor.sinks = earlier.entry, later.consumers, later.sinks
    survivor.part, survivor.first = part, earlier.first
    return survivor


def _join(kind: str, parts: Sequence[Part]) -> Part:
    flat: list[Part] = []
    for part in parts:
        flat.extend(part.parts if part.kind == kind else [part])
    return Part(kind, parts=flat)


def _cut(part: Part, limit: int, graph: DagGraph, *, ordered: bool) -> list[list[str]]:
    """Pieces of at most `limit` tasks, each a valid group: runs of a series, subsets of a parallel block.

    `ordered`: the part holds leaves of the DAG. Argo decides a failed DAG's phase (Failed or Error) by the first
    failed target in name order (dag.go `assessDAGPhase`, with failFast), so such pieces are cut in the order of
    their leaves' names, keeping each piece's leaves one run of that order (workflow.py checks the result)."""
    if part.size() <= limit:
        return [part.tasks()]
    if part.kind == "series":
        return _cut_series(part.parts, limit, graph, ordered=ordered)
    pieces: list[list[str]] = []
    if ordered:
        current: list[str] = []
        for child in sorted(part.parts, key=lambda p: _first_leaf(p, graph)):
            if child.size() > limit:
                if current:
                    pieces.append(current)
                    current = []
                pieces.extend(_cut(child, limit, graph, ordered=True))
            elif len(current) + child.size() > limit:
                pieces.append(current)
                current = child.tasks()
            else:
                current.extend(child.tasks())
        return pieces + ([current] if current else [])
    bins: list[list[str]] = []
    for child in sorted(part.parts, key=lambda p: -p.size()):  # first fit decreasing; stable
        if child.size() > limit:
            pieces.extend(_cut(child, limit, graph, ordered=False))
            continue
        for bin_ in bins:
            if len(bin_) + child.size() <= limit:
                bin_.extend(child.tasks())
                break
        else:
            bins.append(child.tasks())
    return pieces + bins


def _first_leaf(part: Part, graph: DagGraph) -> str:
    return min((name for name in part.tasks() if not graph.dependants[name]), default="")


def _cut_series(parts: Sequence[Part], limit: int, graph: DagGraph, *, ordered: bool) -> list[list[str]]:
    """Consecutive parts packed up to the limit, never cutting between two parts where the later reads values of
    the earlier (a Kubeflow driver and its executor stay together) unless the pair alone is over the limit. Only
    the last part of a series holds leaves."""
    units: list[list[Part]] = []
    for part in parts:
        joined = units and sum(p.size() for p in units[-1]) + part.size() <= limit
        if joined and _reads_from(part, units[-1][-1], graph):
            units[-1].append(part)
        else:
            units.append([part])
    pieces: list[list[str]] = []
    current: list[str] = []
    for unit in units:
        size = sum(p.size() for p in unit)
        if size > limit:
            if current:
                pieces.append(current)
                current = []
            for p in unit:
                pieces.extend(_cut(p, limit, graph, ordered=ordered and p is parts[-1]))
            continue
        if len(current) + size > limit:
            pieces.append(current)
            current = []
        current.extend(name for p in unit for name in p.tasks())
    if current:
        pieces.append(current)
    return pieces


def _reads_from(later: Part, earlier: Part, graph: DagGraph) -> bool:
    produced = set(earlier.tasks())
    return any(ref.task in produced for name in later.tasks() for ref in graph.tasks[name].reads)
