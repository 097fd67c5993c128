"""The policy a command is pointed at: the file the webhook mounts, or the ConfigMap that carries it.

Users keep the policy in a ConfigMap (key `policy.yaml`, see deploy/); `kubectl get cm -o yaml` or the manifest they
apply is what they have at hand, so every command that takes a policy file also takes that ConfigMap and reads the
key from it, as the webhook's volume mount does.
"""

from __future__ import annotations

from typing import Any

import yaml

from wfboost.cli.inputs import InputError, read_text
from wfboost.policy import Policy, PolicyError, load_policy

POLICY_KEY = "policy.yaml"


def policy_text(path: str) -> str:
    """The policy YAML in `path`: the file itself, or the `policy.yaml` key of the ConfigMap it holds."""
    text = read_text(path)
    document = _first_document(text)
    if not (isinstance(document, dict) and document.get("kind") == "ConfigMap" and document.get("apiVersion") == "v1"):
        return text
    name = "stdin" if path == "-" else path
    data = document.get("data")
    value = data.get(POLICY_KEY) if isinstance(data, dict) else None
    if not isinstance(value, str):
        raise InputError(f"{name}: a ConfigMap without a data key {POLICY_KEY!r} (the key the webhook mounts)")
    return value


def read_policy(path: str | None) -> Policy:
    """The policy in `path`, or the built-in default (every feature off) without one; PolicyError lists problems."""
    return load_policy(policy_text(path)) if path else Policy.default()


def _first_document(text: str) -> Any:
    try:
        return next(iter(yaml.safe_load_all(text)), None)
    except yaml.YAMLError:
        return None  # the policy loader reports the syntax error with its line


__all__ = ["POLICY_KEY", "InputError", "PolicyError", "policy_text", "read_policy"]
