"""From policy text to a `Policy`: YAML parsing, validation, then building the dataclasses.

All-or-nothing: a text either yields a complete Policy or raises PolicyError with every problem found, so a
caller never runs with half a policy. Fields the file leaves out take the dataclass defaults in model.py (codec.py
builds the dataclasses from the fields' declarations).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, cast

import yaml

from . import codec
from .errors import PolicyError
from .model import Policy
from .schema import validate_document

__all__ = ["load_policy", "policy_from_document"]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping.

    PyYAML silently keeps the last one, so `maxStaleness` written twice would make the first value vanish
    without a word; in a policy that is a mistake worth naming.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {key!r} appears twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str) -> object:
    try:
        documents = [document for document in yaml.load_all(text, Loader=_StrictLoader) if document is not None]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise PolicyError([f"{where}: {error.problem or error}"]) from None
    except yaml.YAMLError as error:
        raise PolicyError([f"YAML: {error}"]) from None
    if not documents:
        raise PolicyError(["(top level): the policy is empty; expected apiVersion wfboost.io/v1alpha1, kind Policy"])
    if len(documents) > 1:
        raise PolicyError([f"(top level): expected one YAML document, found {len(documents)}"])
    return documents[0]


def policy_from_document(document: Mapping[str, Any]) -> Policy:
    """Build a Policy from a document the schema has accepted (see `validate_document`)."""
    return codec.load(Policy, document)


def load_policy(text: str, own_namespace: str | None = None) -> Policy:
    """Parse, validate and build a policy; raise PolicyError listing every problem.

    `own_namespace` (the webhook's namespace, e.g. from env POD_NAMESPACE) is added to the always-excluded
    namespaces; no file can bring it or kube-system back into scope.
    """
    document = _parse_yaml(text)
    messages = validate_document(document)
    if messages:
        raise PolicyError(messages)
    return policy_from_document(cast(Mapping[str, Any], document)).with_own_namespace(own_namespace)
