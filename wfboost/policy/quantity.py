"""Kubernetes resource quantities (`100m`, `64Mi`, `1e3`) as exact decimals, to compare requests with limits.

Only comparison is needed: the replay container's requests must not exceed its limits, or the API server
refuses the hit pod with 422 and the user's step fails. Decimal keeps `0.1` and `100m` exactly equal.
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["parse_quantity"]

_QUANTITY = re.compile(
    r"^\+?(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[eE][+-]?[0-9]+|[munkMGTPE]|[KMGTPE]i)?$"
)
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def parse_quantity(text: str) -> Decimal:
    """The value of a quantity in base units (cores, bytes); ValueError when it is not a quantity."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number = Decimal(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY_SUFFIXES:
        return number * Decimal(2 ** _BINARY_SUFFIXES[suffix])
    if suffix in _DECIMAL_SUFFIXES:
        return number.scaleb(_DECIMAL_SUFFIXES[suffix])
    return number.scaleb(int(suffix[1:]))
