"""From a `Policy` back to its file form, so `wfboost policy show` can print the policy in force and tests can
check that loading and dumping are inverse.

Every field is written, defaults included: a dump is meant to be read as "what is in force", not to be minimal.
`always_excluded` is not written because no file can change it.
"""

from __future__ import annotations

from typing import Any

import yaml

from . import codec
from .model import API_VERSION, KIND, Policy

__all__ = ["dump_policy", "policy_to_document"]


def policy_to_document(policy: Policy) -> dict[str, Any]:
    """The file form of a policy; `policy_from_document(policy_to_document(p))` equals `p`."""
    return {"apiVersion": API_VERSION, "kind": KIND, **codec.dump(policy)}


def dump_policy(policy: Policy) -> str:
    """The policy as YAML, in the field order of the schema."""
    return yaml.safe_dump(policy_to_document(policy), sort_keys=False, default_flow_style=False)
