"""Where a pod CREATE miss spends its CPU: a sampling profile of the running webhook under the same closed-loop load.

`py-spy record` (no code change, sampling the `wfboost serve` process from outside) runs while wrk drives the miss
path; the samples are grouped by the part of the admission path their stack passes through, each share counted
inclusively (a sample in the Redis client under the lookup counts for the lookup). Idle samples (the event loop
waiting) are not recorded, so the shares are of the CPU the process spent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

from wfboost_dev.bench import loadgen

# (what, a substring of a frame that stands for it), in the order of the admission path.
PARTS: Final = (
    ("HTTPS and HTTP (aiohttp, ssl)", ("aiohttp/", "ssl.py", "asyncio/sslproto.py")),
    ("the review read and the answer written (wire.py)", ("webhook/wire.py",)),
    ("the pod read (argo/pods.py)", ("argo/pods.py",)),
    ("eligibility (cache/eligibility.py)", ("cache/eligibility.py",)),
    ("the key (cache/keys.py, canonical form)", ("cache/keys.py",)),
    ("the lookup (one Redis round trip)", ("cache/store.py", "redis/")),
    ("the patch (memoize.py, runs.py, executor_template.py)",
     ("webhook/memoize.py", "webhook/runs.py", "webhook/executor_template.py")),
    ("the patch check (verify_patch, jsonpatch)", ("verify_patch", "jsonpatch")),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
)


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile(pid: int, url: str, body: bytes, seconds: float) -> dict[str, Any]:
    """{"samples": n, "parts": [(what, share)]} for `pid` under wrk's closed loop on `url`, or {"skipped": why}."""
    tool = py_spy()
    if tool is None:
        return {"skipped": "py-spy is not installed (make bench installs the bench extras)"}
    with tempfile.TemporaryDirectory(prefix="wfboost-profile-") as tmp:
        out = Path(tmp) / "stacks.txt"
        spy = subprocess.Popen([tool, "record", "-p", str(pid), "-d", f"{seconds:.0f}", "-r", "200", "-f", "raw",
                                "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        loadgen.closed_loop(url, body, seconds=seconds, connections=8)
        try:
            _, errors = spy.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            spy.kill()
            return {"skipped": "py-spy did not finish"}
        if spy.returncode != 0 or not out.exists():
            return {"skipped": f"py-spy failed: {errors.decode(errors='replace').strip()[-200:]}"}
        return shares(out.read_text())


def shares(collapsed: str) -> dict[str, Any]:
    """Group py-spy's collapsed stacks (`frame;frame;… count` per line) by PARTS."""
    total = 0
    counted = dict.fromkeys(what for what, _ in PARTS)
    found = {what: 0 for what in counted}
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        for what, marks in PARTS:
            if any(mark in stack for mark in marks):
                found[what] += count
    return {"samples": total, "parts": [(what, found[what] / total if total else 0.0) for what, _ in PARTS]}
