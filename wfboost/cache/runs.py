"""Write-once outputs: every memoized run uploads its artifacts under a key no other run uses. Pure: no I/O.

A cache entry points at its artifacts, and a downstream step is keyed by where its input artifacts live. Both are
only sound if nothing ever writes another object to that place. Argo's default key
(`{{workflow.name}}/{{pod.name}}`, `DefaultArchivePattern` in pkg/apis/workflow/v1alpha1/artifact_repository_types.go)
repeats whenever a workflow is created again under the same name or a node is retried (`argo retry`), so by itself
it is not such a place: the second run writes new content where the first run's entry, and every consumer's key,
still point.

So the webhook gives each memoizable run it admits an id (pod annotation `wfboost.io/run`) and appends the segment
`wfboost-run-<id>` to the key of the archive location in the executor's template; the executor joins each output
artifact's file name to that key (executor.go `saveArtifactFromFile`). The recorder records artifacts only when
their keys carry the segment of the run it is recording, and a consumer's input artifact counts as immutable only
when its key carries such a segment (or it is pinned by content: raw, git at a commit).
"""

from __future__ import annotations

import re
import secrets

# The pod annotation that names the run; set by the webhook on the memoizable pods it admits.
RUN_ANNOTATION = "wfboost.io/run"
SEGMENT_PREFIX = "wfboost-run-"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
# Lookarounds, so that two adjacent segments both count (the slash between them belongs to neither match).
_SEGMENT = re.compile(rf"(?:^|(?<=/)){re.escape(SEGMENT_PREFIX)}([0-9a-f]{{32}})(?=/|$)")
# What could make a key's text name another object than it reads: parent steps, percent-escapes (a URL's `%2F`),
# backslashes. A key with any of them is never taken as written once.
_AMBIGUOUS = re.compile(r"(?:^|/)\.\.(?:/|$)|%|\\")


def new_run_id() -> str:
    """128 random bits: no two admissions share one."""
    return secrets.token_hex(16)


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.fullmatch(text))


def run_key(archive_key: str, run_id: str) -> str:
    """The archive key a run uploads under (Go's `path.Join` of the two, as the executor joins file names)."""
    segment = f"{SEGMENT_PREFIX}{run_id}"
    stripped = archive_key.rstrip("/")
    return f"{stripped}/{segment}" if stripped else segment


def written_by(key: str, run_id: str) -> bool:
    """Whether an artifact at `key` was uploaded under the run's own segment."""
    return bool(run_id) and not _AMBIGUOUS.search(key) and run_id in _SEGMENT.findall(key)


def written_once(key: str) -> bool:
    """Whether `key` lies under some run's own segment: an object no later run writes again.

    A claim made by the key's text: the id is random and only the webhook hands it out, so no run of a memoized
    step writes there again; a step of any kind that copies another run's segment into a key of its own on purpose
    is not something a key can rule out (docs/memoization.md, "What wfboost cannot see").
    """
    return not _AMBIGUOUS.search(key) and _SEGMENT.search(key) is not None
