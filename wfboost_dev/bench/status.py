"""Status compression measured beside Go's default gzip level on the same node statuses.

The floor is zlib at level 6 — Go's `gzip.DefaultCompression`, which Argo's `file.CompressContent` writes with
(klauspost/pgzip or compress/gzip; both implement the same levels) — run on the same bytes in the same process.
wfboost's encoders are `compressed_nodes` as the webhook calls it. Every output is read back by the standard library
(or zstandard) and compared with the input before it counts.
"""

from __future__ import annotations

import base64
import gzip
import statistics
import time
from collections.abc import Callable

import orjson
import zstandard
from isal import igzip

from wfboost.argo.workflow_status import compressed_nodes
from wfboost_dev.argosim.status import kubeflow_run_nodes

ROUNDS = 15


def _timed(encode: Callable[[bytes], bytes], data: bytes) -> tuple[float, bytes]:
    samples = []
    out = b""
    for _ in range(ROUNDS):
        started = time.perf_counter()
        out = encode(data)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), out


def _zstd_plain(packed: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().decompressobj()
    return reader.decompress(packed)


def report(tasks: int = 2000) -> list[str]:
    data = orjson.dumps(kubeflow_run_nodes(tasks))
    rows: list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]] = [
        ("floor: zlib level 6 (Go's default)", lambda d: gzip.compress(d, 6, mtime=0), gzip.decompress),
        ("wfboost gzip (zlib-ng level 5)", lambda d: base64.b64decode(compressed_nodes(d, "gzip")), gzip.decompress),
        ("not taken: ISA-L level 1", lambda d: igzip.compress(d, 1, mtime=0), gzip.decompress),
        ("wfboost zstd (level 3, Argo 4.1+)", lambda d: base64.b64decode(compressed_nodes(d, "zstd")), _zstd_plain),
    ]
    lines = [
        f"status.nodes of a Kubeflow-shaped run of {tasks} tasks: {len(data) / 2**20:.2f} MiB of JSON; "
        f"median of {ROUNDS} rounds",
        f"{'':<36} {'time':>9} {'MiB/s':>8} {'ratio':>7} {'time vs floor':>14} {'size vs floor':>14}",
    ]
    floor_time = floor_size = 0.0
    for name, encode, decode in rows:
        seconds, packed = _timed(encode, data)
        if decode(packed) != data:
            raise SystemExit(f"{name}: output does not read back as its input")
        if not floor_time:
            floor_time, floor_size = seconds, len(packed)
        lines.append(
            f"{name:<36} {seconds * 1000:7.1f}ms {len(data) / seconds / 2**20:8.0f} {len(data) / len(packed):7.1f} "
            f"{seconds / floor_time:13.2f}x {len(packed) / floor_size:13.2f}x"
        )
    return lines
