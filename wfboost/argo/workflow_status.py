"""Reading a Workflow object the way Argo's controller stores and reads it, and writing its compressed node statuses.

wfboost sees Workflows as the Kubernetes API returns them (dicts), not as the controller holds them in memory, and
the two differ: the controller packs the node statuses of a large Workflow into `status.compressedNodes` or moves them
to its database (`status.offloadNodeStatusVersion`), and it runs a Workflow that references a WorkflowTemplate from
the spec it stored in `status.storedWorkflowTemplateSpec`, not from `spec`. This module reads node phases, the shutdown
flag and artifact GC strategies through those layers, so that wfboost decides on what the controller decides on.
It is pure: no API calls and no database; when the answer is in Argo's database it says so (None) instead of guessing.
`compressed_nodes` writes `status.compressedNodes` in the controller's own format, beside the code that reads it, so
the format has one definition.

Field names and rules are from pkg/apis/workflow/v1alpha1/workflow_types.go, workflow/packer/packer.go,
util/file/fileutil.go, workflow/hydrator/hydrator.go and workflow/controller/operator.go at v3.5.14, v3.7.18 and
v4.1.2.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Mapping
from typing import Any, Final

import orjson
import zstandard
from zlib_ng import gzip_ng

from wfboost.policy.model import NodeCompression

# `ArtifactGCNever`: what an artifact whose strategy is undefined at every level gets.
ARTIFACT_GC_NEVER: Final = "Never"

# zlib-ng's level 5: on Kubeflow-shaped node statuses as small as zlib's level 6 (Go's gzip default, what Argo
# writes with) within one per cent, at about a quarter of the time; ISA-L's fastest levels are ten times quicker but
# 8% larger, zlib-ng's lower levels 10-35% larger (`make bench` prints them beside zlib; docs/shrinking.md).
GZIP_LEVEL: Final = 5
# zstd's default level, as klauspost's `zstd.SpeedDefault` that Argo v4.1 writes with.
ZSTD_LEVEL: Final = 3

_ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC: Final = b"\x1f\x8b"


class WorkflowStatusError(ValueError):
    """A Workflow whose stored status Argo itself could not read (bad base64, bad compression, bad JSON)."""


class UnsupportedCompressionError(WorkflowStatusError):
    """Compressed node statuses in a format wfboost cannot decode (brotli, written by v4.1+ on request)."""


def node_statuses(workflow: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The Workflow's node statuses by node ID; None when they are offloaded to Argo's database.

    Mirrors `hydrator.Hydrate` in workflow/hydrator/hydrator.go and `packer.DecompressWorkflow` in
    workflow/packer/packer.go (checked at v3.5.14, v3.7.18 and v4.1.2):

    - `status.offloadNodeStatusVersion` non-empty: the controller replaces whatever nodes the object holds with the
      ones in its database, so they cannot be read from the object (None);
    - `status.nodes` non-empty: those;
    - else `status.compressedNodes` non-empty: base64 (standard alphabet, padded) of compressed JSON of the nodes map,
      as `file.CompressEncodeString` in util/file/fileutil.go writes it, decoded as `DecodeDecompressString` does;
    - else no nodes yet (an empty dict).

    The returned dict is new but its node objects are the workflow's own (or freshly decoded).
    """
    status = _mapping(workflow.get("status"), "status")
    if _string(status, "offloadNodeStatusVersion", "status"):
        return None
    nodes = status.get("nodes")
    if nodes:
        return _nodes_map(nodes)
    compressed = _string(status, "compressedNodes", "status")
    if compressed:
        return _nodes_map(_decode_json(_decompress(_decode_base64(compressed))))
    return {}


