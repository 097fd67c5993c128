"""docs/cli.md says what the CLI's parser says: every command, option, default and help."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_cli_page_is_current() -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WFBOOST_") and k not in ("POD_NAMESPACE", "KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    done = subprocess.run([sys.executable, "-m", "wfboost_dev.clidoc", "--check"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_option_says_what_it_does() -> None:
    from wfboost_dev.clidoc import render

    undocumented = [line for line in render().splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert undocumented == []
