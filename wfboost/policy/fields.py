"""How a policy field is declared: its name in the file, what it means, and the rules on its value.

The dataclasses in model.py are the one definition of the policy format. Each field is declared with `setting()`,
which stores in the field's metadata what the file calls it and how a value is checked; codec.py reads that to
generate the JSON Schema, to load a document and to dump a policy, so the three cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FieldSpec", "setting", "spec_of"]


@dataclass(frozen=True)
class FieldSpec:
    """What codec.py needs to know about one field beyond its Python type."""

    name: str  # the key in the file (camelCase)
    doc: str
    schema: Mapping[str, Any]  # extra JSON Schema keywords (minimum, a $ref, x-expected…), merged into the type's
    nullable: bool  # `null` is a value the file may give (kept as None); otherwise None means "not given"
    unbuilt: str | None  # the feature is not built yet: `true` is refused with this sentence


def setting(
    name: str,
    *,
    doc: str,
    default: Any = dataclasses.MISSING,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    schema: Mapping[str, Any] | None = None,
    nullable: bool = False,
    unbuilt: str | None = None,
) -> Any:
    """A dataclass field that appears in the policy file as `name`."""
    metadata = {"policy": FieldSpec(name, doc, dict(schema or {}), nullable, unbuilt)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def spec_of(field: dataclasses.Field[Any]) -> FieldSpec | None:
    """The field's policy declaration; None for fields that are not in the file."""
    spec = field.metadata.get("policy")
    return spec if isinstance(spec, FieldSpec) else None