def compressed_nodes(nodes_json: bytes, compression: NodeCompression = "gzip") -> str:
    """`status.compressedNodes` for a nodes map given as JSON, as `file.CompressEncodeString` writes it.

    Base64 (standard alphabet, padded) of one gzip member, or of one zstd frame. Every controller reads gzip
    (`file.DecodeDecompressString` in util/file/fileutil.go, v3.5.14 to v4.1.2); zstd is read from v4.1.0 on, which
    tells the format by its magic bytes (v4.0.10 reads gzip only). The gzip member carries no file name and a zero
    mtime, so equal nodes give equal text.
    """
    if compression == "zstd":
        packed = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(nodes_json)
    else:
        packed = gzip_ng.compress(nodes_json, compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[no-untyped-call]
    return base64.b64encode(packed).decode("ascii")


def node_phase(workflow: Mapping[str, Any], node_id: str) -> str | None:
    """The phase of node `node_id`; None when the node is unknown or the node statuses are offloaded.

    Reads `status.nodes[node_id].phase` through `node_statuses` (so compressed statuses are decoded), as `Nodes.Get` in
    pkg/apis/workflow/v1alpha1/workflow_types.go looks a node up by ID (checked at v3.5.14, v3.7.18 and v4.1.2). A node
    without a phase gives '' (Go's zero `NodePhase`), which is not None: the node exists.
    """
    nodes = node_statuses(workflow)
    if nodes is None or node_id not in nodes:
        return None
    return _string(nodes[node_id], "phase", f"status.nodes.{node_id}")


def is_shut_down(workflow: Mapping[str, Any]) -> bool:
    """Whether the controller is shutting the Workflow down (`argo stop` or `argo terminate`).

    Mirrors `wfOperationCtx.GetShutdownStrategy` in workflow/controller/operator.go and `ShutdownStrategy.Enabled` in
    pkg/apis/workflow/v1alpha1/workflow_types.go (checked at v3.5.14, v3.7.18 and v4.1.2): `spec.shutdown` is
    `Stop` or `Terminate`, and any non-empty value counts (Argo does not validate it). The controller reads it from
    the spec it executes: for a Workflow with `spec.workflowTemplateRef` that is `status.storedWorkflowTemplateSpec`,
    which `setStoredWfSpec` re-merges with `spec` whenever their `shutdown` differ, the Workflow's own value winning
    when it is set. So a referencing Workflow is shut down when either has a value: clearing `spec.shutdown` does not
    clear the stored one.
    """
    spec = _spec(workflow)
    if _string(spec, "shutdown", "spec"):
        return True
    stored = _stored_spec(workflow)
    return _references_template(spec) and stored is not None and bool(_string(stored, "shutdown", _STORED))


def artifact_gc_strategy(workflow: Mapping[str, Any], artifact: Mapping[str, Any]) -> str:
    """The artifact GC strategy the controller applies to an output artifact of `workflow`.

    Mirrors `Workflow.GetArtifactGCStrategy` in pkg/apis/workflow/v1alpha1/workflow_types.go, called on the executed
    workflow (`woc.execWf`) by workflow/controller/artifact_gc.go (checked at v3.5.14, v3.7.18 and v4.1.2; artifact GC
    exists at all three): the artifact's own `artifactGC.strategy` when non-empty, else the workflow level's, else
    `Never`. An empty strategy means undefined at that level, never "no GC": an artifact's `Never` does override a
    workflow-level strategy, an artifact's '' does not. Values are returned as written (`OnWorkflowCompletion`,
    `OnWorkflowDeletion`, `Never`).

    The workflow level is `spec.artifactGC.strategy`, except for a Workflow with `spec.workflowTemplateRef`: the
    controller executes `status.storedWorkflowTemplateSpec`, the merge of the Workflow's spec over the template's (and
    the controller's `workflowDefaults` under both) made by `setStoredWfSpec` in workflow/controller/operator.go, so
    that spec's strategy applies. `setStoredWfSpec` merges again, the Workflow's own non-empty strategy winning, on each
    reconcile where `needsStoredWfSpecUpdate` holds (see `_stored_spec_remerged`); wfboost follows that too. Before the
    first reconcile there is no stored spec and the template's strategy is unknown to a pure reader: the Workflow's own
    strategy is used. Controller `workflowDefaults` are likewise only seen once the controller has written them.
    """
    own = _gc_strategy(artifact, "artifact")
    if own:
        return own
    return _workflow_gc_strategy(workflow) or ARTIFACT_GC_NEVER


def owner_uid(workflow: Mapping[str, Any]) -> str:
    """The Workflow's `metadata.uid` ('' when absent, as for an object not yet created).

    The uid is what Argo puts in the owner references of the step pods it creates and what the offloaded node status
    table is keyed by (`hydrator.Hydrate` in workflow/hydrator/hydrator.go, checked at v3.5.14, v3.7.18 and v4.1.2).
    """
    return _string(_mapping(workflow.get("metadata"), "metadata"), "uid", "metadata")


_STORED: Final = "status.storedWorkflowTemplateSpec"


def _workflow_gc_strategy(workflow: Mapping[str, Any]) -> str:
    """The workflow-level strategy of the executed spec (see `artifact_gc_strategy`)."""
    spec = _spec(workflow)
    own = _gc_strategy(spec, "spec")
    stored = _stored_spec(workflow)
    if not _references_template(spec) or stored is None:
        return own
    if own and _stored_spec_remerged(spec, stored):
        return own
    return _gc_strategy(stored, _STORED)


def _stored_spec_remerged(spec: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether this reconcile merges `spec` into the stored spec again.

    Mirrors `needsStoredWfSpecUpdate` in workflow/controller/operator.go (checked at v3.5.14, v3.7.18 and v4.1.2):
    the Workflow names an entrypoint the stored spec lacks, or `shutdown` differs, or `suspend` "differs". Go compares
    the two `*bool` pointers, which are distinct after decoding unless both are nil, so a `suspend` set on either side
    (even to the same value) re-merges on every reconcile.
    """
    if _string(spec, "entrypoint", "spec") and not _string(stored, "entrypoint", _STORED):
        return True
    if spec.get("suspend") is not None or stored.get("suspend") is not None:
        return True
    return _string(spec, "shutdown", "spec") != _string(stored, "shutdown", _STORED)


def _spec(workflow: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(workflow.get("spec"), "spec")


def _stored_spec(workflow: Mapping[str, Any]) -> Mapping[str, Any] | None:
    stored = _mapping(workflow.get("status"), "status").get("storedWorkflowTemplateSpec")
    return None if stored is None else _mapping(stored, _STORED)


def _references_template(spec: Mapping[str, Any]) -> bool:
    """`spec.workflowTemplateRef != nil` in Go: present and not null, even when empty."""
    return spec.get("workflowTemplateRef") is not None


def _gc_strategy(holder: Mapping[str, Any], where: str) -> str:
    """`holder.artifactGC.strategy` ('' when either is absent: `ArtifactGCStrategyUndefined`)."""
    gc = _mapping(holder.get("artifactGC"), f"{where}.artifactGC")
    return _string(gc, "strategy", f"{where}.artifactGC")


def _decode_base64(text: str) -> bytes:
    """Go's `base64.StdEncoding.DecodeString`: padding required, only `\\r` and `\\n` ignored."""
    try:
        return base64.b64decode(text.replace("\r", "").replace("\n", ""), validate=True)
    except binascii.Error as exc:
        raise WorkflowStatusError(f"status.compressedNodes is not valid base64: {exc}") from exc


def _decompress(packed: bytes) -> bytes:
    """`file.DecompressContent` in util/file/fileutil.go: the format is told by its first bytes.

    v3.5.14 and v3.7.18 only write and read gzip. v4.1.2 writes gzip by default, or zstd or brotli when the
    controller's `WORKFLOW_COMPRESSION_ALGORITHM` says so, and reads any of them: zstd by its magic `28 b5 2f fd`, gzip
    by `1f 8b`, and everything else as brotli, which has no magic. wfboost decodes gzip (standard library) and zstd
    (`zstandard`); brotli would need a new dependency, so it raises `UnsupportedCompressionError`.
    """
    if packed.startswith(_ZSTD_MAGIC):
        return _zstd(packed)
    if packed.startswith(_GZIP_MAGIC):
        return _gzip(packed)
    raise UnsupportedCompressionError(
        "status.compressedNodes is neither gzip nor zstd; Argo v4.1+ reads it as brotli "
        "(WORKFLOW_COMPRESSION_ALGORITHM=brotli), which wfboost cannot decode"
    )


def _gzip(packed: bytes) -> bytes:
    """All gzip members, as Go's `gzip.Reader` (multistream by default) and pgzip read them."""
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as exc:
        raise WorkflowStatusError(f"status.compressedNodes is not valid gzip: {exc}") from exc


def _zstd(packed: bytes) -> bytes:
    """All zstd frames, as klauspost's `Decoder.DecodeAll` reads them; a truncated frame is an error, as there."""
    plain = []
    rest = packed
    try:
        while rest:
            frame = zstandard.ZstdDecompressor().decompressobj()
            plain.append(frame.decompress(rest))
            if not frame.eof:
                raise WorkflowStatusError("status.compressedNodes is not valid zstd: its last frame is truncated")
            rest = frame.unused_data
    except zstandard.ZstdError as exc:
        raise WorkflowStatusError(f"status.compressedNodes is not valid zstd: {exc}") from exc
    return b"".join(plain)


def _decode_json(plain: bytes) -> Any:
    try:
        return orjson.loads(plain)
    except orjson.JSONDecodeError as exc:
        raise WorkflowStatusError(f"status.compressedNodes does not hold JSON: {exc}") from exc


def _nodes_map(nodes: Any) -> dict[str, dict[str, Any]]:
    """A `Nodes` map (node ID to `NodeStatus`); JSON null is an empty map, as in Go."""
    if nodes is None:
        return {}
    if not isinstance(nodes, Mapping):
        raise WorkflowStatusError(f"status nodes must be an object, not {type(nodes).__name__}")
    result: dict[str, dict[str, Any]] = {}
    for node_id, node in nodes.items():
        if not isinstance(node, dict):
            raise WorkflowStatusError(f"status node {node_id!r} must be an object, not {type(node).__name__}")
        result[node_id] = node
    return result


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    """An object field; absent and null read as empty (Go's nil struct pointer or zero struct)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WorkflowStatusError(f"`{where}` must be an object, not {type(value).__name__}")
    return value


def _string(holder: Mapping[str, Any], field: str, where: str) -> str:
    """A string field; absent and null read as '' (Go's zero value)."""
    value = holder.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WorkflowStatusError(f"`{where}.{field}` must be a string, not {type(value).__name__}")
    return value
