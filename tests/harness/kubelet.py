"""What the kubelet does to a container's strings before the process starts: `$(NAME)` expansion.

Env values are expanded in order, each against the variables defined before it; then command and args against all
of them. `$$` becomes `$`; `$(NAME)` becomes the variable's value when it is defined and stays as written otherwise;
any other `$` is kept. Tests run replayed containers through this, since the real kubelet would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def expand(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : close]
            out.append(env[name] if name in env else text[i : close + 1])
            i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


def container_process(container: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """(argv, env) as the container's process receives them."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = expand(entry.get("value") or "", env)
    argv = [expand(part, env) for part in [*(container.get("command") or []), *(container.get("args") or [])]]
    return argv, env


BUSYBOX = shutil.which("busybox")


def run_main(container: Mapping[str, Any], root: Path) -> subprocess.CompletedProcess[bytes]:
    """Run a replayed main container's program as it would run: the kubelet's expansion, then what emissary execs
    after its `--`, with busybox's shell; the replay's paths are rooted under `root`."""
    argv, env = container_process(container)
    user = argv[argv.index("--") + 1 :]
    assert user[:2] == ["/bin/sh", "-c"], user[:2]
    for name, value in list(env.items()):
        if name.startswith("WFBOOST_") and name.endswith("_PATH"):
            env[name] = str(root) + value
    env["PATH"] = os.environ["PATH"]
    assert BUSYBOX is not None, "busybox-static is not installed (make setup installs it)"
    return subprocess.run([BUSYBOX, "sh", *user[1:]], env=env, capture_output=True, timeout=30, check=False)


def wait_reads(content: bytes) -> str:
    """What Argo's wait container reports for an output file or captured stdout: the text without one trailing
    newline (executor.go trims exactly one)."""
    text = content.decode()
    return text[:-1] if text.endswith("\n") else text
