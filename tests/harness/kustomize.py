"""The real kustomize (`kubectl kustomize`, where kubectl is installed) on a copy of deploy/, with an overlay.

wfboost_dev/deploy/kustomize.py renders the base for the checks; these tests show the real one agrees. kubectl
cannot be installed from the registries this project uses, so the tests skip where it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl (with its built-in kustomize) on this "
                                                           "machine: only wfboost_dev/deploy/kustomize.py renders here")


def overlay(deploy: Path, into: Path, namespace: str | None = None, components: Sequence[str] = ()) -> Path:
    """A copy of `deploy` under `into`, and the kustomization to render: the base itself, or an overlay of it that
    sets `namespace` and adds `components` (paths under deploy/)."""
    shutil.copytree(deploy, into / "deploy")
    if namespace is None and not components:
        return into / "deploy" / "base"
    root = into / "overlay"
    root.mkdir()
    text = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../deploy/base]\n"
    if namespace is not None:
        text += f"namespace: {namespace}\n"
    if components:
        text += f"components: [{', '.join(f'../deploy/{c}' for c in components)}]\n"
    (root / "kustomization.yaml").write_text(text)
    return root


def kustomize(root: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize root` renders."""
    assert KUBECTL is not None
    done = subprocess.run([KUBECTL, "kustomize", str(root)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [o for o in yaml.safe_load_all(done.stdout) if o]
