"""ISO-8601 durations (`P7D`, `PT12H`, `P1W`, `PT0.5S`) to and from `datetime.timedelta`.

Staleness and lease times are written as ISO-8601 durations because that is what Kubeflow's cache uses
(`max_cache_staleness: P7D`), so people moving from it can keep their values.

Accepted form: `P[nW][nD][T[nH][nM][n[.f]S]]` with non-negative integers, a decimal fraction on seconds only
(`.` or `,` as the standard allows), upper-case designators, at least one component, and a `T` only when a
time component follows. Weeks may be combined with days (ISO 8601-1:2019 allows it; the 2004 edition did not).

Rejected on purpose: years (`Y`) and months (`M` before `T`). Their length depends on the calendar date they
are added to, and a staleness has no such anchor; silently picking 30 or 365 days would make `P1M` mean
something the writer may not expect, so the error asks for days instead. Negative durations are rejected too:
a staleness or a lease time below zero has no meaning.

Fractions finer than a microsecond are rounded to the nearest microsecond (timedelta's resolution).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

__all__ = ["DurationError", "format_duration", "parse_duration"]

# Wider than what is accepted so that years and months can be named in the error instead of a generic
# "invalid".
_WIDE = re.compile(
    r"""
    P
    (?:(?P<years>\d+)Y)?
    (?:(?P<months>\d+)M)?
    (?:(?P<weeks>\d+)W)?
    (?:(?P<days>\d+)D)?
    (?:T
        (?:(?P<hours>\d+)H)?
        (?:(?P<minutes>\d+)M)?
        (?:(?P<seconds>\d+(?:[.,]\d+)?)S)?
    )?
    """,
    re.VERBOSE,
)

_EXPECTED = "expected PnWnDTnHnMnS, e.g. P7D, PT12H or P0D"
_MICROSECONDS_PER_SECOND = 1_000_000


class DurationError(ValueError):
    """A text that is not an accepted ISO-8601 duration; `reason` says which rule it broke."""

    def __init__(self, text: object, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"{text!r} is not an ISO-8601 duration ({reason})")


def parse_duration(text: str) -> timedelta:
    """Parse an ISO-8601 duration into a timedelta, raising DurationError with the broken rule."""
    if not isinstance(text, str):
        raise DurationError(text, f"not a string; {_EXPECTED}")
    if text.startswith("-"):
        raise DurationError(text, "negative durations are not allowed")
    match = _WIDE.fullmatch(text)
    if match is None or text == "P" or text.endswith("T"):
        upper = text.upper()
        if upper != text and _WIDE.fullmatch(upper) and upper != "P" and not upper.endswith("T"):
            raise DurationError(text, "designators must be upper case")
        raise DurationError(text, _EXPECTED)
    if match["years"] is not None or match["months"] is not None:
        raise DurationError(text, "years and months have no fixed length; write days instead, e.g. P30D or P365D")
    seconds_text = (match["seconds"] or "0").replace(",", ".")
    microseconds = round(Decimal(seconds_text) * _MICROSECONDS_PER_SECOND)
    try:
        return timedelta(
            weeks=int(match["weeks"] or 0),
            days=int(match["days"] or 0),
            hours=int(match["hours"] or 0),
            minutes=int(match["minutes"] or 0),
            microseconds=microseconds,
        )
    except OverflowError:
        raise DurationError(text, "too large") from None


def format_duration(value: timedelta) -> str:
    """Format a non-negative timedelta in the canonical form `parse_duration` reads back exactly.

    Days are never folded into weeks and hours never into days beyond 24, so the output is unique per value.
    """
    if value < timedelta(0):
        raise ValueError(f"negative durations cannot be formatted: {value!r}")
    days = value.days
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    date_part = f"{days}D" if days else ""
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if seconds or value.microseconds:
        fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        time_part += f"{seconds}{fraction}S"
    if not date_part and not time_part:
        return "P0D"
    return "P" + date_part + (f"T{time_part}" if time_part else "")
